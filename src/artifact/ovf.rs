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
        let name = escape(&self.name);
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
                "    <OperatingSystemSection ovf:id=\"101\">\n      <Info>The guest operating system</Info>\n",
                "      <Description>Linux (64-bit)</Description>\n    </OperatingSystemSection>\n",
                "    <VirtualHardwareSection>\n      <Info>Virtual hardware requirements</Info>\n      <System>\n",
                "        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>\n",
                "        <vssd:InstanceID>0</vssd:InstanceID>\n",
                "        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>\n",
                "        <vssd:VirtualSystemType>{system_type}</vssd:VirtualSystemType>\n      </System>\n"
            ),
            name = name,
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
        item(
            &mut x,
            &[
                ("Address", "0".into()),
                ("Caption", "sataController0".into()),
                ("Description", "SATA Controller".into()),
                ("ElementName", "sataController0".into()),
                ("InstanceID", "3".into()),
                ("ResourceSubType", "AHCI".into()),
                ("ResourceType", "20".into()),
            ],
        );
        let mut instance = 4;
        let (disk_tag, disk_prefix, nic_tag, nic_prefix) = match version {
            OvfVersion::V1 => ("Item", "rasd", "Item", "rasd"),
            OvfVersion::V2 => ("StorageItem", "sasd", "EthernetPortItem", "epasd"),
        };
        for i in 0..self.disks.len() {
            typed_item(
                &mut x,
                disk_tag,
                disk_prefix,
                &[
                    ("AddressOnParent", i.to_string()),
                    ("Caption", format!("disk{}", i + 1)),
                    ("Description", "Disk Image".into()),
                    ("ElementName", format!("disk{}", i + 1)),
                    ("HostResource", format!("ovf:/disk/vmdisk{}", i + 1)),
                    ("InstanceID", instance.to_string()),
                    ("Parent", "3".into()),
                    ("ResourceType", "17".into()),
                ],
            );
            instance += 1;
        }
        let mut nic = vec![
            ("AutomaticAllocation", "true".to_string()),
            ("Caption", "Ethernet adapter on 'NAT'".into()),
            ("Connection", "NAT".into()),
            ("ElementName", "Ethernet adapter on 'NAT'".into()),
            ("InstanceID", instance.to_string()),
            ("ResourceSubType", "E1000".into()),
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
        };
        let d = m.descriptor(OvfVersion::V1);
        assert!(
            d.contains("<Name>a&lt;b&gt;&amp;&quot;c&quot;</Name>"),
            "{d}"
        );
        assert!(!d.contains("a<b>"));
    }
}
