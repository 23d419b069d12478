//! Which accelerator QEMU gets. `auto` (kiln's default) uses KVM only when a one-second probe
//! guest actually runs under it, and TCG otherwise with one warning saying why: `/dev/kvm` can
//! exist and open fine while guests hang (nested virtualisation in CI). An explicit `kvm`
//! that cannot work fails fast with the same reason instead of hanging the build.

use std::path::Path;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::sync::OnceCell;

/// How long the probe guest gets (SeaBIOS, then a few instructions). Starting KVM itself took
/// about 3 s on a nested host here; a guest that hits a KVM emulation failure is caught from
/// QEMU's stderr at once, and one that hangs silently at this limit.
const PROBE_TIMEOUT: Duration = Duration::from_secs(6);
/// The probe guest writes 0x2a to the `isa-debug-exit` port; QEMU then exits with (v << 1) | 1.
const PROBE_EXIT_CODE: i32 = 0x2a << 1 | 1;
/// The probe guest: a boot sector that switches to protected mode and takes an interrupt
/// through an IDT gate, which is where broken nested KVM fails on real kernels (source in
/// `kvm-probe.S`). A plain real-mode guest runs fine there, so it would not detect it.
const PROBE_GUEST: &[u8; 512] = include_bytes!("kvm-probe.bin");

/// The accelerator chosen for a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// What goes into `-machine accel=`.
    pub accel: String,
    /// Why KVM was not used, when `auto` fell back to TCG.
    pub fallback: Option<String>,
}

/// Why KVM cannot run guests on this host (the probe's finding).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KvmUnusable(pub String);

/// An accelerator the template asked for that cannot work.
#[derive(Debug, Clone, thiserror::Error)]
#[error("accelerator = \"kvm\" cannot work here\nhint: use accelerator = \"tcg\" (slower) or \"auto\" to fall back automatically")]
pub struct AccelError(#[source] pub KvmUnusable);

/// Decide for `requested` (the template's `accelerator`).
pub async fn choose(qemu: &str, requested: &str) -> Result<Choice, AccelError> {
    match requested {
        "auto" | "" => Ok(match kvm_usable(qemu).await {
            Ok(()) => Choice {
                accel: "kvm".into(),
                fallback: None,
            },
            Err(why) => Choice {
                accel: "tcg".into(),
                fallback: Some(why.0),
            },
        }),
        "kvm" => match kvm_usable(qemu).await {
            Ok(()) => Ok(Choice {
                accel: "kvm".into(),
                fallback: None,
            }),
            Err(why) => Err(AccelError(why)),
        },
        "none" => Ok(Choice {
            accel: "tcg".into(),
            fallback: None,
        }),
        other => Ok(Choice {
            accel: other.to_owned(),
            fallback: None,
        }),
    }
}

/// `Ok` when KVM runs guests; the reason otherwise. Probed once per process.
pub async fn kvm_usable(qemu: &str) -> Result<(), KvmUnusable> {
    static RESULT: OnceCell<Result<(), KvmUnusable>> = OnceCell::const_new();
    RESULT.get_or_init(|| probe(qemu)).await.clone()
}

async fn probe(qemu: &str) -> Result<(), KvmUnusable> {
    if let Ok(v) = std::env::var("KILN_ACCEL_PROBE") {
        // For tests and for hosts where the probe itself is unwanted: "fail:<reason>" or "ok".
        return match v.strip_prefix("fail:") {
            Some(reason) => Err(KvmUnusable(reason.to_owned())),
            None => Ok(()),
        };
    }
    let dev = Path::new("/dev/kvm");
    if !dev.exists() {
        return Err(KvmUnusable(
            "/dev/kvm does not exist (no KVM in this kernel or VM)".to_owned(),
        ));
    }
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open(dev) {
        return Err(KvmUnusable(format!(
            "/dev/kvm cannot be opened read-write ({e}); add the user to the kvm group"
        )));
    }
    let dir = crate::child::private_tempdir("kiln-probe")
        .map_err(|e| KvmUnusable(format!("cannot create a temporary directory: {e}")))?;
    let disk = dir.path().join("probe.img");
    std::fs::write(&disk, PROBE_GUEST)
        .map_err(|e| KvmUnusable(format!("cannot write the probe disk: {e}")))?;
    // A probe guest can hang (that is what it detects): it must not outlive a killed kiln.
    let mut cmd = crate::child::command(qemu);
    cmd.args([
        "-machine",
        "pc,accel=kvm",
        "-m",
        "16",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-drive",
    ])
    .arg(format!("file={},format=raw,if=ide", disk.display()))
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped())
    .kill_on_drop(true);
    let mut child = crate::child::spawn(cmd)
        .map_err(|e| KvmUnusable(format!("cannot run {qemu} for the KVM probe: {e}")))?;
    let stderr = child.stderr.take();
    let watch_stderr = async move {
        let Some(err) = stderr else {
            return std::future::pending().await;
        };
        let mut lines = tokio::io::BufReader::new(err).lines();
        let mut first = None;
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("KVM internal error") || line.contains("emulation failure") {
                return line;
            }
            if first.is_none() && !line.contains("warning") {
                first = Some(line);
            }
        }
        // stderr closed: QEMU exited; report its first message once the exit code is known.
        std::future::pending::<()>().await;
        first.unwrap_or_default()
    };
    let result = tokio::select! {
        line = watch_stderr => Err(KvmUnusable(format!(
            "a probe guest failed under KVM ({}): KVM is present but cannot run guests, as under some nested virtualisation",
            line.trim()
        ))),
        status = child.wait() => match status {
            Ok(s) if s.code() == Some(PROBE_EXIT_CODE) => Ok(()),
            Ok(s) => Err(KvmUnusable(format!("QEMU cannot use KVM (probe guest ended with {s}); run with KILN_LOG=debug for details"))),
            Err(e) => Err(KvmUnusable(format!("the KVM probe failed: {e}"))),
        },
        () = tokio::time::sleep(PROBE_TIMEOUT) => Err(KvmUnusable(format!(
            "a probe guest under KVM did not finish within {PROBE_TIMEOUT:?}: KVM is present but guests hang, as under some nested virtualisation"
        ))),
    };
    let _ = child.start_kill();
    let _ = child.wait().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_guest_is_a_boot_sector() {
        assert_eq!(&PROBE_GUEST[510..], &[0x55, 0xaa]);
    }

    /// The probe guest must really run: under TCG the same disk makes QEMU exit with the
    /// probe's code, which is what the KVM probe waits for.
    #[tokio::test]
    async fn probe_guest_exits_with_its_code_under_tcg() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("p.img");
        std::fs::write(&disk, PROBE_GUEST).unwrap();
        let out = tokio::process::Command::new("qemu-system-x86_64")
            .args([
                "-machine",
                "pc,accel=tcg",
                "-m",
                "16",
                "-nodefaults",
                "-no-user-config",
            ])
            .args([
                "-display",
                "none",
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=0x04",
            ])
            .arg("-drive")
            .arg(format!("file={},format=raw,if=ide", disk.display()))
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(85), "{out:?}");
    }

    #[tokio::test]
    async fn explicit_kvm_that_cannot_work_fails_with_the_reason() {
        // This machine has /dev/kvm but guests hang; the probe must say so, not hang.
        if !Path::new("/dev/kvm").exists() {
            let e = crate::report::report(&choose("qemu-system-x86_64", "kvm").await.unwrap_err());
            assert!(e.contains("/dev/kvm does not exist"), "{e}");
            return;
        }
        match choose("qemu-system-x86_64", "auto").await {
            Ok(c) if c.accel == "kvm" => {} // a host where KVM works
            Ok(c) => {
                assert_eq!(c.accel, "tcg");
                let why = c.fallback.unwrap();
                assert!(why.contains("KVM") || why.contains("kvm"), "{why}");
                let e =
                    crate::report::report(&choose("qemu-system-x86_64", "kvm").await.unwrap_err());
                assert!(e.contains("cannot work here") && e.contains(&why), "{e}");
            }
            Err(e) => panic!("auto never fails: {e}"),
        }
    }
}
