//! `upload_dir` for both transfer methods: the local tree is archived on a blocking thread and
//! streamed as one tar into `tar -x` on the guest, so thousands of small files cost one round
//! trip instead of one each (Packer's scp and sftp send a file at a time).

use std::io::{self, Write};
use std::path::Path;

use tokio::sync::mpsc;

use super::session::{Stdin, CHUNK};
use super::SshCommunicator;
use crate::communicator::{shell_quote, CommunicatorError};

/// Copy the contents of `src` into `dst` on the guest (created if missing).
pub(super) async fn upload_dir(
    comm: &SshCommunicator,
    src: &Path,
    dst: &str,
) -> Result<(), CommunicatorError> {
    let meta = tokio::fs::metadata(src)
        .await
        .map_err(|e| CommunicatorError::Local(src.to_path_buf(), e))?;
    if !meta.is_dir() {
        return Err(CommunicatorError::Local(
            src.to_path_buf(),
            io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    let (tx, rx) = mpsc::channel(8);
    let root = src.to_path_buf();
    let producer = tokio::task::spawn_blocking(move || {
        let result = write_tar(&root, ChunkWriter(tx.clone()));
        if let Err(e) = &result {
            let _ = tx.blocking_send(Err(io::Error::new(e.kind(), e.to_string())));
        }
        result
    });
    let q = shell_quote(dst);
    // umask 0 so tar restores the archived modes exactly, even for a non-root user;
    // -o leaves ownership to the login user instead of the host's uids.
    let cmd = format!("mkdir -p {q} && cd {q} && umask 0 && tar -x -o -f -");
    let sent = comm
        .helper(
            format!("upload of {} to {dst}", src.display()),
            &cmd,
            Stdin::Chunks(rx),
        )
        .await;
    let produced = producer.await.map_err(|e| {
        CommunicatorError::Local(src.to_path_buf(), io::Error::other(e.to_string()))
    })?;
    match (produced, sent) {
        // A broken pipe in the producer only means the guest stopped reading: the guest's
        // error says why. Any other producer error is about the local files.
        (Err(e), _) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(CommunicatorError::Local(src.to_path_buf(), e))
        }
        (
            _,
            Err(CommunicatorError::Remote {
                what,
                status,
                stderr,
            }),
        ) if status == crate::communicator::ExitStatus::Code(127) => {
            Err(CommunicatorError::Remote {
                what,
                status,
                stderr: format!(
                    "{stderr}\nhint: directories are sent as one tar stream: the guest needs tar"
                ),
            })
        }
        (_, Err(e)) => Err(e),
        (Err(e), Ok(())) => Err(CommunicatorError::Local(src.to_path_buf(), e)),
        (Ok(()), Ok(())) => Ok(()),
    }
}

/// Archive `root`'s contents (not following symlinks, keeping modes) into `out`. `root`
/// itself is left out so extracting never changes the mode of an existing `dst` like /tmp.
fn write_tar(root: &Path, out: ChunkWriter) -> io::Result<()> {
    let mut builder = tar::Builder::new(io::BufWriter::with_capacity(CHUNK, out));
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    let mut entries = std::fs::read_dir(root)?.collect::<Result<Vec<_>, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if entry.file_type()?.is_dir() {
            builder.append_dir_all(&name, entry.path())?;
        } else {
            builder.append_path_with_name(entry.path(), &name)?;
        }
    }
    builder.into_inner()?.flush()
}

/// A blocking writer that hands chunks to the async side.
struct ChunkWriter(mpsc::Sender<io::Result<Vec<u8>>>);

impl Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Ok(buf.to_vec()))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the guest stopped reading"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
