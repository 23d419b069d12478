//! The `qemu-img` driver: create, convert (compaction, compression, copying a base image; with
//! progress from `-p`) and resize, each logged and mapped to an error that shows what qemu-img
//! said.

use std::path::Path;

use tokio::process::Command;

use crate::ui::progress::Reporter;

/// Why a `qemu-img` command failed.
#[derive(Debug, thiserror::Error)]
pub enum ImgError {
    /// qemu-img could not be started.
    #[error("cannot run qemu-img\nhint: install qemu-utils")]
    Spawn(#[source] std::io::Error),
    /// Waiting for it or reading its output failed.
    #[error("cannot read qemu-img's output")]
    Io(#[source] std::io::Error),
    /// It ran and failed; `stderr` is what it said.
    #[error("qemu-img {command} failed ({status}): {stderr}")]
    Failed {
        /// The sub-command (`convert`).
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its message.
        stderr: String,
    },
    /// `qemu-img info` printed something that is not its JSON.
    #[error("qemu-img info gave unreadable output")]
    Json(#[source] serde_json::Error),
}

/// Run `qemu-img args…`; on failure, the error holds its stderr.
pub async fn run(args: &[String]) -> Result<(), ImgError> {
    run_reporting(args, |_| {}).await
}

/// `qemu-img create -f FORMAT [extra] PATH SIZE_MiB`M.
pub async fn create(
    format: &str,
    extra: &[String],
    path: &Path,
    size: &str,
) -> Result<(), ImgError> {
    let mut a = vec!["create".to_owned(), "-f".into(), format.into()];
    a.extend(extra.iter().cloned());
    a.push(path.display().to_string());
    a.push(size.to_owned());
    run(&a).await
}

/// A qcow2 overlay of `base` (`use_backing_file`), as large as the base image; `extra` are
/// `qemu_img_args.create`, which Packer also applies to the overlay.
pub async fn create_overlay(
    base: &Path,
    base_format: &str,
    extra: &[String],
    path: &Path,
) -> Result<(), ImgError> {
    let mut a = vec![
        "create".to_owned(),
        "-f".into(),
        "qcow2".into(),
        "-b".into(),
        base.display().to_string(),
        "-F".into(),
        base_format.into(),
    ];
    a.extend(extra.iter().cloned());
    a.push(path.display().to_string());
    run(&a).await
}

/// `qemu-img convert -p -O FORMAT [-c] [extra] SRC DST`, reporting qemu-img's percentage as
/// bytes of the source's virtual size.
pub async fn convert(
    src: &Path,
    dst: &Path,
    format: &str,
    compress: bool,
    extra: &[String],
    reporter: &dyn Reporter,
) -> Result<(), ImgError> {
    let mut a = vec![
        "convert".to_owned(),
        "-p".into(),
        "-O".into(),
        format.into(),
    ];
    if compress {
        a.push("-c".into());
    }
    a.extend(extra.iter().cloned());
    a.push(src.display().to_string());
    a.push(dst.display().to_string());
    let total = info(src)
        .await
        .ok()
        .map(|(_, size)| size)
        .filter(|&s| s > 0);
    reporter.start(&format!("Converting {}", src.display()), total, 0);
    let result = run_reporting(&a, |percent| {
        if let Some(t) = total {
            reporter.set((t as f64 * percent / 100.0) as u64);
        }
    })
    .await;
    reporter.finish();
    result
}

/// [`run`], passing each `(12.34/100%)` that `-p` prints on stdout to `progress`.
async fn run_reporting(args: &[String], mut progress: impl FnMut(f64)) -> Result<(), ImgError> {
    use tokio::io::AsyncReadExt;
    tracing::debug!("qemu-img {}", args.join(" "));
    let mut cmd = crate::child::command("qemu-img");
    // Its own process group: a terminal's Ctrl-C goes to kiln, which cancels the build and
    // stops qemu-img itself, instead of qemu-img dying first and the build failing with it.
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = crate::child::spawn(cmd).map_err(ImgError::Spawn)?;
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(ImgError::Io(std::io::Error::other("no pipes")));
    };
    let errors = tokio::spawn(async move {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text).await;
        text
    });
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stdout.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        // Updates end in `\r`; keep a partial one for the next read.
        while let Some(i) = pending.iter().position(|&b| b == b'\r' || b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            if let Some(p) = parse_percent(&String::from_utf8_lossy(&line)) {
                progress(p);
            }
        }
    }
    let status = child.wait().await.map_err(ImgError::Io)?;
    let stderr = errors.await.unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    Err(ImgError::Failed {
        command: args.first().cloned().unwrap_or_default(),
        status,
        stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
    })
}

/// The percentage in one `-p` update: `    (12.34/100%)`.
fn parse_percent(line: &str) -> Option<f64> {
    let inner = line.trim().strip_prefix('(')?.strip_suffix("/100%)")?;
    inner
        .parse()
        .ok()
        .filter(|p: &f64| (0.0..=100.0).contains(p))
}

/// `qemu-img resize [extra] PATH SIZE`M (grow only: qemu-img refuses to shrink without
/// `--shrink`, which kiln never passes).
pub async fn resize(path: &Path, mib: u64, extra: &[String]) -> Result<(), ImgError> {
    let mut a = vec!["resize".to_owned()];
    a.extend(extra.iter().cloned());
    a.push(path.display().to_string());
    a.push(format!("{mib}M"));
    run(&a).await
}

/// `qemu-img rebase -b BASE -F FORMAT PATH` (safe mode: what `path`'s chain holds beyond
/// `base` is copied into `path`).
pub async fn rebase(path: &Path, base: &Path, base_format: &str) -> Result<(), ImgError> {
    run(&[
        "rebase".into(),
        "-b".into(),
        base.display().to_string(),
        "-F".into(),
        base_format.into(),
        path.display().to_string(),
    ])
    .await
}

/// The format and virtual size (bytes) `qemu-img info` reports.
pub async fn info(path: &Path) -> Result<(String, u64), ImgError> {
    let out = Command::new("qemu-img")
        .args(["info", "--output=json", "-U"])
        .arg(path)
        .output()
        .await
        .map_err(ImgError::Spawn)?;
    if !out.status.success() {
        return Err(ImgError::Failed {
            command: format!("info {}", path.display()),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(ImgError::Json)?;
    let format = v["format"].as_str().unwrap_or("raw").to_owned();
    Ok((format, v["virtual-size"].as_u64().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::progress::{Event, Recorder};

    #[test]
    fn parses_progress_updates() {
        assert_eq!(parse_percent("    (12.50/100%)\r"), Some(12.5));
        assert_eq!(parse_percent("(100.00/100%)"), Some(100.0));
        assert_eq!(parse_percent("(0.00/100%)"), Some(0.0));
        assert_eq!(parse_percent("qemu-img: error"), None);
        assert_eq!(parse_percent("(150.00/100%)"), None);
    }

    #[tokio::test]
    async fn convert_reports_qemu_img_progress_as_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.raw");
        std::fs::write(&src, vec![1u8; 8 << 20]).unwrap();
        let dst = dir.path().join("a.qcow2");
        let rec = Recorder::default();
        convert(&src, &dst, "qcow2", false, &[], &rec)
            .await
            .unwrap();
        let events = rec.events();
        assert_eq!(
            events[0],
            Event::Start(format!("Converting {}", src.display()), Some(8 << 20), 0)
        );
        assert_eq!(events.last(), Some(&Event::Finish));
        let sets: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                Event::Set(n) => Some(*n),
                _ => None,
            })
            .collect();
        assert!(sets.len() >= 2, "{events:?}");
        assert!(sets.windows(2).all(|w| w[0] <= w[1]), "{sets:?}");
        assert_eq!(rec.done(), 8 << 20);

        let err = convert(&dir.path().join("absent"), &dst, "qcow2", false, &[], &rec)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("qemu-img convert failed"), "{err}");
    }
}
