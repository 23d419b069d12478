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
    assert!(e.contains("not available offline"), "{e}");
    let e = eval(r#"aws_secretsmanager("s", "k")"#, &online).unwrap_err();
    assert!(e.contains("not supported by kiln yet"), "{e}");
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
