//! The command line: Packer's commands and flags (single-dash long flags included), one file per
//! command, exit codes as Packer's: 0 on success, 1 on any failure (including bad flags).

pub mod build;
mod cache;
mod console;
mod fix;
pub mod fmt;
mod init;
mod inspect;
mod logging;
mod plan;
mod upgrade;
mod validate;

use crate::template::{LoadOptions, Plan};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Build machine images locally from Packer templates.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, disable_version_flag = true)]
pub struct Cli {
    /// Machine-readable output (`timestamp,target,type,data…` lines).
    #[arg(long, global = true)]
    pub machine_readable: bool,
    /// Fetch nothing from the network (as KILN_OFFLINE=1): use local files and the cache.
    #[arg(long, global = true)]
    pub offline: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// kiln's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build images from a template.
    Build(BuildArgs),
    /// Check that a template is valid.
    Validate(ValidateArgs),
    /// Show the variables, locals and builds of a template.
    Inspect(TemplateArgs),
    /// List the builds as JSON shards for a CI matrix (`{"include": [...]}`), one per build.
    Plan(TemplateArgs),
    /// Rewrite HCL2 files in the canonical format.
    Fmt(FmtCommand),
    /// Check `required_plugins` against what kiln has built in (downloads nothing).
    Init(InitArgs),
    /// Evaluate expressions against a template.
    Console(ConsoleArgs),
    /// List, import (for air-gapped machines) and prune downloaded ISOs and disk images.
    Cache(cache::CacheArgs),
    /// Print the version.
    Version,
    /// Convert a legacy JSON template to HCL2.
    #[command(name = "hcl2_upgrade")]
    Hcl2Upgrade(UpgradeArgs),
    /// Rewrite a legacy JSON template's outdated options (printed on stdout).
    #[command(after_help = fix::help())]
    Fix(FixArgs),
}

/// Inputs shared by the commands that evaluate a template.
#[derive(Debug, Args, Clone)]
pub struct TemplateArgs {
    /// Set a variable: `-var 'name=value'` (repeatable; later wins).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Read variables from a file (repeatable; later wins).
    #[arg(long = "var-file", value_name = "PATH")]
    pub var_files: Vec<PathBuf>,
    /// Only these builds: comma-separated globs over `type.name` (and `build.type.name`).
    #[arg(long, value_delimiter = ',', value_name = "GLOBS")]
    pub only: Vec<String>,
    /// All builds except these: comma-separated globs.
    #[arg(long, value_delimiter = ',', value_name = "GLOBS")]
    pub except: Vec<String>,
    /// A template file or a directory of `*.pkr.hcl` files.
    #[arg(default_value = ".")]
    pub template: PathBuf,
}

impl TemplateArgs {
    /// Load options for these arguments, reading `PKR_VAR_*` from the environment.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            path: self.template.clone(),
            vars: self.vars.clone(),
            var_files: self.var_files.clone(),
            only: self.only.clone(),
            except: self.except.clone(),
            env: std::env::vars()
                .filter(|(k, _)| k.starts_with("PKR_VAR_"))
                .collect(),
            cwd: std::env::current_dir().unwrap_or_default(),
            variables_only: false,
            unset_as_unknown: false,
            text: None,
            offline: crate::download::Fetcher::offline_from_env(),
        }
    }
}

/// `kiln build`.
#[derive(Debug, Args, Clone)]
pub struct BuildArgs {
    /// Template and variables.
    #[command(flatten)]
    pub template: TemplateArgs,
    /// Delete existing output directories first.
    #[arg(long)]
    pub force: bool,
    /// Keep the guest's disks as a layer after the install and after each provisioner, and
    /// start a rebuild from the last layer whose inputs are unchanged (KILN_LAYER_CACHE=1 too).
    #[arg(long, env = "KILN_LAYER_CACHE", value_parser = clap::builder::FalseyValueParser::new())]
    pub cache: bool,
    /// With -cache: run this step and every one after it again, ignoring their layers
    /// (`install`, a provisioner's number from 1, its name or its type).
    #[arg(long, value_name = "STEP", requires = "cache")]
    pub rebuild_from: Option<String>,
    /// What to do when a build fails.
    #[arg(long, value_enum, default_value = "cleanup")]
    pub on_error: crate::pipeline::OnError,
    /// How many builds run at once (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub parallel_builds: usize,
    /// Pause after each step.
    #[arg(long)]
    pub debug: bool,
    /// Prefix output lines with a timestamp.
    #[arg(long)]
    pub timestamp_ui: bool,
    /// `-color=false` turns colours off.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub color: bool,
    /// Set by the global `-machine-readable` flag.
    #[arg(skip)]
    pub machine_readable: bool,
}

/// `kiln validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Template and variables.
    #[command(flatten)]
    pub template: TemplateArgs,
    /// Only check the syntax.
    #[arg(long)]
    pub syntax_only: bool,
    /// Accepted for compatibility: kiln always evaluates its (offline) data sources.
    #[arg(long)]
    pub evaluate_datasources: bool,
    /// Do not warn about variables set in var-files but not declared.
    #[arg(long)]
    pub no_warn_undeclared_var: bool,
}

/// `kiln fmt`, as parsed (see [`fmt::FmtArgs`] for what the command receives).
#[derive(Debug, Args, Clone)]
pub struct FmtCommand {
    /// Exit non-zero if any file is not formatted (writes nothing).
    #[arg(long)]
    pub check: bool,
    /// Print a diff of the changes.
    #[arg(long)]
    pub diff: bool,
    /// `-write=false` prints instead of rewriting files.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub write: bool,
    /// Also format files in subdirectories.
    #[arg(long)]
    pub recursive: bool,
    /// Files or directories (`-` for stdin).
    #[arg(default_value = ".")]
    pub paths: Vec<PathBuf>,
}

/// `kiln init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Accepted for compatibility; kiln downloads nothing.
    #[arg(long)]
    pub upgrade: bool,
    /// kiln's addition: fail when a build these globs select needs a missing plugin.
    #[arg(long, value_delimiter = ',', value_name = "GLOBS")]
    pub only: Vec<String>,
    /// kiln's addition: like -only, for all builds except these.
    #[arg(long, value_delimiter = ',', value_name = "GLOBS")]
    pub except: Vec<String>,
    /// A template file or directory.
    #[arg(default_value = ".")]
    pub template: PathBuf,
}

/// `kiln console`.
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// Template and variables.
    #[command(flatten)]
    pub template: TemplateArgs,
    /// Expressions to evaluate instead of reading stdin (repeatable).
    #[arg(long = "expr", short = 'e', value_name = "EXPRESSION")]
    pub exprs: Vec<String>,
}

/// `kiln hcl2_upgrade`.
#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// Where to write the HCL2 template (default: `<input>.pkr.hcl`).
    #[arg(long, short = 'o')]
    pub output_file: Option<PathBuf>,
    /// Accepted for compatibility.
    #[arg(long)]
    pub with_annotations: bool,
    /// The legacy JSON template.
    pub template: PathBuf,
}

/// `kiln fix`.
#[derive(Debug, Args)]
pub struct FixArgs {
    /// `-validate=false` prints the fixed template without validating it.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub validate: bool,
    /// The legacy JSON template.
    pub template: PathBuf,
}

/// Flags written with a single dash in Packer's style (`-var`, `-only=…`) that are rewritten to
/// clap's `--flag` before parsing.
const LONG_FLAGS: &[&str] = &[
    "var",
    "var-file",
    "only",
    "except",
    "force",
    "cache",
    "rebuild-from",
    "max-size",
    "on-error",
    "parallel-builds",
    "debug",
    "timestamp-ui",
    "machine-readable",
    "color",
    "syntax-only",
    "evaluate-datasources",
    "no-warn-undeclared-var",
    "check",
    "diff",
    "write",
    "recursive",
    "upgrade",
    "expr",
    "output-file",
    "with-annotations",
    "validate",
    "offline",
    "checksum",
    "url",
    "extension",
    "older-than",
    "help",
    "version",
];

/// Rewrite `-flag` and `-flag=value` to `--flag…` for the flags kiln knows; `--` ends the
/// rewriting.
pub fn rewrite_args<I: IntoIterator<Item = String>>(args: I) -> Vec<String> {
    let mut out = Vec::new();
    let mut done = false;
    for a in args {
        if done || a == "--" {
            done = true;
            out.push(a);
            continue;
        }
        let rewritten = a
            .strip_prefix('-')
            .filter(|rest| !rest.starts_with('-'))
            .filter(|rest| LONG_FLAGS.contains(&rest.split('=').next().unwrap_or("")))
            .map(|rest| format!("--{rest}"));
        out.push(rewritten.unwrap_or(a));
    }
    out
}

/// Entry point used by `src/main.rs`.
pub fn main() -> ExitCode {
    logging::init();
    // The HTTP server holds a descriptor per connection, and QEMU, disks and logs need theirs
    // too: the usual soft limit of 1,024 is the first thing a connection flood exhausts.
    match http_preseed::raise_open_file_limit() {
        Ok(limit) => tracing::debug!("open-file limit: {limit:?}"),
        Err(e) => tracing::debug!("cannot raise the open-file limit: {e}"),
    }
    let mut args = rewrite_args(std::env::args());
    match args.get(1).map(String::as_str) {
        // Packer's habits: `packer -v` / `--version` print the version; `packer` alone prints
        // its usage and exits 127.
        Some("-v" | "--version") if args.len() == 2 => args[1] = "version".into(),
        None => {
            eprint!("{}", <Cli as clap::CommandFactory>::command().render_help());
            return ExitCode::from(127);
        }
        _ => {}
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if cli.offline {
        crate::download::Fetcher::set_offline();
    }
    match cli.command {
        Command::Build(mut args) => {
            args.machine_readable = cli.machine_readable;
            // A build starts only from a template that validates.
            let Some(plan) = load(&args.template) else {
                return ExitCode::FAILURE;
            };
            // A killed kiln could not remove its temporary files; they are removed at the
            // start of a build (not of other commands, which should not have side effects of
            // this kind), before the checks, so that a build refused by them still does it.
            let stale = crate::child::remove_stale_roots();
            match validate::prepare(&plan, args.force) {
                Some(sources) => build::run(&args, plan, sources, stale),
                None => {
                    for s in stale {
                        eprintln!("{s}");
                    }
                    ExitCode::FAILURE
                }
            }
        }
        Command::Validate(args) => validate::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Fmt(f) => fmt::run(&fmt::FmtArgs {
            paths: f.paths,
            check: f.check,
            diff: f.diff,
            write: f.write,
            recursive: f.recursive,
        }),
        Command::Init(args) => init::run(&args),
        Command::Console(args) => console::run(&args),
        Command::Cache(args) => cache::run(&args, cli.machine_readable),
        Command::Version => {
            if cli.machine_readable {
                let ts = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                println!("{ts},,version,{}", env!("CARGO_PKG_VERSION"));
            } else {
                println!(
                    "kiln v{} (Packer v{} compatible)",
                    env!("CARGO_PKG_VERSION"),
                    crate::template::PACKER_COMPAT_VERSION
                );
            }
            ExitCode::SUCCESS
        }
        Command::Hcl2Upgrade(args) => upgrade::run(&args),
        Command::Fix(args) => fix::run(&args),
    }
}

/// Load and evaluate a template, printing warnings, or the errors and `None`.
pub(crate) fn load(args: &TemplateArgs) -> Option<Plan> {
    load_with(&args.load_options())
}

/// Like [`load`], with explicit options.
pub(crate) fn load_with(opts: &LoadOptions) -> Option<Plan> {
    match crate::template::load(opts) {
        Ok(plan) => {
            for w in &plan.warnings {
                eprintln!("{}", w.render());
            }
            Some(plan)
        }
        Err(e) => {
            eprint!("{e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        rewrite_args(s.iter().map(|x| (*x).to_owned()))
    }

    #[test]
    fn rewrites_single_dash_flags() {
        assert_eq!(
            args(&[
                "kiln",
                "build",
                "-var",
                "a=1",
                "-only=qemu.*",
                "-x",
                "--force",
                "--",
                "-var"
            ]),
            [
                "kiln",
                "build",
                "--var",
                "a=1",
                "--only=qemu.*",
                "-x",
                "--force",
                "--",
                "-var"
            ]
        );
    }

    #[test]
    fn parses_packer_style_build_flags() {
        let cli = Cli::try_parse_from(args(&[
            "kiln",
            "-machine-readable",
            "build",
            "-on-error=abort",
            "-parallel-builds=2",
            "-color=false",
            "-only=qemu.*,vmware-iso.*",
            "t.pkr.hcl",
        ]))
        .unwrap();
        let Command::Build(b) = cli.command else {
            panic!("not build")
        };
        assert!(cli.machine_readable);
        assert_eq!(b.on_error, crate::pipeline::OnError::Abort);
        assert_eq!(b.parallel_builds, 2);
        assert!(!b.color);
        assert_eq!(b.template.only, ["qemu.*", "vmware-iso.*"]);
    }

    #[test]
    fn parses_fmt_upgrade_and_validate_flags() {
        let cli = Cli::try_parse_from(args(&[
            "kiln",
            "fmt",
            "-check",
            "-diff",
            "-write=false",
            "-recursive",
            "a",
            "b",
        ]))
        .unwrap();
        let Command::Fmt(f) = cli.command else {
            panic!("not fmt")
        };
        assert!(f.check && f.diff && !f.write && f.recursive);
        assert_eq!(f.paths, [PathBuf::from("a"), PathBuf::from("b")]);
        let cli = Cli::try_parse_from(args(&[
            "kiln",
            "hcl2_upgrade",
            "-output-file=o.pkr.hcl",
            "t.json",
        ]))
        .unwrap();
        let Command::Hcl2Upgrade(u) = cli.command else {
            panic!("not hcl2_upgrade")
        };
        assert_eq!(u.output_file, Some(PathBuf::from("o.pkr.hcl")));
        let cli = Cli::try_parse_from(args(&[
            "kiln",
            "validate",
            "-syntax-only",
            "-var-file=a",
            "-var-file",
            "b",
            ".",
        ]))
        .unwrap();
        let Command::Validate(v) = cli.command else {
            panic!("not validate")
        };
        assert!(v.syntax_only);
        assert_eq!(
            v.template.var_files,
            [PathBuf::from("a"), PathBuf::from("b")]
        );
    }
}
