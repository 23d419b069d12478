//! End-to-end builds of `fixtures/templates/cloud` with the real `kiln` binary under QEMU (TCG),
//! the way users build from vendor cloud images: the Debian cloud image of
//! `fixtures/cloud-image` becomes the backing file of a qcow2 overlay grown to `disk_size`,
//! cloud-init reads its NoCloud seed from the `cidata` CD (written by kiln's own ISO writer:
//! xorriso is kept off `PATH`), creates the user `kiln` and grows the root file system, the
//! shell provisioner writes a marker over SSH, and the output boots again with plain QEMU.
//! Failure paths: user-data (from `cd_content`) that creates no login, a missing base disk,
//! and a `disk_size` smaller than the image.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::support::{alive, boot_and_run, fixture, repo, text};

/// The base disk, built (or taken from the cache) once per test run.
fn base() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| fixture("cloud-image").join("debian-cloud.qcow2"))
}

fn kiln(dir: &Path, template: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.current_dir(dir)
        .arg("build")
        .arg(format!("-var=base_image={}", base().display()))
        .args(extra)
        .arg(template);
    c
}

/// A directory to use as `PATH` that holds only what a QEMU build runs (no xorriso), as
/// links to the real programs.
fn path_without_xorriso(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let path = std::env::var_os("PATH").unwrap();
    for tool in ["qemu-system-x86_64", "qemu-img"] {
        let real = std::env::split_paths(&path)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{tool} is not installed"));
        std::os::unix::fs::symlink(real, bin.join(tool)).unwrap();
    }
    bin
}

fn qemu_img_info(disk: &Path) -> serde_json::Value {
    let o = Command::new("qemu-img")
        .args(["info", "--output=json", "-U"])
        .arg(disk)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn cloud_image_overlay_is_seeded_by_cloud_init_provisioned_and_boots() {
    let dir = tempfile::tempdir().unwrap();
    let base_mtime = std::fs::metadata(base()).unwrap().modified().unwrap();
    let bin = path_without_xorriso(dir.path());
    let o = kiln(
        dir.path(),
        &repo().join("fixtures/templates/cloud"),
        &["-var=marker=kiln cloud marker"],
    )
    .env("PATH", &bin)
    .output()
    .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("the CD was written by kiln's ISO writer"), "{t}");
    assert!(t.contains("Creating overlay disk on the base image"), "{t}");
    assert!(t.contains("Resizing disk to 4096 MiB"), "{t}");
    assert!(
        t.contains("--> qemu.cloud: VM files in directory: output-cloud"),
        "{t}"
    );

    // The artifact is the overlay alone; the base image is its backing file, untouched.
    let out_dir = dir.path().join("output-cloud");
    let entries: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(entries, ["cloud.qcow2"]);
    let disk = out_dir.join("cloud.qcow2");
    let info = qemu_img_info(&disk);
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["virtual-size"], 4096_u64 * 1024 * 1024, "{info}");
    assert_eq!(
        info["backing-filename"].as_str().map(PathBuf::from),
        Some(std::fs::canonicalize(base()).unwrap()),
        "{info}"
    );
    assert_eq!(
        std::fs::metadata(base()).unwrap().modified().unwrap(),
        base_mtime,
        "the base image must not be written"
    );

    // Booted again without the seed: the user cloud-init made from user-data logs in with
    // its key and has sudo, the marker is there, and growpart grew the root file system
    // from the base image's 2 GiB to (nearly) disk_size.
    let out = boot_and_run(
        &disk,
        "kiln",
        "cat /etc/kiln-marker; getent passwd kiln | cut -d: -f5; sudo -n id -u; \
         df -B1M --output=size / | tail -1",
    );
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(lines[0], "kiln cloud marker");
    assert_eq!(
        lines[1], "kiln build user",
        "the gecos field from user-data"
    );
    assert_eq!(lines[2], "0");
    let root_mib: u64 = lines[3].parse().unwrap();
    assert!(
        (3500..4096).contains(&root_mib),
        "root file system of {root_mib} MiB"
    );
}

#[test]
fn user_data_without_a_login_times_out_naming_cloud_init() {
    // cd_content this time, and xorriso (when installed) writes the CD.
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("nologin.pkr.hcl");
    std::fs::write(
        &template,
        r##"
variable "base_image" { type = string }
source "qemu" "nologin" {
  iso_url          = var.base_image
  iso_checksum     = "none"
  disk_image       = true
  use_backing_file = true
  skip_resize_disk = true
  accelerator      = "tcg"
  headless         = true
  memory           = 1024
  vm_name          = "nologin.qcow2"
  cd_label         = "cidata"
  cd_content = {
    "user-data" = "#cloud-config\nusers: []\n"
    "meta-data" = "instance-id: kiln-nologin\n"
  }
  ssh_username = "kiln"
  ssh_password = "kiln"
  ssh_timeout  = "90s"
}
build { sources = ["source.qemu.nologin"] }
"##,
    )
    .unwrap();
    let o = kiln(dir.path(), &template, &["-machine-readable"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("timed out after"), "{t}");
    assert!(
        t.contains("cloud-init") && t.contains("user-data") && t.contains("cidata"),
        "the hint names what to check for a cloud image: {t}"
    );
    assert!(!dir.path().join("output-nologin").exists(), "{t}");
    let pid: u32 = t
        .lines()
        .find_map(crate::support::vm_pid)
        .unwrap_or_else(|| panic!("no vm-pid line in: {t}"));
    assert!(!alive(pid), "QEMU {pid} is still running");
}

#[test]
fn missing_or_too_large_base_disk_fails_before_booting() {
    let template = repo().join("fixtures/templates/cloud");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-base.qcow2");
    let o = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(dir.path())
        .arg("build")
        .arg(format!("-var=base_image={}", missing.display()))
        .arg(&template)
        .output()
        .unwrap();
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("no-such-base.qcow2"),
        "the message names the file: {t}"
    );
    assert!(!t.contains("Starting VM"), "{t}");
    assert!(!dir.path().join("output-cloud").exists(), "{t}");

    let o = kiln(dir.path(), &template, &["-var=disk_size=1024M"])
        .output()
        .unwrap();
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("disk_size (1024 MiB) is smaller than the disk image"),
        "{t}"
    );
    assert!(t.contains("skip_resize_disk"), "{t}");
    assert!(!t.contains("Starting VM"), "{t}");
    assert!(!dir.path().join("output-cloud").exists(), "{t}");
}
