//! The `vmware-iso` builder (Packer's builder id `mitchellh.vmware`) for VMware Workstation,
//! Player and Fusion. This module holds only what is VMware's own: the [`driver`] seam over
//! `vmrun`, `vmware-vdiskmanager` and `ovftool` (typed operations rendered to argv), the VM as a
//! [`machine`] (state by `vmrun list`, keyboard over VMware's VNC server), the guest's
//! [`network`] (its MAC, the vmnet DHCP leases) and the [`steps`] (disks, `.vmx`, VNC, start,
//! guest address, compaction, `.vmx` clean-up, export); [`steps_with`] puts them among the
//! shared steps of `builder::steps` in Packer's order. Not yet here: `vmware-vmx`, kiln's own
//! VMDK writer when `vmware-vdiskmanager` is missing.

pub mod driver;
pub mod machine;
pub mod network;
pub mod steps;

use std::path::PathBuf;
use std::sync::Arc;

use super::steps::boot::TypeBootCommand;
use super::steps::cd::CdFiles;
use super::steps::connect::{ClearAuthorizedKeys, Connect, PublishKey};
use super::steps::output_dir::OutputDir;
use super::steps::ports::{PickPorts, PortRequest, VncRequest};
use super::steps::{download::Download, floppy::CreateFloppy, http::StartHttpServer};
use super::steps::{provision::Provision, shutdown::Shutdown};
use super::{RunOptions, SetupError};
use crate::communicator::keys::TemporaryKeyPair;
use crate::config::common::HttpConfig;
use crate::config::vmware::VmwareIsoConfig;
use crate::pipeline::Step;
use crate::template::PlannedBuild;
use driver::{Driver, HostDriver};

/// Packer's id for artifacts of the VMware builders (the older one; the vagrant
/// post-processor accepts both it and `vmware.desktop`).
pub const BUILDER_ID: &str = "mitchellh.vmware";

impl super::Source for VmwareIsoConfig {
    /// The steps of a `vmware-iso` build, on the host's VMware tools.
    fn steps(
        self: Box<Self>,
        build: &PlannedBuild,
        run: &RunOptions,
    ) -> Result<Vec<Box<dyn Step>>, SetupError> {
        let driver = HostDriver::locate(self.fusion_app_path.as_deref())?;
        steps_with(build, *self, run, Arc::new(driver))
    }

    fn output_directory(&self, build: &PlannedBuild) -> Option<PathBuf> {
        Some(self.output.output_directory(&build.source_name).into())
    }
}

/// The address the guest reaches kiln's HTTP server at: `http_bind_address` when it names one
/// address, else the host's address on its default route (VMware's NAT and bridged networks
/// reach it). Packer reads the vmnet device's address through `netmap.conf`; kiln does not yet.
pub fn http_ip(http: &HttpConfig) -> String {
    if http.http_bind_address != "0.0.0.0" && !http.http_bind_address.is_empty() {
        return http.http_bind_address.clone();
    }
    // Connecting a UDP socket sends nothing; it only makes the kernel choose the source
    // address of the default route.
    std::net::UdpSocket::bind(("0.0.0.0", 0))
        .and_then(|s| s.connect(("192.0.2.1", 9)).map(|()| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "127.0.0.1".to_owned())
}

/// The steps of a `vmware-iso` build of `cfg` on `driver`, in Packer's order.
pub fn steps_with(
    build: &PlannedBuild,
    cfg: VmwareIsoConfig,
    run: &RunOptions,
    driver: Arc<dyn Driver>,
) -> Result<Vec<Box<dyn Step>>, SetupError> {
    let out_dir = PathBuf::from(cfg.output.output_directory(&build.source_name));
    let vm_name = cfg.output.vm_name(&build.source_name);
    let comm = cfg.comm.clone();
    let key =
        TemporaryKeyPair::for_build(&comm, &format!("kiln_{}", build.source_name))?.map(Arc::new);
    let hint = "check the guest's screen (vnc:// address above, or headless = false), that \
                boot_command was typed as the installer expects, that the answer file was \
                served (HTTP lines above), and ssh_username/ssh_password";
    let ports = PortRequest {
        ssh: None,
        vnc: Some(VncRequest {
            bind: cfg.vnc_bind_address.clone(),
            min: cfg.vnc_port_min,
            max: cfg.vnc_port_max,
            password: !cfg.vnc_disable_password,
        }),
    };
    let http_ip = http_ip(&cfg.http);
    let cfg = Arc::new(cfg);
    let shared = steps::Shared::default();
    let d = || driver.clone();
    let s = || shared.clone();
    let mut out: Vec<Box<dyn Step>> = vec![
        Box::new(Download::new(cfg.iso.clone(), "ISO")),
        Box::new(OutputDir::new(out_dir, vm_name, run.force)),
        Box::new(PublishKey::new(key.clone())),
        Box::new(CreateFloppy::new(cfg.floppy.clone())),
        Box::new(CdFiles::new(cfg.cd.clone())),
        Box::new(steps::CreateDisks::new(cfg.clone(), d(), s())),
        Box::new(steps::CreateVmx::new(cfg.clone(), s())),
        Box::new(StartHttpServer::new(cfg.http.clone(), &http_ip)),
        Box::new(PickPorts::new(ports)),
        Box::new(steps::ConfigureVnc::new(s())),
        Box::new(steps::StartVm::new(cfg.headless, d(), s())),
        Box::new(TypeBootCommand::new(
            cfg.boot.clone(),
            run.boot_transport,
            run.key_interval.clone(),
        )),
        Box::new(steps::GuestAddress::new(comm.clone(), d(), s())),
        Box::new(Connect::new(comm.clone(), key.clone(), hint)),
        Box::new(Provision::new(
            build.provisioners.clone(),
            build.error_cleanup.clone(),
            &build.source_type,
            &build.source_name,
        )),
        Box::new(ClearAuthorizedKeys::new(&comm, key)),
        Box::new(Shutdown::new(cfg.shutdown.clone())),
        Box::new(steps::CompactDisks::new(cfg.skip_compaction, d(), s())),
        Box::new(steps::CleanVmx::new(cfg.clone(), s())),
        Box::new(steps::Export::new(
            cfg.clone(),
            d(),
            s(),
            &build.source_type,
            &build.source_name,
        )),
    ];
    if comm.communicator == "none" {
        // Nothing to connect to: the guest installs and powers itself off.
        out.retain(|s| s.name() != "connect" && s.name() != "guest address");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http_ip_is_the_bind_address_when_it_names_one() {
        let mut http = HttpConfig {
            http_bind_address: "192.168.77.1".into(),
            ..HttpConfig::default()
        };
        assert_eq!(http_ip(&http), "192.168.77.1");
        http.http_bind_address = "0.0.0.0".into();
        let ip: std::net::IpAddr = http_ip(&http).parse().unwrap();
        assert!(!ip.is_unspecified());
    }
}
