//! Options of the VMware source types (`vmware-iso`, `vmware-vmx`), with Packer's names,
//! defaults and checks (VMware plugin v2). What the shared VMware steps read is
//! [`VmwareCommon`] (run, VNC, tools, `.vmx` data, disks, export, snapshot); the virtual
//! hardware `vmware-iso` describes is [`VmwareHardware`]; both are flattened into each
//! builder's struct beside the option groups of [`super::common`] (serde cannot refuse
//! unknown options through a flattened struct that itself flattens others, so nothing inside
//! them is flattened).
//!
//! Where kiln is laxer than the v2 plugin, it is for the templates written for Packer 1.x that
//! kiln validates (bento's and boxcutter's JSON): a missing `network_adapter_type`, and tools
//! options without `tools_mode`, are warnings (kiln uses `e1000` and `upload`, as Packer 1.x
//! did), not errors. The tools ISO is looked for when the build starts, not at validate time,
//! as kiln validates without VMware installed.

use super::common;
use super::common::{
    BootConfig, CdConfig, CommConfig, FloppyConfig, HttpConfig, IsoConfig, OutputConfig,
    ShutdownConfig,
};
use super::weak;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `tools_mode` values.
const TOOLS_MODES: &[&str] = &["upload", "attach", "disable"];
/// `tools_upload_flavor` values.
const TOOLS_FLAVORS: &[&str] = &["darwin", "linux", "windows"];
/// `network_adapter_type` values.
const NETWORK_ADAPTERS: &[&str] = &["vmxnet3", "e1000e", "e1000"];
/// `usb_version` values.
const USB_VERSIONS: &[&str] = &["2.0", "3.1", "3.2"];
/// `cdrom_adapter_type` values.
const CDROM_ADAPTERS: &[&str] = &["ide", "sata", "scsi"];
/// `firmware` values.
const FIRMWARES: &[&str] = &["bios", "efi", "efi-secure"];
/// The oldest virtual hardware version the v2 plugin accepts.
pub const MINIMUM_HARDWARE_VERSION: u32 = 19;

/// The options every VMware builder has and the shared steps read.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct VmwareCommon {
    /// Path of VMware Fusion (macOS).
    pub fusion_app_path: Option<String>,
    /// `esx5` for remote builds: refused, as the v2 plugin refuses it.
    pub remote_type: Option<String>,
    /// Run without a window.
    #[serde(deserialize_with = "weak::bool")]
    pub headless: bool,
    /// VNC listen address.
    pub vnc_bind_address: String,
    /// Lowest VNC port.
    #[serde(deserialize_with = "weak::int")]
    pub vnc_port_min: u16,
    /// Highest VNC port.
    #[serde(deserialize_with = "weak::int")]
    pub vnc_port_max: u16,
    /// No VNC password.
    #[serde(deserialize_with = "weak::bool")]
    pub vnc_disable_password: bool,
    /// `upload`, `attach` or `disable`.
    pub tools_mode: Option<String>,
    /// `linux`, `windows` or `darwin`: the tools ISO VMware ships for that guest.
    pub tools_upload_flavor: Option<String>,
    /// Upload path in the guest (`{{ .Flavor }}` is the flavor).
    pub tools_upload_path: Option<String>,
    /// A tools ISO on the host, instead of the flavor's.
    pub tools_source_path: Option<String>,
    /// Extra `.vmx` entries.
    pub vmx_data: BTreeMap<String, String>,
    /// `.vmx` entries set after the build.
    pub vmx_data_post: BTreeMap<String, String>,
    /// Remove network adapters from the final `.vmx`.
    #[serde(deserialize_with = "weak::bool")]
    pub vmx_remove_ethernet_interfaces: bool,
    /// Display name in the `.vmx`.
    pub display_name: Option<String>,
    /// `vmx`, `ovf` or `ova`.
    pub format: Option<String>,
    /// Extra `ovftool` options.
    pub ovftool_options: Vec<String>,
    /// Do not export.
    #[serde(deserialize_with = "weak::bool")]
    pub skip_export: bool,
    /// Do not defragment / shrink the disks.
    #[serde(deserialize_with = "weak::bool")]
    pub skip_compaction: bool,
    /// Sizes in MiB of extra disks.
    pub disk_additional_size: Vec<u64>,
    /// `ide`, `sata`, `nvme`, `scsi`, `lsilogic`, `pvscsi`….
    pub disk_adapter_type: String,
    /// Base name of the disk files.
    pub vmdk_name: String,
    /// vmware-vdiskmanager disk type (1: growable split in 2GB files).
    pub disk_type_id: String,
    /// `ide`, `sata` or `scsi`.
    pub cdrom_adapter_type: Option<String>,
    /// Virtual hardware version.
    #[serde(deserialize_with = "weak::int")]
    pub version: u32,
    /// Take a snapshot with this name once the VM is built.
    pub snapshot_name: Option<String>,
}

impl Default for VmwareCommon {
    fn default() -> Self {
        Self {
            fusion_app_path: None,
            remote_type: None,
            headless: false,
            vnc_bind_address: "127.0.0.1".into(),
            vnc_port_min: 5900,
            vnc_port_max: 6000,
            vnc_disable_password: false,
            tools_mode: None,
            tools_upload_flavor: None,
            tools_upload_path: None,
            tools_source_path: None,
            vmx_data: BTreeMap::new(),
            vmx_data_post: BTreeMap::new(),
            vmx_remove_ethernet_interfaces: false,
            display_name: None,
            format: None,
            ovftool_options: Vec::new(),
            skip_export: false,
            skip_compaction: false,
            disk_additional_size: Vec::new(),
            disk_adapter_type: "lsilogic".into(),
            vmdk_name: "disk".into(),
            disk_type_id: "1".into(),
            cdrom_adapter_type: None,
            version: 21,
            snapshot_name: None,
        }
    }
}

/// Where the VMware Tools ISO goes, as `tools_*` ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolsMode {
    /// Uploaded over the communicator after it connects.
    Upload,
    /// Attached as a CD-ROM for the build.
    Attach,
}

fn set(o: &Option<String>) -> Option<&str> {
    o.as_deref().filter(|s| !s.is_empty())
}

impl VmwareCommon {
    /// What is done with the tools ISO: `None` when nothing (`disable`, or no tools option).
    /// Without `tools_mode`, a flavor or source path means upload, as in Packer 1.x.
    pub fn tools_mode(&self) -> Option<ToolsMode> {
        match set(&self.tools_mode) {
            Some("upload") => Some(ToolsMode::Upload),
            Some("attach") => Some(ToolsMode::Attach),
            Some(_) => None,
            None => (set(&self.tools_upload_flavor).is_some()
                || set(&self.tools_source_path).is_some())
            .then_some(ToolsMode::Upload),
        }
    }

    /// `tools_upload_flavor`, unless empty.
    pub fn tools_flavor(&self) -> Option<&str> {
        set(&self.tools_upload_flavor)
    }

    /// `tools_source_path`, unless empty.
    pub fn tools_source(&self) -> Option<&str> {
        set(&self.tools_source_path)
    }

    /// Where the tools ISO is uploaded in the guest: `tools_upload_path` with `{{ .Flavor }}`
    /// rendered (Packer's default `{{ .Flavor }}.iso`); the source file's name when uploading
    /// `tools_source_path` without one (Packer leaves that path empty, and the upload fails).
    pub fn tools_upload_path(&self) -> String {
        let flavor = self.tools_flavor().unwrap_or_default();
        let template = match (set(&self.tools_upload_path), self.tools_source()) {
            (Some(p), _) => p.to_owned(),
            (None, Some(src)) if flavor.is_empty() => std::path::Path::new(src)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "vmware-tools.iso".into()),
            _ => "{{ .Flavor }}.iso".to_owned(),
        };
        render_flavor(&template, flavor)
    }

    /// `snapshot_name`, unless empty.
    pub fn snapshot_name(&self) -> Option<&str> {
        set(&self.snapshot_name)
    }
}

/// `template` with every `{{ .Flavor }}` (any spacing) replaced by `flavor`.
fn render_flavor(template: &str, flavor: &str) -> String {
    boot_commands::render_known(template, |e| (e == ".Flavor").then(|| flavor.to_owned()))
}

impl common::Group for VmwareCommon {
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(f) = set(&self.format) {
            if !["vmx", "ovf", "ova"].contains(&f) {
                out.push((
                    "format",
                    format!("format {f:?} is not supported: use ovf, ova or vmx"),
                ));
            }
        }
        for (option, data) in [
            ("vmx_data", &self.vmx_data),
            ("vmx_data_post", &self.vmx_data_post),
        ] {
            for key in data.keys().filter(|k| !crate::vmx::is_valid_key(k)) {
                out.push((
                    option,
                    format!("{option} key {key:?} cannot be written to a .vmx (no spaces, `=`, `\"`, `#` or control characters)"),
                ));
            }
        }
        if set(&self.remote_type).is_some() {
            out.push((
                "remote_type",
                "remote (ESXi) builds are not supported: VMware's plugin dropped them in v2.0.0, and kiln builds on the local VMware Workstation, Player or Fusion only\nhint: remove remote_type (use the vsphere-iso builder of Packer for ESXi)".to_owned(),
            ));
        }
        if self.vnc_port_min > self.vnc_port_max {
            out.push((
                "vnc_port_min",
                "vnc_port_min must be less than vnc_port_max".to_owned(),
            ));
        }
        if self.version < MINIMUM_HARDWARE_VERSION {
            out.push((
                "version",
                format!(
                    "version {} is too old: the minimum virtual hardware version is {MINIMUM_HARDWARE_VERSION}",
                    self.version
                ),
            ));
        }
        if let Some(c) = set(&self.cdrom_adapter_type) {
            if !CDROM_ADAPTERS.contains(&c.to_ascii_lowercase().as_str()) {
                out.push((
                    "cdrom_adapter_type",
                    format!("cdrom_adapter_type {c:?} is not valid: use ide, sata or scsi"),
                ));
            }
        }
        out.extend(self.tools_problems());
        out
    }

    fn warnings(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if set(&self.tools_mode).is_none()
            && (self.tools_flavor().is_some()
                || self.tools_source().is_some()
                || set(&self.tools_upload_path).is_some())
        {
            out.push((
                "tools_mode",
                "tools_mode is not set: VMware's plugin v2 requires it with the other tools options; kiln uploads the tools ISO (tools_mode = \"upload\"), as Packer 1.x did".to_owned(),
            ));
        }
        out
    }
}

impl VmwareCommon {
    /// Packer's checks of `tools_*` (the ISO itself is looked for when the build starts).
    fn tools_problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mode = set(&self.tools_mode);
        if let Some(m) = mode {
            if !TOOLS_MODES.contains(&m) {
                out.push((
                    "tools_mode",
                    format!("tools_mode {m:?} is not valid: use upload, attach or disable"),
                ));
            }
        }
        if let Some(f) = self.tools_flavor() {
            if mode != Some("disable") && !TOOLS_FLAVORS.contains(&f) {
                out.push((
                    "tools_upload_flavor",
                    format!("tools_upload_flavor {f:?} is not valid: use darwin, linux or windows"),
                ));
            }
        }
        match mode {
            Some("attach") => {
                if set(&self.tools_upload_path).is_some() {
                    out.push((
                        "tools_upload_path",
                        "tools_upload_path can only be used with tools_mode = \"upload\""
                            .to_owned(),
                    ));
                }
                if self.tools_flavor().is_some() {
                    out.push((
                        "tools_upload_flavor",
                        "tools_upload_flavor can only be used with tools_mode = \"upload\""
                            .to_owned(),
                    ));
                }
                if self.tools_source().is_none() {
                    out.push((
                        "tools_source_path",
                        "tools_source_path is required with tools_mode = \"attach\"".to_owned(),
                    ));
                }
            }
            Some("disable") => {}
            // upload, or unset (a Packer 1.x template: upload).
            _ => {
                if self.tools_flavor().is_some() && self.tools_source().is_some() {
                    out.push((
                        "tools_source_path",
                        "tools_upload_flavor and tools_source_path cannot both be set: use one or the other".to_owned(),
                    ));
                }
                if mode == Some("upload")
                    && self.tools_flavor().is_none()
                    && self.tools_source().is_none()
                {
                    out.push((
                        "tools_mode",
                        "tools_mode = \"upload\" needs tools_upload_flavor or tools_source_path"
                            .to_owned(),
                    ));
                }
            }
        }
        out
    }
}

/// The virtual hardware `vmware-iso` describes (Packer's `HWConfig`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct VmwareHardware {
    /// `bios`, `efi` or `efi-secure`.
    pub firmware: Option<String>,
    /// Virtual CPUs.
    #[serde(deserialize_with = "weak::opt_int")]
    pub cpus: Option<u32>,
    /// Cores per socket.
    #[serde(deserialize_with = "weak::opt_int")]
    pub cores: Option<u32>,
    /// Memory in MiB.
    #[serde(deserialize_with = "weak::opt_int")]
    pub memory: Option<u32>,
    /// `nat`, `bridged`, `hostonly` or a custom network.
    pub network: Option<String>,
    /// Network name (remote builds, which kiln refuses; accepted as Packer accepts it).
    pub network_name: Option<String>,
    /// NIC model: `e1000`, `e1000e` or `vmxnet3`.
    pub network_adapter_type: Option<String>,
    /// Add a sound card.
    #[serde(deserialize_with = "weak::bool")]
    pub sound: bool,
    /// Add a USB controller.
    #[serde(deserialize_with = "weak::bool")]
    pub usb: bool,
    /// `2.0`, `3.1` (the default with `usb`) or `3.2`.
    pub usb_version: Option<String>,
    /// Serial port specification.
    pub serial: Option<String>,
    /// Parallel port specification.
    pub parallel: Option<String>,
}

impl VmwareHardware {
    /// The USB version the VM gets: `None` without `usb`.
    pub fn usb_version(&self) -> Option<&str> {
        self.usb.then(|| set(&self.usb_version).unwrap_or("3.1"))
    }
}

/// A `serial` option, parsed as Packer parses it (`NONE` and an empty option are no port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialPort {
    /// `FILE:<path>[,yield]`: output to a host file.
    File {
        /// The host file.
        path: String,
    },
    /// `DEVICE:[<device>,yield]`: a host serial device (`/dev/ttyS0`, or `COM1` on Windows,
    /// when none is named).
    Device {
        /// The host device.
        path: String,
    },
    /// `PIPE:<path>,client|server,app|vm[,yield]`: a named pipe.
    Pipe {
        /// The pipe.
        path: String,
        /// `client` or `server`, as written.
        endpoint: String,
        /// `app` (TRUE: the other end is an application) or `vm` (FALSE).
        app: bool,
        /// `yieldOnMsrRead`.
        yield_cpu: bool,
    },
    /// `AUTO:[yield]`: the host's first serial device, found by VMware.
    Auto {
        /// `yieldOnMsrRead`.
        yield_cpu: bool,
    },
}

/// A `parallel` option, parsed as Packer parses it (`NONE` and an empty option are no port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParallelPort {
    /// `FILE:<path>`: output to a host file.
    File {
        /// The host file.
        path: String,
    },
    /// `DEVICE:<device>[,bi|uni]`: a host parallel port.
    Device {
        /// The host device.
        path: String,
        /// `bi`.
        bidirectional: bool,
    },
    /// `AUTO:[bi|uni]`: the host's first parallel port, found by VMware.
    Auto {
        /// `bi`.
        bidirectional: bool,
    },
}

/// Why a `serial` or `parallel` option does not parse (Packer's reasons).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// Not `FILE`, `DEVICE`, `PIPE`, `AUTO` or `NONE`.
    #[error("unknown serial type {kind}: {spec}\nhint: use FILE:path, DEVICE:path, PIPE:path,client|server,app|vm, AUTO: or NONE")]
    UnknownSerialType {
        /// The type, upper-cased.
        kind: String,
        /// The option.
        spec: String,
    },
    /// Not `FILE`, `DEVICE`, `AUTO` or `NONE`, or too many parts.
    #[error("unexpected format for parallel port: {0}\nhint: use FILE:path, DEVICE:path[,bi|uni], AUTO:[bi|uni] or NONE")]
    Parallel(String),
    /// A parallel port's direction is not `bi` or `uni`.
    #[error("unknown direction {direction} specified for parallel port: {spec} (use BI or UNI)")]
    Direction {
        /// The direction, upper-cased.
        direction: String,
        /// The option.
        spec: String,
    },
    /// A serial port with too many or too few parts.
    #[error("unexpected format for serial port {kind}: {spec}")]
    SerialParts {
        /// `file`, `device` or `pipe`.
        kind: &'static str,
        /// The option.
        spec: String,
    },
    /// A pipe's endpoint or host, or any port's yield flag, that is not one of its words.
    #[error(
        "unexpected format for {what} in serial port {kind}: {spec} -> {value} (use {allowed})"
    )]
    SerialValue {
        /// `endpoint`, `host` or `yield`.
        what: &'static str,
        /// `pipe`, `file`, `device` or `auto`.
        kind: &'static str,
        /// The option.
        spec: String,
        /// What it says there.
        value: String,
        /// What it may say.
        allowed: &'static str,
    },
}

/// The serial device VMware uses when a `DEVICE` or `AUTO` port names none.
pub const DEFAULT_SERIAL_DEVICE: &str = if cfg!(windows) { "COM1" } else { "/dev/ttyS0" };

/// `<type>:<options>`, the type upper-cased; `None` for an unset option or `NONE`.
fn port_parts(spec: &str) -> Option<(String, &str)> {
    let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
    let kind = kind.to_ascii_uppercase();
    (!spec.is_empty() && kind != "NONE").then_some((kind, rest))
}

/// Parses `serial`; `Ok(None)` when there is no port.
pub fn serial_port(spec: &str) -> Result<Option<SerialPort>, PortError> {
    let Some((kind, rest)) = port_parts(spec) else {
        return Ok(None);
    };
    let parts: Vec<&str> = rest.split(',').collect();
    let value = |what, kind, value: &str, allowed| PortError::SerialValue {
        what,
        kind,
        spec: spec.to_owned(),
        value: value.to_owned(),
        allowed,
    };
    let yield_flag = |kind, v: Option<&&str>| match v.map(|v| v.to_ascii_uppercase()) {
        None => Ok(false),
        Some(v) if v == "TRUE" => Ok(true),
        Some(v) if v == "FALSE" => Ok(false),
        Some(v) => Err(value("yield", kind, &v, "TRUE or FALSE")),
    };
    let too_many = |kind| PortError::SerialParts {
        kind,
        spec: spec.to_owned(),
    };
    Ok(Some(match kind.as_str() {
        "PIPE" => {
            if !(3..=4).contains(&parts.len()) {
                return Err(too_many("pipe"));
            }
            let endpoint = parts[1].to_ascii_lowercase();
            if endpoint != "client" && endpoint != "server" {
                return Err(value("endpoint", "pipe", &endpoint, "client or server"));
            }
            let app = match parts[2].to_ascii_lowercase().as_str() {
                "app" => true,
                "vm" => false,
                other => return Err(value("host", "pipe", other, "app or vm")),
            };
            SerialPort::Pipe {
                path: parts[0].to_owned(),
                endpoint: parts[1].to_owned(),
                app,
                yield_cpu: yield_flag("pipe", parts.get(3))?,
            }
        }
        "FILE" => {
            if parts.len() > 2 {
                return Err(too_many("file"));
            }
            yield_flag("file", parts.get(1))?;
            SerialPort::File {
                path: parts[0].to_owned(),
            }
        }
        "DEVICE" => {
            if parts.len() > 2 {
                return Err(too_many("device"));
            }
            yield_flag("device", parts.get(1))?;
            // Packer reads the device only when a yield flag follows it (`DEVICE:/dev/ttyS1`
            // gets /dev/ttyS0 there); kiln takes a device named alone too.
            let path = Some(parts[0])
                .filter(|p| !p.is_empty())
                .unwrap_or(DEFAULT_SERIAL_DEVICE);
            SerialPort::Device {
                path: path.to_owned(),
            }
        }
        "AUTO" => SerialPort::Auto {
            yield_cpu: yield_flag("auto", Some(&rest).filter(|r| !r.is_empty()))?,
        },
        _ => {
            return Err(PortError::UnknownSerialType {
                kind,
                spec: spec.to_owned(),
            })
        }
    }))
}

/// Parses `parallel`; `Ok(None)` when there is no port.
pub fn parallel_port(spec: &str) -> Result<Option<ParallelPort>, PortError> {
    let Some((kind, rest)) = port_parts(spec) else {
        return Ok(None);
    };
    let direction = |d: &str| match d.to_ascii_uppercase().as_str() {
        "" | "UNI" => Ok(false),
        "BI" => Ok(true),
        other => Err(PortError::Direction {
            direction: other.to_owned(),
            spec: spec.to_owned(),
        }),
    };
    Ok(Some(match kind.as_str() {
        "FILE" => ParallelPort::File {
            path: rest.to_owned(),
        },
        "DEVICE" => {
            let parts: Vec<&str> = rest.split(',').collect();
            if parts.len() > 2 {
                return Err(PortError::Parallel(spec.to_owned()));
            }
            ParallelPort::Device {
                path: parts[0].to_owned(),
                bidirectional: direction(parts.get(1).copied().unwrap_or("UNI"))?,
            }
        }
        "AUTO" => ParallelPort::Auto {
            bidirectional: direction(rest)?,
        },
        _ => return Err(PortError::Parallel(spec.to_owned())),
    }))
}

impl VmwareHardware {
    /// The serial port; `None` when there is none or `serial` does not parse (refused at
    /// validate time, before any build).
    pub fn serial_port(&self) -> Option<SerialPort> {
        serial_port(self.serial.as_deref().unwrap_or_default())
            .ok()
            .flatten()
    }

    /// The parallel port; `None` as for [`Self::serial_port`].
    pub fn parallel_port(&self) -> Option<ParallelPort> {
        parallel_port(self.parallel.as_deref().unwrap_or_default())
            .ok()
            .flatten()
    }
}

impl common::Group for VmwareHardware {
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(f) = set(&self.firmware) {
            if !FIRMWARES.contains(&f) {
                out.push((
                    "firmware",
                    format!("firmware {f:?} is not valid: use bios, efi or efi-secure"),
                ));
            }
        }
        if let Some(a) = set(&self.network_adapter_type) {
            // Packer compares exactly; templates written for 1.x often capitalise (`VMXNET3`).
            if !NETWORK_ADAPTERS.contains(&a.to_ascii_lowercase().as_str()) {
                out.push((
                    "network_adapter_type",
                    format!(
                        "network_adapter_type {a:?} is not valid: use vmxnet3, e1000e or e1000"
                    ),
                ));
            }
        }
        match (self.usb, set(&self.usb_version)) {
            (true, Some(v)) if !USB_VERSIONS.contains(&v) => out.push((
                "usb_version",
                format!("usb_version {v:?} is not valid: use 2.0, 3.1 or 3.2"),
            )),
            (false, Some(_)) => out.push((
                "usb_version",
                "usb_version can only be set when usb = true".to_owned(),
            )),
            _ => {}
        }
        // Packer parses the ports when it writes the .vmx; kiln refuses a bad one before
        // anything starts.
        if let Some(Err(e)) = self.serial.as_deref().map(serial_port) {
            out.push(("serial", e.to_string()));
        }
        if let Some(Err(e)) = self.parallel.as_deref().map(parallel_port) {
            out.push(("parallel", e.to_string()));
        }
        out
    }

    fn warnings(&self) -> Vec<(&'static str, String)> {
        if set(&self.network_adapter_type).is_some() {
            return Vec::new();
        }
        vec![(
            "network_adapter_type",
            "network_adapter_type is not set: VMware's plugin v2 requires it (vmxnet3, e1000e or e1000); kiln uses e1000, as Packer 1.x did".to_owned(),
        )]
    }
}

/// A `source "vmware-iso" "name" {}` block, decoded.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct VmwareIsoConfig {
    /// ISO download.
    #[serde(flatten)]
    pub iso: IsoConfig,
    /// HTTP server.
    #[serde(flatten)]
    pub http: HttpConfig,
    /// Boot command.
    #[serde(flatten)]
    pub boot: BootConfig,
    /// SSH / WinRM.
    #[serde(flatten)]
    pub comm: CommConfig,
    /// Shutdown.
    #[serde(flatten)]
    pub shutdown: ShutdownConfig,
    /// Output directory and VM name.
    #[serde(flatten)]
    pub output: OutputConfig,
    /// Extra CD.
    #[serde(flatten)]
    pub cd: CdConfig,
    /// Floppy.
    #[serde(flatten)]
    pub floppy: FloppyConfig,
    /// What the shared VMware steps read.
    #[serde(flatten)]
    pub common: VmwareCommon,
    /// The virtual hardware.
    #[serde(flatten)]
    pub hw: VmwareHardware,

    /// Disk size in MiB.
    #[serde(deserialize_with = "weak::int")]
    pub disk_size: u64,
    /// VMware guest OS id; Packer's default is `other-64` on amd64 hosts, `arm-other-64` on
    /// arm64 ones.
    pub guest_os_type: String,
    /// A Go template for each additional disk's keys, appended to the `.vmx` template.
    pub vmx_disk_template_path: Option<String>,
    /// A Go template for the whole `.vmx`, in place of Packer's default.
    pub vmx_template_path: Option<String>,
    /// Expose VT-x/AMD-V to the guest.
    #[serde(deserialize_with = "weak::bool")]
    pub vhv_enabled: bool,
}

impl Default for VmwareIsoConfig {
    fn default() -> Self {
        Self {
            iso: IsoConfig::default(),
            http: HttpConfig::default(),
            boot: BootConfig::default(),
            comm: CommConfig::default(),
            shutdown: ShutdownConfig::default(),
            output: OutputConfig::default(),
            cd: CdConfig::default(),
            floppy: FloppyConfig::default(),
            common: VmwareCommon::default(),
            hw: VmwareHardware::default(),
            disk_size: 40000,
            guest_os_type: if cfg!(target_arch = "aarch64") {
                "arm-other-64".into()
            } else {
                "other-64".into()
            },
            vmx_disk_template_path: None,
            vmx_template_path: None,
            vhv_enabled: false,
        }
    }
}

common::option_groups!(VmwareIsoConfig: iso, http, boot, comm, cd, floppy, common, hw; across: IsoAcross);

impl VmwareIsoConfig {
    /// Checks Packer makes after decoding, as (option, message) pairs.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        self.group_problems()
    }
}

/// The keys of Packer's default `.vmx` template whose values come from the options (the
/// template's lines with a `{{ }}` action, as Packer picks them: lines that start with an
/// action, such as the disk's, never match a key, and the disk keys it adds to the list have
/// none, so they are not checked either).
const TEMPLATED_KEYS: &[&str] = &[
    "displayName",
    "numvcpus",
    "memsize",
    "virtualHW.version",
    "vhv.enable",
    "nvram",
    "extendedConfigFile",
    "guestOS",
    "ethernet0.connectionType",
    "ethernet0.vnet",
    "ethernet0.virtualDev",
    "scsi0.present",
    "scsi0.virtualDev",
    "sata0.present",
    "nvme0.present",
    "sound.startConnected",
    "sound.present",
    "serial0.present",
    "serial0.startConnected",
    "serial0.fileName",
    "serial0.autodetect",
    "serial0.fileType",
    "serial0.yieldOnMsrRead",
    "serial0.pipe.endPoint",
    "serial0.tryNoRxLoss",
    "parallel0.present",
    "parallel0.startConnected",
    "parallel0.fileName",
    "parallel0.autodetect",
    "parallel0.bidirectional",
];

/// Packer's warning when the VM runs without a window and without VMware's VNC server.
fn headless_warning(c: &VmwareCommon, boot: &BootConfig) -> Option<(&'static str, String)> {
    (c.headless && boot.disable_vnc).then(|| {
        (
            "headless",
            "headless mode uses VNC to show the VM's output; since disable_vnc is set, you will not see any output".to_owned(),
        )
    })
}

/// `vmware-iso`'s checks across its groups (Packer's `Prepare()` of the builder itself).
struct IsoAcross<'a>(&'a VmwareIsoConfig);

impl common::Group for IsoAcross<'_> {
    fn problems(&self) -> Vec<(&'static str, String)> {
        [
            ("vmx_template_path", &self.0.vmx_template_path),
            ("vmx_disk_template_path", &self.0.vmx_disk_template_path),
        ]
        .into_iter()
        .filter_map(|(option, path)| set(path).and_then(|p| template_problem(option, p)))
        .collect()
    }

    fn warnings(&self) -> Vec<(&'static str, String)> {
        let c = self.0;
        let mut out = Vec::new();
        // Only Packer's own template is known to set these keys.
        if set(&c.vmx_template_path).is_none() {
            // VMware reads keys in any case; Packer compares them exactly, and kiln warns
            // about `memSize` as about `memsize`.
            let overridden: Vec<&str> = TEMPLATED_KEYS
                .iter()
                .copied()
                .filter(|k| c.common.vmx_data.keys().any(|d| d.eq_ignore_ascii_case(k)))
                .collect();
            if !overridden.is_empty() {
                out.push((
                    "vmx_data",
                    format!("vmx_data sets keys that the default .vmx template sets from the options, which may make the build fail or behave unpredictably: {}", overridden.join(", ")),
                ));
            }
        }
        out.extend(headless_warning(&c.common, &c.boot));
        out
    }
}

/// Packer's check of a `.vmx` template file: it exists and parses as a Go template (the
/// positions of what does not). A relative path is read from the template's directory, which
/// the build knows: the step that renders the file checks it there.
fn template_problem(option: &'static str, path: &str) -> Option<(&'static str, String)> {
    let p = std::path::Path::new(path);
    if !p.is_absolute() {
        return None;
    }
    let problem = match std::fs::read_to_string(p) {
        Err(e) => format!("{option} {path} cannot be read: {e}"),
        Ok(text) => boot_commands::Template::parse(&text)
            .err()
            .map(|e| format!("{option} {path}: {e}"))?,
    };
    Some((option, problem))
}

/// A `source "vmware-vmx" "name" {}` block, decoded: a VM cloned from an existing `.vmx`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct VmwareVmxConfig {
    /// HTTP server.
    #[serde(flatten)]
    pub http: HttpConfig,
    /// Boot command.
    #[serde(flatten)]
    pub boot: BootConfig,
    /// SSH / WinRM.
    #[serde(flatten)]
    pub comm: CommConfig,
    /// Shutdown.
    #[serde(flatten)]
    pub shutdown: ShutdownConfig,
    /// Output directory and VM name.
    #[serde(flatten)]
    pub output: OutputConfig,
    /// Extra CD.
    #[serde(flatten)]
    pub cd: CdConfig,
    /// Floppy.
    #[serde(flatten)]
    pub floppy: FloppyConfig,
    /// What the shared VMware steps read.
    #[serde(flatten)]
    pub common: VmwareCommon,

    /// The `.vmx` to clone (required; it must exist).
    pub source_path: Option<String>,
    /// Make a linked clone (its disks are deltas of the source's).
    #[serde(deserialize_with = "weak::bool")]
    pub linked: bool,
    /// Clone from this snapshot of the source.
    pub attach_snapshot: Option<String>,
    /// The guest OS id set on a VM imported from an OVF/OVA (required for one).
    pub guest_os_type: Option<String>,
}

common::option_groups!(VmwareVmxConfig: http, boot, comm, cd, floppy, common; across: VmxAcross);

impl VmwareVmxConfig {
    /// `attach_snapshot`, unless empty.
    pub fn attach_snapshot(&self) -> Option<&str> {
        set(&self.attach_snapshot)
    }

    /// Checks Packer makes after decoding, as (option, message) pairs.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        self.group_problems()
    }

    /// Whether `source_path` is an OVF or OVA, which is imported rather than cloned.
    pub fn source_is_ovf(&self) -> bool {
        set(&self.source_path).is_some_and(is_ovf)
    }
}

/// Whether `path` names an `.ovf` or `.ova` (any case), as Packer tells them apart.
pub fn is_ovf(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.ends_with(".ovf") || lower.ends_with(".ova")
}

/// `vmware-vmx`'s checks across its groups (Packer's `Prepare()` of the builder itself).
struct VmxAcross<'a>(&'a VmwareVmxConfig);

impl common::Group for VmxAcross<'_> {
    fn problems(&self) -> Vec<(&'static str, String)> {
        let c = self.0;
        let mut out = Vec::new();
        match set(&c.source_path) {
            None => out.push(("source_path", "source_path is required".to_owned())),
            // Relative to the working directory, as Packer reads it.
            Some(p) => {
                if let Err(e) = std::fs::metadata(p) {
                    out.push(("source_path", format!("source_path {p:?} is invalid: {e}")));
                }
                // ovftool is looked for when the build starts (kiln validates without
                // VMware); the guest OS is not in an OVF in VMware's words.
                if is_ovf(p) && set(&c.guest_os_type).is_none() {
                    out.push((
                        "guest_os_type",
                        "guest_os_type is required when source_path is an OVF/OVA".to_owned(),
                    ));
                }
            }
        }
        out
    }

    fn warnings(&self) -> Vec<(&'static str, String)> {
        headless_warning(&self.0.common, &self.0.boot)
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vmx_data_keys_must_be_writable() {
        let c: VmwareIsoConfig = serde_json::from_value(json!({
            "iso_url": "x.iso", "iso_checksum": "none", "ssh_username": "u",
            "vmx_data": {"good.key": "1", "bad key": "2"}, "vmx_data_post": {"a=b": "3"}
        }))
        .unwrap();
        let keys: Vec<&str> = c.problems().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["vmx_data", "vmx_data_post"]);
    }

    #[test]
    fn decodes_with_defaults() {
        let c: VmwareIsoConfig = serde_json::from_value(json!({
            "iso_url": "x.iso", "iso_checksum": "none", "ssh_username": "u",
            "vmx_data": {"ethernet0.pciSlotNumber": "32"},
            "version": "19", "tools_mode": "upload", "tools_upload_flavor": "linux"
        }))
        .unwrap();
        assert_eq!(c.common.version, 19);
        assert_eq!(c.common.disk_adapter_type, "lsilogic");
        assert!(c.problems().is_empty());
    }

    fn iso(extra: serde_json::Value) -> VmwareIsoConfig {
        let mut base = json!({"iso_url": "x.iso", "iso_checksum": "none", "ssh_username": "u",
                              "network_adapter_type": "e1000e"});
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        serde_json::from_value(base).unwrap()
    }

    fn options(p: &[(&'static str, String)]) -> Vec<&'static str> {
        p.iter().map(|(o, _)| *o).collect()
    }

    #[test]
    fn packers_v2_checks_name_the_option() {
        let c = iso(json!({
            "version": 17, "remote_type": "esx5", "usb_version": "3.1",
            "network_adapter_type": "rtl8139", "cdrom_adapter_type": "nvme",
            "vnc_port_min": 6001, "firmware": "uefi"
        }));
        let p = c.problems();
        assert_eq!(
            options(&p),
            [
                "remote_type",
                "vnc_port_min",
                "version",
                "cdrom_adapter_type",
                "firmware",
                "network_adapter_type",
                "usb_version"
            ],
            "{p:?}"
        );
        assert!(p[0].1.contains("v2.0.0"), "{p:?}");
        assert!(
            p[2].1.contains("minimum virtual hardware version is 19"),
            "{p:?}"
        );
        assert!(iso(json!({"usb": true, "usb_version": "3.2"}))
            .problems()
            .is_empty());
        assert_eq!(iso(json!({})).common.version, 21);
    }

    #[test]
    fn tools_options_are_checked_as_packer_checks_them() {
        let p = |v| options(&iso(v).problems());
        assert_eq!(p(json!({"tools_mode": "upload"})), ["tools_mode"]);
        assert_eq!(p(json!({"tools_mode": "copy"})), ["tools_mode"]);
        assert_eq!(
            p(
                json!({"tools_mode": "upload", "tools_upload_flavor": "linux", "tools_source_path": "t.iso"})
            ),
            ["tools_source_path"]
        );
        assert_eq!(
            p(
                json!({"tools_mode": "attach", "tools_upload_flavor": "linux", "tools_upload_path": "/tmp/x"})
            ),
            [
                "tools_upload_path",
                "tools_upload_flavor",
                "tools_source_path"
            ]
        );
        assert_eq!(
            p(json!({"tools_upload_flavor": "solaris"})),
            ["tools_upload_flavor"]
        );
        assert!(p(json!({"tools_mode": "disable", "tools_upload_flavor": "solaris"})).is_empty());
        assert!(p(json!({"tools_mode": "attach", "tools_source_path": "/no/such.iso"})).is_empty());
    }

    #[test]
    fn vmx_templates_must_exist_and_parse() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.tmpl");
        let bad = dir.path().join("bad.tmpl");
        std::fs::write(&good, "a = \"{{ if .X }}1{{ end }}\"\n").unwrap();
        std::fs::write(&bad, "a = \"1\"\nb = \"{{ if .X }}\"\n").unwrap();
        let missing = dir.path().join("missing.tmpl");
        let path = |p: &std::path::Path| p.display().to_string();
        let c =
            iso(json!({"vmx_template_path": path(&good), "vmx_disk_template_path": path(&good)}));
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        // Relative paths are read from the template's directory, at build time.
        let c = iso(json!({"vmx_template_path": "t.vmx", "vmx_disk_template_path": "d.tmpl"}));
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        let c =
            iso(json!({"vmx_template_path": path(&bad), "vmx_disk_template_path": path(&missing)}));
        let p = c.problems();
        assert_eq!(options(&p), ["vmx_template_path", "vmx_disk_template_path"]);
        assert!(
            p[0].1
                .contains(&format!("{}: line 2, column 6: ", path(&bad))),
            "{}",
            p[0].1
        );
        assert!(p[1].1.contains("cannot be read"), "{}", p[1].1);
    }

    #[test]
    fn packer_1_templates_validate_with_warnings() {
        let c: VmwareIsoConfig = serde_json::from_value(json!({
            "iso_url": "x.iso", "iso_checksum": "none", "ssh_username": "u",
            "tools_upload_flavor": "linux"
        }))
        .unwrap();
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        let w = options(&c.warnings());
        assert!(
            w.ends_with(&["tools_mode", "network_adapter_type"]),
            "{w:?}"
        );
        assert_eq!(c.common.tools_mode(), Some(ToolsMode::Upload));
        assert_eq!(c.common.tools_upload_path(), "linux.iso");
    }

    #[test]
    fn the_upload_path_renders_the_flavor() {
        let c = iso(
            json!({"tools_mode": "upload", "tools_upload_flavor": "windows",
                           "tools_upload_path": "c:/Windows/Temp/{{ .Flavor }}-{{.Flavor}}.iso"}),
        );
        assert_eq!(
            c.common.tools_upload_path(),
            "c:/Windows/Temp/windows-windows.iso"
        );
        let c = iso(json!({"tools_mode": "upload", "tools_source_path": "/isos/vmtools.iso"}));
        assert_eq!(c.common.tools_upload_path(), "vmtools.iso");
        assert_eq!(
            iso(json!({"tools_mode": "disable", "tools_upload_flavor": "linux"}))
                .common
                .tools_mode(),
            None
        );
    }

    #[test]
    fn vmware_vmx_needs_an_existing_source_path_and_refuses_unknown_options() {
        let t = tempfile::tempdir().unwrap();
        let vmx = t.path().join("base.vmx");
        std::fs::write(&vmx, "").unwrap();
        let vmx_cfg = |v: serde_json::Value| serde_json::from_value::<VmwareVmxConfig>(v);
        let ok = vmx_cfg(
            json!({"source_path": vmx.display().to_string(), "ssh_username": "u",
                                "linked": "true", "attach_snapshot": "s"}),
        )
        .unwrap();
        assert!(ok.problems().is_empty(), "{:?}", ok.problems());
        assert!(ok.linked);
        assert_eq!(ok.attach_snapshot(), Some("s"));
        let p = vmx_cfg(json!({"ssh_username": "u"})).unwrap().problems();
        assert_eq!(p, [("source_path", "source_path is required".to_owned())]);
        let missing = t.path().join("missing.vmx").display().to_string();
        let p = vmx_cfg(json!({"source_path": missing, "ssh_username": "u"}))
            .unwrap()
            .problems();
        assert!(p[0].1.contains("is invalid"), "{p:?}");
        let ova = t.path().join("a.ova");
        std::fs::write(&ova, "").unwrap();
        let p = vmx_cfg(json!({"source_path": ova.display().to_string(), "ssh_username": "u"}))
            .unwrap()
            .problems();
        assert_eq!(
            p,
            [(
                "guest_os_type",
                "guest_os_type is required when source_path is an OVF/OVA".to_owned()
            )]
        );
        let with_os = vmx_cfg(
            json!({"source_path": ova.display().to_string(), "ssh_username": "u",
                                     "guest_os_type": "ubuntu-64"}),
        )
        .unwrap();
        assert!(with_os.problems().is_empty(), "{:?}", with_os.problems());
        assert!(with_os.source_is_ovf());
        // The hardware is the source's: vmware-iso's hardware options are unknown here, and
        // Packer 1.x's ESXi-only options are unknown to both.
        assert!(vmx_cfg(json!({"source_path": "a.vmx", "cpus": 2})).is_err());
        assert!(vmx_cfg(json!({"source_path": "a.vmx", "keep_registered": true})).is_err());
        assert!(
            serde_json::from_value::<VmwareIsoConfig>(json!({"keep_registered": true})).is_err()
        );
    }

    #[test]
    fn serial_and_parallel_parse_as_packer_parses_them() {
        let dev = DEFAULT_SERIAL_DEVICE.to_owned();
        let ok = [
            ("", None),
            ("NONE", None),
            ("none:", None),
            (
                "FILE:/tmp/s.log",
                Some(SerialPort::File {
                    path: "/tmp/s.log".into(),
                }),
            ),
            (
                "file:/tmp/s.log,true",
                Some(SerialPort::File {
                    path: "/tmp/s.log".into(),
                }),
            ),
            ("DEVICE:", Some(SerialPort::Device { path: dev.clone() })),
            (
                "DEVICE:/dev/ttyS1,FALSE",
                Some(SerialPort::Device {
                    path: "/dev/ttyS1".into(),
                }),
            ),
            ("AUTO:", Some(SerialPort::Auto { yield_cpu: false })),
            ("auto:true", Some(SerialPort::Auto { yield_cpu: true })),
            (
                "PIPE:/tmp/p,Client,VM",
                Some(SerialPort::Pipe {
                    path: "/tmp/p".into(),
                    endpoint: "Client".into(),
                    app: false,
                    yield_cpu: false,
                }),
            ),
            (
                "pipe:/tmp/p,server,app,TRUE",
                Some(SerialPort::Pipe {
                    path: "/tmp/p".into(),
                    endpoint: "server".into(),
                    app: true,
                    yield_cpu: true,
                }),
            ),
        ];
        for (spec, want) in ok {
            assert_eq!(serial_port(spec), Ok(want), "{spec}");
        }
        let bad = [
            ("/dev/ttyS0", "unknown serial type /DEV/TTYS0"),
            ("TCP:1234", "unknown serial type TCP"),
            (
                "PIPE:/tmp/p,client",
                "unexpected format for serial port pipe",
            ),
            (
                "PIPE:/tmp/p,both,app",
                "endpoint in serial port pipe: PIPE:/tmp/p,both,app -> both",
            ),
            ("PIPE:/tmp/p,client,host", "host in serial port pipe"),
            ("PIPE:/tmp/p,client,app,maybe", "yield in serial port pipe"),
            ("FILE:/a,TRUE,x", "unexpected format for serial port file"),
            ("FILE:/a,yes", "yield in serial port file"),
            ("DEVICE:/dev/ttyS0,no", "yield in serial port device"),
            ("AUTO:1", "yield in serial port auto"),
        ];
        for (spec, want) in bad {
            let e = serial_port(spec).unwrap_err().to_string();
            assert!(e.contains(want), "{spec}: {e}");
        }

        let ok = [
            ("NONE", None),
            (
                "FILE:/tmp/lp",
                Some(ParallelPort::File {
                    path: "/tmp/lp".into(),
                }),
            ),
            (
                "DEVICE:/dev/lp0",
                Some(ParallelPort::Device {
                    path: "/dev/lp0".into(),
                    bidirectional: false,
                }),
            ),
            (
                "device:/dev/lp0,bi",
                Some(ParallelPort::Device {
                    path: "/dev/lp0".into(),
                    bidirectional: true,
                }),
            ),
            (
                "AUTO:",
                Some(ParallelPort::Auto {
                    bidirectional: false,
                }),
            ),
            (
                "AUTO:BI",
                Some(ParallelPort::Auto {
                    bidirectional: true,
                }),
            ),
        ];
        for (spec, want) in ok {
            assert_eq!(parallel_port(spec), Ok(want), "{spec}");
        }
        for (spec, want) in [
            ("LPT1", "unexpected format for parallel port: LPT1"),
            (
                "DEVICE:/dev/lp0,bi,x",
                "unexpected format for parallel port",
            ),
            ("DEVICE:/dev/lp0,true", "unknown direction TRUE"),
            ("AUTO:both", "unknown direction BOTH"),
        ] {
            let e = parallel_port(spec).unwrap_err().to_string();
            assert!(e.contains(want), "{spec}: {e}");
        }
    }

    #[test]
    fn bad_ports_are_refused_at_validate_naming_the_option() {
        let p = iso(json!({"serial": "COM1", "parallel": "AUTO:sideways"})).problems();
        assert_eq!(options(&p), ["serial", "parallel"], "{p:?}");
        assert!(iso(json!({"serial": "FILE:/tmp/s", "parallel": "AUTO:"}))
            .problems()
            .is_empty());
    }

    #[test]
    fn warnings_across_groups_are_packers() {
        let w = |v| options(&iso(v).warnings());
        assert!(!w(json!({"headless": true})).contains(&"headless"));
        assert!(w(json!({"headless": true, "disable_vnc": true})).contains(&"headless"));
        let c = iso(
            json!({"vmx_data": {"memSize": "4096", "numvcpus": "2", "cpuid.coresPerSocket": "2",
                                        "scsi0:0.fileName": "x.vmdk"}}),
        );
        let warn: Vec<_> = c
            .warnings()
            .into_iter()
            .filter(|(o, _)| *o == "vmx_data")
            .collect();
        assert_eq!(warn.len(), 1, "{warn:?}");
        // Only the templated keys, in the template's order; the disk's lines start with an
        // action in Packer's template, so they are not among them.
        assert!(warn[0].1.ends_with(": numvcpus, memsize"), "{}", warn[0].1);
        // A template of one's own: nothing is known of its keys.
        let t = tempfile::tempdir().unwrap();
        let tmpl = t.path().join("t.vmx");
        std::fs::write(&tmpl, "memsize = \"1\"\n").unwrap();
        let c = iso(json!({"vmx_data": {"memsize": "4096"},
                           "vmx_template_path": tmpl.display().to_string()}));
        assert!(!options(&c.warnings()).contains(&"vmx_data"));

        let vmx = t.path().join("base.vmx");
        std::fs::write(&vmx, "").unwrap();
        let v: VmwareVmxConfig = serde_json::from_value(json!({
            "source_path": vmx.display().to_string(), "ssh_username": "u",
            "headless": true, "disable_vnc": true, "vmx_data": {"memsize": "1"}
        }))
        .unwrap();
        assert_eq!(options(&v.warnings()), ["headless"]);
    }
}
