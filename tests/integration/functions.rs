//! Packer's function library as a template sees it: which of Packer's functions kiln has, and a
//! few calls through the public `register`/`evaluate` entry points.

// Test helpers panic on broken fixtures, like the tests that call them.
#![allow(clippy::unwrap_used)]

use hcl::eval::Context;
use hcl::Value;
use kiln::template::functions::{evaluate, register, FunctionEnv, PACKER_FUNCTIONS};

/// A context for a template in `dir`, evaluated from another working directory.
fn context(dir: &std::path::Path, offline: bool) -> Context<'static> {
    let mut ctx = Context::new();
    register(
        &mut ctx,
        &FunctionEnv {
            path_root: dir.to_path_buf(),
            cwd: std::env::temp_dir(),
            offline,
        },
    );
    ctx
}

fn eval(src: &str, ctx: &Context) -> Result<Value, String> {
    let body: hcl::Body = hcl::from_str(&format!("x = {src}\n")).unwrap();
    let attr = body.attributes().next().unwrap();
    evaluate(attr.expr(), ctx).map_err(|e| e.to_string())
}

#[test]
fn every_packer_function_is_declared() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), true);
    let missing: Vec<&str> = PACKER_FUNCTIONS
        .iter()
        .copied()
        .filter(|f| !matches!(*f, "try" | "can" | "convert"))
        .filter(|f| {
            eval(&format!("{f}()"), &ctx)
                .err()
                .is_some_and(|e| e.contains("undefined function"))
        })
        .collect();
    println!("Packer functions kiln lacks: {missing:?}");
    assert!(
        missing.is_empty(),
        "Packer functions kiln lacks: {missing:?}"
    );
}

#[test]
fn file_functions_read_next_to_the_template() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("user-data"), "#cloud-config\n").unwrap();
    std::fs::write(dir.path().join("ks.tpl"), "rootpw ${pw}\n").unwrap();
    let ctx = context(dir.path(), true);
    assert_eq!(
        eval(r#"file("user-data")"#, &ctx).unwrap(),
        Value::from("#cloud-config\n")
    );
    assert_eq!(
        eval(r#"templatefile("ks.tpl", { pw = bcrypt("x", 4) })"#, &ctx)
            .unwrap()
            .as_str()
            .map(|s| s.starts_with("rootpw $2a$04$")),
        Some(true)
    );
    let err = eval(r#"file("absent")"#, &ctx).unwrap_err();
    assert!(err.contains("absent"), "{err}");
}

#[test]
fn try_and_can_are_lazy() {
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = context(dir.path(), true);
    ctx.declare_var("settings", Value::from_iter([("disk", "20G")]));
    assert_eq!(
        eval(r#"try(settings.memory, "2048")"#, &ctx).unwrap(),
        Value::from("2048")
    );
    assert_eq!(eval("can(settings.disk)", &ctx).unwrap(), Value::Bool(true));
    let err = eval("try(settings.memory, settings.cpus)", &ctx).unwrap_err();
    assert!(err.contains("memory") && err.contains("cpus"), "{err}");
}

#[test]
fn network_functions_say_why_they_fail() {
    let dir = tempfile::tempdir().unwrap();
    let offline = context(dir.path(), true);
    let online = context(dir.path(), false);
    let e = eval(r#"consul_key("k")"#, &offline).unwrap_err();
    assert!(e.contains("offline mode"), "{e}");
    assert!(e.contains("/v1/kv/k"), "{e}");
    let e = eval(r#"aws_secretsmanager("", "k")"#, &online).unwrap_err();
    assert!(
        e.contains("At least one secret name must be provided"),
        "{e}"
    );
}

/// Collects the names of the functions a template calls.
struct Calls(std::collections::BTreeSet<String>);

impl hcl_edit::visit::Visit for Calls {
    /// `type = list(string)` in variable blocks is a type, not calls.
    fn visit_attr(&mut self, node: &hcl_edit::structure::Attribute) {
        if node.key.as_str() != "type" {
            hcl_edit::visit::visit_attr(self, node);
        }
    }

    fn visit_func_call(&mut self, node: &hcl_edit::expr::FuncCall) {
        let name = node.name.name.to_string();
        if name == "convert" {
            // Its second argument is a type such as list(string).
            if let Some(value) = node.args.iter().next() {
                self.visit_expr(value);
            }
        } else {
            hcl_edit::visit::visit_func_call(self, node);
        }
        self.0.insert(name);
    }
}

#[test]
fn corpus_templates_call_only_functions_kiln_has() {
    let corpus = corpus_or_skip!();
    let mut files = Vec::new();
    super::fmt::files_with_suffix(&corpus, &[".pkr.hcl", ".pkrvars.hcl"], &mut files);
    let mut calls = Calls(Default::default());
    for file in &files {
        let src = std::fs::read_to_string(file).unwrap();
        if let Ok(body) = hcl_edit::parser::parse_body(&src) {
            hcl_edit::visit::Visit::visit_body(&mut calls, &body);
        }
    }
    assert!(
        calls.0.len() > 10,
        "only {:?} called in the corpus",
        calls.0
    );
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), true);
    let missing: Vec<&String> = calls
        .0
        .iter()
        .filter(|f| !matches!(f.as_str(), "try" | "can" | "convert"))
        .filter(|f| {
            eval(&format!("{f}()"), &ctx)
                .err()
                .is_some_and(|e| e.contains("undefined function"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "corpus templates call functions kiln lacks: {missing:?}"
    );
}

#[test]
fn expressions_from_corpus_templates_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc/http")).unwrap();
    std::fs::write(dir.path().join("etc/http/preseed.cfg"), "d-i\n").unwrap();
    let ctx = context(dir.path(), true);
    // packer/examples/hcl/linux/variables.common.pkr.hcl
    assert_eq!(
        eval(
            r#"dirname(convert(fileset(".", "etc/http/*"), list(string))[0])"#,
            &ctx
        )
        .unwrap(),
        Value::from("etc/http")
    );
    assert_eq!(
        eval(
            r#"join("\n", formatlist("layers/%s/files", ["a", "b"]))"#,
            &ctx
        )
        .unwrap(),
        Value::from("layers/a/files\nlayers/b/files")
    );
}

/// Expressions that used to panic or abort inside hcl-rs or the function library: each gives
/// Packer's value or an error.
mod hostile_expressions {
    use super::*;

    fn run(src: &str) -> Result<Value, String> {
        let dir = tempfile::tempdir().unwrap();
        eval(src, &context(dir.path(), true))
    }

    #[test]
    fn one_modulo_zero_is_one_as_in_packer() {
        assert_eq!(run("1 % 0"), Ok(Value::from(1)));
    }

    #[test]
    fn zero_modulo_zero_is_zero_as_in_packer() {
        assert_eq!(run("0 % 0"), Ok(Value::from(0)));
    }

    #[test]
    fn one_modulo_float_zero_is_one_as_in_packer() {
        assert_eq!(run("1 % 0.0"), Ok(Value::from(1)));
    }

    #[test]
    fn smallest_integer_modulo_minus_one_is_zero() {
        assert_eq!(run("-9223372036854775808 % -1"), Ok(Value::from(0)));
    }

    #[test]
    fn one_divided_by_zero_is_an_error() {
        let err = run("1 / 0").unwrap_err();
        assert!(err.contains("division by zero"), "{err}");
    }

    #[test]
    fn a_huge_format_precision_is_an_error() {
        let err = run(r#"format("%.1000000f", 1)"#).unwrap_err();
        assert!(err.contains("precision"), "{err}");
    }

    #[test]
    fn a_huge_formatlist_width_or_precision_is_an_error() {
        let err = run(r#"formatlist("%.1000000f", [1, 2])"#).unwrap_err();
        assert!(err.contains("precision"), "{err}");
        let err = run(r#"formatlist("%99999999s", ["a"])"#).unwrap_err();
        assert!(err.contains("width"), "{err}");
    }

    #[test]
    fn a_huge_indent_is_an_error() {
        let err = run(r#"indent(9223372036854775807, "a\nb")"#).unwrap_err();
        assert!(
            err.contains("indent: 9223372036854775807 spaces is more than kiln allows"),
            "{err}"
        );
    }

    #[test]
    fn substr_with_a_huge_length_takes_the_rest() {
        assert_eq!(
            run(r#"substr("abc", 1, 9223372036854775807)"#),
            Ok(Value::from("bc"))
        );
    }

    #[test]
    fn a_huge_setproduct_is_an_error() {
        let err = run("setproduct(range(1000), range(1000), range(1000))").unwrap_err();
        assert!(err.contains("more than kiln allows"), "{err}");
    }

    #[test]
    fn file_refuses_a_fifo_instead_of_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let ctx = context(dir.path(), true);
        for f in ["file", "filebase64", "filesha256", "templatefile"] {
            let call = if f == "templatefile" {
                r#"templatefile("pipe", {})"#.to_owned()
            } else {
                format!(r#"{f}("pipe")"#)
            };
            let err = eval(&call, &ctx).unwrap_err();
            assert!(err.contains("is not a regular file (a FIFO)"), "{f}: {err}");
        }
    }

    #[test]
    fn file_refuses_a_file_too_large_to_hold() {
        let dir = tempfile::tempdir().unwrap();
        let big = std::fs::File::create(dir.path().join("big")).unwrap();
        // Sparse: no disk is used.
        big.set_len(64 << 20 | 1).unwrap();
        let err = eval(r#"file("big")"#, &context(dir.path(), true)).unwrap_err();
        assert!(err.contains("is larger than kiln reads"), "{err}");
    }
}
