//! `kiln plan`: the builds a template would run, as the JSON a CI matrix takes as it is
//! (`{"include": [...]}`, GitHub Actions' `fromJSON` form), one entry per build with the
//! `-only` value that runs that build alone, so that each CI runner builds one.

use super::TemplateArgs;
use crate::template::{selected, Plan, PlannedBuild};
use serde_json::{json, Value};
use std::process::ExitCode;

/// Run `kiln plan`.
pub fn run(args: &TemplateArgs) -> ExitCode {
    let Some(plan) = super::load(args) else {
        return ExitCode::FAILURE;
    };
    let known = crate::kinds::source_types();
    match matrix(&plan, |ty| known.contains(&ty)) {
        Ok(m) => {
            println!("{m}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "error: {e}\n  hint: give each build block its own name = \"…\", or each source its own name"
            );
            ExitCode::FAILURE
        }
    }
}

/// A build that no `-only` value selects alone (two unnamed build blocks running one source).
#[derive(Debug, thiserror::Error)]
#[error("more than one build is named \"{0}\": -only cannot select one of them alone")]
struct AmbiguousBuild(String);

/// The matrix for `plan`'s builds.
fn matrix(plan: &Plan, buildable: impl Fn(&str) -> bool) -> Result<Value, AmbiguousBuild> {
    let mut include = Vec::new();
    for b in &plan.builds {
        // A name is matched as a glob: escape it so that `[`, `*` or `?` in it match themselves.
        let only = glob::Pattern::escape(&b.name);
        let picks = plan.builds.iter().filter(|o| is_selected(o, &only)).count();
        if picks != 1 {
            return Err(AmbiguousBuild(b.name.clone()));
        }
        include.push(json!({
            "name": b.name,
            "only": only,
            "source_type": b.source_type,
            "buildable": buildable(&b.source_type),
        }));
    }
    Ok(json!({ "include": include }))
}

/// Whether `-only=<only>` selects `b`, matched as the loader matches it.
fn is_selected(b: &PlannedBuild, only: &str) -> bool {
    let short = format!("{}.{}", b.source_type, b.source_name);
    selected(&short, &b.name, &[only.to_owned()], &[])
}
