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

common::option_groups!(VmwareIsoConfig: iso, http, boot, comm, cd, floppy, common, hw);

impl VmwareIsoConfig {
    /// Checks Packer makes after decoding, as (option, message) pairs.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = common::problems_of(&self.groups());
        for (option, path) in [
            ("vmx_template_path", &self.vmx_template_path),
            ("vmx_disk_template_path", &self.vmx_disk_template_path),
        ] {
            out.extend(set(path).and_then(|p| template_problem(option, p)));
        }
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
    /// The guest OS id set on a VM imported from an OVF (kiln clones `.vmx` files only).
    pub guest_os_type: Option<String>,
}

common::option_groups!(VmwareVmxConfig: http, boot, comm, cd, floppy, common);

impl VmwareVmxConfig {
    /// `attach_snapshot`, unless empty.
    pub fn attach_snapshot(&self) -> Option<&str> {
        set(&self.attach_snapshot)
    }

    /// Checks Packer makes after decoding, as (option, message) pairs.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        match set(&self.source_path) {
            None => out.push(("source_path", "source_path is required".to_owned())),
            Some(p) => {
                // Relative to the working directory, as Packer reads it.
                if let Err(e) = std::fs::metadata(p) {
                    out.push(("source_path", format!("source_path {p:?} is invalid: {e}")));
                } else if [".ova", ".ovf"]
                    .iter()
                    .any(|x| p.to_ascii_lowercase().ends_with(x))
                {
                    out.push((
                        "source_path",
                        format!("source_path {p:?} is an OVF/OVA, which kiln does not import yet (Packer imports it with ovftool)\nhint: import it into VMware first and point source_path at its .vmx"),
                    ));
                }
            }
        }
        out.extend(common::problems_of(&self.groups()));
        out
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
        assert!(p[0].1.contains("OVF/OVA"), "{p:?}");
        // The hardware is the source's: vmware-iso's hardware options are unknown here, and
        // Packer 1.x's ESXi-only options are unknown to both.
        assert!(vmx_cfg(json!({"source_path": "a.vmx", "cpus": 2})).is_err());
        assert!(vmx_cfg(json!({"source_path": "a.vmx", "keep_registered": true})).is_err());
        assert!(
            serde_json::from_value::<VmwareIsoConfig>(json!({"keep_registered": true})).is_err()
        );
    }
}
