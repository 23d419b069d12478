//! Filesystem functions: abspath, basename, dirname, file, filebase64, fileexists, fileset,
//! pathexpand, templatefile. Relative paths resolve against the template's directory
//! (`path.root`), except for `abspath`, which uses the working directory, as in Packer.

use std::path::{Component, Path, PathBuf};

use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::expr::{Expression, Heredoc, TemplateExpr};
use hcl::Value;

use super::args::{object, string, FnResult};
use super::encoding::b64;
use super::FnError;

pub(super) fn register(ctx: &mut Context) {
    let s = |f| FuncDef::new(f, [ParamType::String]);
    ctx.declare_func("abspath", s(hcl_fn!(abspath)));
    ctx.declare_func("basename", s(hcl_fn!(basename)));
    ctx.declare_func("dirname", s(hcl_fn!(dirname)));
    ctx.declare_func("file", s(hcl_fn!(file)));
    ctx.declare_func("filebase64", s(hcl_fn!(filebase64)));
    ctx.declare_func("fileexists", s(hcl_fn!(fileexists)));
    ctx.declare_func(
        "fileset",
        FuncDef::new(hcl_fn!(fileset), [ParamType::String, ParamType::String]),
    );
    ctx.declare_func("pathexpand", s(hcl_fn!(pathexpand)));
    ctx.declare_func(
        "templatefile",
        FuncDef::new(hcl_fn!(templatefile), [ParamType::String, ParamType::Any]),
    );
}

/// `~` or `~/…` with the user's home directory; anything else unchanged.
pub(super) fn expand_home(path: &str) -> String {
    let home = std::env::var("HOME").unwrap_or_default();
    if path == "~" {
        home
    } else if let Some(rest) = path.strip_prefix("~/") {
        format!("{home}/{rest}")
    } else {
        path.to_owned()
    }
}

/// The largest file `file`, `filebase64` and `templatefile` read: its content becomes a
/// template value, held in memory (and often copied) whole. The file hashes stream instead.
pub(super) const MAX_FILE_BYTES: u64 = 64 << 20;

/// Opens a regular file for reading; anything else is refused before it is read: a FIFO or a
/// character device would block forever or never end. Gives the file, its resolved path and its
/// size.
pub(super) fn open_regular(path: &str) -> Result<(std::fs::File, PathBuf, u64), FnError> {
    use std::os::unix::fs::OpenOptionsExt;

    let full = super::resolve_path(path);
    let cannot = |source| FnError::Read {
        path: full.clone(),
        source,
    };
    let regular = |meta: &std::fs::Metadata| {
        if meta.is_file() {
            Ok(())
        } else {
            Err(FnError::NotRegular {
                path: full.clone(),
                kind: kind_of(meta),
            })
        }
    };
    regular(&std::fs::metadata(&full).map_err(cannot)?)?;
    // O_NONBLOCK: should the path have become a FIFO since the check, opening it must not wait
    // for a writer; the second check then refuses it. Regular files ignore the flag.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&full)
        .map_err(cannot)?;
    let meta = f.metadata().map_err(cannot)?;
    regular(&meta)?;
    Ok((f, full, meta.len()))
}

/// Reads a regular file (see [`open_regular`]) of at most [`MAX_FILE_BYTES`].
pub(super) fn read_file(path: &str) -> Result<Vec<u8>, FnError> {
    use std::io::Read;

    let (f, full, len) = open_regular(path)?;
    let too_large = || FnError::FileTooLarge(full.clone());
    if len > MAX_FILE_BYTES {
        return Err(too_large());
    }
    let mut out = Vec::new();
    // One byte past the limit tells a file that grew since the check.
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|source| FnError::Read {
            path: full.clone(),
            source,
        })?;
    if out.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large());
    }
    Ok(out)
}

/// What a non-regular file is, in words, for the error that refuses it.
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// Removes `.` and resolves `..` lexically, as Go's `filepath.Clean`.
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

fn abspath(a: FuncArgs) -> FnResult {
    let p = Path::new(string(&a[0])?);
    let full = if p.is_absolute() {
        p.to_path_buf()
    } else {
        super::current_env().cwd.join(p)
    };
    Ok(clean(&full).to_string_lossy().into_owned().into())
}

fn basename(a: FuncArgs) -> FnResult {
    let s = string(&a[0])?;
    let trimmed = s.trim_end_matches('/');
    Ok(if s.is_empty() {
        ".".into()
    } else if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.rsplit('/').next().unwrap_or(trimmed).into()
    })
}

fn dirname(a: FuncArgs) -> FnResult {
    let s = string(&a[0])?;
    let dir = match s.rfind('/') {
        Some(0) => "/".to_owned(),
        Some(i) => clean(Path::new(&s[..i])).to_string_lossy().into_owned(),
        None => ".".to_owned(),
    };
    Ok(dir.into())
}

fn file(a: FuncArgs) -> FnResult {
    let path = string(&a[0])?;
    String::from_utf8(read_file(path)?)
        .map(Value::from)
        .map_err(|source| FnError::NotText {
            path: path.to_owned(),
            hint: " (use filebase64)",
            source,
        })
}

fn filebase64(a: FuncArgs) -> FnResult {
    Ok(b64(&read_file(string(&a[0])?)?))
}

fn fileexists(a: FuncArgs) -> FnResult {
    let full = super::resolve_path(string(&a[0])?);
    match std::fs::metadata(&full) {
        Ok(m) if m.is_file() => Ok(Value::Bool(true)),
        Ok(_) => Err(FnError::NotAFile(full)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Value::Bool(false)),
        Err(source) => Err(FnError::Check { path: full, source }),
    }
}

fn fileset(a: FuncArgs) -> FnResult {
    let base = super::resolve_path(string(&a[0])?);
    let pattern = string(&a[1])?;
    let full = base.join(pattern);
    let entries = glob::glob(&full.to_string_lossy()).map_err(|source| FnError::Pattern {
        pattern: pattern.to_owned(),
        source,
    })?;
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(FnError::ListFiles)?;
        if !path.is_file() {
            continue;
        }
        if let Ok(rel) = path.strip_prefix(&base) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    out.sort();
    out.dedup();
    Ok(Value::Array(out.into_iter().map(Value::from).collect()))
}

fn pathexpand(a: FuncArgs) -> FnResult {
    Ok(expand_home(string(&a[0])?).into())
}

fn templatefile_recursion(_: FuncArgs) -> FnResult {
    Err(FnError::NestedTemplatefile)
}

fn templatefile(a: FuncArgs) -> FnResult {
    let path = string(&a[0])?;
    let src = String::from_utf8(read_file(path)?).map_err(|source| FnError::NotText {
        path: path.to_owned(),
        hint: "",
        source,
    })?;
    let env = super::current_env();
    let mut ctx = Context::new();
    super::register(&mut ctx, &env);
    ctx.declare_func(
        "templatefile",
        FuncDef::new(
            hcl_fn!(templatefile_recursion),
            [ParamType::Any, ParamType::Any],
        ),
    );
    for (name, value) in object(&a[1])? {
        if hcl::Identifier::new(name.as_str()).is_err() {
            return Err(FnError::TemplateVariableName(name.clone()));
        }
        ctx.declare_var(name.as_str(), value.clone());
    }
    let expr = Expression::TemplateExpr(Box::new(TemplateExpr::Heredoc(Heredoc::new(
        hcl::Identifier::unchecked("EOT"),
        src,
    ))));
    super::evaluate(&expr, &ctx).map_err(|e| FnError::Template {
        path: path.to_owned(),
        source: Box::new(e),
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{eval_in, ok};
    use super::super::{register, FunctionEnv};
    use hcl::eval::Context;
    use hcl::Value;

    fn ctx_in(root: &std::path::Path, cwd: &std::path::Path) -> Context<'static> {
        let mut ctx = Context::new();
        register(
            &mut ctx,
            &FunctionEnv {
                path_root: root.to_path_buf(),
                cwd: cwd.to_path_buf(),
                offline: true,
            },
        );
        ctx
    }

    #[test]
    fn a_missing_file_error_names_the_path_and_keeps_the_io_error() {
        let missing = std::path::Path::new("/nonexistent/kiln/x.txt");
        match super::read_file("/nonexistent/kiln/x.txt") {
            Err(super::FnError::Read { path, source }) => {
                assert_eq!(path, missing);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn path_functions() {
        assert_eq!(ok(r#"basename("/a/b.iso")"#), Value::from("b.iso"));
        assert_eq!(ok(r#"basename("/a/b/")"#), Value::from("b"));
        assert_eq!(ok(r#"dirname("/a/b.iso")"#), Value::from("/a"));
        assert_eq!(ok(r#"dirname("b.iso")"#), Value::from("."));
        assert_eq!(ok(r#"dirname("/b")"#), Value::from("/"));
        std::env::set_var(
            "HOME",
            std::env::var("HOME").unwrap_or_else(|_| "/root".into()),
        );
        let home = std::env::var("HOME").unwrap();
        assert_eq!(ok(r#"pathexpand("~/x")"#), Value::from(format!("{home}/x")));
    }

    #[test]
    fn file_functions_resolve_against_the_template_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("http")).unwrap();
        std::fs::write(dir.path().join("http/preseed.cfg"), "d-i x\n").unwrap();
        std::fs::write(dir.path().join("http/ks.cfg"), "ks\n").unwrap();
        std::fs::write(
            dir.path().join("t.tpl"),
            "user=${user}\n%{ for p in pkgs }${p} %{ endfor }",
        )
        .unwrap();
        let cwd = tempfile::tempdir().unwrap();
        let ctx = ctx_in(dir.path(), cwd.path());
        let e = |s: &str| eval_in(s, &ctx);
        assert_eq!(e(r#"file("http/ks.cfg")"#).unwrap(), Value::from("ks\n"));
        assert_eq!(
            e(r#"filebase64("http/ks.cfg")"#).unwrap(),
            Value::from("a3MK")
        );
        assert_eq!(
            e(r#"fileexists("http/ks.cfg")"#).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(e(r#"fileexists("http/none")"#).unwrap(), Value::Bool(false));
        assert!(e(r#"fileexists("http")"#).is_err());
        assert!(e(r#"file("missing.txt")"#).is_err());
        assert_eq!(
            serde_json::to_string(&e(r#"fileset(".", "http/*.cfg")"#).unwrap()).unwrap(),
            r#"["http/ks.cfg","http/preseed.cfg"]"#
        );
        assert_eq!(
            e(r#"abspath("http/../t.tpl")"#).unwrap(),
            Value::from(cwd.path().join("t.tpl").to_string_lossy().into_owned())
        );
        assert_eq!(
            e(r#"templatefile("t.tpl", {user = "kiln", pkgs = ["a", "b"]})"#).unwrap(),
            Value::from("user=kiln\na b ")
        );
        std::fs::write(dir.path().join("r.tpl"), "${templatefile(\"r.tpl\", {})}").unwrap();
        let err = e(r#"templatefile("r.tpl", {})"#).unwrap_err().to_string();
        assert!(err.contains("inside a template file"), "{err}");
    }
}
