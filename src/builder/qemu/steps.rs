//! The QEMU-specific steps, in build order: create the disks, choose the accelerator, copy the
//! UEFI variables, start QEMU, and finish the disk into the artifact. Each talks to the host
//! through the [`Driver`] it is given; everything else a QEMU build does is a shared step
//! (`builder::steps`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::driver::{Driver, ImgOp, StartSpec};
use super::launch::{self, LaunchPlan};
use super::BUILDER_ID;
use crate::artifact::{Artifact, Firmware};
use crate::config::qemu::QemuConfig;
use crate::pipeline::step::Cause;
use crate::pipeline::{BuildContext, CleanupError, Step, StepError};

/// Create the main disk (empty, a copy of the disk image, or an overlay on it) and the
/// additional disks, under their names for while the build runs ([`launch::partial`]).
/// `iso_skip_cache`: QEMU reads the ISO straight from its URL (its curl block driver), so
/// nothing is downloaded or checked, as in Packer; a local path is used where it is. In
/// offline mode a network URL is refused, naming it, as any other network access is.
pub struct UseIsoUrl {
    url: String,
}

impl UseIsoUrl {
    /// The step for the first of `iso_url`/`iso_urls`.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
        }
    }
}

#[async_trait]
impl Step for UseIsoUrl {
    fn name(&self) -> &'static str {
        "iso url"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let url = self.url.strip_prefix("file://").unwrap_or(&self.url);
        let remote = url.contains("://");
        if remote && crate::download::fetch::Fetcher::offline_from_env() {
            return Err(StepError::msg(format!(
                "iso_skip_cache has QEMU read {url} over the network, and offline mode allows no network access\nhint: unset iso_skip_cache to use the cache (`kiln cache import`), or unset KILN_OFFLINE"
            )));
        }
        ctx.ui.say(&format!(
            "Skipping the ISO download (iso_skip_cache): QEMU reads {url}"
        ));
        // QEMU's -drive option separates with commas; a comma in the name is doubled.
        ctx.iso_path = Some(url.replace(',', ",,").into());
        Ok(())
    }
}

pub struct CreateDisk {
    cfg: Arc<QemuConfig>,
    driver: Arc<dyn Driver>,
    from_layer: Option<PathBuf>,
}

impl CreateDisk {
    /// The step for `cfg`.
    pub fn new(cfg: Arc<QemuConfig>, driver: Arc<dyn Driver>) -> Self {
        Self {
            cfg,
            driver,
            from_layer: None,
        }
    }

    /// The step making the disks overlays on the cached layer in `dir` (`kiln build -cache`).
    pub fn from_layer(mut self, dir: PathBuf) -> Self {
        self.from_layer = Some(dir);
        self
    }

    /// Each disk a qcow2 overlay on its copy in the layer `dir`.
    async fn overlay_layer(
        &self,
        ctx: &BuildContext,
        dir: &Path,
        disks: &[PathBuf],
    ) -> Result<(), StepError> {
        for (j, disk) in disks.iter().enumerate() {
            let layer = dir.join(super::layer::layer_disk(j));
            let base = std::fs::canonicalize(&layer).map_err(|e| {
                StepError::with(
                    format!("cannot use the cached layer {}", layer.display()),
                    e,
                )
            })?;
            let op = ImgOp::Overlay {
                base,
                base_format: "qcow2".into(),
                extra: Vec::new(),
                path: disk.clone(),
            };
            self.img(ctx, op).await?;
        }
        Ok(())
    }

    async fn img(&self, ctx: &BuildContext, op: ImgOp) -> Result<(), StepError> {
        self.driver.img(&op, &ctx.ui.reporter()).await.map_err(|e| {
            StepError::with(
                format!("cannot create the disk {}", op.target().display()),
                e,
            )
        })
    }
}

#[async_trait]
impl Step for CreateDisk {
    fn name(&self) -> &'static str {
        "create disk"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let cfg = &self.cfg;
        let disks: Vec<PathBuf> =
            launch::disks(cfg, ctx.require_output_dir()?, ctx.require_vm_name()?)
                .iter()
                .map(|d| launch::partial(d))
                .collect();
        let disk = disks[0].clone();
        let size = cfg.disk_size().as_mib();
        let extra = &cfg.qemu_img_args;
        if let Some(dir) = &self.from_layer {
            self.overlay_layer(ctx, dir, &disks).await?;
            ctx.from_layer = Some(dir.clone());
            ctx.facts.disk_name = Some(ctx.require_vm_name()?.to_owned());
            ctx.facts.disk_format = Some(cfg.format.clone());
            ctx.facts.disk_size_mib = Some(size);
            return Ok(());
        }
        if cfg.disk_image {
            let base = ctx.require_iso()?.to_owned();
            let (base_format, base_bytes) = self.driver.img_info(&base).await.map_err(|e| {
                StepError::with(format!("cannot read the disk image {}", base.display()), e)
            })?;
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
                    StepError::with(format!("cannot resolve {}", base.display()), e)
                })?;
                let op = ImgOp::Overlay {
                    base,
                    base_format,
                    extra: extra.create.clone(),
                    path: disk.clone(),
                };
                self.img(ctx, op).await?;
            } else {
                ctx.ui.say("Copying disk image...");
                let op = ImgOp::Convert {
                    src: base,
                    dst: disk.clone(),
                    format: cfg.format.clone(),
                    compress: false,
                    extra: extra.convert.clone(),
                };
                self.img(ctx, op).await?;
            }
            if !cfg.skip_resize_disk {
                ctx.ui.say(&format!("Resizing disk to {size} MiB..."));
                let op = ImgOp::Resize {
                    path: disk.clone(),
                    mib: size,
                    extra: extra.resize.clone(),
                };
                self.img(ctx, op).await?;
            }
        } else {
            ctx.ui.say("Creating hard drive...");
            let op = ImgOp::Create {
                format: cfg.format.clone(),
                extra: extra.create.clone(),
                path: disk.clone(),
                size: format!("{size}M"),
            };
            self.img(ctx, op).await?;
        }
        // As Packer does: each additional size goes to qemu-img as written.
        for (path, size) in disks[1..].iter().zip(&cfg.disk_additional_size) {
            let op = ImgOp::Create {
                format: cfg.format.clone(),
                extra: extra.create.clone(),
                path: path.clone(),
                size: size.0.clone(),
            };
            self.img(ctx, op).await?;
        }
        ctx.facts.disk_name = Some(ctx.require_vm_name()?.to_owned());
        ctx.facts.disk_format = Some(cfg.format.clone());
        ctx.facts.disk_size_mib = Some(size);
        Ok(())
    }
}

/// Decide the accelerator (`auto`: KVM if a probe guest runs under it, else TCG with a
/// warning) and note the machine's size for the artifact.
pub struct ChooseAccelerator {
    cfg: Arc<QemuConfig>,
    driver: Arc<dyn Driver>,
}

impl ChooseAccelerator {
    /// The step for `cfg`.
    pub fn new(cfg: Arc<QemuConfig>, driver: Arc<dyn Driver>) -> Self {
        Self { cfg, driver }
    }
}

#[async_trait]
impl Step for ChooseAccelerator {
    fn name(&self) -> &'static str {
        "choose accelerator"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let cfg = &self.cfg;
        let choice = self
            .driver
            .choose_accelerator(&cfg.qemu_binary, &cfg.accelerator)
            .await
            .map_err(|e| StepError::with("cannot use the requested accelerator", e))?;
        if let Some(why) = &choice.fallback {
            ctx.ui.warn(&format!(
                "KVM is not usable, using TCG (software emulation, much slower): {why}"
            ));
        }
        ctx.facts.accelerator = Some(choice.accel);
        ctx.facts.cpus = Some(launch::cpu_count(cfg));
        ctx.facts.memory_mib = Some(u64::from(cfg.memory));
        ctx.facts.firmware = Some(if cfg.efi_enabled() {
            Firmware::Efi
        } else {
            Firmware::Bios
        });
        Ok(())
    }
}

/// With UEFI, copy the firmware's variable store into the output directory (`efivars.fd`),
/// where the VM keeps its boot entries.
pub struct CopyEfiVars {
    cfg: Arc<QemuConfig>,
}

impl CopyEfiVars {
    /// The step for `cfg`.
    pub fn new(cfg: Arc<QemuConfig>) -> Self {
        Self { cfg }
    }
}

#[async_trait]
impl Step for CopyEfiVars {
    fn name(&self) -> &'static str {
        "copy UEFI variables"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        if !self.cfg.efi_enabled() {
            return Ok(());
        }
        let cached = ctx.from_layer.as_ref().map(|d| d.join("efivars.fd"));
        // A guest from the layer cache keeps the boot entries its installer wrote.
        let src = match &cached {
            Some(c) if c.exists() => c.to_string_lossy().into_owned(),
            _ => self.cfg.efi_vars().to_owned(),
        };
        let src = src.as_str();
        let dst = ctx.require_output_dir()?.join("efivars.fd");
        std::fs::copy(src, &dst).map_err(|e| {
            StepError::with(
                format!("cannot copy the UEFI variables {src}\nhint: install ovmf or set efi_firmware_vars"),
                e,
            )
        })?;
        Ok(())
    }
}

/// Start QEMU from its [`LaunchPlan`] and hand the running machine to the shared steps.
/// Cleanup stops it and removes the build's private directory (QMP socket, serial log).
pub struct StartVm {
    cfg: Arc<QemuConfig>,
    driver: Arc<dyn Driver>,
    temp: Option<tempfile::TempDir>,
    /// A QMP socket outside the temporary directory, removed when QEMU is stopped.
    user_socket: Option<PathBuf>,
}

impl StartVm {
    /// The step for `cfg`.
    pub fn new(cfg: Arc<QemuConfig>, driver: Arc<dyn Driver>) -> Self {
        Self {
            cfg,
            driver,
            temp: None,
            user_socket: None,
        }
    }
}

/// Whether a window can be shown (a display server is reachable).
fn has_display() -> bool {
    std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some()
}

#[async_trait]
impl Step for StartVm {
    fn name(&self) -> &'static str {
        "start VM"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let cfg = &self.cfg;
        let temp = crate::child::private_tempdir("kiln-qemu")
            .map_err(|e| StepError::with("cannot create a temporary directory", e))?;
        let plan = LaunchPlan::new(cfg, ctx, temp.path(), has_display())?;
        // The console can echo what the boot command typed (passwords in a preseed URL).
        crate::child::private_file(&plan.serial_log)
            .map_err(|e| StepError::with("cannot create the serial log", e))?;
        self.temp = Some(temp);
        if cfg.qmp_enable || cfg.qmp_socket_path.is_some() {
            self.user_socket = Some(plan.qmp_socket.clone());
        }
        if !cfg.headless && plan.headless {
            ctx.ui.say(
                "No display available: running headless (set headless = true to silence this)",
            );
        }
        let argv = launch::command_line(cfg, &plan, &ctx.template_values())
            .map_err(|e| StepError::with("cannot render qemuargs", e))?;
        ctx.ui.say(if ctx.from_layer.is_some() {
            "Starting VM, resuming it from the cached layer"
        } else if cfg.disk_image {
            "Starting VM, booting disk image"
        } else {
            "Starting VM, booting from CD-ROM"
        });
        ctx.ui
            .message(&format!("{} {}", cfg.qemu_binary, argv.join(" ")));
        let spec = StartSpec {
            binary: cfg.qemu_binary.clone(),
            argv,
            qmp_socket: plan.qmp_socket.clone(),
            event_socket: plan.event_socket.clone(),
            serial_socket: plan.serial_socket.clone(),
            serial_log: plan.serial_log.clone(),
            vnc_password: plan.vnc_password.clone(),
            vnc: ctx.vnc.clone(),
            disks: super::layer::Disks {
                files: plan.disks.iter().map(|d| launch::partial(d)).collect(),
                format: plan.disk_format.clone(),
                efivars: plan.efivars.clone(),
            },
            incoming: ctx
                .from_layer
                .as_ref()
                .map(|d| d.join(super::layer::MEMORY)),
        };
        let started = self
            .driver
            .start(&spec)
            .await
            .map_err(|e| StepError::with("cannot start the VM", e))?;
        ctx.ui.machine("vm-pid", &[&started.pid.to_string()]);
        tracing::info!(pid = started.pid, "QEMU started");
        ctx.machine = Some(started.machine);
        if let Some(vnc) = &ctx.vnc {
            let with = match &vnc.password {
                // The user's own vnc_password is theirs to know; never printed.
                Some(_) if !cfg.vnc_password.is_empty() => {
                    " with the password vnc_password sets".to_owned()
                }
                // Shown on purpose, as Packer does: it is random, for this VM only.
                Some(pw) => format!(" with the password {pw:?}"),
                None => String::new(),
            };
            ctx.ui.say(&format!(
                "The VM is viewable over VNC{with} at vnc://{}:{}",
                vnc.host, vnc.port
            ));
        }
        if let Some(p) = ctx.ssh_host_port {
            ctx.ssh_address = Some(("127.0.0.1".into(), p));
        } else if let Some(h) = &cfg.comm.ssh_host {
            ctx.ssh_address = Some((h.clone(), cfg.comm.ssh_port));
        }
        ctx.generated.insert("ID".into(), "VM".into());
        Ok(())
    }

    async fn cleanup(&mut self, ctx: &mut BuildContext) -> Result<(), CleanupError> {
        if let Some(m) = ctx.machine.take() {
            if m.exited().is_none() {
                ctx.ui.say("Stopping the VM");
            }
            m.kill().await;
        }
        let mut result = Ok(());
        if let Some(sock) = self.user_socket.take() {
            if let Err(e) = std::fs::remove_file(&sock) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    result = Err(CleanupError::new(
                        format!("cannot remove the QMP socket {}", sock.display()),
                        e,
                    ));
                }
            }
        }
        if let Some(t) = self.temp.take() {
            let path = t.path().to_owned();
            t.close()
                .map_err(|e| CleanupError::new(format!("cannot remove {}", path.display()), e))?;
        }
        result
    }
}

/// Compact (and optionally compress) the disk with `qemu-img convert`, give the disks their
/// final names, then hand the files over as the artifact, with the facts the steps gathered.
pub struct FinishDisk {
    cfg: Arc<QemuConfig>,
    driver: Arc<dyn Driver>,
    source_name: String,
    /// The disks may be chains of overlays (the layer cache): always converted.
    flatten: bool,
}

impl FinishDisk {
    /// The step for `cfg`, building the artifact of source `source_name`.
    pub fn new(cfg: Arc<QemuConfig>, driver: Arc<dyn Driver>, source_name: &str) -> Self {
        Self {
            cfg,
            driver,
            source_name: source_name.to_owned(),
            flatten: false,
        }
    }

    /// The step for disks that may be chains of overlays (the layer cache's): each disk is
    /// converted into one file (on the base image with `use_backing_file`), and the frozen
    /// files of the chain are removed.
    pub fn flattening(mut self) -> Self {
        self.flatten = true;
        self
    }

    /// The base image of a `use_backing_file` disk made from a chain (its path, format).
    async fn backing(&self, ctx: &BuildContext) -> Result<Option<(PathBuf, String)>, StepError> {
        if !(self.flatten && self.cfg.disk_image && self.cfg.use_backing_file) {
            return Ok(None);
        }
        let base = ctx.require_iso()?;
        let base = std::fs::canonicalize(base)
            .map_err(|e| StepError::with(format!("cannot resolve {}", base.display()), e))?;
        let (format, _) = self.driver.img_info(&base).await.map_err(|e| {
            StepError::with(format!("cannot read the disk image {}", base.display()), e)
        })?;
        Ok(Some((base, format)))
    }
}

#[async_trait]
impl Step for FinishDisk {
    fn name(&self) -> &'static str {
        "finish disk"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let cfg = &self.cfg;
        let out_dir = ctx.require_output_dir()?.to_owned();
        let vm_name = ctx.require_vm_name()?.to_owned();
        let disks = launch::disks(cfg, &out_dir, &vm_name);
        // As in Packer, only a qcow2 without a backing file is compacted (or compressed).
        let compact = !cfg.skip_compaction && !cfg.use_backing_file && cfg.format == "qcow2";
        let backing = self.backing(ctx).await?;
        for (i, disk) in disks.iter().enumerate() {
            let partial = launch::partial(disk);
            // With layers, the disk is a chain of overlays: its top is read, all of it joined.
            let chain = super::layer::chain(&partial);
            let building = chain.last().cloned().unwrap_or_else(|| partial.clone());
            if let (0, Some((base, base_format))) = (i, &backing) {
                // An overlay on the base image, as without the cache: the top of the chain
                // takes in what the layers below it hold, then replaces the chain.
                ctx.ui
                    .say("Joining the cached layers onto the base image...");
                let op = ImgOp::Rebase {
                    path: building.clone(),
                    base: base.clone(),
                    base_format: base_format.clone(),
                };
                self.driver
                    .img(&op, &ctx.ui.reporter())
                    .await
                    .map_err(|e| {
                        StepError::with(format!("cannot join the layers of {}", disk.display()), e)
                    })?;
                std::fs::rename(&building, disk).map_err(|e| {
                    StepError::with(format!("cannot rename {}", building.display()), e)
                })?;
                for file in &chain[..chain.len() - 1] {
                    let _ = std::fs::remove_file(file);
                }
                continue;
            }
            if !self.flatten && (i > 0 || !compact) {
                std::fs::rename(&building, disk).map_err(|e| {
                    StepError::with(format!("cannot rename {}", building.display()), e)
                })?;
                continue;
            }
            // The compacted copy holds at most the data the disk has allocated.
            let allocated = std::fs::metadata(&building).map_or(0, |m| {
                std::os::unix::fs::MetadataExt::blocks(&m).saturating_mul(512)
            });
            crate::artifact::stream::ensure_space(disk, allocated).map_err(|e| {
                StepError::with(format!("cannot compact the disk {}", building.display()), e)
            })?;
            let compress = i == 0 && compact && cfg.disk_compression;
            ctx.ui.say(match (self.flatten, compress) {
                (true, _) => "Converting hard drive (joining the cached layers)...",
                (false, true) => "Converting hard drive (compacting and compressing)...",
                (false, false) => "Converting hard drive (compacting)...",
            });
            let reporter = ctx.ui.reporter();
            let driver = self.driver.clone();
            let extra = cfg.qemu_img_args.convert.clone();
            let convert = |dst| {
                let op = ImgOp::Convert {
                    src: building.clone(),
                    dst,
                    format: cfg.format.clone(),
                    compress,
                    extra: extra.clone(),
                };
                async move { driver.img(&op, &reporter).await.map_err(Cause::from) }
            };
            crate::artifact::write_through_temp_async(disk, convert, Cause::from)
                .await
                .map_err(|e| {
                    StepError::with(format!("cannot compact the disk {}", building.display()), e)
                })?;
            for file in &chain {
                std::fs::remove_file(file)
                    .map_err(|e| StepError::with(format!("cannot remove {}", file.display()), e))?;
            }
        }
        let mut files = disks;
        let efivars = out_dir.join("efivars.fd");
        if cfg.efi_enabled() && efivars.exists() {
            if cfg.efi_drop_efivars {
                let _ = std::fs::remove_file(&efivars);
            } else {
                files.push(efivars);
            }
        }
        ctx.artifact = Some(Artifact {
            builder_id: BUILDER_ID.into(),
            build_name: self.source_name.clone(),
            builder_type: "qemu".into(),
            files,
            id: "VM".into(),
            description: format!("VM files in directory: {}", out_dir.display()),
            facts: ctx.facts.clone(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::qemu::driver::testing::FakeDriver;
    use crate::config::weak::ImgSize;
    use crate::pipeline::context::testing::{context, setup, Setup};

    fn cfg(f: impl FnOnce(&mut QemuConfig)) -> Arc<QemuConfig> {
        let mut c = QemuConfig::default();
        f(&mut c);
        Arc::new(c)
    }

    /// `iso_skip_cache`: the URL goes to QEMU as it is (commas doubled for -drive).
    #[tokio::test]
    async fn iso_skip_cache_hands_qemu_the_url() {
        let mut s = setup();
        UseIsoUrl::new("https://example.invalid/a,b.iso")
            .run(&mut s.ctx)
            .await
            .unwrap();
        assert_eq!(
            s.ctx.iso_path.as_deref(),
            Some(std::path::Path::new("https://example.invalid/a,,b.iso"))
        );
        UseIsoUrl::new("file:///srv/a.iso")
            .run(&mut s.ctx)
            .await
            .unwrap();
        assert_eq!(
            s.ctx.iso_path.as_deref(),
            Some(std::path::Path::new("/srv/a.iso"))
        );
    }

    #[tokio::test]
    async fn create_disk_creates_the_main_and_additional_disks() {
        let mut s = setup();
        let d = Arc::new(FakeDriver::default());
        let c = cfg(|c| {
            c.disk_size = Some("2G".parse().unwrap());
            c.disk_additional_size = vec!["1G".parse::<ImgSize>().unwrap()];
            c.qemu_img_args.create = vec!["-o".into(), "cluster_size=2M".into()];
        });
        CreateDisk::new(c, d.clone()).run(&mut s.ctx).await.unwrap();
        let o = s.out.display();
        assert_eq!(
            d.calls(),
            [
                format!("img create qcow2 {o}/vm.partial 2048M -o cluster_size=2M"),
                format!("img create qcow2 {o}/vm-1.partial 1G -o cluster_size=2M"),
            ]
        );
        assert_eq!(s.ctx.facts.disk_size_mib, Some(2048));
        assert_eq!(s.ctx.facts.disk_name.as_deref(), Some("vm"));
    }

    #[tokio::test]
    async fn create_disk_from_a_disk_image_copies_or_overlays_then_resizes() {
        let mut s = setup();
        let base = s.out.parent().unwrap().join("base.qcow2");
        std::fs::write(&base, b"img").unwrap();
        s.ctx.iso_path = Some(base.clone());
        let d = Arc::new(FakeDriver {
            info: ("qcow2".into(), 1 << 30),
            ..FakeDriver::default()
        });
        let c = cfg(|c| {
            c.disk_image = true;
            c.disk_size = Some("4G".parse().unwrap());
        });
        CreateDisk::new(c, d.clone()).run(&mut s.ctx).await.unwrap();
        let o = s.out.display();
        let b = base.display();
        assert_eq!(
            d.calls(),
            [
                format!("img info {b}"),
                format!("img convert {b} {o}/vm.partial qcow2"),
                format!("img resize {o}/vm.partial 4096"),
            ]
        );
        let d = Arc::new(FakeDriver {
            info: ("qcow2".into(), 1 << 30),
            ..FakeDriver::default()
        });
        let c = cfg(|c| {
            c.disk_image = true;
            c.use_backing_file = true;
            c.skip_resize_disk = true;
        });
        CreateDisk::new(c, d.clone()).run(&mut s.ctx).await.unwrap();
        let real = std::fs::canonicalize(&base).unwrap();
        assert_eq!(
            d.calls()[1],
            format!("img overlay {} (qcow2) {o}/vm.partial", real.display())
        );
        assert_eq!(d.calls().len(), 2, "no resize with skip_resize_disk");
    }

    #[tokio::test]
    async fn create_disk_refuses_to_shrink_a_disk_image() {
        let mut s = setup();
        s.ctx.iso_path = Some(s.out.join("base"));
        let d = Arc::new(FakeDriver {
            info: ("qcow2".into(), 8 << 30),
            ..FakeDriver::default()
        });
        let c = cfg(|c| {
            c.disk_image = true;
            c.disk_size = Some("1G".parse().unwrap());
        });
        let e = CreateDisk::new(c, d.clone())
            .run(&mut s.ctx)
            .await
            .unwrap_err()
            .report();
        assert!(
            e.contains("smaller than the disk image") && e.contains("skip_resize_disk"),
            "{e}"
        );
        assert_eq!(d.calls().len(), 1, "only qemu-img info ran");
    }

    #[tokio::test]
    async fn create_disk_reports_a_driver_failure_with_the_disk_and_the_cause() {
        let mut s = setup();
        let d = Arc::new(FakeDriver {
            fail_img: Some("create"),
            ..FakeDriver::default()
        });
        let e = CreateDisk::new(cfg(|_| {}), d)
            .run(&mut s.ctx)
            .await
            .unwrap_err()
            .report();
        assert!(
            e.contains("cannot create the disk") && e.contains("No space left on device"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn create_disk_needs_the_output_directory_and_the_disk_image() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        let d = Arc::new(FakeDriver::default());
        let e = CreateDisk::new(cfg(|_| {}), d.clone())
            .run(&mut ctx)
            .await
            .unwrap_err();
        assert!(matches!(
            e,
            StepError::MissingState {
                producer: "output directory",
                ..
            }
        ));
        let mut s = setup();
        let e = CreateDisk::new(cfg(|c| c.disk_image = true), d.clone())
            .run(&mut s.ctx)
            .await
            .unwrap_err();
        assert!(matches!(
            e,
            StepError::MissingState {
                producer: "download",
                ..
            }
        ));
        assert!(d.calls().is_empty());
    }

    #[tokio::test]
    async fn choose_accelerator_falls_back_with_a_warning_and_records_the_machine() {
        let mut s = setup();
        let d = Arc::new(FakeDriver {
            kvm_unusable: Some("guests hang"),
            ..FakeDriver::default()
        });
        let c = cfg(|c| {
            c.accelerator = "auto".into();
            c.cpus = Some(3);
            c.memory = 1536;
        });
        ChooseAccelerator::new(c, d.clone())
            .run(&mut s.ctx)
            .await
            .unwrap();
        assert_eq!(s.ctx.facts.accelerator.as_deref(), Some("tcg"));
        assert_eq!(
            (s.ctx.facts.cpus, s.ctx.facts.memory_mib),
            (Some(3), Some(1536))
        );
        assert_eq!(s.ctx.facts.firmware, Some(Firmware::Bios));
        let e = ChooseAccelerator::new(cfg(|c| c.accelerator = "kvm".into()), d)
            .run(&mut s.ctx)
            .await
            .unwrap_err()
            .report();
        assert!(
            e.contains("cannot work here") && e.contains("guests hang"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn copy_efi_vars_copies_the_template_or_says_what_to_install() {
        let mut s = setup();
        let vars = s.out.parent().unwrap().join("VARS.fd");
        std::fs::write(&vars, b"vars").unwrap();
        let c = cfg(|c| c.efi_firmware_vars = Some(vars.display().to_string()));
        CopyEfiVars::new(c).run(&mut s.ctx).await.unwrap();
        assert_eq!(std::fs::read(s.out.join("efivars.fd")).unwrap(), b"vars");
        let c = cfg(|c| c.efi_firmware_vars = Some("/no/such/VARS.fd".into()));
        let e = CopyEfiVars::new(c)
            .run(&mut s.ctx)
            .await
            .unwrap_err()
            .report();
        // The OS error follows the message; the hint comes last, not run into it.
        assert_eq!(
            e,
            "cannot copy the UEFI variables /no/such/VARS.fd: No such file or directory (os error 2)\nhint: install ovmf or set efi_firmware_vars"
        );
        // Without UEFI there is nothing to copy.
        CopyEfiVars::new(cfg(|_| {})).run(&mut s.ctx).await.unwrap();
    }

    fn ready_for_start(s: &mut Setup) {
        s.ctx.iso_path = Some(s.out.join("installer.iso"));
        s.ctx.facts.accelerator = Some("tcg".into());
        s.ctx.ssh_host_port = Some(2222);
    }

    #[tokio::test]
    async fn start_vm_launches_the_plan_and_hands_over_the_machine_then_stops_it() {
        let mut s = setup();
        ready_for_start(&mut s);
        let d = Arc::new(FakeDriver::default());
        let mut step = StartVm::new(cfg(|c| c.headless = true), d.clone());
        step.run(&mut s.ctx).await.unwrap();
        let spec = d.started.lock().unwrap().clone().unwrap();
        let argv = spec.argv.join(" ");
        assert!(argv.contains("accel=tcg"), "{argv}");
        assert!(argv.contains("hostfwd=tcp:127.0.0.1:2222-:22"), "{argv}");
        assert!(argv.contains("installer.iso,media=cdrom"), "{argv}");
        assert!(
            spec.qmp_socket.starts_with(std::env::temp_dir()),
            "{spec:?}"
        );
        assert!(s.ctx.machine.is_some());
        assert_eq!(s.ctx.ssh_address, Some(("127.0.0.1".into(), 2222)));
        let temp = spec.qmp_socket.parent().unwrap().to_owned();
        assert!(temp.is_dir());
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&temp), 0o700, "private directory");
        assert_eq!(mode(&spec.serial_log), 0o600, "private serial log");
        step.cleanup(&mut s.ctx).await.unwrap();
        assert_eq!(d.machine.calls(), ["kill"]);
        assert!(s.ctx.machine.is_none());
        assert!(!temp.exists(), "the private directory is removed");
    }

    #[tokio::test]
    async fn start_vm_failure_is_reported_and_cleanup_still_removes_its_directory() {
        let mut s = setup();
        ready_for_start(&mut s);
        let d = Arc::new(FakeDriver {
            fail_start: true,
            ..FakeDriver::default()
        });
        let mut step = StartVm::new(cfg(|_| {}), d.clone());
        let e = step.run(&mut s.ctx).await.unwrap_err().report();
        assert!(
            e.contains("cannot start the VM") && e.contains("could not open disk"),
            "{e}"
        );
        let temp = d.started.lock().unwrap().clone().unwrap().qmp_socket;
        step.cleanup(&mut s.ctx).await.unwrap();
        assert!(!temp.parent().unwrap().exists());
        assert!(d.machine.calls().is_empty(), "no machine to stop");
    }

    #[tokio::test]
    async fn start_vm_needs_the_accelerator_and_reports_a_bad_qemuargs_template() {
        let mut s = setup();
        s.ctx.iso_path = Some(s.out.join("i.iso"));
        let d = Arc::new(FakeDriver::default());
        let e = StartVm::new(cfg(|_| {}), d.clone())
            .run(&mut s.ctx)
            .await
            .unwrap_err();
        assert!(matches!(
            e,
            StepError::MissingState {
                producer: "choose accelerator",
                ..
            }
        ));
        s.ctx.facts.accelerator = Some("tcg".into());
        let c = cfg(|c| c.qemuargs = vec![vec!["-name".into(), "{{ .Name".into()]]);
        let e = StartVm::new(c, d.clone())
            .run(&mut s.ctx)
            .await
            .unwrap_err()
            .report();
        assert!(e.contains("cannot render qemuargs"), "{e}");
        assert!(d.calls().is_empty(), "QEMU was not started");
    }

    #[tokio::test]
    async fn finish_disk_compacts_then_makes_the_artifact_with_the_facts() {
        let mut s = setup();
        std::fs::write(s.out.join("vm.partial"), b"disk").unwrap();
        s.ctx.facts.cpus = Some(3);
        s.ctx.facts.memory_mib = Some(1536);
        let d = Arc::new(FakeDriver::default());
        FinishDisk::new(cfg(|c| c.disk_compression = true), d.clone(), "x")
            .run(&mut s.ctx)
            .await
            .unwrap();
        let o = s.out.display();
        assert_eq!(
            d.calls(),
            [format!("img convert {o}/vm.partial {o}/vm.tmp qcow2 -c")]
        );
        let mut left: Vec<_> = std::fs::read_dir(&s.out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["vm"], "the compacted disk replaces the one built");
        let a = s.ctx.artifact.clone().unwrap();
        assert_eq!(a.files, [s.out.join("vm")]);
        assert_eq!((a.facts.cpus, a.facts.memory_mib), (Some(3), Some(1536)));
        assert_eq!(a.builder_id, BUILDER_ID);
    }

    #[tokio::test]
    async fn finish_disk_failure_leaves_no_temporary_file_and_no_artifact() {
        let mut s = setup();
        std::fs::write(s.out.join("vm.partial"), b"disk").unwrap();
        let d = Arc::new(FakeDriver {
            fail_img: Some("convert"),
            ..FakeDriver::default()
        });
        let e = FinishDisk::new(cfg(|_| {}), d, "x")
            .run(&mut s.ctx)
            .await
            .unwrap_err()
            .report();
        assert!(
            e.contains("cannot compact") && e.contains("No space left"),
            "{e}"
        );
        assert!(!s.out.join("vm.tmp").exists());
        assert!(!s.out.join("vm").exists(), "nothing at the final name");
        assert_eq!(std::fs::read(s.out.join("vm.partial")).unwrap(), b"disk");
        assert!(s.ctx.artifact.is_none());
    }

    #[tokio::test]
    async fn finish_disk_skips_compaction_for_raw_and_backing_files() {
        for c in [
            cfg(|c| c.format = "raw".into()),
            cfg(|c| c.use_backing_file = true),
            cfg(|c| c.skip_compaction = true),
        ] {
            let mut s = setup();
            std::fs::write(s.out.join("vm.partial"), b"disk").unwrap();
            let d = Arc::new(FakeDriver::default());
            FinishDisk::new(c, d.clone(), "x")
                .run(&mut s.ctx)
                .await
                .unwrap();
            assert!(d.calls().is_empty());
            assert!(s.ctx.artifact.is_some());
            assert_eq!(std::fs::read(s.out.join("vm")).unwrap(), b"disk");
            assert!(!s.out.join("vm.partial").exists());
        }
    }

    /// With the layer cache the disk is a chain of overlays (`vm.partial`, `.1`, `.2`): its top
    /// is converted into the disk, or, with `use_backing_file`, joined onto the base image in
    /// place; no file of the chain is left.
    #[tokio::test]
    async fn finish_disk_joins_a_layer_chain_into_the_disk() {
        for backing in [false, true] {
            let mut s = setup();
            for f in ["vm.partial", "vm.partial.1", "vm.partial.2"] {
                std::fs::write(s.out.join(f), f).unwrap();
            }
            let base = s.dir.path().join("base.qcow2");
            std::fs::write(&base, b"base").unwrap();
            s.ctx.iso_path = Some(base.clone());
            let c = cfg(|c| {
                c.disk_image = backing;
                c.use_backing_file = backing;
            });
            let d = Arc::new(FakeDriver::default());
            FinishDisk::new(c, d.clone(), "x")
                .flattening()
                .run(&mut s.ctx)
                .await
                .unwrap();
            let top = s.out.join("vm.partial.2");
            let calls = d.calls().join("\n");
            if backing {
                let base = std::fs::canonicalize(&base).unwrap();
                let want = format!("img rebase {} {}", top.display(), base.display());
                assert!(calls.contains(&want), "{calls}");
            } else {
                let want = format!("img convert {} ", top.display());
                assert!(calls.contains(&want), "{calls}");
            }
            assert!(s.out.join("vm").exists());
            let left: Vec<_> = std::fs::read_dir(&s.out)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(left, ["vm"], "with backing file: {backing}");
        }
    }

    /// Compacting needs room for a copy: refused up front, saying how much, when the disk's
    /// filesystem lacks it; the building disk stays, nothing sits at the final name.
    #[tokio::test]
    async fn finish_disk_checks_free_space_before_compacting() {
        let Some(fs) = crate::artifact::stream::testing::Tmpfs::mount() else {
            return;
        };
        let mut ctx = context(fs.path());
        ctx.output_dir = Some(fs.path().to_owned());
        ctx.vm_name = Some("vm".into());
        // 3 MiB of data on a 4 MiB filesystem: no room for a second copy.
        std::fs::write(fs.path().join("vm.partial"), vec![7u8; 3 << 20]).unwrap();
        let driver = Arc::new(FakeDriver::default());
        let e = FinishDisk::new(cfg(|_| {}), driver.clone(), "x")
            .run(&mut ctx)
            .await
            .unwrap_err()
            .report();
        assert!(e.contains("cannot compact the disk"), "{e}");
        assert!(
            e.contains("not enough free space") && e.contains("3.0 MiB"),
            "{e}"
        );
        assert!(driver.calls().is_empty(), "qemu-img must not run");
        assert_eq!(fs.listing(), [fs.path().join("vm.partial")]);
    }

    #[tokio::test]
    async fn finish_disk_gives_every_disk_its_final_name() {
        let mut s = setup();
        for f in ["vm.partial", "vm-1.partial"] {
            std::fs::write(s.out.join(f), f).unwrap();
        }
        let c = cfg(|c| c.disk_additional_size = vec!["1G".parse::<ImgSize>().unwrap()]);
        FinishDisk::new(c, Arc::new(FakeDriver::default()), "x")
            .run(&mut s.ctx)
            .await
            .unwrap();
        let mut left: Vec<_> = std::fs::read_dir(&s.out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["vm", "vm-1"]);
        assert_eq!(std::fs::read(s.out.join("vm-1")).unwrap(), b"vm-1.partial");
        assert_eq!(
            s.ctx.artifact.unwrap().files,
            [s.out.join("vm"), s.out.join("vm-1")]
        );
    }
}
