//! End-to-end builds of `fixtures/templates/e2e` with the real `kiln` binary under QEMU (TCG):
//! the installer fixture ISO is booted, the boot command typed, the kickstart served, the
//! system installed, provisioned over SSH and shut down; the produced qcow2 is then booted
//! again with plain QEMU and checked over OpenSSH's client. Failure paths: wrong boot command,
//! missing answer file, QEMU exiting early, Ctrl-C mid-install, an existing output directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use crate::support::{
    alive, boot_and_run, fixture, read_until, repo, signal_and_collect, stdout_lines, text, vm_pid,
};

/// The installer ISO, built (or taken from the cache) once per test run.
pub fn iso() -> &'static Path {
    static ISO: OnceLock<PathBuf> = OnceLock::new();
    ISO.get_or_init(|| fixture("installer").join("installer.iso"))
}

fn template() -> PathBuf {
    repo().join("fixtures/templates/e2e")
}

fn kiln(dir: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.current_dir(dir)
        .arg("build")
        .arg(format!("-var=iso_path={}", iso().display()))
        .args(extra)
        .arg(template())
        .env_remove("KILN_BOOT_TRANSPORT");
    c
}

#[test]
fn installs_provisions_and_produces_a_bootable_qcow2() {
    let dir = tempfile::tempdir().unwrap();
    // A leftover output directory: refused without -force…
    let out_dir = dir.path().join("output-installer");
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::write(out_dir.join("stale"), "old").unwrap();
    let o = kiln(dir.path(), &[]).output().unwrap();
    let t = text(&o);
    assert!(!o.status.success());
    assert!(
        t.contains("output directory output-installer already exists"),
        "{t}"
    );
    assert!(t.contains("-force"), "{t}");
    assert!(
        out_dir.join("stale").exists(),
        "the existing directory must be left alone"
    );

    // …replaced with it.
    let o = kiln(dir.path(), &["-force", "-var=marker=kiln e2e marker"])
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("Typing the boot command over QMP"), "{t}");
    assert!(t.contains("HTTP: served ks.cfg"), "{t}");
    assert!(
        t.contains("--> qemu.installer: VM files in directory: output-installer"),
        "{t}"
    );
    assert!(!out_dir.join("stale").exists());
    let disk = out_dir.join("installer.qcow2");
    let info = Command::new("qemu-img")
        .arg("check")
        .arg(&disk)
        .output()
        .unwrap();
    assert!(info.status.success(), "{}", text(&info));
    let entries: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        entries,
        ["installer.qcow2"],
        "only the disk is left in the output directory"
    );

    // Post-processors: a libvirt box, its checksum, and the manifest.
    let b = dir.path().join("output-box");
    let listing = Command::new("tar")
        .arg("-tzf")
        .arg(b.join("installer_libvirt.box"))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(
        listing.contains("metadata.json") && listing.contains("box_0.img"),
        "{listing}"
    );
    let sum = Command::new("sha256sum")
        .arg("-c")
        .arg("installer.sha256")
        .current_dir(&b)
        .output()
        .unwrap();
    assert!(sum.status.success(), "{}", text(&sum));
    let manifest = std::fs::read_to_string(dir.path().join("manifest.json")).unwrap();
    assert!(
        manifest.contains("\"builder_type\": \"qemu\"") && manifest.contains("installer.qcow2"),
        "{manifest}"
    );
    assert!(
        // As in Packer, the checksum artifact lists the files it summed, then the checksum file.
        t.contains("--> qemu.installer: Created artifact from files: output-box/installer_libvirt.box, output-box/installer.sha256"),
        "{t}"
    );

    let marker = boot_and_run(&disk, "vagrant", "cat /etc/kiln-marker");
    assert_eq!(marker.trim(), "kiln e2e marker");
}

#[test]
fn wrong_boot_command_times_out_waiting_for_ssh_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    // isolinux has no label "instal": it says so and waits at boot: again, like a real one.
    let o = kiln(
        dir.path(),
        &[
            r#"-var=boot_command=["<waitFor \"boot:\">instal<enter>"]"#,
            "-var=ssh_timeout=20s",
        ],
    )
    .output()
    .unwrap();
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("timed out after"), "{t}");
    assert!(t.contains("waiting for SSH"), "{t}");
    assert!(
        t.contains("boot_command"),
        "the hint names what to check: {t}"
    );
    // …and what the guest's console last said: isolinux, still at its prompt.
    assert!(t.contains("the guest's console ended with:"), "{t}");
    assert!(t.contains("Loading instal") && t.contains("boot:"), "{t}");
    assert!(
        !dir.path().join("output-installer").exists(),
        "no partial artifact: {t}"
    );
}

#[test]
fn missing_answer_file_stops_the_install_and_says_so() {
    // Typed over password-protected VNC (Packer's way) this time: the request for the missing
    // file proves the keys arrived.
    let dir = tempfile::tempdir().unwrap();
    let o = kiln(
        dir.path(),
        &[
            r#"-var=boot_command=["<waitFor \"boot:\">install ks=http://{{ .HTTPIP }}:{{ .HTTPPort }}/missing.cfg<enter>"]"#,
            "-var=vnc_use_password=true",
        ],
    )
    .env("KILN_BOOT_TRANSPORT", "vnc")
    .output()
    .unwrap();
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("Typing the boot command over VNC"), "{t}");
    assert!(t.contains("viewable over VNC with the password"), "{t}");
    // The request is logged with its 404, and the installer powering off ends the wait.
    assert!(
        t.contains("/missing.cfg from") && t.contains("-> 404"),
        "{t}"
    );
    assert!(t.contains("the VM stopped before SSH came up"), "{t}");
    assert!(!dir.path().join("output-installer").exists(), "{t}");
}

#[test]
fn qemu_exiting_early_shows_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let o = kiln(dir.path(), &[r#"-var=qemuargs=[["-no-such-switch"]]"#])
        .output()
        .unwrap();
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("QEMU exited right after starting"), "{t}");
    assert!(
        t.contains("-no-such-switch"),
        "QEMU's own message is shown: {t}"
    );
    assert!(!dir.path().join("output-installer").exists(), "{t}");
}

#[test]
fn ctrl_c_during_install_stops_qemu_and_removes_the_output() {
    let dir = tempfile::tempdir().unwrap();
    // kiln's temporary files in a directory of this test's own, to read the serial log.
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    // The guest echoes the typed line (a secret in it) on its serial console.
    let secret = "hunter2-s3cr3t";
    let mut child: Child = kiln(
        dir.path(),
        &[
            "-machine-readable",
            &format!("-var=boot_secret={secret}"),
            r#"-var=boot_command=["<waitFor \"boot:\">install ks=http://{{ .HTTPIP }}:{{ .HTTPPort }}/ks.cfg s=@SECRET@<enter>"]"#,
        ],
    )
    .env("TMPDIR", &tmp)
    .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (rx, reader) = stdout_lines(&mut child);
    let mut pid = None;
    let mut seen = String::new();
    // Interrupt while the installer runs (after the boot command, before SSH).
    read_until(&rx, &mut seen, |line| {
        pid = pid.or(vm_pid(line));
        line.contains("Waiting for SSH to become available")
    });
    let qemu = pid.unwrap_or_else(|| panic!("no vm-pid line in: {seen}"));
    assert!(alive(qemu), "QEMU should be running at this point");
    // The serial log kiln keeps (0600 in a 0700 directory) has the echo, redacted.
    let serial = glob::glob(&format!("{}/kiln-*/kiln-qemu*/serial.log", tmp.display()))
        .unwrap()
        .flatten()
        .next()
        .unwrap_or_else(|| panic!("no serial log under {}", tmp.display()));
    let read = || String::from_utf8_lossy(&std::fs::read(&serial).unwrap()).into_owned();
    let mut console = read();
    for _ in 0..50 {
        if console.contains("/ks.cfg s=<sensitive>") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        console = read();
    }
    assert!(console.contains("/ks.cfg s=<sensitive>"), "{console}");
    assert!(!console.contains(secret), "{console}");
    let pid = child.id().to_string();
    let (status, t) = signal_and_collect(child, "-INT", &pid, &rx, reader, &mut seen);
    assert!(!status.success(), "{t}");
    assert!(!t.contains(secret), "{t}");
    assert!(t.contains("Cancelling builds"), "{t}");
    assert!(!alive(qemu), "QEMU {qemu} is still running after Ctrl-C");
    assert!(!dir.path().join("output-installer").exists(), "{t}");
}

/// A terminal's Ctrl-C reaches the whole foreground process group. While qemu-img runs, kiln must
/// report a cancelled build, not "qemu-img create failed (signal: 2)". A stand-in `qemu-img` that
/// sleeps (first on PATH) makes the moment deterministic; the real one is fast.
#[test]
fn ctrl_c_while_qemu_img_runs_is_a_cancellation() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let fake = bin.join("qemu-img");
    std::fs::write(&fake, "#!/bin/sh\nsleep 30\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child: Child = kiln(dir.path(), &[])
        .env("PATH", path)
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (rx, reader) = stdout_lines(&mut child);
    let mut seen = String::new();
    let reached = read_until(&rx, &mut seen, |line| line.contains("Creating hard drive"));
    assert!(reached, "{seen}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    // As a terminal does: SIGINT to the whole process group.
    let group = format!("-{}", child.id());
    let (status, t) = signal_and_collect(child, "-INT", &group, &rx, reader, &mut seen);
    assert!(!status.success(), "{t}");
    assert!(t.contains("was cancelled"), "{t}");
    assert!(!t.contains("qemu-img create failed"), "{t}");
}

/// A killed kiln cannot clean up, so QEMU must not need it to: it gets the parent-death signal.
/// Its temporary files (QMP socket, serial log) are left in its own root, which the next
/// `kiln build` removes, saying so; its disk was never at the final name.
#[test]
fn sigkill_of_kiln_takes_qemu_with_it() {
    let dir = tempfile::tempdir().unwrap();
    // kiln's own temporary directory, so that only this test's kiln runs are in it.
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mut child: Child = kiln(dir.path(), &["-machine-readable"])
        .env("TMPDIR", &tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (rx, reader) = stdout_lines(&mut child);
    let mut pid = None;
    let mut seen = String::new();
    read_until(&rx, &mut seen, |line| {
        pid = vm_pid(line);
        pid.is_some()
    });
    let qemu = pid.unwrap_or_else(|| panic!("no vm-pid line in: {seen}"));
    assert!(alive(qemu), "QEMU should be running at this point");
    Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    let _ = child.wait();
    reader.join().unwrap();
    let gone = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        !alive(qemu)
    });
    assert!(gone, "QEMU {qemu} outlived a SIGKILLed kiln by 10 s");

    let out = dir.path().join("output-installer");
    assert!(out.join("installer.qcow2.partial").is_file());
    assert!(
        !out.join("installer.qcow2").exists(),
        "an unfinished disk is never at the final name"
    );
    let roots: Vec<PathBuf> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let [root] = roots.as_slice() else {
        panic!("one temporary root expected: {roots:?}")
    };
    let name = root.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&format!("kiln-{}-", child.id())),
        "the root is named after its kiln: {name}"
    );
    // The next build removes it (and then stops at the existing output directory).
    let o = kiln(dir.path(), &[]).env("TMPDIR", &tmp).output().unwrap();
    let t = text(&o);
    assert!(
        t.contains(&format!(
            "Removed stale temporary files of an earlier kiln run (pid {}): {}",
            child.id(),
            root.display()
        )),
        "{t}"
    );
    assert!(!root.exists(), "{t}");
    assert!(t.contains("already exists"), "{t}");
}

/// Unmounts a tmpfs when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// A tmpfs of `size` (mount's syntax: `1m`) at `dir`, or `None` (with the reason printed)
    /// where this user may not mount; on CI that is a failure.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let o = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .unwrap();
        if o.status.success() {
            return Some(Tmpfs(dir.to_owned()));
        }
        let why = format!("cannot mount a tmpfs: {}", text(&o));
        assert!(std::env::var_os("CI").is_none(), "{why}");
        eprintln!("SKIPPED: {why}");
        None
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// With the output directory on a full file system, QEMU pauses the guest at its first failed
/// write (`werror=enospc`): kiln says so at once instead of waiting out `ssh_timeout` (30
/// minutes here) for a guest that will never answer.
#[test]
fn a_full_host_disk_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    // Room for the empty qcow2 (about 200 KiB), not for the installer's first megabyte.
    let Some(_mounted) = Tmpfs::mount(&small, "1m") else {
        return;
    };
    let out = small.join("out");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    // To a file, not a pipe nobody reads while kiln runs.
    let log = dir.path().join("kiln.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = kiln(
        dir.path(),
        &[
            &format!("-var=output_directory={}", out.display()),
            "-var=ssh_timeout=30m",
        ],
    )
    .env("TMPDIR", &tmp)
    .stdout(file.try_clone().unwrap())
    .stderr(file)
    .spawn()
    .unwrap();
    // Only a guard against the hang this test is about, far below ssh_timeout.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let t = std::fs::read_to_string(&log).unwrap();
            panic!("kiln was still waiting after 10 minutes: {t}");
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    let t = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{t}");
    let disk = out.join("installer.qcow2.partial");
    assert!(
        t.contains(&format!("the host disk is full ({})", disk.display())),
        "{t}"
    );
    assert!(!t.contains("waiting for SSH on"), "{t}");
    assert!(!out.exists(), "the output directory is cleaned up: {t}");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "kiln removes its temporary root: {left:?}");
}

/// Facts a hardware build's provisioner recorded, as `key=value` lines.
fn facts(path: &Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

#[test]
fn installs_on_virtio_scsi_and_nvme_hardware_in_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(dir.path())
        .arg("build")
        .arg(format!("-var=iso_path={}", iso().display()))
        .arg(repo().join("fixtures/templates/hardware"))
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");

    // virtio-scsi: disk and CD on one controller, an additional disk, 2 CPUs, 640 MiB, a floppy,
    // a TPM.
    let scsi = facts(&dir.path().join("facts-scsi.txt"));
    assert_eq!(scsi["cpus"], "2", "{scsi:?}");
    let mem: u64 = scsi["mem_kib"].parse().unwrap();
    assert!((560_000..=655_360).contains(&mem), "{scsi:?}");
    // The system went onto the controller's first disk (whatever name the kernel gave it),
    // not the 64 MiB additional one.
    assert!(scsi["root"].starts_with("/dev/sd"), "{scsi:?}");
    assert_eq!(scsi["root_disk_mib"], "1024", "{scsi:?}");
    assert!(
        scsi["disks"].contains("sda") && scsi["disks"].contains("sdb"),
        "{scsi:?}"
    );
    assert_eq!(scsi["tpm"], "2", "vtpm gives the guest a TPM 2.0: {scsi:?}");
    assert!(t.contains("virtio-scsi-pci,id=scsi0"), "{t}");
    assert!(t.contains("scsi-cd,drive=cdrom0"), "{t}");
    assert!(t.contains("-fda "), "the floppy is attached: {t}");
    assert!(
        t.contains("cache=unsafe,discard=unmap,format=qcow2,detect-zeroes=unmap"),
        "{t}"
    );
    assert!(
        t.contains("unix:output-scsi/scsi.qcow2.monitor"),
        "qmp_enable's socket: {t}"
    );
    assert!(t.contains("Adding content: answers/unattend.xml"), "{t}");
    let out = dir.path().join("output-scsi");
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["scsi.qcow2", "scsi.qcow2-1"],
        "the QMP socket is removed"
    );
    // disk_compression: qemu-img check counts compressed clusters in the converted disk.
    let check = Command::new("qemu-img")
        .args(["check", "--output=json"])
        .arg(out.join("scsi.qcow2"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check));
    let report: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert!(
        report["compressed-clusters"].as_u64().unwrap_or(0) > 0,
        "no compressed clusters in the disk_compression output: {report}"
    );

    // NVMe on q35, raw: the installer found /dev/nvme0n1 and the installed system booted from it.
    let nvme = facts(&dir.path().join("facts-nvme.txt"));
    assert_eq!(nvme["root"], "/dev/nvme0n1p1", "{nvme:?}");
    assert_eq!(nvme["root_disk_mib"], "1024", "{nvme:?}");
    assert_eq!(nvme["cpus"], "1", "{nvme:?}");
    assert_eq!(nvme["tpm"], "", "no vtpm, no TPM: {nvme:?}");
    assert!(
        t.contains("nvme,serial=kiln0,drive=drive0,bootindex=0"),
        "{t}"
    );
    assert!(nvme["machine"].contains("Q35"), "{nvme:?}");
    let info = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(dir.path().join("output-nvme/nvme.img"))
        .output()
        .unwrap();
    assert!(info.status.success(), "{}", text(&info));
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["format"], "raw", "{info}");
    assert_eq!(info["virtual-size"], 1024 * 1024 * 1024, "{info}");
}

#[test]
fn sigterm_during_provisioning_stops_every_child_and_leaves_nothing_behind() {
    // Its own TMPDIR, so the test sees every temporary file kiln and its children make.
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let template = dir.path().join("teardown.pkr.hcl");
    std::fs::write(
        &template,
        format!(
            r#"source "qemu" "teardown" {{
  iso_url          = "{iso}"
  iso_checksum     = "none"
  headless         = true
  disk_size        = "1024M"
  http_directory   = "{http}"
  boot_wait        = "1s"
  boot_command     = ["<waitFor \"boot:\">install ks=http://{{{{ .HTTPIP }}}}:{{{{ .HTTPPort }}}}/ks.cfg<enter>"]
  ssh_username     = "vagrant"
  ssh_password     = "vagrant"
  ssh_timeout      = "10m"
  vtpm             = true
  floppy_content   = {{ "a.txt" = "a" }}
  cd_content       = {{ "b.txt" = "b" }}
  output_directory = "output-teardown"
}}
build {{
  sources = ["source.qemu.teardown"]
  provisioner "shell" {{
    inline = ["echo provisioning-started", "sleep 600"]
  }}
}}
"#,
            iso = iso().display(),
            http = repo().join("fixtures/http").display()
        ),
    )
    .unwrap();
    let mut child: Child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(dir.path())
        .env("TMPDIR", &tmp)
        .args(["build", "-machine-readable"])
        .arg(&template)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (rx, reader) = stdout_lines(&mut child);
    let (mut qemu, mut http_port, mut seen) = (None, None, String::new());
    read_until(&rx, &mut seen, |line| {
        qemu = qemu.or(vm_pid(line));
        if let Some(p) = line.split("Starting HTTP server on port ").nth(1) {
            http_port = p.trim().parse::<u16>().ok();
        }
        line.contains("provisioning-started")
    });
    let qemu = qemu.unwrap_or_else(|| panic!("no vm-pid line in: {seen}"));
    let http_port = http_port.unwrap_or_else(|| panic!("no HTTP port in: {seen}"));
    // swtpm runs beside QEMU, under the test's TMPDIR.
    let swtpm = Command::new("pgrep")
        .args([
            "-f",
            &format!("swtpm socket --tpmstate dir={}", tmp.display()),
        ])
        .output()
        .unwrap();
    let swtpm: Vec<u32> = String::from_utf8_lossy(&swtpm.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert_eq!(swtpm.len(), 1, "one swtpm for the build: {seen}");
    assert!(alive(qemu) && alive(swtpm[0]));
    assert!(std::fs::read_dir(&tmp).unwrap().next().is_some());

    let pid = child.id().to_string();
    let (status, t) = signal_and_collect(child, "-TERM", &pid, &rx, reader, &mut seen);
    assert_eq!(status.code(), Some(1), "{t}");
    assert!(t.contains("build was cancelled"), "{t}");
    assert!(!alive(qemu), "QEMU {qemu} outlived kiln");
    assert!(!alive(swtpm[0]), "swtpm {} outlived kiln", swtpm[0]);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", http_port)).is_err(),
        "the HTTP server still answers on {http_port}"
    );
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    assert!(!dir.path().join("output-teardown").exists(), "{t}");
}

#[test]
fn a_script_reboots_the_guest_and_the_next_provisioners_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    std::fs::create_dir(&results).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(dir.path())
        .arg("build")
        .arg(format!("-var=iso_path={}", iso().display()))
        .arg(format!("-var=results={}", results.display()))
        .arg(repo().join("fixtures/templates/reboot"))
        .env_remove("KILN_BOOT_TRANSPORT")
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("Remote end disconnected (expect_disconnect)"),
        "{t}"
    );
    assert!(t.contains("was lost: waiting for SSH to come back"), "{t}");
    assert!(
        t.contains("Reconnected to SSH (host key ssh-ed25519 SHA256:"),
        "{t}"
    );
    // Written on the guest before and after the reboot, fetched over SFTP after it.
    let id = |name: &str| std::fs::read_to_string(results.join(name)).unwrap();
    let (before, after) = (id("boot-before"), id("boot-after"));
    assert_eq!(before.trim().len(), 36, "{before:?}");
    assert_eq!(after.trim().len(), 36, "{after:?}");
    assert_ne!(before, after, "the guest did not reboot");
}
