//! `kiln validate`: load and evaluate the template, then check every selected build's kinds and
//! decode its source, provisioner and post-processor options into their typed configs.

use super::ValidateArgs;
use std::process::ExitCode;

/// Run `kiln validate`.
pub fn run(args: &ValidateArgs) -> ExitCode {
    if args.syntax_only {
        return match crate::template::check_syntax(&args.template.template) {
            Ok(()) => {
                println!("Syntax-only check passed. Everything looks okay.");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    let plan = match crate::template::load(&args.template.load_options()) {
        Ok(p) => p,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
    };
    for w in &plan.warnings {
        if !(args.no_warn_undeclared_var && w.summary.ends_with("is set but not declared")) {
            eprintln!("{}", w.render());
        }
    }
    // A typo in -only selects nothing; -except leaving nothing is what was asked.
    if plan.builds.is_empty() && !args.template.only.is_empty() {
        eprintln!("error: no builds match -only\n  hint: `kiln inspect` lists the builds' names");
        return ExitCode::FAILURE;
    }
    if prepare(&plan, false).is_some() {
        println!("The configuration is valid.");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Check every build's kinds and typed options ([`crate::kinds::prepare`]) and print the
/// problems (each once, secrets redacted); the decoded sources when there is no error.
pub(crate) fn prepare(
    plan: &crate::template::Plan,
    force: bool,
) -> Option<Vec<Box<dyn crate::builder::Source>>> {
    let prepared = crate::kinds::prepare(plan, force);
    for d in &prepared.diagnostics {
        eprintln!("{}", plan.redact(&d.render()));
    }
    prepared.passed().then_some(prepared.sources)
}
