//! Templates: loading Packer HCL2 (`.pkr.hcl`, `.pkr.json`) and legacy JSON templates,
//! evaluating variables, locals and data sources, and producing the [`Plan`] of builds.

pub mod diagnostics;
pub mod duration;
mod eval;
pub mod fix;
pub mod format;
pub mod functions;
pub mod json;
pub mod parse;
mod plan;
mod refs;
pub mod types;
pub mod variables;

pub(crate) use eval::json_error;
pub use eval::{
    check_syntax, load, required_plugins, selected, LoadError, LoadOptions, DATA_SOURCE_TYPES,
    PACKER_COMPAT_VERSION,
};
pub use plan::{
    label, redact, show_value, NamedValue, Plan, PlannedBuild, PlannedStep, RequiredPlugin,
    StepMeta,
};
