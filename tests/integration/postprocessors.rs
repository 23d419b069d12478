//! Post-processor chains through the real `kiln build` CLI. The `null` builder plus `artifice`
//! makes an artifact of files on the host, so chains, `keep_input_artifact`, and every option run
//! as a user runs them, in a second or two, without a VM. Checksums are checked against
//! coreutils' `*sum` tools, archives against `tar`/`gzip`/`zstd`/`lz4`, boxes against `vagrant`.

use std::path::Path;
use std::process::Command;

use crate::support::run;

fn kiln(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = assert_cmd::Command::cargo_bin("kiln")
        .unwrap()
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("PACKER_LOG")
        .env_remove("KILN_LOG")
        .env_remove("PACKER_RUN_UUID")
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn build(dir: &Path, template: &str, extra: &[&str]) -> (bool, String) {
    std::fs::write(dir.join("t.pkr.hcl"), template).unwrap();
    let mut args = vec!["-machine-readable", "build"];
    args.extend_from_slice(extra);
    args.push("t.pkr.hcl");
    kiln(dir, &args)
}

fn ok(dir: &Path, template: &str) -> String {
    let (success, text) = build(dir, template, &[]);
    assert!(success, "{text}");
    text
}

const SOURCE: &str = "source \"null\" \"a\" {\n  communicator = \"none\"\n}\n";

/// The machine-readable `artifact,<i>,builder-id,<id>` lines, in order.
fn builder_ids(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<_> = l.split(',').collect();
            (f.len() >= 6 && f[2] == "artifact" && f[4] == "builder-id").then(|| f[5].to_string())
        })
        .collect()
}

#[test]
fn chains_keep_and_delete_inputs_as_packer_does() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for sub in ["in", "orig"] {
        std::fs::create_dir(d.join(sub)).unwrap();
        std::fs::write(d.join(sub).join("a.img"), b"first file\n").unwrap();
        std::fs::write(d.join(sub).join("b.img"), vec![7u8; 100_000]).unwrap();
    }
    let template = format!(
        r#"{SOURCE}
build {{
  sources = ["source.null.a"]
  post-processors {{
    post-processor "artifice" {{
      files = ["in/*.img"]
    }}
    post-processor "checksum" {{
      checksum_types = ["md5", "sha1", "sha224", "sha256", "sha384", "sha512"]
      output         = "sums/{{{{.BuildName}}}}_{{{{.BuilderType}}}}.{{{{.ChecksumType}}}}"
    }}
    post-processor "compress" {{
      output              = "out/{{{{.BuildName}}}}.tar.gz"
      compression_level   = 9
      keep_input_artifact = true
    }}
    post-processor "compress" {{
      name   = "again"
      output = "out/again.tar.zst"
    }}
  }}
  post-processors {{
    post-processor "artifice" {{
      files = ["in/b.img"]
    }}
    post-processor "compress" {{
      output = "out/b.img.lz4"
    }}
  }}
}}
"#
    );
    let text = ok(d, &template);
    assert!(
        text.contains("Running post-processor: again (type compress)"),
        "{text}"
    );
    // Reported as Packer lists them: the builder's (kept by the first artifice), then the first
    // chain's kept intermediates and its last artifact, then the second chain's last.
    assert_eq!(
        builder_ids(&text),
        [
            "fnord",
            "packer.post-processor.artifice",
            "packer.post-processor.checksum",
            "packer.post-processor.compress",
            "packer.post-processor.compress",
        ],
        "{text}"
    );
    // checksum: one file per type, `<hex>\t<name>` per input, equal to coreutils' sums.
    for t in ["md5", "sha1", "sha224", "sha256", "sha384", "sha512"] {
        let ours = std::fs::read_to_string(d.join(format!("sums/a_null.{t}"))).unwrap();
        let theirs = run(Command::new(format!("{t}sum"))
            .args(["a.img", "b.img"])
            .current_dir(d.join("orig")));
        assert_eq!(ours.replace('\t', "  "), theirs, "{t}");
    }
    // The kept tar.gz was the last compress's input and is gone; the zstd archive holds it.
    assert!(!d.join("out/a.tar.gz").exists());
    let listing = run(Command::new("tar")
        .args(["--zstd", "-tf", "out/again.tar.zst"])
        .current_dir(d));
    assert_eq!(listing, "a.tar.gz\n");
    run(Command::new("tar")
        .args(["--zstd", "-xf", "out/again.tar.zst", "-C", "out"])
        .current_dir(d));
    let inner = run(Command::new("tar")
        .args(["-tzf", "out/a.tar.gz"])
        .current_dir(d));
    assert_eq!(
        inner,
        "a.img\nb.img\na_null.md5\na_null.sha1\na_null.sha224\na_null.sha256\na_null.sha384\na_null.sha512\n"
    );
    // The second chain's compress did not keep its input: artifice's b.img is gone, a.img stays.
    assert!(!d.join("in/b.img").exists());
    assert!(d.join("in/a.img").exists());
    let back = run(Command::new("lz4")
        .args(["-dc", "out/b.img.lz4"])
        .current_dir(d));
    assert_eq!(back.len(), 100_000);
}

#[test]
fn manifest_appends_across_runs_and_force_starts_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("disk.img"), b"12345").unwrap();
    let template = format!(
        r#"{SOURCE}
build {{
  sources = ["source.null.a"]
  post-processors {{
    post-processor "artifice" {{
      files = ["disk.img"]
    }}
    post-processor "manifest" {{
      output      = "out/manifest.json"
      strip_path  = true
      strip_time  = true
      custom_data = {{ os = "debian", note = "from {{{{.BuildName}}}}" }}
    }}
  }}
  post-processor "manifest" {{}}
}}
"#
    );
    ok(d, &template);
    ok(d, &template);
    let read = |p: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join(p)).unwrap()).unwrap()
    };
    let m = read("out/manifest.json");
    let builds = m["builds"].as_array().unwrap();
    assert_eq!(builds.len(), 2, "{m}");
    assert_ne!(builds[0]["packer_run_uuid"], builds[1]["packer_run_uuid"]);
    assert_eq!(m["last_run_uuid"], builds[1]["packer_run_uuid"]);
    let b = &builds[1];
    assert_eq!(b["name"], "a");
    assert_eq!(b["builder_type"], "null");
    assert_eq!(b["artifact_id"], "");
    assert_eq!(
        b["files"],
        serde_json::json!([{"name": "disk.img", "size": 5}])
    );
    assert_eq!(
        b["custom_data"],
        serde_json::json!({"os": "debian", "note": "from a"})
    );
    assert!(b.get("build_time").is_none(), "strip_time: {b}");
    // The default manifest (packer-manifest.json), with full paths, build_time and no custom_data.
    let plain = read("packer-manifest.json");
    let b = &plain["builds"][1];
    assert!(b["build_time"].as_i64().unwrap() > 1_600_000_000, "{b}");
    assert_eq!(b["custom_data"], serde_json::Value::Null);
    assert_eq!(b["artifact_id"], "Null");
    // -force: the file was last written by another run, so it starts afresh.
    let (success, text) = build(d, &template, &["-force"]);
    assert!(success, "{text}");
    let m = read("out/manifest.json");
    assert_eq!(m["builds"].as_array().unwrap().len(), 1, "{m}");
}

#[test]
fn a_failed_chain_fails_the_build_but_the_others_still_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("disk.img"), b"data").unwrap();
    // A file where the archive's directory would be: compress cannot write there.
    std::fs::write(d.join("blocker"), b"").unwrap();
    let template = format!(
        r#"{SOURCE}
build {{
  sources = ["source.null.a"]
  post-processors {{
    post-processor "artifice" {{
      files = ["disk.img"]
    }}
    post-processor "compress" {{
      output = "blocker/disk.tar.gz"
    }}
  }}
  post-processors {{
    post-processor "artifice" {{
      files = ["disk.img"]
    }}
    post-processor "checksum" {{
      checksum_types = ["sha256"]
      output         = "disk.sha256"
    }}
  }}
}}
"#
    );
    let (success, text) = build(d, &template, &[]);
    assert!(!success, "{text}");
    assert!(text.contains("post-processor compress failed"), "{text}");
    assert!(
        d.join("disk.sha256").exists(),
        "the second chain ran: {text}"
    );
    assert!(
        d.join("disk.img").exists(),
        "nothing is deleted after a failure"
    );
    assert!(!d.join("blocker/disk.tar.gz").exists());
}

#[test]
fn vagrant_box_from_artifice_with_override_template_and_include() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "disk.qcow2", "16M"])
        .current_dir(d));
    run(Command::new("qemu-io")
        .args(["-c", "write -P 0x5a 0 1M", "disk.qcow2"])
        .current_dir(d));
    std::fs::write(
        d.join("Vagrantfile.tpl"),
        "# box {{ .BuildName }} for {{ .Provider }}\n",
    )
    .unwrap();
    std::fs::write(d.join("README.md"), "about the box\n").unwrap();
    let template = format!(
        r#"{SOURCE}
build {{
  sources = ["source.null.a"]
  post-processors {{
    post-processor "artifice" {{
      files = ["disk.qcow2"]
    }}
    post-processor "vagrant" {{
      provider_override    = "libvirt"
      output               = "unused.box"
      vagrantfile_template = "Vagrantfile.tpl"
      include              = ["README.md"]
      architecture         = "arm64"
      override = {{
        libvirt = {{
          output            = "boxes/{{{{.BuildName}}}}_{{{{.Provider}}}}_{{{{.Architecture}}}}.box"
          compression_level = 1
        }}
      }}
    }}
  }}
}}
"#
    );
    let text = ok(d, &template);
    let boxfile = d.join("boxes/a_libvirt_arm64.box");
    assert!(boxfile.exists(), "{text}");
    assert!(!d.join("unused.box").exists());
    // vagrant does not keep its input by default: artifice's disk is gone.
    assert!(!d.join("disk.qcow2").exists(), "{text}");
    let listing = run(Command::new("tar").arg("-tzf").arg(&boxfile));
    assert_eq!(
        listing,
        "metadata.json\nVagrantfile\nbox_0.img\nREADME.md\n"
    );
    let vagrantfile = run(Command::new("tar")
        .arg("-xzOf")
        .arg(&boxfile)
        .arg("Vagrantfile"));
    assert!(
        vagrantfile.ends_with("\n# box a for libvirt\n"),
        "{vagrantfile}"
    );
    // No accelerator is known after artifice: vagrant-libvirt's default driver.
    assert!(
        vagrantfile.contains("libvirt.driver = \"kvm\""),
        "{vagrantfile}"
    );
    let metadata = run(Command::new("tar")
        .arg("-xzOf")
        .arg(&boxfile)
        .arg("metadata.json"));
    assert!(
        metadata.contains("\"architecture\": \"arm64\""),
        "{metadata}"
    );
    assert_eq!(
        crate::vagrant::vagrant_box_add(d, &boxfile),
        "kiln-test (libvirt, 0)"
    );
}

#[test]
fn vagrant_needs_provider_override_after_artifice_and_validate_checks_options() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("disk.qcow2"), b"QFI\xfb").unwrap();
    let template = format!(
        "{SOURCE}\nbuild {{\n  sources = [\"source.null.a\"]\n  post-processors {{\n    post-processor \"artifice\" {{\n      files = [\"disk.qcow2\"]\n    }}\n    post-processor \"vagrant\" {{}}\n  }}\n}}\n"
    );
    let (success, text) = build(d, &template, &[]);
    assert!(!success);
    assert!(
        text.contains("when the artifact comes from artifice"),
        "{text}"
    );

    let bad = format!(
        "{SOURCE}\nbuild {{\n  sources = [\"source.null.a\"]\n  post-processor \"vagrant\" {{\n    provider_override = \"kvm\"\n  }}\n  post-processor \"ova\" {{\n    ovf_version = \"3.0\"\n  }}\n}}\n"
    );
    std::fs::write(d.join("bad.pkr.hcl"), bad).unwrap();
    let (success, text) = kiln(d, &["validate", "bad.pkr.hcl"]);
    assert!(!success, "{text}");
    assert!(
        text.contains("provider_override \"kvm\" is not a provider"),
        "{text}"
    );
    assert!(
        text.contains("ovf_version \"3.0\": use \"1.0\" or \"2.0\""),
        "{text}"
    );
    assert!(
        text.contains("bad.pkr.hcl:"),
        "errors point into the template: {text}"
    );
}

#[test]
fn ova_and_shell_local_post_processors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "disk.qcow2", "8M"])
        .current_dir(d));
    run(Command::new("qemu-io")
        .args(["-c", "write -P 0x11 1M 1M", "disk.qcow2"])
        .current_dir(d));
    let template = format!(
        r#"{SOURCE}
build {{
  sources = ["source.null.a"]
  post-processors {{
    post-processor "artifice" {{
      files = ["disk.qcow2"]
    }}
    post-processor "ova" {{
      output              = "export/{{{{.BuildName}}}}.ova"
      ovf_version         = "2.0"
      vm_name             = "appliance"
      cpus                = 2
      memory              = 2048
      keep_input_artifact = true
    }}
    post-processor "shell-local" {{
      inline           = ["echo \"$PACKER_BUILD_NAME $PACKER_BUILDER_TYPE\" > marker"]
      execute_command  = ["{{{{.Vars}}}} /bin/sh {{{{.Script}}}}"]
    }}
  }}
}}
"#
    );
    let text = ok(d, &template);
    let listing = run(Command::new("tar")
        .args(["-tf", "export/a.ova"])
        .current_dir(d));
    assert_eq!(
        listing,
        "appliance.ovf\nappliance.mf\nappliance-disk001.vmdk\n"
    );
    let ovf = run(Command::new("tar")
        .args(["-xOf", "export/a.ova", "appliance.ovf"])
        .current_dir(d));
    assert!(
        ovf.contains("http://schemas.dmtf.org/ovf/envelope/2"),
        "{ovf}"
    );
    assert!(
        ovf.contains("<rasd:VirtualQuantity>2048</rasd:VirtualQuantity>"),
        "{ovf}"
    );
    assert!(
        d.join("disk.qcow2").exists(),
        "keep_input_artifact = true: {text}"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("marker")).unwrap(),
        "a null\n",
        "{text}"
    );
    assert!(
        builder_ids(&text).contains(&"kiln.post-processor.ova".to_string()),
        "{text}"
    );
}

#[test]
fn legacy_json_chains_with_vagrant_override() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "disk.qcow2", "4M"])
        .current_dir(d));
    std::fs::write(
        d.join("t.json"),
        r#"{
  "builders": [{"type": "null", "communicator": "none"}],
  "post-processors": [[
    {"type": "artifice", "files": ["disk.qcow2"]},
    {"type": "vagrant", "provider_override": "libvirt", "keep_input_artifact": true,
     "output": "default.box",
     "override": {"libvirt": {"output": "{{.Provider}}.box", "compression_level": 0}}}
  ]]
}"#,
    )
    .unwrap();
    let (success, text) = kiln(d, &["build", "t.json"]);
    assert!(success, "{text}");
    assert!(d.join("disk.qcow2").exists(), "kept: {text}");
    // compression_level 0: a plain tar, as Packer writes it.
    let listing = run(Command::new("tar")
        .args(["-tf", "libvirt.box"])
        .current_dir(d));
    assert_eq!(listing, "metadata.json\nVagrantfile\nbox_0.img\n");
    let magic = std::fs::read(d.join("libvirt.box")).unwrap();
    assert_ne!(&magic[..2], b"\x1f\x8b", "level 0 is not gzipped");
}

/// A secret equal to one of kiln's own words must not hide those words, only the secret where it
/// really appears (issue "Hold up under attack and faults", item 8).
#[test]
fn a_secret_named_like_a_component_hides_the_secret_not_kilns_labels() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("disk.img"), b"data").unwrap();
    std::fs::write(d.join("blocker"), b"").unwrap();
    let template = format!(
        r#"{SOURCE}
variable "pw" {{
  type      = string
  default   = "compress"
  sensitive = true
}}
build {{
  sources = ["source.null.a"]
  post-processor "shell-local" {{
    inline = ["echo the secret is ${{var.pw}}"]
  }}
  post-processors {{
    post-processor "artifice" {{
      files = ["disk.img"]
    }}
    post-processor "compress" {{
      output = "blocker/disk.tar.gz"
    }}
  }}
}}
"#
    );
    let (success, text) = build(d, &template, &[]);
    assert!(!success, "{text}");
    assert!(text.contains("the secret is <sensitive>"), "{text}");
    assert!(!text.contains("the secret is compress"), "{text}");
    assert!(text.contains("Running post-processor: compress"), "{text}");
    assert!(text.contains("post-processor compress failed"), "{text}");
    assert!(
        !text.contains('\u{E000}') && !text.contains('\u{E001}'),
        "{text}"
    );
}

/// Issue 13: Ctrl-C while a large box is written (a 2 GiB disk, nearly all hole) stops the write,
/// leaves neither the box nor its temporary file, and the summary reports the build as cancelled,
/// not also as finished or errored. Before, the box was finished first and both were printed.
#[test]
fn ctrl_c_during_a_box_write_stops_it_and_reports_a_cancellation() {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;

    use crate::support::{read_until, signal_and_collect, stdout_lines};

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut disk = std::fs::File::create(d.join("disk.qcow2")).unwrap();
    disk.write_all(b"QFI\xfb").unwrap();
    disk.set_len(2 << 30).unwrap();
    let template = format!(
        "{SOURCE}\nbuild {{\n  sources = [\"source.null.a\"]\n  post-processors {{\n    post-processor \"artifice\" {{\n      files = [\"disk.qcow2\"]\n    }}\n    post-processor \"vagrant\" {{\n      provider_override = \"libvirt\"\n      output = \"out/x.box\"\n    }}\n  }}\n}}\n"
    );
    std::fs::write(d.join("t.pkr.hcl"), template).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(d)
        .args(["build", "t.pkr.hcl"])
        .env("NO_COLOR", "1")
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (rx, reader) = stdout_lines(&mut child);
    let mut seen = String::new();
    let reached = read_until(&rx, &mut seen, |line| {
        line.contains("Creating a Vagrant box")
    });
    assert!(reached, "{seen}");
    let tmp = d.join("out/x.box.tmp");
    for _ in 0..30_000 {
        if tmp.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(tmp.exists(), "the box write never started: {seen}");
    // As a terminal does: SIGINT to the whole process group.
    let group = format!("-{}", child.id());
    let (status, t) = signal_and_collect(child, "-INT", &group, &rx, reader, &mut seen);
    assert!(!status.success(), "{t}");
    assert!(t.contains("Build 'null.a' was cancelled"), "{t}");
    assert!(!t.contains("finished after"), "{t}");
    assert!(!t.contains("errored"), "{t}");
    assert!(!d.join("out/x.box").exists(), "{t}");
    assert!(!tmp.exists(), "{t}");
}
