//! `kiln validate`: load and evaluate the template, then decode every selected build's source,
//! provisioner and post-processor options into their typed configs.

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
    if report_problems(&plan) {
        println!("The configuration is valid.");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Decode every build's typed options and print the problems (each once, secrets redacted);
/// true when there are none.
pub(crate) fn report_problems(plan: &crate::template::Plan) -> bool {
    // A provisioner shared by several builds would report the same problem once per build.
    let mut errors = Vec::new();
    for e in plan.builds.iter().flat_map(crate::config::check_build) {
        if !errors.contains(&e) {
            errors.push(e);
        }
    }
    for e in &errors {
        eprintln!("{}", plan.redact(&e.render()));
    }
    errors.is_empty()
}
