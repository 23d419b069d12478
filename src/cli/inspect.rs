//! `kiln inspect`: variables, locals and builds of a template, secrets redacted.

use super::TemplateArgs;
use std::process::ExitCode;

/// Run `kiln inspect`.
pub fn run(args: &TemplateArgs) -> ExitCode {
    let Some(plan) = super::load(args) else {
        return ExitCode::FAILURE;
    };
    // Like Packer's, inspect lists every build without checking options; a source type kiln
    // lacks is marked, not refused (bento's templates all name a few).
    let known = crate::kinds::source_types();
    print!("{}", plan.inspect(|ty| known.contains(&ty)));
    ExitCode::SUCCESS
}
