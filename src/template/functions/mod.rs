//! Packer's HCL function library. Placeholder until the functions module lands: it registers
//! nothing and evaluates plainly (no lazy `try`/`can`).

use hcl::eval::{Context, Evaluate};
use hcl::{Expression, Value};
use std::path::PathBuf;

/// What functions that touch the host need to know.
#[derive(Debug, Clone)]
pub struct FunctionEnv {
    /// Directory of the template (`path.root`).
    pub path_root: PathBuf,
    /// Working directory (`path.cwd`).
    pub cwd: PathBuf,
    /// Refuse network-backed functions.
    pub offline: bool,
}

/// Register the function library on `ctx`.
pub fn register(_ctx: &mut Context<'_>, _env: &FunctionEnv) {}

/// Evaluate `expr` in `ctx`.
pub fn evaluate(expr: &Expression, ctx: &Context<'_>) -> Result<Value, hcl::eval::Error> {
    expr.evaluate(ctx)
}
