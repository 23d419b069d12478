//! `kiln init`: offline. Checks the template's `required_plugins` against the builders,
//! provisioners and post-processors kiln has built in and says which are missing, and which of
//! the template's source types will therefore not build. Missing plugins are a warning, as long
//! as the builds selected with `-only`/`-except` do not need them: `kiln init && kiln build
//! -only=qemu.vm` works on a template that also has Parallels or Hyper-V sources.

use super::InitArgs;
use std::process::ExitCode;

/// Run `kiln init`.
pub fn run(args: &InitArgs) -> ExitCode {
    let (plugins, sources) = match crate::template::required_plugins(&args.template) {
        Ok(p) => p,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let built_in = crate::kinds::built_in_plugins();
    let known = crate::kinds::source_types();
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
    // Source blocks whose type kiln lacks (a plugin's types start with its name:
    // parallels-iso, hyperv-iso).
    let unbuildable: Vec<&String> = sources
        .iter()
        .filter(|s| {
            let ty = s.split('.').next().unwrap_or(s);
            !known.contains(&ty)
        })
        .collect();
    for p in &missing {
        let theirs: Vec<&str> = unbuildable
            .iter()
            .filter(|s| {
                s.starts_with(&format!("{}-", p.name)) || s.starts_with(&format!("{}.", p.name))
            })
            .map(|s| s.as_str())
            .collect();
        let will_not = if theirs.is_empty() {
            String::new()
        } else {
            format!("; these sources will not build: {}", theirs.join(", "))
        };
        eprintln!(
            "warning: {} ({} {}): not available in kiln{will_not}",
            p.name, p.source, p.version
        );
    }
    let selected: Vec<&&String> = unbuildable
        .iter()
        .filter(|s| crate::template::selected(s, s, &args.only, &args.except))
        .collect();
    if (!args.only.is_empty() || !args.except.is_empty()) && !selected.is_empty() {
        eprintln!(
            "error: the selected builds need plugins kiln does not have: {}\n  hint: leave them out with -only/-except",
            selected.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        );
        return ExitCode::FAILURE;
    }
    eprintln!(
        "\n  hint: kiln downloads nothing and has no plugin system; builds that do not use these plugins still work (select them with -only)"
    );
    ExitCode::SUCCESS
}
