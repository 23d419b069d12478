//! The command line: one file per command; `main` parses arguments and maps errors to exit codes.

pub mod fmt;

use std::process::ExitCode;

/// Entry point used by `src/main.rs`.
pub fn main() -> ExitCode {
    ExitCode::SUCCESS
}
