//! `kiln init`: offline. Checks the template's `required_plugins` against the builders,
//! provisioners and post-processors kiln has built in and says which are missing.

use super::InitArgs;
use std::process::ExitCode;

/// Run `kiln init`.
pub fn run(args: &InitArgs) -> ExitCode {
    let plugins = match crate::template::required_plugins(&args.template) {
        Ok(p) => p,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let built_in = crate::kinds::built_in_plugins();
    let mut missing = Vec::new();
    for p in &plugins {
        let short = p.source.rsplit('/').next().unwrap_or(&p.name);
        let short = short.strip_prefix("packer-plugin-").unwrap_or(short);
        if built_in.contains(&short) {
            println!("{} ({}): built into kiln", p.name, p.source);
        } else {
            missing.push(p);
        }
    }
    if missing.is_empty() {
        println!("All required plugins are built into kiln; nothing to install.");
        return ExitCode::SUCCESS;
    }
    for p in &missing {
        eprintln!(
            "{} ({} {}): not available in kiln",
            p.name, p.source, p.version
        );
    }
    eprintln!(
        "\n  hint: kiln downloads nothing and has no plugin system; builds that do not use these plugins still work (select them with -only)"
    );
    ExitCode::FAILURE
}
