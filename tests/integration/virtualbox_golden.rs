//! Golden VBoxManage sequences for bento's `virtualbox-iso` source: `kiln build
//! -only=virtualbox-iso.vm` of the unmodified bento template directory with each of its
//! non-Windows x86_64 vars files, through the VBoxManage stand-in (`tests/standins/VBoxManage`,
//! which refuses what the real VBoxManage's grammar lacks). There is no guest, so each build
//! fails at the SSH wait (`ssh_timeout=1s`); the test asserts that it is that failure (every
//! earlier call passed the grammar check) and that clean-up ran, then compares the recorded
//! calls with `fixtures/golden/virtualbox/bento/<vars-file-stem>.txt` (`KILN_BLESS=1` rewrites
//! them). VirtualBox 6.1 (old option spellings) has its own golden for Ubuntu 24.04.
//!
//! The goldens were checked line by line against Packer's VirtualBox plugin
//! (packer-plugin-virtualbox, builder/virtualbox/iso/builder.go and the steps it lists):
//!
//! - `list systemproperties`: the driver's `Iso()` (common/driver_4_2.go), the guest additions
//!   ISO VirtualBox ships (common/step_download_guest_additions.go; bento's Linux mode is
//!   `upload`). The stand-in does not record `--version`.
//! - `createvm … --register` to `modifyvm … --accelerate3d off`: iso/step_create_vm.go, one
//!   call per setting in its order (boot order, cpus, ioapic for >1 CPU, memory, usb off,
//!   audio, mouse, keyboard, chipset, firmware, the eight NIC types, graphics + vram, rtc,
//!   accelerate3d).
//! - `createhd`, `storagectl … IDE`, `storagectl … VirtioSCSI`, `storageattach … hdd`:
//!   iso/step_create_disk.go (IDE always; VirtioSCSI because bento's disk and ISO are virtio).
//! - `storageattach … --port 13 … dvddrive`: common/step_attach_isos.go (boot ISO on
//!   VirtioSCSI port 13).
//! - `modifyvm … --vrde…`: common/step_configure_vrdp.go; `--nic1 nat`,
//!   `--nat-localhostreachable1 on` (VirtualBox ≥ 7.0 only), `--natpf1 packercomm…`:
//!   common/step_port_forwarding.go.
//! - bento's `vboxmanage` list, verbatim with `{{.Name}}` rendered: common/step_vboxmanage.go.
//! - `startvm … --type headless`: common/step_run.go; `keyboardputscancode`:
//!   common/step_type_boot_command.go (PC-XT codes, at most 25 per call, a call per `<wait>`).
//! - After the SSH timeout, clean-up in reverse: `showvminfo` + `controlvm … poweroff`
//!   (step_run.go's `IsRunning` then `poweroff`), the ISO detached (`--medium none`,
//!   step_attach_isos.go's clean-up), `unregistervm … --delete` (step_create_vm.go's clean-up).
//!
//! Deliberate differences from Packer, not in the goldens:
//!
//! - No `setextradata global GUI/…` (common/step_suppress_messages.go): those four keys
//!   silence the VirtualBox GUI's nags in the user's global settings, which outlive the build,
//!   and one of them embeds next year's date; a headless build has no GUI to quiet.
//! - No throw-away `createvm packer_temp_vm_<time> --default` / `showvminfo` / `unregistervm`
//!   (iso/step_get_vm_defaults.go): Packer reads only the default graphics controller from it,
//!   and only when `gfx_controller` is unset; bento always sets it.
//! - Go iterates maps in random order, so Packer's order of attaching the boot ISO and
//!   `cd_files` (and of detaching them) varies from run to run; kiln's is fixed (boot ISO
//!   first). With bento's Linux vars there is only the boot ISO.
//! - Read-only queries are not counted against Packer: kiln polls `showvminfo --machinereadable`
//!   while it types (to stop typing into a VM that died) and while it waits for the power-off
//!   at clean-up; Packer asks once, before its `poweroff`. They change nothing, and their
//!   number depends on timing, so the goldens leave out `showvminfo`.
//!
//! Normalised before the comparison: the temporary directory (`TMP`), the random NAT host
//! port (`HOSTPORT`) and VRDE port (`VRDEPORT`), and the HTTP port typed into the boot command
//! (bento's commands type `{{.HTTPIP}}:{{.HTTPPort}}`): its digits' scancodes after a `:` become
//! `hp`, one per scancode, so the calls keep their length. Arguments with spaces are quoted.
//!
//! Covered: every `os_pkrvars/*/*-x86_64.pkrvars.hcl` except Windows (`is_windows`: WinRM,
//! `cd_files` answer files, guest additions attached; not the Linux sources this checks) and
//! vars files whose `sources_enabled` leaves out `virtualbox-iso` (amazonlinux: an OVA for
//! `virtualbox-ovf`). macOS has no x86_64 vars file. Solaris is covered by its own ignored
//! test: its boot command waits 225 s.

#![allow(clippy::unwrap_used, reason = "tests may unwrap")]

use std::path::{Path, PathBuf};
use std::process::Command;

use super::golden::{self, quote};
use super::support::{repo, text};

/// The VirtualBox the stand-in plays by default, and the last 6.x.
const VBOX_7_1: &str = "7.1.4r165100";
const VBOX_6_1: &str = "6.1.50r161033";

/// Bento's Linux `vboxmanage` commands as a VirtualBox 6.1 user writes them: 6.1 has no
/// `--audio-enabled` (audio is turned off by its driver, `--audio none`), no
/// `--nat-localhostreachable1` (before 7.0 the host's loopback is reachable anyway) and spells
/// `--usb-xhci` `--usbxhci`. Bento's own list is refused by 6.1's VBoxManage (the lib test
/// `on_virtualbox_6_1_bentos_7_0_options_are_refused_and_the_vm_is_deleted` shows how).
const VBOXMANAGE_6_1: &str = r#"vboxmanage = [
  ["modifyvm", "{{.Name}}", "--audio", "none"],
  ["modifyvm", "{{.Name}}", "--cableconnected1", "on"],
  ["modifyvm", "{{.Name}}", "--usbxhci", "on"],
  ["modifyvm", "{{.Name}}", "--mouse", "usb"],
  ["modifyvm", "{{.Name}}", "--keyboard", "usb"],
  ["storagectl", "{{.Name}}", "--name", "IDE Controller", "--remove"],
]
"#;

/// One build to check: a vars file, the VirtualBox version, the golden it must match.
struct Case {
    vars: PathBuf,
    version: &'static str,
    /// A second vars file, for VirtualBox 6.1: [`VBOXMANAGE_6_1`].
    extra: Option<&'static str>,
    golden: String,
}

impl Case {
    fn new(vars: PathBuf, version: &'static str) -> Self {
        let stem = golden::stem(&vars);
        let (golden, extra) = match version {
            VBOX_7_1 => (format!("virtualbox/bento/{stem}.txt"), None),
            _ => (
                format!("virtualbox/bento/{stem}.vbox-6.1.txt"),
                Some(VBOXMANAGE_6_1),
            ),
        };
        Case {
            vars,
            version,
            extra,
            golden,
        }
    }
}

/// Runs `case` through the stand-in in a fresh temporary directory and checks it: the build
/// fails at the SSH wait, clean-up deleted the VM and the output directory, and the
/// normalised calls match the golden file.
fn check(templates: &Path, case: &Case) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("dummy.iso"), b"not an installer").unwrap();
    let additions = dir.join("VBoxGuestAdditions.iso");
    std::fs::write(&additions, b"not the additions").unwrap();
    // /usr/bin before the rest: the stand-in runs on `env python3`, and a version manager's
    // shim there costs more per call than the stand-in; a build makes a hundred calls.
    let path = format!(
        "{}:/usr/bin:{}",
        repo().join("tests/standins").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Bento appends the builder's name to output_directory.
    let out_dir = dir.join("out-virtualbox");
    let mut kiln = Command::new(env!("CARGO_BIN_EXE_kiln"));
    if let Some(extra) = case.extra {
        std::fs::write(dir.join("extra.pkrvars.hcl"), extra).unwrap();
    }
    let out = kiln
        .current_dir(dir)
        .env("PATH", path)
        .env("KILN_VBOX_STANDIN_DIR", dir)
        .env("KILN_VBOX_STANDIN_VERSION", case.version)
        .env("KILN_VBOX_STANDIN_ADDITIONS_ISO", &additions)
        .env("KILN_CACHE_DIR", dir.join("cache"))
        .env("KILN_OFFLINE", "1")
        .env("NO_COLOR", "1")
        .env_remove("VBOX_INSTALL_PATH")
        .args(["build", "-only=virtualbox-iso.vm"])
        .arg(format!("-var-file={}", case.vars.display()))
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
        .args(["-var", "ssh_timeout=1s", "-var", "vbox_boot_wait=0s"])
        .args(
            case.extra
                .map(|_| format!("-var-file={}", dir.join("extra.pkrvars.hcl").display())),
        )
        .arg(templates)
        .output()
        .unwrap();
    let t = text(&out);
    let name = case.vars.display();
    assert_eq!(out.status.code(), Some(1), "{name}: {t}");
    assert!(
        t.contains("timed out after 1s waiting for SSH on 127.0.0.1:"),
        "{name} did not fail at the SSH wait: {t}"
    );
    let calls: Vec<Vec<String>> = std::fs::read_to_string(dir.join("calls.log"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last = calls.last().map(|c| c.join(" ")).unwrap_or_default();
    assert!(
        last.starts_with("unregistervm ") && last.ends_with(" --delete"),
        "{name}: clean-up did not delete the VM last: {last}"
    );
    assert!(!out_dir.exists(), "{name}: the output directory is left");
    let http_port = t
        .split("Starting HTTP server on port ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next());
    let got = normalise(&calls, &[dir], http_port);
    crate::vagrant::check_golden(&case.golden, &got);
}

/// The calls but `showvminfo` (read-only polls, as many as the timing makes), one per line, with `tmp` (and its canonical form) as `TMP`, the NAT host port and
/// VRDE port as words, and the typed HTTP port's scancodes as `hp`.
fn normalise(calls: &[Vec<String>], tmp: &[&Path], http_port: Option<&str>) -> String {
    let mut roots: Vec<String> = tmp
        .iter()
        .flat_map(|d| [d.to_path_buf(), d.canonicalize().unwrap()])
        .map(|d| d.display().to_string())
        .collect();
    roots.sort_by_key(|r| std::cmp::Reverse(r.len()));
    let mut calls: Vec<Vec<String>> = calls
        .iter()
        .map(|c| {
            let mut c: Vec<String> = c
                .iter()
                .map(|a| roots.iter().fold(a.clone(), |a, r| a.replace(r, "TMP")))
                .collect();
            for i in 1..c.len() {
                if c[i - 1] == "--vrdeport" || c[i - 1] == "--vrde-port" {
                    c[i] = "VRDEPORT".into();
                }
                if let Some(rule) = c[i].strip_prefix("packercomm,tcp,127.0.0.1,") {
                    let guest = rule.split_once(",,").map_or("", |(_, g)| g);
                    c[i] = format!("packercomm,tcp,127.0.0.1,HOSTPORT,,{guest}");
                }
            }
            c
        })
        .collect();
    if let Some(port) = http_port {
        hide_typed_port(&mut calls, port);
    }
    calls
        .iter()
        .filter(|c| c.first().map(String::as_str) != Some("showvminfo"))
        .map(|c| c.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" "))
        .map(|l| l + "\n")
        .collect()
}

/// Replaces, across the `keyboardputscancode` calls, each scancode of `port` typed right after
/// a `:` (Shift, `27 a7`, Shift up) with `hp`.
fn hide_typed_port(calls: &mut [Vec<String>], port: &str) {
    // Digits 1-9 are make codes 02-0a, 0 is 0b; each is sent as make, then break (| 0x80).
    let mut pattern = vec!["2a".to_owned(), "27".into(), "a7".into(), "aa".into()];
    for d in port.chars().filter_map(|c| c.to_digit(10)) {
        let make = if d == 0 { 0x0b } else { d + 1 };
        pattern.push(format!("{make:02x}"));
        pattern.push(format!("{:02x}", make | 0x80));
    }
    // (call, argument) of every typed scancode, in order.
    let at: Vec<(usize, usize)> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.get(2).map(String::as_str) == Some("keyboardputscancode"))
        .flat_map(|(i, c)| (3..c.len()).map(move |j| (i, j)))
        .collect();
    let codes: Vec<String> = at.iter().map(|&(i, j)| calls[i][j].clone()).collect();
    let mut k = 0;
    while k + pattern.len() <= codes.len() {
        if codes[k..k + pattern.len()] == pattern[..] {
            for &(i, j) in &at[k + 4..k + pattern.len()] {
                calls[i][j] = "hp".into();
            }
            k += pattern.len();
        } else {
            k += 1;
        }
    }
}

/// Checks `cases`, all of them, then fails with every case that failed.
fn check_all(templates: &Path, cases: Vec<Case>) {
    golden::check_all(
        cases,
        |c| c.vars.display().to_string(),
        |c| check(templates, c),
    );
}

/// Every covered bento vars file on VirtualBox 7.1, and Ubuntu 24.04 on 6.1.
#[test]
fn bento_virtualbox_iso_sends_packers_vboxmanage_sequence() {
    let Some(bento) = golden::bento() else { return };
    let mut cases: Vec<Case> = golden::vars_files(&bento, "virtualbox-iso")
        .into_iter()
        .filter(|v| !v.to_string_lossy().contains("/solaris/"))
        .map(|v| Case::new(v, VBOX_7_1))
        .collect();
    assert!(cases.len() >= 20, "{} vars files", cases.len());
    cases.push(Case::new(
        bento.join("os_pkrvars/ubuntu/ubuntu-24.04-x86_64.pkrvars.hcl"),
        VBOX_6_1,
    ));
    check_all(&bento.join("packer_templates"), cases);
}

/// Solaris 11 on VirtualBox 7.1: its boot command waits 225 s, so it runs only when asked.
#[test]
#[ignore = "bento's Solaris boot command waits 225 s"]
fn bento_solaris_virtualbox_iso_sends_packers_vboxmanage_sequence() {
    let Some(bento) = golden::bento() else { return };
    let vars = bento.join("os_pkrvars/solaris/solaris-11-x86_64.pkrvars.hcl");
    check_all(
        &bento.join("packer_templates"),
        vec![Case::new(vars, VBOX_7_1)],
    );
}
