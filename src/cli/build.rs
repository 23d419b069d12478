//! `kiln build`: runs the planned builds. Not wired yet; the lead replaces this file.

use super::BuildArgs;
use crate::template::Plan;
use std::process::ExitCode;

/// Run the builds of `plan`.
pub fn run(_args: &BuildArgs, _plan: Plan) -> ExitCode {
    eprintln!("error: kiln build is not wired yet: use `kiln validate` or `kiln inspect`");
    ExitCode::from(1)
}
