//! Real public templates from the shared corpus (`../shared/corpus` beside the repository, or
//! `KILN_CORPUS_DIR`): every x86_64 Linux and Windows bento configuration validates and
//! inspects as bento users run it.

#![allow(clippy::unwrap_used, reason = "tests may unwrap")]

use assert_cmd::Command;
use std::path::{Path, PathBuf};

/// The x86_64 var-files of Linux and Windows systems, relative to the bento directory.
fn bento_var_files(bento: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut systems: Vec<_> = std::fs::read_dir(bento.join("os_pkrvars"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    systems.sort();
    for sys in systems {
        let os = sys.file_name().unwrap().to_string_lossy().into_owned();
        if ["macos", "freebsd", "solaris"].contains(&os.as_str()) {
            continue;
        }
        let mut files: Vec<_> = std::fs::read_dir(&sys)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with("-x86_64.pkrvars.hcl") {
                out.push(format!("os_pkrvars/{os}/{name}"));
            }
        }
    }
    out
}

fn kiln(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("kiln").unwrap();
    c.current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("PACKER_LOG")
        .env_remove("KILN_LOG");
    c
}

#[test]
fn bento_validates_and_inspects_for_every_x86_64_linux_and_windows_system() {
    let bento = corpus_or_skip!().join("bento");
    let files = bento_var_files(&bento);
    assert!(
        files.len() >= 20,
        "expected the bento var-files, found {files:?}"
    );
    let mut failures = Vec::new();
    for f in &files {
        let only = "-only=qemu.*,virtualbox-iso.*,vmware-iso.*";
        let var_file = format!("-var-file={f}");
        let out = kiln(&bento)
            .args(["validate", only, &var_file, "packer_templates"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        // amazonlinux builds only virtualbox-ovf (sources_enabled in its var-file), which -only
        // leaves out: selecting nothing is an error, as in Packer.
        if f.contains("amazonlinux") && err.starts_with("error: no builds match -only") {
            continue;
        }
        if !out.status.success() {
            failures.push(format!(
                "validate {f}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
            continue;
        }
        let out = kiln(&bento)
            .args(["inspect", only, &var_file, "packer_templates"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let windows = f.contains("windows");
        // A var-file that picks its own sources (amazonlinux: virtualbox-ovf) leaves no build
        // for -only to select.
        let own_sources = std::fs::read_to_string(bento.join(f))
            .unwrap()
            .contains("sources_enabled");
        let wanted: &[&str] = if own_sources {
            &["var.os_name: ", "var.sources_enabled: "]
        } else {
            &[
                "var.os_name: ",
                "var.sources_enabled: ",
                "local.scripts: ",
                "  > qemu.vm:",
                "  > virtualbox-iso.vm:",
                "  > vmware-iso.vm:",
                if windows {
                    "      powershell"
                } else {
                    "      shell"
                },
                "      0: vagrant",
            ]
        };
        for w in wanted {
            if !text.contains(w) {
                failures.push(format!("inspect {f}: no {w:?} in:\n{text}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn bento_without_only_names_the_unknown_source_type() {
    let bento = corpus_or_skip!().join("bento");
    let out = kiln(&bento)
        .args([
            "validate",
            "-var-file=os_pkrvars/debian/debian-12-x86_64.pkrvars.hcl",
            "packer_templates",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown source type \"parallels-iso\""),
        "{err}"
    );
}

#[test]
fn plugin_examples_validate() {
    let root = corpus_or_skip!();
    // This directory defines its source twice across files: only its syntax is valid.
    kiln(&root.join("packer-plugin-qemu/example"))
        .args(["validate", "-syntax-only", "."])
        .assert()
        .success();
    kiln(&root.join("packer-plugin-qemu/example/efi_build"))
        .args(["validate", "."])
        .assert()
        .success();
    kiln(&root.join("packer-plugin-vmware/example/iso"))
        .args([
            "validate",
            "-var-file=pkrvars/debian/workstation-amd64.pkrvars.hcl",
            ".",
        ])
        .assert()
        .success();
}

/// Every file found under `dir` whose name ends with one of `suffixes`.
fn files_under(dir: &Path, suffixes: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files_under(&p, suffixes, out);
        } else if suffixes.iter().any(|s| p.to_string_lossy().ends_with(s)) {
            out.push(p);
        }
    }
}

#[test]
fn packer_test_templates_never_crash_kiln() {
    // Packer's own test data holds valid and deliberately broken templates: kiln must answer
    // each with success or a diagnostic, never a crash.
    let mut files = Vec::new();
    files_under(
        &corpus_or_skip!().join("packer"),
        &[".pkr.hcl", ".pkr.json", ".pkrvars.hcl"],
        &mut files,
    );
    assert!(files.len() > 50, "found only {} files", files.len());
    let mut crashes = Vec::new();
    for f in &files {
        for cmd in ["validate", "inspect"] {
            let out = kiln(f.parent().unwrap())
                .args([cmd, f.to_str().unwrap()])
                .output()
                .unwrap();
            let code = out.status.code();
            if !matches!(code, Some(0 | 1))
                || String::from_utf8_lossy(&out.stderr).contains("panicked")
            {
                crashes.push(format!(
                    "{cmd} {}: {code:?}\n{}",
                    f.display(),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    assert!(crashes.is_empty(), "{}", crashes.join("\n"));
}

#[test]
fn legacy_json_templates_validate() {
    let root = corpus_or_skip!();
    let mut failures = Vec::new();
    let mut checked = 0;
    for dir in [
        "boxcutter-debian",
        "boxcutter-ubuntu",
        "boxcutter-centos",
        "boxcutter-windows",
        "bento-legacy-json/packer_templates/debian",
        "bento-legacy-json/packer_templates/ubuntu",
    ] {
        let d = root.join(dir);
        let mut files: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        // Only templates: boxcutter's other JSON files are var-files.
        let templates = files.iter().filter(|f| {
            f.extension().is_some_and(|e| e == "json")
                && std::fs::read_to_string(f).is_ok_and(|t| t.contains("\"builders\""))
        });
        for f in templates {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            let out = kiln(&d)
                .args(["validate", "-syntax-only", &name])
                .output()
                .unwrap();
            checked += 1;
            if !out.status.success() {
                failures.push(format!(
                    "{dir}/{name}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    assert!(checked > 20, "found only {checked} legacy templates");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn bento_console_evaluates_without_selecting_builds() {
    let bento = corpus_or_skip!().join("bento");
    kiln(&bento)
        .args([
            "console",
            "-var-file=os_pkrvars/ubuntu/ubuntu-24.04-x86_64.pkrvars.hcl",
            "-expr",
            "local.source_names",
            "-expr",
            "var.os_version",
            "packer_templates",
        ])
        .assert()
        .success()
        .stdout("[\"parallels-iso.vm\", \"qemu.vm\", \"utm-iso.vm\", \"virtualbox-iso.vm\", \"vmware-iso.vm\"]\n24.04\n");
}

#[test]
fn bento_legacy_json_templates_validate_fully() {
    // amazonlinux and sles reference user variables they never declare; Packer 1.6.6 only
    // checks their syntax too.
    let root = corpus_or_skip!().join("bento-legacy-json/packer_templates");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    let mut failures = Vec::new();
    let mut checked = 0;
    for d in dirs.iter().filter(|d| d.is_dir()) {
        let os = d.file_name().unwrap().to_string_lossy().into_owned();
        if ["amazonlinux", "sles", "_common"].contains(&os.as_str()) {
            continue;
        }
        let mut files: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            if !(name.ends_with(".json") && (name.contains("amd64") || name.contains("x86_64"))) {
                continue;
            }
            checked += 1;
            let out = kiln(d)
                .args([
                    "validate",
                    "-only=qemu.*,virtualbox-iso.*,vmware-iso.*",
                    &name,
                ])
                .output()
                .unwrap();
            if !out.status.success() {
                failures.push(format!(
                    "{os}/{name}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    assert!(checked > 10, "found only {checked} templates");
    assert!(
        failures.is_empty(),
        "{} of {checked} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn boxcutter_templates_validate_with_their_var_files() {
    let root = corpus_or_skip!();
    let cases = [
        ("boxcutter-debian", "debian10.json", "debian.json"),
        ("boxcutter-ubuntu", "ubuntu1604.json", "ubuntu.json"),
        ("boxcutter-centos", "centos7.json", "centos.json"),
    ];
    for (dir, vars, template) in cases {
        let out = kiln(&root.join(dir))
            .args([
                "validate",
                "-only=qemu.*,virtualbox-iso.*,vmware-iso.*",
                &format!("-var-file={vars}"),
                template,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
