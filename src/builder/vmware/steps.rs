//! The steps of a `vmware-iso` build that are VMware's own, in the order [`super::compose`]
//! runs them: create the disks (`vmware-vdiskmanager`), write the `.vmx` from Packer's default
//! template keys (or the user's `vmx_template_path`, rendered as a Go template) and `vmx_data`, turn on VMware's VNC server in it, start the VM with `vmrun`,
//! find the guest's address (DHCP leases, then VMware Tools), then after shutdown compact the disks, clean the `.vmx`
//! (`vmx_data_post`, temporary devices, `vmx_remove_ethernet_interfaces`) and export with
//! `ovftool`. The `.vmx` is edited through [`crate::vmx::Vmx`], so a step changes only the keys
//! it owns. What the steps learn (the `.vmx` path, the disks, the devices added only for the
//! build) they share through [`Shared`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use boot_commands::{Template, TemplateError, Value};

use super::driver::{vdisk_adapter, Driver, VmwareOp};
use super::machine::VmwareMachine;
use super::network::{self, lease_address, Locations, NetworkError};
use super::BUILDER_ID;
use crate::artifact::Artifact;
use crate::builder::steps::http;
use crate::config::common::{CommConfig, HttpConfig};
use crate::config::vmware::{
    ParallelPort, SerialPort, ToolsMode, VmwareCommon, VmwareIsoConfig, DEFAULT_SERIAL_DEVICE,
};
use crate::pipeline::{BuildContext, CleanupError, Step, StepError};
use crate::vmx::Vmx;

/// What the VMware steps learn and share.
#[derive(Debug, Default)]
pub struct State {
    /// `<output_directory>/<vm_name>.vmx`, once written.
    pub vmx: Option<PathBuf>,
    /// The disks made, main disk first.
    pub disks: Vec<PathBuf>,
    /// Devices attached only for the build (`ide0:0`, `floppy0`), detached after it.
    pub temporary: Vec<String>,
    /// The VMware Tools ISO to attach or upload (`tools_*`), once found.
    pub tools_iso: Option<PathBuf>,
}

/// [`State`], shared by the steps of one build.
pub type Shared = Arc<Mutex<State>>;

fn with<T>(shared: &Shared, f: impl FnOnce(&mut State) -> T) -> Result<T, StepError> {
    shared
        .lock()
        .map(|mut s| f(&mut s))
        .map_err(|_| StepError::msg("internal: the VMware steps' state is poisoned"))
}

/// The output directory as an absolute path: vmrun wants absolute `.vmx` paths, and lists the
/// running VMs by theirs.
fn absolute_output_dir(ctx: &BuildContext) -> Result<PathBuf, StepError> {
    std::path::absolute(ctx.require_output_dir()?)
        .map_err(|e| StepError::with("cannot make the output directory's path absolute", e))
}

fn vmx_path(shared: &Shared) -> Result<PathBuf, StepError> {
    with(shared, |s| s.vmx.clone())?.ok_or(StepError::MissingState {
        key: "the .vmx file",
        producer: "create .vmx",
    })
}

fn read_vmx(path: &Path) -> Result<Vmx, StepError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| StepError::with(format!("cannot read {}", path.display()), e))?;
    Vmx::parse(&text).map_err(|e| StepError::with(format!("cannot parse {}", path.display()), e))
}

/// Write `vmx` to `path` through a temporary name, so a reader never sees half a file.
fn write_vmx(path: &Path, vmx: &Vmx) -> Result<(), StepError> {
    let tmp = path.with_extension("vmx.tmp");
    std::fs::write(&tmp, vmx.render())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| StepError::with(format!("cannot write {}", path.display()), e))
}

async fn run(driver: &dyn Driver, op: &VmwareOp, what: &str) -> Result<String, StepError> {
    driver.run(op).await.map_err(|e| StepError::with(what, e))
}

/// Create the main disk `<vmdk_name>.vmdk` of `main_size` MiB (`vmware-iso`; a cloned VM
/// has its own) and `disk_additional_size`'s `<vmdk_name>-N.vmdk` in the output directory
/// with `vmware-vdiskmanager`.
pub struct CreateDisks {
    cfg: Arc<VmwareCommon>,
    main_size: Option<u64>,
    driver: Arc<dyn Driver>,
    shared: Shared,
}

impl CreateDisks {
    /// The step for `cfg`.
    pub fn new(
        cfg: Arc<VmwareCommon>,
        main_size: Option<u64>,
        driver: Arc<dyn Driver>,
        shared: Shared,
    ) -> Self {
        Self {
            cfg,
            main_size,
            driver,
            shared,
        }
    }
}

#[async_trait]
impl Step for CreateDisks {
    fn name(&self) -> &'static str {
        "create disks"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let dir = absolute_output_dir(ctx)?;
        let c = &self.cfg;
        let main = self
            .main_size
            .map(|size| (format!("{}.vmdk", c.vmdk_name), size));
        let extra = (c.disk_additional_size.iter().zip(extra_disk_numbers()))
            .map(|(size, n)| (format!("{}-{n}.vmdk", c.vmdk_name), *size));
        let disks: Vec<(String, u64)> = main.into_iter().chain(extra).collect();
        if disks.is_empty() {
            return Ok(());
        }
        ctx.ui.say("Creating virtual disks...");
        for (name, size) in disks {
            let op = VmwareOp::CreateDisk {
                path: dir.join(&name),
                size_mib: size,
                adapter: vdisk_adapter(&c.disk_adapter_type).to_owned(),
                type_id: c.disk_type_id.clone(),
            };
            run(self.driver.as_ref(), &op, "cannot create the disk").await?;
            with(&self.shared, |s| s.disks.push(dir.join(&name)))?;
        }
        if self.main_size.is_some() {
            ctx.facts.disk_name = Some(format!("{}.vmdk", c.vmdk_name));
            ctx.facts.disk_format = Some("vmdk".into());
        }
        Ok(())
    }
}

/// Where the disk and the CD-ROM go, as Packer decides from `disk_adapter_type` and
/// `cdrom_adapter_type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buses {
    scsi: bool,
    scsi_model: String,
    sata: bool,
    nvme: bool,
    /// `scsi`, `ide`, `sata` or `nvme`.
    disk: &'static str,
    /// `ide`, `sata` or `scsi`.
    cdrom: &'static str,
    /// The CD-ROM's unit on bus 0.
    cdrom_unit: u8,
}

/// Packer's disk and CD-ROM placement: the disk on `disk_adapter_type`'s bus (SCSI with that
/// model for anything else), the CD-ROM on IDE unless the disk is IDE/SATA/NVMe or
/// `cdrom_adapter_type` says otherwise, second on the bus when it shares the disk's.
pub fn buses(disk_adapter_type: &str, cdrom_adapter_type: Option<&str>) -> Buses {
    let adapter = disk_adapter_type.to_ascii_lowercase();
    let mut b = Buses {
        scsi: false,
        scsi_model: "lsilogic".into(),
        sata: false,
        nvme: false,
        disk: "scsi",
        cdrom: "ide",
        cdrom_unit: 0,
    };
    match adapter.as_str() {
        "ide" => (b.disk, b.cdrom, b.cdrom_unit) = ("ide", "ide", 1),
        "sata" => (b.sata, b.disk, b.cdrom, b.cdrom_unit) = (true, "sata", "sata", 1),
        "nvme" => (b.nvme, b.sata, b.disk, b.cdrom) = (true, true, "nvme", "sata"),
        "scsi" => b.scsi = true,
        other => (b.scsi, b.scsi_model) = (true, other.to_owned()),
    }
    match cdrom_adapter_type.map(str::to_ascii_lowercase) {
        None => {}
        Some(c) => {
            // The same bus as the disk: the CD-ROM comes second on it.
            b.cdrom_unit = u8::from(c == adapter || (c == "scsi" && b.disk == "scsi"));
            match c.as_str() {
                "ide" => b.cdrom = "ide",
                "sata" => (b.sata, b.cdrom) = (true, "sata"),
                "scsi" => (b.scsi, b.cdrom) = (true, "scsi"),
                _ => {}
            }
        }
    }
    b
}

fn flag(on: bool) -> &'static str {
    if on {
        "TRUE"
    } else {
        "FALSE"
    }
}

/// The keys of Packer's default `.vmx` template that do not depend on the options.
const FIXED: &[(&str, &str)] = &[
    ("config.version", "8"),
    ("virtualHW.productCompatibility", "hosted"),
    ("floppy0.present", "FALSE"),
    ("bios.bootOrder", "hdd,cdrom"),
    ("gui.fullScreenAtPowerOn", "FALSE"),
    ("gui.viewModeAtPowerOn", "windowed"),
    ("hgfs.linkRootShare", "TRUE"),
    ("hgfs.mapRootShare", "TRUE"),
    ("isolation.tools.hgfs.disable", "FALSE"),
    ("proxyApps.publishToHost", "FALSE"),
    ("replay.filename", ""),
    ("replay.supported", "FALSE"),
    ("checkpoint.vmState", ""),
    ("vmotion.checkpointFBSize", "65536000"),
    ("cleanShutdown", "TRUE"),
    ("powerType.powerOff", "soft"),
    ("powerType.powerOn", "soft"),
    ("powerType.reset", "soft"),
    ("powerType.suspend", "soft"),
    ("tools.syncTime", "TRUE"),
    ("tools.upgrade.policy", "upgradeAtPowerCycle"),
    ("pciBridge0.pciSlotNumber", "17"),
    ("pciBridge0.present", "TRUE"),
    ("pciBridge4.functions", "8"),
    ("pciBridge4.pciSlotNumber", "21"),
    ("pciBridge4.present", "TRUE"),
    ("pciBridge4.virtualDev", "pcieRootPort"),
    ("pciBridge5.functions", "8"),
    ("pciBridge5.pciSlotNumber", "22"),
    ("pciBridge5.present", "TRUE"),
    ("pciBridge5.virtualDev", "pcieRootPort"),
    ("pciBridge6.functions", "8"),
    ("pciBridge6.pciSlotNumber", "23"),
    ("pciBridge6.present", "TRUE"),
    ("pciBridge6.virtualDev", "pcieRootPort"),
    ("pciBridge7.functions", "8"),
    ("pciBridge7.pciSlotNumber", "24"),
    ("pciBridge7.present", "TRUE"),
    ("pciBridge7.virtualDev", "pcieRootPort"),
    ("vmci0.present", "TRUE"),
    ("vmci0.id", "1861462627"),
    ("vmci0.pciSlotNumber", "35"),
    ("hpet0.present", "TRUE"),
];

/// The networks VMware names (others are a custom `vmnetN`). Read from `netmap.conf` in
/// Packer; these three are the names every install has.
const NAMED_NETWORKS: &[&str] = &["nat", "hostonly", "bridged"];

/// The network's `(connectionType, vnet, virtualDev)`: a name VMware knows, or a custom
/// `vmnetN`; the adapter lower-cased, `e1000` when unset (Packer 1.x's default).
fn network_keys(cfg: &VmwareIsoConfig) -> (&str, &str, String) {
    let network = cfg.hw.network.as_deref().unwrap_or("nat");
    let (kind, vnet) = if NAMED_NETWORKS.contains(&network) {
        (network, "")
    } else {
        ("custom", network)
    };
    let adapter = cfg
        .hw
        .network_adapter_type
        .as_deref()
        .unwrap_or("e1000")
        .to_ascii_lowercase();
    (kind, vnet, adapter)
}

/// The `N` of `disk_additional_size`'s files `<vmdk_name>-N.vmdk`: 1, 2, … without 7, as
/// Packer numbers them (it skips SCSI's reserved unit 7 in the names too).
fn extra_disk_numbers() -> impl Iterator<Item = usize> {
    (1..).filter(|n| *n != 7)
}

/// SCSI's unit 7 is the controller's own ID: no disk goes there.
const SCSI_CONTROLLER_UNIT: usize = 7;

/// `disk_additional_size`'s disks as `(unit, N)`: on the main disk's bus after it (and after
/// the CD-ROM when it shares the bus), in the files `<vmdk_name>-N.vmdk` [`CreateDisks`]
/// makes. On SCSI the 7th and later units move up one past the controller's unit 7, as
/// Packer places them (Packer is off by one when the CD-ROM shares the bus, and puts a disk
/// on unit 7 there; kiln does not).
fn extra_disks(c: &VmwareCommon, b: &Buses) -> impl Iterator<Item = (usize, usize)> {
    let first = if b.cdrom == b.disk { 2 } else { 1 };
    let scsi = b.disk == "scsi";
    let units = (first..).filter(move |u| !(scsi && *u == SCSI_CONTROLLER_UNIT));
    units
        .zip(extra_disk_numbers())
        .take(c.disk_additional_size.len())
}

/// The keys Packer's default additional-disk template gives each extra disk.
fn add_extra_disks(v: &mut Vmx, c: &VmwareCommon, b: &Buses) {
    for (unit, n) in extra_disks(c, b) {
        let dev = format!("{}0:{unit}", b.disk);
        v.set(
            &format!("{dev}.fileName"),
            &format!("{}-{n}.vmdk", c.vmdk_name),
        );
        v.set(&format!("{dev}.present"), "TRUE");
        v.set(&format!("{dev}.redo"), "");
    }
}

/// Packer 1.x's plugin's names for [`vmx_template_data`]'s fields, as `(old, new)`: templates
/// written for it still use them.
const PACKER_1_FIELDS: &[(&str, &str)] = &[
    ("Network_Type", "NetworkType"),
    ("Network_Device", "NetworkDevice"),
    ("Network_Adapter", "NetworkAdapter"),
    ("Sound_Present", "SoundPresent"),
    ("Usb_Present", "UsbPresent"),
    ("Serial_Present", "SerialPresent"),
    ("Serial_Type", "SerialType"),
    ("Serial_Endpoint", "SerialEndpoint"),
    ("Serial_Host", "SerialHost"),
    ("Serial_Yield", "SerialYield"),
    ("Serial_Filename", "SerialFilename"),
    ("Serial_Auto", "SerialAuto"),
    ("Parallel_Present", "ParallelPresent"),
    ("Parallel_Bidirectional", "ParallelBidirectional"),
    ("Parallel_Filename", "ParallelFilename"),
    ("Parallel_Auto", "ParallelAuto"),
    ("SCSI_Present", "ScsiPresent"),
    ("SCSI_diskAdapterType", "ScsiDiskAdapterType"),
    ("SATA_Present", "SataPresent"),
    ("NVME_Present", "NvmePresent"),
    ("CDROMType", "CdromType"),
    ("CDROMType_PrimarySecondary", "CdromTypePrimarySecondary"),
    ("CDROM_PATH", "CdromPath"),
];

/// The values Packer gives a `vmx_template_path` template (its plugin's `vmxTemplateData`),
/// with the values kiln's [`default_vmx`] writes, so that Packer's own default template
/// rendered with them gives kiln's default `.vmx` (the unit tests check it); also under
/// [`PACKER_1_FIELDS`]' names, and `Network_Name` (`network_name`).
pub fn vmx_template_data(cfg: &VmwareIsoConfig, name: &str, iso: &Path) -> BTreeMap<String, Value> {
    let hw = &cfg.hw;
    let b = buses(
        &cfg.common.disk_adapter_type,
        cfg.common.cdrom_adapter_type.as_deref(),
    );
    let (kind, vnet, adapter) = network_keys(cfg);
    let firmware = hw.firmware.as_deref().unwrap_or_default();
    let mut d: BTreeMap<String, Value> = BTreeMap::new();
    let mut put = |k: &str, v: Value| {
        d.insert(k.to_owned(), v);
    };
    let s = |v: &str| Value::from(v);
    put("Name", s(name));
    put("GuestOS", s(&cfg.guest_os_type));
    put("ISOPath", s(&iso.display().to_string()));
    put("Version", s(&cfg.common.version.to_string()));
    put(
        "Firmware",
        s(match firmware {
            "bios" => "bios",
            "efi" | "efi-secure" => "efi",
            _ => "",
        }),
    );
    put(
        "SecureBoot",
        s(if firmware == "efi-secure" { "TRUE" } else { "" }),
    );
    put("CpuCount", s(&hw.cpus.unwrap_or(1).to_string()));
    put("MemorySize", s(&hw.memory.unwrap_or(512).to_string()));
    put("DiskName", s(&cfg.common.vmdk_name));
    put("ScsiPresent", s(flag(b.scsi)));
    put("ScsiDiskAdapterType", s(&b.scsi_model));
    put("SataPresent", s(flag(b.sata)));
    put("NvmePresent", s(flag(b.nvme)));
    put("DiskType", s(b.disk));
    put("CdromType", s(b.cdrom));
    put("CdromTypePrimarySecondary", s(&b.cdrom_unit.to_string()));
    put("CdromPath", s(""));
    put("NetworkType", s(kind));
    put("NetworkDevice", s(vnet));
    put("NetworkAdapter", s(&adapter));
    put(
        "Network_Name",
        s(hw.network_name.as_deref().unwrap_or_default()),
    );
    put("SoundPresent", s(flag(hw.sound)));
    put("UsbPresent", s(flag(hw.usb)));
    put("UsbVersion", s(hw.usb_version().unwrap_or_default()));
    // Packer leaves a port's other values empty when it is off.
    for k in [
        "SerialType",
        "SerialEndpoint",
        "SerialHost",
        "SerialYield",
        "SerialFilename",
        "SerialAuto",
        "ParallelBidirectional",
        "ParallelFilename",
        "ParallelAuto",
    ] {
        put(k, s(""));
    }
    put("SerialPresent", s("FALSE"));
    put("ParallelPresent", s("FALSE"));
    if let Some(port) = hw.serial_port() {
        let p = serial_keys(&port);
        put("SerialPresent", s("TRUE"));
        put("SerialAuto", s("FALSE"));
        put("SerialType", s(p.file_type));
        put("SerialFilename", s(&p.file_name));
        if let SerialPort::Auto { .. } = port {
            put("SerialAuto", s("TRUE"));
        }
        put("SerialEndpoint", s(&p.endpoint));
        put("SerialHost", s(p.host));
        put("SerialYield", s(p.yield_cpu));
    }
    if let Some(port) = hw.parallel_port() {
        let p = parallel_keys(&port);
        put("ParallelPresent", s("TRUE"));
        put("ParallelFilename", s(&p.file_name));
        put("ParallelAuto", s(flag(p.auto)));
        put("ParallelBidirectional", s(p.bidirectional));
    }
    put(
        "HardwareAssistedVirtualization",
        Value::Bool(cfg.vhv_enabled),
    );
    for (old, new) in PACKER_1_FIELDS {
        if let Some(v) = d.get(*new).cloned() {
            d.insert((*old).to_owned(), v);
        }
    }
    d
}

/// The values Packer gives `vmx_disk_template_path` for the extra disk `N` at `unit`.
fn disk_template_data(
    c: &VmwareCommon,
    b: &Buses,
    unit: usize,
    n: usize,
) -> BTreeMap<String, Value> {
    let int = |i: usize| Value::Int(i64::try_from(i).unwrap_or(i64::MAX));
    [
        ("DiskUnit", int(unit)),
        ("DiskNumber", int(n)),
        ("DiskName", Value::from(c.vmdk_name.as_str())),
        ("DiskType", Value::from(b.disk)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Reads the Go template at `path` (`option` names it in errors).
fn read_template(option: &str, path: &Path) -> Result<Template, StepError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| StepError::with(format!("cannot read {option} {}", path.display()), e))?;
    Template::parse(&text).map_err(|e| template_error(option, path, &e))
}

fn template_error(option: &str, path: &Path, e: &TemplateError) -> StepError {
    StepError::msg(format!("{option} {}: {e}", path.display()))
}

/// The rendered text of a `.vmx` template, made readable by [`Vmx::parse`] where Packer's
/// lenient reader takes what it refuses: a line without `=` (the `// Hardware` headings of
/// Packer's default template) is skipped by Packer, so it becomes a `#` comment; a quoted value
/// whose closing quote is missing (Packer's default additional-disk template's) runs to the
/// end of the line, so the quote is closed.
fn packer_readable(text: &str) -> String {
    text.split_inclusive('\n')
        .map(|line| {
            if Vmx::parse(line).is_ok() {
                return line.to_owned();
            }
            let body = line.trim_end_matches(['\r', '\n']);
            let ending = &line[body.len()..];
            match body.split_once('=') {
                None => format!("# {body}{ending}"),
                Some((_, value))
                    if value.trim_start().starts_with('"') && value.matches('"').count() == 1 =>
                {
                    format!("{}\"{ending}", body.trim_end())
                }
                Some(_) => line.to_owned(),
            }
        })
        .collect()
}

/// The `.vmx` from `vmx_template_path` as Packer makes it: the template, with
/// `vmx_disk_template_path` (or Packer's default disk keys) for each extra disk, rendered with
/// [`vmx_template_data`]; then `numvcpus` dropped when empty and `cores` set.
fn templated_vmx(
    cfg: &VmwareIsoConfig,
    ctx: &BuildContext,
    template_path: &str,
    name: &str,
    iso: &Path,
) -> Result<Vmx, StepError> {
    let c = &cfg.common;
    let b = buses(&c.disk_adapter_type, c.cdrom_adapter_type.as_deref());
    let path = ctx.resolve(template_path);
    let mut text = std::fs::read_to_string(&path).map_err(|e| {
        StepError::with(
            format!("cannot read vmx_template_path {}", path.display()),
            e,
        )
    })?;
    // Packer appends each disk's rendered keys to the template's text, then renders the whole.
    let disk_template = match cfg
        .vmx_disk_template_path
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        Some(p) if !c.disk_additional_size.is_empty() => {
            let disk_path = ctx.resolve(p);
            let t = read_template("vmx_disk_template_path", &disk_path)?;
            for (unit, n) in extra_disks(c, &b) {
                let keys = t
                    .render(&disk_template_data(c, &b, unit, n))
                    .map_err(|e| template_error("vmx_disk_template_path", &disk_path, &e))?;
                text.push_str(&keys);
            }
            true
        }
        _ => false,
    };
    let rendered = Template::parse(&text)
        .and_then(|t| t.render(&vmx_template_data(cfg, name, iso)))
        .map_err(|e| template_error("vmx_template_path", &path, &e))?;
    let mut vmx = Vmx::parse(&packer_readable(&rendered)).map_err(|e| {
        StepError::with(
            format!(
                "cannot read vmx_template_path {} once rendered",
                path.display()
            ),
            e,
        )
    })?;
    if !disk_template {
        add_extra_disks(&mut vmx, c, &b);
    }
    if vmx.get("numvcpus").is_some_and(|v| v.is_empty()) {
        vmx.remove("numvcpus");
    }
    if let Some(cores) = cfg.hw.cores.filter(|c| *c > 0) {
        vmx.set("cpuid.coresPerSocket", &cores.to_string());
    }
    Ok(vmx)
}

/// The `.vmx` Packer's default template gives `cfg`, for the VM `name` booting `iso`.
pub fn default_vmx(cfg: &VmwareIsoConfig, name: &str, iso: &Path) -> Vmx {
    let mut v = Vmx::new();
    v.set(".encoding", "UTF-8");
    v.set("displayName", name);
    match cfg.hw.firmware.as_deref() {
        Some("bios") => v.set("firmware", "bios"),
        Some("efi") => v.set("firmware", "efi"),
        Some("efi-secure") => {
            v.set("firmware", "efi");
            v.set("uefi.secureBoot.enabled", "TRUE");
        }
        _ => {}
    }
    v.set("numvcpus", &cfg.hw.cpus.unwrap_or(1).to_string());
    if let Some(cores) = cfg.hw.cores.filter(|c| *c > 0) {
        v.set("cpuid.coresPerSocket", &cores.to_string());
    }
    v.set("memsize", &cfg.hw.memory.unwrap_or(512).to_string());
    v.set("virtualHW.version", &cfg.common.version.to_string());
    v.set("vhv.enable", flag(cfg.vhv_enabled));
    v.set("nvram", &format!("{name}.nvram"));
    v.set("extendedConfigFile", &format!("{name}.vmxf"));
    for (k, val) in FIXED {
        v.set(k, val);
    }
    v.set("guestOS", &cfg.guest_os_type);

    let (kind, vnet, adapter) = network_keys(cfg);
    for (k, val) in [
        ("addressType", "generated"),
        ("bsdName", "en0"),
        ("connectionType", kind),
        ("vnet", vnet),
        ("displayName", "Ethernet"),
        ("linkStatePropagation.enable", "FALSE"),
        ("pciSlotNumber", "33"),
        ("present", "TRUE"),
        ("virtualDev", adapter.as_str()),
        ("wakeOnPcktRcv", "FALSE"),
    ] {
        v.set(&format!("ethernet0.{k}"), val);
    }

    let b = buses(
        &cfg.common.disk_adapter_type,
        cfg.common.cdrom_adapter_type.as_deref(),
    );
    v.set("scsi0.present", flag(b.scsi));
    v.set("scsi0.virtualDev", &b.scsi_model);
    v.set("scsi0.pciSlotNumber", "16");
    v.set("scsi0:0.redo", "");
    v.set("sata0.present", flag(b.sata));
    v.set("nvme0.present", flag(b.nvme));
    v.set(&format!("{}0:0.present", b.disk), "TRUE");
    v.set(
        &format!("{}0:0.fileName", b.disk),
        &format!("{}.vmdk", cfg.common.vmdk_name),
    );
    add_extra_disks(&mut v, &cfg.common, &b);
    let cd = format!("{}0:{}", b.cdrom, b.cdrom_unit);
    v.set(&format!("{cd}.present"), "TRUE");
    v.set(&format!("{cd}.fileName"), &iso.display().to_string());
    v.set(&format!("{cd}.deviceType"), "cdrom-image");

    let sound = flag(cfg.hw.sound);
    v.set("sound.startConnected", sound);
    v.set("sound.present", sound);
    v.set("sound.fileName", "-1");
    v.set("sound.autodetect", "TRUE");
    if let Some(version) = cfg.hw.usb_version() {
        v.set("usb.present", "TRUE");
        v.set("ehci.present", "TRUE");
        // USB 3 is the xHCI controller.
        if version != "2.0" {
            v.set("usb_xhci.present", "TRUE");
        }
    }

    v.set("serial0.present", "FALSE");
    v.set("serial0.startConnected", "FALSE");
    if let Some(port) = cfg.hw.serial_port() {
        let p = serial_keys(&port);
        v.set("serial0.present", "TRUE");
        v.set("serial0.startConnected", "TRUE");
        v.set("serial0.fileType", p.file_type);
        v.set("serial0.fileName", &p.file_name);
        v.set(
            "serial0.autodetect",
            flag(matches!(port, SerialPort::Auto { .. })),
        );
        v.set("serial0.yieldOnMsrRead", p.yield_cpu);
        v.set("serial0.pipe.endPoint", &p.endpoint);
        v.set("serial0.tryNoRxLoss", p.host);
    }
    v.set("parallel0.present", "FALSE");
    v.set("parallel0.startConnected", "FALSE");
    if let Some(port) = cfg.hw.parallel_port() {
        let p = parallel_keys(&port);
        v.set("parallel0.present", "TRUE");
        v.set("parallel0.startConnected", "TRUE");
        v.set("parallel0.fileName", &p.file_name);
        v.set("parallel0.autodetect", flag(p.auto));
        v.set("parallel0.bidirectional", p.bidirectional);
    }
    v
}

/// A serial port's `.vmx` values, as Packer's default template gets them (empty where Packer
/// leaves them empty: the yield flag of a file or device, which it parses and drops).
struct SerialKeys {
    file_type: &'static str,
    file_name: String,
    endpoint: String,
    host: &'static str,
    yield_cpu: &'static str,
}

fn serial_keys(port: &SerialPort) -> SerialKeys {
    let none = |file_type, file_name: &str| SerialKeys {
        file_type,
        file_name: file_name.to_owned(),
        endpoint: String::new(),
        host: "",
        yield_cpu: "",
    };
    match port {
        SerialPort::File { path } => none("file", path),
        SerialPort::Device { path } => none("device", path),
        SerialPort::Pipe {
            path,
            endpoint,
            app,
            yield_cpu,
        } => SerialKeys {
            endpoint: endpoint.clone(),
            host: flag(*app),
            yield_cpu: flag(*yield_cpu),
            ..none("pipe", path)
        },
        // VMware picks the host's device; Packer names its default one.
        SerialPort::Auto { yield_cpu } => SerialKeys {
            yield_cpu: flag(*yield_cpu),
            ..none("device", DEFAULT_SERIAL_DEVICE)
        },
    }
}

/// A parallel port's `.vmx` values, as [`SerialKeys`].
struct ParallelKeys {
    file_name: String,
    auto: bool,
    bidirectional: &'static str,
}

fn parallel_keys(port: &ParallelPort) -> ParallelKeys {
    match port {
        ParallelPort::File { path } => ParallelKeys {
            file_name: path.clone(),
            auto: false,
            bidirectional: "",
        },
        ParallelPort::Device {
            path,
            bidirectional,
        } => ParallelKeys {
            file_name: path.clone(),
            auto: false,
            bidirectional: flag(*bidirectional),
        },
        ParallelPort::Auto { bidirectional } => ParallelKeys {
            file_name: String::new(),
            auto: true,
            bidirectional: flag(*bidirectional),
        },
    }
}

/// What Packer's "configure VMX" step adds to a VM's `.vmx` before it starts, for both
/// builders: `vmx_data`, the floppy and the `cd_files` CD as temporary devices (added to
/// `temporary`), the display name (`display_name`, else `name`) and its `.vmxf`.
fn configure_vmx(
    vmx: &mut Vmx,
    c: &VmwareCommon,
    ctx: &BuildContext,
    name: &str,
    temporary: &mut Vec<String>,
) {
    let b = buses(&c.disk_adapter_type, c.cdrom_adapter_type.as_deref());
    vmx.set("msg.autoanswer", "true");
    vmx.set("uuid.action", "create");
    vmx.remove_matching(|k| {
        let k = k.to_ascii_lowercase();
        k.starts_with("ethernet") && k.ends_with(".generatedaddress")
    });
    for (k, val) in &c.vmx_data {
        vmx.set(k, val);
    }
    if let Some(floppy) = &ctx.floppy_path {
        vmx.set("floppy0.present", "TRUE");
        vmx.set("floppy0.fileType", "file");
        vmx.set("floppy0.fileName", &floppy.display().to_string());
        temporary.push("floppy0".into());
    }
    if let Some(cd) = &ctx.cd_path {
        // Packer puts the second CD on bus 1 of the CD-ROM's adapter.
        let dev = format!("{}1:{}", b.cdrom, b.cdrom_unit);
        vmx.set(&format!("{}1.present", b.cdrom), "TRUE");
        vmx.set(&format!("{dev}.present"), "TRUE");
        vmx.set(&format!("{dev}.fileName"), &cd.display().to_string());
        vmx.set(&format!("{dev}.deviceType"), "cdrom-image");
        temporary.push(dev);
    }
    let display = c.display_name.clone().unwrap_or_else(|| name.to_owned());
    if c.display_name.is_some() {
        vmx.set("displayName", &display);
    }
    vmx.set("extendedConfigFile", &format!("{display}.vmxf"));
}

/// Write `<vm_name>.vmx` in the output directory: Packer's default template (or
/// `vmx_template_path` and `vmx_disk_template_path`, rendered as Packer renders them:
/// [`templated_vmx`]), then what Packer's "configure VMX" step adds ([`configure_vmx`]).
pub struct CreateVmx {
    cfg: Arc<VmwareIsoConfig>,
    shared: Shared,
}

impl CreateVmx {
    /// The step for `cfg`.
    pub fn new(cfg: Arc<VmwareIsoConfig>, shared: Shared) -> Self {
        Self { cfg, shared }
    }
}

#[async_trait]
impl Step for CreateVmx {
    fn name(&self) -> &'static str {
        "create .vmx"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let dir = absolute_output_dir(ctx)?;
        let name = ctx.require_vm_name()?.to_owned();
        let iso = std::path::absolute(ctx.require_iso()?)
            .map_err(|e| StepError::with("cannot make the ISO's path absolute", e))?;
        let c = &self.cfg;
        ctx.ui.say("Generating the .vmx file...");
        let mut vmx = match c.vmx_template_path.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => templated_vmx(c, ctx, p, &name, &iso)?,
            None => default_vmx(c, &name, &iso),
        };
        let b = buses(
            &c.common.disk_adapter_type,
            c.common.cdrom_adapter_type.as_deref(),
        );
        let mut temporary = vec![format!("{}0:{}", b.cdrom, b.cdrom_unit)];
        configure_vmx(&mut vmx, &c.common, ctx, &name, &mut temporary);
        let path = dir.join(format!("{name}.vmx"));
        write_vmx(&path, &vmx)?;
        with(&self.shared, |s| {
            s.vmx = Some(path);
            s.temporary = temporary;
        })?;
        if let Some(m) = c.hw.memory {
            ctx.facts.memory_mib = Some(u64::from(m));
        }
        Ok(())
    }
}

/// The disks a `.vmx` names (`<bus>N:M.fileName` ending in `.vmdk`), as paths from its
/// directory, in key order.
fn vmx_disks(vmx: &Vmx, dir: &Path) -> Vec<PathBuf> {
    vmx.keys()
        .into_iter()
        .filter(|k| is_disk_key(k))
        .filter_map(|k| vmx.get(&k))
        .filter(|v| v.to_ascii_lowercase().ends_with(".vmdk"))
        .map(|v| dir.join(v))
        .collect()
}

/// `(scsi|sata|ide|nvme)N:M.fileName`, any case.
fn is_disk_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    let Some(device) = k.strip_suffix(".filename") else {
        return false;
    };
    let Some(rest) = ["scsi", "sata", "ide", "nvme"]
        .iter()
        .find_map(|bus| device.strip_prefix(bus))
    else {
        return false;
    };
    rest.split_once(':').is_some_and(|(bus, unit)| {
        !bus.is_empty()
            && !unit.is_empty()
            && unit.len() <= 2
            && bus.bytes().chain(unit.bytes()).all(|c| c.is_ascii_digit())
    })
}

/// `vmware-vmx`: clone `source_path` to `<output_directory>/<vm_name>.vmx` with `vmrun clone`
/// (`full`, or `linked` to the source's disks, from `attach_snapshot`), as Packer does; find
/// the clone's disks (for compaction); attach `disk_additional_size`'s disks on the bus the
/// clone's disk is on; then what Packer's "configure VMX" step adds ([`configure_vmx`]). An
/// OVF/OVA source is imported with `ovftool` instead, into the output directory as
/// `<vm_name>.vmx`, its guest OS set to `guest_os_type` (see [`CloneVmx::import`]).
pub struct CloneVmx {
    cfg: Arc<VmwareCommon>,
    source: PathBuf,
    linked: bool,
    snapshot: Option<String>,
    driver: Arc<dyn Driver>,
    shared: Shared,
    guest_os_type: Option<String>,
}

impl CloneVmx {
    /// The step cloning `source` (`linked`, from `snapshot`) for `cfg`.
    pub fn new(
        cfg: Arc<VmwareCommon>,
        source: PathBuf,
        linked: bool,
        snapshot: Option<String>,
        driver: Arc<dyn Driver>,
        shared: Shared,
    ) -> Self {
        Self {
            cfg,
            source,
            linked,
            snapshot,
            driver,
            shared,
            guest_os_type: None,
        }
    }

    /// The guest OS id an imported OVF/OVA gets (`guest_os_type`).
    pub fn with_guest_os(mut self, guest_os_type: Option<String>) -> Self {
        self.guest_os_type = guest_os_type;
        self
    }

    /// Import the OVF/OVA `source` as Packer does: `ovftool` makes `<dir>/<name>/` (or
    /// `<name>.vmwarevm` on Fusion), whose files move up into `dir`; the `.vmx` becomes
    /// `target` when ovftool named it otherwise; its `guestOS` is `guest_os_type`.
    async fn import(
        &self,
        source: PathBuf,
        dir: &Path,
        name: &str,
        target: &Path,
    ) -> Result<(), StepError> {
        let op = VmwareOp::Import {
            source,
            target_dir: dir.to_owned(),
            name: name.to_owned(),
            version: self.cfg.version,
        };
        run(
            self.driver.as_ref(),
            &op,
            "cannot import the source OVF/OVA",
        )
        .await?;
        let made = [dir.join(name), dir.join(format!("{name}.vmwarevm"))]
            .into_iter()
            .find(|d| d.is_dir())
            .ok_or_else(|| {
                StepError::msg(format!(
                    "ovftool made neither {0}/{name} nor {0}/{name}.vmwarevm",
                    dir.display()
                ))
            })?;
        let moved = |e| {
            StepError::with(
                format!("cannot move ovftool's files out of {}", made.display()),
                e,
            )
        };
        for entry in std::fs::read_dir(&made).map_err(moved)? {
            let entry = entry.map_err(moved)?;
            std::fs::rename(entry.path(), dir.join(entry.file_name())).map_err(moved)?;
        }
        std::fs::remove_dir(&made).map_err(moved)?;
        if !target.is_file() {
            let vmx = std::fs::read_dir(dir)
                .map_err(moved)?
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("vmx")))
                .ok_or_else(|| {
                    StepError::msg(format!("ovftool wrote no .vmx in {}", dir.display()))
                })?;
            std::fs::rename(&vmx, target).map_err(moved)?;
        }
        if let Some(os) = self.guest_os_type.as_deref().filter(|o| !o.is_empty()) {
            let mut vmx = read_vmx(target)?;
            vmx.set("guestOS", os);
            write_vmx(target, &vmx)?;
        }
        Ok(())
    }
}

#[async_trait]
impl Step for CloneVmx {
    fn name(&self) -> &'static str {
        "clone .vmx"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let dir = absolute_output_dir(ctx)?;
        let name = ctx.require_vm_name()?.to_owned();
        let target = dir.join(format!("{name}.vmx"));
        let source = std::path::absolute(&self.source)
            .map_err(|e| StepError::with("cannot make source_path absolute", e))?;
        if crate::config::vmware::is_ovf(&source.to_string_lossy()) {
            ctx.ui.say(&format!(
                "Importing the source OVF/OVA {} with ovftool...",
                source.display()
            ));
            self.import(source, &dir, &name, &target).await?;
        } else {
            ctx.ui.say(&format!(
                "Cloning the source VM {} ({} clone)...",
                source.display(),
                if self.linked { "linked" } else { "full" }
            ));
            let op = VmwareOp::Clone {
                source,
                target: target.clone(),
                linked: self.linked,
                snapshot: self.snapshot.clone(),
            };
            run(self.driver.as_ref(), &op, "cannot clone the source VM").await?;
        }
        let mut vmx = read_vmx(&target)?;
        let disks = vmx_disks(&vmx, &dir);
        let Some(first) = disks.first() else {
            return Err(StepError::msg(format!(
                "{} names no disk (no <bus>N:M.fileName = \"….vmdk\")",
                target.display()
            )));
        };
        ctx.facts.disk_name = first.file_name().map(|n| n.to_string_lossy().into_owned());
        ctx.facts.disk_format = Some("vmdk".into());
        if let Some(m) = vmx.get("memsize").and_then(|m| m.parse().ok()) {
            ctx.facts.memory_mib = Some(m);
        }
        self.attach_additional_disks(&mut vmx);
        let mut temporary = Vec::new();
        configure_vmx(&mut vmx, &self.cfg, ctx, &name, &mut temporary);
        write_vmx(&target, &vmx)?;
        with(&self.shared, |s| {
            // The clone's disks first, then those made by the disks step.
            let extra = std::mem::take(&mut s.disks);
            s.disks = disks.into_iter().chain(extra).collect();
            s.vmx = Some(target);
            s.temporary = temporary;
        })
    }
}

impl CloneVmx {
    /// `<vmdk_name>-N.vmdk` on the free units after the clone's disks, on the bus of its first
    /// disk (SCSI's unit 7 is the controller's, skipped), as Packer attaches them.
    fn attach_additional_disks(&self, vmx: &mut Vmx) {
        let c = &self.cfg;
        if c.disk_additional_size.is_empty() {
            return;
        }
        let keys = vmx.keys();
        let first_key = keys.iter().find(|k| is_disk_key(k));
        let bus = first_key
            .and_then(|k| k.split_once(|ch: char| ch.is_ascii_digit()))
            .map(|(b, _)| b.to_ascii_lowercase())
            .unwrap_or_else(|| "scsi".into());
        let used: Vec<usize> = keys
            .iter()
            .filter_map(|k| {
                let k = k.to_ascii_lowercase();
                let rest = k.strip_prefix(&format!("{bus}0:"))?;
                let (unit, field) = rest.split_once('.')?;
                (field == "present").then(|| unit.parse().ok()).flatten()
            })
            .collect();
        let mut unit = 0;
        for n in extra_disk_numbers().take(c.disk_additional_size.len()) {
            while used.contains(&unit) || (bus == "scsi" && unit == SCSI_CONTROLLER_UNIT) {
                unit += 1;
            }
            let dev = format!("{bus}0:{unit}");
            vmx.set(&format!("{dev}.present"), "TRUE");
            vmx.set(
                &format!("{dev}.fileName"),
                &format!("{}-{n}.vmdk", c.vmdk_name),
            );
            unit += 1;
        }
    }
}

/// kiln's HTTP server (the shared step), with the address the guest is told
/// (`{{ .HTTPIP }}`) found as Packer finds it: `http_bind_address` when it names one address,
/// else the host's address on the VM's vmnet (its `fixed-address` in VMware's DHCP
/// configuration, through the network map); on a bridged network, or when VMware's files do
/// not say (Packer stops there), the host's address on its default route, with a warning.
pub struct StartHttpServer {
    http: HttpConfig,
    shared: Shared,
    locations: Locations,
    inner: Option<http::StartHttpServer>,
}

impl StartHttpServer {
    /// The step for `http`, reading this host's VMware network files.
    pub fn new(http: HttpConfig, shared: Shared) -> Self {
        Self {
            http,
            shared,
            locations: Locations::host(),
            inner: None,
        }
    }

    /// Read VMware's network files from `locations` instead of this host's.
    pub fn with_locations(mut self, locations: Locations) -> Self {
        self.locations = locations;
        self
    }

    /// The address the guest is told, and why, when not from the vmnet.
    fn guest_ip(&self, vmx: &Vmx) -> (String, Option<String>) {
        let bind = &self.http.http_bind_address;
        if !bind.is_empty() && bind != "0.0.0.0" {
            return (bind.clone(), None);
        }
        match network::host_address(&self.locations, &network::guest_network(vmx)) {
            Ok(Some(ip)) => (ip.to_string(), None),
            Ok(None) => (super::default_route_ip(), None),
            Err(e) => {
                let ip = super::default_route_ip();
                let why = format!(
                    "{ip} (the host's address on its default route), since {}",
                    crate::report::chain(&e)
                );
                (ip, Some(why))
            }
        }
    }
}

#[async_trait]
impl Step for StartHttpServer {
    fn name(&self) -> &'static str {
        "start HTTP server"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let serves = self.http.http_directory.is_some() || !self.http.http_content.is_empty();
        let ip = if serves {
            let vmx = read_vmx(&vmx_path(&self.shared)?)?;
            let (ip, why) = self.guest_ip(&vmx);
            if let Some(why) = why {
                ctx.ui
                    .warn(&format!("The guest is told the HTTP server is at {why}"));
            }
            ip
        } else {
            String::new()
        };
        self.inner
            .insert(http::StartHttpServer::new(self.http.clone(), &ip))
            .run(ctx)
            .await
    }

    async fn cleanup(&mut self, ctx: &mut BuildContext) -> Result<(), CleanupError> {
        match self.inner.as_mut() {
            Some(inner) => inner.cleanup(ctx).await,
            None => Ok(()),
        }
    }
}

/// Turn on VMware's VNC server in the `.vmx` on the port the port step picked
/// (`RemoteDisplay.vnc.*`), with its password unless `vnc_disable_password`.
pub struct ConfigureVnc {
    shared: Shared,
}

impl ConfigureVnc {
    /// The step.
    pub fn new(shared: Shared) -> Self {
        Self { shared }
    }
}

#[async_trait]
impl Step for ConfigureVnc {
    fn name(&self) -> &'static str {
        "configure VNC"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let path = vmx_path(&self.shared)?;
        let vnc = ctx.vnc.clone().ok_or(StepError::MissingState {
            key: "the VNC port",
            producer: "pick ports",
        })?;
        ctx.ui.say(&format!(
            "Configuring VNC: the guest's screen is on vnc://{}:{}",
            vnc.host, vnc.port
        ));
        let mut vmx = read_vmx(&path)?;
        vmx.set("RemoteDisplay.vnc.enabled", "TRUE");
        vmx.set("RemoteDisplay.vnc.port", &vnc.port.to_string());
        vmx.set("RemoteDisplay.vnc.ip", &vnc.host);
        if let Some(p) = &vnc.password {
            vmx.set("RemoteDisplay.vnc.password", p);
        }
        write_vmx(&path, &vmx)
    }
}

/// `vmrun start`, and the VM handed to the shared steps; cleanup stops it if it still runs.
pub struct StartVm {
    headless: bool,
    driver: Arc<dyn Driver>,
    shared: Shared,
}

impl StartVm {
    /// The step; `headless` starts it without a window.
    pub fn new(headless: bool, driver: Arc<dyn Driver>, shared: Shared) -> Self {
        Self {
            headless,
            driver,
            shared,
        }
    }
}

#[async_trait]
impl Step for StartVm {
    fn name(&self) -> &'static str {
        "start VM"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let vmx = vmx_path(&self.shared)?;
        ctx.ui.say("Starting virtual machine...");
        let op = VmwareOp::Start {
            vmx: vmx.clone(),
            gui: !self.headless,
        };
        run(self.driver.as_ref(), &op, "cannot start the VM").await?;
        let vnc = ctx.vnc.clone();
        ctx.machine = Some(Arc::new(VmwareMachine::new(
            self.driver.clone(),
            vmx.clone(),
            vnc,
        )));
        ctx.generated.insert("ID".into(), vmx.display().to_string());
        Ok(())
    }

    async fn cleanup(&mut self, ctx: &mut BuildContext) -> Result<(), CleanupError> {
        if let Some(m) = ctx.machine.take() {
            if m.exited().is_none() {
                ctx.ui.say("Stopping virtual machine...");
            }
            m.kill().await;
        }
        Ok(())
    }
}

/// How often the guest's address is looked for again while the guest boots.
const ADDRESS_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Why one look for the guest's address found nothing.
#[derive(Debug, thiserror::Error)]
#[error("{}", misses_text(.leases.as_ref(), .vmrun.as_deref()))]
pub struct AddressMiss {
    /// Why the DHCP leases did not tell (not looked at on a bridged network).
    pub leases: Option<NetworkError>,
    /// Why `vmrun getGuestIPAddress` did not.
    pub vmrun: Option<String>,
}

fn misses_text(leases: Option<&NetworkError>, vmrun: Option<&str>) -> String {
    let mut parts = Vec::new();
    if let Some(e) = leases {
        parts.push(format!("DHCP leases: {e}"));
    }
    if let Some(e) = vmrun {
        parts.push(format!("vmrun getGuestIPAddress: {e}"));
    }
    parts.join("; ")
}

/// The guest's SSH address, in Packer's order: `ssh_host` when set; on a NAT, host-only or
/// custom network the latest lease for the `.vmx`'s MAC in the network's vmnet DHCP leases,
/// then `vmrun getGuestIPAddress` (VMware Tools in the guest); on a bridged network, where
/// VMware's DHCP server leases nothing, only `vmrun`. Both are asked again every
/// [`ADDRESS_POLL`] until one answers or `ssh_timeout` passes; the error then names every
/// file looked at.
pub struct GuestAddress {
    comm: CommConfig,
    driver: Arc<dyn Driver>,
    shared: Shared,
    locations: Locations,
}

impl GuestAddress {
    /// The step for `comm`, reading this host's VMware network files.
    pub fn new(comm: CommConfig, driver: Arc<dyn Driver>, shared: Shared) -> Self {
        Self {
            comm,
            driver,
            shared,
            locations: Locations::host(),
        }
    }

    /// Read VMware's network files from `locations` instead of this host's.
    pub fn with_locations(mut self, locations: Locations) -> Self {
        self.locations = locations;
        self
    }

    /// One look: the address and where it came from.
    async fn look(
        &self,
        vmx_path: &Path,
    ) -> Result<Result<(String, String), AddressMiss>, StepError> {
        // Re-read each time: VMware writes the generated MAC at power-on.
        let vmx = read_vmx(vmx_path)?;
        let mut miss = AddressMiss {
            leases: None,
            vmrun: None,
        };
        if !network::guest_network(&vmx).is_bridged() {
            let now = chrono::Utc::now().timestamp();
            match network::guest_nic(&vmx).and_then(|nic| lease_address(&self.locations, &nic, now))
            {
                Ok((ip, file)) => {
                    return Ok(Ok((
                        ip.to_string(),
                        format!("DHCP lease in {}", file.display()),
                    )))
                }
                Err(e) => miss.leases = Some(e),
            }
        }
        let op = VmwareOp::GuestIp {
            vmx: vmx_path.to_owned(),
        };
        match self.driver.run(&op).await {
            Ok(out) => {
                let ip = out.lines().next().unwrap_or_default().trim().to_owned();
                if ip.parse::<std::net::IpAddr>().is_ok() {
                    return Ok(Ok((ip, "vmrun getGuestIPAddress".into())));
                }
                miss.vmrun = Some(format!("answered {ip:?}, not an IP address"));
            }
            Err(e) => miss.vmrun = Some(e.to_string()),
        }
        Ok(Err(miss))
    }
}

#[async_trait]
impl Step for GuestAddress {
    fn name(&self) -> &'static str {
        "guest address"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        if self.comm.communicator == "none" {
            return Ok(());
        }
        let port = self.comm.ssh_port;
        if let Some(host) = &self.comm.ssh_host {
            ctx.ssh_address = Some((host.clone(), port));
            return Ok(());
        }
        let vmx = vmx_path(&self.shared)?;
        ctx.ui.say(
            "Waiting for the guest's IP address (VMware's DHCP leases or vmrun getGuestIPAddress)...",
        );
        let limit = self.comm.ssh_timeout().unwrap_or(std::time::Duration::MAX);
        let deadline = tokio::time::Instant::now().checked_add(limit);
        loop {
            let miss = tokio::select! {
                r = self.look(&vmx) => match r? {
                    Ok((ip, source)) => {
                        ctx.ui.say(&format!("The guest's IP address is {ip} ({source})"));
                        ctx.ssh_address = Some((ip, port));
                        return Ok(());
                    }
                    Err(miss) => miss,
                },
                () = ctx.cancel.cancelled() => return Err(StepError::Cancelled),
            };
            let now = tokio::time::Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(StepError::msg(format!(
                    "timed out waiting for the guest's IP address (ssh_timeout): {miss}\nhint: the guest must take a DHCP lease from VMware's DHCP server on its network, or run VMware Tools (open-vm-tools) for vmrun to know its address; or set ssh_host"
                )));
            }
            let wait = deadline.map_or(ADDRESS_POLL, |d| ADDRESS_POLL.min(d - now));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = ctx.cancel.cancelled() => return Err(StepError::Cancelled),
            }
        }
    }
}

/// Compact each disk (`vmware-vdiskmanager -d`, then `-k`), unless `skip_compaction`.
pub struct CompactDisks {
    skip: bool,
    driver: Arc<dyn Driver>,
    shared: Shared,
}

impl CompactDisks {
    /// The step.
    pub fn new(skip: bool, driver: Arc<dyn Driver>, shared: Shared) -> Self {
        Self {
            skip,
            driver,
            shared,
        }
    }
}

#[async_trait]
impl Step for CompactDisks {
    fn name(&self) -> &'static str {
        "compact disks"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        if self.skip {
            ctx.ui.say("Skipping disk compaction...");
            return Ok(());
        }
        ctx.ui.say("Compacting all attached virtual disks...");
        let d = self.driver.as_ref();
        for path in with(&self.shared, |s| s.disks.clone())? {
            run(
                d,
                &VmwareOp::Defragment { path: path.clone() },
                "cannot defragment the disk",
            )
            .await?;
            run(d, &VmwareOp::Shrink { path }, "cannot shrink the disk").await?;
        }
        Ok(())
    }
}

/// Packer's file extensions of a VMware VM: everything else in the output directory (logs,
/// lock files) is deleted after the build.
const KEEP: &[&str] = &["nvram", "vmdk", "vmsd", "vmx", "vmxf"];

/// After shutdown: delete what is not part of the VM, detach the build's devices (the ISO
/// drive becomes an empty drive, the floppy goes), turn VNC off, apply `vmx_data_post`, and
/// with `vmx_remove_ethernet_interfaces` drop every `ethernet*` key.
pub struct CleanVmx {
    cfg: Arc<VmwareCommon>,
    shared: Shared,
}

impl CleanVmx {
    /// The step for `cfg`.
    pub fn new(cfg: Arc<VmwareCommon>, shared: Shared) -> Self {
        Self { cfg, shared }
    }
}

#[async_trait]
impl Step for CleanVmx {
    fn name(&self) -> &'static str {
        "clean .vmx"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let path = vmx_path(&self.shared)?;
        let dir = ctx.require_output_dir()?.to_owned();
        ctx.ui.say("Deleting unnecessary VMware files...");
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| StepError::with(format!("cannot list {}", dir.display()), e))?;
        for p in entries.flatten().map(|e| e.path()) {
            let keep = p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| KEEP.contains(&x));
            if p.is_file() && !keep {
                std::fs::remove_file(&p)
                    .map_err(|e| StepError::with(format!("cannot delete {}", p.display()), e))?;
            }
        }
        ctx.ui
            .say("Cleaning .vmx configuration file prior to finishing up...");
        let mut vmx = read_vmx(&path)?;
        for dev in with(&self.shared, |s| s.temporary.clone())? {
            if dev.starts_with("floppy") {
                let prefix = format!("{}.", dev.to_ascii_lowercase());
                vmx.remove_matching(|k| k.to_ascii_lowercase().starts_with(&prefix));
                vmx.set(&format!("{dev}.present"), "FALSE");
            } else if vmx
                .get(&format!("{dev}.deviceType"))
                .is_some_and(|t| t.starts_with("cdrom-"))
            {
                vmx.set(&format!("{dev}.deviceType"), "cdrom-raw");
                vmx.set(&format!("{dev}.fileName"), "auto detect");
                vmx.set(&format!("{dev}.clientDevice"), "TRUE");
            }
        }
        vmx.set("RemoteDisplay.vnc.enabled", "FALSE");
        vmx.remove("RemoteDisplay.vnc.password");
        for (k, val) in &self.cfg.vmx_data_post {
            vmx.set(k, val);
        }
        if self.cfg.vmx_remove_ethernet_interfaces {
            ctx.ui.say("Removing Ethernet devices...");
            vmx.remove_matching(|k| k.to_ascii_lowercase().starts_with("ethernet"));
        }
        write_vmx(&path, &vmx)
    }
}

/// Find the VMware Tools ISO `tools_*` ask for (`tools_source_path`, else the one VMware
/// ships for `tools_upload_flavor`) before anything is made, and fail when it is missing, as
/// Packer's "prepare tools" step does.
pub struct PrepareTools {
    cfg: Arc<VmwareCommon>,
    driver: Arc<dyn Driver>,
    shared: Shared,
}

impl PrepareTools {
    /// The step for `cfg`.
    pub fn new(cfg: Arc<VmwareCommon>, driver: Arc<dyn Driver>, shared: Shared) -> Self {
        Self {
            cfg,
            driver,
            shared,
        }
    }
}

#[async_trait]
impl Step for PrepareTools {
    fn name(&self) -> &'static str {
        "prepare tools"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        if self.cfg.tools_mode().is_none() {
            return Ok(());
        }
        let (path, what) = match (self.cfg.tools_source(), self.cfg.tools_flavor()) {
            (Some(p), _) => (ctx.resolve(p), "tools_source_path".to_owned()),
            (None, Some(f)) => (
                self.driver.tools_iso(f),
                format!("the VMware Tools ISO for tools_upload_flavor {f:?}"),
            ),
            (None, None) => return Ok(()),
        };
        if !path.is_file() {
            return Err(StepError::msg(format!(
                "{what} is not a file: {}\nhint: install VMware Tools' ISOs with VMware, or point tools_source_path at one",
                path.display()
            )));
        }
        let path = std::path::absolute(&path)
            .map_err(|e| StepError::with("cannot make the tools ISO's path absolute", e))?;
        with(&self.shared, |s| s.tools_iso = Some(path))
    }
}

/// `tools_mode = "attach"`: the tools ISO as a CD-ROM for the build, on the first free unit of
/// `cdrom_adapter_type`'s bus (IDE by default), detached after it.
pub struct AttachTools {
    cfg: Arc<VmwareCommon>,
    shared: Shared,
}

impl AttachTools {
    /// The step for `cfg`.
    pub fn new(cfg: Arc<VmwareCommon>, shared: Shared) -> Self {
        Self { cfg, shared }
    }
}

#[async_trait]
impl Step for AttachTools {
    fn name(&self) -> &'static str {
        "attach tools"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        if self.cfg.tools_mode() != Some(ToolsMode::Attach) {
            return Ok(());
        }
        let Some(iso) = with(&self.shared, |s| s.tools_iso.clone())? else {
            return Ok(());
        };
        let path = vmx_path(&self.shared)?;
        let mut vmx = read_vmx(&path)?;
        let bus = self
            .cfg
            .cdrom_adapter_type
            .as_deref()
            .filter(|b| !b.is_empty())
            .unwrap_or("ide")
            .to_ascii_lowercase();
        // IDE has two channels of two units; SATA and SCSI one controller of many.
        let slots: Vec<(u32, u32)> = if bus == "ide" {
            vec![(0, 0), (0, 1), (1, 0), (1, 1)]
        } else {
            (0..30)
                .filter(|u| !(bus == "scsi" && *u == 7))
                .map(|u| (0, u))
                .collect()
        };
        let taken = |dev: &str| {
            vmx.get(&format!("{dev}.present"))
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        };
        let dev = slots
            .into_iter()
            .map(|(b, u)| format!("{bus}{b}:{u}"))
            .find(|d| !taken(d))
            .ok_or_else(|| {
                StepError::msg(format!("no free {bus} unit for the VMware Tools CD-ROM"))
            })?;
        let controller = dev.split(':').next().unwrap_or_default().to_owned();
        vmx.set(&format!("{controller}.present"), "TRUE");
        vmx.set(&format!("{dev}.present"), "TRUE");
        vmx.set(&format!("{dev}.fileName"), &iso.display().to_string());
        vmx.set(&format!("{dev}.deviceType"), "cdrom-image");
        write_vmx(&path, &vmx)?;
        ctx.ui.say(&format!(
            "Attached the VMware Tools ISO as CD-ROM device {dev}"
        ));
        with(&self.shared, |s| s.temporary.push(dev))
    }
}

/// `tools_mode = "upload"` (or a Packer 1.x template's tools options): upload the tools ISO
/// to `tools_upload_path` in the guest once the communicator is up.
pub struct UploadTools {
    cfg: Arc<VmwareCommon>,
    shared: Shared,
}

impl UploadTools {
    /// The step for `cfg`.
    pub fn new(cfg: Arc<VmwareCommon>, shared: Shared) -> Self {
        Self { cfg, shared }
    }
}

#[async_trait]
impl Step for UploadTools {
    fn name(&self) -> &'static str {
        "upload tools"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let (Some(ToolsMode::Upload), Some(comm)) =
            (self.cfg.tools_mode(), ctx.communicator.clone())
        else {
            return Ok(());
        };
        let Some(iso) = with(&self.shared, |s| s.tools_iso.clone())? else {
            return Ok(());
        };
        let dest = self.cfg.tools_upload_path();
        let mut file = tokio::fs::File::open(&iso).await.map_err(|e| {
            StepError::with(
                format!("cannot open the VMware Tools ISO {}", iso.display()),
                e,
            )
        })?;
        ctx.ui
            .say(&format!("Uploading the VMware Tools ISO to {dest}..."));
        comm.upload(&mut file, &dest, 0o644).await.map_err(|e| {
            StepError::with(format!("cannot upload the VMware Tools ISO to {dest}"), e)
        })
    }
}

/// `snapshot_name`: `vmrun snapshot` of the built VM.
pub struct CreateSnapshot {
    name: Option<String>,
    driver: Arc<dyn Driver>,
    shared: Shared,
}

impl CreateSnapshot {
    /// The step taking snapshot `name`, if any.
    pub fn new(name: Option<String>, driver: Arc<dyn Driver>, shared: Shared) -> Self {
        Self {
            name,
            driver,
            shared,
        }
    }
}

#[async_trait]
impl Step for CreateSnapshot {
    fn name(&self) -> &'static str {
        "create snapshot"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let Some(name) = self.name.clone() else {
            return Ok(());
        };
        ctx.ui.say(&format!(
            "Creating snapshot {name:?} of the virtual machine..."
        ));
        let op = VmwareOp::Snapshot {
            vmx: vmx_path(&self.shared)?,
            name,
        };
        run(self.driver.as_ref(), &op, "cannot create the snapshot").await?;
        Ok(())
    }
}

/// `ovftool` the VM to `<vm_name>.<format>` in the output directory when `format` is `ovf` or
/// `ova` (and not `skip_export`), then hand over the output directory's files as the artifact.
pub struct Export {
    cfg: Arc<VmwareCommon>,
    driver: Arc<dyn Driver>,
    shared: Shared,
    source_type: String,
    source_name: String,
}

impl Export {
    /// The step for `cfg`, making the artifact of `source_type.source_name`.
    pub fn new(
        cfg: Arc<VmwareCommon>,
        driver: Arc<dyn Driver>,
        shared: Shared,
        source_type: &str,
        source_name: &str,
    ) -> Self {
        Self {
            cfg,
            driver,
            shared,
            source_type: source_type.to_owned(),
            source_name: source_name.to_owned(),
        }
    }
}

#[async_trait]
impl Step for Export {
    fn name(&self) -> &'static str {
        "export"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let dir = ctx.require_output_dir()?.to_owned();
        let name = ctx.require_vm_name()?.to_owned();
        let format = self.cfg.format.as_deref().unwrap_or("vmx");
        if self.cfg.skip_export {
            ctx.ui.say("Skipping export of virtual machine...");
        } else if format == "ovf" || format == "ova" {
            ctx.ui.say("Exporting virtual machine...");
            let op = VmwareOp::Export {
                options: self.cfg.ovftool_options.clone(),
                vmx: vmx_path(&self.shared)?,
                output: absolute_output_dir(ctx)?.join(format!("{name}.{format}")),
            };
            run(
                self.driver.as_ref(),
                &op,
                "cannot export the VM with ovftool",
            )
            .await?;
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .and_then(|entries| entries.map(|e| e.map(|e| e.path())).collect())
            .map_err(|e| StepError::with(format!("cannot list {}", dir.display()), e))?;
        files.retain(|p| p.is_file());
        files.sort();
        ctx.artifact = Some(Artifact {
            builder_id: BUILDER_ID.into(),
            build_name: self.source_name.clone(),
            builder_type: self.source_type.clone(),
            files,
            id: "VM".into(),
            description: format!("VM files in directory: {}", dir.display()),
            facts: ctx.facts.clone(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::driver::testing::FakeDriver;
    use super::*;

    fn cfg(extra: serde_json::Value) -> VmwareIsoConfig {
        let mut base = serde_json::json!({"iso_url": "a.iso", "iso_checksum": "none"});
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn the_default_vmx_has_packers_hardware_keys() {
        let c = cfg(serde_json::json!({
            "cpus": 2, "cores": 2, "memory": 2048, "version": 19, "guest_os_type": "ubuntu-64",
            "network": "nat", "network_adapter_type": "VMXNET3", "firmware": "efi-secure",
            "disk_adapter_type": "nvme", "sound": true, "usb": true,
            "serial": "FILE:/tmp/serial.log", "disk_additional_size": [1024]
        }));
        let v = default_vmx(&c, "vm", Path::new("/isos/a.iso"));
        let want = [
            ("numvcpus", "2"),
            ("cpuid.corespersocket", "2"),
            ("memsize", "2048"),
            ("virtualhw.version", "19"),
            ("guestOS", "ubuntu-64"),
            ("firmware", "efi"),
            ("uefi.secureBoot.enabled", "TRUE"),
            ("ethernet0.connectionType", "nat"),
            ("ethernet0.virtualDev", "vmxnet3"),
            ("nvme0.present", "TRUE"),
            ("nvme0:0.fileName", "disk.vmdk"),
            ("nvme0:1.fileName", "disk-1.vmdk"),
            ("sata0:0.fileName", "/isos/a.iso"),
            ("sata0:0.deviceType", "cdrom-image"),
            ("scsi0.present", "FALSE"),
            ("sound.present", "TRUE"),
            ("usb.present", "TRUE"),
            ("serial0.fileType", "file"),
            ("serial0.fileName", "/tmp/serial.log"),
            ("parallel0.present", "FALSE"),
            ("displayName", "vm"),
        ];
        for (k, val) in want {
            assert_eq!(v.get(k).as_deref(), Some(val), "{k}");
        }
    }

    #[test]
    fn disk_and_cdrom_buses_follow_packer() {
        let b = buses("lsilogic", None);
        assert_eq!(
            (b.disk, b.cdrom, b.cdrom_unit, b.scsi),
            ("scsi", "ide", 0, true)
        );
        let b = buses("ide", None);
        assert_eq!((b.disk, b.cdrom, b.cdrom_unit), ("ide", "ide", 1));
        let b = buses("sata", Some("ide"));
        assert_eq!((b.disk, b.cdrom, b.cdrom_unit), ("sata", "ide", 0));
        let b = buses("pvscsi", Some("sata"));
        assert_eq!(
            (b.scsi_model.as_str(), b.cdrom, b.sata),
            ("pvscsi", "sata", true)
        );
    }

    #[test]
    fn a_custom_network_is_a_vnet() {
        let c = cfg(serde_json::json!({"network": "vmnet5"}));
        let v = default_vmx(&c, "vm", Path::new("/a.iso"));
        assert_eq!(v.get("ethernet0.connectionType").as_deref(), Some("custom"));
        assert_eq!(v.get("ethernet0.vnet").as_deref(), Some("vmnet5"));
    }

    fn comm(extra: serde_json::Value) -> CommConfig {
        let mut base = serde_json::json!({"ssh_username": "u"});
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        serde_json::from_value(base).unwrap()
    }

    fn shared_with_vmx(path: &Path) -> Shared {
        Arc::new(Mutex::new(State {
            vmx: Some(path.to_owned()),
            ..State::default()
        }))
    }

    /// A started VM's `.vmx` on `connection` (with the MAC VMware generated) in the output
    /// directory, and VMware's network files in a directory of their own: a `netmap.conf`
    /// and, with `lease`, a lease of that address to the MAC on vmnet8.
    fn network_fixture(
        s: &crate::pipeline::context::testing::Setup,
        connection: &str,
        lease: Option<&str>,
    ) -> (PathBuf, Locations) {
        let vmx = s.out.join("vm.vmx");
        std::fs::write(
            &vmx,
            format!("ethernet0.connectionType = \"{connection}\"\nethernet0.addressType = \"generated\"\nethernet0.generatedAddress = \"00:0c:29:c0:ff:ee\"\n"),
        )
        .unwrap();
        let etc = s.dir.path().join("etc-vmware");
        std::fs::create_dir_all(etc.join("vmnet8/dhcpd")).unwrap();
        std::fs::write(
            etc.join("netmap.conf"),
            "network0.name = \"Bridged\"\nnetwork0.device = \"vmnet0\"\nnetwork8.name = \"NAT\"\nnetwork8.device = \"vmnet8\"\n",
        )
        .unwrap();
        let leases = etc.join("vmnet8/dhcpd/dhcpd.leases");
        let _ = std::fs::remove_file(&leases);
        if let Some(ip) = lease {
            std::fs::write(
                &leases,
                format!("lease {ip} {{\n  starts 1 2024/01/01 00:00:00;\n  ends never;\n  binding state active;\n  hardware ethernet 00:0c:29:c0:ff:ee;\n}}\n"),
            )
            .unwrap();
        }
        (vmx, Locations::workstation(etc))
    }

    #[tokio::test]
    async fn the_guest_address_is_the_dhcp_lease_for_the_vmx_mac() {
        let mut s = crate::pipeline::context::testing::setup();
        let d = Arc::new(FakeDriver::default());
        let (vmx, loc) = network_fixture(&s, "nat", Some("172.16.41.130"));
        let mut step = GuestAddress::new(
            comm(serde_json::json!({"ssh_port": 2200})),
            d.clone(),
            shared_with_vmx(&vmx),
        )
        .with_locations(loc);
        step.run(&mut s.ctx).await.unwrap();
        assert_eq!(s.ctx.ssh_address, Some(("172.16.41.130".into(), 2200)));
        assert!(d.calls().is_empty(), "the leases answered: {:?}", d.calls());
    }

    #[tokio::test]
    async fn without_a_lease_vmrun_answers_and_on_a_bridged_network_only_vmrun() {
        let mut s = crate::pipeline::context::testing::setup();
        let d = Arc::new(FakeDriver::default());
        let (vmx, loc) = network_fixture(&s, "nat", None);
        let mut step = GuestAddress::new(
            comm(serde_json::json!({"ssh_port": 2200})),
            d.clone(),
            shared_with_vmx(&vmx),
        )
        .with_locations(loc);
        step.run(&mut s.ctx).await.unwrap();
        assert_eq!(s.ctx.ssh_address, Some(("192.168.56.10".into(), 2200)));
        let ask = format!("vmrun -T ws getGuestIPAddress {}", vmx.display());
        assert_eq!(d.calls(), std::slice::from_ref(&ask));

        // VMware's DHCP server leases nothing on a bridged network: a lease there is stale.
        let (vmx, loc) = network_fixture(&s, "bridged", Some("172.16.41.130"));
        let mut step = GuestAddress::new(
            comm(serde_json::json!({})),
            d.clone(),
            shared_with_vmx(&vmx),
        )
        .with_locations(loc);
        step.run(&mut s.ctx).await.unwrap();
        assert_eq!(s.ctx.ssh_address, Some(("192.168.56.10".into(), 22)));
        assert_eq!(d.calls(), [ask.clone(), ask]);
    }

    #[tokio::test]
    async fn ssh_host_overrides_and_a_timeout_names_every_file_looked_at() {
        let mut s = crate::pipeline::context::testing::setup();
        let d = Arc::new(FakeDriver::default());
        let (vmx, loc) = network_fixture(&s, "nat", Some("172.16.41.130"));
        let mut step = GuestAddress::new(
            comm(serde_json::json!({"ssh_host": "10.1.2.3"})),
            d.clone(),
            shared_with_vmx(&vmx),
        )
        .with_locations(loc);
        step.run(&mut s.ctx).await.unwrap();
        assert_eq!(s.ctx.ssh_address, Some(("10.1.2.3".into(), 22)));
        assert!(d.calls().is_empty());

        let (vmx, loc) = network_fixture(&s, "nat", None);
        d.fail_on(
            "getGuestIPAddress",
            "Error: The VMware Tools are not running in the virtual machine",
        );
        let mut step = GuestAddress::new(
            comm(serde_json::json!({"ssh_timeout": "1s"})),
            d.clone(),
            shared_with_vmx(&vmx),
        )
        .with_locations(loc.clone());
        let e = step.run(&mut s.ctx).await.unwrap_err().report();
        assert!(e.contains("VMware Tools are not running"), "{e}");
        assert!(e.contains("00:0c:29:c0:ff:ee"), "{e}");
        for f in loc.lease_files("vmnet8") {
            assert!(e.contains(&f.display().to_string()), "{}: {e}", f.display());
        }
        assert!(d.calls().len() >= 2, "asked again: {:?}", d.calls());
    }

    #[tokio::test]
    async fn clean_vmx_detaches_the_build_devices_and_applies_post_data() {
        let mut s = crate::pipeline::context::testing::setup();
        let vmx_path = s.out.join("vm.vmx");
        let c = cfg(serde_json::json!({
            "vmx_data_post": {"memsize": "4096"},
            "vmx_remove_ethernet_interfaces": true
        }));
        let mut vmx = default_vmx(&c, "vm", Path::new("/isos/a.iso"));
        vmx.set("floppy0.present", "TRUE");
        vmx.set("floppy0.fileName", "/tmp/floppy.img");
        vmx.set("RemoteDisplay.vnc.password", "secret");
        write_vmx(&vmx_path, &vmx).unwrap();
        std::fs::write(s.out.join("vmware.log"), b"log").unwrap();
        std::fs::write(s.out.join("disk.vmdk"), b"disk").unwrap();
        let shared = shared_with_vmx(&vmx_path);
        with(&shared, |st| {
            st.temporary = vec!["ide0:0".into(), "floppy0".into()]
        })
        .unwrap();
        CleanVmx::new(Arc::new(c.common), shared)
            .run(&mut s.ctx)
            .await
            .unwrap();
        let v = read_vmx(&vmx_path).unwrap();
        assert_eq!(v.get("memsize").as_deref(), Some("4096"));
        assert_eq!(v.get("ide0:0.fileName").as_deref(), Some("auto detect"));
        assert_eq!(v.get("ide0:0.deviceType").as_deref(), Some("cdrom-raw"));
        assert_eq!(v.get("floppy0.present").as_deref(), Some("FALSE"));
        assert_eq!(v.get("floppy0.fileName"), None);
        assert_eq!(v.get("RemoteDisplay.vnc.password"), None);
        assert!(v
            .keys()
            .iter()
            .all(|k| !k.to_ascii_lowercase().starts_with("ethernet")));
        assert!(!s.out.join("vmware.log").exists());
        assert!(s.out.join("disk.vmdk").exists());
    }

    #[tokio::test]
    async fn compaction_defragments_then_shrinks_each_disk_unless_skipped() {
        let mut s = crate::pipeline::context::testing::setup();
        let d = Arc::new(FakeDriver::default());
        let shared = Shared::default();
        with(&shared, |st| {
            st.disks = vec!["/o/disk.vmdk".into(), "/o/disk-1.vmdk".into()]
        })
        .unwrap();
        CompactDisks::new(true, d.clone(), shared.clone())
            .run(&mut s.ctx)
            .await
            .unwrap();
        assert!(d.calls().is_empty());
        CompactDisks::new(false, d.clone(), shared)
            .run(&mut s.ctx)
            .await
            .unwrap();
        assert_eq!(
            d.calls(),
            [
                "vmware-vdiskmanager -d /o/disk.vmdk",
                "vmware-vdiskmanager -k /o/disk.vmdk",
                "vmware-vdiskmanager -d /o/disk-1.vmdk",
                "vmware-vdiskmanager -k /o/disk-1.vmdk",
            ]
        );
    }

    /// Packer's own default template and additional-disk template (test data, see
    /// fixtures/vmware/README.md).
    fn packer_fixture(name: &str) -> String {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/vmware/packer-plugin-vmware")
            .join(name)
            .display()
            .to_string()
    }

    /// Every key of `v` (lower-cased, as VMware reads them) with its value.
    fn keys(v: &Vmx) -> BTreeMap<String, String> {
        v.keys()
            .into_iter()
            .map(|k| (k.to_ascii_lowercase(), v.get(&k).unwrap_or_default()))
            .collect()
    }

    /// `cfg`'s `.vmx` made from Packer's default templates, as a `vmx_template_path` and
    /// `vmx_disk_template_path` are.
    fn from_packers_templates(extra: serde_json::Value) -> (VmwareIsoConfig, Vmx) {
        let mut extra = extra;
        extra["vmx_template_path"] = packer_fixture("default.vmx.tmpl").into();
        extra["vmx_disk_template_path"] = packer_fixture("additional-disk.vmx.tmpl").into();
        let c = cfg(extra);
        let s = crate::pipeline::context::testing::setup();
        let p = c.vmx_template_path.clone().unwrap_or_default();
        let v = templated_vmx(&c, &s.ctx, &p, "vm", Path::new("/isos/a.iso")).unwrap();
        (c, v)
    }

    #[test]
    fn packers_default_template_rendered_with_kilns_data_is_kilns_default_vmx() {
        for extra in [
            serde_json::json!({
                "cpus": 2, "cores": 2, "memory": 2048, "version": 19, "guest_os_type": "ubuntu-64",
                "network": "vmnet3", "network_adapter_type": "VMXNET3", "firmware": "efi-secure",
                "disk_adapter_type": "nvme", "sound": true, "usb": true, "usb_version": "3.2",
                "serial": "PIPE:/tmp/serial,client,app,TRUE", "parallel": "FILE:/tmp/lp",
                "disk_additional_size": [1024, 2048], "vhv_enabled": true, "vmdk_name": "main"
            }),
            serde_json::json!({
                "firmware": "bios", "disk_adapter_type": "ide", "cdrom_adapter_type": "sata",
                "usb": true, "usb_version": "2.0", "serial": "PIPE:/tmp/s,server,app,FALSE",
                "parallel": "DEVICE:/dev/lp0,bi", "disk_additional_size": [1, 2, 3],
                "network": "bridged", "network_adapter_type": "e1000e"
            }),
            serde_json::json!({
                "disk_adapter_type": "pvscsi", "cdrom_adapter_type": "scsi", "firmware": "efi",
                "usb": true, "serial": "PIPE:/tmp/s,client,app,TRUE", "parallel": "AUTO:bi",
                "disk_additional_size": [10]
            }),
            serde_json::json!({"usb": true, "serial": "AUTO:true", "parallel": "DEVICE:/dev/lp0"}),
            serde_json::json!({"usb": true, "serial": "device:/dev/ttyS1,false", "parallel": "auto:"}),
            serde_json::json!({"usb": true, "serial": "FILE:/tmp/s.log,TRUE", "parallel": "FILE:/tmp/lp"}),
        ] {
            let (c, v) = from_packers_templates(extra.clone());
            let want = default_vmx(&c, "vm", Path::new("/isos/a.iso"));
            assert_eq!(keys(&v), keys(&want), "{extra}");
        }
        // With the ports and USB off, Packer's template still writes their keys, empty or
        // FALSE, where kiln's default leaves them out: the same machine to VMware.
        let (c, v) = from_packers_templates(serde_json::json!({}));
        let (mut got, want) = (
            keys(&v),
            keys(&default_vmx(&c, "vm", Path::new("/isos/a.iso"))),
        );
        let mut only_packers = BTreeMap::new();
        got.retain(|k, val| {
            want.contains_key(k) || only_packers.insert(k.clone(), val.clone()).is_some()
        });
        assert_eq!(got, want);
        let off: BTreeMap<String, String> = [
            ("ehci.present", "FALSE"),
            ("parallel0.autodetect", ""),
            ("parallel0.bidirectional", ""),
            ("parallel0.filename", ""),
            ("serial0.autodetect", ""),
            ("serial0.filename", ""),
            ("serial0.filetype", ""),
            ("serial0.pipe.endpoint", ""),
            ("serial0.trynorxloss", ""),
            ("serial0.yieldonmsrread", ""),
            ("usb.present", "FALSE"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(only_packers, off);
    }

    #[tokio::test]
    async fn a_vmx_template_is_rendered_with_packers_values_then_vmx_data() {
        let mut s = crate::pipeline::context::testing::setup();
        s.ctx.iso_path = Some(s.dir.path().join("a.iso"));
        let template = s.dir.path().join("t.vmx");
        std::fs::write(
            &template,
            "// written for Packer 1.x\nguestOS = \"{{ .GuestOS }}\"\nmemsize = \"64\"\n\
             numvcpus = \"{{ .CpuCount }}\"\n\
             {{ .CdromType }}0:{{ .CdromTypePrimarySecondary }}.fileName = \"{{ .ISOPath }}\"\n\
             ethernet0.connectionType = \"{{ .Network_Type }}\"\n\
             {{- if and .UsbPresent (eq .UsbVersion \"3.1\" \"3.2\") }}\nusb_xhci.present = \"TRUE\"\n{{- end }}\n\
             vhv.enable = \"{{ if .HardwareAssistedVirtualization }}TRUE{{ else }}FALSE{{ end }}\"\n",
        )
        .unwrap();
        std::fs::write(
            s.dir.path().join("disk.tmpl"),
            "{{ .DiskType }}0:{{ .DiskUnit }}.fileName = \"{{ .DiskName }}-{{ .DiskNumber }}.vmdk\"\n\
             {{ .DiskType }}0:{{ .DiskUnit }}.present = \"TRUE\"\n",
        )
        .unwrap();
        let c = cfg(serde_json::json!({
            "vmx_template_path": "t.vmx", "vmx_disk_template_path": "disk.tmpl",
            "disk_additional_size": [10, 20], "guest_os_type": "debian12-64", "cpus": 3,
            "usb": true, "vhv_enabled": true, "vmx_data": {"memsize": "128"}
        }));
        let shared = Shared::default();
        CreateVmx::new(Arc::new(c.clone()), shared.clone())
            .run(&mut s.ctx)
            .await
            .unwrap();
        let v = read_vmx(&vmx_path(&shared).unwrap()).unwrap();
        let iso = s.dir.path().join("a.iso").display().to_string();
        for (k, want) in [
            ("memsize", "128"),
            ("guestOS", "debian12-64"),
            ("numvcpus", "3"),
            ("ide0:0.fileName", iso.as_str()),
            ("ethernet0.connectionType", "nat"),
            ("usb_xhci.present", "TRUE"),
            ("vhv.enable", "TRUE"),
            ("scsi0:1.fileName", "disk-1.vmdk"),
            ("scsi0:2.fileName", "disk-2.vmdk"),
            ("scsi0:2.present", "TRUE"),
            ("msg.autoanswer", "true"),
        ] {
            assert_eq!(v.get(k).as_deref(), Some(want), "{k}");
        }
        // Packer's disk template was not used: no `.redo` keys.
        assert_eq!(v.get("scsi0:1.redo"), None);

        // A template with no values and no disk template: used as written, with Packer's
        // default disk keys for the extra disks.
        std::fs::write(&template, "guestOS = \"other\"\nmemsize = \"64\"\n").unwrap();
        let c = cfg(serde_json::json!({
            "vmx_template_path": template.display().to_string(), "disk_additional_size": [10]
        }));
        let shared = Shared::default();
        CreateVmx::new(Arc::new(c), shared.clone())
            .run(&mut s.ctx)
            .await
            .unwrap();
        let v = read_vmx(&vmx_path(&shared).unwrap()).unwrap();
        assert_eq!(v.get("numvcpus"), None);
        assert_eq!(v.get("memsize").as_deref(), Some("64"));
        assert_eq!(v.get("scsi0:1.fileName").as_deref(), Some("disk-1.vmdk"));
        assert_eq!(v.get("scsi0:1.redo").as_deref(), Some(""));
    }

    #[tokio::test]
    async fn vmx_template_errors_name_the_file_line_and_column() {
        let mut s = crate::pipeline::context::testing::setup();
        s.ctx.iso_path = Some(s.dir.path().join("a.iso"));
        let template = s.dir.path().join("t.vmx");
        let disk = s.dir.path().join("d.tmpl");
        let cases = [
            (
                "a = \"1\"\nb = \"{{ .Nmae }}\"\n",
                "x = \"1\"\n",
                &template,
                "line 2, column 9: unknown field `.Nmae`",
            ),
            (
                "{{ range .Name }}{{ end }}",
                "x = \"1\"\n",
                &template,
                "line 1, column 4: `range` here is not supported",
            ),
            (
                "a = \"1\"\n",
                "\n{{ .DiskUnit | printf }}",
                &disk,
                "line 2, column 14: a pipeline",
            ),
            (
                "a = \"1\"\n",
                "{{ .Size }}",
                &disk,
                "line 1, column 4: unknown field `.Size`",
            ),
            (
                "a = \"{{ .Name }}\" b\n",
                "x = \"1\"\n",
                &template,
                "once rendered",
            ),
        ];
        for (text, disk_text, file, want) in cases {
            std::fs::write(&template, text).unwrap();
            std::fs::write(&disk, disk_text).unwrap();
            let c = cfg(serde_json::json!({
                "vmx_template_path": template.display().to_string(),
                "vmx_disk_template_path": disk.display().to_string(),
                "disk_additional_size": [10]
            }));
            let e = CreateVmx::new(Arc::new(c), Shared::default())
                .run(&mut s.ctx)
                .await
                .unwrap_err()
                .report();
            assert!(e.contains(&file.display().to_string()), "{e}");
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    fn common(extra: serde_json::Value) -> Arc<VmwareCommon> {
        Arc::new(cfg(extra).common)
    }

    #[tokio::test]
    async fn a_clone_gets_the_additional_disks_after_its_own_and_the_build_devices() {
        let mut s = crate::pipeline::context::testing::setup();
        s.ctx.vm_name = Some("vm".into());
        let src = s.dir.path().join("base.vmx");
        std::fs::write(
            &src,
            "scsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"base.vmdk\"\n\
             scsi0:1.present = \"TRUE\"\nscsi0:1.fileName = \"data.vmdk\"\nmemsize = \"1024\"\n",
        )
        .unwrap();
        s.ctx.floppy_path = Some("/tmp/floppy.img".into());
        let d = Arc::new(FakeDriver::default());
        let shared = Shared::default();
        with(&shared, |st| st.disks = vec![s.out.join("disk-1.vmdk")]).unwrap();
        let c = common(serde_json::json!({
            "disk_additional_size": [10, 20, 30, 40, 50, 60], "vmx_data": {"numvcpus": "4"}
        }));
        CloneVmx::new(
            c,
            src.clone(),
            true,
            Some("clean".into()),
            d.clone(),
            shared.clone(),
        )
        .run(&mut s.ctx)
        .await
        .unwrap();
        let vmx = s.out.join("vm.vmx");
        assert_eq!(
            d.calls(),
            [format!(
                "vmrun -T ws clone {} {} linked -snapshot=clean",
                src.display(),
                vmx.display()
            )]
        );
        let v = read_vmx(&vmx).unwrap();
        // Units 0 and 1 are the clone's; 7 is the SCSI controller's.
        for (unit, n) in [(2, 1), (3, 2), (4, 3), (5, 4), (6, 5), (8, 6)] {
            assert_eq!(
                v.get(&format!("scsi0:{unit}.fileName")),
                Some(format!("disk-{n}.vmdk")),
                "unit {unit}"
            );
        }
        assert_eq!(v.get("numvcpus").as_deref(), Some("4"));
        assert_eq!(
            v.get("floppy0.fileName").as_deref(),
            Some("/tmp/floppy.img")
        );
        let st = shared.lock().unwrap();
        assert_eq!(
            st.disks,
            [
                s.out.join("base.vmdk"),
                s.out.join("data.vmdk"),
                s.out.join("disk-1.vmdk")
            ]
        );
        assert_eq!(st.temporary, ["floppy0"]);
        assert_eq!(s.ctx.facts.disk_name.as_deref(), Some("base.vmdk"));
        assert_eq!(s.ctx.facts.memory_mib, Some(1024));
    }

    #[tokio::test]
    async fn scsi_disks_skip_the_controllers_unit_7_and_files_are_numbered_as_packers() {
        let sizes = serde_json::json!([1, 2, 3, 4, 5, 6, 7, 8]);
        // The CD-ROM on IDE: the extra disks from unit 1; sharing the SCSI bus: from unit 2.
        for (cdrom, units) in [
            ("ide", [1, 2, 3, 4, 5, 6, 8, 9]),
            ("scsi", [2, 3, 4, 5, 6, 8, 9, 10]),
        ] {
            let c = cfg(serde_json::json!({
                "disk_additional_size": sizes, "cdrom_adapter_type": cdrom
            }));
            let v = default_vmx(&c, "vm", Path::new("/a.iso"));
            assert_eq!(v.get("scsi0:7.present"), None, "{cdrom}");
            for (unit, n) in units.into_iter().zip([1, 2, 3, 4, 5, 6, 8, 9]) {
                assert_eq!(
                    v.get(&format!("scsi0:{unit}.fileName")),
                    Some(format!("disk-{n}.vmdk")),
                    "{cdrom}: unit {unit}"
                );
            }
        }
        // SATA has no reserved unit; the files are named as on SCSI.
        let c = cfg(
            serde_json::json!({"disk_additional_size": sizes, "disk_adapter_type": "sata",
                                       "cdrom_adapter_type": "ide"}),
        );
        let v = default_vmx(&c, "vm", Path::new("/a.iso"));
        assert_eq!(v.get("sata0:7.fileName").as_deref(), Some("disk-8.vmdk"));

        // The disks step makes the files the .vmx names.
        let mut s = crate::pipeline::context::testing::setup();
        let d = Arc::new(FakeDriver::default());
        CreateDisks::new(
            Arc::new(cfg(serde_json::json!({"disk_additional_size": sizes})).common),
            None,
            d.clone(),
            Shared::default(),
        )
        .run(&mut s.ctx)
        .await
        .unwrap();
        let made: Vec<String> = d
            .calls()
            .iter()
            .filter_map(|c| c.rsplit('/').next().map(str::to_owned))
            .collect();
        assert_eq!(
            made,
            ["1", "2", "3", "4", "5", "6", "8", "9"].map(|n| format!("disk-{n}.vmdk"))
        );
    }

    #[tokio::test]
    async fn the_guest_is_told_the_hosts_address_on_the_vms_vmnet() {
        let mut s = crate::pipeline::context::testing::setup();
        let (vmx_path, loc) = network_fixture(&s, "nat", None);
        let vmx = read_vmx(&vmx_path).unwrap();
        let http = |extra: serde_json::Value| {
            let mut h = serde_json::json!({"http_content": {"/ks.cfg": "x"}});
            if let (Some(h), Some(e)) = (h.as_object_mut(), extra.as_object()) {
                h.extend(e.clone());
            }
            let h = serde_json::from_value::<HttpConfig>(h).unwrap();
            StartHttpServer::new(h, shared_with_vmx(&vmx_path)).with_locations(loc.clone())
        };
        // VMware's files do not say: the default route's address, and why.
        let (ip, why) = http(serde_json::json!({})).guest_ip(&vmx);
        assert_eq!(ip, super::super::default_route_ip());
        let why = why.unwrap();
        assert!(why.contains("vmnet8/dhcpd/dhcpd.conf"), "{why}");
        std::fs::write(
            loc.config.join("vmnet8/dhcpd/dhcpd.conf"),
            "host vmnet8 {\n  hardware ethernet 00:50:56:C0:00:08;\n  fixed-address 172.16.41.1;\n}\n",
        )
        .unwrap();
        let mut step = http(serde_json::json!({}));
        step.run(&mut s.ctx).await.unwrap();
        assert_eq!(s.ctx.generated["PackerHTTPIP"], "172.16.41.1");
        step.cleanup(&mut s.ctx).await.unwrap();
        let bound = http(serde_json::json!({"http_bind_address": "127.0.0.1"}));
        assert_eq!(bound.guest_ip(&vmx), ("127.0.0.1".to_owned(), None));
        // Bridged: the host's LAN address, as Packer takes it, without a warning.
        let (bridged, _) = network_fixture(&s, "bridged", None);
        let (ip, why) = http(serde_json::json!({})).guest_ip(&read_vmx(&bridged).unwrap());
        assert_eq!((ip, why), (super::super::default_route_ip(), None));
    }

    #[tokio::test]
    async fn a_clone_without_disks_is_an_error() {
        let mut s = crate::pipeline::context::testing::setup();
        s.ctx.vm_name = Some("vm".into());
        let src = s.dir.path().join("base.vmx");
        std::fs::write(&src, "memsize = \"1024\"\n").unwrap();
        let e = CloneVmx::new(
            common(serde_json::json!({})),
            src,
            false,
            None,
            Arc::new(FakeDriver::default()),
            Shared::default(),
        )
        .run(&mut s.ctx)
        .await
        .unwrap_err()
        .report();
        assert!(e.contains("names no disk"), "{e}");
    }

    #[tokio::test]
    async fn the_tools_iso_is_found_attached_and_uploaded_as_tools_mode_asks() {
        use crate::communicator::testing::FakeCommunicator;
        let mut s = crate::pipeline::context::testing::setup();
        let iso = s.dir.path().join("linux.iso");
        std::fs::write(&iso, b"tools").unwrap();
        let d: Arc<dyn Driver> = Arc::new(FakeDriver::default());

        // A flavor whose ISO VMware does not have here: the build stops before anything.
        let flavor =
            common(serde_json::json!({"tools_mode": "upload", "tools_upload_flavor": "linux"}));
        let e = PrepareTools::new(flavor, d.clone(), Shared::default())
            .run(&mut s.ctx)
            .await
            .unwrap_err()
            .report();
        assert!(e.contains("/usr/lib/vmware/isoimages/linux.iso"), "{e}");

        // attach: a CD-ROM on the first free IDE unit, detached after the build.
        let attach = common(serde_json::json!({
            "tools_mode": "attach", "tools_source_path": iso.display().to_string()
        }));
        let vmx_path = s.out.join("vm.vmx");
        std::fs::write(&vmx_path, "ide0:0.present = \"TRUE\"\n").unwrap();
        let shared = shared_with_vmx(&vmx_path);
        PrepareTools::new(attach.clone(), d.clone(), shared.clone())
            .run(&mut s.ctx)
            .await
            .unwrap();
        AttachTools::new(attach.clone(), shared.clone())
            .run(&mut s.ctx)
            .await
            .unwrap();
        let v = read_vmx(&vmx_path).unwrap();
        assert_eq!(v.get("ide0:1.fileName"), Some(iso.display().to_string()));
        assert_eq!(v.get("ide0:1.deviceType").as_deref(), Some("cdrom-image"));
        assert_eq!(shared.lock().unwrap().temporary, ["ide0:1"]);
        let comm = Arc::new(FakeCommunicator::default());
        s.ctx.communicator = Some(comm.clone());
        UploadTools::new(attach, shared)
            .run(&mut s.ctx)
            .await
            .unwrap();
        assert!(comm.commands().is_empty());

        // upload: to tools_upload_path once connected.
        let upload = common(serde_json::json!({
            "tools_mode": "upload", "tools_source_path": iso.display().to_string(),
            "tools_upload_path": "/tmp/vmware-tools.iso"
        }));
        let shared = shared_with_vmx(&vmx_path);
        PrepareTools::new(upload.clone(), d, shared.clone())
            .run(&mut s.ctx)
            .await
            .unwrap();
        UploadTools::new(upload, shared)
            .run(&mut s.ctx)
            .await
            .unwrap();
        assert_eq!(comm.commands(), ["upload /tmp/vmware-tools.iso"]);
    }

    #[tokio::test]
    async fn snapshot_name_takes_a_snapshot_of_the_built_vm() {
        let mut s = crate::pipeline::context::testing::setup();
        let d = Arc::new(FakeDriver::default());
        let vmx = s.out.join("vm.vmx");
        CreateSnapshot::new(None, d.clone(), shared_with_vmx(&vmx))
            .run(&mut s.ctx)
            .await
            .unwrap();
        assert!(d.calls().is_empty());
        CreateSnapshot::new(Some("built".into()), d.clone(), shared_with_vmx(&vmx))
            .run(&mut s.ctx)
            .await
            .unwrap();
        assert_eq!(
            d.calls(),
            [format!("vmrun -T ws snapshot {} built", vmx.display())]
        );
    }

    #[test]
    fn usb_3_is_the_xhci_controller() {
        let v = |extra| default_vmx(&cfg(extra), "vm", Path::new("/a.iso"));
        let usb3 = v(serde_json::json!({"usb": true}));
        assert_eq!(usb3.get("usb_xhci.present").as_deref(), Some("TRUE"));
        let usb2 = v(serde_json::json!({"usb": true, "usb_version": "2.0"}));
        assert_eq!(usb2.get("ehci.present").as_deref(), Some("TRUE"));
        assert_eq!(usb2.get("usb_xhci.present"), None);
        assert_eq!(v(serde_json::json!({})).get("usb.present"), None);
    }
}
