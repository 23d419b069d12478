//! `kiln build` of a `vmware-iso` template with its own `vmx_template_path` and
//! `vmx_disk_template_path` through the VMware stand-ins (see `vmware.rs`): the `.vmx` VMware
//! is started with is the user's Go template rendered with Packer's values (conditionals,
//! trim markers and a Packer 1.x field name included), one rendering of the disk template per
//! extra disk, then `vmx_data` and kiln's build keys; a template error stops the build before
//! the VM is started, naming the file, line and column.

#![allow(clippy::unwrap_used, reason = "tests may unwrap")]

use std::path::Path;

use super::vmware::{kiln, vmx_value};

const TEMPLATE: &str = r#"source "vmware-iso" "vm" {
  iso_url                = "a.iso"
  iso_checksum           = "none"
  communicator           = "none"
  guest_os_type          = "debian12-64"
  cpus                   = 2
  memory                 = 1024
  disk_size              = 2048
  disk_additional_size   = [64, 128]
  network_adapter_type   = "vmxnet3"
  usb                    = true
  usb_version            = "3.1"
  headless               = true
  boot_wait              = "0s"
  vmx_template_path      = "custom.vmx.tmpl"
  vmx_disk_template_path = "disk.vmx.tmpl"
  vmx_data = {
    "annotation" = "from vmx_data"
  }
  format = "vmx"
}
build { sources = ["source.vmware-iso.vm"] }
"#;

const VMX_TEMPLATE: &str = r#".encoding = "UTF-8"
// A hand-kept copy of Packer's default, trimmed
displayName = "{{ .Name }}"
guestOS = "{{ .GuestOS }}"
numvcpus = "{{ .CpuCount }}"
memsize = "{{ .MemorySize }}"
virtualHW.version = "{{ .Version }}"
{{/* the firmware only when one is asked for */}}
{{- if .Firmware }}
firmware = "{{ .Firmware }}"
{{- end }}
annotation = "set by the template"
ethernet0.present = "TRUE"
ethernet0.connectionType = "{{ .Network_Type }}"
ethernet0.virtualDev = "{{ .NetworkAdapter }}"
{{ .DiskType }}0.present = "TRUE"
{{ .DiskType }}0:0.present = "TRUE"
{{ .DiskType }}0:0.fileName = "{{ .DiskName }}.vmdk"
{{ .CdromType }}0:{{ .CdromTypePrimarySecondary }}.present = "TRUE"
{{ .CdromType }}0:{{ .CdromTypePrimarySecondary }}.fileName = "{{ .ISOPath }}"
{{ .CdromType }}0:{{ .CdromTypePrimarySecondary }}.deviceType = "cdrom-image"
{{ if .UsbPresent }}usb.present = "{{ .UsbPresent }}"{{ end }}
{{ if and .UsbPresent (or (eq .UsbVersion "3.1") (eq .UsbVersion "3.2")) }}usb_xhci.present = "TRUE"{{ end }}
vhv.enable = "{{ if .HardwareAssistedVirtualization -}} TRUE {{- else -}} FALSE {{- end }}"
"#;

const DISK_TEMPLATE: &str = r#"
{{ .DiskType }}0:{{ .DiskUnit }}.fileName = "{{ .DiskName }}-{{ .DiskNumber }}.vmdk"
{{ .DiskType }}0:{{ .DiskUnit }}.present = "TRUE"
{{ .DiskType }}0:{{ .DiskUnit }}.mode = "{{ if eq .DiskNumber 1 }}persistent{{ else }}independent-persistent{{ end }}"
"#;

fn setup(vmx_template: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.iso"), b"an installer").unwrap();
    std::fs::write(dir.path().join("t.pkr.hcl"), TEMPLATE).unwrap();
    std::fs::write(dir.path().join("custom.vmx.tmpl"), vmx_template).unwrap();
    std::fs::write(dir.path().join("disk.vmx.tmpl"), DISK_TEMPLATE).unwrap();
    dir
}

/// Every recorded call's program and verb (`vmrun start`, `vmware-vdiskmanager -c`).
fn verbs(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("calls.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Vec<String>>(l).unwrap())
        .filter(|c| c.len() > 1)
        .map(|c| {
            let verb = if c[0] == "vmrun" { &c[3] } else { &c[1] };
            format!("{} {verb}", c[0])
        })
        .collect()
}

#[test]
fn the_vm_starts_with_the_rendered_vmx_template_and_a_disk_template_per_extra_disk() {
    let dir = setup(VMX_TEMPLATE);
    let out = kiln(dir.path())
        .args(["build", "t.pkr.hcl"])
        .output()
        .unwrap();
    let text = super::support::text(&out);
    assert!(out.status.success(), "{text}");
    let started = std::fs::read_to_string(dir.path().join("packer-vm.started.vmx")).unwrap();
    let at_start = |k: &str| vmx_value(&started, k);
    for (k, v) in [
        ("displayName", "packer-vm"),
        ("guestOS", "debian12-64"),
        ("numvcpus", "2"),
        ("memsize", "1024"),
        ("virtualHW.version", "21"),
        ("ethernet0.connectionType", "nat"),
        ("ethernet0.virtualDev", "vmxnet3"),
        ("scsi0:0.fileName", "disk.vmdk"),
        ("ide0:0.deviceType", "cdrom-image"),
        ("usb.present", "TRUE"),
        ("usb_xhci.present", "TRUE"),
        ("vhv.enable", "FALSE"),
        // The extra disks after the main one (the CD-ROM is on IDE).
        ("scsi0:1.fileName", "disk-1.vmdk"),
        ("scsi0:1.mode", "persistent"),
        ("scsi0:2.fileName", "disk-2.vmdk"),
        ("scsi0:2.mode", "independent-persistent"),
        // vmx_data after the template; kiln's build keys after that.
        ("annotation", "from vmx_data"),
        ("RemoteDisplay.vnc.enabled", "TRUE"),
    ] {
        assert_eq!(at_start(k).as_deref(), Some(v), "{k} in {started}");
    }
    let cd = at_start("ide0:0.fileName").unwrap();
    assert!(
        Path::new(&cd).is_absolute() && cd.ends_with("a.iso"),
        "{cd}"
    );
    // The template's text is kept: Packer's `//` heading as a comment, no `firmware` key.
    assert!(
        started.contains("# // A hand-kept copy of Packer's default"),
        "{started}"
    );
    assert_eq!(at_start("firmware"), None, "{started}");
    assert!(!started.contains("{{"), "{started}");
    // The three disks were made, then the VM started with that .vmx.
    assert_eq!(
        verbs(dir.path())
            .into_iter()
            .filter(|v| v != "vmrun list")
            .take(4)
            .collect::<Vec<_>>(),
        [
            "vmware-vdiskmanager -c",
            "vmware-vdiskmanager -c",
            "vmware-vdiskmanager -c",
            "vmrun start"
        ]
    );
}

#[test]
fn a_template_error_names_the_file_line_and_column_and_starts_nothing() {
    let bad = VMX_TEMPLATE.replace("{{ .GuestOS }}", "{{ .GuestOs }}");
    let dir = setup(&bad);
    let out = kiln(dir.path())
        .args(["build", "t.pkr.hcl"])
        .output()
        .unwrap();
    let text = super::support::text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("custom.vmx.tmpl: line 4, column 15: unknown field `.GuestOs`"),
        "{text}"
    );
    assert!(
        !verbs(dir.path()).iter().any(|v| v == "vmrun start"),
        "{text}"
    );
    assert!(!dir.path().join("packer-vm.started.vmx").exists());
}
