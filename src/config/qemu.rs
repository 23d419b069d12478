//! Options of the `qemu` source type: every option of Packer's QEMU builder with Packer's
//! defaults, plus kiln's `accelerator = "auto"` (probe KVM, fall back to TCG). Option groups
//! shared with other builders are flattened in from [`super::common`].

use super::common;
use super::common::{
    BootConfig, CdConfig, CommConfig, FloppyConfig, HostPortConfig, HttpConfig, IsoConfig,
    OutputConfig, ShutdownConfig,
};
use super::weak::{self, Size};
use serde::{Deserialize, Serialize};

/// Extra arguments for the `qemu-img` sub-commands kiln runs.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct QemuImgArgs {
    /// Added to `qemu-img create`.
    pub create: Vec<String>,
    /// Added to `qemu-img convert`.
    pub convert: Vec<String>,
    /// Added to `qemu-img resize`.
    pub resize: Vec<String>,
}

/// A `source "qemu" "name" {}` block, decoded.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct QemuConfig {
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

    /// QEMU reads the ISO from its URL (its curl driver): no download, no checksum.
    #[serde(deserialize_with = "weak::bool")]
    pub iso_skip_cache: bool,
    /// `auto` (kiln: KVM when usable, else TCG), `kvm`, `tcg`, `hvf`, `whpx`, `xen`, `hax` or `none`.
    pub accelerator: String,
    /// Sizes of additional disks, named `<vm_name>-1`, `-2`, ….
    pub disk_additional_size: Vec<weak::ImgSize>,
    /// Virtual CPUs.
    #[serde(deserialize_with = "weak::opt_int")]
    pub cpus: Option<u32>,
    /// CPU sockets.
    #[serde(deserialize_with = "weak::opt_int")]
    pub sockets: Option<u32>,
    /// Cores per socket.
    #[serde(deserialize_with = "weak::opt_int")]
    pub cores: Option<u32>,
    /// Threads per core.
    #[serde(deserialize_with = "weak::opt_int")]
    pub threads: Option<u32>,
    /// `-cpu` model (`host` by default with KVM).
    pub cpu_model: Option<String>,
    /// Boot with UEFI firmware.
    #[serde(deserialize_with = "weak::bool")]
    pub efi_boot: bool,
    /// UEFI code image.
    pub efi_firmware_code: Option<String>,
    /// UEFI variables template, copied to `efivars.fd`.
    pub efi_firmware_vars: Option<String>,
    /// Leave `efivars.fd` out of the artifact.
    #[serde(deserialize_with = "weak::bool")]
    pub efi_drop_efivars: bool,
    /// A `-bios` firmware file.
    pub firmware: Option<String>,
    /// Load the firmware as pflash.
    #[serde(deserialize_with = "weak::opt_bool")]
    pub use_pflash: Option<bool>,
    /// `virtio`, `ide`, `scsi`, `virtio-scsi`, `nvme`….
    pub disk_interface: String,
    /// Size of the main disk (`""` and `0`: the default, 40960M, as in Packer).
    #[serde(deserialize_with = "weak::size_or_default")]
    pub disk_size: Option<Size>,
    /// Do not resize a `disk_image` to `disk_size`.
    #[serde(deserialize_with = "weak::bool")]
    pub skip_resize_disk: bool,
    /// `writeback`, `none`, `writethrough`, `unsafe`, `directsync`.
    pub disk_cache: String,
    /// `ignore` or `unmap`.
    pub disk_discard: String,
    /// `off`, `on` or `unmap`.
    pub disk_detect_zeroes: String,
    /// Skip the final `qemu-img convert`.
    #[serde(deserialize_with = "weak::bool")]
    pub skip_compaction: bool,
    /// Compress the final qcow2 (`qemu-img convert -c`).
    #[serde(deserialize_with = "weak::bool")]
    pub disk_compression: bool,
    /// `qcow2` or `raw`.
    pub format: String,
    /// Run without a display window.
    #[serde(deserialize_with = "weak::bool")]
    pub headless: bool,
    /// `iso_url` is a disk image to boot, not an installer ISO.
    #[serde(deserialize_with = "weak::bool")]
    pub disk_image: bool,
    /// Use the disk image as a qcow2 backing file instead of copying it.
    #[serde(deserialize_with = "weak::bool")]
    pub use_backing_file: bool,
    /// `-machine` type.
    pub machine_type: String,
    /// Memory in MiB.
    #[serde(deserialize_with = "weak::int")]
    pub memory: u32,
    /// NIC model.
    pub net_device: String,
    /// Bridge to attach to instead of user networking.
    pub net_bridge: Option<String>,
    /// Extra QEMU switches; replace the default switch of the same name.
    pub qemuargs: Vec<Vec<String>>,
    /// Extra `qemu-img` arguments (a block).
    #[serde(deserialize_with = "weak::block")]
    pub qemu_img_args: QemuImgArgs,
    /// The QEMU binary.
    pub qemu_binary: String,
    /// Expose a QMP socket.
    #[serde(deserialize_with = "weak::bool")]
    pub qmp_enable: bool,
    /// QMP socket path (`<output_directory>/<vm_name>.monitor` by default).
    pub qmp_socket_path: Option<String>,
    /// Let QEMU pick its display.
    #[serde(deserialize_with = "weak::bool")]
    pub use_default_display: bool,
    /// `-vga` type.
    pub vga: Option<String>,
    /// `-display` back end.
    pub display: Option<String>,
    /// VNC listen address.
    pub vnc_bind_address: String,
    /// Protect VNC with a password (set over QMP): `vnc_password`, else a random one.
    #[serde(deserialize_with = "weak::bool")]
    pub vnc_use_password: bool,
    /// The VNC password with `vnc_use_password` (at most 8 characters, VNC's limit); ignored
    /// without it, as in Packer.
    pub vnc_password: String,
    /// Lowest VNC port.
    #[serde(deserialize_with = "weak::int")]
    pub vnc_port_min: u16,
    /// Highest VNC port.
    #[serde(deserialize_with = "weak::int")]
    pub vnc_port_max: u16,
    /// `ide`, `virtio`, `scsi`…; chosen from `disk_interface` when unset.
    pub cdrom_interface: Option<String>,
    /// Attach a software TPM (swtpm).
    #[serde(deserialize_with = "weak::bool")]
    pub vtpm: bool,
    /// TPM 1.2 instead of 2.0.
    #[serde(deserialize_with = "weak::bool")]
    pub use_tpm1: bool,
    /// TPM device model.
    pub tpm_device_type: Option<String>,
    /// Connect to the guest directly, without a host port forward.
    #[serde(deserialize_with = "weak::bool")]
    pub skip_nat_mapping: bool,
    /// Deprecated in Packer, accepted and ignored.
    #[serde(deserialize_with = "weak::bool")]
    pub run_once: bool,
}

impl Default for QemuConfig {
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
            iso_skip_cache: false,
            accelerator: "auto".into(),
            disk_additional_size: Vec::new(),
            cpus: None,
            sockets: None,
            cores: None,
            threads: None,
            cpu_model: None,
            efi_boot: false,
            efi_firmware_code: None,
            efi_firmware_vars: None,
            efi_drop_efivars: false,
            firmware: None,
            use_pflash: None,
            disk_interface: "virtio".into(),
            disk_size: None,
            skip_resize_disk: false,
            disk_cache: "writeback".into(),
            disk_discard: "ignore".into(),
            disk_detect_zeroes: "off".into(),
            skip_compaction: false,
            disk_compression: false,
            format: "qcow2".into(),
            headless: false,
            disk_image: false,
            use_backing_file: false,
            machine_type: "pc".into(),
            memory: 512,
            net_device: "virtio-net".into(),
            net_bridge: None,
            qemuargs: Vec::new(),
            qemu_img_args: QemuImgArgs::default(),
            qemu_binary: "qemu-system-x86_64".into(),
            qmp_enable: false,
            qmp_socket_path: None,
            use_default_display: false,
            vga: None,
            display: None,
            vnc_bind_address: "127.0.0.1".into(),
            vnc_use_password: false,
            vnc_password: String::new(),
            vnc_port_min: 5900,
            vnc_port_max: 6000,
            cdrom_interface: None,
            vtpm: false,
            use_tpm1: false,
            tpm_device_type: None,
            skip_nat_mapping: false,
            run_once: false,
        }
    }
}

/// Packer's default OVMF firmware code (`efi_firmware_code`).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
/// Packer's default OVMF variables template (`efi_firmware_vars`).
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";

common::option_groups!(QemuConfig: iso, http, boot, comm, cd, floppy, ports);

impl QemuConfig {
    /// The main disk's size: `disk_size`, or Packer's default of 40960M.
    pub fn disk_size(&self) -> Size {
        self.disk_size.unwrap_or(Size::mib(40960))
    }

    /// UEFI boot: `efi_boot`, or implied by `efi_firmware_code`/`efi_firmware_vars` (Packer).
    pub fn efi_enabled(&self) -> bool {
        self.efi_boot || self.efi_firmware_code.is_some() || self.efi_firmware_vars.is_some()
    }

    /// The UEFI code file.
    pub fn efi_code(&self) -> &str {
        self.efi_firmware_code.as_deref().unwrap_or(OVMF_CODE)
    }

    /// The UEFI variables template, copied into the output directory for the build.
    pub fn efi_vars(&self) -> &str {
        self.efi_firmware_vars.as_deref().unwrap_or(OVMF_VARS)
    }

    /// The TPM device model: `tpm_device_type`, else `tpm-tis` (Packer's default).
    pub fn tpm_device_type(&self) -> &str {
        self.tpm_device_type.as_deref().unwrap_or("tpm-tis")
    }

    /// Checks Packer makes after decoding, as (option, message) pairs.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = self.group_problems();
        if self.iso_skip_cache && !self.disk_image {
            // QEMU reads the ISO from its URL: nothing is downloaded to check (Packer's qemu
            // config sets iso_checksum to "none" then).
            out.retain(|(k, _)| *k != "iso_checksum");
        }
        if !["qcow2", "raw"].contains(&self.format.as_str()) {
            out.push((
                "format",
                format!(
                    "format {:?} is not supported: use qcow2 or raw",
                    self.format
                ),
            ));
        }
        if self.vnc_use_password && self.vnc_password.len() > 8 {
            // Packer's check (its build fails on it); the password itself is not repeated.
            out.push((
                "vnc_password",
                format!(
                    "vnc_password is {} characters long; VNC passwords have at most 8",
                    self.vnc_password.len()
                ),
            ));
        }
        if self.use_backing_file && !(self.disk_image && self.format == "qcow2") {
            out.push((
                "use_backing_file",
                "use_backing_file needs disk_image = true and format = \"qcow2\"".to_owned(),
            ));
        }
        out.extend(
            [
                super::one_of(
                    "accelerator",
                    &self.accelerator,
                    &["auto", "kvm", "tcg", "xen", "hax", "hvf", "whpx", "none"],
                ),
                super::one_of(
                    "disk_interface",
                    &self.disk_interface,
                    &["virtio", "virtio-scsi", "ide", "sata", "scsi", "sd", "nvme"],
                ),
                super::one_of(
                    "disk_cache",
                    &self.disk_cache,
                    &["writeback", "writethrough", "none", "unsafe", "directsync"],
                ),
                super::one_of("disk_discard", &self.disk_discard, &["ignore", "unmap"]),
                super::one_of(
                    "disk_detect_zeroes",
                    &self.disk_detect_zeroes,
                    &["off", "on", "unmap"],
                ),
            ]
            .into_iter()
            .flatten(),
        );
        if self.skip_resize_disk && !self.disk_image {
            out.push((
                "skip_resize_disk",
                "skip_resize_disk needs disk_image = true".to_owned(),
            ));
        }
        if self.vnc_port_min < 5900 || self.vnc_port_min > self.vnc_port_max {
            out.push((
                "vnc_port_min",
                format!(
                    "vnc_port_min ({}) must be at least 5900 and not above vnc_port_max ({})",
                    self.vnc_port_min, self.vnc_port_max
                ),
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
    fn defaults_match_packer() {
        let c: QemuConfig = serde_json::from_value(json!({})).unwrap();
        assert_eq!(c.accelerator, "auto");
        assert_eq!(c.disk_size(), Size::mib(40960));
        assert_eq!(c.memory, 512);
        assert_eq!(c.boot.boot_wait.to_string(), "10s");
        assert_eq!(c.comm.ssh_timeout().map(|d| d.as_secs()), Some(300));
        assert_eq!(c.ports.range(), (2222, 4444));
        assert_eq!(c.output.vm_name("debian"), "packer-debian");
    }

    #[test]
    fn decodes_flattened_groups_and_loose_types() {
        let c: QemuConfig = serde_json::from_value(json!({
            "iso_url": "x.iso", "iso_checksum": "none", "memory": "2048", "disk_size": "20G",
            "headless": "true", "ssh_username": "vagrant", "boot_wait": "5s",
            "qemu_img_args": [{"create": ["-o", "preallocation=off"]}],
            "qemuargs": [["-m", "1024"]]
        }))
        .unwrap();
        assert_eq!(c.memory, 2048);
        assert_eq!(c.disk_size(), Size::mib(20 * 1024));
        assert!(c.headless);
        assert_eq!(c.comm.ssh_username.as_deref(), Some("vagrant"));
        assert!(c.problems().is_empty());
        assert_eq!(c.qemu_img_args.create, ["-o", "preallocation=off"]);
    }

    /// Packer's qemu `Prepare()`: an empty or zero `disk_size` is the default 40960M.
    #[test]
    fn an_empty_disk_size_is_the_default() {
        for empty in [json!(""), json!("0"), json!(0)] {
            let c: QemuConfig = serde_json::from_value(json!({"disk_size": empty})).unwrap();
            assert_eq!(c.disk_size(), Size::mib(40960), "{empty}");
        }
        let c: QemuConfig = serde_json::from_value(json!({"disk_size": "5000"})).unwrap();
        assert_eq!(c.disk_size(), Size::mib(5000));
    }

    #[test]
    fn enumerated_options_are_checked_with_a_suggestion() {
        let c: QemuConfig = serde_json::from_value(json!({
            "iso_url": "x.iso", "iso_checksum": "none", "ssh_username": "u",
            "disk_interface": "virtio-scsci", "accelerator": "kvm2", "disk_cache": "unsafe",
            "skip_resize_disk": true, "vnc_port_min": 5000
        }))
        .unwrap();
        let p = c.problems();
        let keys: Vec<&str> = p.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "accelerator",
                "disk_interface",
                "skip_resize_disk",
                "vnc_port_min"
            ]
        );
        let iface = &p.iter().find(|(k, _)| *k == "disk_interface").unwrap().1;
        assert!(iface.contains("did you mean \"virtio-scsi\""), "{iface}");
    }

    /// Packer's qemu config_test.go TestVNCPasswordErrorWhenPasswordLenMoreThan8 (an error
    /// at validate here, without the password in it) and TestVNCPasswordEmptyWhenUsePasswordFalse.
    #[test]
    fn a_vnc_password_longer_than_8_is_refused_only_when_used() {
        let problems = |use_pw: bool| {
            let c: QemuConfig = serde_json::from_value(json!({
                "vnc_use_password": use_pw, "vnc_password": "secretpassword"
            }))
            .unwrap();
            c.problems()
                .into_iter()
                .filter(|(k, _)| *k == "vnc_password")
                .map(|(_, m)| m)
                .collect::<Vec<_>>()
        };
        let msgs = problems(true);
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert!(!msgs[0].contains("secretpassword"), "{msgs:?}");
        assert!(problems(false).is_empty());
    }

    /// Packer's qemu plugin needs no checksum with iso_skip_cache (QEMU reads the URL).
    #[test]
    fn iso_skip_cache_needs_no_checksum() {
        let c = |skip: bool| {
            let c: QemuConfig = serde_json::from_value(json!({
                "iso_url": "https://example.invalid/a.iso", "iso_skip_cache": skip,
                "ssh_username": "u"
            }))
            .unwrap();
            c.problems().into_iter().any(|(k, _)| k == "iso_checksum")
        };
        assert!(c(false));
        assert!(!c(true));
    }

    #[test]
    fn rejects_unknown_options() {
        let e = serde_json::from_value::<QemuConfig>(json!({"iso_ulr": "x"})).unwrap_err();
        assert!(e.to_string().contains("unknown field `iso_ulr`"), "{e}");
    }

    #[test]
    fn accepts_the_inline_ssh_keys_packer_steps_set() {
        let c = serde_json::from_value::<QemuConfig>(json!({
            "ssh_private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nsecretbody",
            "ssh_public_key": "ssh-ed25519 AAAA u@h",
        }))
        .unwrap();
        assert_eq!(
            c.comm.ssh_public_key.as_deref(),
            Some("ssh-ed25519 AAAA u@h")
        );
        assert!(c.comm.ssh_private_key.is_some());
        assert!(!format!("{c:?}").contains("secretbody"));
    }
}
