//! `kiln fmt`. Placeholder until the formatter lands.

use super::FmtArgs;
use std::process::ExitCode;

/// Run `kiln fmt`.
pub fn run(_args: &FmtArgs) -> ExitCode {
    eprintln!("error: kiln fmt is not available in this build yet");
    ExitCode::from(1)
}
