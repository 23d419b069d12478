//! The `qemu` builder (Packer's builder id `transcend.qemu`): fetch the ISO or disk image,
//! create the disk, serve answer files, start QEMU (accelerator probed), type the boot command
//! over QMP (or VNC), wait for SSH, provision, shut down, compact the disk. The steps are in
//! [`steps`]; the QEMU process in [`process`]; its command line in [`args`]; `qemu-img` in
//! [`img`]; the KVM probe in [`accel`]; the software TPM in [`tpm`]; `net_bridge` in [`bridge`].

pub mod accel;
pub mod args;
pub mod bridge;
pub mod img;
pub mod process;
pub mod steps;
pub mod tpm;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::steps::connect::{ClearAuthorizedKeys, Connect};
use super::steps::{download::Download, floppy::CreateFloppy, http::StartHttpServer};
use super::steps::{provision::Provision, shutdown::Shutdown};
use super::{Machine, RunOptions, SetupError};
use crate::communicator::keys::TemporaryKeyPair;
use crate::config::qemu::QemuConfig;
use crate::pipeline::Step;
use crate::template::PlannedBuild;
use process::QemuProcess;

/// Packer's id for artifacts of this builder (manifests and post-processors check it).
pub const BUILDER_ID: &str = "transcend.qemu";

/// The address of the host as a guest on QEMU's user network sees it.
const USER_NET_HOST: &str = "10.0.2.2";

/// What the QEMU steps share: the decoded config, names, and the VM once it runs.
pub struct Vm {
    /// The template's options.
    pub cfg: QemuConfig,
    /// `output_directory`.
    pub out_dir: PathBuf,
    /// `vm_name`: the disk's file name.
    pub vm_name: String,
    /// The source name (`debian`).
    pub source_name: String,
    /// The temporary key pair offered to the guest, unless the template names a key file.
    pub key: Option<Arc<TemporaryKeyPair>>,
    /// Set while QEMU runs.
    pub process: Mutex<Option<Arc<QemuProcess>>>,
    /// Decided when QEMU starts: paths, ports, accelerator.
    pub runtime: Mutex<args::Runtime>,
}

impl Vm {
    /// The main disk's path.
    pub fn disk(&self) -> PathBuf {
        self.out_dir.join(&self.vm_name)
    }

    /// The additional disks, `<vm_name>-1`, `-2`, ….
    pub fn additional_disks(&self) -> Vec<PathBuf> {
        (1..=self.cfg.disk_additional_size.len())
            .map(|i| self.out_dir.join(format!("{}-{i}", self.vm_name)))
            .collect()
    }

    fn running(&self) -> Option<Arc<QemuProcess>> {
        self.process.lock().ok().and_then(|p| p.clone())
    }
}

#[async_trait]
impl Machine for Vm {
    fn exited(&self) -> Option<String> {
        self.running().and_then(|p| p.exited())
    }
    async fn wait_exit(&self, timeout: Duration) -> bool {
        match self.running() {
            Some(p) => p.wait_exit(timeout).await,
            None => true,
        }
    }
    async fn kill(&self) {
        if let Some(p) = self.running() {
            p.kill().await;
        }
    }
    fn console_tail(&self) -> Option<String> {
        let log = self.runtime.lock().ok()?.serial_log.clone();
        let mut f = std::fs::File::open(log).ok()?;
        // The last few KiB hold the last lines; the log can be megabytes of boot messages.
        let len = f.metadata().ok()?.len();
        use std::io::{Read, Seek, SeekFrom};
        f.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).ok()?;
        super::tail_lines(&buf, 12)
    }
}

/// The steps of a `qemu` build.
pub fn steps(build: &PlannedBuild, run: &RunOptions) -> Result<Vec<Box<dyn Step>>, SetupError> {
    let cfg: QemuConfig = crate::config::decode(&build.config, &build.spans)
        .map_err(|d| SetupError::Config(d.to_string()))?;
    let key = TemporaryKeyPair::for_build(&cfg.comm, &format!("kiln_{}", build.source_name))
        .map_err(|e| SetupError::Config(format!("cannot make the build's SSH key: {e}")))?
        .map(Arc::new);
    let vm = Arc::new(Vm {
        out_dir: PathBuf::from(cfg.output.output_directory(&build.source_name)),
        vm_name: cfg.output.vm_name(&build.source_name),
        source_name: build.source_name.clone(),
        key: key.clone(),
        process: Mutex::new(None),
        runtime: Mutex::new(args::Runtime::default()),
        cfg: cfg.clone(),
    });
    let machine: Arc<dyn Machine> = vm.clone();
    let http_ip = match &cfg.net_bridge {
        Some(br) => bridge::bridge_ipv4(br).map_err(SetupError::Config)?,
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
    let mut out: Vec<Box<dyn Step>> = vec![
        Box::new(Download::new(cfg.iso.clone(), what)),
        Box::new(steps::OutputDir::new(vm.clone(), run.force)),
        Box::new(tpm::StartTpm::new(vm.clone())),
        Box::new(CreateFloppy::new(cfg.floppy.clone())),
        Box::new(steps::CdFiles::new(vm.clone())),
        Box::new(steps::CreateDisk::new(vm.clone())),
        Box::new(StartHttpServer::new(cfg.http.clone(), &http_ip)),
        Box::new(steps::StartVm::new(vm.clone())),
        Box::new(steps::TypeBootCommand::new(vm.clone())),
        Box::new(bridge::WaitGuestAddress::new(vm.clone())),
        Box::new(Connect::new(
            cfg.comm.clone(),
            key.clone(),
            Some(machine.clone()),
            hint,
        )),
        Box::new(Provision::new(
            build.provisioners.clone(),
            build.error_cleanup.clone(),
            &build.source_type,
            &build.source_name,
        )),
        Box::new(ClearAuthorizedKeys::new(&cfg.comm, key)),
        Box::new(Shutdown::new(cfg.shutdown.clone(), machine)),
        Box::new(steps::FinishDisk::new(vm)),
    ];
    if cfg.comm.communicator == "none" {
        // Nothing to connect to: the guest installs and powers itself off.
        out.retain(|s| s.name() != "connect");
    }
    Ok(out)
}
