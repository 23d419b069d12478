//! The VMware builders (Packer's builder id `mitchellh.vmware`) for VMware Workstation, Player
//! and Fusion: `vmware-iso` (a new VM installed from an ISO) and `vmware-vmx` (a clone of an
//! existing `.vmx`, full or linked). This module holds only what is VMware's own: the
//! [`driver`] seam over `vmrun`, `vmware-vdiskmanager` and `ovftool` (typed operations rendered
//! to argv), the VM as a [`machine`] (state by `vmrun list`, keyboard over VMware's VNC
//! server), the guest's [`network`] (its MAC, the vmnet DHCP leases) and the [`steps`]
//! (disks, `.vmx` or clone, tools, VNC, start, guest address, compaction, `.vmx` clean-up,
//! snapshot, export). Both builders make the VM's files their
//! own way, then run the same [`run_steps`], in Packer's order, among the shared steps of
//! `builder::steps`. Without `vmware-vdiskmanager`, the driver writes growable disks itself
//! (`artifact::vmdk::create_sparse`) and skips compaction; without `ovftool`, it [`export`]s
//! to OVF/OVA with kiln's own packager. An OVF/OVA `source_path` is imported with `ovftool`
//! only (as Packer does; without it, the build stops saying so).

pub mod driver;
pub mod export;
pub mod machine;
pub mod network;
pub mod steps;

use std::sync::Arc;

use super::steps::boot::TypeBootCommand;
use super::steps::cd::CdFiles;
use super::steps::connect::{ClearAuthorizedKeys, Connect, PublishKey};
use super::steps::output_dir::OutputDir;
use super::steps::ports::{PickPorts, PortRequest, VncRequest};
use super::steps::{download::Download, floppy::CreateFloppy};
use super::steps::{provision::Provision, shutdown::Shutdown};
use super::{RunOptions, SetupError};
use crate::communicator::keys::TemporaryKeyPair;
use crate::config::common::{
    BootConfig, CdConfig, CommConfig, FloppyConfig, HttpConfig, OutputConfig, ShutdownConfig,
};
use crate::config::vmware::{VmwareCommon, VmwareIsoConfig, VmwareVmxConfig};
use crate::pipeline::Step;
use crate::template::PlannedBuild;
use driver::{Driver, HostDriver};

/// Packer's id for artifacts of the VMware builders (the older one; the vagrant
/// post-processor accepts both it and `vmware.desktop`).
pub const BUILDER_ID: &str = "mitchellh.vmware";

// The steps of a `vmware-iso` / `vmware-vmx` build, on the host's VMware tools.
host_source!(
    VmwareIsoConfig,
    |c| HostDriver::locate(c.common.fusion_app_path.as_deref()),
    steps_with
);
host_source!(
    VmwareVmxConfig,
    |c| HostDriver::locate(c.common.fusion_app_path.as_deref()),
    vmx_steps_with
);

/// The host's address on its default route (VMware's bridged networks reach it there), or
/// 127.0.0.1 when it has none: what the guest is told for kiln's HTTP server when the VM's
/// network has no vmnet address of the host (see [`steps::StartHttpServer`]).
pub fn default_route_ip() -> String {
    // Connecting a UDP socket sends nothing; it only makes the kernel choose the source
    // address of the default route.
    std::net::UdpSocket::bind(("0.0.0.0", 0))
        .and_then(|s| s.connect(("192.0.2.1", 9)).map(|()| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "127.0.0.1".to_owned())
}

/// The options of a build that the steps after the VM's files exist read.
struct Run<'a> {
    build: &'a PlannedBuild,
    run: &'a RunOptions,
    http: &'a HttpConfig,
    boot: &'a BootConfig,
    comm: &'a CommConfig,
    shutdown: &'a ShutdownConfig,
    common: Arc<VmwareCommon>,
    driver: Arc<dyn Driver>,
    shared: steps::Shared,
}

/// The steps of a VMware build before the VM's files are made: tools ISO, output directory,
/// the build's SSH key, floppy, `cd_files` CD and the disks (`main_disk` MiB for the main one,
/// when the builder makes it).
fn first_steps(
    r: &Run<'_>,
    output: &OutputConfig,
    floppy: &FloppyConfig,
    cd: &CdConfig,
    key: Option<Arc<TemporaryKeyPair>>,
    main_disk: Option<u64>,
) -> Vec<Box<dyn Step>> {
    let name = &r.build.source_name;
    vec![
        Box::new(steps::PrepareTools::new(
            r.common.clone(),
            r.driver.clone(),
            r.shared.clone(),
        )),
        Box::new(OutputDir::new(
            output.output_directory(name).into(),
            output.vm_name(name),
            r.run.force,
        )),
        Box::new(PublishKey::new(key)),
        Box::new(CreateFloppy::new(floppy.clone())),
        Box::new(CdFiles::new(cd.clone())),
        Box::new(steps::CreateDisks::new(
            r.common.clone(),
            main_disk,
            r.driver.clone(),
            r.shared.clone(),
        )),
    ]
}

/// The steps of a VMware build once its `.vmx` is written, in Packer's order: tools CD-ROM,
/// HTTP server, VNC, start, boot command, guest address, connect, tools upload, provision,
/// shutdown, compaction, `.vmx` clean-up, snapshot, export. With `disable_vnc` there is no
/// VNC server, so no boot command is typed (as Packer skips it).
fn run_steps(
    r: Run<'_>,
    key: Option<Arc<TemporaryKeyPair>>,
) -> Result<Vec<Box<dyn Step>>, SetupError> {
    let c = &r.common;
    let vnc = !r.boot.disable_vnc;
    let ports = PortRequest {
        ssh: None,
        vnc: vnc.then(|| VncRequest {
            bind: c.vnc_bind_address.clone(),
            min: c.vnc_port_min,
            max: c.vnc_port_max,
            password: !c.vnc_disable_password,
            fixed_password: None,
        }),
    };
    let hint = "check the guest's screen (vnc:// address above, or headless = false), that \
                boot_command was typed as the installer expects, that the answer file was \
                served (HTTP lines above), and ssh_username/ssh_password";
    let d = || r.driver.clone();
    let s = || r.shared.clone();
    let mut out: Vec<Box<dyn Step>> = vec![
        Box::new(steps::AttachTools::new(c.clone(), s())),
        Box::new(steps::StartHttpServer::new(r.http.clone(), s())),
        Box::new(PickPorts::new(ports)),
        Box::new(steps::ConfigureVnc::new(s())),
        Box::new(steps::StartVm::new(c.headless, d(), s())),
        Box::new(TypeBootCommand::new(
            r.boot.clone(),
            r.run.boot_transport,
            r.run.key_interval.clone(),
        )),
        Box::new(steps::GuestAddress::new(r.comm.clone(), d(), s())),
        Box::new(Connect::new(r.comm.clone(), key.clone(), hint)),
        Box::new(steps::UploadTools::new(c.clone(), s())),
        Box::new(Provision::new(
            r.build.provisioners.clone(),
            r.build.error_cleanup.clone(),
            &r.build.source_type,
            &r.build.source_name,
        )),
        Box::new(ClearAuthorizedKeys::new(r.comm, key)),
        Box::new(Shutdown::new(r.shutdown.clone())),
        Box::new(steps::CompactDisks::new(c.skip_compaction, d(), s())),
        Box::new(steps::CleanVmx::new(c.clone(), s())),
        Box::new(steps::CreateSnapshot::new(
            c.snapshot_name().map(str::to_owned),
            d(),
            s(),
        )),
        Box::new(steps::Export::new(
            c.clone(),
            d(),
            s(),
            &r.build.source_type,
            &r.build.source_name,
        )),
    ];
    if r.comm.communicator == "none" {
        // Nothing to connect to: the guest installs and powers itself off.
        out.retain(|s| s.name() != "connect" && s.name() != "guest address");
    }
    if !vnc {
        out.retain(|s| s.name() != "configure VNC" && s.name() != "type boot command");
    }
    Ok(out)
}

/// The steps of a `vmware-iso` build of `cfg` on `driver`, in Packer's order.
pub fn steps_with(
    build: &PlannedBuild,
    cfg: VmwareIsoConfig,
    run: &RunOptions,
    driver: Arc<dyn Driver>,
) -> Result<Vec<Box<dyn Step>>, SetupError> {
    let key = TemporaryKeyPair::for_build(&cfg.comm, &format!("kiln_{}", build.source_name))?
        .map(Arc::new);
    let cfg = Arc::new(cfg);
    let r = Run {
        build,
        run,
        http: &cfg.http,
        boot: &cfg.boot,
        comm: &cfg.comm,
        shutdown: &cfg.shutdown,
        common: Arc::new(cfg.common.clone()),
        driver,
        shared: steps::Shared::default(),
    };
    let mut out: Vec<Box<dyn Step>> = vec![Box::new(Download::new(cfg.iso.clone(), "ISO"))];
    out.extend(first_steps(
        &r,
        &cfg.output,
        &cfg.floppy,
        &cfg.cd,
        key.clone(),
        Some(cfg.disk_size),
    ));
    out.push(Box::new(steps::CreateVmx::new(
        cfg.clone(),
        r.shared.clone(),
    )));
    out.extend(run_steps(r, key)?);
    Ok(out)
}

/// The steps of a `vmware-vmx` build of `cfg` on `driver`, in Packer's order.
pub fn vmx_steps_with(
    build: &PlannedBuild,
    cfg: VmwareVmxConfig,
    run: &RunOptions,
    driver: Arc<dyn Driver>,
) -> Result<Vec<Box<dyn Step>>, SetupError> {
    let key = TemporaryKeyPair::for_build(&cfg.comm, &format!("kiln_{}", build.source_name))?
        .map(Arc::new);
    let r = Run {
        build,
        run,
        http: &cfg.http,
        boot: &cfg.boot,
        comm: &cfg.comm,
        shutdown: &cfg.shutdown,
        common: Arc::new(cfg.common.clone()),
        driver,
        shared: steps::Shared::default(),
    };
    let mut out = first_steps(&r, &cfg.output, &cfg.floppy, &cfg.cd, key.clone(), None);
    out.push(Box::new(
        steps::CloneVmx::new(
            r.common.clone(),
            cfg.source_path.clone().unwrap_or_default().into(),
            cfg.linked,
            cfg.attach_snapshot().map(str::to_owned),
            r.driver.clone(),
            r.shared.clone(),
        )
        .with_guest_os(cfg.guest_os_type.clone()),
    ));
    out.extend(run_steps(r, key)?);
    Ok(out)
}
