//! The QEMU driver seam: everything the QEMU steps ask of the host's QEMU tools — the
//! accelerator probe, `qemu-img`, and starting `qemu-system-*` — behind one trait, so the steps
//! run against [`HostDriver`] in builds and against a recording fake in their unit tests
//! (`testing::FakeDriver`), as Packer's steps run against its `DriverMock`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::accel::{self, AccelError, Choice};
use super::img::{self, ImgError};
use super::machine::QemuMachine;
pub use super::machine::{StartError, StartSpec};
use super::process::QemuProcess;
use crate::pipeline::Machine;
use crate::ui::progress::Reporter;

/// One `qemu-img` operation, as a value: the driver runs it, the fake records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImgOp {
    /// `qemu-img create -f FORMAT [extra] PATH SIZE`.
    Create {
        /// `format`.
        format: String,
        /// `qemu_img_args.create`.
        extra: Vec<String>,
        /// The new disk.
        path: PathBuf,
        /// Its size as qemu-img reads it (`40960M`; a plain number is bytes).
        size: String,
    },
    /// A qcow2 overlay on `base` (`use_backing_file`).
    Overlay {
        /// The base image (absolute).
        base: PathBuf,
        /// Its format.
        base_format: String,
        /// `qemu_img_args.create`.
        extra: Vec<String>,
        /// The overlay.
        path: PathBuf,
    },
    /// `qemu-img convert -O FORMAT [-c] [extra] SRC DST`.
    Convert {
        /// Source.
        src: PathBuf,
        /// Destination.
        dst: PathBuf,
        /// Output format.
        format: String,
        /// `-c` (`disk_compression`).
        compress: bool,
        /// `qemu_img_args.convert`.
        extra: Vec<String>,
    },
    /// `qemu-img rebase -b BASE -F FORMAT PATH`: make `path` an overlay on `base` holding
    /// everything its chain has that `base` lacks (joining the layer cache's chain onto the
    /// base image of a `use_backing_file` build).
    Rebase {
        /// The overlay.
        path: PathBuf,
        /// The new backing file (absolute).
        base: PathBuf,
        /// Its format.
        base_format: String,
    },
    /// `qemu-img resize [extra] PATH SIZE` (grow only).
    Resize {
        /// The disk.
        path: PathBuf,
        /// The new size in MiB.
        mib: u64,
        /// `qemu_img_args.resize`.
        extra: Vec<String>,
    },
}

impl ImgOp {
    /// The file the operation writes.
    pub fn target(&self) -> &Path {
        match self {
            ImgOp::Create { path, .. }
            | ImgOp::Overlay { path, .. }
            | ImgOp::Rebase { path, .. }
            | ImgOp::Resize { path, .. } => path,
            ImgOp::Convert { dst, .. } => dst,
        }
    }
}

/// A started QEMU.
pub struct Started {
    /// The machine the shared steps use.
    pub machine: Arc<dyn Machine>,
    /// Its process id (`vm-pid` in machine-readable output).
    pub pid: u32,
}

/// What the QEMU steps need from the host.
#[async_trait]
pub trait Driver: Send + Sync {
    /// Choose the accelerator for the template's `accelerator` (probing KVM for `auto`/`kvm`).
    async fn choose_accelerator(&self, binary: &str, requested: &str)
        -> Result<Choice, AccelError>;
    /// The format and virtual size (bytes) of a disk image.
    async fn img_info(&self, path: &Path) -> Result<(String, u64), ImgError>;
    /// Run one `qemu-img` operation; a conversion reports its progress to `progress`.
    async fn img(&self, op: &ImgOp, progress: &dyn Reporter) -> Result<(), ImgError>;
    /// Start QEMU and wait until it answers on QMP.
    async fn start(&self, spec: &StartSpec) -> Result<Started, StartError>;
}

/// The real driver: the host's `qemu-img` and `qemu-system-*`.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostDriver;

#[async_trait]
impl Driver for HostDriver {
    async fn choose_accelerator(
        &self,
        binary: &str,
        requested: &str,
    ) -> Result<Choice, AccelError> {
        accel::choose(binary, requested).await
    }

    async fn img_info(&self, path: &Path) -> Result<(String, u64), ImgError> {
        img::info(path).await
    }

    async fn img(&self, op: &ImgOp, progress: &dyn Reporter) -> Result<(), ImgError> {
        match op {
            ImgOp::Create {
                format,
                extra,
                path,
                size,
            } => img::create(format, extra, path, size).await,
            ImgOp::Overlay {
                base,
                base_format,
                extra,
                path,
            } => img::create_overlay(base, base_format, extra, path).await,
            ImgOp::Convert {
                src,
                dst,
                format,
                compress,
                extra,
            } => img::convert(src, dst, format, *compress, extra, progress).await,
            ImgOp::Resize { path, mib, extra } => img::resize(path, *mib, extra).await,
            ImgOp::Rebase {
                path,
                base,
                base_format,
            } => img::rebase(path, base, base_format).await,
        }
    }

    async fn start(&self, spec: &StartSpec) -> Result<Started, StartError> {
        let process =
            QemuProcess::spawn(&spec.binary, &spec.argv).map_err(|source| StartError::Spawn {
                binary: spec.binary.clone(),
                source,
            })?;
        let pid = process.pid();
        let machine = QemuMachine::new(process, spec);
        // QEMU greets on QMP only once its arguments are checked and its files opened: wait
        // for that (an exit before it is reported with QEMU's stderr, not as a mysterious SSH
        // timeout later), instead of sleeping a fixed time.
        let mut qmp = machine.qmp(Duration::from_secs(60)).await?;
        if let Some(pw) = &spec.vnc_password {
            qmp.execute_with::<_, serde_json::Value>(
                "change-vnc-password",
                &serde_json::json!({ "password": pw }),
            )
            .await
            .map_err(|source| StartError::Qmp {
                what: "set the VNC password",
                source,
            })?;
        }
        if let Some(memory) = &spec.incoming {
            super::layer::resume(&mut qmp, memory)
                .await
                .map_err(StartError::Resume)?;
        }
        Ok(Started {
            machine: Arc::new(machine.answered()),
            pid,
        })
    }
}

#[cfg(test)]
pub mod testing {
    //! [`FakeDriver`]: records what the QEMU steps ask and answers as told.
    use std::sync::Mutex;

    use super::*;
    use crate::pipeline::machine::testing::FakeMachine;

    /// A driver that records every call and fails the ones it is told to.
    #[derive(Default)]
    pub struct FakeDriver {
        /// Every call, in order, as text (`img create qcow2 /o/vm 1024`, `start …`).
        pub calls: Mutex<Vec<String>>,
        /// Fail the `qemu-img` operation whose call text contains this.
        pub fail_img: Option<&'static str>,
        /// Fail the start.
        pub fail_start: bool,
        /// What the probe answers: `None` means KVM works.
        pub kvm_unusable: Option<&'static str>,
        /// `img_info`'s answer.
        pub info: (String, u64),
        /// The machine `start` returns.
        pub machine: Arc<FakeMachine>,
        /// The last start's spec.
        pub started: Mutex<Option<StartSpec>>,
    }

    impl FakeDriver {
        /// The calls so far.
        pub fn calls(&self) -> Vec<String> {
            self.calls.lock().map(|c| c.clone()).unwrap_or_default()
        }
        fn record(&self, call: String) {
            if let Ok(mut c) = self.calls.lock() {
                c.push(call);
            }
        }
    }

    fn describe(op: &ImgOp) -> String {
        let p = |p: &Path| p.display().to_string();
        match op {
            ImgOp::Create {
                format,
                path,
                size,
                extra,
            } => {
                format!(
                    "img create {format} {} {size}{}",
                    p(path),
                    extra_text(extra)
                )
            }
            ImgOp::Overlay {
                base,
                base_format,
                path,
                ..
            } => {
                format!("img overlay {} ({base_format}) {}", p(base), p(path))
            }
            ImgOp::Convert {
                src,
                dst,
                format,
                compress,
                extra,
            } => format!(
                "img convert {} {} {format}{}{}",
                p(src),
                p(dst),
                if *compress { " -c" } else { "" },
                extra_text(extra)
            ),
            ImgOp::Resize { path, mib, .. } => format!("img resize {} {mib}", p(path)),
            ImgOp::Rebase {
                path,
                base,
                base_format,
            } => format!("img rebase {} {} ({base_format})", p(path), p(base)),
        }
    }

    fn extra_text(extra: &[String]) -> String {
        extra.iter().map(|e| format!(" {e}")).collect()
    }

    #[async_trait]
    impl Driver for FakeDriver {
        async fn choose_accelerator(
            &self,
            _binary: &str,
            requested: &str,
        ) -> Result<Choice, AccelError> {
            self.record(format!("accelerator {requested}"));
            let kvm = self.kvm_unusable.map(|r| accel::KvmUnusable(r.to_owned()));
            match (requested, kvm) {
                ("kvm", Some(why)) => Err(AccelError(why)),
                ("auto", Some(why)) => Ok(Choice {
                    accel: "tcg".into(),
                    fallback: Some(why.0),
                }),
                ("auto" | "kvm", None) => Ok(Choice {
                    accel: "kvm".into(),
                    fallback: None,
                }),
                (other, _) => Ok(Choice {
                    accel: other.into(),
                    fallback: None,
                }),
            }
        }

        async fn img_info(&self, path: &Path) -> Result<(String, u64), ImgError> {
            self.record(format!("img info {}", path.display()));
            Ok(self.info.clone())
        }

        async fn img(&self, op: &ImgOp, _progress: &dyn Reporter) -> Result<(), ImgError> {
            let call = describe(op);
            self.record(call.clone());
            if self.fail_img.is_some_and(|f| call.contains(f)) {
                return Err(ImgError::Io(std::io::Error::other(
                    "No space left on device",
                )));
            }
            // The files exist afterwards, as with qemu-img, so later steps can see them.
            if !matches!(op, ImgOp::Resize { .. }) {
                let _ = std::fs::write(op.target(), b"fake disk");
            }
            Ok(())
        }

        async fn start(&self, spec: &StartSpec) -> Result<Started, StartError> {
            self.record(format!("start {} {}", spec.binary, spec.argv.join(" ")));
            if let Ok(mut s) = self.started.lock() {
                *s = Some(spec.clone());
            }
            if self.fail_start {
                return Err(StartError::Exited(
                    "QEMU exited with exit status: 1; its stderr:\nqemu: could not open disk"
                        .into(),
                ));
            }
            Ok(Started {
                machine: self.machine.clone(),
                pid: 4242,
            })
        }
    }
}
