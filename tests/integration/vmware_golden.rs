//! Golden `.vmx` files, vmrun sequences and typed keys for bento's `vmware-iso` source:
//! `kiln build -only=vmware-iso.vm` of the unmodified bento template directory with each of its
//! non-Windows x86_64 vars files, through the VMware stand-ins (`tests/standins/vmrun`,
//! `vmware-vdiskmanager`; not VMware: they refuse what the real tools' grammar lacks). The
//! stand-in's null guest runs a small VNC server that records every key event. There is no
//! guest to answer SSH, so each build fails at the SSH wait (`ssh_timeout=1s`); the test
//! asserts that it is that failure and that clean-up stopped the VM and removed the output
//! directory, then compares with `fixtures/golden/vmware/bento/<vars-file-stem>.txt`
//! (`KILN_BLESS=1` rewrites them) three things:
//!
//! - the calls, but `vmrun list` (state polls, as many as the timing makes): the disk from
//!   `vmware-vdiskmanager -c` (Packer's step_create_disks.go), `vmrun start … nogui`
//!   (step_run.go), `getGuestIPAddress` (kiln's fallback when no DHCP lease names the guest),
//!   `vmrun stop … hard` at clean-up;
//! - the `.vmx` the VM was started with (iso/step_create_vmx.go's default template, with
//!   bento's `vmx_data`, then common/step_configure_vnc.go's `RemoteDisplay.vnc.*`);
//! - the keys typed over VNC (common/step_type_boot_command.go): a key pressed and released
//!   is written as its character or `<Name>`, anything else as `<Name down>`/`<Name up>`;
//!   a new line follows each `<Return>`.
//!
//! Checked against packer-plugin-vmware (iso/step_create_vmx.go's `DefaultVMXTemplate`,
//! common/step_configure_vmx.go, common/step_configure_vnc.go): the same keys and values. Not
//! the same: a VMware `.vmx` is a set of keys, and kiln writes them in its own fixed order
//! (`guestOS` and `cpuid.coresPerSocket` sit elsewhere in Packer's file), and it leaves out
//! the template's empty `serial0.*`/`parallel0.*` detail keys when the port is off (Packer
//! writes them with `""`, which VMware reads as unset).
//!
//! Normalised: the temporary directory (`TMP`), the VNC port (`VNCPORT`), and the HTTP
//! address typed into the boot command (`HTTPIP`, `HTTPPORT`).

#![allow(clippy::unwrap_used, reason = "tests may unwrap")]

use std::path::Path;
use std::process::Command;

use super::golden::{self, quote};
use super::support::{repo, text};

/// Builds bento's `vmware-iso` source with `vars` through the stand-ins and checks it.
fn check(templates: &Path, vars: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("dummy.iso"), b"not an installer").unwrap();
    let path = format!(
        "{}:/usr/bin:{}",
        repo().join("tests/standins").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(dir)
        .env("PATH", path)
        .env("KILN_VMWARE_STANDIN_DIR", dir)
        // The null guest runs until kiln stops it.
        .env("KILN_VMWARE_STANDIN_RUNS_FOR", "1000000")
        .env("KILN_CACHE_DIR", dir.join("cache"))
        .env("KILN_OFFLINE", "1")
        .env("NO_COLOR", "1")
        .env_remove("KILN_VMWARE_STANDIN_QEMU")
        .env_remove("KILN_BOOT_TRANSPORT")
        .args(["build", "-only=vmware-iso.vm"])
        .arg(format!("-var-file={}", vars.display()))
        .args([
            "-var",
            &format!("iso_url={}", dir.join("dummy.iso").display()),
        ])
        .args(["-var", "iso_checksum=none"])
        // Bento's defaults put the ISO and the output under the corpus: keep them here.
        .args([
            "-var",
            &format!("iso_target_path={}", dir.join("target.iso").display()),
        ])
        .args([
            "-var",
            &format!("output_directory={}", dir.join("out").display()),
        ])
        .args(["-var", "ssh_timeout=1s", "-var", "vmware_boot_wait=0s"])
        .arg(templates)
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("timed out after 1s waiting for SSH on "),
        "did not fail at the SSH wait: {t}"
    );
    assert!(
        !dir.join("out-vmware").exists(),
        "the output directory is left"
    );
    let calls: Vec<Vec<String>> = std::fs::read_to_string(dir.join("calls.log"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|c: &Vec<String>| c.last().map(String::as_str) != Some("list"))
        .collect();
    let last = calls.last().map(|c| c.join(" ")).unwrap_or_default();
    assert!(
        last.starts_with("vmrun -T ws stop ") && last.ends_with(" hard"),
        "clean-up did not stop the VM last: {last}"
    );
    let started: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".started.vmx"))
        .collect();
    assert_eq!(started.len(), 1, "{started:?}");
    let vmx = std::fs::read_to_string(&started[0]).unwrap();
    let stem = started[0].to_string_lossy().replace(".started.vmx", "");
    let keys = std::fs::read_to_string(format!("{stem}.keys.log")).unwrap_or_default();
    let http_port = t
        .split("Starting HTTP server on port ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("none");
    let http_ip = kiln::builder::vmware::default_route_ip();

    let roots = roots(dir);
    let hide = |s: &str| roots.iter().fold(s.to_owned(), |s, r| s.replace(r, "TMP"));
    let mut got = String::from("# calls, but `vmrun list`\n");
    for c in &calls {
        let words: Vec<String> = c.iter().map(|a| quote(&hide(a))).collect();
        got += &(words.join(" ") + "\n");
    }
    got += "\n# the .vmx at `vmrun start`\n";
    for line in vmx.lines() {
        let line = match line.split_once(" = ") {
            Some((k, _)) if k.eq_ignore_ascii_case("RemoteDisplay.vnc.port") => {
                format!("{k} = \"VNCPORT\"")
            }
            _ => hide(line),
        };
        got += &(line + "\n");
    }
    got += "\n# typed over VNC\n";
    let colon = "<Shift_L down>:<Shift_L up>";
    got += &typed(&keys).replace(
        &format!("{http_ip}{colon}{http_port}"),
        &format!("HTTPIP{colon}HTTPPORT"),
    );
    got += "\n";
    crate::vagrant::check_golden(&format!("vmware/bento/{}.txt", golden::stem(vars)), &got);
}

/// `dir` and its canonical form, longest first.
fn roots(dir: &Path) -> Vec<String> {
    let mut roots: Vec<String> = [dir.to_path_buf(), dir.canonicalize().unwrap()]
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    roots.sort_by_key(|r| std::cmp::Reverse(r.len()));
    roots
}

/// The key events of the stand-in's log (`down 0061`, `up 0061`…) as text: a printable key
/// pressed and released is its character, another key so is `<Name>`, anything else
/// `<Name down>` or `<Name up>`; a new line follows each `<Return>`.
fn typed(log: &str) -> String {
    let events: Vec<(bool, u32)> = log
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(d, k)| (d == "down", u32::from_str_radix(k, 16).unwrap()))
        .collect();
    let mut out = String::new();
    let mut i = 0;
    while i < events.len() {
        let (down, key) = events[i];
        let printable = (0x20..0x7f).contains(&key);
        if down && events.get(i + 1) == Some(&(false, key)) {
            match char::from_u32(key).filter(|_| printable) {
                Some(c) => out.push(c),
                None => out += &format!("<{}>", key_name(key)),
            }
            if key == 0xff0d {
                out.push('\n');
            }
            i += 2;
        } else {
            let name = match char::from_u32(key).filter(|_| printable) {
                Some(c) => c.to_string(),
                None => key_name(key),
            };
            out += &format!("<{name} {}>", if down { "down" } else { "up" });
            i += 1;
        }
    }
    out
}

/// X11's name of a keysym kiln types that is not printable ASCII.
fn key_name(key: u32) -> String {
    let name = match key {
        0xff08 => "BackSpace",
        0xff09 => "Tab",
        0xff0d => "Return",
        0xff1b => "Escape",
        0xff50 => "Home",
        0xff51 => "Left",
        0xff52 => "Up",
        0xff53 => "Right",
        0xff54 => "Down",
        0xff55 => "Page_Up",
        0xff56 => "Page_Down",
        0xff57 => "End",
        0xff63 => "Insert",
        0xffe1 => "Shift_L",
        0xffe2 => "Shift_R",
        0xffe3 => "Control_L",
        0xffe4 => "Control_R",
        0xffe9 => "Alt_L",
        0xffea => "Alt_R",
        0xffeb => "Super_L",
        0xffff => "Delete",
        0xffbe..=0xffc9 => return format!("F{}", key - 0xffbe + 1),
        _ => return format!("{key:#06x}"),
    };
    name.to_owned()
}

/// Every covered bento vars file.
#[test]
fn bento_vmware_iso_writes_packers_vmx_and_vmrun_sequence() {
    let Some(bento) = golden::bento() else { return };
    let cases: Vec<_> = golden::vars_files(&bento, "vmware-iso")
        .into_iter()
        .filter(|v| !v.to_string_lossy().contains("/solaris/"))
        .collect();
    assert!(cases.len() >= 20, "{} vars files", cases.len());
    let templates = bento.join("packer_templates");
    golden::check_all(cases, |v| v.display().to_string(), |v| check(&templates, v));
}
