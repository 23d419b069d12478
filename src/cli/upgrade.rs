//! `kiln hcl2_upgrade`: write a legacy JSON template as an HCL2 template.

use super::UpgradeArgs;
use std::process::ExitCode;

/// Run `kiln hcl2_upgrade`.
pub fn run(args: &UpgradeArgs) -> ExitCode {
    let src = match std::fs::read_to_string(&args.template) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.template.display());
            return ExitCode::FAILURE;
        }
    };
    let text = match crate::template::json::upgrade(&src, &args.template) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}", crate::template::json_error(&e).render());
            return ExitCode::FAILURE;
        }
    };
    let out = args.output_file.clone().unwrap_or_else(|| {
        let mut p = args.template.clone().into_os_string();
        p.push(".pkr.hcl");
        p.into()
    });
    match std::fs::write(&out, text) {
        Ok(()) => {
            println!("Successfully created {}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}
