//! `ssh_file_transfer_method = "scp"` (Packer's default): one file at a time with the scp
//! protocol spoken to the guest's own `scp`, sink mode (`scp -p -t DIR`) for uploads and source
//! mode (`scp -f FILE`) for downloads. The protocol is length-prefixed, so an upload whose size
//! is unknown is spooled first (in memory, or a temporary file beyond a few MiB).

use std::io::{self, SeekFrom};

use russh::client::Msg;
use russh::ChannelWriteHalf;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};

use super::session::{Incoming, CHUNK};
use super::SshCommunicator;
use crate::communicator::{shell_quote, CommunicatorError, ExitStatus};

/// Uploads up to this size are spooled in memory.
const MEMORY_SPOOL: usize = 8 * 1024 * 1024;

/// An upload's data with its length known.
enum Spooled {
    Memory(Vec<u8>),
    File(tokio::fs::File, u64),
}

async fn spool(src: &mut (dyn AsyncRead + Send + Unpin)) -> io::Result<Spooled> {
    let mut mem = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = src.read(&mut buf).await?;
        if n == 0 {
            return Ok(Spooled::Memory(mem));
        }
        mem.extend_from_slice(&buf[..n]);
        if mem.len() > MEMORY_SPOOL {
            break;
        }
    }
    let mut file = tokio::fs::File::from_std(tempfile::tempfile()?);
    file.write_all(&mem).await?;
    let size = mem.len() as u64 + tokio::io::copy(src, &mut file).await?;
    file.seek(SeekFrom::Start(0)).await?;
    Ok(Spooled::File(file, size))
}

/// What went wrong in an scp exchange, before it is turned into a [`CommunicatorError`].
enum Failure {
    /// The guest's scp answered with an error message.
    Refused(String),
    /// Its output ended early (it exited, or is missing).
    Ended,
    /// A local read or write failed.
    Local(io::Error),
    /// The connection failed.
    Ssh(CommunicatorError),
}

/// Read scp's one-byte answer: 0 is fine, 1 and 2 come with a message line.
async fn ack(incoming: &mut Incoming) -> Result<(), Failure> {
    match incoming.byte().await {
        Some(0) => Ok(()),
        Some(1 | 2) => Err(Failure::Refused(
            String::from_utf8_lossy(&incoming.line().await)
                .trim()
                .to_owned(),
        )),
        Some(other) => {
            let rest = incoming.line().await;
            Err(Failure::Refused(format!(
                "unexpected answer from scp: {}",
                String::from_utf8_lossy(&[&[other][..], &rest].concat()).trim()
            )))
        }
        None => Err(Failure::Ended),
    }
}

/// Write to scp's stdin.
async fn send(
    comm: &SshCommunicator,
    tx: &ChannelWriteHalf<Msg>,
    bytes: Vec<u8>,
) -> Result<(), Failure> {
    tx.data_bytes(bytes)
        .await
        .map_err(|e| Failure::Ssh(comm.ssh_err("talking to scp")(e)))
}

/// Turn a failed exchange into an error naming the transfer; the exit status and stderr say
/// the rest (127: no scp on the guest).
fn error(what: String, failure: Failure, status: ExitStatus, stderr: &[u8]) -> CommunicatorError {
    let stderr = String::from_utf8_lossy(stderr).trim().to_owned();
    match failure {
        Failure::Ssh(e) => e,
        Failure::Local(e) => CommunicatorError::Stream(what, e),
        _ if status == ExitStatus::Code(127) => CommunicatorError::Remote {
            what,
            status,
            stderr: format!(
                "{stderr}\nhint: scp is not installed on the guest: install it (Packer needs it too) or set ssh_file_transfer_method = \"sftp\""
            ),
        },
        Failure::Refused(message) => CommunicatorError::Remote {
            what,
            status,
            stderr: if stderr.is_empty() || stderr.contains(&message) {
                message
            } else {
                format!("{message}\n{stderr}")
            },
        },
        Failure::Ended => CommunicatorError::Remote {
            what,
            status,
            stderr,
        },
    }
}

/// Upload `src` to the file `dst` with `mode` through `scp -p -t` (so the mode is exact).
pub(super) async fn upload(
    comm: &SshCommunicator,
    src: &mut (dyn AsyncRead + Send + Unpin),
    dst: &str,
    mode: u32,
) -> Result<(), CommunicatorError> {
    let what = format!("upload to {dst}");
    let (dir, name) = match dst.rsplit_once('/') {
        Some(("", name)) => ("/", name),
        Some((dir, name)) => (dir, name),
        None => (".", dst),
    };
    if name.is_empty() || name.contains('\n') {
        return Err(CommunicatorError::Remote {
            what,
            status: ExitStatus::Code(1),
            stderr:
                "the destination must be a file name (not a directory or a name with a newline)"
                    .into(),
        });
    }
    // The channel first: if the connection is gone, nothing has been read from `src` yet and
    // the upload can be retried on a new connection.
    let channel = comm
        .start(&format!("scp -p -t {}", shell_quote(dir)), false)
        .await?;
    let (rx, tx) = channel.split();
    let mut incoming = Incoming::new(rx);
    let sent = async {
        let mut data = spool(src).await.map_err(Failure::Local)?;
        let size = match &data {
            Spooled::Memory(m) => m.len() as u64,
            Spooled::File(_, n) => *n,
        };
        ack(&mut incoming).await?;
        let header = format!("C{:04o} {size} {name}\n", mode & 0o7777);
        let send = |bytes: Vec<u8>| send(comm, &tx, bytes);
        send(header.into_bytes()).await?;
        ack(&mut incoming).await?;
        match &mut data {
            Spooled::Memory(m) => {
                for chunk in m.chunks(CHUNK) {
                    send(chunk.to_vec()).await?;
                }
            }
            Spooled::File(f, _) => {
                let mut buf = vec![0u8; CHUNK];
                loop {
                    let n = f.read(&mut buf).await.map_err(Failure::Local)?;
                    if n == 0 {
                        break;
                    }
                    send(buf[..n].to_vec()).await?;
                }
            }
        }
        send(vec![0]).await?;
        ack(&mut incoming).await
    }
    .await;
    let _ = tx.eof().await;
    let (status, stderr) = incoming.finish().await;
    match sent {
        Ok(()) if status.success() => Ok(()),
        Ok(()) => Err(error(what, Failure::Ended, status, &stderr)),
        Err(f) => Err(error(what, f, status, &stderr)),
    }
}

/// Download the file `src` into `dst` through `scp -f`.
pub(super) async fn download(
    comm: &SshCommunicator,
    src: &str,
    dst: &mut (dyn AsyncWrite + Send + Unpin),
) -> Result<(), CommunicatorError> {
    let what = format!("download of {src}");
    let channel = comm
        .start(&format!("scp -f {}", shell_quote(src)), false)
        .await?;
    let (rx, tx) = channel.split();
    let mut incoming = Incoming::new(rx);
    let go = || send(comm, &tx, vec![0]);
    let received = async {
        go().await?;
        let header = incoming.line().await;
        let size = match header.first() {
            Some(b'C') => parse_header(&header).ok_or_else(|| {
                Failure::Refused(format!(
                    "unexpected answer from scp: {}",
                    String::from_utf8_lossy(&header)
                ))
            })?,
            Some(b'D') => return Err(Failure::Refused(format!("{src} is a directory"))),
            Some(1 | 2) => {
                return Err(Failure::Refused(
                    String::from_utf8_lossy(&header[1..]).trim().to_owned(),
                ))
            }
            Some(_) => {
                return Err(Failure::Refused(format!(
                    "unexpected answer from scp: {}",
                    String::from_utf8_lossy(&header)
                )))
            }
            None => return Err(Failure::Ended),
        };
        go().await?;
        if !incoming.copy_to(size, dst).await.map_err(Failure::Local)? {
            return Err(Failure::Ended);
        }
        ack(&mut incoming).await?;
        go().await?;
        dst.flush().await.map_err(Failure::Local)
    }
    .await;
    let _ = tx.eof().await;
    let (status, stderr) = incoming.finish().await;
    match received {
        // scp -f exits 0 once the file is acknowledged; a missing status is a lost connection.
        Ok(()) if status.success() => Ok(()),
        Ok(()) => Err(error(what, Failure::Ended, status, &stderr)),
        Err(f) => Err(error(what, f, status, &stderr)),
    }
}

/// The size in `C0644 1234 name`.
fn parse_header(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line.get(1..)?).ok()?;
    let mut fields = text.splitn(3, ' ');
    let mode = fields.next()?;
    u32::from_str_radix(mode, 8).ok()?;
    fields.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_headers_give_the_size() {
        assert_eq!(parse_header(b"C0644 1234 a file.txt"), Some(1234));
        assert_eq!(parse_header(b"C0755 0 x"), Some(0));
        assert_eq!(parse_header(b"C06z4 12 x"), None);
        assert_eq!(parse_header(b"C0644 -1 x"), None);
        assert_eq!(parse_header(b"C"), None);
    }

    #[tokio::test]
    async fn large_uploads_are_spooled_to_a_file() {
        let small = vec![7u8; 1000];
        assert!(
            matches!(spool(&mut small.as_slice()).await.unwrap(), Spooled::Memory(m) if m == small)
        );
        let big = vec![9u8; MEMORY_SPOOL + CHUNK * 3 + 5];
        match spool(&mut big.as_slice()).await.unwrap() {
            Spooled::File(mut f, n) => {
                assert_eq!(n, big.len() as u64);
                let mut back = Vec::new();
                f.read_to_end(&mut back).await.unwrap();
                assert_eq!(back, big);
            }
            Spooled::Memory(_) => panic!("expected a spool file"),
        }
    }
}
