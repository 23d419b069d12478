//! `kiln inspect`: variables, locals and builds of a template, secrets redacted. As Packer's,
//! it needs no variable to be set: one without a value is shown as `"<unknown>"`, so is what
//! depends on it, and the builds are listed all the same.

use super::TemplateArgs;
use std::process::ExitCode;

/// Run `kiln inspect`.
pub fn run(args: &TemplateArgs) -> ExitCode {
    let opts = crate::template::LoadOptions {
        unset_as_unknown: true,
        ..args.load_options()
    };
    let Some(plan) = super::load_with(&opts) else {
        return ExitCode::FAILURE;
    };
    // Like Packer's, inspect lists every build without checking options; a source type kiln
    // lacks is marked, not refused (bento's templates all name a few).
    let known = crate::kinds::source_types();
    print!("{}", plan.inspect(|ty| known.contains(&ty)));
    ExitCode::SUCCESS
}
