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

use super::{ProvisionContext, ProvisionError};
use crate::communicator::{shell_quote, Communicator, CommunicatorError, ExitStatus, Output};
use crate::config::provisioners::FileConfig;

/// Why the `file` provisioner failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// No `destination`.
    #[error("destination must be set")]
    NoDestination,
    /// A download without `source`.
    #[error("download needs source (a path on the guest)")]
    NoDownloadSource,
    /// An upload without `source`, `sources` or `content`.
    #[error("set source, sources or content")]
    NoSource,
    /// Several sources into something that is not a directory.
    #[error("with several sources, destination must end in / (got {0:?})")]
    SeveralSources(String),
    /// `direction` is neither `upload` nor `download`.
    #[error("direction {0:?} must be upload or download")]
    Direction(String),
    /// A local file operation failed (`what` names it and the path).
    #[error("{what}")]
    Local {
        /// `cannot create /x`.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A transfer with the guest failed (`what` names it).
    #[error("{what}")]
    Transfer {
        /// `uploading a to /b`.
        what: String,
        /// Why.
        #[source]
        source: Box<CommunicatorError>,
    },
    /// `tar` on the guest failed while a directory was downloaded.
    #[error("downloading {src}: tar on the guest ended with {status}: {stderr}")]
    Tar {
        /// The guest path.
        src: String,
        /// How tar ended.
        status: ExitStatus,
        /// What tar printed.
        stderr: String,
    },
    /// The unpacking thread died.
    #[error("unpacking {src}")]
    Unpacker {
        /// The guest path.
        src: String,
        /// Why.
        #[source]
        source: tokio::task::JoinError,
    },
}

fn local(what: String) -> impl FnOnce(std::io::Error) -> FileError {
    move |source| FileError::Local { what, source }
}

fn transfer(what: String) -> impl FnOnce(CommunicatorError) -> FileError {
    move |source| FileError::Transfer {
        what,
        source: Box::new(source),
    }
}

/// Run the file provisioner `c`.
pub async fn run(c: &FileConfig, ctx: &ProvisionContext<'_>) -> Result<(), ProvisionError> {
    let comm = ctx.comm("file")?;
    let dest = c.destination.clone().ok_or(FileError::NoDestination)?;
    let sources: Vec<&String> = c.source.iter().chain(&c.sources).collect();
    match c.direction.as_str() {
        "download" => {
            if sources.is_empty() {
                return Err(FileError::NoDownloadSource.into());
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
                return Ok(comm
                    .upload(&mut r, &target, 0o644)
                    .await
                    .map_err(transfer(format!("uploading content to {target}")))?);
            }
            if sources.is_empty() {
                return Err(FileError::NoSource.into());
            }
            if sources.len() > 1 && !dest.ends_with('/') {
                return Err(FileError::SeveralSources(dest).into());
            }
            for src in sources {
                upload(comm.as_ref(), ctx, src, &dest).await?;
            }
            Ok(())
        }
        other => Err(FileError::Direction(other.to_owned()).into()),
    }
}

async fn upload(
    comm: &dyn Communicator,
    ctx: &ProvisionContext<'_>,
    src: &str,
    dest: &str,
) -> Result<(), FileError> {
    let path = Path::new(src);
    let meta = std::fs::metadata(path).map_err(local(format!("source {src}")))?;
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
            .map_err(transfer(format!("uploading {src}")));
    }
    let target = if dest.ends_with('/') {
        format!("{dest}{}", base(path))
    } else {
        dest.to_owned()
    };
    ctx.ui.say(&format!("Uploading {src} => {target}"));
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(local(format!("cannot open {src}")))?;
    let hint = if dest.ends_with('/') {
        ""
    } else {
        " (if the destination is a directory, end it with /)"
    };
    comm.upload(&mut f, &target, meta.permissions().mode() & 0o7777)
        .await
        .map_err(transfer(format!("uploading {src} to {target}{hint}")))
}

async fn download(
    comm: &dyn Communicator,
    ctx: &ProvisionContext<'_>,
    src: &str,
    dest: &str,
) -> Result<(), FileError> {
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
            .map_err(self::local(format!("cannot create {}", parent.display())))?;
    }
    let tmp = part_name(&local);
    let mut f = tokio::fs::File::create(&tmp)
        .await
        .map_err(self::local(format!("cannot create {}", tmp.display())))?;
    let r = comm.download(src, &mut f).await;
    drop(f);
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        return Err(transfer(format!("downloading {src}"))(e));
    }
    std::fs::rename(&tmp, &local).map_err(self::local(format!("cannot write {}", local.display())))
}

/// A guest directory (`dir/`: its contents) or glob (the matches) into the local directory
/// `local`, as one tar stream: `tar -c` on the guest, unpacked here as it arrives.
async fn download_dir(comm: &dyn Communicator, src: &str, local: &Path) -> Result<(), FileError> {
    let cmd = if src.ends_with('/') {
        format!("cd {} && tar -c -f - .", shell_quote(src))
    } else {
        // A glob: let the guest's shell expand it, relative to the pattern's directory.
        let (dir, pattern) = src.rsplit_once('/').unwrap_or((".", src));
        let dir = if dir.is_empty() { "/" } else { dir };
        format!("cd {} && tar -c -f - {pattern}", shell_quote(dir))
    };
    std::fs::create_dir_all(local)
        .map_err(self::local(format!("cannot create {}", local.display())))?;
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
    let unpacked = unpack.await.map_err(|source| FileError::Unpacker {
        src: src.to_owned(),
        source,
    })?;
    match status {
        Ok(ExitStatus::Code(0)) => unpacked.map_err(self::local(format!(
            "unpacking {src} into {}",
            local.display()
        ))),
        Ok(status) => Err(FileError::Tar {
            src: src.to_owned(),
            status,
            stderr: String::from_utf8_lossy(&sink.stderr).trim().to_owned(),
        }),
        Err(e) => Err(transfer(format!("downloading {src}"))(e)),
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
