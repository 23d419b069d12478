//! The QEMU-specific steps, in build order: output directory, extra CD, disk, start QEMU,
//! type the boot command, and finish the disk into the artifact.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use boot_commands::{QmpClient, QmpKeyboard, SerialWatch, Timing, Transport, VncKeyboard};

use super::process::QemuProcess;
use super::{accel, args, img, Vm, BUILDER_ID};
use crate::artifact::Artifact;
use crate::builder::Machine;
use crate::pipeline::{BuildContext, Step, StepError};

/// Create `output_directory`; with `-force`, delete an existing one first. On failure or
/// cancellation the directory is removed, so no half-built artifact is left.
pub struct OutputDir {
    vm: Arc<Vm>,
    force: bool,
    created: bool,
}

impl OutputDir {
    /// The step for `vm`.
    pub fn new(vm: Arc<Vm>, force: bool) -> Self {
        Self {
            vm,
            force,
            created: false,
        }
    }
}

#[async_trait]
impl Step for OutputDir {
    fn name(&self) -> &'static str {
        "output directory"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let dir = &self.vm.out_dir;
        if dir.exists() {
            if !self.force {
                return Err(StepError::msg(format!(
                    "output directory {} already exists\nhint: remove it, choose another output_directory, or run with -force to replace it",
                    dir.display()
                )));
            }
            ctx.ui.say(&format!(
                "Deleting previous output directory {} (-force)",
                dir.display()
            ));
            std::fs::remove_dir_all(dir)
                .map_err(|e| StepError::with(format!("cannot delete {}", dir.display()), &e))?;
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| StepError::with(format!("cannot create {}", dir.display()), &e))?;
        self.created = true;
        Ok(())
    }

    async fn cleanup(&mut self, ctx: &mut BuildContext) {
        if self.created && ctx.artifact.is_none() {
            ctx.ui.say(&format!(
                "Deleting output directory {}",
                self.vm.out_dir.display()
            ));
            if let Err(e) = std::fs::remove_dir_all(&self.vm.out_dir) {
                ctx.ui
                    .error(&format!("cannot delete {}: {e}", self.vm.out_dir.display()));
            }
        }
    }
}

/// Make the `cd_files`/`cd_content` ISO (label `cd_label`): with xorriso when installed,
/// else with kiln's own writer ([`crate::artifact::iso`]).
pub struct CdFiles {
    vm: Arc<Vm>,
    dir: Option<tempfile::TempDir>,
}

impl CdFiles {
    /// The step for `vm`.
    pub fn new(vm: Arc<Vm>) -> Self {
        Self { vm, dir: None }
    }
}

#[async_trait]
impl Step for CdFiles {
    fn name(&self) -> &'static str {
        "cd files"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let cd = &self.vm.cfg.cd;
        if cd.cd_files.is_empty() && cd.cd_content.is_empty() {
            return Ok(());
        }
        ctx.ui.say("Creating CD disk...");
        let dir = tempfile::Builder::new()
            .prefix("kiln-cd")
            .tempdir()
            .map_err(|e| StepError::with("cannot create a temporary directory", &e))?;
        let root = dir.path().join("root");
        std::fs::create_dir(&root).map_err(|e| StepError::with("cannot create the CD root", &e))?;
        for pattern in &cd.cd_files {
            let paths: Vec<PathBuf> = glob::glob(pattern)
                .map_err(|e| StepError::msg(format!("cd_files pattern {pattern:?}: {e}")))?
                .filter_map(Result::ok)
                .collect();
            if paths.is_empty() {
                return Err(StepError::msg(format!(
                    "cd_files entry {pattern:?} matches no file"
                )));
            }
            for p in paths {
                copy_into(&p, &root)?;
            }
        }
        for (name, content) in &cd.cd_content {
            let dest = root.join(name.trim_start_matches('/'));
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| StepError::with("cannot create a CD directory", &e))?;
            }
            std::fs::write(&dest, content)
                .map_err(|e| StepError::with(format!("cannot write CD file {name}"), &e))?;
        }
        let iso = dir.path().join("cd.iso");
        let label = cd.cd_label.clone().unwrap_or_else(|| "packer".into());
        let writer = crate::artifact::iso::create(&root, &label, &iso)
            .await
            .map_err(|e| StepError::with("cannot create the CD", &e))?;
        if writer == crate::artifact::iso::Writer::Builtin {
            ctx.ui
                .message("xorriso is not installed: the CD was written by kiln's ISO writer");
        }
        if let Ok(mut rt) = self.vm.runtime.lock() {
            rt.cd = Some(iso);
        }
        self.dir = Some(dir);
        Ok(())
    }

    async fn cleanup(&mut self, _ctx: &mut BuildContext) {
        self.dir = None;
    }
}

fn copy_into(src: &Path, root: &Path) -> Result<(), StepError> {
    let name = src.file_name().unwrap_or_default();
    let dest = root.join(name);
    if src.is_dir() {
        std::fs::create_dir_all(&dest)
            .map_err(|e| StepError::with("cannot copy a CD directory", &e))?;
        let entries = std::fs::read_dir(src)
            .map_err(|e| StepError::with(format!("cannot read {}", src.display()), &e))?;
        for e in entries.flatten() {
            copy_into(&e.path(), &dest)?;
        }
        Ok(())
    } else {
        std::fs::copy(src, &dest)
            .map(|_| ())
            .map_err(|e| StepError::with(format!("cannot copy {} to the CD", src.display()), &e))
    }
}

/// Create the main disk (empty, a copy of the disk image, or an overlay on it) and the
/// additional disks.
pub struct CreateDisk {
    vm: Arc<Vm>,
}

impl CreateDisk {
    /// The step for `vm`.
    pub fn new(vm: Arc<Vm>) -> Self {
        Self { vm }
    }
}

#[async_trait]
impl Step for CreateDisk {
    fn name(&self) -> &'static str {
        "create disk"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let cfg = &self.vm.cfg;
        let disk = self.vm.disk();
        let size = cfg.disk_size.as_mib();
        let extra = &cfg.qemu_img_args;
        if cfg.disk_image {
            let base = ctx
                .iso_path
                .clone()
                .ok_or_else(|| StepError::msg("no disk image was fetched"))?;
            let (base_format, base_bytes) = img::info(&base).await.map_err(StepError::msg)?;
            let base_mib = base_bytes.div_ceil(1024 * 1024);
            if !cfg.skip_resize_disk && size < base_mib {
                // qemu-img would refuse to shrink; say which options to change instead.
                return Err(StepError::msg(format!(
                    "disk_size ({size} MiB) is smaller than the disk image {} ({base_mib} MiB)\nhint: raise disk_size, or set skip_resize_disk = true to keep the image's size",
                    base.display()
                )));
            }
            if cfg.use_backing_file {
                ctx.ui
                    .say("Creating overlay disk on the base image (use_backing_file)...");
                let base = std::fs::canonicalize(&base).map_err(|e| {
                    StepError::with(format!("cannot resolve {}", base.display()), &e)
                })?;
                img::create_overlay(&base, &base_format, &extra.create, &disk)
                    .await
                    .map_err(StepError::msg)?;
            } else {
                ctx.ui.say("Copying disk image...");
                img::convert(
                    &base,
                    &disk,
                    &cfg.format,
                    false,
                    &extra.convert,
                    &ctx.ui.reporter(),
                )
                .await
                .map_err(StepError::msg)?;
            }
            if !cfg.skip_resize_disk {
                ctx.ui.say(&format!("Resizing disk to {size} MiB..."));
                img::resize(&disk, size, &extra.resize)
                    .await
                    .map_err(StepError::msg)?;
            }
        } else {
            ctx.ui.say("Creating hard drive...");
            img::create(&cfg.format, &extra.create, &disk, size)
                .await
                .map_err(StepError::msg)?;
        }
        for (path, size) in self
            .vm
            .additional_disks()
            .iter()
            .zip(&cfg.disk_additional_size)
        {
            img::create(&cfg.format, &extra.create, path, size.as_mib())
                .await
                .map_err(StepError::msg)?;
        }
        Ok(())
    }
}

/// Pick a free TCP port in `min..=max` on `host`, starting at a random offset so parallel
/// builds rarely collide.
fn free_port(host: &str, min: u16, max: u16) -> Option<u16> {
    let (min, max) = (min.min(max), max.max(min));
    let span = u32::from(max - min) + 1;
    let start = uuid::Uuid::new_v4().as_u128() as u32 % span;
    (0..span)
        .map(|i| min + ((start + i) % span) as u16)
        .find(|&p| TcpListener::bind((host, p)).is_ok())
}

/// Choose the accelerator and ports, then start QEMU. Cleanup stops it.
pub struct StartVm {
    vm: Arc<Vm>,
    temp: Option<tempfile::TempDir>,
    /// A QMP socket outside the temporary directory, removed when QEMU is stopped.
    user_socket: Option<PathBuf>,
}

impl StartVm {
    /// The step for `vm`.
    pub fn new(vm: Arc<Vm>) -> Self {
        Self {
            vm,
            temp: None,
            user_socket: None,
        }
    }
}

#[async_trait]
impl Step for StartVm {
    fn name(&self) -> &'static str {
        "start VM"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let cfg = &self.vm.cfg;
        let choice = accel::choose(&cfg.qemu_binary, &cfg.accelerator)
            .await
            .map_err(StepError::Failed)?;
        if let Some(why) = &choice.fallback {
            ctx.ui.warn(&format!(
                "KVM is not usable, using TCG (software emulation, much slower): {why}"
            ));
        }
        let temp = tempfile::Builder::new()
            .prefix("kiln-qemu")
            .tempdir()
            .map_err(|e| StepError::with("cannot create a temporary directory", &e))?;
        let serial_log = temp.path().join("serial.log");
        // kiln always talks QMP; `qmp_enable` and `qmp_socket_path` only say where the socket
        // is, for the user's own tools (Packer's default: `<output_directory>/<vm_name>.monitor`).
        let qmp_socket = match (&cfg.qmp_socket_path, cfg.qmp_enable) {
            (Some(p), _) => PathBuf::from(p),
            (None, true) => self.vm.out_dir.join(format!("{}.monitor", self.vm.vm_name)),
            (None, false) => temp.path().join("qmp.sock"),
        };
        if cfg.qmp_enable || cfg.qmp_socket_path.is_some() {
            self.user_socket = Some(qmp_socket.clone());
        }
        let (pmin, pmax) = cfg.host_port_range();
        let ssh_host_port = if cfg.skip_nat_mapping
            || cfg.comm.communicator == "none"
            || cfg.net_bridge.is_some()
        {
            None
        } else {
            Some(free_port("127.0.0.1", pmin, pmax).ok_or_else(|| {
                StepError::msg(format!(
                    "no free host port for SSH between {pmin} and {pmax}\nhint: widen host_port_min/host_port_max"
                ))
            })?)
        };
        let vnc_port = if cfg.boot.disable_vnc {
            None
        } else {
            Some(
                free_port(&cfg.vnc_bind_address, cfg.vnc_port_min, cfg.vnc_port_max).ok_or_else(
                    || {
                        StepError::msg(format!(
                            "no free VNC port between {} and {}",
                            cfg.vnc_port_min, cfg.vnc_port_max
                        ))
                    },
                )?,
            )
        };
        let headless = cfg.headless
            || (std::env::var_os("DISPLAY").is_none()
                && std::env::var_os("WAYLAND_DISPLAY").is_none());
        if !cfg.headless && headless {
            ctx.ui.say(
                "No display available: running headless (set headless = true to silence this)",
            );
        }
        let efivars = if cfg.efi_enabled() {
            let src = cfg.efi_vars();
            let dst = self.vm.out_dir.join("efivars.fd");
            std::fs::copy(src, &dst).map_err(|e| {
                StepError::with(
                    format!("cannot copy the UEFI variables {src}\nhint: install ovmf or set efi_firmware_vars"),
                    &e,
                )
            })?;
            Some(dst)
        } else {
            None
        };
        let mut disks = vec![self.vm.disk()];
        disks.extend(self.vm.additional_disks());
        let rt = {
            let mut rt = self
                .vm
                .runtime
                .lock()
                .map_err(|_| StepError::msg("internal: VM state poisoned"))?;
            rt.vm_name = self.vm.vm_name.clone();
            rt.disks = disks;
            rt.iso = if cfg.disk_image {
                None
            } else {
                ctx.iso_path.clone()
            };
            rt.accel = choice.accel.clone();
            rt.ssh_host_port = ssh_host_port;
            rt.ssh_guest_port = cfg.comm.ssh_port;
            rt.vnc_port = vnc_port;
            rt.qmp_socket = qmp_socket;
            rt.serial_log = serial_log;
            rt.headless = headless;
            rt.efivars = efivars;
            rt.floppy = ctx.floppy_path.clone();
            rt.mac = cfg.net_bridge.as_ref().map(|_| super::bridge::random_mac());
            rt.vnc_password = (cfg.vnc_use_password && vnc_port.is_some())
                .then(|| uuid::Uuid::new_v4().simple().to_string()[..8].to_owned());
            rt.clone()
        };
        let mut values = BTreeMap::new();
        if let Some(h) = &ctx.http {
            values.insert("HTTPIP".to_owned(), h.ip.clone());
            values.insert("HTTPPort".to_owned(), h.port.to_string());
        }
        values.insert(
            "HTTPDir".to_owned(),
            cfg.http.http_directory.clone().unwrap_or_default(),
        );
        values.insert(
            "OutputDir".to_owned(),
            self.vm.out_dir.display().to_string(),
        );
        values.insert("Name".to_owned(), self.vm.vm_name.clone());
        values.insert(
            "SSHHostPort".to_owned(),
            ssh_host_port.map(|p| p.to_string()).unwrap_or_default(),
        );
        let argv = args::command_line(cfg, &rt, &values);
        ctx.ui.say(if cfg.disk_image {
            "Starting VM, booting disk image"
        } else {
            "Starting VM, booting from CD-ROM"
        });
        ctx.ui
            .message(&format!("{} {}", cfg.qemu_binary, argv.join(" ")));
        let process = QemuProcess::spawn(&cfg.qemu_binary, &argv).map_err(|e| {
            StepError::msg(format!(
                "cannot start {}: {e}\nhint: install qemu-system-x86 or set qemu_binary",
                cfg.qemu_binary
            ))
        })?;
        let process = Arc::new(process);
        ctx.ui.machine("vm-pid", &[&process.pid().to_string()]);
        tracing::info!(pid = process.pid(), "QEMU started");
        if let Ok(mut p) = self.vm.process.lock() {
            *p = Some(process.clone());
        }
        self.temp = Some(temp);
        // QEMU greets on QMP only once its arguments are checked and its files opened: wait
        // for that (an exit before it is reported with QEMU's stderr, not as a mysterious SSH
        // timeout later), instead of sleeping a fixed time.
        let mut qmp = wait_for_qmp(&process, &rt.qmp_socket).await?;
        if let Ok(mut r) = self.vm.runtime.lock() {
            r.started = Some(std::time::Instant::now());
        }
        if let Some(pw) = &rt.vnc_password {
            qmp.execute_with::<_, serde_json::Value>(
                "change-vnc-password",
                &serde_json::json!({ "password": pw }),
            )
            .await
            .map_err(|e| StepError::with("cannot set the VNC password over QMP", &e))?;
        }
        drop(qmp);
        if let Some(p) = vnc_port {
            let with = match &rt.vnc_password {
                // Shown on purpose, as Packer does: it is random, for this VM only.
                Some(pw) => format!(" with the password {pw:?}"),
                None => String::new(),
            };
            ctx.ui.say(&format!(
                "The VM is viewable over VNC{with} at vnc://{}:{p}",
                cfg.vnc_bind_address
            ));
        }
        if let Some(p) = ssh_host_port {
            ctx.ssh_address = Some(("127.0.0.1".into(), p));
        } else if let Some(h) = &cfg.comm.ssh_host {
            ctx.ssh_address = Some((h.clone(), cfg.comm.ssh_port));
        }
        ctx.generated.insert("ID".into(), "VM".into());
        if let Some(k) = &self.vm.key {
            ctx.generated
                .insert("SSHPublicKey".into(), k.public_openssh().to_owned());
        }
        Ok(())
    }

    async fn cleanup(&mut self, ctx: &mut BuildContext) {
        let process = self.vm.process.lock().ok().and_then(|mut p| p.take());
        if let Some(p) = process {
            if p.exited().is_none() {
                ctx.ui.say("Stopping the VM");
            }
            p.kill().await;
        }
        if let Some(sock) = self.user_socket.take() {
            let _ = std::fs::remove_file(sock);
        }
        self.temp = None;
    }
}

/// Wait `boot_wait`, then type `boot_command` (or `boot_steps`) over QMP (kiln's default) or
/// VNC (`KILN_BOOT_TRANSPORT=vnc`, Packer's way).
pub struct TypeBootCommand {
    vm: Arc<Vm>,
}

impl TypeBootCommand {
    /// The step for `vm`.
    pub fn new(vm: Arc<Vm>) -> Self {
        Self { vm }
    }
}

#[async_trait]
impl Step for TypeBootCommand {
    fn name(&self) -> &'static str {
        "type boot command"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let boot = &self.vm.cfg.boot;
        let groups: Vec<(String, Option<String>)> = if boot.boot_steps.is_empty() {
            if boot.boot_command.is_empty() {
                return Ok(());
            }
            vec![(boot.boot_command.concat(), None)]
        } else {
            boot.boot_steps
                .iter()
                .map(|s| (s.first().cloned().unwrap_or_default(), s.get(1).cloned()))
                .collect()
        };
        // boot_wait counts from the VM's start, which was a moment ago.
        let started = self.vm.runtime.lock().ok().and_then(|r| r.started);
        let wait = boot
            .boot_wait
            .clamped()
            .saturating_sub(started.map(|t| t.elapsed()).unwrap_or_default());
        if !boot.boot_wait.clamped().is_zero() {
            ctx.ui
                .say(&format!("Waiting {} for boot...", boot.boot_wait));
            tokio::time::sleep(wait).await;
        }
        let mut values = BTreeMap::new();
        values.insert(
            "HTTPIP".to_owned(),
            ctx.http.as_ref().map(|h| h.ip.clone()).unwrap_or_default(),
        );
        values.insert(
            "HTTPPort".to_owned(),
            ctx.http
                .as_ref()
                .map(|h| h.port.to_string())
                .unwrap_or_default(),
        );
        values.insert("Name".to_owned(), self.vm.vm_name.clone());
        values.insert(
            "SSHPublicKey".to_owned(),
            self.vm
                .key
                .as_ref()
                .map(|k| k.public_openssh().to_owned())
                .unwrap_or_default(),
        );
        let mut parsed = Vec::new();
        for (text, description) in &groups {
            let rendered = boot_commands::render(text, &values)
                .map_err(|e| StepError::with("cannot render boot_command", &e))?;
            let p = boot_commands::parse(&rendered)
                .map_err(|e| StepError::with("invalid boot_command", &e))?;
            for w in &p.warnings {
                ctx.ui
                    .warn(&format!("boot_command at {}: {}", w.position, w.message));
            }
            parsed.push((p.actions, description.clone()));
        }
        let transport = match std::env::var("KILN_BOOT_TRANSPORT").as_deref() {
            Ok("vnc") => Transport::Vnc,
            _ => Transport::Qmp,
        };
        let env_interval = std::env::var("PACKER_KEY_INTERVAL").ok();
        let timing = Timing::resolve(
            transport.default_key_interval(),
            env_interval.as_deref(),
            boot.boot_key_interval.as_ref().map(|d| d.clamped()),
            boot.boot_keygroup_interval.as_ref().map(|d| d.clamped()),
        )
        .map_err(|e| StepError::msg(e.to_string()))?;
        let rt = self
            .vm
            .runtime
            .lock()
            .map_err(|_| StepError::msg("internal: VM state poisoned"))?
            .clone();
        let mut serial = SerialWatch::new(rt.serial_log.clone(), 0);
        ctx.ui.say(&format!(
            "Typing the boot command over {}...",
            if transport == Transport::Qmp {
                "QMP"
            } else {
                "VNC"
            }
        ));
        match transport {
            Transport::Qmp => {
                let mut client = connect_qmp(&rt.qmp_socket).await?;
                let mut kb = QmpKeyboard(&mut client);
                for (actions, description) in &parsed {
                    if let Some(d) = description {
                        ctx.ui.message(d);
                    }
                    boot_commands::type_actions(
                        actions,
                        &boot_commands::US,
                        &mut kb,
                        &timing,
                        Some(&mut serial),
                        &ctx.cancel,
                    )
                    .await
                    .map_err(|e| type_error(&self.vm, e))?;
                }
            }
            Transport::Vnc => {
                let port = rt.vnc_port.ok_or_else(|| {
                    StepError::msg("KILN_BOOT_TRANSPORT=vnc needs VNC (disable_vnc is set)")
                })?;
                let mut kb = VncKeyboard::connect(
                    (self.vm.cfg.vnc_bind_address.as_str(), port),
                    rt.vnc_password.as_deref(),
                )
                .await
                .map_err(|e| StepError::with("cannot connect to QEMU's VNC server", &e))?;
                for (actions, description) in &parsed {
                    if let Some(d) = description {
                        ctx.ui.message(d);
                    }
                    boot_commands::type_actions(
                        actions,
                        &boot_commands::US,
                        &mut kb,
                        &timing,
                        Some(&mut serial),
                        &ctx.cancel,
                    )
                    .await
                    .map_err(|e| type_error(&self.vm, e))?;
                }
            }
        }
        Ok(())
    }
}

fn type_error<E: std::error::Error + Send + Sync + 'static>(
    vm: &Vm,
    e: boot_commands::TypeError<E>,
) -> StepError {
    if matches!(e, boot_commands::TypeError::Cancelled) {
        return StepError::Cancelled;
    }
    match vm.exited() {
        Some(reason) => StepError::msg(format!(
            "the VM stopped while the boot command was typed: {reason}"
        )),
        None => StepError::with("error typing the boot command", &e),
    }
}

/// Connect to the QMP socket of the QEMU that was just started, failing with its reason as
/// soon as it exits.
async fn wait_for_qmp(process: &QemuProcess, socket: &Path) -> Result<QmpClient, StepError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(reason) = process.exited() {
            return Err(StepError::msg(format!(
                "QEMU exited right after starting: {reason}"
            )));
        }
        if let Ok(Ok(c)) =
            tokio::time::timeout(Duration::from_secs(5), QmpClient::connect(socket)).await
        {
            return Ok(c);
        }
        if std::time::Instant::now() > deadline {
            return Err(StepError::msg(format!(
                "QEMU did not answer on its QMP socket {} within 60 s",
                socket.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// QEMU opens its QMP socket a moment after starting.
pub(super) async fn connect_qmp(path: &Path) -> Result<QmpClient, StepError> {
    let mut last = None;
    for _ in 0..50 {
        match QmpClient::connect(path).await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(match last {
        Some(e) => StepError::with(
            format!("cannot connect to QEMU's QMP socket {}", path.display()),
            &e,
        ),
        None => StepError::msg("cannot connect to QEMU's QMP socket"),
    })
}

/// Compact (and optionally compress) the disk with `qemu-img convert`, then hand the files
/// over as the artifact.
pub struct FinishDisk {
    vm: Arc<Vm>,
}

impl FinishDisk {
    /// The step for `vm`.
    pub fn new(vm: Arc<Vm>) -> Self {
        Self { vm }
    }
}

#[async_trait]
impl Step for FinishDisk {
    fn name(&self) -> &'static str {
        "finish disk"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let cfg = &self.vm.cfg;
        let disk = self.vm.disk();
        // As in Packer, only a qcow2 without a backing file is compacted (or compressed).
        if !cfg.skip_compaction && !cfg.use_backing_file && cfg.format == "qcow2" {
            ctx.ui.say(if cfg.disk_compression {
                "Converting hard drive (compacting and compressing)..."
            } else {
                "Converting hard drive (compacting)..."
            });
            let tmp = self
                .vm
                .out_dir
                .join(format!(".{}.converting", self.vm.vm_name));
            let r = img::convert(
                &disk,
                &tmp,
                &cfg.format,
                cfg.disk_compression,
                &cfg.qemu_img_args.convert,
                &ctx.ui.reporter(),
            )
            .await;
            if let Err(e) = r {
                let _ = std::fs::remove_file(&tmp);
                return Err(StepError::msg(e));
            }
            std::fs::rename(&tmp, &disk)
                .map_err(|e| StepError::with(format!("cannot replace {}", disk.display()), &e))?;
        }
        let mut files = vec![disk];
        files.extend(self.vm.additional_disks());
        let efivars = self.vm.out_dir.join("efivars.fd");
        if cfg.efi_enabled() && efivars.exists() {
            if cfg.efi_drop_efivars {
                let _ = std::fs::remove_file(&efivars);
            } else {
                files.push(efivars);
            }
        }
        let accel = self
            .vm
            .runtime
            .lock()
            .map(|r| r.accel.clone())
            .unwrap_or_default();
        let state = BTreeMap::from([
            ("diskName".to_owned(), self.vm.vm_name.clone()),
            ("diskType".to_owned(), cfg.format.clone()),
            ("diskSize".to_owned(), cfg.disk_size.as_mib().to_string()),
            (
                "domainType".to_owned(),
                if accel == "kvm" { "kvm" } else { "qemu" }.to_owned(),
            ),
        ]);
        ctx.artifact = Some(Artifact {
            builder_id: BUILDER_ID.into(),
            build_name: self.vm.source_name.clone(),
            builder_type: "qemu".into(),
            files,
            id: "VM".into(),
            description: format!("VM files in directory: {}", self.vm.out_dir.display()),
            state,
        });
        Ok(())
    }
}
