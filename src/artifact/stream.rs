//! What every long write of kiln's own artifacts (archives, boxes, OVAs, VMDKs, checksum files)
//! shares: inputs read through [`Input`], which stops at the next chunk once the build is
//! cancelled and marks its read errors with the input's path, so that [`WriteError::from_io`] can
//! tell a failed read of an input from a failed write of the output (a full disk is reported
//! against the file being written, with the OS's reason, never against the disk being read); and
//! [`ensure_space`], which refuses a write whose size is known before it fills the filesystem.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

/// Why a long write stopped.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// An input could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The output could not be written (`source` is the OS's reason, e.g. no space left).
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The output's filesystem has less free space than the write needs.
    #[error(
        "not enough free space to write {}: it needs {}, but {} is free",
        path.display(),
        size(*needed),
        size(*free)
    )]
    NoSpace {
        path: PathBuf,
        needed: u64,
        free: u64,
    },
    /// The build was cancelled while writing; the partial output is removed.
    #[error("cancelled")]
    Cancelled,
}

impl WriteError {
    /// The error an I/O failure while writing `output` stands for: what [`Input`] marked (a read
    /// error or a cancellation) as it was, anything else as a failed write of `output`.
    pub fn from_io(e: io::Error, output: &Path) -> Self {
        unmark(e).unwrap_or_else(|source| WriteError::Write {
            path: output.to_path_buf(),
            source,
        })
    }

    /// Like [`WriteError::from_io`], for a failure while reading `input` (a reader that wraps an
    /// [`Input`], such as a tar archive's entries): unmarked errors are failed reads of `input`.
    pub fn from_read(e: io::Error, input: &Path) -> Self {
        unmark(e).unwrap_or_else(|source| WriteError::Read {
            path: input.to_path_buf(),
            source,
        })
    }

    /// An io::Error carrying `self`, to travel through writers that only return io::Error
    /// (tar, the compressors) until [`WriteError::from_io`] takes it out again.
    fn into_io(self) -> io::Error {
        let kind = match &self {
            WriteError::Read { source, .. } | WriteError::Write { source, .. } => source.kind(),
            WriteError::NoSpace { .. } => io::ErrorKind::StorageFull,
            WriteError::Cancelled => io::ErrorKind::Other,
        };
        io::Error::new(kind, self)
    }
}

/// The [`WriteError`] that `e` carries, or `e` when it carries none.
fn unmark(mut e: io::Error) -> Result<WriteError, io::Error> {
    match e.get_mut().and_then(|i| i.downcast_mut::<WriteError>()) {
        Some(marked) => Ok(std::mem::replace(marked, WriteError::Cancelled)),
        None => Err(e),
    }
}

/// An input file of a long write: every read first checks the build's cancellation (so the write
/// stops within one chunk of Ctrl-C), and read errors carry the input's path.
pub struct Input<'a, R> {
    inner: R,
    path: &'a Path,
    cancel: &'a CancellationToken,
}

impl<'a> Input<'a, File> {
    /// Opens `path` for reading; a failure is marked as that input's.
    pub fn open(path: &'a Path, cancel: &'a CancellationToken) -> io::Result<Self> {
        let inner = File::open(path).map_err(|source| {
            WriteError::Read {
                path: path.to_path_buf(),
                source,
            }
            .into_io()
        })?;
        Ok(Input {
            inner,
            path,
            cancel,
        })
    }

    /// The open file (for its metadata).
    pub fn file(&self) -> &File {
        &self.inner
    }
}

impl<R: Read> Read for Input<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        check(self.cancel)?;
        self.inner.read(buf).map_err(|source| {
            WriteError::Read {
                path: self.path.to_path_buf(),
                source,
            }
            .into_io()
        })
    }
}

/// Fails with a marked cancellation once `cancel` is cancelled; for loops that do not read
/// through an [`Input`] (the VMDK writer walks qcow2 clusters itself).
pub fn check(cancel: &CancellationToken) -> io::Result<()> {
    if cancel.is_cancelled() {
        Err(WriteError::Cancelled.into_io())
    } else {
        Ok(())
    }
}

/// Refuses to start writing `needed` bytes at `output` when its filesystem has less free space
/// (what an unprivileged user may use). The filesystem is that of the nearest directory above
/// `output` that exists (its own directory may be created by the write). When the free space
/// cannot be read, the write goes ahead and a full disk is reported as it happens.
pub fn ensure_space(output: &Path, needed: u64) -> Result<(), WriteError> {
    let dir = output.parent().unwrap_or(Path::new("."));
    // A relative path's last ancestor is "", the working directory.
    let Some(stat) = dir
        .ancestors()
        .map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        })
        .find_map(|d| rustix::fs::statvfs(d).ok())
    else {
        return Ok(());
    };
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    if needed > free {
        return Err(WriteError::NoSpace {
            path: output.to_path_buf(),
            needed,
            free,
        });
    }
    Ok(())
}

/// `12.3 MiB`, `4.0 GiB`: sizes as a person reads them.
fn size(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let mib = bytes as f64 / MIB;
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB")
    }
}

/// Test helpers: a small full-able filesystem, and incompressible data to fill it with.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// A 4 MiB tmpfs mounted on a temporary directory for one test, unmounted when dropped
    /// (also when the test fails).
    pub struct Tmpfs {
        dir: tempfile::TempDir,
    }

    impl Tmpfs {
        /// Mounts it, or `None` (said on stderr) when this machine does not let the test mount;
        /// under CI (`CI` set) that fails the test instead, so the check cannot quietly vanish.
        pub fn mount() -> Option<Tmpfs> {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let out = Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
                .arg(dir.path())
                .output();
            match out {
                Ok(o) if o.status.success() => Some(Tmpfs { dir }),
                other => {
                    let why = match other {
                        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                        Err(e) => e.to_string(),
                    };
                    assert!(
                        std::env::var_os("CI").is_none(),
                        "cannot mount a tmpfs for the disk-full test: {why}"
                    );
                    eprintln!("SKIPPED: cannot mount a tmpfs for the disk-full test: {why}");
                    None
                }
            }
        }

        pub fn path(&self) -> &Path {
            self.dir.path()
        }

        /// The names left in it.
        pub fn listing(&self) -> Vec<PathBuf> {
            let mut names: Vec<PathBuf> = std::fs::read_dir(self.path())
                .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
                .unwrap_or_default();
            names.sort();
            names
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.dir.path()).status();
        }
    }

    /// Cancels `cancel` once `path` exists (the write under test has started), from its own
    /// thread; gives up after a minute.
    pub fn cancel_once_exists(
        path: PathBuf,
        cancel: tokio_util::sync::CancellationToken,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            for _ in 0..60_000 {
                if path.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            cancel.cancel();
        })
    }

    /// `len` bytes no compressor can shrink (xorshift output), so the compressed output is as
    /// large as the input.
    pub fn noise(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_errors_come_back_as_they_were_and_others_name_the_output() {
        let cancel = CancellationToken::new();
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.img");
        let err = Input::open(&missing, &cancel).err().unwrap();
        match WriteError::from_io(err, Path::new("out.box")) {
            WriteError::Read { path, .. } => assert_eq!(path, missing),
            other => panic!("{other:?}"),
        }
        let plain = io::Error::from_raw_os_error(28);
        let err = WriteError::from_io(plain, Path::new("out.box"));
        assert_eq!(
            crate::report::report(&err),
            "cannot write out.box: No space left on device (os error 28)"
        );
    }

    #[test]
    fn reads_stop_once_cancelled() {
        let cancel = CancellationToken::new();
        let mut input = Input {
            inner: &b"data"[..],
            path: Path::new("in"),
            cancel: &cancel,
        };
        let mut buf = [0u8; 2];
        assert_eq!(input.read(&mut buf).unwrap(), 2);
        cancel.cancel();
        let err = input.read(&mut buf).unwrap_err();
        assert!(matches!(
            WriteError::from_io(err, Path::new("out")),
            WriteError::Cancelled
        ));
    }

    #[test]
    fn a_write_larger_than_the_free_space_is_refused_with_both_sizes() {
        let dir = tempfile::tempdir().unwrap();
        // Its directory does not exist yet: the free space is that of the directory above.
        let out = dir.path().join("new/x.tar");
        ensure_space(&out, 1).unwrap();
        let err = ensure_space(&out, u64::MAX).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "not enough free space to write {}: it needs 17179869184.0 GiB, but ",
                out.display()
            )),
            "{err}"
        );
    }
}
