//! Builders: one per source type, each turning its typed config into the list of steps the
//! pipeline runs ([`steps_for`]). Steps shared by builders (ISO download, HTTP server, SSH,
//! provisioning, shutdown) live in [`steps`]; a running VM is seen by them through [`Machine`].

pub mod null;
pub mod qemu;
pub mod steps;
pub mod virtualbox;

use crate::pipeline::Step;
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
    /// `net_bridge` names no usable bridge.
    #[error(transparent)]
    Bridge(#[from] qemu::bridge::BridgeError),
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
}

/// The steps that build `build`, provisioning and all.
pub fn steps_for(build: &PlannedBuild, run: &RunOptions) -> Result<Vec<Box<dyn Step>>, SetupError> {
    match build.source_type.as_str() {
        "qemu" => qemu::steps(build, run),
        "null" => null::steps(build),
        other => Err(SetupError::Unsupported(other.to_owned())),
    }
}
