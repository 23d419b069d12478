//! The `qemu` builder (Packer's builder id `transcend.qemu`). This module holds only what is
//! QEMU's own: the [`driver`] seam (accelerator probe, `qemu-img`, starting QEMU), the
//! [`launch`] plan and command line, the running [`machine`] (its [`qmp`] client, serial console,
//! keyboards),
//! its [`steps`] (disks, accelerator, UEFI variables, start, finish), the software TPM
//! ([`tpm`]) and `net_bridge` ([`bridge`]). [`steps()`] composes them with the shared steps
//! of `builder::steps` into the build.

pub mod accel;
pub mod bridge;
pub mod driver;
pub mod img;
pub mod launch;
pub mod layer;
pub mod machine;
pub mod process;
pub mod qmp;
pub mod steps;
pub mod tpm;

use std::path::PathBuf;
use std::sync::Arc;

use super::steps::boot::TypeBootCommand;
use super::steps::cd::CdFiles;
use super::steps::connect::{ClearAuthorizedKeys, Connect, PublishKey};
use super::steps::layers::{Announce, SaveLayer};
use super::steps::output_dir::OutputDir;
use super::steps::ports::{PickPorts, PortRequest, VncRequest};
use super::steps::{download::Download, floppy::CreateFloppy, http::StartHttpServer};
use super::steps::{provision::Provision, shutdown::Shutdown};
use super::{RunOptions, SetupError};
use crate::communicator::keys::TemporaryKeyPair;
use crate::config::qemu::QemuConfig;
use crate::pipeline::Step;
use crate::template::PlannedBuild;
use driver::{Driver, HostDriver};

/// Packer's id for artifacts of this builder (manifests and post-processors check it).
pub const BUILDER_ID: &str = "transcend.qemu";

/// The address of the host as a guest on QEMU's user network sees it.
const USER_NET_HOST: &str = "10.0.2.2";

impl super::Source for QemuConfig {
    /// The steps of a `qemu` build, on the host's QEMU.
    fn steps(
        self: Box<Self>,
        build: &PlannedBuild,
        run: &RunOptions,
    ) -> Result<Vec<Box<dyn Step>>, SetupError> {
        steps_with(build, *self, run, Arc::new(HostDriver))
    }

    fn output_directory(&self, build: &PlannedBuild) -> Option<std::path::PathBuf> {
        Some(self.output.output_directory(&build.source_name).into())
    }
}

/// The steps of a `qemu` build of `cfg` on `driver`.
pub fn steps_with(
    build: &PlannedBuild,
    cfg: QemuConfig,
    run: &RunOptions,
    driver: Arc<dyn Driver>,
) -> Result<Vec<Box<dyn Step>>, SetupError> {
    let layers = match (&run.layers, layers_unusable(&cfg)) {
        (Some(settings), None) => Some(crate::layers::LayerPlan::new(settings, build)?),
        _ => None,
    };
    // A guest from a cached layer authorizes the temporary key it was built with.
    let cached_key = layers
        .as_ref()
        .and_then(|l| l.start_dir())
        .map(|d| d.join(crate::layers::SSH_KEY))
        .filter(|k| k.exists() && cfg.comm.ssh_private_key_file.is_none());
    let key = match cached_key {
        Some(k) => Some(TemporaryKeyPair::load(&k)?),
        None => TemporaryKeyPair::for_build(&cfg.comm, &format!("kiln_{}", build.source_name))?,
    }
    .map(Arc::new);
    let layers = layers.map(|mut l| {
        if cfg.comm.ssh_private_key_file.is_none() {
            l.temp_key = key.clone();
        }
        Arc::new(l)
    });
    let http_ip = match &cfg.net_bridge {
        Some(br) => bridge::bridge_ipv4(br)?,
        None => USER_NET_HOST.to_owned(),
    };
    let what = if cfg.disk_image { "disk image" } else { "ISO" };
    let hint = if cfg.disk_image {
        // A cloud image has no installer: its login comes from cloud-init's user-data.
        "check the guest's console (VNC, or the serial log kiln shows), that the image runs \
         cloud-init and found its seed (a CD with cd_label = \"cidata\" holding user-data and \
         meta-data), and that the user-data creates ssh_username with ssh_password or a key"
    } else {
        "check the guest's console (VNC, or the serial log kiln shows), that boot_command \
         was typed as the installer expects, that the answer file was served (HTTP lines \
         above), and ssh_username/ssh_password"
    };
    let forwarded =
        !(cfg.skip_nat_mapping || cfg.comm.communicator == "none" || cfg.net_bridge.is_some());
    let ports = PortRequest {
        ssh: forwarded.then(|| cfg.ports.range()),
        vnc: (!cfg.boot.disable_vnc).then(|| VncRequest {
            bind: cfg.vnc_bind_address.clone(),
            min: cfg.vnc_port_min,
            max: cfg.vnc_port_max,
            password: cfg.vnc_use_password,
            fixed_password: Some(cfg.vnc_password.clone()).filter(|p| !p.is_empty()),
        }),
    };
    let out_dir = PathBuf::from(cfg.output.output_directory(&build.source_name));
    let vm_name = cfg.output.vm_name(&build.source_name);
    let start = layers
        .as_ref()
        .and_then(|l| l.start_dir().map(PathBuf::from));
    let download: Box<dyn Step> = match cfg.iso.urls().first() {
        Some(url) if cfg.iso_skip_cache && !cfg.disk_image => Box::new(steps::UseIsoUrl::new(url)),
        _ => Box::new(Download::new(cfg.iso.clone(), what)),
    };
    let cfg = Arc::new(cfg);
    let mut create_disk = steps::CreateDisk::new(cfg.clone(), driver.clone());
    let mut provision = Provision::new(
        build.provisioners.clone(),
        build.error_cleanup.clone(),
        &build.source_type,
        &build.source_name,
    );
    let mut finish = steps::FinishDisk::new(cfg.clone(), driver.clone(), &build.source_name);
    if let Some(l) = &layers {
        provision = provision.with_layers(l.clone());
        finish = finish.flattening();
    }
    if let Some(dir) = &start {
        create_disk = create_disk.from_layer(dir.clone());
    }
    let mut out: Vec<Box<dyn Step>> = vec![
        download,
        Box::new(OutputDir::new(out_dir, vm_name, run.force)),
        Box::new(PublishKey::new(key.clone())),
        Box::new(tpm::StartTpm::new(cfg.clone())),
        Box::new(CreateFloppy::new(cfg.floppy.clone())),
        Box::new(CdFiles::new(cfg.cd.clone())),
        Box::new(create_disk),
        Box::new(StartHttpServer::new(cfg.http.clone(), &http_ip)),
        Box::new(PickPorts::new(ports)),
        Box::new(steps::ChooseAccelerator::new(cfg.clone(), driver.clone())),
        Box::new(steps::CopyEfiVars::new(cfg.clone())),
        Box::new(steps::StartVm::new(cfg.clone(), driver.clone())),
        Box::new(TypeBootCommand::new(
            cfg.boot.clone(),
            run.boot_transport,
            run.key_interval.clone(),
        )),
        Box::new(bridge::WaitGuestAddress::new(cfg.clone())),
        Box::new(Connect::new(cfg.comm.clone(), key.clone(), hint)),
        Box::new(provision),
        Box::new(ClearAuthorizedKeys::new(&cfg.comm, key)),
        Box::new(Shutdown::new(cfg.shutdown.clone())),
        Box::new(finish),
    ];
    if cfg.comm.communicator == "none" {
        // Nothing to connect to: the guest installs and powers itself off.
        out.retain(|s| s.name() != "connect");
    }
    match (&layers, &run.layers) {
        (Some(l), _) => {
            if start.is_some() {
                // The guest resumes where the layer left it: nothing to type.
                out.retain(|s| s.name() != "type boot command");
            } else if let Some(at) = out.iter().position(|s| s.name() == "connect") {
                out.insert(at + 1, Box::new(SaveLayer::install(l.clone())));
            }
            out.insert(0, Box::new(Announce::plan(l)));
        }
        (None, Some(_)) => {
            let why = layers_unusable(&cfg).unwrap_or_default();
            out.insert(0, Box::new(Announce::unused(why)));
        }
        (None, None) => {}
    }
    Ok(out)
}

/// Why the layer cache cannot serve a build of `cfg`, if it cannot.
fn layers_unusable(cfg: &QemuConfig) -> Option<&'static str> {
    if cfg.comm.communicator != "ssh" {
        Some("layers are saved once the guest answers over SSH, and this build has no SSH communicator")
    } else if cfg.vtpm {
        Some("the software TPM's state (vtpm) is not kept in layers")
    } else if cfg
        .qemuargs
        .iter()
        .any(|a| a.first().is_some_and(|s| s == "-drive"))
    {
        Some("qemuargs opens the disks with its own -drive")
    } else {
        None
    }
}
