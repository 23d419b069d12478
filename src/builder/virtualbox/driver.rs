//! The VirtualBox driver seam: every `VBoxManage` call the VirtualBox steps make is a typed
//! [`VBoxOp`], rendered to its command line by [`VBoxOp::argv`] for the VirtualBox version the
//! [`Driver`] reports: options that changed between 6.1, 7.0 and 7.1 are spelled there, in one
//! place (whether a command is needed at all, as `--nat-localhostreachable1` from 7.0, is the
//! step's decision). [`HostDriver`] runs the host's `VBoxManage`; the recording `testing::FakeDriver` keeps
//! the command lines so step tests compare them to goldens, as Packer's steps run against its
//! `DriverMock`. Typing and state polls have their own [`Driver`] methods: [`HostDriver`] sends
//! them through VirtualBox's C API (`virtualbox-sys`, kiln's feature `virtualbox-capi`) when it
//! loads, and through `VBoxManage` otherwise.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::OnceCell;

/// A VirtualBox version, as `VBoxManage --version` prints it (`7.0.14r161095`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// `7`.
    pub major: u32,
    /// `0`.
    pub minor: u32,
    /// `14`.
    pub patch: u32,
}

impl Version {
    /// VirtualBox 6.1: the oldest kiln drives.
    pub const V6_1: Version = Version::new(6, 1, 0);
    /// VirtualBox 7.0: renamed audio options, NAT no longer reaches the host's loopback.
    pub const V7_0: Version = Version::new(7, 0, 0);
    /// VirtualBox 7.1.
    pub const V7_1: Version = Version::new(7, 1, 0);

    /// `major.minor.patch`.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Reads `VBoxManage --version` output: the leading dotted number, before any `r<rev>`,
    /// `_RC1` or `_OSE` suffix.
    pub fn parse(output: &str) -> Result<Version, VBoxError> {
        let text = output.trim();
        // A broken kernel module makes VBoxManage print a warning about vboxdrv instead of (or
        // before) the version; nothing will work, so say that rather than guess a version.
        if text.contains("vboxdrv") {
            return Err(VBoxError::NotSetUp(text.to_owned()));
        }
        let digits: String = text
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let mut parts = digits.split('.').map(str::parse::<u32>);
        match (parts.next(), parts.next()) {
            (Some(Ok(major)), Some(Ok(minor))) => {
                let patch = parts.next().and_then(Result::ok).unwrap_or(0);
                Ok(Version::new(major, minor, patch))
            }
            _ => Err(VBoxError::NoVersion(text.to_owned())),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Why a `VBoxManage` call failed.
#[derive(Debug, thiserror::Error)]
pub enum VBoxError {
    /// No `VBoxManage` on `PATH` or in `VBOX_INSTALL_PATH`.
    #[error("VBoxManage was not found on PATH or in VBOX_INSTALL_PATH\nhint: install VirtualBox (6.1, 7.0 or 7.1), or set VBOX_INSTALL_PATH to the directory holding VBoxManage")]
    NotFound,
    /// `VBoxManage` could not be started.
    #[error("cannot run {}", .binary.display())]
    Spawn {
        /// The `VBoxManage` found.
        binary: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `VBoxManage` failed: a non-zero exit, or an error reported on stderr with exit status 0
    /// (VBoxManage does that for some failures, and Packer treats them as failures too).
    #[error("VBoxManage {command} failed ({status}): {stderr}")]
    Failed {
        /// The arguments, joined.
        command: String,
        /// `exit status: 1`, or `exit status 0 with an error on stderr`.
        status: String,
        /// What `VBoxManage` printed on stderr, trimmed.
        stderr: String,
    },
    /// `VBoxManage --version` printed a warning about the kernel driver.
    #[error("VirtualBox is not set up properly: {0}\nhint: check that the vboxdrv kernel module is loaded (`sudo /sbin/vboxconfig`)")]
    NotSetUp(String),
    /// `VBoxManage --version` printed no version.
    #[error("cannot read a version from `VBoxManage --version`: {0:?}")]
    NoVersion(String),
    /// A version kiln does not drive.
    #[error("VirtualBox {0} is too old: kiln drives VirtualBox 6.1, 7.0 and 7.1")]
    Unsupported(Version),
    /// A call through VirtualBox's C API failed.
    #[error("VirtualBox C API: {0}")]
    CApi(#[from] virtualbox_sys::CallError),
}

impl VBoxError {
    /// Whether the call may succeed if repeated: VirtualBox reports
    /// `VBOX_E_INVALID_OBJECT_STATE` while a VM's session is still being released (just after
    /// it powers off), and Packer retries every call on it.
    pub fn is_invalid_object_state(&self) -> bool {
        matches!(self, VBoxError::Failed { stderr, .. } if stderr.contains("VBOX_E_INVALID_OBJECT_STATE"))
    }
}

/// A storage controller's bus, for `storagectl --add`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    /// `ide`.
    Ide,
    /// `sata`.
    Sata,
    /// `scsi`.
    Scsi,
    /// `pcie` (NVMe).
    Pcie,
    /// `VirtIO`.
    VirtIo,
    /// `floppy`.
    Floppy,
}

impl Bus {
    fn arg(self) -> &'static str {
        match self {
            Bus::Ide => "ide",
            Bus::Sata => "sata",
            Bus::Scsi => "scsi",
            Bus::Pcie => "pcie",
            // VirtualBox's manual spells it `virtio`; Packer sends `VirtIO` and VBoxManage
            // compares case-insensitively.
            Bus::VirtIo => "VirtIO",
            Bus::Floppy => "floppy",
        }
    }
}

/// What `storageattach --type` attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceType {
    /// `hdd`.
    Hdd,
    /// `dvddrive`.
    Dvd,
    /// `fdd`.
    Floppy,
}

/// One `modifyvm` setting (Packer sends most of them one command each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    /// `--boot1 disk --boot2 dvd --boot3 none --boot4 none`.
    BootOrderDiskFirst,
    /// `--cpus N`.
    Cpus(u32),
    /// `--ioapic on|off`.
    IoApic(bool),
    /// `--memory MiB`.
    Memory(u32),
    /// `--usb on|off`.
    Usb(bool),
    /// `--usbohci`, `--usbehci`, `--usbxhci` (each on or off, in that order).
    UsbControllers {
        /// OHCI.
        ohci: bool,
        /// EHCI.
        ehci: bool,
        /// xHCI.
        xhci: bool,
    },
    /// The single controller Packer turns on after turning all off (`--usbohci on`…).
    UsbController(String),
    /// No audio (audio_controller = "none"): `--audio-enabled off`, `--audio none` before 7.0.
    AudioOff,
    /// The host audio driver and the emulated controller: `--audio` (6.1) or `--audio-driver`
    /// (7.0 on), with `--audioin on --audioout on` when a driver is set.
    Audio {
        /// `sound` (`none`, `pulse`…).
        driver: String,
        /// `audio_controller`.
        controller: String,
    },
    /// `--mouse`.
    Mouse(String),
    /// `--keyboard`.
    Keyboard(String),
    /// `--chipset`.
    Chipset(String),
    /// `--firmware`.
    Firmware(String),
    /// `--nictype1` … `--nictype8`, all the same.
    NicTypes(String),
    /// `--graphicscontroller C --vram MiB`.
    Graphics {
        /// `gfx_controller`.
        controller: String,
        /// `gfx_vram_size`.
        vram: u32,
    },
    /// `--rtcuseutc on|off`.
    RtcUseUtc(bool),
    /// `--nested-hw-virt on|off`.
    NestedHwVirt(bool),
    /// `--accelerate3d on|off`.
    Accelerate3d(bool),
    /// `--nic1 nat`.
    Nic1Nat,
    /// `--nat-localhostreachable1 on`: from 7.0 a NAT guest no longer reaches the host's
    /// loopback (kiln's HTTP server) unless asked.
    NatLocalhostReachable,
    /// `--natpf1 RULE` (`packercomm,tcp,127.0.0.1,2222,,22`).
    NatPfAdd(String),
    /// `--natpf1 delete NAME`.
    NatPfDelete(String),
    /// `--vrdeaddress A --vrdeauthtype null --vrde on --vrdeport P`.
    Vrde {
        /// `vrdp_bind_address`.
        address: String,
        /// The port picked.
        port: u16,
    },
}

fn on(b: bool) -> String {
    if b { "on" } else { "off" }.to_owned()
}

impl Setting {
    fn args(&self, version: Version) -> Vec<String> {
        let v = |s: &[&str]| s.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
        match self {
            Setting::BootOrderDiskFirst => v(&[
                "--boot1", "disk", "--boot2", "dvd", "--boot3", "none", "--boot4", "none",
            ]),
            Setting::Cpus(n) => vec!["--cpus".into(), n.to_string()],
            Setting::IoApic(b) => vec!["--ioapic".into(), on(*b)],
            Setting::Memory(m) => vec!["--memory".into(), m.to_string()],
            Setting::Usb(b) => vec!["--usb".into(), on(*b)],
            Setting::UsbControllers { ohci, ehci, xhci } => vec![
                "--usbohci".into(),
                on(*ohci),
                "--usbehci".into(),
                on(*ehci),
                "--usbxhci".into(),
                on(*xhci),
            ],
            Setting::UsbController(c) => vec![format!("--usb{c}"), "on".into()],
            // `--audio-enabled` is 7.0's; before it, audio is turned off by its driver. (Packer
            // sends `--audio-enabled` to 6.1 too, which refuses it.)
            Setting::AudioOff if version < Version::V7_0 => v(&["--audio", "none"]),
            Setting::AudioOff => v(&["--audio-enabled", "off"]),
            Setting::Audio { driver, controller } => {
                // `--audio` was renamed `--audio-driver` in 7.0 (the old name is deprecated).
                let flag = if version >= Version::V7_0 {
                    "--audio-driver"
                } else {
                    "--audio"
                };
                let mut a = vec![flag.to_owned(), driver.clone()];
                if !driver.eq_ignore_ascii_case("none") {
                    a.extend(v(&["--audioin", "on", "--audioout", "on"]));
                }
                a.extend(["--audiocontroller".to_owned(), controller.clone()]);
                a
            }
            Setting::Mouse(m) => vec!["--mouse".into(), m.clone()],
            Setting::Keyboard(k) => vec!["--keyboard".into(), k.clone()],
            Setting::Chipset(c) => vec!["--chipset".into(), c.clone()],
            Setting::Firmware(f) => vec!["--firmware".into(), f.clone()],
            Setting::NicTypes(t) => (1..=8)
                .flat_map(|i| [format!("--nictype{i}"), t.clone()])
                .collect(),
            Setting::Graphics { controller, vram } => vec![
                "--graphicscontroller".into(),
                controller.clone(),
                "--vram".into(),
                vram.to_string(),
            ],
            Setting::RtcUseUtc(b) => vec!["--rtcuseutc".into(), on(*b)],
            Setting::NestedHwVirt(b) => vec!["--nested-hw-virt".into(), on(*b)],
            Setting::Accelerate3d(b) => vec!["--accelerate3d".into(), on(*b)],
            Setting::Nic1Nat => v(&["--nic1", "nat"]),
            Setting::NatLocalhostReachable => v(&["--nat-localhostreachable1", "on"]),
            Setting::NatPfAdd(rule) => vec!["--natpf1".into(), rule.clone()],
            Setting::NatPfDelete(name) => vec!["--natpf1".into(), "delete".into(), name.clone()],
            Setting::Vrde { address, port } => vec![
                "--vrdeaddress".into(),
                address.clone(),
                "--vrdeauthtype".into(),
                "null".into(),
                "--vrde".into(),
                "on".into(),
                "--vrdeport".into(),
                port.to_string(),
            ],
        }
    }
}

/// What `controlvm` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// `keyboardputscancode` with these PC-XT bytes (two lowercase hex digits each).
    Scancodes(Vec<u8>),
    /// `acpipowerbutton`.
    AcpiPowerButton,
    /// `poweroff`.
    PowerOff,
}

/// What `snapshot VM …` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotAction {
    /// `take`.
    Take,
    /// `delete`.
    Delete,
    /// `restore`.
    Restore,
}

/// One `VBoxManage` command, as a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VBoxOp {
    /// `createvm --name VM --ostype T --register`.
    CreateVm {
        /// `vm_name`.
        name: String,
        /// `guest_os_type`.
        os_type: String,
    },
    /// `modifyvm VM <settings…>`.
    ModifyVm {
        /// The VM.
        vm: String,
        /// What to set, in order.
        settings: Vec<Setting>,
    },
    /// `setextradata VM KEY VALUE`.
    SetExtraData {
        /// The VM (or `global`).
        vm: String,
        /// `VBoxInternal2/EfiGraphicsResolution`.
        key: String,
        /// Its value.
        value: String,
    },
    /// `storagectl VM --name NAME --add BUS [--controller C] [--portcount N]`.
    AddController {
        /// The VM.
        vm: String,
        /// The controller's name (`IDE`, `SATA`, `VirtioSCSI`, `NVMe`, `Floppy`).
        name: String,
        /// Its bus.
        bus: Bus,
        /// `--controller` (`LSILogic`, `NVMe`, `VirtIO`).
        chipset: Option<String>,
        /// `--portcount`.
        ports: Option<u32>,
    },
    /// `storagectl VM --name NAME --remove`.
    RemoveController {
        /// The VM.
        vm: String,
        /// The controller's name.
        name: String,
    },
    /// `storageattach VM --storagectl C --port P --device D [--type T] --medium M
    /// [--nonrotational on|off --discard on|off]`.
    Attach {
        /// The VM.
        vm: String,
        /// The controller's name.
        controller: String,
        /// Port.
        port: u32,
        /// Device.
        device: u32,
        /// `--type` (Packer leaves it out when it empties the floppy drive).
        kind: Option<DeviceType>,
        /// The file, or `None` to empty the slot (`--medium none`).
        medium: Option<PathBuf>,
        /// `(nonrotational, discard)` for a disk.
        disk_flags: Option<(bool, bool)>,
    },
    /// `createhd --filename F --size MiB --format VDI --variant Standard`.
    CreateDisk {
        /// The new disk.
        path: PathBuf,
        /// Its size in MiB.
        mib: u64,
    },
    /// `startvm VM --type headless|gui`.
    StartVm {
        /// The VM.
        vm: String,
        /// No window.
        headless: bool,
    },
    /// `controlvm VM …`.
    ControlVm {
        /// The VM.
        vm: String,
        /// What to do.
        control: Control,
    },
    /// `showvminfo VM --machinereadable`.
    ShowVmInfo {
        /// The VM.
        vm: String,
    },
    /// `export VM --output PATH [opts…]`.
    Export {
        /// The VM.
        vm: String,
        /// The `.ovf` or `.ova`.
        output: PathBuf,
        /// `export_opts`.
        opts: Vec<String>,
    },
    /// `unregistervm VM --delete`.
    UnregisterDelete {
        /// The VM.
        vm: String,
    },
    /// `import FILE --vsys 0 --vmname VM [args…]`: register the VM of an OVF/OVA.
    Import {
        /// The `.ovf` or `.ova`.
        path: PathBuf,
        /// The name the imported VM gets.
        vm: String,
        /// `import_flags`, then `--options import_opts`.
        args: Vec<String>,
    },
    /// `snapshot VM take|delete|restore NAME`.
    Snapshot {
        /// The VM.
        vm: String,
        /// What to do.
        action: SnapshotAction,
        /// The snapshot's name (or UUID, for `delete` and `restore`).
        snapshot: String,
    },
    /// `list systemproperties`: the host's settings, among them the guest additions ISO
    /// VirtualBox ships (see [`default_additions_iso`]).
    ListSystemProperties,
    /// A `vboxmanage`/`vboxmanage_post` command from the template, already rendered.
    Raw(Vec<String>),
}

/// The `VMState` in `showvminfo --machinereadable` output.
pub fn vm_state(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix("VMState="))
        .map(|v| v.trim_matches('"'))
}

/// The `Default Guest Additions ISO:` that `list systemproperties` reports, if it names one.
pub fn default_additions_iso(properties: &str) -> Option<PathBuf> {
    properties.lines().find_map(|line| {
        let path = line
            .trim_end()
            .strip_prefix("Default Guest Additions ISO:")?
            .trim();
        (!path.is_empty()).then(|| PathBuf::from(path))
    })
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

impl VBoxOp {
    /// The arguments `VBoxManage` is run with, for VirtualBox `version`.
    pub fn argv(&self, version: Version) -> Vec<String> {
        let s = |a: &str| a.to_owned();
        match self {
            VBoxOp::CreateVm { name, os_type } => vec![
                s("createvm"),
                s("--name"),
                name.clone(),
                s("--ostype"),
                os_type.clone(),
                s("--register"),
            ],
            VBoxOp::ModifyVm { vm, settings } => {
                let mut a = vec![s("modifyvm"), vm.clone()];
                a.extend(settings.iter().flat_map(|x| x.args(version)));
                a
            }
            VBoxOp::SetExtraData { vm, key, value } => {
                vec![s("setextradata"), vm.clone(), key.clone(), value.clone()]
            }
            VBoxOp::AddController {
                vm,
                name,
                bus,
                chipset,
                ports,
            } => {
                let mut a = vec![
                    s("storagectl"),
                    vm.clone(),
                    s("--name"),
                    name.clone(),
                    s("--add"),
                    s(bus.arg()),
                ];
                if let Some(c) = chipset {
                    a.extend([s("--controller"), c.clone()]);
                }
                if let Some(n) = ports {
                    a.extend([s("--portcount"), n.to_string()]);
                }
                a
            }
            VBoxOp::RemoveController { vm, name } => {
                vec![
                    s("storagectl"),
                    vm.clone(),
                    s("--name"),
                    name.clone(),
                    s("--remove"),
                ]
            }
            VBoxOp::Attach {
                vm,
                controller,
                port,
                device,
                kind,
                medium,
                disk_flags,
            } => {
                let mut a = vec![
                    s("storageattach"),
                    vm.clone(),
                    s("--storagectl"),
                    controller.clone(),
                    s("--port"),
                    port.to_string(),
                    s("--device"),
                    device.to_string(),
                ];
                if let Some(k) = kind {
                    a.extend([
                        s("--type"),
                        s(match k {
                            DeviceType::Hdd => "hdd",
                            DeviceType::Dvd => "dvddrive",
                            DeviceType::Floppy => "fdd",
                        }),
                    ]);
                }
                a.extend([
                    s("--medium"),
                    medium.as_deref().map_or_else(|| s("none"), path_arg),
                ]);
                if let Some((nonrotational, discard)) = disk_flags {
                    a.extend([
                        s("--nonrotational"),
                        on(*nonrotational),
                        s("--discard"),
                        on(*discard),
                    ]);
                }
                a
            }
            // `createhd` is the pre-5.0 name of `createmedium disk`; every version kiln drives
            // still takes it, and Packer sends it on all of them, so kiln's command sequence is
            // Packer's.
            VBoxOp::CreateDisk { path, mib } => vec![
                s("createhd"),
                s("--filename"),
                path_arg(path),
                s("--size"),
                mib.to_string(),
                s("--format"),
                s("VDI"),
                s("--variant"),
                s("Standard"),
            ],
            VBoxOp::StartVm { vm, headless } => vec![
                s("startvm"),
                vm.clone(),
                s("--type"),
                s(if *headless { "headless" } else { "gui" }),
            ],
            VBoxOp::ControlVm { vm, control } => {
                let mut a = vec![s("controlvm"), vm.clone()];
                match control {
                    Control::Scancodes(codes) => {
                        a.push(s("keyboardputscancode"));
                        a.extend(codes.iter().map(|c| format!("{c:02x}")));
                    }
                    Control::AcpiPowerButton => a.push(s("acpipowerbutton")),
                    Control::PowerOff => a.push(s("poweroff")),
                }
                a
            }
            VBoxOp::ShowVmInfo { vm } => {
                vec![s("showvminfo"), vm.clone(), s("--machinereadable")]
            }
            VBoxOp::Export { vm, output, opts } => {
                let mut a = vec![s("export"), vm.clone(), s("--output"), path_arg(output)];
                a.extend(opts.iter().cloned());
                a
            }
            VBoxOp::UnregisterDelete { vm } => {
                vec![s("unregistervm"), vm.clone(), s("--delete")]
            }
            VBoxOp::Import { path, vm, args } => {
                let mut a = vec![s("import"), path_arg(path), s("--vsys"), s("0")];
                a.extend([s("--vmname"), vm.clone()]);
                a.extend(args.iter().cloned());
                a
            }
            VBoxOp::Snapshot {
                vm,
                action,
                snapshot,
            } => {
                let verb = match action {
                    SnapshotAction::Take => "take",
                    SnapshotAction::Delete => "delete",
                    SnapshotAction::Restore => "restore",
                };
                vec![s("snapshot"), vm.clone(), s(verb), snapshot.clone()]
            }
            VBoxOp::ListSystemProperties => vec![s("list"), s("systemproperties")],
            VBoxOp::Raw(args) => args.clone(),
        }
    }
}

/// What the VirtualBox steps need from the host.
#[async_trait]
pub trait Driver: Send + Sync {
    /// The VirtualBox version (asked once, then remembered).
    async fn version(&self) -> Result<Version, VBoxError>;
    /// Run `op`; its stdout on success.
    async fn run(&self, op: &VBoxOp) -> Result<String, VBoxError>;
    /// The state of `vm` as `showvminfo --machinereadable` names it (`running`, `poweroff`, …);
    /// `None` when VirtualBox did not say.
    async fn vm_state(&self, vm: &str) -> Result<Option<String>, VBoxError> {
        state_by_vboxmanage(self, vm).await
    }
    /// Type PC-XT set-1 `codes` into the running `vm`.
    async fn put_scancodes(&self, vm: &str, codes: Vec<u8>) -> Result<(), VBoxError> {
        type_by_vboxmanage(self, vm, codes).await
    }
}

/// [`Driver::vm_state`] with `showvminfo`.
async fn state_by_vboxmanage<D: Driver + ?Sized>(
    driver: &D,
    vm: &str,
) -> Result<Option<String>, VBoxError> {
    let info = driver
        .run(&VBoxOp::ShowVmInfo { vm: vm.to_owned() })
        .await?;
    Ok(vm_state(&info).map(str::to_owned))
}

/// [`Driver::put_scancodes`] with `controlvm keyboardputscancode`.
async fn type_by_vboxmanage<D: Driver + ?Sized>(
    driver: &D,
    vm: &str,
    codes: Vec<u8>,
) -> Result<(), VBoxError> {
    let op = VBoxOp::ControlVm {
        vm: vm.to_owned(),
        control: Control::Scancodes(codes),
    };
    driver.run(&op).await.map(drop)
}

/// VirtualBox's C API client, opened on first use for the whole process (XPCOM initialises its
/// client once per process); `None` when it does not load, which is said once, here.
async fn capi() -> Option<Arc<virtualbox_sys::Client>> {
    static CLIENT: OnceCell<Option<Arc<virtualbox_sys::Client>>> = OnceCell::const_new();
    CLIENT
        .get_or_init(|| async {
            // Loading the library and connecting to VBoxSVC block.
            let opened = tokio::task::spawn_blocking(virtualbox_sys::Client::open)
                .await
                .unwrap_or_else(|e| {
                    Err(virtualbox_sys::LoadError::Thread(std::io::Error::other(e)))
                });
            match opened {
                Ok(client) => {
                    tracing::info!("typing and polling through VirtualBox's C API");
                    Some(Arc::new(client))
                }
                // The default build: nothing to report.
                Err(virtualbox_sys::LoadError::NotBuilt) => None,
                Err(e) => {
                    tracing::info!("VirtualBox C API not available ({e}); using VBoxManage");
                    None
                }
            }
        })
        .await
        .clone()
}

/// How often and how long [`HostDriver`] retries a call that failed with
/// `VBOX_E_INVALID_OBJECT_STATE` (Packer: 5 tries, a minute apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Calls in all.
    pub tries: u32,
    /// The pause between two calls.
    pub delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            tries: 5,
            delay: Duration::from_secs(60),
        }
    }
}

/// The real driver: the host's `VBoxManage`.
#[derive(Debug)]
pub struct HostDriver {
    binary: PathBuf,
    version: OnceCell<Version>,
    retry: Retry,
}

/// `VBoxManage` in one of `dirs` (`VBOX_INSTALL_PATH`'s list, then `PATH`'s).
fn find_in(dirs: &[std::ffi::OsString]) -> Option<PathBuf> {
    dirs.iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("VBoxManage"))
        .find(|p| p.is_file())
}

/// Whether VBoxManage reported an error on stderr: `VBoxManage: error:` (or
/// `VBoxManage.exe: error:`), which it sometimes prints with exit status 0.
pub fn stderr_has_error(stderr: &str) -> bool {
    stderr.match_indices("VBoxManage").any(|(i, m)| {
        let rest = &stderr[i + m.len()..];
        let rest = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_lowercase());
        rest.starts_with(": error:")
    })
}

impl HostDriver {
    /// The driver for the `VBoxManage` in `VBOX_INSTALL_PATH` (as Packer reads it on Windows;
    /// kiln honours it everywhere), else on `PATH`.
    pub fn locate() -> Result<Self, VBoxError> {
        let dirs: Vec<_> = ["VBOX_INSTALL_PATH", "PATH"]
            .iter()
            .filter_map(std::env::var_os)
            .collect();
        let binary = find_in(&dirs).ok_or(VBoxError::NotFound)?;
        Ok(Self::new(binary, Retry::default()))
    }

    /// The driver for the `VBoxManage` at `binary`.
    pub fn new(binary: PathBuf, retry: Retry) -> Self {
        Self {
            binary,
            version: OnceCell::new(),
            retry,
        }
    }

    /// Run `VBoxManage args` once.
    async fn exec(&self, args: &[String]) -> Result<String, VBoxError> {
        tracing::debug!("VBoxManage {}", args.join(" "));
        let mut cmd = crate::child::command(&self.binary.display().to_string());
        // Its own process group: a terminal's Ctrl-C reaches kiln, which cancels the build
        // and cleans up (unregisters the VM) with VBoxManage, instead of the call dying first.
        cmd.args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let spawn = |source| VBoxError::Spawn {
            binary: self.binary.clone(),
            source,
        };
        let child = crate::child::spawn(cmd).map_err(spawn)?;
        let out = child.wait_with_output().await.map_err(spawn)?;
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        let failed = |status: String| VBoxError::Failed {
            command: args.join(" "),
            status,
            stderr: stderr.clone(),
        };
        if !out.status.success() {
            return Err(failed(out.status.to_string()));
        }
        if stderr_has_error(&stderr) {
            return Err(failed("exit status 0 with an error on stderr".into()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

#[async_trait]
impl Driver for HostDriver {
    async fn version(&self) -> Result<Version, VBoxError> {
        let v = self
            .version
            .get_or_try_init(|| async {
                let out = self.exec(&["--version".to_owned()]).await?;
                Version::parse(&out)
            })
            .await?;
        if *v < Version::V6_1 {
            return Err(VBoxError::Unsupported(*v));
        }
        Ok(*v)
    }

    async fn vm_state(&self, vm: &str) -> Result<Option<String>, VBoxError> {
        if let Some(client) = capi().await {
            let name = vm.to_owned();
            let state = tokio::task::spawn_blocking(move || client.machine_state(&name))
                .await
                .unwrap_or(Err(virtualbox_sys::CallError::Stopped));
            match state {
                Ok(state) => return Ok(Some(state.as_str().to_owned())),
                // A poll may fall back (VBoxSVC restarted under the client, say): asking
                // twice changes nothing.
                Err(e) => tracing::debug!("VirtualBox C API: {e}; asking VBoxManage"),
            }
        }
        state_by_vboxmanage(self, vm).await
    }

    async fn put_scancodes(&self, vm: &str, codes: Vec<u8>) -> Result<(), VBoxError> {
        let Some(client) = capi().await else {
            return type_by_vboxmanage(self, vm, codes).await;
        };
        // No fall-back here: codes VirtualBox took would be typed twice.
        let name = vm.to_owned();
        tokio::task::spawn_blocking(move || client.put_scancodes(&name, &codes))
            .await
            .unwrap_or(Err(virtualbox_sys::CallError::Stopped))?;
        Ok(())
    }

    async fn run(&self, op: &VBoxOp) -> Result<String, VBoxError> {
        let args = op.argv(self.version().await?);
        let mut tries = 1;
        loop {
            match self.exec(&args).await {
                Err(e) if e.is_invalid_object_state() && tries < self.retry.tries => {
                    tracing::info!("VBoxManage {}: {e}; retrying", args.join(" "));
                    tries += 1;
                    tokio::time::sleep(self.retry.delay).await;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
pub mod testing {
    //! [`FakeDriver`]: records the command lines the VirtualBox steps run and answers as told.
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;

    /// A driver that records every call as its command line and fails the ones it is told to.
    pub struct FakeDriver {
        /// The version it reports.
        pub version: Version,
        /// Every call, as `VBoxManage`'s arguments joined by spaces.
        pub calls: Mutex<Vec<String>>,
        /// Fail the calls whose command line contains this, with this stderr.
        pub fail: Mutex<Vec<(String, String)>>,
        /// What successive `showvminfo` calls answer for `VMState` (the last one repeats).
        pub states: Mutex<VecDeque<&'static str>>,
        /// Answer the calls whose command line contains this with this stdout.
        pub answers: Mutex<Vec<(String, String)>>,
    }

    impl Default for FakeDriver {
        fn default() -> Self {
            Self {
                version: Version::V7_1,
                calls: Mutex::default(),
                fail: Mutex::default(),
                states: Mutex::new(VecDeque::from(["running"])),
                answers: Mutex::default(),
            }
        }
    }

    impl FakeDriver {
        /// A fake reporting `version`.
        pub fn with_version(version: Version) -> Self {
            Self {
                version,
                ..Self::default()
            }
        }
        /// Fail calls containing `needle` with `stderr`.
        pub fn fail_on(&self, needle: &str, stderr: &str) {
            if let Ok(mut f) = self.fail.lock() {
                f.push((needle.to_owned(), stderr.to_owned()));
            }
        }
        /// Answer calls containing `needle` with `stdout`.
        pub fn answer_on(&self, needle: &str, stdout: &str) {
            if let Ok(mut a) = self.answers.lock() {
                a.push((needle.to_owned(), stdout.to_owned()));
            }
        }
        /// Answer `showvminfo` with these states, in turn.
        pub fn set_states(&self, states: &[&'static str]) {
            if let Ok(mut s) = self.states.lock() {
                *s = states.iter().copied().collect();
            }
        }
        /// The calls so far.
        pub fn calls(&self) -> Vec<String> {
            self.calls.lock().map(|c| c.clone()).unwrap_or_default()
        }
        /// The calls so far without the state polls (`showvminfo`), whose number depends on
        /// timing.
        pub fn commands(&self) -> Vec<String> {
            self.calls()
                .into_iter()
                .filter(|c| !c.starts_with("showvminfo"))
                .collect()
        }
    }

    #[async_trait]
    impl Driver for FakeDriver {
        async fn version(&self) -> Result<Version, VBoxError> {
            Ok(self.version)
        }

        async fn run(&self, op: &VBoxOp) -> Result<String, VBoxError> {
            let line = op.argv(self.version).join(" ");
            if let Ok(mut c) = self.calls.lock() {
                c.push(line.clone());
            }
            let failure = self.fail.lock().ok().and_then(|f| {
                f.iter()
                    .find(|(needle, _)| line.contains(needle.as_str()))
                    .map(|(_, stderr)| stderr.clone())
            });
            if let Some(stderr) = failure {
                return Err(VBoxError::Failed {
                    command: line,
                    status: "exit status: 1".into(),
                    stderr,
                });
            }
            // The files exist afterwards, as with VirtualBox, so later steps (and the
            // artifact) see them.
            if let VBoxOp::CreateDisk { path, .. } | VBoxOp::Export { output: path, .. } = op {
                let _ = std::fs::write(path, b"fake");
            }
            if matches!(op, VBoxOp::ShowVmInfo { .. }) {
                let state = self
                    .states
                    .lock()
                    .ok()
                    .and_then(|mut s| {
                        if s.len() > 1 {
                            s.pop_front()
                        } else {
                            s.front().copied()
                        }
                    })
                    .unwrap_or("running");
                return Ok(format!(
                    "name=\"vm\"\nVMState=\"{state}\"\nVMStateChangeTime=\"2026-01-01T00:00:00\""
                ));
            }
            let answer = self.answers.lock().ok().and_then(|a| {
                a.iter()
                    .find(|(needle, _)| line.contains(needle.as_str()))
                    .map(|(_, stdout)| stdout.clone())
            });
            Ok(answer.unwrap_or_default())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_from_vboxmanage_output() {
        assert_eq!(
            Version::parse("7.0.14r161095\n").unwrap(),
            Version::new(7, 0, 14)
        );
        assert_eq!(
            Version::parse("6.1.50_Ubuntur161033").unwrap(),
            Version::new(6, 1, 50)
        );
        assert_eq!(Version::parse("7.1.0_RC1r164").unwrap(), Version::V7_1);
        assert!(matches!(
            Version::parse("WARNING: The vboxdrv kernel module is not loaded."),
            Err(VBoxError::NotSetUp(_))
        ));
        assert!(matches!(
            Version::parse("garbage"),
            Err(VBoxError::NoVersion(_))
        ));
    }

    #[test]
    fn version_dependent_flags_follow_the_version() {
        let audio = VBoxOp::ModifyVm {
            vm: "vm".into(),
            settings: vec![Setting::Audio {
                driver: "none".into(),
                controller: "ac97".into(),
            }],
        };
        assert_eq!(
            audio.argv(Version::V6_1).join(" "),
            "modifyvm vm --audio none --audiocontroller ac97"
        );
        assert_eq!(
            audio.argv(Version::V7_0).join(" "),
            "modifyvm vm --audio-driver none --audiocontroller ac97"
        );
        let pulse = VBoxOp::ModifyVm {
            vm: "vm".into(),
            settings: vec![Setting::Audio {
                driver: "pulse".into(),
                controller: "hda".into(),
            }],
        };
        let off = VBoxOp::ModifyVm {
            vm: "vm".into(),
            settings: vec![Setting::AudioOff],
        };
        assert_eq!(
            off.argv(Version::V6_1).join(" "),
            "modifyvm vm --audio none"
        );
        assert_eq!(
            off.argv(Version::V7_0).join(" "),
            "modifyvm vm --audio-enabled off"
        );
        assert_eq!(
            pulse.argv(Version::V7_1).join(" "),
            "modifyvm vm --audio-driver pulse --audioin on --audioout on --audiocontroller hda"
        );
    }

    #[test]
    fn ops_render_as_packer_sends_them() {
        let v = Version::V7_1;
        let line = |op: VBoxOp| op.argv(v).join(" ");
        assert_eq!(
            line(VBoxOp::ControlVm {
                vm: "vm".into(),
                control: Control::Scancodes(vec![0x2a, 0x1e, 0x9e, 0xaa, 0xe0, 0x48]),
            }),
            "controlvm vm keyboardputscancode 2a 1e 9e aa e0 48"
        );
        assert_eq!(
            line(VBoxOp::Attach {
                vm: "vm".into(),
                controller: "Floppy".into(),
                port: 0,
                device: 0,
                kind: None,
                medium: None,
                disk_flags: None,
            }),
            "storageattach vm --storagectl Floppy --port 0 --device 0 --medium none"
        );
        assert_eq!(
            line(VBoxOp::ModifyVm {
                vm: "vm".into(),
                settings: vec![Setting::NicTypes("virtio".into())],
            }),
            "modifyvm vm --nictype1 virtio --nictype2 virtio --nictype3 virtio --nictype4 virtio \
             --nictype5 virtio --nictype6 virtio --nictype7 virtio --nictype8 virtio"
        );
        assert_eq!(
            line(VBoxOp::AddController {
                vm: "vm".into(),
                name: "NVMe".into(),
                bus: Bus::Pcie,
                chipset: Some("NVMe".into()),
                ports: Some(2),
            }),
            "storagectl vm --name NVMe --add pcie --controller NVMe --portcount 2"
        );
    }

    #[test]
    fn an_error_on_stderr_is_recognised_with_or_without_exe() {
        assert!(stderr_has_error(
            "VBoxManage: error: Could not find a registered machine named 'x'"
        ));
        assert!(stderr_has_error("VBoxManage.exe: error: nope"));
        assert!(!stderr_has_error("VBoxManage: warning: deprecated option"));
        assert!(!stderr_has_error("0%...10%...100%"));
    }

    /// A stand-in `VBoxManage` script in `dir` that runs `body` (sh), logging its arguments.
    fn standin(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("VBoxManage");
        let script = format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 7.0.14r161095; exit 0; fi\necho \"$*\" >> {}/log\n{body}\n",
            dir.display()
        );
        std::fs::write(&p, script).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn quick() -> Retry {
        Retry {
            tries: 3,
            delay: Duration::from_millis(1),
        }
    }

    fn log(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[tokio::test]
    async fn host_driver_runs_vboxmanage_with_the_rendered_arguments() {
        let t = tempfile::tempdir().unwrap();
        let d = HostDriver::new(standin(t.path(), "echo ok"), quick());
        assert_eq!(d.version().await.unwrap(), Version::new(7, 0, 14));
        let out = d
            .run(&VBoxOp::StartVm {
                vm: "vm".into(),
                headless: true,
            })
            .await
            .unwrap();
        assert_eq!(out, "ok");
        assert_eq!(log(t.path()), ["startvm vm --type headless"]);
    }

    #[tokio::test]
    async fn host_driver_fails_on_exit_status_and_on_an_error_with_exit_zero() {
        let t = tempfile::tempdir().unwrap();
        let d = HostDriver::new(
            standin(
                t.path(),
                "echo 'VBoxManage: error: machine locked' >&2; exit 1",
            ),
            quick(),
        );
        let e = d
            .run(&VBoxOp::UnregisterDelete { vm: "vm".into() })
            .await
            .unwrap_err();
        let text = crate::report::chain(&e);
        assert!(
            text.contains("unregistervm vm --delete")
                && text.contains("machine locked")
                && text.contains("exit status: 1"),
            "{text}"
        );
        let t = tempfile::tempdir().unwrap();
        let d = HostDriver::new(
            standin(t.path(), "echo 'VBoxManage: error: no such VM' >&2; exit 0"),
            quick(),
        );
        let e = d
            .run(&VBoxOp::ShowVmInfo { vm: "vm".into() })
            .await
            .unwrap_err();
        assert!(matches!(&e, VBoxError::Failed { status, .. } if status.contains("exit status 0")));
        assert_eq!(log(t.path()).len(), 1, "not retried");
    }

    #[tokio::test]
    async fn host_driver_retries_invalid_object_state_then_succeeds_or_gives_up() {
        let t = tempfile::tempdir().unwrap();
        // Fails twice with the locked-session error, then succeeds.
        let body = format!(
            "n=$(wc -l < {}/log)\nif [ \"$n\" -lt 3 ]; then echo 'VBoxManage: error: Details: code VBOX_E_INVALID_OBJECT_STATE (0x80bb0007)' >&2; exit 1; fi",
            t.path().display()
        );
        let d = HostDriver::new(standin(t.path(), &body), quick());
        d.run(&VBoxOp::UnregisterDelete { vm: "vm".into() })
            .await
            .unwrap();
        assert_eq!(log(t.path()).len(), 3);
        let t = tempfile::tempdir().unwrap();
        let d = HostDriver::new(
            standin(
                t.path(),
                "echo 'VBoxManage: error: code VBOX_E_INVALID_OBJECT_STATE' >&2; exit 1",
            ),
            quick(),
        );
        let e = d
            .run(&VBoxOp::UnregisterDelete { vm: "vm".into() })
            .await
            .unwrap_err();
        assert!(e.is_invalid_object_state());
        assert_eq!(log(t.path()).len(), 3, "as many calls as tries");
    }

    #[tokio::test]
    async fn host_driver_refuses_a_version_older_than_6_1() {
        let t = tempfile::tempdir().unwrap();
        let p = standin(t.path(), "");
        let script = std::fs::read_to_string(&p)
            .unwrap()
            .replace("7.0.14r161095", "5.2.44r139111");
        std::fs::write(&p, script).unwrap();
        let d = HostDriver::new(p, quick());
        let e = d
            .run(&VBoxOp::ShowVmInfo { vm: "vm".into() })
            .await
            .unwrap_err();
        assert!(e.to_string().contains("5.2.44 is too old"), "{e}");
        assert!(log(t.path()).is_empty(), "nothing run on an old VirtualBox");
    }

    #[test]
    fn vboxmanage_is_found_in_the_listed_directories() {
        let t = tempfile::tempdir().unwrap();
        standin(t.path(), "");
        let dirs = vec![
            std::ffi::OsString::from("/nonexistent"),
            t.path().as_os_str().to_owned(),
        ];
        assert_eq!(find_in(&dirs), Some(t.path().join("VBoxManage")));
        assert_eq!(find_in(&[std::ffi::OsString::from("/nonexistent")]), None);
    }
}
