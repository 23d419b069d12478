//! [`BuildContext`]: what the steps of one build share. Typed fields instead of Packer's
//! string-keyed state bag, so the compiler checks who provides what.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::artifact::Artifact;
use crate::communicator::Communicator;
use crate::ui::BuildUi;

/// `-on-error`: what to do with a failed build's resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Clean up everything (Packer's default).
    #[default]
    Cleanup,
    /// Leave everything as it is (VM running) and say how to reach it.
    Abort,
    /// Ask on the terminal: clean up, abort or retry the step.
    Ask,
    /// Run the `error-cleanup-provisioner`, then leave everything else as with `Abort`.
    RunCleanupProvisioner,
}

/// Where the built-in HTTP server listens, as the guest sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpInfo {
    /// `{{ .HTTPIP }}`: the address the guest uses (10.0.2.2 with QEMU user networking).
    pub ip: String,
    /// `{{ .HTTPPort }}`.
    pub port: u16,
}

/// What the steps of one build share.
pub struct BuildContext {
    /// `qemu.debian`.
    pub name: String,
    /// Output of this build.
    pub ui: BuildUi,
    /// Cancelled on Ctrl-C / SIGTERM; long waits watch it.
    pub cancel: CancellationToken,
    /// The template's directory: relative paths in options are resolved against it.
    pub template_dir: PathBuf,
    /// `-force`: replace an existing output directory.
    pub force: bool,
    /// `-on-error`.
    pub on_error: OnError,
    /// `-debug`: pause before each step.
    pub debug: bool,
    /// The verified ISO or disk image, once fetched.
    pub iso_path: Option<PathBuf>,
    /// The floppy image made from `floppy_*`, once made.
    pub floppy_path: Option<PathBuf>,
    /// Set once the HTTP server runs.
    pub http: Option<HttpInfo>,
    /// Set once the guest answers SSH.
    pub communicator: Option<Arc<dyn Communicator>>,
    /// Host address and port that reach the guest's SSH server.
    pub ssh_address: Option<(String, u16)>,
    /// Values Packer exposes to provisioners and post-processors as `build.*`
    /// (`ID`, `Host`, `Port`, `User`, `SSHPublicKey`, `PackerHTTPAddr`…).
    pub generated: BTreeMap<String, String>,
    /// Set by the builder's last step.
    pub artifact: Option<Artifact>,
    /// Set by the runner before cleaning up: a step failed (not a cancellation). The
    /// provision step then runs the `error-cleanup-provisioner`, as Packer does.
    pub build_failed: bool,
    /// Set by the runner when `-on-error` left the build's resources in place (abort): the
    /// CLI then exits without stopping the VM.
    pub left_running: bool,
}

impl BuildContext {
    /// A context for the build `name` with nothing set up yet.
    pub fn new(name: &str, ui: BuildUi, cancel: CancellationToken, template_dir: PathBuf) -> Self {
        Self {
            name: name.to_owned(),
            ui,
            cancel,
            template_dir,
            force: false,
            on_error: OnError::Cleanup,
            debug: false,
            iso_path: None,
            floppy_path: None,
            http: None,
            communicator: None,
            ssh_address: None,
            generated: BTreeMap::new(),
            artifact: None,
            build_failed: false,
            left_running: false,
        }
    }

    /// A path from the template, resolved against the template's directory.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = PathBuf::from(path);
        if p.is_absolute() {
            p
        } else {
            self.template_dir.join(p)
        }
    }
}
