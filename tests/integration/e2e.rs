//! End-to-end builds of `fixtures/templates/e2e` with the real `kiln` binary under QEMU (TCG):
//! the installer fixture ISO is booted, the boot command typed, the kickstart served, the
//! system installed, provisioned over SSH and shut down; the produced qcow2 is then booted
//! again with plain QEMU and checked over OpenSSH's client. Failure paths: wrong boot command,
//! missing answer file, QEMU exiting early, Ctrl-C mid-install, an existing output directory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The installer ISO, built (or taken from the cache) once per test run.
fn iso() -> &'static Path {
    static ISO: OnceLock<PathBuf> = OnceLock::new();
    ISO.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo().join("fixtures/installer/build.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run fixtures/installer/build.sh");
        assert!(out.status.success(), "installer fixture failed to build");
        let dir = String::from_utf8(out.stdout).unwrap();
        PathBuf::from(dir.trim()).join("installer.iso")
    })
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

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Boot `disk` with plain QEMU and run `cmd` over OpenSSH as vagrant with the fixture's key.
fn boot_and_run(disk: &Path, cmd: &str) -> String {
    let port = free_port();
    let work = tempfile::tempdir().unwrap();
    let key = work.path().join("key");
    std::fs::copy(repo().join("fixtures/installer/insecure_ed25519"), &key).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-machine", "pc,accel=tcg", "-m", "512", "-display", "none"])
        .args([
            "-netdev",
            &format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22"),
        ])
        .args(["-device", "virtio-net,netdev=n0", "-snapshot"])
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=qcow2", disk.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let result = loop {
        let out = Command::new("ssh")
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-i"])
            .arg(&key)
            .args(["-p", &port.to_string(), "vagrant@127.0.0.1", cmd])
            .output()
            .unwrap();
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        if Instant::now() > deadline {
            let _ = qemu.kill();
            panic!("the built image never answered SSH: {}", text(&out));
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    let _ = qemu.kill();
    let _ = qemu.wait();
    result
}

fn alive(pid: u32) -> bool {
    // A zombie is dead for our purpose; kiln reaps QEMU, so the entry should be gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
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

    let marker = boot_and_run(&disk, "cat /etc/kiln-marker");
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
    let mut child: Child = kiln(dir.path(), &["-machine-readable"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let mut pid = None;
    let mut seen = String::new();
    for line in rx.iter() {
        seen.push_str(&line);
        seen.push('\n');
        if let Some(p) = line.split(",vm-pid,").nth(1) {
            pid = Some(p.trim().parse::<u32>().unwrap());
        }
        // Interrupt while the installer runs (after the boot command, before SSH).
        if line.contains("Waiting for SSH to become available") {
            break;
        }
    }
    let qemu = pid.unwrap_or_else(|| panic!("no vm-pid line in: {seen}"));
    assert!(alive(qemu), "QEMU should be running at this point");
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    reader.join().unwrap();
    seen.extend(rx.try_iter().map(|l| l + "\n"));
    let t = format!("{seen}{}", text(&out));
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("Cancelling builds"), "{t}");
    assert!(!alive(qemu), "QEMU {qemu} is still running after Ctrl-C");
    assert!(!dir.path().join("output-installer").exists(), "{t}");
}
