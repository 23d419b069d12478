//! Options of the `vmware-iso` source type, with Packer's names and defaults.

use super::common;
use super::common::{
    BootConfig, CdConfig, CommConfig, FloppyConfig, HttpConfig, IsoConfig, OutputConfig,
    ShutdownConfig,
};
use super::weak;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

    /// Path of VMware Fusion (macOS).
    pub fusion_app_path: Option<String>,
    /// `esx5` for remote builds (not supported by kiln).
    pub remote_type: Option<String>,
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
    /// Network name (remote builds).
    pub network_name: Option<String>,
    /// NIC model (`e1000`, `vmxnet3`…).
    pub network_adapter_type: Option<String>,
    /// Add a sound card.
    #[serde(deserialize_with = "weak::bool")]
    pub sound: bool,
    /// Add a USB controller.
    #[serde(deserialize_with = "weak::bool")]
    pub usb: bool,
    /// Serial port specification.
    pub serial: Option<String>,
    /// Parallel port specification.
    pub parallel: Option<String>,
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
    /// `upload`, `attach` or `disable` (newer plugin versions).
    pub tools_mode: Option<String>,
    /// `linux`, `windows`, `darwin`….
    pub tools_upload_flavor: Option<String>,
    /// Upload path in the guest.
    pub tools_upload_path: Option<String>,
    /// Local tools ISO.
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
    /// Do not defragment / shrink the disk.
    #[serde(deserialize_with = "weak::bool")]
    pub skip_compaction: bool,
    /// Sizes in MiB of extra disks.
    pub disk_additional_size: Vec<u64>,
    /// `ide`, `sata`, `nvme`, `scsi`, `lsilogic`, `pvscsi`….
    pub disk_adapter_type: String,
    /// Base name of the disk file.
    pub vmdk_name: String,
    /// vmware-vdiskmanager disk type (1: growable split in 2GB files).
    pub disk_type_id: String,
    /// Disk size in MiB.
    #[serde(deserialize_with = "weak::int")]
    pub disk_size: u64,
    /// `ide`, `sata` or `scsi`.
    pub cdrom_adapter_type: Option<String>,
    /// VMware guest OS id.
    pub guest_os_type: String,
    /// Virtual hardware version.
    #[serde(deserialize_with = "weak::int")]
    pub version: u32,
    /// A template for the disk part of the `.vmx`.
    pub vmx_disk_template_path: Option<String>,
    /// A template for the whole `.vmx`.
    pub vmx_template_path: Option<String>,
    /// Take a snapshot with this name at the end (remote builds).
    pub snapshot_name: Option<String>,
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
            fusion_app_path: None,
            remote_type: None,
            firmware: None,
            cpus: None,
            cores: None,
            memory: None,
            network: None,
            network_name: None,
            network_adapter_type: None,
            sound: false,
            usb: false,
            serial: None,
            parallel: None,
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
            disk_size: 40000,
            cdrom_adapter_type: None,
            guest_os_type: "other".into(),
            version: 9,
            vmx_disk_template_path: None,
            vmx_template_path: None,
            snapshot_name: None,
            vhv_enabled: false,
        }
    }
}

common::option_groups!(VmwareIsoConfig: iso, http, boot, comm, cd, floppy);

impl VmwareIsoConfig {
    /// Checks Packer makes after decoding, as (option, message) pairs.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = common::problems_of(&self.groups());
        if let Some(f) = &self.format {
            if !["vmx", "ovf", "ova"].contains(&f.as_str()) {
                out.push((
                    "format",
                    format!("format {f:?} is not supported: use vmx, ovf or ova"),
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
        if self.remote_type.is_some() {
            out.push((
                "remote_type",
                "remote (ESXi) builds are not supported by kiln: remove remote_type".to_owned(),
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
            "version": "19", "tools_mode": "upload"
        }))
        .unwrap();
        assert_eq!(c.version, 19);
        assert_eq!(c.disk_adapter_type, "lsilogic");
        assert!(c.problems().is_empty());
    }
}
