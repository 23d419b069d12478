//! The C API behind [`crate::Client`]: bindgen's bindings ([`raw`]), loading `VBoxXPCOMC` with
//! `libloading` and checking its versions, and the thread that owns the XPCOM client and makes
//! every call (XPCOM objects belong to the thread that initialised the client).

#![allow(unsafe_code, reason = "calls into VirtualBox's C API")]

use std::ffi::c_uint;
use std::path::{Path, PathBuf};
use std::ptr::null_mut;
use std::sync::mpsc;

use crate::{CallError, ComError, LoadError, MachineState};

/// bindgen's output for `VBoxCAPI_v*.h` (see build.rs for what is kept).
#[allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code,
    clippy::all,
    clippy::pedantic,
    rustdoc::all,
    reason = "generated from VirtualBox's C header"
)]
pub mod raw {
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}

use raw::{IConsole, IKeyboard, IMachine, ISession, IVirtualBox, IVirtualBoxClient, VBOXCAPI};

/// The entry point's name, and the older one the glue also tries.
const ENTRY_POINTS: [&[u8]; 2] = [b"VBoxGetCAPIFunctions\0", b"VBoxGetXPCOMFunctions\0"];

/// `nsresult` for a method missing from a table (`NS_ERROR_NOT_IMPLEMENTED`).
const NOT_IMPLEMENTED: u32 = 0x8000_4001;

/// `NS_FAILED`: the top bit marks an error.
fn check(call: &'static str, rc: u32) -> Result<(), ComError> {
    if rc & 0x8000_0000 == 0 {
        Ok(())
    } else {
        Err(ComError { call, hresult: rc })
    }
}

/// `$obj->lpVtbl->$method($obj, args…)`, its result checked. Used only inside `unsafe` blocks
/// whose SAFETY comment covers `$obj` being a live object of its interface.
macro_rules! call {
    ($iface:literal, $obj:expr, $method:ident $(, $arg:expr)*) => {{
        let this = $obj;
        let name = concat!($iface, "::", stringify!($method));
        match (*(*this).lpVtbl).$method {
            Some(f) => check(name, f(this $(, $arg)*)),
            None => Err(ComError { call: name, hresult: NOT_IMPLEMENTED }),
        }
    }};
}

/// An interface whose references are counted with nsISupports' `Release`.
trait Interface {
    /// Drop one reference to `this`.
    ///
    /// # Safety
    /// `this` is a live object of this interface, and the caller owns the reference.
    unsafe fn release(this: *mut Self);
}

macro_rules! interfaces {
    ($($t:ident),*) => {$(
        impl Interface for $t {
            unsafe fn release(this: *mut Self) {
                // SAFETY: the caller's contract: `this` is live, so its table is readable.
                if let Some(release) = unsafe { (*(*this).lpVtbl).Release } {
                    // SAFETY: as above; the reference being dropped is the caller's.
                    unsafe { release(this) };
                }
            }
        }
    )*};
}
interfaces!(
    IVirtualBoxClient,
    IVirtualBox,
    ISession,
    IMachine,
    IConsole,
    IKeyboard
);

/// An owned reference, released when dropped.
struct Com<T: Interface>(*mut T);

impl<T: Interface> Drop for Com<T> {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: a `Com` is only made from an out-parameter of a successful call, which
            // hands over one reference to a live object.
            unsafe { T::release(self.0) };
        }
    }
}

/// A getter's result as an owned reference: `Err` when the call failed or gave null.
fn owned<T: Interface>(call: Result<(), ComError>, p: *mut T) -> Result<Com<T>, ComError> {
    let got = Com(p);
    call?;
    if got.0.is_null() {
        return Err(ComError {
            call: "a getter returned null",
            hresult: NOT_IMPLEMENTED,
        });
    }
    Ok(got)
}

/// The loaded library and its function table.
struct Library {
    /// Kept open for the process's life (never closed: VirtualBox's runtime does not survive
    /// being unloaded and loaded again, as the glue notes).
    _lib: std::mem::ManuallyDrop<libloading::Library>,
    api: &'static VBOXCAPI,
}

/// Load `path`: `Ok(None)` when it is not there.
fn load(path: &Path) -> Result<Option<Library>, LoadError> {
    let bare = path.parent().is_none_or(|p| p.as_os_str().is_empty());
    if !bare && !path.exists() {
        return Ok(None);
    }
    // SAFETY: loading runs the library's initialisers; the only library loaded here is the
    // one VirtualBox installs for this purpose (or whatever the user put in VBOX_APP_HOME,
    // which is the user's choice, as with the C glue).
    let lib = match unsafe { libloading::Library::new(path) } {
        Ok(lib) => lib,
        // A bare name the linker cannot find is not there; a file that is there and fails is
        // an error worth reporting.
        Err(_) if bare => return Ok(None),
        Err(e) => {
            return Err(LoadError::Open {
                path: path.to_owned(),
                reason: e.to_string(),
            })
        }
    };
    type GetFunctions = unsafe extern "C" fn(c_uint) -> *const VBOXCAPI;
    let mut missing = String::new();
    let mut entry = None;
    for name in ENTRY_POINTS {
        // SAFETY: the symbol has this C signature (`PFNVBOXGETCAPIFUNCTIONS` in the header).
        match unsafe { lib.get::<GetFunctions>(name) } {
            Ok(f) => {
                entry = Some(*f);
                break;
            }
            Err(e) if missing.is_empty() => missing = e.to_string(),
            Err(_) => {}
        }
    }
    let Some(get_functions) = entry else {
        return Err(LoadError::SymbolMissing {
            path: path.to_owned(),
            reason: missing,
        });
    };
    let mismatch = |found| LoadError::VersionMismatch {
        path: path.to_owned(),
        found,
        expected: raw::VBOX_CAPI_VERSION,
    };
    // SAFETY: the entry point takes the table version the caller wants and returns a pointer
    // to a static table, or null when it has none for that version.
    let table = unsafe { get_functions(raw::VBOX_CAPI_VERSION) };
    // SAFETY: non-null, it points to the library's static table, which lives as long as the
    // library, which is never unloaded once a client uses it (see `Library`).
    let Some(api) = (unsafe { table.as_ref() }) else {
        return Err(mismatch(0));
    };
    // As the glue: the same major version, at least the minor one.
    let split = |v: u32| (v >> 16, v & 0xffff);
    let ((major, minor), (want_major, want_minor)) =
        (split(api.uVersion), split(raw::VBOX_CAPI_VERSION));
    if major != want_major || minor < want_minor {
        return Err(mismatch(api.uVersion));
    }
    // The interface tables change between VirtualBox versions (with the same table version
    // above), so the API version must be the header's exactly.
    let found = match api.pfnGetAPIVersion {
        // SAFETY: a function of the checked table, without arguments.
        Some(f) => unsafe { f() },
        None => 0,
    };
    if found != raw::BUILT_API_VERSION {
        return Err(LoadError::ApiMismatch {
            found,
            built: raw::BUILT_API_VERSION,
        });
    }
    Ok(Some(Library {
        _lib: std::mem::ManuallyDrop::new(lib),
        api,
    }))
}

/// The first of `candidates` that loads, as [`crate::Client::open_from`] describes.
fn load_first(candidates: &[PathBuf]) -> Result<Library, LoadError> {
    let mut searched = Vec::new();
    for path in candidates {
        match load(path)? {
            Some(lib) => return Ok(lib),
            None => searched.push(path.clone()),
        }
    }
    Err(LoadError::LibraryNotFound { searched })
}

/// Calls `pfnClientUninitialize` when dropped: after every reference the client handed out.
struct Uninit(&'static VBOXCAPI);

impl Drop for Uninit {
    fn drop(&mut self) {
        if let Some(uninit) = self.0.pfnClientUninitialize {
            // SAFETY: called on the thread that initialised the client; the owner declares it
            // after its references, so they are released first.
            unsafe { uninit() };
        }
    }
}

/// The XPCOM objects one thread holds. Fields drop in order: the references, then the client's
/// uninitialisation, then the library (which stays loaded).
struct Session {
    session: Com<ISession>,
    vbox: Com<IVirtualBox>,
    _client: Com<IVirtualBoxClient>,
    _uninit: Uninit,
    _lib: Library,
}

impl Session {
    fn connect(lib: Library) -> Result<Self, ComError> {
        let init = lib.api.pfnClientInitialize.ok_or(ComError {
            call: "pfnClientInitialize",
            hresult: NOT_IMPLEMENTED,
        })?;
        let mut client = null_mut();
        // SAFETY: the IID is a NUL-terminated string; on success `client` receives a reference
        // the caller owns (the header's contract), which `owned` takes.
        let rc = unsafe { init(raw::IVIRTUALBOXCLIENT_IID_STR.as_ptr().cast(), &mut client) };
        check("pfnClientInitialize", rc)?;
        // Declared before the references, so an early return releases them first.
        let uninit = Uninit(lib.api);
        let client = owned(Ok(()), client)?;
        let (mut vbox, mut session) = (null_mut(), null_mut());
        // SAFETY: `client` is live; each getter hands over one reference to its out-parameter.
        let got = unsafe { call!("IVirtualBoxClient", client.0, GetVirtualBox, &mut vbox) };
        let vbox = owned(got, vbox)?;
        // SAFETY: as above.
        let got = unsafe { call!("IVirtualBoxClient", client.0, GetSession, &mut session) };
        let session = owned(got, session)?;
        Ok(Self {
            session,
            vbox,
            _client: client,
            _uninit: uninit,
            _lib: lib,
        })
    }

    fn find_machine(&self, vm: &str) -> Result<Com<IMachine>, CallError> {
        if vm.contains('\0') {
            return Err(CallError::Name(vm.to_owned()));
        }
        let mut name: Vec<u16> = vm.encode_utf16().chain([0]).collect();
        let mut machine = null_mut();
        // SAFETY: `vbox` is live; `name` is a NUL-terminated UTF-16 string that outlives the
        // call (an in-parameter, only read); the machine reference is handed over.
        let got = unsafe {
            call!(
                "IVirtualBox",
                self.vbox.0,
                FindMachine,
                name.as_mut_ptr(),
                &mut machine
            )
        };
        Ok(owned(got, machine)?)
    }

    fn machine_state(&self, vm: &str) -> Result<MachineState, CallError> {
        let machine = self.find_machine(vm)?;
        let mut state = 0;
        // SAFETY: `machine` is live; `state` is a u32 out-parameter.
        unsafe { call!("IMachine", machine.0, GetState, &mut state) }?;
        Ok(state_of(state))
    }

    fn put_scancodes(&self, vm: &str, codes: &[u8]) -> Result<(), CallError> {
        let count = u32::try_from(codes.len()).map_err(|_| CallError::TooMany(codes.len()))?;
        let machine = self.find_machine(vm)?;
        // SAFETY: `machine` and `session` are live; a shared lock is what `VBoxManage
        // controlvm` takes on a running VM.
        unsafe {
            call!(
                "IMachine",
                machine.0,
                LockMachine,
                self.session.0,
                raw::LockType_LockType_Shared
            )
        }?;
        let typed = self.type_locked(codes, count);
        // SAFETY: `session` is live and holds the lock taken above.
        let unlocked = unsafe { call!("ISession", self.session.0, UnlockMachine) };
        typed?;
        Ok(unlocked?)
    }

    /// Type `codes` through the locked session's console; the console and keyboard are
    /// released before the caller unlocks.
    fn type_locked(&self, codes: &[u8], count: u32) -> Result<(), CallError> {
        let (mut console, mut keyboard) = (null_mut(), null_mut());
        // SAFETY: `session` is live and locked to a running machine; references handed over.
        let got = unsafe { call!("ISession", self.session.0, GetConsole, &mut console) };
        let console = owned(got, console)?;
        // SAFETY: `console` is live; the keyboard reference is handed over.
        let got = unsafe { call!("IConsole", console.0, GetKeyboard, &mut keyboard) };
        let keyboard = owned(got, keyboard)?;
        let mut codes: Vec<i32> = codes.iter().map(|&b| i32::from(b)).collect();
        let mut stored = 0;
        // SAFETY: `keyboard` is live; `codes` holds `count` elements and outlives the call;
        // `stored` is a u32 out-parameter.
        unsafe {
            call!(
                "IKeyboard",
                keyboard.0,
                PutScancodes,
                count,
                codes.as_mut_ptr(),
                &mut stored
            )
        }?;
        if stored != count {
            return Err(CallError::Partial {
                stored,
                sent: codes.len(),
            });
        }
        Ok(())
    }
}

/// VirtualBox's `MachineState` value as [`MachineState`].
fn state_of(v: u32) -> MachineState {
    use MachineState::*;
    match v {
        raw::MachineState_MachineState_PoweredOff => PoweredOff,
        raw::MachineState_MachineState_Saved => Saved,
        raw::MachineState_MachineState_Teleported => Teleported,
        raw::MachineState_MachineState_Aborted => Aborted,
        raw::MachineState_MachineState_AbortedSaved => AbortedSaved,
        raw::MachineState_MachineState_Running => Running,
        raw::MachineState_MachineState_Paused => Paused,
        raw::MachineState_MachineState_Stuck => Stuck,
        raw::MachineState_MachineState_Teleporting => Teleporting,
        raw::MachineState_MachineState_LiveSnapshotting => LiveSnapshotting,
        raw::MachineState_MachineState_Starting => Starting,
        raw::MachineState_MachineState_Stopping => Stopping,
        raw::MachineState_MachineState_Saving => Saving,
        raw::MachineState_MachineState_Restoring => Restoring,
        raw::MachineState_MachineState_TeleportingPausedVM => TeleportingPausedVM,
        raw::MachineState_MachineState_TeleportingIn => TeleportingIn,
        raw::MachineState_MachineState_DeletingSnapshotOnline => DeletingSnapshotOnline,
        raw::MachineState_MachineState_DeletingSnapshotPaused => DeletingSnapshotPaused,
        raw::MachineState_MachineState_OnlineSnapshotting => OnlineSnapshotting,
        raw::MachineState_MachineState_RestoringSnapshot => RestoringSnapshot,
        raw::MachineState_MachineState_DeletingSnapshot => DeletingSnapshot,
        raw::MachineState_MachineState_SettingUp => SettingUp,
        raw::MachineState_MachineState_Snapshotting => Snapshotting,
        other => Other(other),
    }
}

/// A request to the client's thread, with where to answer.
enum Request {
    State(String, mpsc::Sender<Result<MachineState, CallError>>),
    Scancodes(String, Vec<u8>, mpsc::Sender<Result<(), CallError>>),
}

/// The handle to the client's thread; dropping it ends the thread, which releases everything.
pub(crate) struct Client {
    requests: mpsc::Sender<Request>,
}

impl Client {
    pub(crate) fn open(candidates: &[PathBuf]) -> Result<Self, LoadError> {
        let candidates = candidates.to_vec();
        let (ready_tx, ready) = mpsc::channel();
        let (requests, inbox) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("virtualbox-capi".into())
            .spawn(move || {
                let session = load_first(&candidates)
                    .and_then(|lib| Session::connect(lib).map_err(LoadError::from));
                let session = match session {
                    Ok(s) => {
                        let _ = ready_tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                // Answers whose asker has gone are dropped.
                for request in inbox {
                    match request {
                        Request::State(vm, reply) => {
                            let _ = reply.send(session.machine_state(&vm));
                        }
                        Request::Scancodes(vm, codes, reply) => {
                            let _ = reply.send(session.put_scancodes(&vm, &codes));
                        }
                    }
                }
            })
            .map_err(LoadError::Thread)?;
        // No answer means the thread died while loading (a panic in the library's set-up).
        ready
            .recv()
            .unwrap_or(Err(LoadError::Thread(std::io::Error::other(
                "the thread stopped while loading the library",
            ))))?;
        Ok(Self { requests })
    }

    fn ask<T>(
        &self,
        request: impl FnOnce(mpsc::Sender<Result<T, CallError>>) -> Request,
    ) -> Result<T, CallError> {
        let (tx, rx) = mpsc::channel();
        self.requests
            .send(request(tx))
            .map_err(|_| CallError::Stopped)?;
        rx.recv().unwrap_or(Err(CallError::Stopped))
    }

    pub(crate) fn machine_state(&self, vm: &str) -> Result<MachineState, CallError> {
        self.ask(|tx| Request::State(vm.to_owned(), tx))
    }

    pub(crate) fn put_scancodes(&self, vm: &str, codes: &[u8]) -> Result<(), CallError> {
        self.ask(|tx| Request::Scancodes(vm.to_owned(), codes.to_vec(), tx))
    }
}
