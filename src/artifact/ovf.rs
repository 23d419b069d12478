//! OVF descriptors (1.0 and 2.0): the XML that names a virtual machine's hardware and disks inside
//! an OVA, a VirtualBox export or a VirtualBox Vagrant box. Written with the CIM resource types every
//! importer knows (processor, memory, SATA controller, disk drive, Ethernet adapter) and elements in
//! schema order, so VirtualBox, VMware and other OVF readers take it. OVF 2.0 differs in its
//! namespace and in describing disks and adapters as `StorageItem` / `EthernetPortItem` (the
//! SASD/EPASD classes), as VirtualBox's "OVF 2.0" export does.

use std::fmt::Write as _;

/// One disk of the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvfDisk {
    /// File name inside the package (`disk001.vmdk`).
    pub file_name: String,
    /// Size of that file in bytes.
    pub file_size: u64,
    /// Guest-visible size in bytes.
    pub capacity: u64,
}

/// The machine described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvfMachine {
    pub name: String,
    pub cpus: u32,
    pub memory_mb: u64,
    pub disks: Vec<OvfDisk>,
    /// The first adapter's MAC (12 hex digits); Vagrant's VirtualBox provider reads it as `base_mac`.
    pub mac: Option<String>,
    /// `vssd:VirtualSystemType`, e.g. `virtualbox-2.2` or `vmx-07`.
    pub system_type: String,
    /// The guest OS, the disks' controllers and the NIC.
    pub details: Details,
}

/// What a descriptor says about the machine beyond its sizes. [`Details::default`] is what
/// kiln's QEMU and VirtualBox exports say: a Linux 64-bit guest, every disk on one SATA
/// controller, an E1000 NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details {
    /// The guest OS, as CIM_OperatingSystem's `OsType` number.
    pub os_id: u16,
    /// Its description (`Ubuntu 64-Bit`).
    pub os_description: String,
    /// Where disk `i` attaches: `disk_slots[i]`, or SATA controller 0's unit `i` past its end.
    pub disk_slots: Vec<DiskSlot>,
    /// The NIC's `ResourceSubType` (`E1000`, `E1000e`, `VmxNet3`); `None`: no NIC.
    pub nic: Option<String>,
    /// The VM's name in the descriptor (`<Name>`, `ovf:id`) when it is not the package's.
    pub display_name: Option<String>,
}

impl Default for Details {
    fn default() -> Self {
        Details {
            os_id: 101,
            os_description: "Linux (64-bit)".into(),
            disk_slots: Vec::new(),
            nic: Some("E1000".into()),
            display_name: None,
        }
    }
}

/// A disk's place: which controller (its kind and number) and which unit on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSlot {
    pub bus: Bus,
    pub controller: u32,
    pub unit: u32,
}

/// A disk controller's kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bus {
    Ide,
    Sata,
    /// A SCSI controller of this `ResourceSubType` (`lsilogic`, `lsilogicsas`, `VirtualSCSI`,
    /// `buslogic`).
    Scsi(String),
    Nvme,
}

impl Bus {
    /// Caption prefix, description, `ResourceSubType` and `ResourceType` of its controller.
    fn controller(&self) -> (&'static str, &'static str, &str, &'static str) {
        match self {
            Bus::Ide => ("ideController", "IDE Controller", "PIIX4", "5"),
            Bus::Sata => ("sataController", "SATA Controller", "AHCI", "20"),
            Bus::Scsi(model) => ("scsiController", "SCSI Controller", model, "6"),
            Bus::Nvme => (
                "nvmeController",
                "NVMe Controller",
                "vmware.nvme.controller",
                "20",
            ),
        }
    }
}

/// Which OVF specification the descriptor follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OvfVersion {
    /// DSP0243 1.x: read by every importer.
    V1,
    /// DSP0243 2.x.
    V2,
}

impl OvfVersion {
    /// `"1.0"` or `"2.0"`, as templates write it.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "1.0" | "1" => Some(OvfVersion::V1),
            "2.0" | "2" => Some(OvfVersion::V2),
            _ => None,
        }
    }
}

const RASD: &str =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData";
const VSSD: &str = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData";
const SASD: &str =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_StorageAllocationSettingData";
const EPASD: &str =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_EthernetPortAllocationSettingData";

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// One `<Item>` with its RASD elements, given in schema (alphabetical) order.
fn item(out: &mut String, elements: &[(&str, String)]) {
    typed_item(out, "Item", "rasd", elements);
}

/// An item element `tag` whose children are in the `prefix` namespace.
fn typed_item(out: &mut String, tag: &str, prefix: &str, elements: &[(&str, String)]) {
    let _ = writeln!(out, "      <{tag}>");
    for (name, value) in elements {
        let _ = writeln!(
            out,
            "        <{prefix}:{name}>{}</{prefix}:{name}>",
            escape(value)
        );
    }
    let _ = writeln!(out, "      </{tag}>");
}

impl OvfMachine {
    /// The descriptor text.
    pub fn descriptor(&self, version: OvfVersion) -> String {
        let name = escape(self.details.display_name.as_deref().unwrap_or(&self.name));
        let mut x = String::new();
        x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let (number, envelope) = match version {
            OvfVersion::V1 => ("1.0", "http://schemas.dmtf.org/ovf/envelope/1"),
            OvfVersion::V2 => ("2.0", "http://schemas.dmtf.org/ovf/envelope/2"),
        };
        let _ = write!(
            x,
            "<Envelope ovf:version=\"{number}\" xml:lang=\"en-US\" xmlns=\"{envelope}\" xmlns:ovf=\"{envelope}\" xmlns:rasd=\"{RASD}\" xmlns:vssd=\"{VSSD}\""
        );
        if version == OvfVersion::V2 {
            let _ = write!(x, " xmlns:sasd=\"{SASD}\" xmlns:epasd=\"{EPASD}\"");
        }
        x.push_str(" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n");
        x.push_str("  <References>\n");
        for (i, d) in self.disks.iter().enumerate() {
            let _ = writeln!(
                x,
                "    <File ovf:href=\"{}\" ovf:id=\"file{}\" ovf:size=\"{}\"/>",
                escape(&d.file_name),
                i + 1,
                d.file_size
            );
        }
        x.push_str("  </References>\n  <DiskSection>\n    <Info>Virtual disks</Info>\n");
        for (i, d) in self.disks.iter().enumerate() {
            let _ = writeln!(
                x,
                "    <Disk ovf:capacity=\"{}\" ovf:diskId=\"vmdisk{n}\" ovf:fileRef=\"file{n}\" ovf:format=\"http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized\"/>",
                d.capacity,
                n = i + 1
            );
        }
        x.push_str(concat!(
            "  </DiskSection>\n  <NetworkSection>\n    <Info>Logical networks</Info>\n",
            "    <Network ovf:name=\"NAT\">\n      <Description>The NAT network</Description>\n    </Network>\n",
            "  </NetworkSection>\n"
        ));
        let _ = write!(
            x,
            concat!(
                "  <VirtualSystem ovf:id=\"{name}\">\n    <Info>A virtual machine</Info>\n    <Name>{name}</Name>\n",
                "    <OperatingSystemSection ovf:id=\"{os_id}\">\n      <Info>The guest operating system</Info>\n",
                "      <Description>{os}</Description>\n    </OperatingSystemSection>\n",
                "    <VirtualHardwareSection>\n      <Info>Virtual hardware requirements</Info>\n      <System>\n",
                "        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>\n",
                "        <vssd:InstanceID>0</vssd:InstanceID>\n",
                "        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>\n",
                "        <vssd:VirtualSystemType>{system_type}</vssd:VirtualSystemType>\n      </System>\n"
            ),
            name = name,
            os_id = self.details.os_id,
            os = escape(&self.details.os_description),
            system_type = escape(&self.system_type)
        );
        item(
            &mut x,
            &[
                ("AllocationUnits", "hertz * 10^6".into()),
                ("Caption", format!("{} virtual CPU", self.cpus)),
                ("Description", "Number of virtual CPUs".into()),
                ("ElementName", format!("{} virtual CPU", self.cpus)),
                ("InstanceID", "1".into()),
                ("ResourceType", "3".into()),
                ("VirtualQuantity", self.cpus.to_string()),
            ],
        );
        item(
            &mut x,
            &[
                ("AllocationUnits", "byte * 2^20".into()),
                ("Caption", format!("{} MB of memory", self.memory_mb)),
                ("Description", "Memory Size".into()),
                ("ElementName", format!("{} MB of memory", self.memory_mb)),
                ("InstanceID", "2".into()),
                ("ResourceType", "4".into()),
                ("VirtualQuantity", self.memory_mb.to_string()),
            ],
        );
        // Each disk's slot, and the controllers they use in order of first use (SATA 0 when
        // there are no disks, as before there were slots).
        let slots: Vec<DiskSlot> = (0..self.disks.len())
            .map(|i| {
                self.details.disk_slots.get(i).cloned().unwrap_or(DiskSlot {
                    bus: Bus::Sata,
                    controller: 0,
                    unit: i as u32,
                })
            })
            .collect();
        let mut controllers: Vec<(Bus, u32)> = Vec::new();
        for s in &slots {
            if !controllers.contains(&(s.bus.clone(), s.controller)) {
                controllers.push((s.bus.clone(), s.controller));
            }
        }
        if controllers.is_empty() {
            controllers.push((Bus::Sata, 0));
        }
        let mut instance = 3;
        for (bus, number) in &controllers {
            let (caption, description, subtype, resource) = bus.controller();
            item(
                &mut x,
                &[
                    ("Address", number.to_string()),
                    ("Caption", format!("{caption}{number}")),
                    ("Description", description.into()),
                    ("ElementName", format!("{caption}{number}")),
                    ("InstanceID", instance.to_string()),
                    ("ResourceSubType", subtype.into()),
                    ("ResourceType", resource.into()),
                ],
            );
            instance += 1;
        }
        let (disk_tag, disk_prefix, nic_tag, nic_prefix) = match version {
            OvfVersion::V1 => ("Item", "rasd", "Item", "rasd"),
            OvfVersion::V2 => ("StorageItem", "sasd", "EthernetPortItem", "epasd"),
        };
        for (i, slot) in slots.iter().enumerate() {
            let parent = controllers
                .iter()
                .position(|(b, n)| *b == slot.bus && *n == slot.controller)
                .map_or(3, |c| c + 3);
            typed_item(
                &mut x,
                disk_tag,
                disk_prefix,
                &[
                    ("AddressOnParent", slot.unit.to_string()),
                    ("Caption", format!("disk{}", i + 1)),
                    ("Description", "Disk Image".into()),
                    ("ElementName", format!("disk{}", i + 1)),
                    ("HostResource", format!("ovf:/disk/vmdisk{}", i + 1)),
                    ("InstanceID", instance.to_string()),
                    ("Parent", parent.to_string()),
                    ("ResourceType", "17".into()),
                ],
            );
            instance += 1;
        }
        let Some(nic_type) = &self.details.nic else {
            x.push_str("    </VirtualHardwareSection>\n  </VirtualSystem>\n</Envelope>\n");
            return x;
        };
        let mut nic = vec![
            ("AutomaticAllocation", "true".to_string()),
            ("Caption", "Ethernet adapter on 'NAT'".into()),
            ("Connection", "NAT".into()),
            ("ElementName", "Ethernet adapter on 'NAT'".into()),
            ("InstanceID", instance.to_string()),
            ("ResourceSubType", nic_type.clone()),
            ("ResourceType", "10".into()),
        ];
        if let Some(mac) = &self.mac {
            nic.insert(0, ("Address", mac.clone()));
        }
        typed_item(&mut x, nic_tag, nic_prefix, &nic);
        x.push_str("    </VirtualHardwareSection>\n  </VirtualSystem>\n</Envelope>\n");
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped() {
        let m = OvfMachine {
            name: "a<b>&\"c\"".into(),
            cpus: 1,
            memory_mb: 256,
            disks: vec![],
            mac: None,
            system_type: "vmx-07".into(),
            details: Details::default(),
        };
        let d = m.descriptor(OvfVersion::V1);
        assert!(
            d.contains("<Name>a&lt;b&gt;&amp;&quot;c&quot;</Name>"),
            "{d}"
        );
        assert!(!d.contains("a<b>"));
    }

    /// Disks on two controllers: each controller once, each disk under its own, at its unit;
    /// the guest OS and NIC as given.
    #[test]
    fn disks_sit_on_their_controllers() {
        let disk = |n: u32| OvfDisk {
            file_name: format!("d{n}.vmdk"),
            file_size: 1024,
            capacity: 1 << 20,
        };
        let m = OvfMachine {
            name: "vm".into(),
            cpus: 1,
            memory_mb: 256,
            disks: vec![disk(1), disk(2), disk(3)],
            mac: None,
            system_type: "vmx-19".into(),
            details: Details {
                os_id: 94,
                os_description: "Ubuntu 64-Bit".into(),
                disk_slots: vec![
                    DiskSlot {
                        bus: Bus::Sata,
                        controller: 0,
                        unit: 0,
                    },
                    DiskSlot {
                        bus: Bus::Scsi("VirtualSCSI".into()),
                        controller: 1,
                        unit: 3,
                    },
                    DiskSlot {
                        bus: Bus::Sata,
                        controller: 0,
                        unit: 2,
                    },
                ],
                nic: Some("VmxNet3".into()),
                display_name: Some("Web & DB".into()),
            },
        };
        let d = m.descriptor(OvfVersion::V1);
        let items: Vec<&str> = d.split("<Item>").skip(1).collect();
        assert_eq!(items.len(), 2 + 2 + 3 + 1, "{d}");
        let has = |item: &str, parts: &[&str]| parts.iter().all(|p| item.contains(p));
        assert!(has(
            items[2],
            &["<rasd:InstanceID>3<", "sataController0", "AHCI"]
        ));
        assert!(has(
            items[3],
            &[
                "<rasd:InstanceID>4<",
                "scsiController1",
                "VirtualSCSI",
                ">6<"
            ]
        ));
        for (item, unit, parent) in [(items[4], 0, 3), (items[5], 3, 4), (items[6], 2, 3)] {
            assert!(
                has(
                    item,
                    &[
                        &format!("<rasd:AddressOnParent>{unit}<"),
                        &format!("<rasd:Parent>{parent}<"),
                    ]
                ),
                "{item}"
            );
        }
        assert!(has(items[7], &["<rasd:InstanceID>8<", "VmxNet3"]));
        assert!(d.contains("<OperatingSystemSection ovf:id=\"94\">"), "{d}");
        assert!(
            d.contains("<Description>Ubuntu 64-Bit</Description>"),
            "{d}"
        );
        assert!(d.contains("<Name>Web &amp; DB</Name>"), "{d}");
    }
}
