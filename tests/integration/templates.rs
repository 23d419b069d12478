//! Template loading: the exact diagnostics for invalid fixtures (file:line:col, source line,
//! caret, hint) and the plan produced for valid ones.

#![allow(clippy::unwrap_used, reason = "tests may unwrap")]

use assert_cmd::Command;
use kiln::config::{decode, qemu::QemuConfig};
use kiln::template::{load, LoadOptions, Plan};
use serde_json::json;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn kiln() -> Command {
    let mut c = Command::cargo_bin("kiln").unwrap();
    c.current_dir(root())
        .env("NO_COLOR", "1")
        .env_remove("PACKER_LOG")
        .env_remove("KILN_LOG");
    c
}

fn validate_err(fixture: &str) -> String {
    let out = kiln()
        .args(["validate", &format!("fixtures/templates/invalid/{fixture}")])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{fixture}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn syntax_error() {
    assert_eq!(
        validate_err("syntax.pkr.hcl"),
        r#"error: invalid HCL syntax: invalid expression; expected `"`, `[`, `{`, `-`, `!`, `(`, `_`, `<`, letter or digit
  --> fixtures/templates/invalid/syntax.pkr.hcl:3:13
  |
3 |   memory  = 
  |             ^
  hint: fix the syntax at the marked position (unclosed brace, bracket or quote?)

"#
    );
}

#[test]
fn variable_type_error() {
    assert_eq!(
        validate_err("type_error.pkr.hcl"),
        r#"error: invalid default for variable "size": a number is required, got string "ten"
  --> fixtures/templates/invalid/type_error.pkr.hcl:3:3
  |
3 |   default = "ten"
  |   ^^^^^^^
  hint: give a default of type number

"#
    );
}

#[test]
fn unknown_option_with_suggestion() {
    assert_eq!(
        validate_err("unknown_option.pkr.hcl"),
        r#"error: unknown option "iso_ulr" in source "qemu.vm"
  --> fixtures/templates/invalid/unknown_option.pkr.hcl:4:3
  |
4 |   iso_ulr      = "y.iso"
  |   ^^^^^^^
  hint: did you mean "iso_url"? Remove or rename the option

"#
    );
}

#[test]
fn option_type_error() {
    assert_eq!(
        validate_err("option_type.pkr.hcl"),
        r#"error: invalid value for "memory" in source "qemu.vm": invalid type: string "lots", expected an integer
  --> fixtures/templates/invalid/option_type.pkr.hcl:4:3
  |
4 |   memory       = "lots"
  |   ^^^^^^
  hint: change the value of "memory" to the type it expects

"#
    );
}

#[test]
fn missing_variable() {
    assert_eq!(
        validate_err("missing_variable.pkr.hcl"),
        r#"error: variable "iso_url" is not set and has no default
  --> fixtures/templates/invalid/missing_variable.pkr.hcl:1:1
  |
1 | variable "iso_url" {
  | ^^^^^^^^
  hint: set it with -var 'iso_url=…', in a var-file, or with PKR_VAR_iso_url; or give it a default

"#
    );
}

#[test]
fn failing_validation_block() {
    assert_eq!(
        validate_err("validation.pkr.hcl"),
        r#"error: invalid value for variable "arch": The arch must be x86_64 or aarch64.
  --> fixtures/templates/invalid/validation.pkr.hcl:5:5
  |
5 |     condition     = var.arch == "x86_64" || var.arch == "aarch64"
  |     ^^^^^^^^^
  hint: this validation rule failed; change the value given for var.arch

"#
    );
}

#[test]
fn cycle_in_locals() {
    assert_eq!(
        validate_err("cycle.pkr.hcl"),
        r#"error: cycle between locals / data sources: local.a -> local.b -> local.c -> local.a
  --> fixtures/templates/invalid/cycle.pkr.hcl:2:3
  |
2 |   a = local.b
  |   ^
  hint: break the cycle: one of these values must not depend on the others

"#
    );
}

#[test]
fn unknown_source_type() {
    assert_eq!(
        validate_err("unknown_source_type.pkr.hcl"),
        r#"error: unknown source type "parallels-iso" (used by build "parallels-iso.vm")
  --> fixtures/templates/invalid/unknown_source_type.pkr.hcl:1:1
  |
1 | source "parallels-iso" "vm" {
  | ^^^^^^
  hint: kiln builds qemu, virtualbox-iso, virtualbox-ovf, virtualbox-vm, vmware-iso, vmware-vmx, null; leave this source out with -only or -except (e.g. -except='parallels-iso.*')

"#
    );
}

#[test]
fn unknown_source_type_is_fine_when_excluded() {
    kiln()
        .args([
            "validate",
            "-except=parallels-iso.*",
            "fixtures/templates/invalid/unknown_source_type.pkr.hcl",
        ])
        .assert()
        .success();
}

#[test]
fn undefined_source_and_unknown_block() {
    assert_eq!(
        validate_err("undefined_source.pkr.hcl"),
        r#"error: build 0 uses undefined source "qemu.vn"
  --> fixtures/templates/invalid/undefined_source.pkr.hcl:6:3
  |
6 |   sources = ["source.qemu.vn"]
  |   ^^^^^^^
  hint: did you mean "source.qemu.vm"?

"#
    );
    assert_eq!(
        validate_err("unknown_block.pkr.hcl"),
        r#"error: unknown block type "varible"
  --> fixtures/templates/invalid/unknown_block.pkr.hcl:1:1
  |
1 | varible "x" {
  | ^^^^^^^
  hint: did you mean "variable"?

"#
    );
}

#[test]
fn missing_required_options() {
    let err = validate_err("missing_required.pkr.hcl");
    assert!(err.starts_with(
        "error: one of iso_url or iso_urls must be set in source \"qemu.vm\"\n  --> fixtures/templates/invalid/missing_required.pkr.hcl:1:1\n"
    ));
    assert!(err.contains(
        "error: iso_checksum must be set (use \"none\" to skip verification) in source \"qemu.vm\""
    ));
}

fn load_fixture(path: &str) -> Plan {
    let opts = LoadOptions {
        path: root().join(path),
        cwd: root(),
        ..LoadOptions::default()
    };
    load(&opts).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn plan_of_a_valid_template() {
    let plan = load_fixture("fixtures/templates/valid/basic.pkr.hcl");
    let names: Vec<&str> = plan.builds.iter().map(|b| b.name.as_str()).collect();
    // The build block is named "main": Packer's names are build.type.source.
    assert_eq!(names, ["main.qemu.vm", "main.null.check", "main.qemu.big"]);

    let vm = &plan.builds[0];
    assert_eq!(
        (vm.build_name.as_str(), vm.description.as_str()),
        ("main", "the main build")
    );
    assert_eq!(vm.config["memory"], json!(1024));
    assert_eq!(vm.config["vm_name"], json!("vm-qemu"));
    assert_eq!(
        vm.config["iso_url"],
        json!("https://example.invalid/debian-12.iso")
    );
    assert!(
        vm.config.get("cpu_model").is_none(),
        "null attributes are left out"
    );
    assert_eq!(
        vm.config["qemu_img_args"],
        json!([{"create": ["-o", "preallocation=off"]}])
    );
    assert_eq!(
        vm.config["boot_command"],
        json!(["<esc>auto url=http://{{ .HTTPIP }}:{{ .HTTPPort }}/preseed.cfg<enter>"])
    );
    let memory = vm.spans.attrs.get("memory").unwrap();
    assert_eq!((memory.line, memory.col), (55, 3));
    assert!(memory.file.ends_with("basic.pkr.hcl"));

    // The build block's source block renames and overrides.
    let big = &plan.builds[2];
    assert_eq!(
        (big.source_type.as_str(), big.source_name.as_str()),
        ("qemu", "big")
    );
    assert_eq!(big.config["memory"], json!(4096));
    assert_eq!(big.config["vm_name"], json!("big-qemu"));

    // Provisioners: only/except, meta-arguments, override, build.* placeholders.
    assert_eq!(vm.provisioners.len(), 1);
    let p = &vm.provisioners[0];
    assert_eq!(p.kind, "shell");
    assert_eq!(
        p.config["inline"],
        json!([
            "echo hello debian-12",
            "echo {{ build `ID` }} {{ build `ID` }}"
        ])
    );
    assert_eq!(
        p.meta.pause_before.unwrap().duration,
        std::time::Duration::from_secs(5)
    );
    assert_eq!(p.meta.max_retries, 2);
    assert!(p.config.get("only").is_none() && p.config.get("pause_before").is_none());
    assert_eq!(big.provisioners[0].config["inline"], json!(["echo big"]));
    let null = &plan.builds[1];
    assert_eq!(null.provisioners.len(), 1);
    assert_eq!(
        null.provisioners[0].config["inline"],
        json!(["echo only on null"])
    );
    assert_eq!(vm.error_cleanup.as_ref().unwrap().kind, "shell-local");

    // Post-processor chains.
    let chains: Vec<Vec<&str>> = vm
        .post_processors
        .iter()
        .map(|c| c.iter().map(|s| s.kind.as_str()).collect())
        .collect();
    assert_eq!(chains, [vec!["manifest"], vec!["compress", "checksum"]]);
    assert_eq!(
        vm.post_processors[1][1].meta.keep_input_artifact,
        Some(true)
    );

    // Sensitive values, for log redaction.
    assert!(plan
        .sensitive_values()
        .contains(&"hunter2-secret".to_owned()));
    assert!(plan
        .sensitive_values()
        .contains(&"tok-hunter2-secret".to_owned()));
    assert_eq!(plan.redact("pw: hunter2-secret"), "pw: <sensitive>");
    assert_eq!(plan.required_plugins[0].source, "github.com/hashicorp/qemu");

    // The config decodes into the typed struct.
    let cfg: QemuConfig = decode(&vm.config, &vm.spans).unwrap();
    assert_eq!(cfg.memory, 1024);
    assert_eq!(cfg.qemu_img_args.create, ["-o", "preallocation=off"]);
    assert_eq!(cfg.disk_additional_size.len(), 1);
}

#[test]
fn dynamic_blocks_expand() {
    let plan = load_fixture("fixtures/templates/valid/dynamic.pkr.hcl");
    assert_eq!(
        plan.builds[0].config["tag"],
        json!([{"key": "a", "value": "1"}, {"key": "b", "value": "2"}])
    );
}

#[test]
fn pkr_json_templates_load() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.pkr.json");
    std::fs::write(
        &file,
        r#"{
  "variable": {"mem": {"type": "number", "default": 2048}},
  "source": {"qemu": {"vm": {"iso_url": "x.iso", "iso_checksum": "none", "memory": "${var.mem}"}}},
  "build": {"sources": ["source.qemu.vm"], "provisioner": [{"shell": {"inline": ["true"]}}]}
}"#,
    )
    .unwrap();
    let plan = load(&LoadOptions {
        path: file,
        ..LoadOptions::default()
    })
    .unwrap();
    assert_eq!(plan.builds[0].config["memory"], json!(2048));
    assert_eq!(plan.builds[0].provisioners[0].kind, "shell");
}

#[test]
fn fixtures_exist() {
    assert!(Path::new(&root().join("fixtures/templates/valid/basic.pkr.hcl")).exists());
}

mod no_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// Template-shaped garbage gives a plan or diagnostics, never a panic.
        #[test]
        fn loading_arbitrary_text_never_panics(text in r#"(variable|locals|source|build|local|data|dynamic|provisioner|"[a-z.]{0,6}"|[a-z_]{1,6}|\$\{|\}|\{|\[|\]|=|\n|,|\(|\)|\?|:|[0-9]{1,3}|==|&&|var\.|local\.| ){0,60}"#) {
            let dir = tempfile::tempdir().unwrap();
            for name in ["t.pkr.hcl", "t.pkr.json"] {
                let path = dir.path().join(name);
                std::fs::write(&path, &text).unwrap();
                let _ = load(&LoadOptions { path: path.clone(), ..LoadOptions::default() }).map_err(|e| e.to_string());
                std::fs::remove_file(&path).unwrap();
            }
        }
    }
}

#[test]
fn a_problem_in_a_shared_provisioner_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.pkr.hcl"),
        "source \"null\" \"a\" {\n  communicator = \"none\"\n}\n\nsource \"null\" \"b\" {\n  communicator = \"none\"\n}\n\nbuild {\n  sources = [\"source.null.a\", \"source.null.b\"]\n\n  provisioner \"shell\" {\n    inlin = [\"true\"]\n  }\n}\n",
    )
    .unwrap();
    let out = kiln()
        .args(["validate", dir.path().join("t.pkr.hcl").to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.matches("error:").count(), 1, "{err}");
    assert!(
        err.starts_with("error: unknown option \"inlin\" in provisioner \"shell\"\n"),
        "{err}"
    );
    assert!(err.contains(":13:5\n"), "{err}");
    assert!(err.contains("hint: did you mean \"inline\"?"), "{err}");
}

#[test]
fn reference_to_an_undeclared_variable() {
    assert_eq!(
        validate_err("undeclared_reference.pkr.hcl"),
        r#"error: cannot evaluate local.greeting: variable "whom" is not declared
  --> fixtures/templates/invalid/undeclared_reference.pkr.hcl:6:3
  |
6 |   greeting = "hello ${var.whom}"
  |   ^^^^^^^^
  hint: declare it, or check the spelling of var.whom

"#
    );
}

#[test]
fn long_chains_of_locals_do_not_overflow_the_stack() {
    let dir = tempfile::tempdir().unwrap();
    let n = 3000;
    let mut text = String::from("locals {\n");
    for i in 0..n {
        text.push_str(&format!("  a{i} = local.a{}\n", i + 1));
    }
    text.push_str(&format!("  a{n} = \"end\"\n}}\n"));
    let path = dir.path().join("t.pkr.hcl");
    std::fs::write(&path, text).unwrap();
    let plan = load(&LoadOptions {
        path,
        ..LoadOptions::default()
    })
    .unwrap();
    let a0 = plan.locals.iter().find(|l| l.name == "a0").unwrap();
    assert_eq!(a0.value, hcl::Value::from("end"));
}
