//! The `file` provisioner: upload files, directories (one tar stream each, modes and symlinks
//! kept) or inline `content` to the guest, or download from it. A source directory ending in
//! `/` copies its contents into `destination`; without the slash, the directory itself is
//! created there (Packer's rule). With `sources`, the destination must end in `/`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::ProvisionContext;
use crate::config::provisioners::FileConfig;

/// Run the file provisioner `c`.
pub async fn run(c: &FileConfig, ctx: &ProvisionContext<'_>) -> Result<(), String> {
    let comm = ctx.comm("file")?;
    let dest = c.destination.clone().ok_or("destination must be set")?;
    if c.direction == "download" {
        let src = c
            .source
            .as_deref()
            .ok_or("download needs source (a path on the guest)")?;
        let local = if dest.ends_with('/') {
            Path::new(&dest).join(remote_base(src))
        } else {
            dest.clone().into()
        };
        ctx.ui
            .say(&format!("Downloading {src} => {}", local.display()));
        let tmp = local.with_extension("kiln-part");
        let mut f = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        let r = comm.download(src, &mut f).await;
        drop(f);
        if let Err(e) = r {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!("downloading {src}: {e}"));
        }
        return std::fs::rename(&tmp, &local)
            .map_err(|e| format!("cannot write {}: {e}", local.display()));
    }
    if c.direction != "upload" {
        return Err(format!(
            "direction {:?} must be upload or download",
            c.direction
        ));
    }
    if let Some(content) = &c.content {
        ctx.ui.say(&format!("Uploading content => {dest}"));
        let mut r: &[u8] = content.as_bytes();
        return comm
            .upload(&mut r, &dest, 0o644)
            .await
            .map_err(|e| format!("uploading content to {dest}: {e}"));
    }
    let sources: Vec<&String> = c.source.iter().chain(&c.sources).collect();
    if sources.is_empty() {
        return Err("set source, sources or content".into());
    }
    if c.sources.len() > 1 && !dest.ends_with('/') {
        return Err(format!(
            "with several sources, destination must end in / (got {dest:?})"
        ));
    }
    for src in sources {
        let path = Path::new(src);
        let meta = std::fs::metadata(path).map_err(|e| format!("source {src}: {e}"))?;
        if meta.is_dir() {
            let target = if src.ends_with('/') {
                dest.clone()
            } else {
                format!("{}/{}", dest.trim_end_matches('/'), base(path))
            };
            ctx.ui
                .say(&format!("Uploading directory {src} => {target}"));
            comm.upload_dir(path, &target)
                .await
                .map_err(|e| format!("uploading {src}: {e}"))?;
        } else {
            let target = if dest.ends_with('/') {
                format!("{dest}{}", base(path))
            } else {
                dest.clone()
            };
            ctx.ui.say(&format!("Uploading {src} => {target}"));
            let mut f = tokio::fs::File::open(path)
                .await
                .map_err(|e| format!("cannot open {src}: {e}"))?;
            comm.upload(&mut f, &target, meta.permissions().mode() & 0o7777)
                .await
                .map_err(|e| format!("uploading {src}: {e}"))?;
        }
    }
    Ok(())
}

fn base(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn remote_base(p: &str) -> &str {
    p.trim_end_matches('/').rsplit('/').next().unwrap_or(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_paths() {
        assert_eq!(base(Path::new("a/b/")), "b");
        assert_eq!(remote_base("/etc/hosts"), "hosts");
        assert_eq!(remote_base("/var/log/"), "log");
    }
}
