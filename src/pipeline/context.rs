//! [`BuildContext`]: what the steps of one build share. Typed fields instead of Packer's
//! string-keyed state bag, so the compiler checks who provides what; a value a step needs is
//! read through a `require_*` accessor that fails with [`StepError::MissingState`] naming the
//! step that should have set it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::machine::Machine;
use super::StepError;
use crate::artifact::{Artifact, MachineFacts};
use crate::communicator::Communicator;
use crate::ui::BuildUi;

/// `-on-error`: what to do with a failed build's resources (the CLI flag parses into it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OnError {
    /// Clean up everything (Packer's default).
    #[default]
    Cleanup,
    /// Leave everything as it is (VM running) and say how to reach it.
    Abort,
    /// Ask on the terminal: clean up, abort or retry the step.
    Ask,
    /// Run the `error-cleanup-provisioner`, then leave everything else as with `Abort`.
    #[value(name = "run-cleanup-provisioner")]
    RunCleanupProvisioner,
}

/// Where the built-in HTTP server listens, as the guest sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpInfo {
    /// `{{ .HTTPIP }}`: the address the guest uses (10.0.2.2 with QEMU user networking).
    pub ip: String,
    /// `{{ .HTTPPort }}`.
    pub port: u16,
    /// `{{ .HTTPDir }}`: `http_directory`, empty with `http_content`.
    pub dir: String,
}

/// A VNC server showing the guest's screen (QEMU's `-vnc`, VirtualBox's VRDE, VMware's
/// `RemoteDisplay.vnc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VncEndpoint {
    /// Address the server listens on.
    pub host: String,
    /// TCP port (5900 + display).
    pub port: u16,
    /// The random password, with `vnc_use_password`.
    pub password: Option<String>,
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
    /// `-on-error`.
    pub on_error: OnError,
    /// `-debug`: pause before each step.
    pub debug: bool,
    /// `vm_name` (set by the builder's output directory step).
    pub vm_name: Option<String>,
    /// `output_directory`, once created (output directory step).
    pub output_dir: Option<PathBuf>,
    /// The verified ISO or disk image, once fetched (download step).
    pub iso_path: Option<PathBuf>,
    /// The floppy image made from `floppy_*` (floppy step).
    pub floppy_path: Option<PathBuf>,
    /// The ISO made from `cd_files`/`cd_content` (CD step).
    pub cd_path: Option<PathBuf>,
    /// Set once the HTTP server runs (HTTP step).
    pub http: Option<HttpInfo>,
    /// The host port forwarded to the guest's SSH port (the builder's port step).
    pub ssh_host_port: Option<u16>,
    /// The control socket of an emulated TPM (QEMU's swtpm, `vtpm`).
    pub tpm_socket: Option<PathBuf>,
    /// The running VM (the builder's start step).
    pub machine: Option<Arc<dyn Machine>>,
    /// What the steps learn about the machine (accelerator, CPUs, memory, disk), handed to
    /// post-processors with the artifact.
    pub facts: MachineFacts,
    /// Where the guest's screen can be watched and typed into over VNC (start step).
    pub vnc: Option<VncEndpoint>,
    /// Set once the guest answers SSH (connect step).
    pub communicator: Option<Arc<dyn Communicator>>,
    /// Host address and port that reach the guest's SSH server.
    pub ssh_address: Option<(String, u16)>,
    /// Values Packer exposes to provisioners and post-processors as `build.*`
    /// (`ID`, `Host`, `Port`, `User`, `SSHPublicKey`, `PackerHTTPAddr`…).
    pub generated: BTreeMap<String, String>,
    /// The layer of kiln's layer cache the disks were created over (`kiln build -cache`; the
    /// builder's disk step): the guest is installed already, so it boots from its disk.
    pub from_layer: Option<PathBuf>,
    /// Set by the builder's last step.
    pub artifact: Option<Artifact>,
    /// Set by the runner before cleaning up: a step failed (not a cancellation). The
    /// provision step then runs the `error-cleanup-provisioner`, as Packer does.
    pub build_failed: bool,
    /// Set by the runner when `-on-error` left the build's resources in place (abort): the
    /// CLI then exits without stopping the VM.
    pub left_running: bool,
}

fn need<'a, T>(
    v: &'a Option<T>,
    key: &'static str,
    producer: &'static str,
) -> Result<&'a T, StepError> {
    v.as_ref().ok_or(StepError::MissingState { key, producer })
}

impl BuildContext {
    /// A context for the build `name` with nothing set up yet.
    pub fn new(name: &str, ui: BuildUi, cancel: CancellationToken, template_dir: PathBuf) -> Self {
        Self {
            name: name.to_owned(),
            ui,
            cancel,
            template_dir,
            on_error: OnError::Cleanup,
            debug: false,
            vm_name: None,
            output_dir: None,
            iso_path: None,
            floppy_path: None,
            cd_path: None,
            http: None,
            ssh_host_port: None,
            tpm_socket: None,
            machine: None,
            facts: MachineFacts::default(),
            vnc: None,
            communicator: None,
            ssh_address: None,
            generated: BTreeMap::new(),
            from_layer: None,
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

    /// The running VM.
    pub fn require_machine(&self) -> Result<Arc<dyn Machine>, StepError> {
        need(&self.machine, "the running machine", "start VM").cloned()
    }

    /// The output directory.
    pub fn require_output_dir(&self) -> Result<&Path, StepError> {
        need(&self.output_dir, "the output directory", "output directory").map(PathBuf::as_path)
    }

    /// `vm_name`.
    pub fn require_vm_name(&self) -> Result<&str, StepError> {
        need(&self.vm_name, "the VM name", "output directory").map(String::as_str)
    }

    /// The verified ISO or disk image.
    pub fn require_iso(&self) -> Result<&Path, StepError> {
        need(&self.iso_path, "the ISO or disk image", "download").map(PathBuf::as_path)
    }

    /// The connected communicator.
    pub fn require_communicator(&self) -> Result<Arc<dyn Communicator>, StepError> {
        need(&self.communicator, "the communicator", "connect").cloned()
    }

    /// The values a `{{ .Name }}`-style template (boot_command, qemuargs, vboxmanage…) can
    /// use, from what the steps have set so far: `HTTPIP`, `HTTPPort`, `HTTPDir`, `Name`,
    /// `OutputDir`, `SSHHostPort`, `SSHPublicKey`. Unset ones are empty, as in Packer.
    pub fn template_values(&self) -> BTreeMap<String, String> {
        let http = self.http.as_ref();
        BTreeMap::from([
            (
                "HTTPIP".to_owned(),
                http.map(|h| h.ip.clone()).unwrap_or_default(),
            ),
            (
                "HTTPPort".to_owned(),
                http.map(|h| h.port.to_string()).unwrap_or_default(),
            ),
            (
                "HTTPDir".to_owned(),
                http.map(|h| h.dir.clone()).unwrap_or_default(),
            ),
            ("Name".to_owned(), self.vm_name.clone().unwrap_or_default()),
            (
                "OutputDir".to_owned(),
                self.output_dir
                    .as_ref()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default(),
            ),
            (
                "SSHHostPort".to_owned(),
                self.ssh_host_port
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
            ),
            (
                "SSHPublicKey".to_owned(),
                self.generated
                    .get("SSHPublicKey")
                    .cloned()
                    .unwrap_or_default(),
            ),
        ])
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A context for step tests: a quiet UI, a fresh cancellation token, a temporary directory.
    use super::*;

    /// A context for the build `test.step` whose template directory is `dir`.
    pub fn context(dir: &Path) -> BuildContext {
        let ui = crate::ui::Ui::new(crate::ui::UiOptions {
            machine_readable: true,
            timestamps: false,
            color: false,
        });
        BuildContext::new(
            "test.step",
            ui.build("test.step"),
            CancellationToken::new(),
            dir.to_owned(),
        )
    }

    /// A step test's build: its temporary directory (kept for the test's life), the output
    /// directory `output-x` in it, and a context as the output directory step leaves it (output
    /// directory and VM name `vm` set).
    pub struct Setup {
        pub dir: tempfile::TempDir,
        pub out: std::path::PathBuf,
        pub ctx: BuildContext,
    }

    /// A fresh [`Setup`].
    pub fn setup() -> Setup {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let out = dir.path().join("output-x");
        std::fs::create_dir(&out).expect("the output directory");
        let mut ctx = context(dir.path());
        ctx.output_dir = Some(out.clone());
        ctx.vm_name = Some("vm".into());
        Setup { dir, out, ctx }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_names_the_missing_value_and_its_producer() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = testing::context(dir.path());
        let e = ctx.require_machine().err().unwrap();
        assert!(matches!(
            e,
            StepError::MissingState {
                producer: "start VM",
                ..
            }
        ));
        let e = ctx.require_output_dir().unwrap_err();
        assert!(e.to_string().contains("output directory"), "{e}");
        assert!(ctx
            .require_iso()
            .unwrap_err()
            .to_string()
            .contains("download"));
        assert!(ctx
            .require_communicator()
            .err()
            .unwrap()
            .to_string()
            .contains("connect"));
    }

    #[test]
    fn validate_renders_boot_commands_with_the_names_the_build_sets() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = testing::context(dir.path());
        let built: Vec<String> = ctx.template_values().into_keys().collect();
        let mut checked: Vec<String> = crate::config::common::BOOT_TEMPLATE_VALUES
            .iter()
            .map(|(k, _)| (*k).to_owned())
            .collect();
        checked.sort();
        assert_eq!(built, checked);
    }

    #[test]
    fn template_values_come_from_what_steps_set() {
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = testing::context(dir.path());
        assert_eq!(ctx.template_values()["HTTPIP"], "");
        ctx.http = Some(HttpInfo {
            ip: "10.0.2.2".into(),
            port: 8123,
            dir: "http".into(),
        });
        ctx.vm_name = Some("vm".into());
        ctx.ssh_host_port = Some(2222);
        let v = ctx.template_values();
        assert_eq!(
            (
                v["HTTPIP"].as_str(),
                v["HTTPPort"].as_str(),
                v["HTTPDir"].as_str()
            ),
            ("10.0.2.2", "8123", "http")
        );
        assert_eq!(
            (v["Name"].as_str(), v["SSHHostPort"].as_str()),
            ("vm", "2222")
        );
    }
}
