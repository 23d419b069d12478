//! Provisioners end to end with the real `kiln` binary under QEMU (TCG): the installer
//! fixture is installed once per build, provisioned over SSH, and the guest's state is read
//! back (a final `file` download, or SSH into a VM `-on-error=abort` left running). Builds are
//! few and each carries many assertions: machine time is the constraint.

use crate::support::text;
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Output directory of a fixture script, built (or taken from the cache) once per run.
fn fixture(script: &str) -> PathBuf {
    let out = Command::new("bash")
        .arg(repo().join("fixtures/installer").join(script))
        .stderr(Stdio::inherit())
        .output()
        .expect("run the fixture script");
    assert!(out.status.success(), "{script} failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn iso() -> &'static Path {
    static ISO: OnceLock<PathBuf> = OnceLock::new();
    ISO.get_or_init(|| fixture("build.sh").join("installer.iso"))
}

fn template(name: &str) -> PathBuf {
    repo().join("fixtures/templates/provision").join(name)
}

/// `kiln build` of `fixtures/templates/provision/<name>` in `dir`, with the ISO and out_dir set.
fn kiln(dir: &Path, name: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.current_dir(dir)
        .arg("build")
        .arg(format!("-var=iso_path={}", iso().display()))
        .arg(format!("-var=out_dir={}", dir.display()))
        .args(extra)
        .arg(template(name))
        .env_remove("KILN_BOOT_TRANSPORT")
        .env_remove("PACKER_LOG")
        .env_remove("KILN_LOG");
    c
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn write(p: &Path, data: &str, mode: u32) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The local files the shell-file template uploads, with modes git cannot carry.
fn upload_tree(files: &Path) {
    write(&files.join("tool.sh"), "#!/bin/sh\necho tool\n", 0o750);
    write(&files.join("a.txt"), "a\n", 0o644);
    write(&files.join("secret.txt"), "s\n", 0o600);
    write(
        &files.join("crlf.sh"),
        "#!/bin/sh\r\necho crlf-ran > /home/vagrant/k/crlf.txt\r\n",
        0o644,
    );
    let tree = files.join("tree");
    write(&tree.join("run.sh"), "#!/bin/sh\n", 0o755);
    write(&tree.join("private/key"), "k\n", 0o600);
    std::fs::set_permissions(tree.join("private"), std::fs::Permissions::from_mode(0o700)).unwrap();
    write(&tree.join("sub/deep.txt"), "deep\n", 0o644);
    symlink("run.sh", tree.join("link")).unwrap();
}

#[test]
fn shell_file_and_shell_local_options_leave_the_guest_as_packer_documents() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    upload_tree(&files);
    let o = kiln(
        dir.path(),
        "shell-file",
        &[&format!("-var=files_dir={}", files.display())],
    )
    .stdin(Stdio::null())
    .output()
    .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let r = dir.path().join("results");
    let get = |name: &str| read(&r.join(name));

    // Environment: quoting, env over environment_vars, Packer's variables.
    let env: Vec<String> = get("env.txt").lines().map(str::to_owned).collect();
    assert_eq!(
        env[..5],
        ["it's \"here\"", "from-env", "a b  c", "provision", "qemu"]
    );
    assert!(
        env[5].starts_with("10.0.2.2:") && env[5].len() > "10.0.2.2:".len(),
        "PACKER_HTTP_ADDR: {env:?}"
    );
    let http_addr = env[5].clone();
    assert_eq!(get("envfile.txt"), "sourced it's\n");
    assert_eq!(
        get("varfile-during").trim(),
        "1",
        "the env var file exists while it runs"
    );
    assert_eq!(
        get("varfile-after").trim(),
        "0",
        "and is removed afterwards"
    );
    assert_eq!(get("format.txt"), "formatted\n");
    // inline_shebang, remote_path, remote_folder/remote_file, skip_clean.
    assert_eq!(get("shebang.txt"), "shebang-ran\n");
    assert!(
        get("kept.sh").starts_with("#!/bin/sh -eu\n"),
        "{}",
        get("kept.sh")
    );
    assert!(
        r.join("named.sh").exists(),
        "remote_folder/remote_file kept"
    );
    let script_path = get("script-path");
    assert!(
        script_path.starts_with("/tmp/script_") && script_path.trim_end().ends_with(".sh"),
        "{script_path}"
    );
    assert_eq!(
        get("script-removed"),
        "removed\n",
        "uploaded scripts are cleaned up"
    );
    assert_eq!(
        get("uid.txt"),
        "0\n",
        "execute_command with sudo runs as root"
    );
    // CRLF converted unless binary.
    assert_eq!(get("crlf.txt"), "crlf-ran\n");
    assert!(get("binary.sh").contains("\r\n"), "binary keeps CRLF");
    // Exit codes, retries, timeout.
    assert!(r.join("exit7").exists());
    assert!(t.contains("exited with non-zero exit status: 3"), "{t}");
    assert!(t.contains("retrying (1/2)"), "{t}");
    assert_eq!(
        get("tries"),
        "2\n",
        "the retry ran the script a second time"
    );
    assert!(t.contains("timed out after 3s"), "{t}");
    assert!(t.contains("continuing (continue_on_error)"), "{t}");
    assert!(!r.join("timeout-finished").exists());
    // only / except / override / pause_before.
    assert!(!r.join("only-elsewhere").exists());
    assert!(r.join("except-elsewhere").exists());
    assert_eq!(get("override.txt"), "overridden\n");
    assert!(t.contains("Pausing 1s before the next provisioner"), "{t}");

    // shell-local: Packer's variables and the build's values.
    let local: Vec<String> = read(&dir.path().join("shell-local.txt"))
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(local[0], "provision");
    assert_eq!(local[1], "qemu");
    assert_eq!(local[2], http_addr);
    assert_eq!(local[3], http_addr, "{{{{ .HTTPIP }}}}:{{{{ .HTTPPort }}}}");
    assert!(
        local[4].starts_with("127.0.0.1:"),
        "build.Host:build.Port {local:?}"
    );
    assert_eq!(local[5], "vagrant");
    assert_eq!(local[6], "local it's");

    // file uploads: names, modes, the trailing-slash rule, symlinks, content, generated.
    let listing = get("listing.txt");
    has_lines(
        &listing,
        &[
            "tool.sh 750 regular file",
            "renamed.sh 750 regular file",
            "many/a.txt 644 regular file",
            "many/secret.txt 600 regular file",
            "nested/tree/run.sh 755 regular file",
            "nested/tree/private 700 directory",
            "nested/tree/private/key 600 regular file",
            "nested/tree/sub/deep.txt 644 regular file",
            "nested/tree/link 777 symbolic link",
            "flat/run.sh 755 regular file",
            "flat/private/key 600 regular file",
            "flat/link 777 symbolic link",
        ],
    );
    assert!(!listing.contains("flat/tree"), "{listing}");
    assert_eq!(get("link.txt"), "run.sh\n");
    assert_eq!(get("content.txt"), "inline content\n");
    assert_eq!(get("pkr-file-content"), "into a directory\n");
    assert_eq!(get("generated.txt"), "made-during-the-build\n");
    assert!(
        t.contains("Breakpoint (inspect the guest) skipped: standard input is not a terminal"),
        "{t}"
    );

    // Downloads: parents created, dir/ keeps the name, a directory keeps modes and links.
    assert_eq!(
        read(&dir.path().join("deep/er/env-copy.txt")),
        get("env.txt")
    );
    assert_eq!(read(&dir.path().join("into/uid.txt")), "0\n");
    assert_eq!(mode(&r.join("many/secret.txt")), 0o600);
    assert_eq!(mode(&r.join("nested/tree/private")), 0o700);
    assert_eq!(
        std::fs::read_link(r.join("flat/link")).unwrap(),
        Path::new("run.sh")
    );
    let leftovers: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("kiln-part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Every line of `lines` is a whole line of `text`.
fn has_lines(text: &str, lines: &[&str]) {
    for line in lines {
        assert!(text.lines().any(|l| l == *line), "{line:?} not in:\n{text}");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn ansible_from_the_host_and_ansible_local_on_the_guest() {
    let dir = tempfile::tempdir().unwrap();
    let guest = fixture("ansible-guest.sh");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let o = kiln(
        dir.path(),
        "ansible",
        &[&format!("-var=ansible_guest={}", guest.display())],
    )
    .env("TMPDIR", &tmp)
    .stdin(Stdio::null())
    .output()
    .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let r = dir.path().join("results");
    let remote = read(&r.join("ansible-remote.txt"));
    has_lines(
        &remote,
        &[
            "user=vagrant",
            "who=vagrant",
            "groups=kiln,web",
            "extra=from-extra-arguments",
            "env=from-ansible-env-vars",
            "build=ansible/qemu",
        ],
    );
    assert!(remote.contains("http=10.0.2.2:"), "{remote}");
    assert_eq!(read(&r.join("remote-mode")), "640\n");
    // The password reached ansible through a 0600 file, never the printed command line.
    let exec = t
        .lines()
        .find(|l| l.contains("Executing Ansible: ansible-playbook"))
        .unwrap_or_else(|| panic!("{t}"));
    assert!(!exec.contains("vagrant"), "{exec}");
    assert!(
        exec.contains("-e @") && exec.contains("--private-key"),
        "{exec}"
    );

    let local = read(&r.join("ansible-local.txt"));
    has_lines(
        &local,
        &[
            "marker=from-local-extra",
            "groups=local_group",
            "build=ansible",
            "from_dir=uploaded with playbook_dir",
        ],
    );
    assert_eq!(read(&r.join("role.txt")), "role ran\n");
    assert_eq!(
        read(&r.join("staging")),
        "removed\n",
        "clean_staging_directory"
    );
    // The temporary directory with the inventory, key and variables is gone.
    let left: Vec<_> = walk(&tmp)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("kiln-ansible"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A run of the null on-error template with `stdin` piped in.
fn null_build(dir: &Path, fail_times: u32, flags: &[&str], stdin: &str) -> (bool, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.current_dir(dir)
        .arg("build")
        .arg(format!("-var=out_dir={}", dir.display()))
        .arg(format!("-var=fail_times={fail_times}"))
        .args(flags)
        .arg(template("on-error-null"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    (o.status.success(), text(&o))
}

fn tries(dir: &Path) -> String {
    read(&dir.join("tries")).trim().to_owned()
}

fn cleanup_runs(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("error-cleanup.txt"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[test]
fn on_error_ask_retries_cleans_up_or_aborts_from_piped_answers() {
    // Retry re-runs the failed step, which then passes: no error cleanup.
    let d = tempfile::tempdir().unwrap();
    let (ok, t) = null_build(d.path(), 1, &["-on-error=ask"], "r\n");
    assert!(ok, "{t}");
    assert!(
        t.contains("[c] Clean up and exit, [a] abort without cleanup, or [r] retry step"),
        "{t}"
    );
    assert_eq!(tries(d.path()), "2");
    assert_eq!(cleanup_runs(d.path()), 0, "{t}");

    // Retry, fail again, then clean up: the error-cleanup-provisioner runs once.
    let d = tempfile::tempdir().unwrap();
    let (ok, t) = null_build(d.path(), 9, &["-on-error=ask"], "x\nr\nc\n");
    assert!(!ok, "{t}");
    assert!(t.contains("Please answer c, a or r"), "{t}");
    assert_eq!(tries(d.path()), "2");
    assert_eq!(cleanup_runs(d.path()), 1, "{t}");

    // Abort: nothing is cleaned up, the error-cleanup-provisioner included.
    let d = tempfile::tempdir().unwrap();
    let (ok, t) = null_build(d.path(), 9, &["-on-error=ask"], "a\n");
    assert!(!ok && t.contains("Aborting without cleanup"), "{t}");
    assert_eq!(cleanup_runs(d.path()), 0, "{t}");

    // No answer (stdin closed): clean up, and say why.
    let d = tempfile::tempdir().unwrap();
    let (ok, t) = null_build(d.path(), 9, &["-on-error=ask"], "");
    assert!(
        !ok && t.contains("standard input is closed; cleaning up"),
        "{t}"
    );
    assert_eq!(cleanup_runs(d.path()), 1, "{t}");
}

#[test]
fn error_cleanup_provisioner_runs_only_when_the_build_failed() {
    let d = tempfile::tempdir().unwrap();
    let (ok, t) = null_build(d.path(), 0, &["-on-error=run-cleanup-provisioner"], "");
    assert!(ok, "{t}");
    assert_eq!(
        cleanup_runs(d.path()),
        0,
        "a passing build runs no cleanup provisioner"
    );

    let d = tempfile::tempdir().unwrap();
    let (ok, t) = null_build(d.path(), 9, &["-on-error=run-cleanup-provisioner"], "");
    assert!(!ok, "{t}");
    assert!(t.contains("Running the cleanup provisioner"), "{t}");
    assert!(t.contains("Aborting without cleanup"), "{t}");
    assert_eq!(cleanup_runs(d.path()), 1);

    // Packer runs it with the default -on-error=cleanup too.
    let d = tempfile::tempdir().unwrap();
    let (ok, t) = null_build(d.path(), 9, &[], "");
    assert!(!ok && t.contains("failing on purpose (run 1)"), "{t}");
    assert_eq!(cleanup_runs(d.path()), 1);
}

#[test]
fn debug_pauses_before_each_step_and_goes_on_with_enter() {
    let d = tempfile::tempdir().unwrap();
    let (ok, t) = null_build(d.path(), 0, &["-debug"], "\n\n\n\n\n\n");
    assert!(ok, "{t}");
    for step in ["connect", "provision"] {
        assert!(
            t.contains(&format!(
                "Pausing before step '{step}'. Press enter to continue."
            )),
            "{t}"
        );
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[test]
fn on_error_abort_leaves_the_vm_running_and_says_how_to_reach_it() {
    let dir = tempfile::tempdir().unwrap();
    let o = kiln(
        dir.path(),
        "on-error",
        &["-on-error=abort", "-machine-readable"],
    )
    .stdin(Stdio::null())
    .output()
    .unwrap();
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    let pid: u32 = t
        .lines()
        .find_map(crate::support::vm_pid)
        .unwrap_or_else(|| panic!("no vm-pid in {t}"));
    let left_running = alive(pid);
    let reach = t
        .lines()
        .find(|l| l.contains("Aborting without cleanup"))
        .map(str::to_owned)
        .unwrap_or_default();
    // Look at the guest before stopping it: the state at the failure is there.
    let port = reach
        .split("ssh -p ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap_or("");
    let ssh = crate::support::ssh(
        port.parse().unwrap_or(0),
        "vagrant",
        "cat /home/vagrant/before-failure",
    );
    if left_running {
        let _ = Command::new("kill").arg(pid.to_string()).status();
        for _ in 0..100 {
            if !alive(pid) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    assert!(
        left_running,
        "QEMU {pid} was stopped despite -on-error=abort: {t}"
    );
    assert!(!alive(pid), "QEMU {pid} did not stop when killed");
    // (The user name shows as <sensitive>: this template's password is also "vagrant".)
    assert!(
        reach.contains(&format!(
            "the guest's SSH server is at 127.0.0.1:{port} (ssh -p {port} "
        )) && reach.contains("@127.0.0.1)"),
        "{reach}"
    );
    assert_eq!(
        String::from_utf8_lossy(&ssh.stdout),
        "state before the failure\n",
        "{}",
        text(&ssh)
    );
    assert!(
        dir.path().join("output").exists(),
        "the output directory is kept"
    );
    assert!(
        !dir.path().join("error-cleanup.txt").exists(),
        "abort runs no cleanup provisioner"
    );
}

#[test]
fn secrets_never_reach_output_logs_manifest_or_written_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (password, token) = ("pw-Zq81x7LmQ", "tok-5b9f3c2e71");
    // Inputs (outside the scanned output): a kickstart setting the password, the key.
    let inputs = tempfile::tempdir().unwrap();
    let ks = read(&repo().join("fixtures/http/ks.cfg"))
        .replace(
            "rootpw --plaintext vagrant",
            &format!("rootpw --plaintext {password}"),
        )
        .replace("--password=vagrant", &format!("--password={password}"));
    assert!(ks.contains(password));
    std::fs::write(inputs.path().join("ks.cfg"), ks).unwrap();
    let key = inputs.path().join("id_ed25519");
    std::fs::copy(repo().join("fixtures/installer/insecure_ed25519"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let key_lines: Vec<String> = read(&key)
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 20)
        .map(str::to_owned)
        .collect();
    assert!(!key_lines.is_empty());

    let log = d.join("kiln.log");
    let o = kiln(
        d,
        "secrets",
        &[
            "-machine-readable",
            &format!("-var=http_dir={}", inputs.path().display()),
            &format!("-var=key_file={}", key.display()),
            &format!("-var=password={password}"),
            &format!("-var=token={token}"),
        ],
    )
    .env("PACKER_LOG", "1")
    .env("PACKER_LOG_PATH", &log)
    .stdin(Stdio::null())
    .output()
    .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    // The build did what it was asked, so a redaction that hides everything would fail here.
    assert!(
        t.contains("marker-guest-output") && t.contains("marker-host-output"),
        "{t}"
    );
    assert!(
        t.contains("guest sees <sensitive>") && t.contains("host sees <sensitive>"),
        "{t}"
    );
    assert!(read(&log).contains("running step"), "the log was written");
    assert!(read(&d.join("manifest.json")).contains("secrets.qcow2"));

    // Everything kiln printed and wrote, except the guest's own disk (the guest keeps its
    // kickstart, password included, by design).
    let mut haystacks = vec![("stdout+stderr".to_owned(), t.into_bytes())];
    for p in walk(d) {
        if p.is_file() && p.extension().is_none_or(|e| e != "qcow2") {
            haystacks.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    assert!(
        haystacks.len() >= 3,
        "{:?}",
        haystacks.iter().map(|h| &h.0).collect::<Vec<_>>()
    );
    let secrets: Vec<&str> = [password, token]
        .into_iter()
        .chain(key_lines.iter().map(String::as_str))
        .collect();
    for (name, data) in &haystacks {
        let data = String::from_utf8_lossy(data);
        for s in &secrets {
            assert!(!data.contains(s), "{name} contains the secret {s:?}");
        }
    }
}

/// On a terminal the breakpoint waits for Enter: kiln runs under util-linux's `script`, which
/// gives it a pseudo-terminal, and the provisioner after the breakpoint must not run before
/// Enter is typed there.
#[test]
fn breakpoint_on_a_terminal_waits_for_enter() {
    use std::time::Duration;
    let d = tempfile::tempdir().unwrap();
    let marker = d.path().join("after-breakpoint");
    std::fs::write(
        d.path().join("bp.pkr.hcl"),
        format!(
            r#"source "null" "bp" {{
  communicator = "none"
}}
build {{
  sources = ["source.null.bp"]
  provisioner "breakpoint" {{
    note = "look around"
  }}
  provisioner "shell-local" {{
    inline = ["touch {}"]
  }}
}}
"#,
            marker.display()
        ),
    )
    .unwrap();
    let cmd = format!(
        "{} build -color=false bp.pkr.hcl",
        env!("CARGO_BIN_EXE_kiln")
    );
    let mut child = Command::new("script")
        .args(["-qefc", &cmd, "/dev/null"])
        .current_dir(d.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux script");
    let (rx, reader) = crate::support::stdout_lines(&mut child);
    let mut seen = String::new();
    while !seen.contains("Press enter to continue") {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => seen.push_str(&(line + "\n")),
            Err(_) => panic!("no breakpoint prompt: {seen}"),
        }
    }
    assert!(
        seen.contains("Pausing at breakpoint provisioner with note \"look around\""),
        "{seen}"
    );
    // Paused: what comes after the breakpoint has not run, however long we wait.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !marker.exists(),
        "the build went past the breakpoint: {seen}"
    );
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"\n").unwrap();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    reader.join().unwrap();
    seen.extend(rx.try_iter().map(|l| l + "\n"));
    assert!(out.status.success(), "{seen}{}", text(&out));
    assert!(
        marker.exists(),
        "the build did not go on after Enter: {seen}"
    );
}
