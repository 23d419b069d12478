//! The `qemu-img` driver: create, convert (compaction, compression, copying a base image) and
//! resize, each logged and mapped to an error that shows what qemu-img said.

use std::path::Path;

use tokio::process::Command;

/// Run `qemu-img args…`; on failure, the error holds its stderr.
pub async fn run(args: &[String]) -> Result<(), String> {
    tracing::debug!("qemu-img {}", args.join(" "));
    let out = Command::new("qemu-img")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run qemu-img: {e}\nhint: install qemu-utils"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "qemu-img {} failed ({}): {}",
        args.first().map(String::as_str).unwrap_or(""),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// `qemu-img create -f FORMAT [extra] PATH SIZE_MiB`M.
pub async fn create(format: &str, extra: &[String], path: &Path, mib: u64) -> Result<(), String> {
    let mut a = vec!["create".to_owned(), "-f".into(), format.into()];
    a.extend(extra.iter().cloned());
    a.push(path.display().to_string());
    a.push(format!("{mib}M"));
    run(&a).await
}

/// A qcow2 overlay of `base` (`use_backing_file`), as large as the base image; `extra` are
/// `qemu_img_args.create`, which Packer also applies to the overlay.
pub async fn create_overlay(
    base: &Path,
    base_format: &str,
    extra: &[String],
    path: &Path,
) -> Result<(), String> {
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

/// `qemu-img convert -O FORMAT [-c] [extra] SRC DST`.
pub async fn convert(
    src: &Path,
    dst: &Path,
    format: &str,
    compress: bool,
    extra: &[String],
) -> Result<(), String> {
    let mut a = vec!["convert".to_owned(), "-O".into(), format.into()];
    if compress {
        a.push("-c".into());
    }
    a.extend(extra.iter().cloned());
    a.push(src.display().to_string());
    a.push(dst.display().to_string());
    run(&a).await
}

/// `qemu-img resize [extra] PATH SIZE`M (grow only: qemu-img refuses to shrink without
/// `--shrink`, which kiln never passes).
pub async fn resize(path: &Path, mib: u64, extra: &[String]) -> Result<(), String> {
    let mut a = vec!["resize".to_owned()];
    a.extend(extra.iter().cloned());
    a.push(path.display().to_string());
    a.push(format!("{mib}M"));
    run(&a).await
}

/// The format and virtual size (bytes) `qemu-img info` reports.
pub async fn info(path: &Path) -> Result<(String, u64), String> {
    let out = Command::new("qemu-img")
        .args(["info", "--output=json", "-U"])
        .arg(path)
        .output()
        .await
        .map_err(|e| format!("cannot run qemu-img: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "qemu-img info {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("qemu-img info gave unreadable output: {e}"))?;
    let format = v["format"].as_str().unwrap_or("raw").to_owned();
    Ok((format, v["virtual-size"].as_u64().unwrap_or(0)))
}
