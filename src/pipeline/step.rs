//! The [`Step`] trait and the error a step returns.

use async_trait::async_trait;
use std::fmt;

use super::BuildContext;

/// One stage of a build. `run` moves the build forward; `cleanup` undoes what `run` created
/// and is called for every step whose `run` started, in reverse order, whether the build
/// succeeded, failed or was cancelled. Steps keep what they must undo in `self` as soon as
/// they create it, because `run` may be dropped mid-way when the build is cancelled.
#[async_trait]
pub trait Step: Send {
    /// What the step does, for logs (`"create disk"`).
    fn name(&self) -> &'static str;
    /// Do the step's work.
    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError>;
    /// Undo what `run` created. Must not fail; report problems through `ctx.ui`.
    async fn cleanup(&mut self, _ctx: &mut BuildContext) {}
}

/// Why a step stopped the build.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The step failed; the text says what happened and what to do.
    #[error("{0}")]
    Failed(String),
    /// Ctrl-C, SIGTERM, or another build's failure cancelled this one.
    #[error("build was cancelled")]
    Cancelled,
}

impl StepError {
    /// A failure with this message.
    pub fn msg(text: impl fmt::Display) -> Self {
        StepError::Failed(text.to_string())
    }

    /// A failure described by `context`, followed by `err` and each of its sources.
    pub fn with(context: impl fmt::Display, err: &(dyn std::error::Error + 'static)) -> Self {
        StepError::Failed(format!("{context}: {}", chain(err)))
    }
}

/// `err` and its sources, joined with `: `, skipping sources whose text the previous
/// message already contains.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chain_includes_sources_once() {
        let e = Outer(std::io::Error::other("disk full"));
        assert_eq!(chain(&e), "outer: disk full");
        let s = StepError::with("writing box", &e).to_string();
        assert_eq!(s, "writing box: outer: disk full");
    }
}
