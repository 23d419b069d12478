//! Legacy JSON templates converted to HCL2. Placeholder until the converter lands.

use super::diagnostics::{Diagnostic, Location};
use std::path::Path;

/// Convert a legacy JSON template to an HCL2 body.
pub fn to_hcl(_src: &str, file: &Path) -> Result<hcl::Body, Diagnostic> {
    Err(Diagnostic::error(
        "legacy JSON templates are not supported yet",
        Some(Location::file_only(file)),
    )
    .with_hint("convert the template with `packer hcl2_upgrade` or use an HCL2 template"))
}
