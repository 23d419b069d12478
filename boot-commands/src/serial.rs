//! [`SerialWatch`]: waits for text on the guest's serial console, for kiln's `<waitFor "text">`.
//! Contract: QEMU writes the console to a file (`-serial file:PATH`); the watcher polls that file
//! from a byte offset, and each match moves the offset past the matched text, so one output line
//! satisfies one `<waitFor>` only.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::sync::CancellationToken;

/// How often the file is polled. Serial output is slow (115200 baud is ~11 KB/s), so this bounds
/// the added latency without measurable cost.
const POLL: Duration = Duration::from_millis(50);

/// A `<waitFor>` that did not complete.
#[derive(Debug, thiserror::Error)]
pub enum SerialError {
    /// The text did not appear in time.
    #[error("{text:?} did not appear on the serial console ({path}) within {timeout:?}; check the boot_command and the guest's console output in that file")]
    Timeout {
        /// The awaited text.
        text: String,
        /// The timeout.
        timeout: Duration,
        /// The console file.
        path: String,
    },
    /// Reading the console file failed.
    #[error("cannot read the serial console file {path}")]
    Io {
        /// The console file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The build was cancelled while waiting.
    #[error("cancelled while waiting for text on the serial console")]
    Cancelled,
}

/// Follows a serial console file from an offset.
#[derive(Debug, Clone)]
pub struct SerialWatch {
    path: PathBuf,
    offset: u64,
}

impl SerialWatch {
    /// Watches `path`; only output from byte `offset` on counts. The file need not exist yet.
    pub fn new(path: impl Into<PathBuf>, offset: u64) -> Self {
        SerialWatch {
            path: path.into(),
            offset,
        }
    }

    /// The console file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The offset from which output still counts.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Waits until `text` appears after the offset, then moves the offset just past it.
    pub async fn wait_for(
        &mut self,
        text: &str,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<(), SerialError> {
        let needle = text.as_bytes();
        if needle.is_empty() {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        // `window` holds the bytes from `window_start` on that could still begin a match.
        let mut window: Vec<u8> = Vec::new();
        let mut window_start = self.offset;
        loop {
            self.read_new(window_start + window.len() as u64, &mut window)
                .await?;
            if let Some(at) = find(&window, needle) {
                self.offset = window_start + (at + needle.len()) as u64;
                return Ok(());
            }
            let keep = needle.len().saturating_sub(1).min(window.len());
            let drop = window.len() - keep;
            window.drain(..drop);
            window_start += drop as u64;
            tokio::select! {
                () = cancel.cancelled() => return Err(SerialError::Cancelled),
                () = tokio::time::sleep_until(deadline) => {
                    return Err(SerialError::Timeout {
                        text: text.to_string(),
                        timeout,
                        path: self.path.display().to_string(),
                    })
                }
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    async fn read_new(&self, from: u64, into: &mut Vec<u8>) -> Result<(), SerialError> {
        let io = |source| SerialError::Io {
            path: self.path.display().to_string(),
            source,
        };
        let mut file = match tokio::fs::File::open(&self.path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(e)),
        };
        file.seek(SeekFrom::Start(from)).await.map_err(io)?;
        file.read_to_end(into).await.map_err(io)?;
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn waits_for_text_written_later_and_split_across_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial.log");
        let writer_path = path.clone();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(120)).await;
            let mut f = std::fs::File::create(&writer_path).unwrap();
            f.write_all(b"ISOLINUX\r\nbo").unwrap();
            f.flush().unwrap();
            tokio::time::sleep(Duration::from_millis(120)).await;
            f.write_all(b"ot: ").unwrap();
        });
        let mut w = SerialWatch::new(&path, 0);
        w.wait_for("boot:", Duration::from_secs(10), &CancellationToken::new())
            .await
            .unwrap();
        writer.await.unwrap();
        assert_eq!(w.offset(), 15);
        // The same text does not match twice.
        let e = w
            .wait_for(
                "boot:",
                Duration::from_millis(200),
                &CancellationToken::new(),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, SerialError::Timeout { .. }));
        assert!(e.to_string().contains("serial.log"), "{e}");
    }

    #[tokio::test]
    async fn output_before_the_offset_does_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial.log");
        std::fs::write(&path, "login: ").unwrap();
        let mut w = SerialWatch::new(&path, 7);
        let r = w
            .wait_for(
                "login:",
                Duration::from_millis(150),
                &CancellationToken::new(),
            )
            .await;
        assert!(matches!(r, Err(SerialError::Timeout { .. })));
    }

    #[tokio::test]
    async fn cancellation_stops_the_wait() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let mut w = SerialWatch::new("/nonexistent/serial.log", 0);
        let r = w.wait_for("x", Duration::from_secs(60), &cancel).await;
        assert!(matches!(r, Err(SerialError::Cancelled)));
    }
}
