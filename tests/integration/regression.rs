//! Regression tests for differences from Packer that users noticed, each named after the item
//! of the issue that reported it (ripgrep's `tests/regression.rs` is the model): `issue16_1_…` is
//! item 1 of "Run like Packer where users notice".

#![allow(clippy::unwrap_used, reason = "tests may unwrap")]

use assert_cmd::Command;
use std::path::Path;

fn kiln(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("kiln").unwrap();
    c.current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("PACKER_LOG")
        .env_remove("KILN_LOG");
    c
}

/// `timestamp,target,type,data…` lines of a `-machine-readable` run: (target, type).
fn targets(stdout: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(4, ',');
            let _ts = f.next()?;
            Some((f.next()?.to_owned(), f.next()?.to_owned()))
        })
        .collect()
}

const LEGACY: &str = r#"{
  "builders": [
    {"type": "null", "communicator": "none"},
    {"type": "null", "name": "second", "communicator": "none"}
  ],
  "provisioners": [
    {"type": "shell-local", "inline": ["echo {{build_name}}/{{build_type}} >> names.txt"]}
  ],
  "post-processors": [{"type": "manifest", "output": "manifest.json"}]
}"#;

/// A legacy JSON builder without `name` is named by its type, as in Packer: `-only=qemu` as
/// boxcutter's Makefiles pass it selects it, and the machine-readable target, the
/// manifest's `name` and `{{build_name}}` are that name.
#[test]
fn issue16_1_legacy_json_builds_are_named_by_type_or_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.json"), LEGACY).unwrap();
    let out = kiln(dir.path())
        .args(["-machine-readable", "build", "-only=null", "t.json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let t = targets(&out.stdout);
    assert!(t.iter().any(|(target, _)| target == "null"), "{t:?}");
    assert!(t.iter().all(|(target, _)| target != "second"), "{t:?}");
    let names = std::fs::read_to_string(dir.path().join("names.txt")).unwrap();
    assert_eq!(names, "null/null\n");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["builds"][0]["name"], "null");
    assert_eq!(manifest["builds"][0]["builder_type"], "null");

    // A named builder goes by its name; kiln's `type.*` globs match JSON builds too.
    let out = kiln(dir.path())
        .args(["build", "-only=second", "t.json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let names = std::fs::read_to_string(dir.path().join("names.txt")).unwrap();
    assert_eq!(names, "null/null\nsecond/null\n");
    let out = kiln(dir.path())
        .args(["inspect", "-only=null.*", "t.json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("  > null:") && text.contains("  > second:"),
        "{text}"
    );
}

/// A named HCL2 build is `name.type.source` in Packer's output; `{{build_name}}` and
/// `{{build_type}}` in a provisioner are the source's name and type (they were left literal).
#[test]
fn issue16_1_2_named_hcl_builds_and_build_name_placeholders() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.pkr.hcl"),
        r#"source "null" "a" { communicator = "none" }
build {
  name    = "mybuild"
  sources = ["source.null.a"]
  provisioner "shell-local" {
    inline = ["echo {{build_name}}/{{ build_type }} > names.txt"]
  }
}
"#,
    )
    .unwrap();
    let out = kiln(dir.path())
        .args([
            "-machine-readable",
            "build",
            "-only=mybuild.null.a",
            "t.pkr.hcl",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let t = targets(&out.stdout);
    assert!(
        t.iter().any(|(target, _)| target == "mybuild.null.a"),
        "{t:?}"
    );
    let names = std::fs::read_to_string(dir.path().join("names.txt")).unwrap();
    assert_eq!(names, "a/null\n");
}

const WITH_PARALLELS: &str = r#"packer {
  required_plugins {
    parallels = {
      version = ">= 1.0"
      source  = "github.com/parallels/parallels"
    }
  }
}
source "parallels-iso" "vm" {}
source "null" "vm" { communicator = "none" }
build { sources = ["source.parallels-iso.vm", "source.null.vm"] }
"#;

/// `inspect` lists a build whose source type kiln lacks, marked, instead of refusing the whole
/// template (every bento template names parallels, hyperv and utm sources).
#[test]
fn issue16_6_inspect_lists_and_marks_unknown_source_types() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.pkr.hcl"), WITH_PARALLELS).unwrap();
    let out = kiln(dir.path())
        .args(["inspect", "t.pkr.hcl"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("  > parallels-iso.vm:\n\n    source: parallels-iso (kiln cannot build this source type)\n"),
        "{text}"
    );
    assert!(
        text.contains("  > null.vm:\n\n    source: null\n"),
        "{text}"
    );
}

const UNSET_VARIABLES: &str = r#"variable "iso_url" {
  type = string
  validation {
    condition     = length(var.iso_url) > 30
    error_message = "too short"
  }
}
variable "cpus" { type = number }
variable "mirrors" { type = list(string) }
variable "password" {
  type      = string
  sensitive = true
}
variable "known" { default = "yes" }
locals {
  url   = "${var.iso_url}/x.iso"
  first = var.mirrors[0]
  plain = "${var.known}!"
}
data "null" "d" { input = var.iso_url }
source "qemu" "vm" {
  iso_url      = local.url
  cpus         = var.cpus + 1
  ssh_password = var.password
}
build {
  name    = "b"
  sources = ["source.qemu.vm"]
  provisioner "shell" { inline = ["echo ${var.mirrors[1]}"] }
}
"#;

/// `inspect` lists a template whose variables have no value, as Packer's does: each is shown
/// as `"<unknown>"`, so is every local built from one, and the builds are listed; `validate`
/// and `build` still refuse the unset variables.
#[test]
fn issue16_6_inspect_lists_templates_with_unset_variables() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.pkr.hcl"), UNSET_VARIABLES).unwrap();
    let out = kiln(dir.path())
        .args(["inspect", "t.pkr.hcl"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "var.iso_url: \"<unknown>\"\n",
        "var.cpus: \"<unknown>\"\n",
        "var.mirrors: \"<unknown>\"\n",
        "var.password: \"<unknown>\"\n",
        "var.known: \"yes\"\n",
        "local.url: \"<unknown>\"\n",
        "local.first: \"<unknown>\"\n",
        "local.plain: \"yes!\"\n",
        "  > b.qemu.vm:\n",
        "    source: qemu\n",
        "      shell\n",
    ] {
        assert!(text.contains(line), "{line:?} missing in:\n{text}");
    }
    assert!(!text.contains('\u{E002}'), "{text}");

    // Given a value, the variable is shown and checked as before.
    let out = kiln(dir.path())
        .args([
            "inspect",
            "-var",
            "iso_url=http://example.org/short",
            "t.pkr.hcl",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("too short"),
        "{out:?}"
    );

    for cmd in ["validate", "build"] {
        let out = kiln(dir.path()).args([cmd, "t.pkr.hcl"]).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{cmd}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("variable \"iso_url\" is not set and has no default"),
            "{cmd}: {err}"
        );
    }
}

/// `init` on a template with plugins kiln lacks warns, naming them and the sources that will
/// not build, and succeeds, so `kiln init && kiln build -only=…` works; it fails only when the
/// builds selected with -only/-except need a missing plugin.
#[test]
fn issue16_7_init_warns_and_fails_only_for_selected_builds() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.pkr.hcl"), WITH_PARALLELS).unwrap();
    let out = kiln(dir.path()).args(["init", "."]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: parallels (github.com/parallels/parallels >= 1.0): not available in kiln; these sources will not build: parallels-iso.vm"),
        "{err}"
    );
    kiln(dir.path())
        .args(["init", "-only=null.*", "."])
        .assert()
        .success();
    let out = kiln(dir.path())
        .args(["init", "-except=null.*", "."])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("error: the selected builds need plugins kiln does not have: parallels-iso.vm"));
}

/// `-v` and `--version` print the version as Packer's do; no arguments at all print the usage
/// and exit 127, as Packer does.
#[test]
fn issue16_8_version_flags_and_no_arguments() {
    let dir = tempfile::tempdir().unwrap();
    for flag in ["-v", "--version", "-version"] {
        let out = kiln(dir.path()).arg(flag).output().unwrap();
        assert!(out.status.success(), "{flag}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with("kiln v"),
            "{flag}: {out:?}"
        );
    }
    let out = kiln(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage:"));
}

/// An undeclared `{{user `x`}}` in a legacy JSON template is the empty string, as in Packer
/// (bento-legacy's sles-15.json and boxcutter's ubuntu.json rely on it), and `hcl2_upgrade`
/// gives the variable that default.
#[test]
fn issue16_3_undeclared_user_variable_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.json"),
        r#"{"builders": [{"type": "null", "communicator": "none"}],
            "provisioners": [{"type": "shell-local", "inline": ["echo [{{user `nope`}}] > out.txt"]}]}"#,
    )
    .unwrap();
    let out = kiln(dir.path()).args(["build", "t.json"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.txt")).unwrap(),
        "[]\n"
    );
    let out = kiln(dir.path())
        .args(["hcl2_upgrade", "t.json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let hcl = std::fs::read_to_string(dir.path().join("t.json.pkr.hcl")).unwrap();
    assert!(
        hcl.contains("variable \"nope\" {\n  type    = string\n  default = \"\"\n}"),
        "{hcl}"
    );
}

/// With `iso_target_path` (bento sets it), a file put in with `kiln cache import` satisfies the
/// build when its checksum matches; offline, a miss names every place looked at; a download
/// that fails for lack of network gives the same way out; an imported entry is readable.
#[test]
fn issue16_5_imported_iso_satisfies_iso_target_path() {
    use kiln::download::{Cache, Fetcher, Request};
    use kiln::ui::progress::Silent;
    use sha2::Digest;
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let iso = dir.path().join("debian.iso");
    std::fs::write(&iso, b"an installer").unwrap();
    let sum = format!("sha256:{:x}", sha2::Sha256::digest(b"an installer"));
    let cache_dir = dir.path().join("cache");
    let out = kiln(dir.path())
        .env("KILN_CACHE_DIR", &cache_dir)
        .args(["cache", "import", "--checksum", &sum])
        .arg(&iso)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let entry = cache_dir.join(Cache::entry_name(&sum, "iso"));
    let mode = std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o644,
        "an imported entry is readable like a downloaded one"
    );

    // Port 9 on loopback: nothing listens.
    let urls = ["http://127.0.0.1:9/debian.iso".to_string()];
    let target = dir.path().join("isos/debian.iso");
    let request = |checksum: &'static str| Request {
        urls: &urls,
        checksum,
        template_dir: dir.path(),
        extension: "iso",
        target_path: Some(target.clone()),
    };
    let sum: &'static str = Box::leak(sum.into_boxed_str());
    let offline = Fetcher::new(Cache::new(cache_dir.clone()), true);
    assert_eq!(offline.fetch(&request(sum), &Silent).unwrap(), target);
    assert_eq!(std::fs::read(&target).unwrap(), b"an installer");

    let other = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let err = offline
        .fetch(&request(other), &Silent)
        .unwrap_err()
        .to_string();
    let other_entry = cache_dir.join(Cache::entry_name(other, "iso"));
    assert!(
        err.contains(&format!(
            "looked for it at {} and {}",
            target.display(),
            other_entry.display()
        )),
        "{err}"
    );
    let online = Fetcher::new(Cache::new(cache_dir.clone()), false);
    let err = online
        .fetch(&request(other), &Silent)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "hint: without network access, copy the file in with `kiln cache import FILE`"
        ),
        "{err}"
    );
}

/// `validate -only=nomatch` is an error, not "valid" (an -except that leaves nothing is not);
/// errors all begin `error:`; a failed
/// build's whole report (its hint lines too) is printed once, the summary repeats only its
/// first line.
#[test]
fn issue16_8_validate_nomatch_and_errors_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = super::support::free_port();
    std::fs::write(
        dir.path().join("t.pkr.hcl"),
        format!(
            r#"source "null" "a" {{
  ssh_host     = "127.0.0.1"
  ssh_port     = {port}
  ssh_username = "nobody"
  ssh_password = "x"
  ssh_timeout  = "1s"
}}
build {{ sources = ["source.null.a"] }}
"#
        ),
    )
    .unwrap();
    let out = kiln(dir.path())
        .args(["validate", "-only=nomatch", "t.pkr.hcl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: no builds match -only"));

    let out = kiln(dir.path())
        .args(["build", "-only=nomatch", "t.pkr.hcl"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: no builds to run"),
        "{out:?}"
    );

    let out = kiln(dir.path())
        .args(["build", "t.pkr.hcl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let first = err
        .lines()
        .find_map(|l| {
            l.split_once("Build 'null.a' errored after ")
                .map(|(_, r)| r)
        })
        .unwrap_or_else(|| panic!("{err}"));
    let first = first.split_once(": ").map_or(first, |(_, m)| m);
    assert!(err.contains(&format!("--> null.a: {first}\n")), "{err}");
    assert_eq!(
        err.matches("hint: check ssh_host, ssh_port and the credentials")
            .count(),
        1,
        "{err}"
    );
}

/// `console` prints a string raw as Packer's does, and on a legacy JSON template takes Packer's
/// JSON syntax (`{{user `x`}}`), which was a parse error.
#[test]
fn issue16_9_console_prints_strings_raw_and_takes_go_templates() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.json"),
        r#"{"variables": {"myvar": "asdf"}, "builders": [{"type": "null", "communicator": "none"}]}"#,
    )
    .unwrap();
    let out = kiln(dir.path())
        .args(["console", "t.json"])
        .write_stdin("{{user `myvar`}}-{{ upper `x` }}\nvar.myvar\n[var.myvar]\n")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "asdf-X\nasdf\n[\"asdf\"]\n"
    );
}

/// `PACKER_LOG=1` logs kiln's version, the template files, each step's start and end and each
/// host command kiln runs (argv, exit, duration), and never a secret.
#[test]
fn issue16_10_logs_say_what_runs_and_hold_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.pkr.hcl"),
        r#"variable "token" {
  type      = string
  default   = "s3cr3t-t0ken"
  sensitive = true
}
source "null" "a" { communicator = "none" }
build {
  sources = ["source.null.a"]
  provisioner "shell-local" {
    inline          = ["echo using the token"]
    execute_command = ["/bin/sh", "-c", "T=${var.token} {{.Vars}} /bin/sh {{.Script}}"]
  }
}
"#,
    )
    .unwrap();
    let out = kiln(dir.path())
        .env("PACKER_LOG", "1")
        .args(["build", "t.pkr.hcl"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let log = String::from_utf8_lossy(&out.stderr);
    for wanted in [
        concat!("kiln v", env!("CARGO_PKG_VERSION"), " (Packer v"),
        "reading template file",
        "t.pkr.hcl",
        "running step",
        "step ended",
        "starting a host command",
        "host command ended",
    ] {
        assert!(
            log.contains(wanted),
            "{wanted:?} missing from the log:\n{log}"
        );
    }
    assert!(!log.contains("s3cr3t-t0ken"), "{log}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("s3cr3t-t0ken"));
}

/// Packer's `sleep` provisioner (issue 17): waits its `duration`, refuses a negative one at
/// validate time, and is cut short by Ctrl-C like any provisioner.
#[test]
fn issue17_sleep_provisioner() {
    let dir = tempfile::tempdir().unwrap();
    let write = |d: &str| {
        std::fs::write(
            dir.path().join("t.pkr.hcl"),
            format!(
                r#"source "null" "a" {{ communicator = "none" }}
build {{
  sources = ["source.null.a"]
  provisioner "sleep" {{ duration = "{d}" }}
  provisioner "shell-local" {{ inline = ["echo after > after.txt"] }}
}}
"#
            ),
        )
        .unwrap();
    };
    write("1500ms");
    let began = std::time::Instant::now();
    let out = kiln(dir.path())
        .args(["build", "t.pkr.hcl"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(began.elapsed() >= std::time::Duration::from_millis(1500));
    assert!(dir.path().join("after.txt").exists());

    write("-1s");
    let out = kiln(dir.path())
        .args(["validate", "t.pkr.hcl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("duration -1s is negative"),
        "{out:?}"
    );
}

const OUTDATED: &str = r#"{
  "builders": [
    {"type": "qemu", "iso_url": "a.iso", "iso_md5": "0123", "disk_size": 10240,
     "ssh_host_port_min": 2222, "ssh_wait_timeout": "1h", "ssh_key_path": "k",
     "ssh_username": "u"},
    {"type": "virtualbox", "guest_additions_attach": true, "ssh_disable_agent": true},
    {"type": "vmware", "iso_checksum": "abc", "iso_checksum_type": "sha256"}
  ],
  "provisioners": [{"type": "ansible-local", "playbook_file": "p.yml", "galaxycommand": "g"}],
  "post-processors": [
    [{"type": "vagrant", "virtualbox": {"vagrantfile_template": "v"}},
     {"type": "manifest", "filename": "m.json"}]
  ]
}"#;

/// `kiln fix` (Packer's `fix`): prints a legacy JSON template with the options of older Packer
/// versions rewritten, indented with sorted keys as Packer prints it, validates the result
/// unless `-validate=false`, and points at the line and column of invalid JSON.
#[test]
fn issue16_8_fix_rewrites_outdated_options() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.json"), OUTDATED).unwrap();
    let out = kiln(dir.path())
        .args(["fix", "-validate=false", "t.json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("{\n  \"builders\": [\n    {\n"), "{text}");
    let fixed: serde_json::Value = serde_json::from_str(&text).unwrap();
    let expected = serde_json::json!({
      "builders": [
        {"type": "qemu", "iso_url": "a.iso", "iso_checksum": "md5:0123", "disk_size": "10240M",
         "host_port_min": 2222, "ssh_timeout": "1h", "ssh_private_key_file": "k",
         "ssh_username": "u"},
        {"type": "virtualbox-iso", "guest_additions_mode": "attach",
         "ssh_disable_agent_forwarding": true},
        {"type": "vmware-iso", "iso_checksum": "sha256:abc"}
      ],
      "provisioners": [{"type": "ansible-local", "playbook_file": "p.yml", "galaxy_command": "g"}],
      "post-processors": [
        [{"type": "vagrant", "override": {"virtualbox": {"vagrantfile_template": "v"}}},
         {"type": "manifest", "output": "m.json"}]
      ]
    });
    assert_eq!(fixed, expected);

    // Validated by default, like `kiln validate`: the fixed template still lacks what
    // the builders need.
    let out = kiln(dir.path()).args(["fix", "t.json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(!out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the fixed template is not valid"), "{err}");

    std::fs::write(dir.path().join("bad.json"), "{\n  \"builders\": [\n}\n").unwrap();
    let out = kiln(dir.path()).args(["fix", "bad.json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid JSON") && err.contains("bad.json:3:1"),
        "{err}"
    );
}

/// `kiln fix` on real legacy templates: the output parses, keeps every build, rewrites the old
/// keys, and validates exactly where the original validates.
#[test]
fn issue16_8_fix_on_corpus_templates() {
    let root = corpus_or_skip!();
    let out_dir = tempfile::tempdir().unwrap();
    let outdated = [
        ("ssh_wait_timeout", "ssh_timeout"),
        ("iso_checksum_type", "iso_checksum"),
    ];
    for (rel, only, renamed) in [
        (
            "boxcutter-debian/debian.json",
            "virtualbox-iso,vmware-iso",
            &outdated[..],
        ),
        (
            "boxcutter-centos/centos.json",
            "virtualbox-iso,vmware-iso",
            &outdated[1..],
        ),
        (
            "bento-legacy-json/packer_templates/debian/debian-9.13-ppc64el.json",
            "",
            &[][..],
        ),
    ] {
        let path = root.join(rel);
        let dir = path.parent().unwrap();
        let original: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let out = kiln(dir).arg("fix").arg(&path).output().unwrap();
        let fixed: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{rel}: {e}: {out:?}"));
        let builders = |v: &serde_json::Value| v["builders"].as_array().unwrap().clone();
        assert_eq!(builders(&fixed).len(), builders(&original).len(), "{rel}");
        if renamed.is_empty() {
            assert_eq!(fixed, original, "{rel}: nothing to fix");
        }
        for (old, new) in renamed {
            for (before, after) in builders(&original).iter().zip(builders(&fixed)) {
                if before.get(*old).is_some() {
                    assert!(
                        after.get(*old).is_none() && after.get(*new).is_some(),
                        "{rel}: {old} -> {new}: {after}"
                    );
                }
            }
            assert!(
                builders(&original).iter().any(|b| b.get(*old).is_some()),
                "{rel} has no {old}"
            );
        }
        // Validated as the original is, in the same directory.
        let validate = kiln(dir).arg("validate").arg(&path).output().unwrap();
        assert_eq!(out.status.code(), validate.status.code(), "{rel}: {out:?}");
        // And, restricted to the builds kiln has, both are valid.
        if !only.is_empty() {
            let copy = out_dir.path().join(path.file_name().unwrap());
            std::fs::write(&copy, &out.stdout).unwrap();
            for p in [&path, &copy] {
                let v = kiln(dir)
                    .args(["validate", &format!("-only={only}")])
                    .arg(p)
                    .output()
                    .unwrap();
                assert!(v.status.success(), "{rel}: {}: {v:?}", p.display());
            }
        }
    }
}

/// Issue 17: `iso_skip_cache` validates without a checksum (QEMU reads the URL, as in Packer),
/// and in offline mode the build refuses before anything starts, naming the URL QEMU would
/// have fetched.
#[test]
fn issue17_iso_skip_cache_needs_no_checksum_and_stays_offline() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.pkr.hcl"),
        r#"source "qemu" "a" {
  iso_url        = "https://example.invalid/installer.iso"
  iso_skip_cache = true
  ssh_username   = "u"
  headless       = true
}
build { sources = ["source.qemu.a"] }
"#,
    )
    .unwrap();
    kiln(dir.path())
        .args(["validate", "t.pkr.hcl"])
        .assert()
        .success();
    let out = kiln(dir.path())
        .env("KILN_OFFLINE", "1")
        .args(["build", "t.pkr.hcl"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("https://example.invalid/installer.iso") && text.contains("offline"),
        "{text}"
    );
    assert!(!dir.path().join("output-a").exists());
}
