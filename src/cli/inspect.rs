//! `kiln inspect`: variables, locals and builds of a template, secrets redacted.

use super::TemplateArgs;
use std::process::ExitCode;

/// Run `kiln inspect`.
pub fn run(args: &TemplateArgs) -> ExitCode {
    match super::load(args) {
        Some(plan) => {
            print!("{}", plan.inspect());
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}
