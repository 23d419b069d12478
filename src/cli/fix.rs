//! `kiln fix`: Packer's `fix`. Runs the fixers of [`crate::template::fix`] on a legacy JSON
//! template, prints the result on stdout, and (unless `-validate=false`) validates it as
//! `kiln validate` would, without writing it anywhere.

use super::FixArgs;
use crate::template::{fix, json_error, LoadOptions};
use std::process::ExitCode;

/// The fixers run and skipped, for `kiln fix --help`.
pub fn help() -> String {
    let mut out = String::from(
        "Reads a legacy JSON template and rewrites the options older Packer versions used; the \
         result is printed on stdout.\n\nFixers that are run (in order):\n\n",
    );
    for f in fix::FIXERS {
        out.push_str(&format!("  {:<27}{}\n", f.name, f.synopsis));
    }
    out.push_str(
        "\nPacker's fixers that are skipped (they concern plugins kiln does not have):\n\n",
    );
    for (name, why) in fix::SKIPPED {
        out.push_str(&format!("  {name:<27}{why}\n"));
    }
    out
}

/// Run `kiln fix`.
pub fn run(args: &FixArgs) -> ExitCode {
    let path = &args.template;
    let name = path.to_string_lossy();
    if path.is_dir() || name.ends_with(".pkr.hcl") || name.ends_with(".pkr.json") {
        eprintln!(
            "error: kiln fix only works with legacy JSON templates, as Packer's\n  hint: HCL2 \
             templates need no fixing; `kiln hcl2_upgrade` converts a JSON template to HCL2"
        );
        return ExitCode::FAILURE;
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let fixed = match fix::fix(&text, path) {
        Ok(t) => fix::to_text(&t),
        Err(e) => {
            eprintln!("{}", json_error(&e).render());
            return ExitCode::FAILURE;
        }
    };
    println!("{fixed}");
    if !args.validate {
        return ExitCode::SUCCESS;
    }
    // The fixed text stands in for the file, so that relative paths resolve as they will
    // once it replaces it.
    let opts = LoadOptions {
        text: Some(fixed),
        ..args_for(path)
    };
    let valid = super::load_with(&opts)
        .is_some_and(|plan| super::validate::prepare(&plan, false).is_some());
    if valid {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "error: the fixed template is not valid\n  hint: this is usually caused by an error in \
             the input template; `kiln fix -validate=false` prints it without checking"
        );
        ExitCode::FAILURE
    }
}

/// Load options for validating the template at `path`, as `kiln validate <path>` has them.
fn args_for(path: &std::path::Path) -> LoadOptions {
    super::TemplateArgs {
        vars: Vec::new(),
        var_files: Vec::new(),
        only: Vec::new(),
        except: Vec::new(),
        template: path.to_path_buf(),
    }
    .load_options()
}
