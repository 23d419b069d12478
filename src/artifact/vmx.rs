//! VMware `.vmx` files: the machine description a `vmware_desktop` Vagrant box carries beside its
//! disks when it comes from a QEMU build. A small, fixed set of keys (hardware version 9, Packer's
//! default for vmware-iso; an LSI Logic SCSI controller; one NAT e1000 adapter), in a fixed order,
//! so the same machine gives the same bytes; written through [`crate::vmx`], which also reads and
//! edits existing files.

use crate::vmx::Vmx;

/// The machine described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmxMachine {
    /// `displayName`.
    pub name: String,
    pub cpus: u32,
    pub memory_mb: u64,
    /// Disk file names, beside the vmx, attached as `scsi0:0`, `scsi0:1`, ….
    pub disks: Vec<String>,
}

impl VmxMachine {
    /// The vmx text.
    pub fn render(&self) -> String {
        let mut lines: Vec<(String, String)> = vec![
            ("config.version".into(), "8".into()),
            ("virtualHW.version".into(), "9".into()),
            ("displayName".into(), self.name.clone()),
            ("guestOS".into(), "other-64".into()),
            ("memsize".into(), self.memory_mb.to_string()),
            ("numvcpus".into(), self.cpus.to_string()),
            ("scsi0.present".into(), "TRUE".into()),
            ("scsi0.virtualDev".into(), "lsilogic".into()),
        ];
        for (i, disk) in self.disks.iter().enumerate() {
            lines.push((format!("scsi0:{i}.present"), "TRUE".into()));
            lines.push((format!("scsi0:{i}.fileName"), disk.clone()));
        }
        lines.extend([
            ("ethernet0.present".into(), "TRUE".into()),
            ("ethernet0.connectionType".into(), "nat".into()),
            ("ethernet0.virtualDev".into(), "e1000".into()),
            ("ethernet0.addressType".into(), "generated".into()),
        ]);
        // Starts with `.encoding`; values escaped as VMware does (`|22`, `|7C`).
        let mut vmx = Vmx::new();
        for (key, v) in lines {
            vmx.set(&key, &v);
        }
        vmx.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_disks_numbered() {
        let m = VmxMachine {
            name: "a \"b\" | c".into(),
            cpus: 2,
            memory_mb: 1024,
            disks: vec!["x-disk001.vmdk".into(), "x-disk002.vmdk".into()],
        };
        let text = m.render();
        assert!(
            text.contains("displayName = \"a |22b|22 |7C c\"\n"),
            "{text}"
        );
        assert!(
            text.contains("scsi0:1.fileName = \"x-disk002.vmdk\"\n"),
            "{text}"
        );
        assert!(text.starts_with(".encoding = \"UTF-8\"\n"));
    }
}
