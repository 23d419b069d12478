//! Builders: one per source type, each turning its typed config into the list of steps the
//! pipeline runs ([`steps_for`]). Steps shared by builders (ISO download, HTTP server, SSH,
//! provisioning, shutdown) live in [`steps`]; a running VM is seen by them through [`Machine`].

pub mod null;
pub mod qemu;
pub mod steps;

use std::time::Duration;

use async_trait::async_trait;

use crate::pipeline::Step;
use crate::template::PlannedBuild;

/// A running virtual machine, as the shared steps see it.
#[async_trait]
pub trait Machine: Send + Sync {
    /// `Some(reason)` once the VM process has exited (with what it printed on stderr).
    fn exited(&self) -> Option<String>;
    /// Wait up to `timeout` for the VM to stop by itself; true if it did.
    async fn wait_exit(&self, timeout: Duration) -> bool;
    /// Stop the VM now (power off) and wait until it is gone.
    async fn kill(&self);
    /// The last lines the guest printed on its console, when the builder records it.
    fn console_tail(&self) -> Option<String> {
        None
    }
}

/// The last `lines` non-empty lines of a console log, or `None` when there are none.
pub fn tail_lines(log: &[u8], lines: usize) -> Option<String> {
    let text = String::from_utf8_lossy(log);
    let kept: Vec<&str> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .collect();
    let start = kept.len().saturating_sub(lines);
    (!kept.is_empty()).then(|| kept[start..].join("\n"))
}

/// Why a build could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// kiln has no builder for this source type.
    #[error(
        "kiln has no builder for source type {0:?}\nhint: exclude the build with -only/-except"
    )]
    Unsupported(String),
    /// The source's options did not decode (already reported by validate, normally).
    #[error("{0}")]
    Config(String),
}

/// What `kiln build` passes down to every builder.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `-force`.
    pub force: bool,
}

/// The steps that build `build`, provisioning and all.
pub fn steps_for(build: &PlannedBuild, run: &RunOptions) -> Result<Vec<Box<dyn Step>>, SetupError> {
    match build.source_type.as_str() {
        "qemu" => qemu::steps(build, run),
        "null" => null::steps(build),
        other => Err(SetupError::Unsupported(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_lines_keeps_the_last_non_empty_lines() {
        let log = b"one\r\n\r\ntwo\nthree\n\n";
        assert_eq!(tail_lines(log, 2).as_deref(), Some("two\nthree"));
        assert_eq!(tail_lines(log, 9).as_deref(), Some("one\ntwo\nthree"));
        assert_eq!(tail_lines(b"\n\n", 3), None);
    }
}
