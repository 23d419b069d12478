//! Templates: loading Packer HCL2 (`.pkr.hcl`, `.pkr.json`) and legacy JSON templates,
//! evaluating variables, locals and data sources, and producing the [`Plan`] of builds.

pub mod diagnostics;
