//! The [`Step`] trait and the errors a step returns ([`StepError`]) or its cleanup reports
//! ([`CleanupError`]).

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
    /// Undo what `run` created. A failure is shown to the user and the remaining cleanups
    /// still run, so a cleanup undoes as much as it can before it reports.
    async fn cleanup(&mut self, _ctx: &mut BuildContext) -> Result<(), CleanupError> {
        Ok(())
    }
}

/// The boxed cause of a failure: any error, kept whole so its chain can be printed once.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a step stopped the build.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The step failed: `context` says what it was doing (and, after a `hint:` line, what to
    /// do), `source` why, when the cause is an error of its own.
    #[error("{context}")]
    Failed {
        /// What failed, in kiln's words.
        context: String,
        /// The underlying error, printed after the context by [`StepError::report`].
        #[source]
        source: Option<Cause>,
    },
    /// A value this step needs was not set by the step that produces it: a bug in the order of
    /// a builder's steps, named so that it is found at once.
    #[error(
        "internal: {key} is not set (the {producer} step sets it, and must run before this one)"
    )]
    MissingState {
        /// What is missing (`"the running machine"`).
        key: &'static str,
        /// The step that provides it (`"start VM"`).
        producer: &'static str,
    },
    /// Ctrl-C, SIGTERM, or another build's failure cancelled this one.
    #[error("build was cancelled")]
    Cancelled,
}

impl StepError {
    /// A failure with this message and no underlying error.
    pub fn msg(text: impl fmt::Display) -> Self {
        StepError::Failed {
            context: text.to_string(),
            source: None,
        }
    }

    /// A failure described by `context`, caused by `err` (whose chain is kept).
    pub fn with(context: impl fmt::Display, err: impl Into<Cause>) -> Self {
        StepError::Failed {
            context: context.to_string(),
            source: Some(err.into()),
        }
    }

    /// A failure that is `err` itself (its message is the context; the report prints it once).
    pub fn wrap(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        StepError::Failed {
            context: err.to_string(),
            source: Some(Box::new(err)),
        }
    }

    /// True for a failure (not a cancellation).
    pub fn is_failure(&self) -> bool {
        !matches!(self, StepError::Cancelled)
    }

    /// The whole message, for the user: the context, then each cause once, with any `hint:`
    /// lines (from the context or a cause) moved to the end.
    pub fn report(&self) -> String {
        report(self)
    }
}

/// What a cleanup could not undo (shown as an error; the other cleanups still run).
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct CleanupError {
    what: String,
    #[source]
    source: Option<Cause>,
}

impl CleanupError {
    /// A cleanup failure: `what` could not be undone because of `err`.
    pub fn new(what: impl fmt::Display, err: impl Into<Cause>) -> Self {
        Self {
            what: what.to_string(),
            source: Some(err.into()),
        }
    }

    /// A cleanup failure with no underlying error.
    pub fn msg(what: impl fmt::Display) -> Self {
        Self {
            what: what.to_string(),
            source: None,
        }
    }
}

use crate::report::report;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chain_includes_sources_once() {
        let e = Outer(std::io::Error::other("disk full"));
        assert_eq!(crate::report::chain(&e), "outer: disk full");
        let s = StepError::with("writing box", e).report();
        assert_eq!(s, "writing box: outer: disk full");
    }

    #[test]
    fn the_source_is_kept_as_an_error_not_flattened() {
        let e = StepError::with(
            "writing box",
            std::io::Error::other("No space left on device"),
        );
        let src = std::error::Error::source(&e).expect("a source");
        assert_eq!(src.to_string(), "No space left on device");
        assert_eq!(e.to_string(), "writing box");
    }

    #[test]
    fn hints_go_to_the_end_of_the_report() {
        let e = StepError::with(
            "cannot start qemu\nhint: install qemu-system-x86",
            std::io::Error::other("No such file or directory"),
        );
        assert_eq!(
            e.report(),
            "cannot start qemu: No such file or directory\nhint: install qemu-system-x86"
        );
    }

    #[test]
    fn missing_state_names_the_producer() {
        let e = StepError::MissingState {
            key: "the running machine",
            producer: "start VM",
        };
        let s = e.report();
        assert!(
            s.contains("the running machine") && s.contains("start VM"),
            "{s}"
        );
        assert!(e.is_failure());
        assert!(!StepError::Cancelled.is_failure());
    }
}
