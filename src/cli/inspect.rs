//! `kiln inspect`: variables, locals and builds of a template, secrets redacted.

use super::TemplateArgs;
use std::process::ExitCode;

/// Run `kiln inspect`.
pub fn run(args: &TemplateArgs) -> ExitCode {
    let Some(plan) = super::load(args) else {
        return ExitCode::FAILURE;
    };
    // Like Packer's, inspect does not check options, but a source type kiln lacks is an error.
    let kinds = crate::kinds::unknown_kinds(&plan);
    for d in &kinds {
        eprintln!("{}", plan.redact(&d.render()));
    }
    if kinds
        .iter()
        .any(|d| d.severity == crate::template::diagnostics::Severity::Error)
    {
        return ExitCode::FAILURE;
    }
    print!("{}", plan.inspect());
    ExitCode::SUCCESS
}
