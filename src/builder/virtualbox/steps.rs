//! The VirtualBox-specific steps of a `virtualbox-iso` build, in Packer's order: create and
//! register the VM, create and attach its disks, attach the ISOs, turn on VRDE, attach the
//! floppy, forward the communicator's port, run the template's `vboxmanage` commands, start the
//! VM; after provisioning and shutdown, remove the devices, run `vboxmanage_post`, and export.
//! Each step talks to VirtualBox through the [`Driver`] it is given, with typed [`VBoxOp`]s.
//! Steps that undo what another did (devices, the NAT rule) share a [`Shared`] record of what is
//! still attached, so cleanup undoes exactly what remains.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::driver::{Bus, Control, DeviceType, Driver, Setting, VBoxError, VBoxOp, Version};
use super::machine::VBoxMachine;
use super::BUILDER_ID;
use crate::artifact::{Artifact, Firmware};
use crate::builder::steps::ports;
use crate::config::common::CommConfig;
use crate::config::virtualbox::{VirtualBoxCommon, VirtualBoxIsoConfig};
use crate::pipeline::{BuildContext, CleanupError, Step, StepError};

/// The NAT rule kiln adds for the communicator (Packer's name, so tools that look for it find
/// it).
pub const NAT_RULE: &str = "packercomm";

/// What the steps attached and have not detached yet, and the guest additions ISO they hand
/// each other.
#[derive(Debug, Default)]
pub struct Attached {
    /// The guest additions ISO on the host, once fetched (`guest_additions_mode` `attach` or
    /// `upload`).
    pub additions: Option<PathBuf>,
    /// The commands that empty each attached ISO's drive, with what it holds.
    isos: Vec<(Iso, VBoxOp)>,
    /// The floppy is in its drive.
    floppy: bool,
    /// The communicator's NAT rule is in place.
    nat_rule: bool,
}

/// An ISO attached by [`AttachIsos`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Iso {
    Boot,
    Additions,
    CdFiles,
}

/// [`Attached`], shared by the steps that attach and those that detach.
pub type Shared = Arc<Mutex<Attached>>;

pub(super) fn with<T>(shared: &Shared, f: impl FnOnce(&mut Attached) -> T) -> T {
    let mut guard = shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut guard)
}

/// Run `op`, failing the step with `what` and VBoxManage's error.
async fn run(driver: &dyn Driver, op: &VBoxOp, what: &str) -> Result<String, StepError> {
    driver.run(op).await.map_err(|e| StepError::with(what, e))
}

pub(super) async fn version(driver: &dyn Driver) -> Result<Version, StepError> {
    driver
        .version()
        .await
        .map_err(|e| StepError::with("cannot use VirtualBox", e))
}

fn modify(vm: &str, settings: Vec<Setting>) -> VBoxOp {
    VBoxOp::ModifyVm {
        vm: vm.to_owned(),
        settings,
    }
}

/// The `createvm` and `modifyvm` commands that make the VM `cfg` describes, as Packer sends
/// them (one setting per command, mostly).
pub fn create_vm_ops(cfg: &VirtualBoxIsoConfig, vm: &str) -> Vec<VBoxOp> {
    let m = |s: Setting| modify(vm, vec![s]);
    let mut ops = vec![
        VBoxOp::CreateVm {
            name: vm.to_owned(),
            os_type: cfg.guest_os_type.clone(),
        },
        m(Setting::BootOrderDiskFirst),
        m(Setting::Cpus(cfg.cpus)),
    ];
    if cfg.cpus > 1 {
        ops.push(m(Setting::IoApic(true)));
    }
    ops.push(m(Setting::Memory(cfg.memory)));
    let usb = cfg.usb_controller.to_ascii_lowercase();
    if cfg.usb && usb != "none" {
        ops.push(m(Setting::Usb(true)));
        ops.push(m(Setting::UsbControllers {
            ohci: false,
            ehci: false,
            xhci: false,
        }));
        if ["ohci", "ehci", "xhci"].contains(&usb.as_str()) {
            ops.push(m(Setting::UsbController(usb)));
        }
    } else {
        ops.push(m(Setting::Usb(false)));
    }
    if cfg.audio_controller.eq_ignore_ascii_case("none") {
        ops.push(m(Setting::AudioOff));
    } else {
        ops.push(m(Setting::Audio {
            driver: cfg.sound.clone(),
            controller: cfg.audio_controller.clone(),
        }));
    }
    ops.push(m(Setting::Mouse(cfg.mouse.to_ascii_lowercase())));
    ops.push(m(Setting::Keyboard(cfg.keyboard.to_ascii_lowercase())));
    ops.push(m(Setting::Chipset(cfg.chipset.clone())));
    ops.push(m(Setting::Firmware(cfg.firmware.clone())));
    ops.push(m(Setting::NicTypes(cfg.nic_type.clone())));
    ops.push(m(Setting::Graphics {
        controller: cfg.gfx_controller(),
        vram: cfg.gfx_vram(),
    }));
    ops.push(m(Setting::RtcUseUtc(cfg.rtc_time_base == "UTC")));
    if let Some(n) = cfg.nested_virt {
        ops.push(m(Setting::NestedHwVirt(n)));
    }
    ops.push(m(Setting::Accelerate3d(cfg.gfx_accelerate_3d)));
    if let Some(r) = &cfg.gfx_efi_resolution {
        ops.push(VBoxOp::SetExtraData {
            vm: vm.to_owned(),
            key: "VBoxInternal2/EfiGraphicsResolution".into(),
            value: r.clone(),
        });
    }
    ops
}

/// Create and register the VM; cleanup unregisters and deletes it (with its disks), unless
/// `keep_registered` and the build succeeded.
pub struct CreateVm {
    cfg: Arc<VirtualBoxIsoConfig>,
    driver: Arc<dyn Driver>,
    /// Set once `createvm` succeeded: there is a VM to delete.
    created: Option<String>,
}

impl CreateVm {
    /// The step for `cfg`.
    pub fn new(cfg: Arc<VirtualBoxIsoConfig>, driver: Arc<dyn Driver>) -> Self {
        Self {
            cfg,
            driver,
            created: None,
        }
    }
}

#[async_trait]
impl Step for CreateVm {
    fn name(&self) -> &'static str {
        "create VM"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let vm = ctx.require_vm_name()?.to_owned();
        ctx.ui.say("Creating virtual machine...");
        for op in create_vm_ops(&self.cfg, &vm) {
            run(self.driver.as_ref(), &op, "cannot create the VM").await?;
            self.created.get_or_insert_with(|| vm.clone());
        }
        ctx.facts.cpus = Some(self.cfg.cpus);
        ctx.facts.memory_mib = Some(u64::from(self.cfg.memory));
        ctx.facts.firmware = Some(if self.cfg.firmware.starts_with("efi") {
            Firmware::Efi
        } else {
            Firmware::Bios
        });
        Ok(())
    }

    async fn cleanup(&mut self, ctx: &mut BuildContext) -> Result<(), CleanupError> {
        let Some(vm) = self.created.take() else {
            return Ok(());
        };
        delete_vm(
            self.driver.as_ref(),
            ctx,
            &vm,
            self.cfg.common.keep_registered,
        )
        .await
    }
}

/// Unregister and delete the VM `vm` this build made (created or imported), unless
/// `keep_registered` and the build succeeded.
pub(super) async fn delete_vm(
    driver: &dyn Driver,
    ctx: &mut BuildContext,
    vm: &str,
    keep_registered: bool,
) -> Result<(), CleanupError> {
    let succeeded = !ctx.build_failed && !ctx.cancel.is_cancelled();
    if keep_registered && succeeded {
        ctx.ui
            .say("Keeping the VM registered with VirtualBox (keep_registered = true)");
        return Ok(());
    }
    ctx.ui.say("Unregistering and deleting the VM...");
    driver
        .run(&VBoxOp::UnregisterDelete { vm: vm.to_owned() })
        .await
        .map(drop)
        .map_err(|e| {
            CleanupError::new(
                format!("cannot delete the VM {vm:?}\nhint: remove it with `VBoxManage unregistervm {vm} --delete`"),
                e,
            )
        })
}

/// Where `hard_drive_interface` attaches disks: the controller's name.
fn disk_controller(interface: &str) -> &'static str {
    match interface {
        "sata" => "SATA",
        "scsi" => "SCSI",
        "virtio" => "VirtioSCSI",
        "pcie" => "NVMe",
        _ => "IDE",
    }
}

/// Create the disks (VDI) in the output directory, the storage controllers, and attach the
/// disks. The disks go with the VM when cleanup deletes it.
pub struct CreateDisk {
    cfg: Arc<VirtualBoxIsoConfig>,
    driver: Arc<dyn Driver>,
}

impl CreateDisk {
    /// The step for `cfg`.
    pub fn new(cfg: Arc<VirtualBoxIsoConfig>, driver: Arc<dyn Driver>) -> Self {
        Self { cfg, driver }
    }
}

/// The disks' paths and sizes (MiB): `<vm>.vdi` alone, or `<vm>-0.vdi`, `<vm>-1.vdi`… with
/// additional disks, as Packer names them.
fn disks(cfg: &VirtualBoxIsoConfig, ctx: &BuildContext) -> Result<Vec<(PathBuf, u64)>, StepError> {
    let dir = ctx.require_output_dir()?;
    let vm = ctx.require_vm_name()?;
    if cfg.disk_additional_size.is_empty() {
        return Ok(vec![(dir.join(format!("{vm}.vdi")), cfg.disk_size)]);
    }
    Ok(std::iter::once(cfg.disk_size)
        .chain(cfg.disk_additional_size.iter().copied())
        .enumerate()
        .map(|(i, size)| (dir.join(format!("{vm}-{i}.vdi")), size))
        .collect())
}

#[async_trait]
impl Step for CreateDisk {
    fn name(&self) -> &'static str {
        "create disk"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let cfg = &self.cfg;
        let d = self.driver.as_ref();
        let vm = ctx.require_vm_name()?.to_owned();
        let disks = disks(cfg, ctx)?;
        for (path, mib) in &disks {
            ctx.ui.say(&format!(
                "Creating hard drive {} with size {mib} MiB...",
                path.display()
            ));
            let op = VBoxOp::CreateDisk {
                path: path.clone(),
                mib: *mib,
            };
            run(d, &op, "cannot create the hard drive").await?;
        }
        let hdi = cfg.hard_drive_interface.as_str();
        let add = |name: &str, bus, chipset: Option<&str>, ports| VBoxOp::AddController {
            vm: vm.clone(),
            name: name.to_owned(),
            bus,
            chipset: chipset.map(str::to_owned),
            ports,
        };
        // The IDE controller is always there: VirtualBox delivers the guest additions on it
        // even when the disks are elsewhere.
        let mut controllers = vec![add("IDE", Bus::Ide, None, None)];
        if cfg.uses_bus("sata") {
            controllers.push(add(
                "SATA",
                Bus::Sata,
                None,
                Some(cfg.sata_port_count.max(1)),
            ));
        }
        if cfg.uses_bus("virtio") {
            controllers.push(add("VirtioSCSI", Bus::VirtIo, Some("VirtIO"), None));
        }
        match hdi {
            "scsi" => controllers.push(add("SCSI", Bus::Scsi, Some("LSILogic"), None)),
            "pcie" => controllers.push(add(
                "NVMe",
                Bus::Pcie,
                Some("NVMe"),
                Some(cfg.nvme_port_count.max(1)),
            )),
            _ => {}
        }
        for op in &controllers {
            run(d, op, "cannot create the disk controller").await?;
        }
        let controller = disk_controller(hdi);
        for (port, (path, _)) in (0u32..).zip(&disks) {
            let op = VBoxOp::Attach {
                vm: vm.clone(),
                controller: controller.into(),
                port,
                device: 0,
                kind: Some(DeviceType::Hdd),
                medium: Some(path.clone()),
                disk_flags: Some((cfg.hard_drive_nonrotational, cfg.hard_drive_discard)),
            };
            run(d, &op, "cannot attach the hard drive").await?;
        }
        ctx.facts.disk_name = Some(vm);
        ctx.facts.disk_format = Some("vdi".into());
        ctx.facts.disk_size_mib = Some(cfg.disk_size);
        Ok(())
    }
}

/// Attach the boot ISO (`ctx.iso_path`, `virtualbox-iso` only), the guest additions ISO with
/// `guest_additions_mode = "attach"`, and the `cd_files` ISO (`ctx.cd_path`) as DVDs, where
/// Packer puts them for `iso_interface` and `guest_additions_interface`; cleanup empties the
/// drives still holding one.
pub struct AttachIsos {
    cfg: Arc<VirtualBoxCommon>,
    /// `iso_interface` when there is a boot ISO to attach; the builders that start from a VM
    /// have none, and their ISOs go on IDE unless `guest_additions_interface` says otherwise.
    boot_interface: Option<String>,
    driver: Arc<dyn Driver>,
    shared: Shared,
}

impl AttachIsos {
    /// The step for `cfg`, attaching the boot ISO on `boot_interface` if given, recording what
    /// it attaches in `shared`.
    pub fn new(
        cfg: Arc<VirtualBoxCommon>,
        boot_interface: Option<String>,
        driver: Arc<dyn Driver>,
        shared: Shared,
    ) -> Self {
        Self {
            cfg,
            boot_interface,
            driver,
            shared,
        }
    }
}

/// `(controller, port, device)` of each ISO for its interface (`iso_interface`, or
/// `guest_additions_interface` for the additions).
fn iso_slot(iso: Iso, interface: &str) -> (&'static str, u32, u32) {
    let (ide, other_port) = match iso {
        Iso::Boot => ((0, 1), 13),
        Iso::Additions => ((1, 0), 14),
        Iso::CdFiles => ((1, 1), 15),
    };
    match interface {
        "sata" => ("SATA", other_port, 0),
        "virtio" => ("VirtioSCSI", other_port, 0),
        _ => ("IDE", ide.0, ide.1),
    }
}

#[async_trait]
impl Step for AttachIsos {
    fn name(&self) -> &'static str {
        "attach ISOs"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let vm = ctx.require_vm_name()?.to_owned();
        let mut isos = Vec::new();
        if self.boot_interface.is_some() {
            isos.push((Iso::Boot, ctx.require_iso()?.to_owned()));
        }
        if self.cfg.guest_additions_mode == "attach" {
            let additions =
                with(&self.shared, |a| a.additions.clone()).ok_or(StepError::MissingState {
                    key: "the guest additions ISO",
                    producer: "download guest additions",
                })?;
            isos.push((Iso::Additions, additions));
        }
        if let Some(cd) = &ctx.cd_path {
            isos.push((Iso::CdFiles, cd.clone()));
        }
        ctx.ui.say("Mounting ISOs...");
        for (iso, path) in isos {
            // VirtualBox registers the medium by path; a symlink (a download cache entry) would
            // be registered as the link, which later moves.
            let path = std::fs::canonicalize(&path).map_err(|e| {
                StepError::with(format!("cannot resolve the ISO {}", path.display()), e)
            })?;
            let iso_interface = self.boot_interface.as_deref().unwrap_or("ide");
            let interface = match iso {
                Iso::Additions => self.cfg.guest_additions_interface_or(iso_interface),
                Iso::Boot | Iso::CdFiles => iso_interface,
            };
            let (controller, port, device) = iso_slot(iso, interface);
            let attach = |medium| VBoxOp::Attach {
                vm: vm.clone(),
                controller: controller.into(),
                port,
                device,
                kind: Some(DeviceType::Dvd),
                medium,
                disk_flags: None,
            };
            run(
                self.driver.as_ref(),
                &attach(Some(path)),
                "cannot attach the ISO",
            )
            .await?;
            with(&self.shared, |a| a.isos.push((iso, attach(None))));
        }
        Ok(())
    }

    async fn cleanup(&mut self, _ctx: &mut BuildContext) -> Result<(), CleanupError> {
        let left = with(&self.shared, |a| std::mem::take(&mut a.isos));
        let mut result = Ok(());
        for (_, op) in left {
            if let Err(e) = self.driver.run(&op).await {
                result = Err(CleanupError::new("cannot detach an ISO from the VM", e));
            }
        }
        result
    }
}

/// Turn on VirtualBox's remote display (VRDE) on a free port of `vrdp_port_min`..`max`, as
/// Packer does, so a headless build's screen can be watched with an RDP client.
pub struct ConfigureVrde {
    cfg: Arc<VirtualBoxCommon>,
    driver: Arc<dyn Driver>,
    port: Option<u16>,
}

impl ConfigureVrde {
    /// The step for `cfg`.
    pub fn new(cfg: Arc<VirtualBoxCommon>, driver: Arc<dyn Driver>) -> Self {
        Self {
            cfg,
            driver,
            port: None,
        }
    }
}

#[async_trait]
impl Step for ConfigureVrde {
    fn name(&self) -> &'static str {
        "configure VRDE"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let vm = ctx.require_vm_name()?.to_owned();
        let c = &self.cfg;
        let (bind, min, max) = (&c.vrdp_bind_address, c.vrdp_port_min, c.vrdp_port_max);
        let port = ports::free_port(bind, min, max).ok_or_else(|| {
            StepError::msg(format!(
                "no free VRDP port on {bind} between {min} and {max}\nhint: widen vrdp_port_min/vrdp_port_max"
            ))
        })?;
        self.port = Some(port);
        let op = modify(
            &vm,
            vec![Setting::Vrde {
                address: bind.clone(),
                port,
            }],
        );
        run(self.driver.as_ref(), &op, "cannot enable VRDP").await?;
        if c.headless {
            ctx.ui.message(&format!(
                "The VM runs headless; watch its screen with an RDP client (no password) at rdp://{bind}:{port}"
            ));
        }
        Ok(())
    }

    async fn cleanup(&mut self, _ctx: &mut BuildContext) -> Result<(), CleanupError> {
        if let Some(p) = self.port.take() {
            ports::release(p);
        }
        Ok(())
    }
}

/// Attach the floppy made from `floppy_*` (`ctx.floppy_path`) on a new floppy controller;
/// cleanup empties the drive unless [`RemoveDevices`] did.
pub struct AttachFloppy {
    driver: Arc<dyn Driver>,
    shared: Shared,
    vm: Option<String>,
}

impl AttachFloppy {
    /// The step, recording the attached floppy in `shared`.
    pub fn new(driver: Arc<dyn Driver>, shared: Shared) -> Self {
        Self {
            driver,
            shared,
            vm: None,
        }
    }
}

fn empty_floppy(vm: &str) -> VBoxOp {
    VBoxOp::Attach {
        vm: vm.to_owned(),
        controller: "Floppy".into(),
        port: 0,
        device: 0,
        kind: None,
        medium: None,
        disk_flags: None,
    }
}

#[async_trait]
impl Step for AttachFloppy {
    fn name(&self) -> &'static str {
        "attach floppy"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let Some(floppy) = ctx.floppy_path.clone() else {
            return Ok(());
        };
        let vm = ctx.require_vm_name()?.to_owned();
        let d = self.driver.as_ref();
        ctx.ui.say("Attaching floppy disk...");
        let controller = VBoxOp::AddController {
            vm: vm.clone(),
            name: "Floppy".into(),
            bus: Bus::Floppy,
            chipset: None,
            ports: None,
        };
        run(d, &controller, "cannot create the floppy controller").await?;
        let attach = VBoxOp::Attach {
            vm: vm.clone(),
            controller: "Floppy".into(),
            port: 0,
            device: 0,
            kind: Some(DeviceType::Floppy),
            medium: Some(floppy),
            disk_flags: None,
        };
        run(d, &attach, "cannot attach the floppy").await?;
        with(&self.shared, |a| a.floppy = true);
        self.vm = Some(vm);
        Ok(())
    }

    async fn cleanup(&mut self, _ctx: &mut BuildContext) -> Result<(), CleanupError> {
        let Some(vm) = self.vm.take() else {
            return Ok(());
        };
        if !with(&self.shared, |a| std::mem::take(&mut a.floppy)) {
            return Ok(());
        }
        self.driver
            .run(&empty_floppy(&vm))
            .await
            .map(drop)
            .map_err(|e| CleanupError::new("cannot detach the floppy from the VM", e))
    }
}

/// Forward a host port (`ctx.ssh_host_port`, picked by the ports step) to the guest's SSH or
/// WinRM port on the first NIC, switched to NAT. Only the export removes the rule (Packer's
/// step_export.go): there is no cleanup, since a failed build deletes the VM with its rules and
/// a kept VM that was not exported keeps its rule, as under Packer. With `skip_nat_mapping` (or
/// no communicator) nothing is forwarded.
pub struct PortForward {
    cfg: Arc<VirtualBoxCommon>,
    comm: CommConfig,
    driver: Arc<dyn Driver>,
    shared: Shared,
}

impl PortForward {
    /// The step for `cfg` and the communicator `comm`, recording the rule in `shared`.
    pub fn new(
        cfg: Arc<VirtualBoxCommon>,
        comm: CommConfig,
        driver: Arc<dyn Driver>,
        shared: Shared,
    ) -> Self {
        Self {
            cfg,
            comm,
            driver,
            shared,
        }
    }

    fn guest_port(&self) -> u16 {
        let comm = &self.comm;
        if comm.communicator == "winrm" {
            comm.winrm_port()
        } else {
            comm.ssh_port
        }
    }
}

fn delete_rule(vm: &str) -> VBoxOp {
    modify(vm, vec![Setting::NatPfDelete(NAT_RULE.into())])
}

#[async_trait]
impl Step for PortForward {
    fn name(&self) -> &'static str {
        "forward port"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        if self.comm.communicator == "none" {
            return Ok(());
        }
        let guest = self.guest_port();
        if self.cfg.skip_nat_mapping() {
            let host = self
                .comm
                .ssh_host
                .clone()
                .unwrap_or_else(|| "127.0.0.1".into());
            ctx.ssh_address = Some((host, guest));
            return Ok(());
        }
        let vm = ctx.require_vm_name()?.to_owned();
        let host_port = ctx.ssh_host_port.ok_or(StepError::MissingState {
            key: "the forwarded host port",
            producer: "pick ports",
        })?;
        let d = self.driver.as_ref();
        run(
            d,
            &modify(&vm, vec![Setting::Nic1Nat]),
            "cannot configure the NAT interface",
        )
        .await?;
        if version(d).await? >= Version::V7_0 {
            run(
                d,
                &modify(&vm, vec![Setting::NatLocalhostReachable]),
                "cannot let the NAT interface reach the host's local network",
            )
            .await?;
        }
        ctx.ui.say(&format!(
            "Creating forwarded port mapping for communicator (SSH, WinRM, etc) (host port {host_port})"
        ));
        let rule = format!("{NAT_RULE},tcp,127.0.0.1,{host_port},,{guest}");
        let add = modify(&vm, vec![Setting::NatPfAdd(rule)]);
        match d.run(&add).await {
            Ok(_) => {}
            // A rule left by an earlier build of a kept VM: replace it, once, as Packer does.
            Err(VBoxError::Failed { stderr, .. })
                if stderr.contains("A NAT rule of this name already exists") =>
            {
                run(d, &delete_rule(&vm), "cannot delete the old NAT rule").await?;
                run(d, &add, "cannot create the port forwarding rule").await?;
            }
            Err(e) => return Err(StepError::with("cannot create the port forwarding rule", e)),
        }
        with(&self.shared, |a| a.nat_rule = true);
        ctx.ssh_address = Some(("127.0.0.1".into(), host_port));
        Ok(())
    }
}

/// Run the template's `vboxmanage` (before start) or `vboxmanage_post` (after shutdown)
/// commands, each argument rendered with the build's template values (`{{ .Name }}`…).
pub struct RunVBoxManage {
    commands: Vec<Vec<String>>,
    driver: Arc<dyn Driver>,
    option: &'static str,
}

impl RunVBoxManage {
    /// The step running `commands`, from the option named `option`.
    pub fn new(commands: Vec<Vec<String>>, driver: Arc<dyn Driver>, option: &'static str) -> Self {
        Self {
            commands,
            driver,
            option,
        }
    }
}

#[async_trait]
impl Step for RunVBoxManage {
    fn name(&self) -> &'static str {
        if self.option == "vboxmanage" {
            "vboxmanage"
        } else {
            "vboxmanage_post"
        }
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        if self.commands.is_empty() {
            return Ok(());
        }
        ctx.ui.say("Executing custom VBoxManage commands...");
        let values = ctx.template_values();
        for command in &self.commands {
            let args = command
                .iter()
                .map(|a| boot_commands::render(a, &values))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StepError::with(format!("cannot render {}", self.option), e))?;
            ctx.ui.message(&format!("Executing: {}", args.join(" ")));
            run(
                self.driver.as_ref(),
                &VBoxOp::Raw(args),
                &format!("a {} command failed", self.option),
            )
            .await?;
        }
        Ok(())
    }
}

/// Start the VM and hand it to the shared steps; cleanup powers it off if it still runs.
pub struct StartVm {
    cfg: Arc<VirtualBoxCommon>,
    driver: Arc<dyn Driver>,
}

impl StartVm {
    /// The step for `cfg`.
    pub fn new(cfg: Arc<VirtualBoxCommon>, driver: Arc<dyn Driver>) -> Self {
        Self { cfg, driver }
    }
}

#[async_trait]
impl Step for StartVm {
    fn name(&self) -> &'static str {
        "start VM"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let vm = ctx.require_vm_name()?.to_owned();
        ctx.ui.say("Starting the virtual machine...");
        let op = VBoxOp::StartVm {
            vm: vm.clone(),
            headless: self.cfg.headless,
        };
        run(self.driver.as_ref(), &op, "cannot start the VM").await?;
        ctx.machine = Some(Arc::new(VBoxMachine::new(self.driver.clone(), &vm)));
        ctx.generated.insert("ID".into(), vm);
        Ok(())
    }

    async fn cleanup(&mut self, ctx: &mut BuildContext) -> Result<(), CleanupError> {
        if let Some(m) = ctx.machine.take() {
            if m.exited().is_none() {
                ctx.ui.say("Stopping the VM");
            }
            m.kill().await;
        }
        Ok(())
    }
}

/// After shutdown, empty the floppy drive (and remove its controller) and the DVD drives,
/// except the boot ISO with `bundle_iso`, so the export carries no host paths.
pub struct RemoveDevices {
    bundle_iso: bool,
    driver: Arc<dyn Driver>,
    shared: Shared,
}

impl RemoveDevices {
    /// The step detaching what `shared` says is attached, but the boot ISO with `bundle_iso`.
    pub fn new(bundle_iso: bool, driver: Arc<dyn Driver>, shared: Shared) -> Self {
        Self {
            bundle_iso,
            driver,
            shared,
        }
    }
}

#[async_trait]
impl Step for RemoveDevices {
    fn name(&self) -> &'static str {
        "remove devices"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let vm = ctx.require_vm_name()?.to_owned();
        let d = self.driver.as_ref();
        if with(&self.shared, |a| a.floppy) {
            ctx.ui.message("Removing floppy drive...");
            run(d, &empty_floppy(&vm), "cannot remove the floppy").await?;
            with(&self.shared, |a| a.floppy = false);
            let remove = VBoxOp::RemoveController {
                vm: vm.clone(),
                name: "Floppy".into(),
            };
            run(d, &remove, "cannot remove the floppy controller").await?;
        }
        let isos = with(&self.shared, |a| a.isos.clone());
        for (iso, op) in isos {
            if iso == Iso::Boot && self.bundle_iso {
                continue;
            }
            run(d, &op, "cannot detach the ISO").await?;
            with(&self.shared, |a| a.isos.retain(|(i, _)| *i != iso));
        }
        // With bundle_iso the boot ISO stays in the exported VM, and so after cleanup too.
        with(&self.shared, |a| a.isos.clear());
        Ok(())
    }
}

/// Remove the communicator's NAT rule and export the VM to `<output_filename>.<format>` in the
/// output directory (unless `skip_export`), then hand over the output directory's files as the
/// artifact.
pub struct Export {
    cfg: Arc<VirtualBoxCommon>,
    driver: Arc<dyn Driver>,
    shared: Shared,
    source_name: String,
    source_type: String,
}

impl Export {
    /// The step for `cfg`, building the artifact of source `source_type.source_name`.
    pub fn new(
        cfg: Arc<VirtualBoxCommon>,
        driver: Arc<dyn Driver>,
        shared: Shared,
        source_type: &str,
        source_name: &str,
    ) -> Self {
        Self {
            cfg,
            driver,
            shared,
            source_name: source_name.to_owned(),
            source_type: source_type.to_owned(),
        }
    }
}

#[async_trait]
impl Step for Export {
    fn name(&self) -> &'static str {
        "export"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let cfg = &self.cfg;
        let vm = ctx.require_vm_name()?.to_owned();
        let d = self.driver.as_ref();
        if cfg.skip_export {
            ctx.ui.say("Skipping export of virtual machine...");
            // virtualbox-vm makes no output directory when it does not export, as Packer.
            let dir = ctx.output_dir.clone();
            return self.finish(ctx, dir);
        }
        let out_dir = ctx.require_output_dir()?.to_owned();
        ctx.ui.say("Preparing to export machine...");
        if with(&self.shared, |a| a.nat_rule) {
            ctx.ui
                .message("Deleting forwarded port mapping for the communicator (SSH, WinRM, etc)");
            run(
                d,
                &delete_rule(&vm),
                "cannot delete the port forwarding rule",
            )
            .await?;
            with(&self.shared, |a| a.nat_rule = false);
        }
        let name = cfg.output_filename.clone().unwrap_or_else(|| vm.clone());
        let op = VBoxOp::Export {
            vm: vm.clone(),
            output: out_dir.join(format!("{name}.{}", cfg.format)),
            opts: cfg.export_opts.clone(),
        };
        ctx.ui.say("Exporting virtual machine...");
        run(d, &op, "cannot export the VM").await?;
        self.finish(ctx, Some(out_dir))
    }
}

impl Export {
    /// Hand over the files of `out_dir` (none without one) as the build's artifact.
    fn finish(&self, ctx: &mut BuildContext, out_dir: Option<PathBuf>) -> Result<(), StepError> {
        let mut files: Vec<PathBuf> = match &out_dir {
            Some(dir) => std::fs::read_dir(dir)
                .and_then(|entries| entries.map(|e| e.map(|e| e.path())).collect())
                .map_err(|e| StepError::with(format!("cannot list {}", dir.display()), e))?,
            None => Vec::new(),
        };
        files.retain(|p| p.is_file());
        if !self.cfg.keep_registered {
            // The disks `CreateDisk` made here go with `unregistervm --delete` at clean-up:
            // Packer lists the output directory after it, so they are not part of the artifact.
            files.retain(|p| p.extension().is_none_or(|x| x != "vdi"));
        }
        files.sort();
        let description = match &out_dir {
            Some(dir) => format!("VM files in directory: {}", dir.display()),
            None => "VM registered with VirtualBox (no export)".to_owned(),
        };
        ctx.artifact = Some(Artifact {
            builder_id: BUILDER_ID.into(),
            build_name: self.source_name.clone(),
            builder_type: self.source_type.clone(),
            files,
            id: "VM".into(),
            description,
            facts: ctx.facts.clone(),
        });
        Ok(())
    }
}

/// Upload the VirtualBox version (`7.1.4`) to `virtualbox_version_file` in the guest
/// (`.vbox_version` unless set; an empty name turns it off), where Vagrant box scripts look
/// for it.
pub struct UploadVersion {
    cfg: Arc<VirtualBoxCommon>,
    driver: Arc<dyn Driver>,
}

impl UploadVersion {
    /// The step for `cfg`.
    pub fn new(cfg: Arc<VirtualBoxCommon>, driver: Arc<dyn Driver>) -> Self {
        Self { cfg, driver }
    }
}

#[async_trait]
impl Step for UploadVersion {
    fn name(&self) -> &'static str {
        "upload VirtualBox version"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let path = self.cfg.virtualbox_version_file();
        // No communicator (`communicator = "none"`): nothing to upload to.
        let (false, Some(comm)) = (path.is_empty(), ctx.communicator.clone()) else {
            return Ok(());
        };
        let v = version(self.driver.as_ref()).await?.to_string();
        ctx.ui
            .say(&format!("Uploading VirtualBox version info ({v})"));
        comm.upload(&mut v.as_bytes(), path, 0o644)
            .await
            .map_err(|e| {
                StepError::with(format!("cannot upload the VirtualBox version to {path}"), e)
            })
    }
}

/// The shutdowns the shared step does not do, as Packer's VirtualBox builder does them:
/// `acpi_shutdown` presses the ACPI power button; `disable_shutdown` sends nothing and waits
/// for the guest (or the user) to stop the VM. Either way it waits up to `shutdown_timeout`.
pub struct ShutdownWithoutCommand {
    cfg: Arc<VirtualBoxCommon>,
    timeout: std::time::Duration,
    driver: Arc<dyn Driver>,
}

impl ShutdownWithoutCommand {
    /// The step for `cfg`, waiting up to `timeout` (`shutdown_timeout`).
    pub fn new(
        cfg: Arc<VirtualBoxCommon>,
        timeout: std::time::Duration,
        driver: Arc<dyn Driver>,
    ) -> Self {
        Self {
            cfg,
            timeout,
            driver,
        }
    }
}

#[async_trait]
impl Step for ShutdownWithoutCommand {
    fn name(&self) -> &'static str {
        "shutdown"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let vm = ctx.require_vm_name()?.to_owned();
        let machine = ctx.require_machine()?;
        let hint = if self.cfg.acpi_shutdown {
            ctx.ui
                .say("Shutting down the virtual machine via ACPI power button...");
            let op = VBoxOp::ControlVm {
                vm,
                control: Control::AcpiPowerButton,
            };
            run(self.driver.as_ref(), &op, "cannot stop the VM").await?;
            "check that the guest handles ACPI power button events (acpid)"
        } else {
            ctx.ui
                .say("Automatic shutdown disabled. Please shutdown virtual machine.");
            "with disable_shutdown the guest (or you) must power the VM off"
        };
        ctx.communicator = None;
        let timeout = self.timeout;
        if machine.wait_exit(timeout).await {
            return Ok(());
        }
        machine.kill().await;
        Err(StepError::msg(format!(
            "timed out after {timeout:?} waiting for the VM to shut down (shutdown_timeout)\nhint: {hint}"
        )))
    }
}

/// `post_shutdown_delay`: a pause after the VM stopped, before its devices are removed, for
/// VirtualBox to release the VM's session lock.
pub struct PostShutdownDelay {
    delay: std::time::Duration,
}

impl PostShutdownDelay {
    /// The step pausing `delay`.
    pub fn new(delay: std::time::Duration) -> Self {
        Self { delay }
    }
}

#[async_trait]
impl Step for PostShutdownDelay {
    fn name(&self) -> &'static str {
        "post-shutdown delay"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        if self.delay.is_zero() {
            return Ok(());
        }
        ctx.ui.say(&format!(
            "Waiting {:?} after shutdown (post_shutdown_delay)...",
            self.delay
        ));
        tokio::select! {
            () = tokio::time::sleep(self.delay) => Ok(()),
            () = ctx.cancel.cancelled() => Err(StepError::Cancelled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::virtualbox::driver::testing::FakeDriver;
    use crate::pipeline::context::testing::{self, Setup};
    use std::time::Duration;

    /// A context as the output directory, download and port steps leave it.
    fn setup() -> Setup {
        let mut s = testing::setup();
        let iso = s.dir.path().join("installer.iso");
        std::fs::write(&iso, b"iso").unwrap();
        s.ctx.iso_path = Some(std::fs::canonicalize(iso).unwrap());
        s.ctx.ssh_host_port = Some(2222);
        s
    }

    fn cfg(f: impl FnOnce(&mut VirtualBoxIsoConfig)) -> Arc<VirtualBoxIsoConfig> {
        let mut c = VirtualBoxIsoConfig::default();
        f(&mut c);
        Arc::new(c)
    }

    fn common(f: impl FnOnce(&mut VirtualBoxCommon)) -> Arc<VirtualBoxCommon> {
        let mut c = VirtualBoxCommon::default();
        f(&mut c);
        Arc::new(c)
    }

    /// The ISO step as `virtualbox-iso` has it: a boot ISO on IDE.
    fn isos(c: Arc<VirtualBoxCommon>, d: Arc<FakeDriver>, shared: Shared) -> AttachIsos {
        AttachIsos::new(c, Some("ide".into()), d, shared)
    }

    #[tokio::test]
    async fn create_vm_sends_packers_commands_and_cleanup_deletes_the_vm() {
        let mut s = setup();
        let d = Arc::new(FakeDriver::with_version(Version::V6_1));
        let c = cfg(|c| {
            c.cpus = 2;
            c.usb = true;
            c.usb_controller = "xhci".into();
            c.nested_virt = Some(true);
            c.gfx_efi_resolution = Some("1280x800".into());
        });
        let mut step = CreateVm::new(c, d.clone());
        step.run(&mut s.ctx).await.unwrap();
        assert_eq!(
            d.commands(),
            [
                "createvm --name vm --ostype Other --register",
                "modifyvm vm --boot1 disk --boot2 dvd --boot3 none --boot4 none",
                "modifyvm vm --cpus 2",
                "modifyvm vm --ioapic on",
                "modifyvm vm --memory 512",
                "modifyvm vm --usb on",
                "modifyvm vm --usbohci off --usbehci off --usbxhci off",
                "modifyvm vm --usbxhci on",
                "modifyvm vm --audio none --audiocontroller ac97",
                "modifyvm vm --mouse ps2",
                "modifyvm vm --keyboard ps2",
                "modifyvm vm --chipset piix3",
                "modifyvm vm --firmware bios",
                "modifyvm vm --nictype1 82540EM --nictype2 82540EM --nictype3 82540EM --nictype4 82540EM --nictype5 82540EM --nictype6 82540EM --nictype7 82540EM --nictype8 82540EM",
                "modifyvm vm --graphicscontroller vboxsvga --vram 4",
                "modifyvm vm --rtcuseutc off",
                "modifyvm vm --nested-hw-virt on",
                "modifyvm vm --accelerate3d off",
                "setextradata vm VBoxInternal2/EfiGraphicsResolution 1280x800",
            ]
        );
        assert_eq!(s.ctx.facts.cpus, Some(2));
        step.cleanup(&mut s.ctx).await.unwrap();
        assert_eq!(d.commands().last().unwrap(), "unregistervm vm --delete");
    }

    #[tokio::test]
    async fn create_vm_keeps_a_registered_vm_only_after_a_successful_build() {
        let mut s = setup();
        let d = Arc::new(FakeDriver::default());
        let c = cfg(|c| c.common.keep_registered = true);
        let mut step = CreateVm::new(c.clone(), d.clone());
        step.run(&mut s.ctx).await.unwrap();
        step.cleanup(&mut s.ctx).await.unwrap();
        assert!(!d.commands().iter().any(|c| c.starts_with("unregistervm")));
        let d = Arc::new(FakeDriver::default());
        let mut step = CreateVm::new(c, d.clone());
        step.run(&mut s.ctx).await.unwrap();
        s.ctx.build_failed = true;
        step.cleanup(&mut s.ctx).await.unwrap();
        assert_eq!(d.commands().last().unwrap(), "unregistervm vm --delete");
    }

    #[tokio::test]
    async fn create_vm_failure_still_deletes_a_created_vm_but_not_an_uncreated_one() {
        let mut s = setup();
        let d = Arc::new(FakeDriver::default());
        d.fail_on("--memory", "VBoxManage: error: Invalid memory size");
        let mut step = CreateVm::new(cfg(|_| {}), d.clone());
        let e = step.run(&mut s.ctx).await.unwrap_err().report();
        assert!(
            e.contains("cannot create the VM") && e.contains("Invalid memory size"),
            "{e}"
        );
        step.cleanup(&mut s.ctx).await.unwrap();
        assert_eq!(d.commands().last().unwrap(), "unregistervm vm --delete");

        let d = Arc::new(FakeDriver::default());
        d.fail_on(
            "createvm",
            "VBoxManage: error: Machine settings file exists",
        );
        let mut step = CreateVm::new(cfg(|_| {}), d.clone());
        step.run(&mut s.ctx).await.unwrap_err();
        step.cleanup(&mut s.ctx).await.unwrap();
        assert_eq!(
            d.commands().len(),
            1,
            "nothing to delete: {:?}",
            d.commands()
        );
    }

    #[tokio::test]
    async fn create_vm_cleanup_reports_a_vm_it_cannot_delete() {
        let mut s = setup();
        let d = Arc::new(FakeDriver::default());
        let mut step = CreateVm::new(cfg(|_| {}), d.clone());
        step.run(&mut s.ctx).await.unwrap();
        d.fail_on(
            "unregistervm",
            "VBoxManage: error: Cannot unregister the machine 'vm' while it is locked",
        );
        let e = step.cleanup(&mut s.ctx).await.unwrap_err();
        let text = crate::report::chain(&e);
        assert!(
            text.contains("cannot delete the VM") && text.contains("locked"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn create_disk_makes_the_disks_controllers_and_attachments() {
        let mut s = setup();
        let d = Arc::new(FakeDriver::default());
        let c = cfg(|c| {
            c.disk_size = 2048;
            c.disk_additional_size = vec![1024];
            c.hard_drive_interface = "pcie".into();
            c.iso_interface = "sata".into();
            c.nvme_port_count = 2;
            c.hard_drive_discard = true;
        });
        CreateDisk::new(c, d.clone()).run(&mut s.ctx).await.unwrap();
        let o = s.out.display();
        assert_eq!(
            d.commands(),
            [
                format!("createhd --filename {o}/vm-0.vdi --size 2048 --format VDI --variant Standard"),
                format!("createhd --filename {o}/vm-1.vdi --size 1024 --format VDI --variant Standard"),
                "storagectl vm --name IDE --add ide".into(),
                "storagectl vm --name SATA --add sata --portcount 1".into(),
                "storagectl vm --name NVMe --add pcie --controller NVMe --portcount 2".into(),
                format!("storageattach vm --storagectl NVMe --port 0 --device 0 --type hdd --medium {o}/vm-0.vdi --nonrotational off --discard on"),
                format!("storageattach vm --storagectl NVMe --port 1 --device 0 --type hdd --medium {o}/vm-1.vdi --nonrotational off --discard on"),
            ]
        );
        assert_eq!(s.ctx.facts.disk_format.as_deref(), Some("vdi"));
    }

    #[tokio::test]
    async fn attach_isos_and_cleanup_empties_the_drives_left() {
        let mut s = setup();
        let cd = s.out.parent().unwrap().join("cd.iso");
        std::fs::write(&cd, b"cd").unwrap();
        s.ctx.cd_path = Some(cd.clone());
        let d = Arc::new(FakeDriver::default());
        let shared = Shared::default();
        let mut step = isos(common(|_| {}), d.clone(), shared.clone());
        step.run(&mut s.ctx).await.unwrap();
        let iso = s.ctx.iso_path.clone().unwrap();
        let cd = std::fs::canonicalize(cd).unwrap();
        assert_eq!(
            d.commands(),
            [
                format!("storageattach vm --storagectl IDE --port 0 --device 1 --type dvddrive --medium {}", iso.display()),
                format!("storageattach vm --storagectl IDE --port 1 --device 1 --type dvddrive --medium {}", cd.display()),
            ]
        );
        step.cleanup(&mut s.ctx).await.unwrap();
        assert_eq!(
            d.commands()[2..],
            [
                "storageattach vm --storagectl IDE --port 0 --device 1 --type dvddrive --medium none",
                "storageattach vm --storagectl IDE --port 1 --device 1 --type dvddrive --medium none",
            ]
        );
    }

    #[tokio::test]
    async fn attach_isos_reports_a_missing_iso_before_calling_virtualbox() {
        let mut s = setup();
        s.ctx.iso_path = Some(s.out.join("gone.iso"));
        let d = Arc::new(FakeDriver::default());
        let e = isos(common(|_| {}), d.clone(), Shared::default())
            .run(&mut s.ctx)
            .await
            .unwrap_err()
            .report();
        assert!(
            e.contains("cannot resolve the ISO") && e.contains("gone.iso"),
            "{e}"
        );
        assert!(d.calls().is_empty());
    }

    #[tokio::test]
    async fn port_forward_adds_the_rule_replaces_a_stale_one_and_cleanup_leaves_it() {
        let mut s = setup();
        let d = Arc::new(FakeDriver::with_version(Version::V7_0));
        let shared = Shared::default();
        let mut step = PortForward::new(
            common(|_| {}),
            CommConfig::default(),
            d.clone(),
            shared.clone(),
        );
        step.run(&mut s.ctx).await.unwrap();
        assert_eq!(
            d.commands(),
            [
                "modifyvm vm --nic1 nat",
                "modifyvm vm --nat-localhostreachable1 on",
                "modifyvm vm --natpf1 packercomm,tcp,127.0.0.1,2222,,22",
            ]
        );
        assert_eq!(s.ctx.ssh_address, Some(("127.0.0.1".into(), 2222)));
        // Packer deletes the rule only before an export; a failed build deletes the VM.
        step.cleanup(&mut s.ctx).await.unwrap();
        assert_eq!(d.commands().len(), 3, "cleanup sends nothing");

        // 6.1 has no localhostreachable switch; a rule left behind is replaced.
        let d = Arc::new(FakeDriver::with_version(Version::V6_1));
        d.fail_on(
            ",,22",
            "VBoxManage: error: A NAT rule of this name already exists",
        );
        let mut step = PortForward::new(
            common(|_| {}),
            CommConfig::default(),
            d.clone(),
            Shared::default(),
        );
        let e = step.run(&mut s.ctx).await.unwrap_err().report();
        assert_eq!(
            d.commands(),
            [
                "modifyvm vm --nic1 nat",
                "modifyvm vm --natpf1 packercomm,tcp,127.0.0.1,2222,,22",
                "modifyvm vm --natpf1 delete packercomm",
                "modifyvm vm --natpf1 packercomm,tcp,127.0.0.1,2222,,22",
            ]
        );
        assert!(e.contains("already exists"), "the retry fails too: {e}");
        step.cleanup(&mut s.ctx).await.unwrap();
        assert_eq!(d.commands().len(), 4, "no rule to remove");
    }

    #[tokio::test]
    async fn port_forward_is_skipped_without_nat_mapping_or_communicator() {
        let mut s = setup();
        let d = Arc::new(FakeDriver::default());
        let c = common(|c| c.skip_nat_mapping = true);
        let comm = CommConfig {
            ssh_host: Some("192.0.2.7".into()),
            ..CommConfig::default()
        };
        PortForward::new(c, comm, d.clone(), Shared::default())
            .run(&mut s.ctx)
            .await
            .unwrap();
        assert_eq!(s.ctx.ssh_address, Some(("192.0.2.7".into(), 22)));
        let comm = CommConfig {
            communicator: "none".into(),
            ..CommConfig::default()
        };
        PortForward::new(common(|_| {}), comm, d.clone(), Shared::default())
            .run(&mut s.ctx)
            .await
            .unwrap();
        assert!(d.calls().is_empty());
    }

    #[tokio::test]
    async fn vboxmanage_commands_are_rendered_with_the_template_values() {
        let mut s = setup();
        let d = Arc::new(FakeDriver::default());
        let cmds = vec![vec![
            "modifyvm".into(),
            "{{.Name}}".into(),
            "--description".into(),
            "port {{ .SSHHostPort }}".into(),
        ]];
        RunVBoxManage::new(cmds, d.clone(), "vboxmanage")
            .run(&mut s.ctx)
            .await
            .unwrap();
        assert_eq!(d.commands(), ["modifyvm vm --description port 2222"]);
        let bad = vec![vec!["modifyvm".into(), "{{ .Name".into()]];
        let e = RunVBoxManage::new(bad, d.clone(), "vboxmanage_post")
            .run(&mut s.ctx)
            .await
            .unwrap_err()
            .report();
        assert!(e.contains("cannot render vboxmanage_post"), "{e}");
        assert_eq!(d.commands().len(), 1);
    }

    #[tokio::test]
    async fn start_vm_hands_over_the_machine_and_cleanup_powers_it_off() {
        let mut s = setup();
        let d = Arc::new(FakeDriver::default());
        let mut step = StartVm::new(common(|c| c.headless = true), d.clone());
        step.run(&mut s.ctx).await.unwrap();
        assert_eq!(d.commands(), ["startvm vm --type headless"]);
        assert!(s.ctx.machine.is_some());
        assert_eq!(s.ctx.generated["ID"], "vm");
        step.cleanup(&mut s.ctx).await.unwrap();
        assert_eq!(d.commands()[1], "controlvm vm poweroff");
        assert!(s.ctx.machine.is_none());
    }

    #[tokio::test]
    async fn start_vm_failure_leaves_no_machine() {
        let mut s = setup();
        let d = Arc::new(FakeDriver::default());
        d.fail_on(
            "startvm",
            "VBoxManage: error: VT-x is not available (VERR_VMX_NO_VMX)",
        );
        let mut step = StartVm::new(common(|_| {}), d.clone());
        let e = step.run(&mut s.ctx).await.unwrap_err().report();
        assert!(
            e.contains("cannot start the VM") && e.contains("VERR_VMX_NO_VMX"),
            "{e}"
        );
        assert!(s.ctx.machine.is_none());
        step.cleanup(&mut s.ctx).await.unwrap();
        assert_eq!(d.commands(), ["startvm vm --type gui"]);
    }

    #[tokio::test]
    async fn remove_devices_keeps_a_bundled_iso_and_cleanups_then_do_nothing() {
        let mut s = setup();
        s.ctx.floppy_path = Some(s.out.join("floppy.img"));
        let d = Arc::new(FakeDriver::default());
        let shared = Shared::default();
        let mut isos = isos(common(|_| {}), d.clone(), shared.clone());
        let mut floppy = AttachFloppy::new(d.clone(), shared.clone());
        isos.run(&mut s.ctx).await.unwrap();
        floppy.run(&mut s.ctx).await.unwrap();
        let before = d.commands().len();
        RemoveDevices::new(true, d.clone(), shared.clone())
            .run(&mut s.ctx)
            .await
            .unwrap();
        assert_eq!(
            d.commands()[before..],
            [
                "storageattach vm --storagectl Floppy --port 0 --device 0 --medium none",
                "storagectl vm --name Floppy --remove",
            ]
        );
        floppy.cleanup(&mut s.ctx).await.unwrap();
        isos.cleanup(&mut s.ctx).await.unwrap();
        assert_eq!(d.commands().len(), before + 2, "{:?}", d.commands());
    }

    #[tokio::test]
    async fn export_removes_the_rule_exports_and_lists_the_output_files() {
        let mut s = setup();
        std::fs::write(s.out.join("vm.vdi"), b"disk").unwrap();
        let d = Arc::new(FakeDriver::default());
        let shared = Shared::default();
        let mut fwd = PortForward::new(
            common(|_| {}),
            CommConfig::default(),
            d.clone(),
            shared.clone(),
        );
        fwd.run(&mut s.ctx).await.unwrap();
        let before = d.commands().len();
        let c = common(|c| {
            c.format = "ova".into();
            c.output_filename = Some("box".into());
            c.export_opts = vec!["--manifest".into()];
        });
        s.ctx.facts.cpus = Some(2);
        Export::new(c, d.clone(), shared.clone(), "virtualbox-iso", "x")
            .run(&mut s.ctx)
            .await
            .unwrap();
        let o = s.out.display();
        assert_eq!(
            d.commands()[before..],
            [
                "modifyvm vm --natpf1 delete packercomm".to_owned(),
                format!("export vm --output {o}/box.ova --manifest"),
            ]
        );
        fwd.cleanup(&mut s.ctx).await.unwrap();
        assert_eq!(
            d.commands().len(),
            before + 2,
            "the rule is not deleted twice"
        );
        let a = s.ctx.artifact.clone().unwrap();
        assert_eq!(a.builder_id, "mitchellh.virtualbox");
        // vm.vdi goes with `unregistervm --delete` at clean-up: not part of the artifact.
        assert_eq!(a.files, [s.out.join("box.ova")]);
        assert_eq!(a.facts.cpus, Some(2));
    }

    #[tokio::test]
    async fn export_failure_makes_no_artifact_and_skip_export_runs_nothing() {
        let mut s = setup();
        let d = Arc::new(FakeDriver::default());
        d.fail_on("export", "VBoxManage: error: Appliance write failed");
        let e = Export::new(
            common(|_| {}),
            d.clone(),
            Shared::default(),
            "virtualbox-iso",
            "x",
        )
        .run(&mut s.ctx)
        .await
        .unwrap_err()
        .report();
        assert!(
            e.contains("cannot export the VM") && e.contains("Appliance write failed"),
            "{e}"
        );
        assert!(s.ctx.artifact.is_none());
        let d = Arc::new(FakeDriver::default());
        Export::new(
            common(|c| c.skip_export = true),
            d.clone(),
            Shared::default(),
            "virtualbox-iso",
            "x",
        )
        .run(&mut s.ctx)
        .await
        .unwrap();
        assert!(d.calls().is_empty());
        assert!(s.ctx.artifact.is_some());
    }

    #[tokio::test]
    async fn the_virtualbox_version_is_uploaded_unless_the_file_name_is_empty() {
        use crate::communicator::testing::FakeCommunicator;
        let mut s = setup();
        let comm = Arc::new(FakeCommunicator::default());
        s.ctx.communicator = Some(comm.clone());
        let d = Arc::new(FakeDriver::default());
        UploadVersion::new(common(|_| {}), d.clone())
            .run(&mut s.ctx)
            .await
            .unwrap();
        let c = common(|c| c.virtualbox_version_file = Some("/etc/vbox_version".into()));
        UploadVersion::new(c, d.clone())
            .run(&mut s.ctx)
            .await
            .unwrap();
        let c = common(|c| c.virtualbox_version_file = Some(String::new()));
        UploadVersion::new(c, d.clone())
            .run(&mut s.ctx)
            .await
            .unwrap();
        assert_eq!(
            comm.commands(),
            ["upload .vbox_version", "upload /etc/vbox_version"]
        );
        assert!(
            d.calls().is_empty(),
            "the version is asked, not a command run"
        );
    }

    #[tokio::test]
    async fn acpi_shutdown_presses_the_power_button_and_waits() {
        let mut s = setup();
        let d = Arc::new(FakeDriver::default());
        s.ctx.machine = Some(Arc::new(VBoxMachine::new(d.clone(), "vm")));
        d.set_states(&["running", "poweroff"]);
        ShutdownWithoutCommand::new(
            common(|c| c.acpi_shutdown = true),
            Duration::from_secs(300),
            d.clone(),
        )
        .run(&mut s.ctx)
        .await
        .unwrap();
        assert_eq!(d.commands(), ["controlvm vm acpipowerbutton"]);
    }

    #[tokio::test]
    async fn a_vm_that_never_powers_off_is_killed_and_the_timeout_named() {
        let mut s = setup();
        let d = Arc::new(FakeDriver::default());
        s.ctx.machine = Some(Arc::new(VBoxMachine::new(d.clone(), "vm")));
        let c = common(|c| c.disable_shutdown = true);
        let e = ShutdownWithoutCommand::new(c, Duration::from_secs(1), d.clone())
            .run(&mut s.ctx)
            .await
            .unwrap_err()
            .report();
        assert!(
            e.contains("timed out") && e.contains("disable_shutdown"),
            "{e}"
        );
        // Nothing was sent to stop it until the timeout; then it was powered off.
        assert_eq!(d.commands(), ["controlvm vm poweroff"]);
    }
}
