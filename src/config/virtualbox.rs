//! Options of the VirtualBox source types (`virtualbox-iso`, `virtualbox-ovf`, `virtualbox-vm`),
//! with Packer's names and defaults. What the shared VirtualBox steps read is
//! [`VirtualBoxCommon`], flattened into each builder's struct beside the option groups of
//! [`super::common`]; the rest is each builder's own. (serde cannot refuse unknown options
//! through a flattened struct that itself flattens others, so the groups are flattened at the
//! top of each builder's struct, not inside [`VirtualBoxCommon`].)

use super::common;
use super::common::{
    BootConfig, CdConfig, CommConfig, FloppyConfig, HostPortConfig, HttpConfig, IsoConfig,
    OutputConfig, ShutdownConfig,
};
use super::weak::{self, GoDuration};
use serde::{Deserialize, Serialize};

/// The options every VirtualBox builder has and the shared steps read: export, run
/// (headless, VRDP), shutdown, NAT mapping, `vboxmanage`, the version file, the guest
/// additions, and what becomes of the VM.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct VirtualBoxCommon {
    /// `ovf` or `ova`.
    pub format: String,
    /// Extra `VBoxManage export` options.
    pub export_opts: Vec<String>,
    /// Base name of the exported files (default: `vm_name`).
    pub output_filename: Option<String>,
    /// Start the VM without a window.
    #[serde(deserialize_with = "weak::bool")]
    pub headless: bool,
    /// VRDP listen address.
    pub vrdp_bind_address: String,
    /// Lowest VRDP port.
    #[serde(deserialize_with = "weak::int")]
    pub vrdp_port_min: u16,
    /// Highest VRDP port.
    #[serde(deserialize_with = "weak::int")]
    pub vrdp_port_max: u16,
    /// Wait after shutdown before unregistering / exporting.
    pub post_shutdown_delay: GoDuration,
    /// Do not send a shutdown command; wait for the guest to stop by itself.
    #[serde(deserialize_with = "weak::bool")]
    pub disable_shutdown: bool,
    /// Shut down with an ACPI power button event instead of a command.
    #[serde(deserialize_with = "weak::bool")]
    pub acpi_shutdown: bool,
    /// Connect directly, without a NAT port forward.
    #[serde(deserialize_with = "weak::bool")]
    pub skip_nat_mapping: bool,
    /// Host address of the port forward.
    pub ssh_listen_address: String,
    /// Older name of `skip_nat_mapping`.
    #[serde(deserialize_with = "weak::bool")]
    pub ssh_skip_nat_mapping: bool,
    /// `VBoxManage` commands run before boot (`{{ .Name }}` is the VM name).
    pub vboxmanage: Vec<Vec<String>>,
    /// `VBoxManage` commands run after shutdown.
    pub vboxmanage_post: Vec<Vec<String>>,
    /// File in the guest that receives the VirtualBox version.
    pub virtualbox_version_file: Option<String>,
    /// `upload`, `attach` or `disable`.
    pub guest_additions_mode: String,
    /// Controller for the attached additions ISO.
    pub guest_additions_interface: Option<String>,
    /// Upload path in the guest.
    pub guest_additions_path: String,
    /// Checksum of the additions ISO.
    pub guest_additions_sha256: Option<String>,
    /// Where to get the additions ISO.
    pub guest_additions_url: Option<String>,
    /// Keep the VM registered after the build.
    #[serde(deserialize_with = "weak::bool")]
    pub keep_registered: bool,
    /// Do not export the VM.
    #[serde(deserialize_with = "weak::bool")]
    pub skip_export: bool,
}

impl Default for VirtualBoxCommon {
    fn default() -> Self {
        Self {
            format: "ovf".into(),
            export_opts: Vec::new(),
            output_filename: None,
            headless: false,
            vrdp_bind_address: "127.0.0.1".into(),
            vrdp_port_min: 5900,
            vrdp_port_max: 6000,
            post_shutdown_delay: GoDuration::default(),
            disable_shutdown: false,
            acpi_shutdown: false,
            skip_nat_mapping: false,
            ssh_listen_address: "127.0.0.1".into(),
            ssh_skip_nat_mapping: false,
            vboxmanage: Vec::new(),
            vboxmanage_post: Vec::new(),
            virtualbox_version_file: None,
            guest_additions_mode: "upload".into(),
            guest_additions_interface: None,
            guest_additions_path: "VBoxGuestAdditions.iso".into(),
            guest_additions_sha256: None,
            guest_additions_url: None,
            keep_registered: false,
            skip_export: false,
        }
    }
}

/// A `source "virtualbox-iso" "name" {}` block, decoded.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct VirtualBoxIsoConfig {
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
    /// Host ports for the SSH forward.
    #[serde(flatten)]
    pub ports: HostPortConfig,

    /// What the shared VirtualBox steps read.
    #[serde(flatten)]
    pub common: VirtualBoxCommon,

    /// Virtual CPUs.
    #[serde(deserialize_with = "weak::int")]
    pub cpus: u32,
    /// Memory in MiB.
    #[serde(deserialize_with = "weak::int")]
    pub memory: u32,
    /// Audio driver (`none`, `pulse`…).
    pub sound: String,
    /// Enable USB.
    #[serde(deserialize_with = "weak::bool")]
    pub usb: bool,
    /// Keep the ISO attached in the exported VM.
    #[serde(deserialize_with = "weak::bool")]
    pub bundle_iso: bool,
    /// `piix3` or `ich9`.
    pub chipset: String,
    /// `bios`, `efi`, `efi32`, `efi64`.
    pub firmware: String,
    /// Expose VT-x/AMD-V to the guest; unset leaves VirtualBox's default (Packer's trilean).
    #[serde(deserialize_with = "weak::opt_bool")]
    pub nested_virt: Option<bool>,
    /// `UTC` or `local`.
    pub rtc_time_base: String,
    /// Disk size in MiB.
    #[serde(deserialize_with = "weak::int")]
    pub disk_size: u64,
    /// NIC model.
    pub nic_type: String,
    /// `ac97`, `hda` or `sb16`.
    pub audio_controller: String,
    /// `ohci`, `ehci` (default), `xhci` or `none`: one string, as Packer takes it.
    #[serde(deserialize_with = "weak::string")]
    pub usb_controller: String,
    /// Pointing device.
    pub mouse: String,
    /// Keyboard device.
    pub keyboard: String,
    /// `vboxvga`, `vboxsvga`, `vmsvga`, `qemuramfb`, `none`; unset is `vboxsvga`.
    pub gfx_controller: Option<String>,
    /// Video memory in MiB.
    #[serde(deserialize_with = "weak::int")]
    pub gfx_vram_size: u32,
    /// 3D acceleration.
    #[serde(deserialize_with = "weak::bool")]
    pub gfx_accelerate_3d: bool,
    /// EFI screen resolution (`1920x1080`).
    pub gfx_efi_resolution: Option<String>,
    /// VirtualBox OS type id.
    pub guest_os_type: String,
    /// Pass TRIM through.
    #[serde(deserialize_with = "weak::bool")]
    pub hard_drive_discard: bool,
    /// `ide`, `sata`, `scsi`, `pcie`, `virtio`.
    pub hard_drive_interface: String,
    /// SATA ports.
    #[serde(deserialize_with = "weak::int")]
    pub sata_port_count: u32,
    /// NVMe ports.
    #[serde(deserialize_with = "weak::int")]
    pub nvme_port_count: u32,
    /// Report the disk as an SSD.
    #[serde(deserialize_with = "weak::bool")]
    pub hard_drive_nonrotational: bool,
    /// Controller for the ISO: `ide`, `sata`, `virtio`.
    pub iso_interface: String,
    /// Sizes in MiB of extra disks.
    pub disk_additional_size: Vec<u64>,
}

impl Default for VirtualBoxIsoConfig {
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
            ports: HostPortConfig::default(),
            common: VirtualBoxCommon::default(),
            cpus: 1,
            memory: 512,
            sound: "none".into(),
            usb: false,
            bundle_iso: false,
            chipset: "piix3".into(),
            firmware: "bios".into(),
            nested_virt: None,
            // Packer's default, whatever its documentation once said.
            rtc_time_base: "local".into(),
            disk_size: 40000,
            nic_type: "82540EM".into(),
            audio_controller: "ac97".into(),
            usb_controller: "ehci".into(),
            mouse: "ps2".into(),
            keyboard: "ps2".into(),
            gfx_controller: None,
            gfx_vram_size: 4,
            gfx_accelerate_3d: false,
            gfx_efi_resolution: None,
            guest_os_type: "Other".into(),
            hard_drive_discard: false,
            hard_drive_interface: "ide".into(),
            sata_port_count: 1,
            nvme_port_count: 1,
            hard_drive_nonrotational: false,
            iso_interface: "ide".into(),
            disk_additional_size: Vec::new(),
        }
    }
}

impl VirtualBoxCommon {
    /// `virtualbox_version_file`, `.vbox_version` when unset (empty: no upload).
    pub fn virtualbox_version_file(&self) -> &str {
        self.virtualbox_version_file
            .as_deref()
            .unwrap_or(".vbox_version")
    }

    /// `guest_additions_interface`, or `default` when unset (`iso_interface` for
    /// `virtualbox-iso`, `ide` for the others, as Packer has it).
    pub fn guest_additions_interface_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.guest_additions_interface.as_deref().unwrap_or(default)
    }

    /// `skip_nat_mapping` or its older name `ssh_skip_nat_mapping`.
    pub fn skip_nat_mapping(&self) -> bool {
        self.skip_nat_mapping || self.ssh_skip_nat_mapping
    }

    /// Packer's checks of these options, given the build's communicator and the interface
    /// the guest additions default to.
    pub fn problems(
        &self,
        comm: &CommConfig,
        additions_default: &str,
    ) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let interface = self.guest_additions_interface_or(additions_default);
        if !["ide", "sata", "virtio"].contains(&interface) {
            out.push((
                "guest_additions_interface",
                format!(
                    "guest_additions_interface {interface:?} is not valid: use ide, sata, virtio"
                ),
            ));
        }
        if !["ovf", "ova"].contains(&self.format.as_str()) {
            out.push((
                "format",
                format!("format {:?} is not supported: use ovf or ova", self.format),
            ));
        }
        if !["upload", "attach", "disable"].contains(&self.guest_additions_mode.as_str()) {
            out.push((
                "guest_additions_mode",
                format!(
                    "guest_additions_mode {:?} is not valid: use upload, attach or disable",
                    self.guest_additions_mode
                ),
            ));
        }
        if self.guest_additions_mode == "upload" && comm.communicator == "none" {
            out.push((
                "guest_additions_mode",
                "guest_additions_mode = \"upload\" needs a communicator to upload over\nhint: set guest_additions_mode = \"attach\" or \"disable\" with communicator = \"none\"".into(),
            ));
        }
        out
    }
}

/// `(option, value, allowed values)` for each option Packer checks against a list.
fn choices(c: &VirtualBoxIsoConfig) -> [(&'static str, &str, &'static [&'static str]); 11] {
    [
        (
            "chipset",
            &c.chipset,
            &["piix3", "ich9", "armv8", "armv8virtual"],
        ),
        ("firmware", &c.firmware, &["bios", "efi"]),
        ("rtc_time_base", &c.rtc_time_base, &["UTC", "local"]),
        (
            "nic_type",
            &c.nic_type,
            &[
                "82540EM",
                "82543GC",
                "82545EM",
                "Am79C970A",
                "Am79C973",
                "Am79C960",
                "virtio",
                "usbnet",
            ],
        ),
        (
            "gfx_controller",
            c.gfx_controller.as_deref().unwrap_or("vboxsvga"),
            &["vboxvga", "vboxsvga", "vmsvga", "qemuramfb", "none"],
        ),
        (
            "audio_controller",
            &c.audio_controller,
            &["ac97", "hda", "sb16", "none"],
        ),
        (
            "usb_controller",
            &c.usb_controller,
            &["ohci", "ehci", "xhci", "none"],
        ),
        (
            "mouse",
            &c.mouse,
            &["ps2", "usb", "usbtablet", "usbmultitouch"],
        ),
        ("keyboard", &c.keyboard, &["ps2", "usb"]),
        (
            "hard_drive_interface",
            &c.hard_drive_interface,
            &["ide", "sata", "scsi", "pcie", "virtio"],
        ),
        (
            "iso_interface",
            &c.iso_interface,
            &["ide", "sata", "virtio"],
        ),
    ]
}

common::option_groups!(VirtualBoxIsoConfig: iso, http, boot, comm, cd, floppy, ports);

impl VirtualBoxIsoConfig {
    /// `gfx_controller`, or `vboxsvga` when unset (Packer's choice when VirtualBox's own
    /// default for the OS type is not probed).
    pub fn gfx_controller(&self) -> String {
        self.gfx_controller
            .clone()
            .unwrap_or_else(|| "vboxsvga".into())
    }

    /// `gfx_vram_size`, with 0 meaning Packer's default of 4 MiB.
    pub fn gfx_vram(&self) -> u32 {
        if self.gfx_vram_size == 0 {
            4
        } else {
            self.gfx_vram_size
        }
    }

    /// `guest_additions_interface`, or `iso_interface` when unset (Packer's default).
    pub fn guest_additions_interface(&self) -> &str {
        self.common
            .guest_additions_interface_or(&self.iso_interface)
    }

    /// Whether a storage controller on `bus` (`sata`, `virtio`) is needed for the ISOs or the
    /// disks: the guest additions ISO counts when it is attached.
    pub fn uses_bus(&self, bus: &str) -> bool {
        self.hard_drive_interface == bus
            || self.iso_interface == bus
            || (self.common.guest_additions_mode == "attach"
                && self.guest_additions_interface() == bus)
    }

    /// Checks Packer makes after decoding, as (option, message) pairs.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = self.group_problems();
        for (option, value, allowed) in choices(self) {
            if !allowed.contains(&value) {
                out.push((
                    option,
                    format!(
                        "{option} {value:?} is not valid: use {}",
                        allowed.join(", ")
                    ),
                ));
            }
        }
        if self.gfx_vram_size > 128 {
            out.push((
                "gfx_vram_size",
                format!(
                    "gfx_vram_size {} is too large: at most 128 (MiB)",
                    self.gfx_vram_size
                ),
            ));
        }
        if let Some(r) = &self.gfx_efi_resolution {
            let ok = r.split_once('x').is_some_and(|(w, h)| {
                [w, h]
                    .iter()
                    .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            });
            if !ok {
                out.push((
                    "gfx_efi_resolution",
                    format!("gfx_efi_resolution {r:?} must be WIDTHxHEIGHT, e.g. 1920x1080"),
                ));
            }
        }
        if self.sata_port_count > 30 {
            out.push((
                "sata_port_count",
                format!(
                    "sata_port_count {} is too large: at most 30",
                    self.sata_port_count
                ),
            ));
        }
        if self.nvme_port_count > 255 {
            out.push((
                "nvme_port_count",
                format!(
                    "nvme_port_count {} is too large: at most 255",
                    self.nvme_port_count
                ),
            ));
        }
        out.extend(self.common.problems(&self.comm, &self.iso_interface));
        out
    }
}

/// A `source "virtualbox-ovf" "name" {}` block, decoded: a VM imported from an OVF or OVA.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct VirtualBoxOvfConfig {
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
    /// Host ports for the SSH forward.
    #[serde(flatten)]
    pub ports: HostPortConfig,
    /// What the shared VirtualBox steps read.
    #[serde(flatten)]
    pub common: VirtualBoxCommon,

    /// The OVF or OVA to import: a local path or an URL.
    pub source_path: Option<String>,
    /// Its checksum, as `iso_checksum` takes it; unset or `none` skips verification (Packer
    /// documents it as required but does not check it).
    pub checksum: Option<String>,
    /// Where to keep the download instead of the cache.
    pub target_path: Option<String>,
    /// `VBoxManage import --options` (`keepallmacs`, `keepnatmacs`, `importtovdi`).
    pub import_opts: String,
    /// Extra `VBoxManage import` arguments.
    pub import_flags: Vec<String>,
}

common::option_groups!(VirtualBoxOvfConfig: http, boot, comm, cd, floppy, ports);

impl VirtualBoxOvfConfig {
    /// `source_path` and `checksum` as the shared download step takes an input. The cached
    /// copy keeps the source's extension, by which VBoxManage tells an OVA from an OVF.
    pub fn source(&self) -> IsoConfig {
        let path = self.source_path.clone().unwrap_or_default();
        let extension = if path.to_ascii_lowercase().ends_with(".ovf") {
            "ovf"
        } else {
            "ova"
        };
        IsoConfig {
            iso_url: Some(path),
            iso_checksum: Some(
                self.checksum
                    .clone()
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| "none".into()),
            ),
            iso_target_path: self.target_path.clone(),
            iso_target_extension: extension.into(),
            ..IsoConfig::default()
        }
    }

    /// The arguments after `import FILE --vsys 0 --vmname NAME`: `import_flags`, then
    /// `--options import_opts` (Packer's order).
    pub fn import_args(&self) -> Vec<String> {
        let mut args = self.import_flags.clone();
        if !self.import_opts.is_empty() {
            args.extend(["--options".to_owned(), self.import_opts.clone()]);
        }
        args
    }

    /// Checks Packer makes after decoding, as (option, message) pairs.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.source_path.as_deref().unwrap_or("").is_empty() {
            out.push(("source_path", "source_path is required".to_owned()));
        }
        out.extend(self.group_problems());
        out.extend(self.common.problems(&self.comm, "ide"));
        out
    }
}

/// A `source "virtualbox-vm" "name" {}` block, decoded: a VM already registered with
/// VirtualBox, built on in place (optionally from and to a snapshot), never deleted.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct VirtualBoxVmConfig {
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
    /// Output directory and VM name (`vm_name` is required: the VM to use).
    #[serde(flatten)]
    pub output: OutputConfig,
    /// Extra CD.
    #[serde(flatten)]
    pub cd: CdConfig,
    /// Floppy.
    #[serde(flatten)]
    pub floppy: FloppyConfig,
    /// Host ports for the SSH forward.
    #[serde(flatten)]
    pub ports: HostPortConfig,
    /// What the shared VirtualBox steps read.
    #[serde(flatten)]
    pub common: VirtualBoxCommon,

    /// Restore this snapshot before starting the VM.
    pub attach_snapshot: Option<String>,
    /// Take this snapshot after shutdown.
    pub target_snapshot: Option<String>,
    /// Replace an existing `target_snapshot` instead of failing.
    #[serde(deserialize_with = "weak::bool")]
    pub force_delete_snapshot: bool,
}

impl Default for VirtualBoxVmConfig {
    fn default() -> Self {
        Self {
            http: HttpConfig::default(),
            boot: BootConfig::default(),
            comm: CommConfig::default(),
            shutdown: ShutdownConfig::default(),
            output: OutputConfig::default(),
            cd: CdConfig::default(),
            floppy: FloppyConfig::default(),
            ports: HostPortConfig::default(),
            common: VirtualBoxCommon {
                // Packer's virtualbox-vm waits 2s after shutdown unless told otherwise.
                post_shutdown_delay: GoDuration::secs(2),
                ..VirtualBoxCommon::default()
            },
            attach_snapshot: None,
            target_snapshot: None,
            force_delete_snapshot: false,
        }
    }
}

common::option_groups!(VirtualBoxVmConfig: http, boot, comm, cd, floppy, ports);

impl VirtualBoxVmConfig {
    /// `attach_snapshot`, unless empty.
    pub fn attach_snapshot(&self) -> Option<&str> {
        self.attach_snapshot.as_deref().filter(|s| !s.is_empty())
    }

    /// `target_snapshot`, unless empty.
    pub fn target_snapshot(&self) -> Option<&str> {
        self.target_snapshot.as_deref().filter(|s| !s.is_empty())
    }

    /// Checks Packer makes after decoding, as (option, message) pairs. Those that need the
    /// VM's snapshots are made when the build starts (kiln validates without VirtualBox).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.output.vm_name.as_deref().unwrap_or("").is_empty() {
            out.push((
                "vm_name",
                "vm_name is required: the name of the registered VM to build on".to_owned(),
            ));
        }
        if let (Some(a), Some(t)) = (self.attach_snapshot(), self.target_snapshot()) {
            if a == t {
                out.push((
                    "target_snapshot",
                    format!("attach snapshot {a:?} and target snapshot {t:?} cannot be the same"),
                ));
            }
        }
        out.extend(self.group_problems());
        out.extend(self.common.problems(&self.comm, "ide"));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_with_defaults() {
        let c: VirtualBoxIsoConfig = serde_json::from_value(json!({
            "iso_url": "x.iso", "iso_checksum": "none", "ssh_username": "u", "vboxmanage": [["modifyvm", "{{.Name}}", "--memory", "1024"]],
            "disk_size": 65536, "guest_os_type": "Debian_64"
        }))
        .unwrap();
        assert_eq!(c.disk_size, 65536);
        assert_eq!(c.common.format, "ovf");
        assert!(c.problems().is_empty());
        assert!(serde_json::from_value::<VirtualBoxIsoConfig>(json!({"vboxmanag": []})).is_err());
    }

    #[test]
    fn packers_value_checks_name_the_option_and_the_allowed_values() {
        let c: VirtualBoxIsoConfig = serde_json::from_value(json!({
            "iso_url": "x.iso", "iso_checksum": "none", "ssh_username": "u", "firmware": "efi64",
            "usb_controller": "uhci", "gfx_efi_resolution": "1920*1080", "sata_port_count": 31,
            "nested_virt": "true"
        }))
        .unwrap();
        assert_eq!(c.nested_virt, Some(true));
        let p = c.problems();
        let options: Vec<&str> = p.iter().map(|(o, _)| *o).collect();
        assert_eq!(
            options,
            [
                "firmware",
                "usb_controller",
                "gfx_efi_resolution",
                "sata_port_count"
            ],
            "{p:?}"
        );
        assert!(p[0].1.contains("use bios, efi"), "{p:?}");
    }

    #[test]
    fn guest_additions_are_checked_as_packer_checks_them() {
        let c: VirtualBoxIsoConfig = serde_json::from_value(json!({
            "iso_url": "x.iso", "iso_checksum": "none", "communicator": "none",
            "iso_interface": "sata"
        }))
        .unwrap();
        // Upload (the default) needs a communicator.
        let p = c.problems();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].1.contains("needs a communicator"), "{p:?}");
        let mut attach = c;
        attach.common.guest_additions_mode = "attach".into();
        assert!(attach.problems().is_empty());
        // The additions go where the ISO goes unless told otherwise.
        assert_eq!(attach.guest_additions_interface(), "sata");
        assert!(attach.uses_bus("sata") && !attach.uses_bus("virtio"));
        let mut virtio = attach;
        virtio.common.guest_additions_interface = Some("virtio".into());
        assert!(virtio.uses_bus("virtio"));
        let mut bad = virtio;
        bad.common.guest_additions_mode = "mount".into();
        bad.common.guest_additions_interface = Some("scsi".into());
        let options: Vec<&str> = bad.problems().iter().map(|(o, _)| *o).collect();
        assert_eq!(
            options,
            ["guest_additions_interface", "guest_additions_mode"]
        );
    }

    #[test]
    fn ovf_and_vm_options_are_checked_as_packer_checks_them() {
        // (builder, options, options Packer's Prepare() names)
        let cases: [(&str, serde_json::Value, &[&str]); 8] = [
            ("ovf", json!({}), &["source_path"]),
            ("ovf", json!({"source_path": "a.ova"}), &[]),
            (
                "ovf",
                json!({"source_path": "a.ova", "format": "vmdk"}),
                &["format"],
            ),
            (
                "ovf",
                json!({"source_path": "a.ova", "communicator": "none"}),
                &["guest_additions_mode"],
            ),
            ("vm", json!({}), &["vm_name"]),
            (
                "vm",
                json!({"vm_name": "base", "attach_snapshot": "s"}),
                &[],
            ),
            (
                "vm",
                json!({"vm_name": "base", "attach_snapshot": "s", "target_snapshot": "s"}),
                &["target_snapshot"],
            ),
            (
                "vm",
                json!({"vm_name": "base", "guest_additions_interface": "scsi"}),
                &["guest_additions_interface"],
            ),
        ];
        for (builder, mut options, expected) in cases {
            // The communicator's own checks are tested with its group.
            if options.get("communicator").is_none() {
                options["ssh_username"] = json!("u");
            }
            let problems = if builder == "ovf" {
                serde_json::from_value::<VirtualBoxOvfConfig>(options.clone())
                    .unwrap()
                    .problems()
            } else {
                serde_json::from_value::<VirtualBoxVmConfig>(options.clone())
                    .unwrap()
                    .problems()
            };
            let got: Vec<&str> = problems.iter().map(|(o, _)| *o).collect();
            assert_eq!(got, expected, "{builder} {options}: {problems:?}");
        }
    }

    #[test]
    fn ovf_and_vm_refuse_unknown_options_and_each_others() {
        let ovf = |v| serde_json::from_value::<VirtualBoxOvfConfig>(v);
        let vm = |v| serde_json::from_value::<VirtualBoxVmConfig>(v);
        // The flattened groups and the common options decode…
        assert!(ovf(json!({"source_path": "a", "ssh_username": "u", "vboxmanage": [], "http_directory": "h"})).is_ok());
        assert!(vm(
            json!({"vm_name": "a", "ssh_username": "u", "headless": true, "floppy_files": []})
        )
        .is_ok());
        // …what the builder does not have is refused.
        assert!(ovf(json!({"source_pth": "a"})).is_err());
        assert!(ovf(json!({"iso_url": "a"})).is_err());
        assert!(ovf(json!({"attach_snapshot": "a"})).is_err());
        assert!(vm(json!({"source_path": "a"})).is_err());
        assert!(vm(json!({"disk_size": 1})).is_err());
    }

    #[test]
    fn ovf_source_and_import_arguments_follow_packer() {
        let c: VirtualBoxOvfConfig = serde_json::from_value(json!({
            "source_path": "dir/Base.OVF", "import_opts": "keepallmacs",
            "import_flags": ["--eula", "accept"], "target_path": "t"
        }))
        .unwrap();
        assert_eq!(
            c.import_args(),
            ["--eula", "accept", "--options", "keepallmacs"]
        );
        let iso = c.source();
        assert_eq!(iso.urls(), ["dir/Base.OVF"]);
        // Packer does not require a checksum: unset is not verified.
        assert_eq!(iso.checksum().as_deref(), Some("none"));
        assert_eq!(iso.iso_target_extension, "ovf");
        assert_eq!(iso.iso_target_path.as_deref(), Some("t"));
        let vm = VirtualBoxVmConfig::default();
        assert_eq!(vm.common.post_shutdown_delay, GoDuration::secs(2));
        assert!(!vm.common.skip_export && !vm.common.keep_registered);
    }
}
