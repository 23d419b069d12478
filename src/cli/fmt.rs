//! `kiln fmt`: rewrites HCL2 templates (`*.pkr.hcl`) and variable files (`*.pkrvars.hcl`) in
//! Packer's canonical style, with `packer fmt`'s options and exit codes: changed files are
//! listed, `-check` exits 3 when something would change, `-diff` prints a unified diff, `-`
//! reads standard input and writes the result to standard output.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::template::format::format_source;

/// Options of `kiln fmt`, as the command line gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FmtArgs {
    /// Files or directories to format; `-` is standard input. Empty means the current directory.
    pub paths: Vec<PathBuf>,
    /// Only check: write nothing, exit 3 when a file is not formatted.
    pub check: bool,
    /// Print a unified diff of the changes.
    pub diff: bool,
    /// Write the result back to the files (Packer's `-write`, on by default).
    pub write: bool,
    /// Descend into subdirectories.
    pub recursive: bool,
}

/// Exit code when `-check` finds files to format (Packer's).
const EXIT_NEEDS_FORMAT: u8 = 3;

/// Runs `kiln fmt` on the process's standard streams.
pub fn run(args: &FmtArgs) -> ExitCode {
    let code = run_with(
        args,
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(code)
}

/// Runs `kiln fmt` with the given streams and returns the exit code: 0 when done (or nothing to
/// change), 3 when `-check` found files to format, 1 on errors.
pub fn run_with(
    args: &FmtArgs,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let default = [PathBuf::from(".")];
    let paths = if args.paths.is_empty() {
        &default[..]
    } else {
        &args.paths[..]
    };
    let mut files = Vec::new();
    let mut failed = false;
    for path in paths {
        if let Err(e) = collect(path, args.recursive, &mut files) {
            let _ = writeln!(err, "error: cannot read {}: {e}", path.display());
            failed = true;
        }
    }
    let mut changed = false;
    for file in &files {
        match format_one(file, args, stdin, out) {
            Ok(c) => changed |= c,
            Err(e) => {
                let _ = writeln!(
                    err,
                    "error: cannot format {}\n\n{}\n",
                    file.display(),
                    crate::report::report(e.as_ref())
                );
                failed = true;
            }
        }
    }
    if failed {
        1
    } else if args.check && changed {
        EXIT_NEEDS_FORMAT
    } else {
        0
    }
}

fn is_hcl_template(path: &Path) -> bool {
    let name = path.to_string_lossy();
    name.ends_with(".pkr.hcl") || name.ends_with(".pkrvars.hcl")
}

/// Editor backups and hidden files are skipped in directories, as Packer does.
fn ignored(name: &str) -> bool {
    name.starts_with('.') || name.ends_with('~') || (name.starts_with('#') && name.ends_with('#'))
}

fn collect(path: &Path, recursive: bool, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.as_os_str() == "-" || !path.is_dir() {
        files.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(path)?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for entry in entries {
        let name = entry
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if ignored(&name) {
            continue;
        }
        if entry.is_dir() {
            if recursive {
                collect(&entry, recursive, files)?;
            }
        } else if is_hcl_template(&entry) {
            files.push(entry);
        }
    }
    Ok(())
}

/// Formats one file (or standard input); returns whether it needed changes.
fn format_one(
    file: &Path,
    args: &FmtArgs,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    use anyhow::Context;
    let from_stdin = file.as_os_str() == "-";
    if !from_stdin && !is_hcl_template(file) {
        anyhow::bail!(
            "{} is not an HCL2 template (*.pkr.hcl or *.pkrvars.hcl)",
            file.display()
        );
    }
    let mut src = String::new();
    if from_stdin {
        stdin.read_to_string(&mut src)
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_string(&mut src))
    }
    .with_context(|| format!("cannot read {}", file.display()))?;
    let formatted = format_source(&src)?;
    let write_out = |out: &mut dyn Write, bytes: &str| {
        out.write_all(bytes.as_bytes())
            .context("cannot write the output")
    };
    if formatted == src {
        if from_stdin {
            write_out(out, &formatted)?;
        }
        return Ok(false);
    }
    if !from_stdin {
        write_out(out, &format!("{}\n", file.display()))?;
    }
    if args.write && !args.check {
        if from_stdin {
            write_out(out, &formatted)?;
        } else {
            std::fs::write(file, &formatted)
                .with_context(|| format!("cannot write {}", file.display()))?;
        }
    }
    if args.diff && !from_stdin {
        let name = file.display().to_string();
        let diff = similar::TextDiff::from_lines(&src, &formatted)
            .unified_diff()
            .header(&format!("old/{name}"), &format!("new/{name}"))
            .to_string();
        write_out(out, &diff)?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(paths: Vec<PathBuf>) -> FmtArgs {
        FmtArgs {
            paths,
            check: false,
            diff: false,
            write: true,
            recursive: false,
        }
    }

    fn run_capture(args: &FmtArgs, stdin: &str) -> (u8, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_with(args, &mut stdin.as_bytes(), &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn check_reports_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.pkr.hcl");
        std::fs::write(&file, "a=1\n").unwrap();
        let mut a = args(vec![dir.path().to_path_buf()]);
        a.check = true;
        let (code, out, _) = run_capture(&a, "");
        assert_eq!(code, 3);
        assert!(out.contains("a.pkr.hcl"), "{out}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "a=1\n");
    }

    #[test]
    fn write_lists_and_rewrites_then_is_quiet() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("v.pkrvars.hcl");
        std::fs::write(&file, "a=1\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "a=1\n").unwrap();
        let a = args(vec![dir.path().to_path_buf()]);
        let (code, out, _) = run_capture(&a, "");
        assert_eq!((code, out.lines().count()), (0, 1), "{out}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "a = 1\n");
        let (code, out, _) = run_capture(&a, "");
        assert_eq!((code, out.as_str()), (0, ""));
    }

    #[test]
    fn diff_is_unified() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.pkr.hcl");
        std::fs::write(&file, "a=1\n").unwrap();
        let mut a = args(vec![file]);
        a.diff = true;
        a.check = true;
        let (_, out, _) = run_capture(&a, "");
        assert!(out.contains("-a=1\n+a = 1\n"), "{out}");
        assert!(out.contains("--- old/"), "{out}");
    }

    #[test]
    fn stdin_goes_to_stdout() {
        let (code, out, _) = run_capture(&args(vec![PathBuf::from("-")]), "b=2\n");
        assert_eq!((code, out.as_str()), (0, "b = 2\n"));
    }

    #[test]
    fn recursion_is_opt_in() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let nested = dir.path().join("sub/n.pkr.hcl");
        std::fs::write(&nested, "n=1\n").unwrap();
        let mut a = args(vec![dir.path().to_path_buf()]);
        run_capture(&a, "");
        assert_eq!(std::fs::read_to_string(&nested).unwrap(), "n=1\n");
        a.recursive = true;
        run_capture(&a, "");
        assert_eq!(std::fs::read_to_string(&nested).unwrap(), "n = 1\n");
    }

    #[test]
    fn errors_exit_1_and_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.pkr.hcl");
        std::fs::write(&file, "a = {\n").unwrap();
        let (code, _, err) = run_capture(&args(vec![file]), "");
        assert_eq!(code, 1);
        assert!(err.contains("bad.pkr.hcl"), "{err}");
        let (code, _, _) = run_capture(&args(vec![dir.path().join("x.json")]), "");
        assert_eq!(code, 1);
    }
}
