//! Options of the `virtualbox-iso` source type, with Packer's names and defaults.

use super::common::{
    BootConfig, CdConfig, CommConfig, FloppyConfig, HostPortConfig, HttpConfig, IsoConfig,
    OutputConfig, ShutdownConfig,
};
use super::weak::{self, GoDuration};
use serde::{Deserialize, Serialize};

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
    /// `VBoxManage` commands run before boot (`{{ .Name }}` is the VM name).
    pub vboxmanage: Vec<Vec<String>>,
    /// `VBoxManage` commands run after shutdown.
    pub vboxmanage_post: Vec<Vec<String>>,
    /// File in the guest that receives the VirtualBox version.
    pub virtualbox_version_file: Option<String>,
    /// Keep the ISO attached in the exported VM.
    #[serde(deserialize_with = "weak::bool")]
    pub bundle_iso: bool,
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
    /// Keep the VM registered after the build.
    #[serde(deserialize_with = "weak::bool")]
    pub keep_registered: bool,
    /// Do not export the VM.
    #[serde(deserialize_with = "weak::bool")]
    pub skip_export: bool,
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
            cpus: 1,
            memory: 512,
            sound: "none".into(),
            usb: false,
            vboxmanage: Vec::new(),
            vboxmanage_post: Vec::new(),
            virtualbox_version_file: None,
            bundle_iso: false,
            guest_additions_mode: "upload".into(),
            guest_additions_interface: None,
            guest_additions_path: "VBoxGuestAdditions.iso".into(),
            guest_additions_sha256: None,
            guest_additions_url: None,
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
            keep_registered: false,
            skip_export: false,
        }
    }
}

/// `(option, value, allowed values)` for each option Packer checks against a list.
fn choices(c: &VirtualBoxIsoConfig) -> [(&'static str, &str, &'static [&'static str]); 12] {
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
        (
            "guest_additions_interface",
            c.guest_additions_interface(),
            &["ide", "sata", "virtio"],
        ),
    ]
}

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

    /// `virtualbox_version_file`, `.vbox_version` when unset (empty: no upload).
    pub fn virtualbox_version_file(&self) -> &str {
        self.virtualbox_version_file
            .as_deref()
            .unwrap_or(".vbox_version")
    }

    /// `guest_additions_interface`, or `iso_interface` when unset (Packer's default).
    pub fn guest_additions_interface(&self) -> &str {
        self.guest_additions_interface
            .as_deref()
            .unwrap_or(&self.iso_interface)
    }

    /// Whether a storage controller on `bus` (`sata`, `virtio`) is needed for the ISOs or the
    /// disks: the guest additions ISO counts when it is attached.
    pub fn uses_bus(&self, bus: &str) -> bool {
        self.hard_drive_interface == bus
            || self.iso_interface == bus
            || (self.guest_additions_mode == "attach" && self.guest_additions_interface() == bus)
    }

    /// `skip_nat_mapping` or its older name `ssh_skip_nat_mapping`.
    pub fn skip_nat_mapping(&self) -> bool {
        self.skip_nat_mapping || self.ssh_skip_nat_mapping
    }

    /// Checks Packer makes after decoding, as (option, message) pairs.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = self.iso.problems();
        out.extend(self.http.problems());
        out.extend(self.boot.problems());
        out.extend(self.ports.problems());
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
        if self.guest_additions_mode == "upload" && self.comm.communicator == "none" {
            out.push((
                "guest_additions_mode",
                "guest_additions_mode = \"upload\" needs a communicator to upload over\nhint: set guest_additions_mode = \"attach\" or \"disable\" with communicator = \"none\"".into(),
            ));
        }
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
            "iso_url": "x.iso", "iso_checksum": "none", "vboxmanage": [["modifyvm", "{{.Name}}", "--memory", "1024"]],
            "disk_size": 65536, "guest_os_type": "Debian_64"
        }))
        .unwrap();
        assert_eq!(c.disk_size, 65536);
        assert_eq!(c.format, "ovf");
        assert!(c.problems().is_empty());
        assert!(serde_json::from_value::<VirtualBoxIsoConfig>(json!({"vboxmanag": []})).is_err());
    }

    #[test]
    fn packers_value_checks_name_the_option_and_the_allowed_values() {
        let c: VirtualBoxIsoConfig = serde_json::from_value(json!({
            "iso_url": "x.iso", "iso_checksum": "none", "firmware": "efi64",
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
        let attach = VirtualBoxIsoConfig {
            guest_additions_mode: "attach".into(),
            ..c
        };
        assert!(attach.problems().is_empty());
        // The additions go where the ISO goes unless told otherwise.
        assert_eq!(attach.guest_additions_interface(), "sata");
        assert!(attach.uses_bus("sata") && !attach.uses_bus("virtio"));
        let virtio = VirtualBoxIsoConfig {
            guest_additions_interface: Some("virtio".into()),
            ..attach
        };
        assert!(virtio.uses_bus("virtio"));
        let bad = VirtualBoxIsoConfig {
            guest_additions_mode: "mount".into(),
            guest_additions_interface: Some("scsi".into()),
            ..virtio
        };
        let options: Vec<&str> = bad.problems().iter().map(|(o, _)| *o).collect();
        assert_eq!(
            options,
            ["guest_additions_interface", "guest_additions_mode"]
        );
    }
}
