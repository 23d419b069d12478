//! `kiln console`: evaluate expressions against a template's variables, locals and data
//! sources, from `-expr` arguments or one per line of stdin.

use super::ConsoleArgs;
use std::io::BufRead;
use std::process::ExitCode;

/// Run `kiln console`.
pub fn run(args: &ConsoleArgs) -> ExitCode {
    // Builds are not needed to evaluate expressions (and may use source types kiln lacks).
    let opts = crate::template::LoadOptions {
        variables_only: true,
        ..args.template.load_options()
    };
    let Some(plan) = super::load_with(&opts) else {
        return ExitCode::FAILURE;
    };
    // A legacy JSON template's console takes Packer's JSON syntax: Go-template calls.
    let path = args.template.template.to_string_lossy();
    let json = path.ends_with(".json") && !path.ends_with(".pkr.json");
    let mut ok = true;
    let mut eval = |line: &str| match plan.evaluate(&if json && line.contains("{{") {
        crate::template::json::go_template_to_hcl(line).0
    } else {
        line.to_owned()
    }) {
        Ok(v) => println!("{v}"),
        Err(e) => {
            ok = false;
            eprint!("{}", e.render());
        }
    };
    if args.exprs.is_empty() {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let line = line.trim();
            if line == "exit" {
                break;
            }
            if !line.is_empty() {
                eval(line);
            }
        }
    } else {
        args.exprs.iter().for_each(|e| eval(e));
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
