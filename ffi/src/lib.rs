//! VirtualBox's C API for the two things kiln does often enough that a `VBoxManage` process per
//! call hurts: typing scancodes (`IKeyboard::PutScancodes`) and reading a VM's state
//! (`IMachine::State`).
//!
//! With the feature `virtualbox-ffi`, bindgen generates the bindings from `VBoxCAPI_v7_1.h`
//! (vendored in `include/`, LGPL-2.1; or the SDK's header when `VBOX_SDK_PATH` names an SDK) and
//! [`Client::open`] loads `VBoxXPCOMC` at run time, as the SDK's C glue does: only from
//! `$VBOX_APP_HOME` when that is set, else from the usual install directories, then through the
//! dynamic linker's search path ([`search_path`]). Nothing is linked at build time, so a kiln
//! built with the feature still runs where VirtualBox is missing. Building it needs libclang
//! (`apt-get install libclang-dev`): `cargo build --features virtualbox-capi` for kiln, or
//! `cargo test -p virtualbox-sys --features virtualbox-ffi` for this crate.
//!
//! Without the feature the crate has the same API and [`Client::open`] always answers
//! [`LoadError::NotBuilt`], so kiln has one code path and falls back to `VBoxManage`.
//!
//! XPCOM wants its client initialised on one thread and used from threads it knows, so a
//! [`Client`] owns one thread that loads the library and makes every call; the methods send it
//! a request and wait for the answer. This is the one crate in the workspace with `unsafe`.

use std::path::{Path, PathBuf};

#[cfg(feature = "virtualbox-ffi")]
mod capi;

/// The C API library's file name, as the SDK's glue spells it for this platform.
#[cfg(target_os = "macos")]
pub const LIBRARY_NAME: &str = "VBoxXPCOMC.dylib";
/// The C API library's file name, as the SDK's glue spells it for this platform.
#[cfg(not(target_os = "macos"))]
pub const LIBRARY_NAME: &str = "VBoxXPCOMC.so";

/// Where VirtualBox installs put the library (the glue's list for this platform).
#[cfg(target_os = "macos")]
const INSTALL_DIRS: &[&str] = &["/Applications/VirtualBox.app/Contents/MacOS"];
/// Where VirtualBox installs put the library (the glue's list for this platform).
#[cfg(target_os = "freebsd")]
const INSTALL_DIRS: &[&str] = &["/usr/local/lib/virtualbox"];
/// Where VirtualBox installs put the library (the glue's list for this platform): Oracle's
/// installer, then distribution packages.
#[cfg(not(any(target_os = "macos", target_os = "freebsd")))]
const INSTALL_DIRS: &[&str] = &["/opt/VirtualBox", "/usr/lib/virtualbox"];

/// The files [`Client::open`] tries, in order, as the SDK's glue (`VBoxCGlueInit`) does: only
/// the one in `app_home` (`VBOX_APP_HOME`) when it is set, since the user said where VirtualBox
/// is; else each install directory, then the bare name for the dynamic linker's search path.
pub fn search_path(app_home: Option<&Path>) -> Vec<PathBuf> {
    match app_home {
        Some(home) => vec![home.join(LIBRARY_NAME)],
        None => INSTALL_DIRS
            .iter()
            .map(|d| Path::new(d).join(LIBRARY_NAME))
            .chain([PathBuf::from(LIBRARY_NAME)])
            .collect(),
    }
}

/// Why the C API cannot be used; the caller falls back to `VBoxManage`.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Built without the feature `virtualbox-ffi`.
    #[error("built without the VirtualBox C API (feature virtualbox-ffi)")]
    NotBuilt,
    /// No library in any of the places searched.
    #[error("no {LIBRARY_NAME} in {}", display_list(searched))]
    LibraryNotFound {
        /// The files tried, in order.
        searched: Vec<PathBuf>,
    },
    /// A file is there but the dynamic loader refused it (not a shared library, wrong
    /// architecture, a dependency missing).
    #[error("cannot load {}: {reason}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The loader's message.
        reason: String,
    },
    /// The library has no `VBoxGetCAPIFunctions` (nor the older `VBoxGetXPCOMFunctions`).
    #[error("{} has no VBoxGetCAPIFunctions: {reason}", path.display())]
    SymbolMissing {
        /// The library.
        path: PathBuf,
        /// The loader's message.
        reason: String,
    },
    /// The library's function table is not the version these bindings were made for (0: it
    /// offered none for that version).
    #[error("{} offers C API table version {found:#x}, not {expected:#x}", path.display())]
    VersionMismatch {
        /// The library.
        path: PathBuf,
        /// The table version it returned.
        found: u32,
        /// The one the bindings need.
        expected: u32,
    },
    /// The installed VirtualBox's API (major * 1000 + minor) is not the one the bindings were
    /// generated for: its interfaces' tables differ, so no call would be safe.
    #[error("VirtualBox's API is {}.{}, the bindings are for {}.{}", found / 1000, found % 1000, built / 1000, built % 1000)]
    ApiMismatch {
        /// What the library reports.
        found: u32,
        /// What the header was.
        built: u32,
    },
    /// Connecting to VirtualBox (VBoxSVC) failed.
    #[error("cannot connect to VirtualBox: {0}")]
    Com(#[from] ComError),
    /// The thread that makes the calls could not be started.
    #[error("cannot start the VirtualBox C API thread")]
    Thread(#[source] std::io::Error),
}

fn display_list(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}

/// A failed COM/XPCOM call: the method and its result code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{call} failed ({hresult:#010x})")]
pub struct ComError {
    /// `Interface::Method`.
    pub call: &'static str,
    /// The `nsresult` (VirtualBox's `VBOX_E_*`, `NS_ERROR_*`).
    pub hresult: u32,
}

/// Why a call through an open [`Client`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// VirtualBox answered with an error.
    #[error(transparent)]
    Com(#[from] ComError),
    /// VirtualBox took only part of the scancodes.
    #[error("VirtualBox took {stored} of {sent} scancodes")]
    Partial {
        /// Codes taken.
        stored: u32,
        /// Codes sent.
        sent: usize,
    },
    /// A VM name with a NUL character, which a C string cannot carry.
    #[error("the VM name {0:?} contains a NUL character")]
    Name(String),
    /// More scancodes in one call than the API's count can hold.
    #[error("{0} scancodes are too many for one call")]
    TooMany(usize),
    /// The client's thread is gone (it panicked).
    #[error("the VirtualBox C API thread has stopped")]
    Stopped,
}

/// A VM's state (VirtualBox's `MachineState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineState {
    PoweredOff,
    Saved,
    Teleported,
    Aborted,
    AbortedSaved,
    Running,
    Paused,
    Stuck,
    Teleporting,
    LiveSnapshotting,
    Starting,
    Stopping,
    Saving,
    Restoring,
    TeleportingPausedVM,
    TeleportingIn,
    DeletingSnapshotOnline,
    DeletingSnapshotPaused,
    OnlineSnapshotting,
    RestoringSnapshot,
    DeletingSnapshot,
    SettingUp,
    Snapshotting,
    /// A value this crate does not know (a newer VirtualBox).
    Other(u32),
}

impl MachineState {
    /// The state as `VBoxManage showvminfo --machinereadable` prints it (`VMState="poweroff"`),
    /// so a caller reads both the same way; `unknown` for [`MachineState::Other`].
    pub fn as_str(self) -> &'static str {
        use MachineState::*;
        match self {
            PoweredOff => "poweroff",
            Saved => "saved",
            Teleported => "teleported",
            Aborted => "aborted",
            AbortedSaved => "aborted-saved",
            Running => "running",
            Paused => "paused",
            Stuck => "gurumeditation",
            Teleporting => "teleporting",
            LiveSnapshotting => "livesnapshotting",
            Starting => "starting",
            Stopping => "stopping",
            Saving => "saving",
            Restoring => "restoring",
            TeleportingPausedVM => "teleportingpausedvm",
            TeleportingIn => "teleportingin",
            DeletingSnapshotOnline => "deletingsnapshotlive",
            DeletingSnapshotPaused => "deletingsnapshotlivepaused",
            OnlineSnapshotting => "onlinesnapshotting",
            RestoringSnapshot => "restoringsnapshot",
            DeletingSnapshot => "deletingsnapshot",
            SettingUp => "settingup",
            Snapshotting => "snapshotting",
            Other(_) => "unknown",
        }
    }
}

/// A connection to VirtualBox through its C API; see the crate docs.
pub struct Client {
    #[cfg(feature = "virtualbox-ffi")]
    inner: capi::Client,
    /// Without the bindings no client can exist: [`Client::open`] always fails.
    #[cfg(not(feature = "virtualbox-ffi"))]
    never: std::convert::Infallible,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("virtualbox_sys::Client")
    }
}

impl Client {
    /// Load the library from [`search_path`] (with `VBOX_APP_HOME`) and connect to VirtualBox.
    pub fn open() -> Result<Client, LoadError> {
        let home = std::env::var_os("VBOX_APP_HOME").map(PathBuf::from);
        Self::open_from(&search_path(home.as_deref()))
    }

    /// Load the first of `candidates` that exists (a bare file name goes through the dynamic
    /// linker's search path) and connect to VirtualBox. When none exists, the error lists them;
    /// when one exists but fails, the error is the first such failure.
    pub fn open_from(candidates: &[PathBuf]) -> Result<Client, LoadError> {
        #[cfg(feature = "virtualbox-ffi")]
        return capi::Client::open(candidates).map(|inner| Client { inner });
        #[cfg(not(feature = "virtualbox-ffi"))]
        {
            let _ = candidates;
            Err(LoadError::NotBuilt)
        }
    }

    /// The state of the VM named (or with the UUID) `vm`.
    pub fn machine_state(&self, vm: &str) -> Result<MachineState, CallError> {
        #[cfg(feature = "virtualbox-ffi")]
        return self.inner.machine_state(vm);
        #[cfg(not(feature = "virtualbox-ffi"))]
        {
            let _ = vm;
            match self.never {}
        }
    }

    /// Type PC-XT set-1 `codes` into the running VM `vm` (its keyboard, through a shared lock
    /// on the machine, as `VBoxManage controlvm keyboardputscancode` does).
    pub fn put_scancodes(&self, vm: &str, codes: &[u8]) -> Result<(), CallError> {
        #[cfg(feature = "virtualbox-ffi")]
        return self.inner.put_scancodes(vm, codes);
        #[cfg(not(feature = "virtualbox-ffi"))]
        {
            let _ = (vm, codes);
            match self.never {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests may unwrap")]

    use super::*;

    #[test]
    fn vbox_app_home_is_the_only_place_searched_when_set() {
        let home = Path::new("/somewhere/vbox");
        assert_eq!(search_path(Some(home)), [home.join(LIBRARY_NAME)]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn without_vbox_app_home_the_install_dirs_then_the_linker_path_are_searched() {
        assert_eq!(
            search_path(None),
            [
                PathBuf::from("/opt/VirtualBox/VBoxXPCOMC.so"),
                PathBuf::from("/usr/lib/virtualbox/VBoxXPCOMC.so"),
                PathBuf::from("VBoxXPCOMC.so"),
            ]
        );
    }

    #[test]
    fn an_empty_app_home_gives_library_not_found_naming_what_was_searched() {
        let home = tempfile::tempdir().unwrap();
        let err = Client::open_from(&search_path(Some(home.path()))).unwrap_err();
        #[cfg(feature = "virtualbox-ffi")]
        {
            let want = home.path().join(LIBRARY_NAME);
            assert!(
                matches!(&err, LoadError::LibraryNotFound { searched } if searched == std::slice::from_ref(&want)),
                "{err:?}"
            );
            assert!(
                err.to_string().contains(&want.display().to_string()),
                "{err}"
            );
        }
        #[cfg(not(feature = "virtualbox-ffi"))]
        assert!(matches!(err, LoadError::NotBuilt), "{err:?}");
    }

    #[cfg(feature = "virtualbox-ffi")]
    #[test]
    fn a_file_that_is_not_a_library_is_a_clean_error() {
        let home = tempfile::tempdir().unwrap();
        let fake = home.path().join(LIBRARY_NAME);
        std::fs::write(&fake, b"not an ELF file").unwrap();
        let err = Client::open_from(&search_path(Some(home.path()))).unwrap_err();
        assert!(
            matches!(&err, LoadError::Open { path, reason } if path == &fake && !reason.is_empty()),
            "{err:?}"
        );
    }

    #[cfg(all(feature = "virtualbox-ffi", target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_library_without_the_entry_point_is_symbol_missing() {
        // Any shared library without VBoxGetCAPIFunctions will do: the C library is always
        // there (found by its soname through the linker's path, as the bare name would be).
        let libc = PathBuf::from("libc.so.6");
        let err = Client::open_from(std::slice::from_ref(&libc)).unwrap_err();
        assert!(
            matches!(&err, LoadError::SymbolMissing { path, .. } if path == &libc),
            "{err:?}"
        );
    }

    /// A stand-in `VBoxXPCOMC.so` in a new directory, built with the host's C compiler: its
    /// `VBoxGetCAPIFunctions` answers a table of C API version `table` whose
    /// `pfnGetAPIVersion` says `api`; the rest of the table is zeros (no functions).
    #[cfg(all(feature = "virtualbox-ffi", target_os = "linux"))]
    fn fake_library(table: u32, api: u32) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("fake.c");
        std::fs::write(
            &src,
            format!(
                "static unsigned version(void) {{ return 7001007; }}\n\
                 static unsigned api(void) {{ return {api}; }}\n\
                 static struct {{ unsigned cb, v; void *fns[64]; }} t = \
                 {{ sizeof t, {table}u, {{ (void *)version, (void *)api }} }};\n\
                 const void *VBoxGetCAPIFunctions(unsigned v) {{ (void)v; return &t; }}\n"
            ),
        )
        .unwrap();
        let status = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(dir.path().join(LIBRARY_NAME))
            .arg(&src)
            .status()
            .unwrap();
        assert!(status.success());
        dir
    }

    #[cfg(all(feature = "virtualbox-ffi", target_os = "linux"))]
    #[test]
    fn a_library_with_another_table_version_is_refused() {
        let home = fake_library(0x0003_0000, 7001);
        let err = Client::open_from(&search_path(Some(home.path()))).unwrap_err();
        assert!(
            matches!(
                err,
                LoadError::VersionMismatch {
                    found: 0x0003_0000,
                    expected: 0x0004_0001,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[cfg(all(feature = "virtualbox-ffi", target_os = "linux"))]
    #[test]
    fn a_library_of_another_virtualbox_api_is_refused() {
        // VirtualBox 7.0 has the same table version as 7.1 but other interface tables.
        let home = fake_library(0x0004_0001, 7000);
        let err = Client::open_from(&search_path(Some(home.path()))).unwrap_err();
        assert!(
            matches!(
                err,
                LoadError::ApiMismatch {
                    found: 7000,
                    built: 7001
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("7.0"), "{err}");
    }

    #[test]
    fn states_read_as_showvminfo_prints_them() {
        assert_eq!(MachineState::PoweredOff.as_str(), "poweroff");
        assert_eq!(MachineState::Stuck.as_str(), "gurumeditation");
        assert_eq!(MachineState::Other(99).as_str(), "unknown");
    }
}
