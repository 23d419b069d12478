//! Builders: one per source type, declared once in [`BUILDERS`] (type name, plugin, typed
//! config), each turning its decoded config into the list of steps the pipeline runs
//! ([`Source::steps`]). Steps shared by builders (ISO download, HTTP server, SSH, provisioning,
//! shutdown) live in [`steps`]; a running VM is seen by them through [`Machine`].

/// Implements [`Source`] for a builder config whose steps run on the host's tools:
/// `$locate` (a closure of the config) finds the driver, `$steps(build, config, run, driver)`
/// makes the steps. The output directory is the config's `output` group's, unless a closure
/// `(config, build)` after them says otherwise.
macro_rules! host_source {
    ($t:ty, $locate:expr, $steps:path $(, $output:expr)?) => {
        impl $crate::builder::Source for $t {
            fn steps(
                self: Box<Self>,
                build: &$crate::template::PlannedBuild,
                run: &$crate::builder::RunOptions,
            ) -> Result<Vec<Box<dyn $crate::pipeline::Step>>, $crate::builder::SetupError> {
                let locate: fn(&$t) -> Result<_, _> = $locate;
                let driver = locate(&self)?;
                let mut steps = $steps(build, *self, run, std::sync::Arc::new(driver))?;
                if run.layers.is_some() {
                    steps.insert(
                        0,
                        Box::new($crate::builder::steps::layers::Announce::unused(
                            "layers are saved for qemu builds only, so far",
                        )),
                    );
                }
                Ok(steps)
            }

            fn output_directory(
                &self,
                build: &$crate::template::PlannedBuild,
            ) -> Option<std::path::PathBuf> {
                host_source!(@output self, build $(, $output)?)
            }
        }
    };
    (@output $s:ident, $b:ident) => {
        Some($s.output.output_directory(&$b.source_name).into())
    };
    (@output $s:ident, $b:ident, $output:expr) => {{
        let output: fn(&Self, &$crate::template::PlannedBuild) -> Option<std::path::PathBuf> =
            $output;
        output($s, $b)
    }};
}

pub mod null;
pub mod qemu;
pub mod steps;
pub mod virtualbox;
pub mod vmware;

use crate::config::common::CommConfig;
use crate::config::qemu::QemuConfig;
use crate::config::virtualbox::{VirtualBoxIsoConfig, VirtualBoxOvfConfig, VirtualBoxVmConfig};
use crate::config::vmware::{VmwareIsoConfig, VmwareVmxConfig};
use crate::config::Checked;
use crate::pipeline::Step;
use crate::template::diagnostics::Diagnostic;
use crate::template::PlannedBuild;

/// Why a build could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// kiln has no builder for this source type.
    #[error(
        "kiln has no builder for source type {0:?}\nhint: exclude the build with -only/-except"
    )]
    Unsupported(String),
    /// The source's options did not decode (already reported by validate, normally).
    #[error(transparent)]
    Config(#[from] crate::template::diagnostics::Diagnostic),
    /// The build's SSH key could not be made or read.
    #[error("cannot make the build's SSH key")]
    Key(#[from] crate::communicator::keys::KeyError),
    /// VBoxManage is missing or unusable.
    #[error(transparent)]
    VirtualBox(#[from] virtualbox::driver::VBoxError),
    /// A VMware tool (`vmrun`) is missing.
    #[error(transparent)]
    Vmware(#[from] vmware::driver::VmwareError),
    /// `net_bridge` names no usable bridge.
    #[error(transparent)]
    Bridge(#[from] qemu::bridge::BridgeError),
    /// The layer cache cannot be used as asked (`-rebuild-from` names no step…).
    #[error(transparent)]
    Layers(#[from] crate::layers::LayerError),
}

pub use crate::pipeline::machine::{tail_lines, Machine};

/// What `kiln build` passes down to every builder, read once at the command line's edge.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `-force`.
    pub force: bool,
    /// `KILN_BOOT_TRANSPORT`: type the boot command over this transport instead of the
    /// builder's default (`vnc` types over VNC like Packer).
    pub boot_transport: Option<boot_commands::Transport>,
    /// `PACKER_KEY_INTERVAL`: the pause after each key event, unless the template sets
    /// `boot_key_interval`.
    pub key_interval: Option<String>,
    /// `-cache`: the layer cache's settings.
    pub layers: Option<crate::layers::LayerSettings>,
}

/// A source's decoded options: what a builder needs to make the build's steps.
pub trait Source: Send + Sync + std::fmt::Debug {
    /// The steps that build `build` from these options, provisioning and all.
    fn steps(
        self: Box<Self>,
        build: &PlannedBuild,
        run: &RunOptions,
    ) -> Result<Vec<Box<dyn Step>>, SetupError>;

    /// The output directory the build makes, `None` when it makes none. Packer refuses to
    /// start (and to validate) when it exists, unless `-force` (see [`crate::kinds::prepare`]).
    fn output_directory(&self, _build: &PlannedBuild) -> Option<std::path::PathBuf> {
        None
    }
}

/// One builder kind: its source type, the plugin Packer has it in, and how its options decode.
pub struct BuilderKind {
    /// The source type (`source "qemu" "name"`).
    pub name: &'static str,
    /// The last part of the Packer plugin's address that holds it (`qemu` for
    /// `github.com/hashicorp/qemu`); `None` for Packer's own.
    pub plugin: Option<&'static str>,
    /// Decode and check a source's options, adding problems to the list.
    pub prepare: Prepare,
}

/// Decode and check a source's options, adding problems to the list; the options when they
/// decoded.
pub type Prepare = fn(&PlannedBuild, &mut Vec<Diagnostic>) -> Option<Box<dyn Source>>;

impl BuilderKind {
    const fn new<T: Checked + Source + 'static>(
        name: &'static str,
        plugin: Option<&'static str>,
    ) -> Self {
        Self {
            name,
            plugin,
            prepare: prepare::<T>,
        }
    }
}

fn prepare<T: Checked + Source + 'static>(
    build: &PlannedBuild,
    out: &mut Vec<Diagnostic>,
) -> Option<Box<dyn Source>> {
    let cfg: T = crate::config::check(&build.config, &build.spans, out)?;
    Some(Box::new(cfg))
}

/// Every builder kiln has.
pub const BUILDERS: &[BuilderKind] = &[
    BuilderKind::new::<QemuConfig>("qemu", Some("qemu")),
    BuilderKind::new::<VirtualBoxIsoConfig>("virtualbox-iso", Some("virtualbox")),
    BuilderKind::new::<VirtualBoxOvfConfig>("virtualbox-ovf", Some("virtualbox")),
    BuilderKind::new::<VirtualBoxVmConfig>("virtualbox-vm", Some("virtualbox")),
    BuilderKind::new::<VmwareIsoConfig>("vmware-iso", Some("vmware")),
    BuilderKind::new::<VmwareVmxConfig>("vmware-vmx", Some("vmware")),
    BuilderKind::new::<CommConfig>("null", None),
];
