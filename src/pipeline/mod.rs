//! The build pipeline: a build is a list of [`Step`]s sharing a typed [`BuildContext`]. The
//! [`runner`] runs them in order and, whatever happens (success, failure, Ctrl-C), cleans up
//! every step that started, in reverse order, unless `-on-error=abort` asks to keep things.

pub mod context;
pub mod machine;
pub mod runner;
pub mod step;

pub use context::{BuildContext, HttpInfo, OnError, VncEndpoint};
pub use machine::{Machine, MachineError};
pub use runner::run;
pub use step::{CleanupError, Step, StepError};
