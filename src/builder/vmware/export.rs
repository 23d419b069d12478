//! Exporting a VMware VM to OVF/OVA without `ovftool`: the machine is read from its `.vmx`
//! (`displayName`, `numvcpus`, `memsize`, `guestOS`, `virtualHW.version`, the first NIC and the
//! present disks on their buses) and written by kiln's own packager ([`crate::artifact::ova`]),
//! which reads VMware's sparse, split and flat VMDKs and linked clones' delta disks. The files are
//! named as ovftool names them after its target: `<name>.ova`, or `<name>.ovf` with `<name>.mf`
//! and the disks beside it. `ovftool_options` are ovftool's own and are reported as ignored.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use crate::artifact::ova::{export, export_ovf, OvaError, OvaSpec};
use crate::artifact::ovf::{Bus, Details, DiskSlot, OvfVersion};
use crate::artifact::stream::WriteError;
use crate::vmx::Vmx;

/// What the export needs of a `.vmx`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmxMachine {
    /// `displayName`.
    pub display_name: Option<String>,
    /// `numvcpus` (1 when absent, as VMware).
    pub cpus: u32,
    /// `memsize` in MiB (VMware's 512 when absent).
    pub memory_mib: u64,
    /// `vmx-NN`, from `virtualHW.version`.
    pub system_type: String,
    /// The disks present, with their slots, in bus order.
    pub disks: Vec<(PathBuf, DiskSlot)>,
    /// The OS, NIC and slots as the descriptor says them.
    pub details: Details,
    /// `ethernet0`'s MAC, static or generated.
    pub mac: Option<String>,
}

fn truthy(v: Option<String>) -> bool {
    v.is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The machine `vmx` (the text of the file at `path`, whose directory relative disk names are
/// in) describes.
pub fn machine(vmx: &Vmx, path: &Path) -> VmxMachine {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut slots: Vec<(String, u32, u32, PathBuf)> = Vec::new();
    for key in vmx.keys() {
        let lower = key.to_ascii_lowercase();
        let Some(dev) = lower.strip_suffix(".filename") else {
            continue;
        };
        let Some((bus, c, u)) = device(dev) else {
            continue;
        };
        if slots
            .iter()
            .any(|(b, sc, su, _)| *b == bus && *sc == c && *su == u)
        {
            continue;
        }
        let Some(file) = vmx.get(&key) else { continue };
        let is_cdrom = vmx
            .get(&format!("{dev}.deviceType"))
            .is_some_and(|t| t.to_ascii_lowercase().contains("cdrom"));
        if !truthy(vmx.get(&format!("{dev}.present")))
            || is_cdrom
            || !file.to_ascii_lowercase().ends_with(".vmdk")
        {
            continue;
        }
        slots.push((bus, c, u, dir.join(file)));
    }
    slots.sort_by(|a, b| (&a.0, a.1, a.2).cmp(&(&b.0, b.1, b.2)));
    let disks: Vec<(PathBuf, DiskSlot)> = slots
        .into_iter()
        .map(|(bus, controller, unit, file)| {
            let bus = match bus.as_str() {
                "ide" => Bus::Ide,
                "sata" => Bus::Sata,
                "nvme" => Bus::Nvme,
                _ => Bus::Scsi(scsi_model(
                    vmx.get(&format!("scsi{controller}.virtualDev")).as_deref(),
                )),
            };
            (
                file,
                DiskSlot {
                    bus,
                    controller,
                    unit,
                },
            )
        })
        .collect();
    let nic_present = truthy(vmx.get("ethernet0.present"));
    let mac = nic_present
        .then(|| {
            vmx.get("ethernet0.address")
                .or_else(|| vmx.get("ethernet0.generatedAddress"))
        })
        .flatten()
        .filter(|m| !m.is_empty());
    let nic = nic_present.then(|| nic_type(vmx.get("ethernet0.virtualDev").as_deref()));
    let (os_id, os_description) = guest_os(vmx.get("guestOS").as_deref().unwrap_or("other"));
    let version: u32 = vmx
        .get("virtualHW.version")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(9);
    VmxMachine {
        display_name: vmx.get("displayName").filter(|n| !n.is_empty()),
        cpus: vmx
            .get("numvcpus")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(1),
        memory_mib: vmx
            .get("memsize")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(512),
        system_type: format!("vmx-{version:02}"),
        details: Details {
            os_id,
            os_description: os_description.to_owned(),
            disk_slots: disks.iter().map(|(_, s)| s.clone()).collect(),
            nic,
            display_name: None,
        },
        disks,
        mac,
    }
}

/// `sata0:1` → (`sata`, 0, 1); `None` for other devices.
fn device(dev: &str) -> Option<(String, u32, u32)> {
    let bus = ["ide", "sata", "scsi", "nvme"]
        .into_iter()
        .find(|b| dev.starts_with(b))?;
    let (c, u) = dev[bus.len()..].split_once(':')?;
    Some((bus.to_owned(), c.parse().ok()?, u.parse().ok()?))
}

/// A SCSI controller's OVF `ResourceSubType` for its `.vmx` `virtualDev`.
fn scsi_model(virtual_dev: Option<&str>) -> String {
    match virtual_dev.map(str::to_ascii_lowercase).as_deref() {
        Some("lsisas1068") => "lsilogicsas",
        Some("pvscsi") => "VirtualSCSI",
        Some("buslogic") => "buslogic",
        _ => "lsilogic",
    }
    .to_owned()
}

/// A NIC's OVF `ResourceSubType` for its `.vmx` `virtualDev` (VMware's default is an E1000).
fn nic_type(virtual_dev: Option<&str>) -> String {
    match virtual_dev.map(str::to_ascii_lowercase).as_deref() {
        Some("e1000e") => "E1000e",
        Some("vmxnet3") => "VmxNet3",
        Some("vmxnet") | Some("vmxnet2") => "VmxNet",
        Some("vlance") => "PCNet32",
        _ => "E1000",
    }
    .to_owned()
}

/// The CIM_OperatingSystem `OsType` (number and name) for a VMware `guestOS`; families without
/// a number of their own (recent Windows, macOS…) are `Other` / `Other 64-Bit`, as in ovftool's
/// descriptors.
pub fn guest_os(guest: &str) -> (u16, &'static str) {
    let g = guest.to_ascii_lowercase();
    let wide = g.ends_with("-64") || g.ends_with("_64");
    let pick = |narrow: (u16, &'static str), wide64: (u16, &'static str)| {
        if wide {
            wide64
        } else {
            narrow
        }
    };
    let starts = |p: &str| g.starts_with(p);
    if starts("ubuntu") {
        pick((93, "Ubuntu"), (94, "Ubuntu 64-Bit"))
    } else if starts("debian") {
        pick((95, "Debian"), (96, "Debian 64-Bit"))
    } else if starts("centos") {
        pick((106, "CentOS 32-bit"), (107, "CentOS 64-bit"))
    } else if starts("rhel") {
        pick(
            (79, "RedHat Enterprise Linux"),
            (80, "RedHat Enterprise Linux 64-Bit"),
        )
    } else if starts("oraclelinux") {
        pick((108, "Oracle Linux 32-bit"), (109, "Oracle Linux 64-bit"))
    } else if starts("sles") {
        pick((84, "SLES"), (85, "SLES 64-Bit"))
    } else if starts("suse") || starts("opensuse") {
        pick((82, "SUSE"), (83, "SUSE 64-Bit"))
    } else if starts("freebsd") {
        pick((42, "FreeBSD"), (78, "FreeBSD 64-Bit"))
    } else if starts("solaris") {
        pick((29, "Solaris"), (81, "Solaris 64-Bit"))
    } else if starts("windows7") {
        (105, "Microsoft Windows 7")
    } else if g.contains("linux") {
        pick((36, "LINUX"), (101, "Linux 64-Bit"))
    } else {
        pick((1, "Other"), (102, "Other 64-Bit"))
    }
}

/// Why kiln's own export (without ovftool) failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The `.vmx` of a VM kiln exports itself could not be read.
    #[error("cannot read {}", .path.display())]
    ReadVmx {
        /// The `.vmx`.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The `.vmx` of a VM kiln exports itself is not one.
    #[error("cannot parse {}", .path.display())]
    ParseVmx {
        /// The `.vmx`.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::vmx::VmxError,
    },
    /// kiln's own OVF/OVA export, used when `ovftool` is missing, failed.
    #[error("cannot export the VM to {} without ovftool", .path.display())]
    OwnExport {
        /// The `.ovf` or `.ova`.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::artifact::ova::OvaError,
    },
}

/// `ovftool <options> <vmx> <output>` done by kiln: the VM at `vmx` written to `output` (an
/// `.ova`, else an unpacked `.ovf` package beside it). Stops, leaving no part of the package,
/// when the returned future is dropped (a cancelled build).
pub async fn without_ovftool(
    options: &[String],
    vmx_path: &Path,
    output: &Path,
) -> Result<String, ExportError> {
    if !options.is_empty() {
        tracing::warn!(
            "ovftool not found: kiln exports the VM itself, and these ovftool_options do not apply to its export and are ignored: {}",
            options.join(" ")
        );
    }
    tracing::info!("ovftool not found: kiln writes {} itself", output.display());
    let text = std::fs::read_to_string(vmx_path).map_err(|source| ExportError::ReadVmx {
        path: vmx_path.to_owned(),
        source,
    })?;
    let vmx = Vmx::parse(&text).map_err(|source| ExportError::ParseVmx {
        path: vmx_path.to_owned(),
        source,
    })?;
    let mut m = machine(&vmx, vmx_path);
    let name = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "vm".into());
    m.details.display_name = m.display_name.clone().filter(|d| *d != name);
    let output = output.to_owned();
    let cancel = CancellationToken::new();
    // Dropping this future (a cancelled build) cancels the blocking export, which then
    // removes what it wrote.
    let _stop = cancel.clone().drop_guard();
    let out = output.clone();
    let job = tokio::task::spawn_blocking(move || -> Result<(), OvaError> {
        let spec = OvaSpec {
            name: &name,
            cpus: m.cpus,
            memory_mb: m.memory_mib,
            mac: m.mac.clone(),
            system_type: &m.system_type,
            version: OvfVersion::V1,
            details: m.details.clone(),
        };
        let disks: Vec<PathBuf> = m.disks.iter().map(|(p, _)| p.clone()).collect();
        let dir = out
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let unpacked = out
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("ovf"));
        if unpacked {
            export_ovf(&spec, &disks, &out, &cancel)?;
        } else {
            // The VMDKs are made beside the OVA (same filesystem) and go once it is packed.
            let work = tempfile::tempdir_in(dir).map_err(|source| WriteError::Write {
                path: dir.to_owned(),
                source,
            })?;
            export(&spec, &disks, work.path(), &out, &cancel)?;
        }
        Ok(())
    });
    let own = |source| ExportError::OwnExport {
        path: output.clone(),
        source,
    };
    match job.await {
        Ok(done) => done.map_err(own)?,
        Err(e) => {
            return Err(own(OvaError::Io(WriteError::Write {
                path: output.clone(),
                source: std::io::Error::other(e),
            })))
        }
    }
    Ok(String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vmx_gives_the_machine_its_disks_on_their_buses_and_its_nic() {
        let vmx = Vmx::parse(concat!(
            "displayName = \"web\"\nnumvcpus = \"4\"\nmemsize = \"2048\"\n",
            "guestOS = \"ubuntu-64\"\nvirtualHW.version = \"19\"\n",
            "scsi0.virtualDev = \"pvscsi\"\nscsi0:1.present = \"TRUE\"\n",
            "scsi0:1.fileName = \"data.vmdk\"\n",
            "sata0:0.present = \"TRUE\"\nsata0:0.fileName = \"disk.vmdk\"\n",
            "sata0:1.present = \"TRUE\"\nsata0:1.fileName = \"/isos/a.iso\"\n",
            "sata0:1.deviceType = \"cdrom-image\"\n",
            "ide0:0.present = \"FALSE\"\nide0:0.fileName = \"old.vmdk\"\n",
            "ethernet0.present = \"TRUE\"\nethernet0.virtualDev = \"vmxnet3\"\n",
            "ethernet0.generatedAddress = \"00:0c:29:aa:bb:cc\"\n",
        ))
        .unwrap();
        let m = machine(&vmx, Path::new("/out/vm.vmx"));
        assert_eq!(m.display_name.as_deref(), Some("web"));
        assert_eq!((m.cpus, m.memory_mib), (4, 2048));
        assert_eq!(m.system_type, "vmx-19");
        assert_eq!(m.mac.as_deref(), Some("00:0c:29:aa:bb:cc"));
        assert_eq!(m.details.nic.as_deref(), Some("VmxNet3"));
        assert_eq!(
            (m.details.os_id, m.details.os_description.as_str()),
            (94, "Ubuntu 64-Bit")
        );
        let disks: Vec<_> = m
            .disks
            .iter()
            .map(|(p, s)| (p.clone(), s.clone()))
            .collect();
        assert_eq!(
            disks,
            [
                (
                    PathBuf::from("/out/disk.vmdk"),
                    DiskSlot {
                        bus: Bus::Sata,
                        controller: 0,
                        unit: 0
                    }
                ),
                (
                    PathBuf::from("/out/data.vmdk"),
                    DiskSlot {
                        bus: Bus::Scsi("VirtualSCSI".into()),
                        controller: 0,
                        unit: 1
                    }
                ),
            ]
        );
        assert_eq!(m.details.disk_slots.len(), 2);
        // Without ethernet0 (vmx_remove_ethernet_interfaces), no NIC is described.
        let bare = Vmx::parse("guestOS = \"windows9-64\"\n").unwrap();
        let m = machine(&bare, Path::new("vm.vmx"));
        assert_eq!((m.details.nic, m.mac), (None, None));
        assert_eq!(m.details.os_id, 102);
        assert_eq!(
            (m.cpus, m.memory_mib, m.system_type.as_str()),
            (1, 512, "vmx-09")
        );
    }

    fn run(cmd: &mut std::process::Command) {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A linked clone (its disk a delta over the source VM's) exported unpacked through the
    /// driver without ovftool: `<name>.ovf`, `.mf` and the disk beside them, the disk equal to
    /// the clone's as qemu-img reads it, the descriptor well-formed with the SCSI controller.
    #[tokio::test]
    async fn a_linked_clone_exports_to_an_unpacked_ovf_through_the_driver() {
        use super::super::driver::{Driver, HostDriver, Product, VmwareOp};
        use std::process::Command;
        let t = tempfile::tempdir().unwrap();
        let base = t.path().join("base");
        let clone = t.path().join("clone");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::create_dir_all(&clone).unwrap();
        let parent = base.join("disk.vmdk");
        crate::artifact::vmdk_read::testing::create_split_sparse(&parent, Some("8M"), None);
        run(Command::new("qemu-io")
            .args(["-f", "vmdk", "-c", "write -P 0x61 0 3M"])
            .arg(&parent));
        let delta = clone.join("clone-cl1.vmdk");
        run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "vmdk", "-F", "vmdk", "-b"])
            .arg(&parent)
            .arg(&delta));
        run(Command::new("qemu-io")
            .args(["-f", "vmdk", "-c", "write -P 0x62 2M 2M"])
            .arg(&delta));
        let vmx = clone.join("clone.vmx");
        std::fs::write(
            &vmx,
            concat!(
                "displayName = \"Clone of base\"\nguestOS = \"debian10-64\"\nnumvcpus = \"2\"\n",
                "memsize = \"768\"\nscsi0.present = \"TRUE\"\nscsi0.virtualDev = \"lsilogic\"\n",
                "scsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"clone-cl1.vmdk\"\n",
            ),
        )
        .unwrap();
        let out = t.path().join("output/vm.ovf");
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let driver = HostDriver::new(t.path().join("vmrun"), None, None, Product::Workstation);
        let export = VmwareOp::Export {
            options: vec!["--compress=9".into()],
            vmx,
            output: out.clone(),
        };
        driver.run(&export).await.unwrap();
        let mut names: Vec<String> = std::fs::read_dir(out.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["vm-disk001.vmdk", "vm.mf", "vm.ovf"]);
        let disk = out.with_file_name("vm-disk001.vmdk");
        let same = Command::new("qemu-img")
            .arg("compare")
            .arg(&delta)
            .arg(&disk)
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&same.stdout).contains("Images are identical"),
            "{same:?}"
        );
        run(Command::new("xmllint").arg("--noout").arg(&out));
        let ovf = std::fs::read_to_string(&out).unwrap();
        for expected in [
            "<Name>Clone of base</Name>",
            "<OperatingSystemSection ovf:id=\"96\">",
            "<rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>",
            "<rasd:ResourceType>6</rasd:ResourceType>",
            "<rasd:VirtualQuantity>768</rasd:VirtualQuantity>",
            "<vssd:VirtualSystemType>vmx-09</vssd:VirtualSystemType>",
        ] {
            assert!(ovf.contains(expected), "{expected} in {ovf}");
        }
        assert!(!ovf.contains("Ethernet"), "{ovf}");
    }

    /// A build cancelled during the export drops the driver's future: the export stops and
    /// leaves nothing in the output directory (no OVA, no work directory, no temporary file).
    #[tokio::test]
    async fn dropping_the_export_stops_it_and_leaves_nothing() {
        use super::super::driver::{Driver, HostDriver, Product, VmwareOp};
        use std::process::Command;
        let t = tempfile::tempdir().unwrap();
        let disk = t.path().join("disk.vmdk");
        run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "vmdk"])
            .arg(&disk)
            .arg("256M"));
        run(Command::new("qemu-io")
            .args(["-f", "vmdk", "-c", "write -P 0x5a 0 256M"])
            .arg(&disk));
        let vmx = t.path().join("vm.vmx");
        std::fs::write(
            &vmx,
            "sata0:0.present = \"TRUE\"\nsata0:0.fileName = \"disk.vmdk\"\n",
        )
        .unwrap();
        let out_dir = t.path().join("output");
        std::fs::create_dir(&out_dir).unwrap();
        let driver = HostDriver::new(t.path().join("vmrun"), None, None, Product::Workstation);
        let export = VmwareOp::Export {
            options: Vec::new(),
            vmx,
            output: out_dir.join("vm.ova"),
        };
        let listing = || std::fs::read_dir(&out_dir).unwrap().count();
        let started = async {
            while listing() == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        };
        tokio::select! {
            done = driver.run(&export) => panic!("the export ended before it was dropped: {done:?}"),
            () = started => {}
        }
        // The blocking half notices within one piece; wait for it to clear up.
        for _ in 0..60_000 {
            if listing() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn guest_os_types_map_to_cim_numbers() {
        assert_eq!(guest_os("debian10-64"), (96, "Debian 64-Bit"));
        assert_eq!(guest_os("centos"), (106, "CentOS 32-bit"));
        assert_eq!(guest_os("otherlinux-64"), (101, "Linux 64-Bit"));
        assert_eq!(guest_os("other"), (1, "Other"));
    }
}
