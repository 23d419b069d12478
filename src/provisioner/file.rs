//! The `file` provisioner, with Packer's path rules.
//!
//! Upload: a source file goes to `destination`, or into it (keeping its name) when the
//! destination ends in `/`; a source directory goes as one tar stream (modes and symlinks
//! kept): `dir/` copies its contents into `destination`, `dir` creates `destination/dir`.
//! `content` is written to `destination` (or `destination/pkr-file-content` for a directory).
//! Download: the guest path `source` goes to the local `destination` (its parent created),
//! or into it when it ends in `/`; a source ending in `/` or holding a glob is a directory,
//! fetched as one tar stream. Local files are written under a temporary name and renamed.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::ProvisionContext;
use crate::communicator::{shell_quote, Communicator, ExitStatus, Output};
use crate::config::provisioners::FileConfig;

/// Run the file provisioner `c`.
pub async fn run(c: &FileConfig, ctx: &ProvisionContext<'_>) -> Result<(), String> {
    let comm = ctx.comm("file")?;
    let dest = c.destination.clone().ok_or("destination must be set")?;
    let sources: Vec<&String> = c.source.iter().chain(&c.sources).collect();
    match c.direction.as_str() {
        "download" => {
            if sources.is_empty() {
                return Err("download needs source (a path on the guest)".into());
            }
            for src in sources {
                download(comm.as_ref(), ctx, src, &dest).await?;
            }
            Ok(())
        }
        "upload" => {
            if let Some(content) = &c.content {
                let target = if dest.ends_with('/') {
                    format!("{dest}pkr-file-content")
                } else {
                    dest.clone()
                };
                ctx.ui.say(&format!("Uploading content => {target}"));
                let mut r: &[u8] = content.as_bytes();
                return comm
                    .upload(&mut r, &target, 0o644)
                    .await
                    .map_err(|e| format!("uploading content to {target}: {}", chain(&e)));
            }
            if sources.is_empty() {
                return Err("set source, sources or content".into());
            }
            if sources.len() > 1 && !dest.ends_with('/') {
                return Err(format!(
                    "with several sources, destination must end in / (got {dest:?})"
                ));
            }
            for src in sources {
                upload(comm.as_ref(), ctx, src, &dest).await?;
            }
            Ok(())
        }
        other => Err(format!("direction {other:?} must be upload or download")),
    }
}

async fn upload(
    comm: &dyn Communicator,
    ctx: &ProvisionContext<'_>,
    src: &str,
    dest: &str,
) -> Result<(), String> {
    let path = Path::new(src);
    let meta = std::fs::metadata(path).map_err(|e| format!("source {src}: {e}"))?;
    if meta.is_dir() {
        let target = if src.ends_with('/') {
            dest.to_owned()
        } else {
            format!("{}/{}", dest.trim_end_matches('/'), base(path))
        };
        ctx.ui
            .say(&format!("Uploading directory {src} => {target}"));
        return comm
            .upload_dir(path, &target)
            .await
            .map_err(|e| format!("uploading {src}: {}", chain(&e)));
    }
    let target = if dest.ends_with('/') {
        format!("{dest}{}", base(path))
    } else {
        dest.to_owned()
    };
    ctx.ui.say(&format!("Uploading {src} => {target}"));
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("cannot open {src}: {e}"))?;
    comm.upload(&mut f, &target, meta.permissions().mode() & 0o7777)
        .await
        .map_err(|e| {
            let hint = if dest.ends_with('/') {
                ""
            } else {
                " (if the destination is a directory, end it with /)"
            };
            format!("uploading {src} to {target}: {}{hint}", chain(&e))
        })
}

async fn download(
    comm: &dyn Communicator,
    ctx: &ProvisionContext<'_>,
    src: &str,
    dest: &str,
) -> Result<(), String> {
    let is_dir = src.ends_with('/') || src.contains(['*', '?', '[']);
    let local: PathBuf = if dest.ends_with('/') && !is_dir {
        Path::new(dest).join(remote_base(src))
    } else {
        dest.into()
    };
    ctx.ui
        .say(&format!("Downloading {src} => {}", local.display()));
    if is_dir {
        return download_dir(comm, src, &local).await;
    }
    if let Some(parent) = local.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let tmp = part_name(&local);
    let mut f = tokio::fs::File::create(&tmp)
        .await
        .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let r = comm.download(src, &mut f).await;
    drop(f);
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("downloading {src}: {}", chain(&e)));
    }
    std::fs::rename(&tmp, &local).map_err(|e| format!("cannot write {}: {e}", local.display()))
}

/// A guest directory (`dir/`: its contents) or glob (the matches) into the local directory
/// `local`, as one tar stream: `tar -c` on the guest, unpacked here as it arrives.
async fn download_dir(comm: &dyn Communicator, src: &str, local: &Path) -> Result<(), String> {
    let cmd = if src.ends_with('/') {
        format!("cd {} && tar -c -f - .", shell_quote(src))
    } else {
        // A glob: let the guest's shell expand it, relative to the pattern's directory.
        let (dir, pattern) = src.rsplit_once('/').unwrap_or((".", src));
        let dir = if dir.is_empty() { "/" } else { dir };
        format!("cd {} && tar -c -f - {pattern}", shell_quote(dir))
    };
    std::fs::create_dir_all(local)
        .map_err(|e| format!("cannot create {}: {e}", local.display()))?;
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let target = local.to_path_buf();
    let unpack = tokio::task::spawn_blocking(move || {
        let mut archive = tar::Archive::new(ChannelReader {
            rx,
            buf: Vec::new(),
            pos: 0,
        });
        archive.set_preserve_permissions(true);
        archive.set_overwrite(true);
        archive.unpack(&target)
    });
    let mut sink = TarSink {
        tx: Some(tx),
        stderr: Vec::new(),
    };
    let status = comm.exec(&cmd, &mut sink).await;
    sink.tx = None;
    let unpacked = unpack.await.map_err(|e| format!("unpacking {src}: {e}"))?;
    match status {
        Ok(ExitStatus::Code(0)) => {
            unpacked.map_err(|e| format!("unpacking {src} into {}: {e}", local.display()))
        }
        Ok(other) => Err(format!(
            "downloading {src}: tar on the guest ended with {other}: {}",
            String::from_utf8_lossy(&sink.stderr).trim()
        )),
        Err(e) => Err(format!("downloading {src}: {}", chain(&e))),
    }
}

/// Remote tar output handed to the unpacking thread.
struct TarSink {
    tx: Option<std::sync::mpsc::Sender<Vec<u8>>>,
    stderr: Vec<u8>,
}

impl Output for TarSink {
    fn stdout(&mut self, data: &[u8]) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(data.to_vec());
        }
    }
    fn stderr(&mut self, data: &[u8]) {
        self.stderr.extend_from_slice(data);
    }
}

/// A blocking reader over chunks from a channel; end of stream when the sender is gone.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.buf = chunk;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    crate::pipeline::step::chain(e)
}

/// `out/file` → `out/.file.kiln-part`: the name a download is written under until complete.
fn part_name(p: &Path) -> PathBuf {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    p.with_file_name(format!(".{name}.kiln-part"))
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
        assert_eq!(
            part_name(Path::new("out/hosts")),
            Path::new("out/.hosts.kiln-part")
        );
    }

    #[test]
    fn channel_reader_reassembles_chunks() {
        let (tx, rx) = std::sync::mpsc::channel();
        tx.send(b"ab".to_vec()).unwrap();
        tx.send(Vec::new()).unwrap();
        tx.send(b"cde".to_vec()).unwrap();
        drop(tx);
        let mut r = ChannelReader {
            rx,
            buf: Vec::new(),
            pos: 0,
        };
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "abcde");
    }
}
