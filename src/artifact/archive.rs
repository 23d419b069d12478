//! Reproducible archives: tar streams whose bytes depend only on the files' names, contents and
//! executable bit (fixed mtime, owner 0/0, no user names, entries in the order given), and a
//! parallel gzip writer (libdeflate on every core). Vagrant boxes, OVAs and the `compress` post-processor are built on these, so
//! the same inputs give byte-identical artifacts.

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::stream::Input;

/// The mtime written into archive headers: `SOURCE_DATE_EPOCH` when set (the reproducible-builds
/// convention), else 0.
pub fn archive_mtime() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The size of the tar stream [`ReproducibleTar`] writes for entries of these sizes: a 512-byte
/// header per entry, contents padded to 512 bytes, and the 1 KiB end marker.
pub fn tar_size(entries: impl IntoIterator<Item = u64>) -> u64 {
    entries
        .into_iter()
        .map(|len| 512 + len.div_ceil(512) * 512)
        .sum::<u64>()
        + 1024
}

/// Writes a tar stream entry by entry; call [`ReproducibleTar::finish`] at the end.
pub struct ReproducibleTar<W: Write> {
    builder: tar::Builder<W>,
    mtime: u64,
}

impl<W: Write> ReproducibleTar<W> {
    pub fn new(out: W) -> Self {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Deterministic);
        ReproducibleTar {
            builder,
            mtime: archive_mtime(),
        }
    }

    fn header(&self, size: u64, executable: bool) -> tar::Header {
        let mut header = tar::Header::new_ustar();
        header.set_size(size);
        header.set_mode(if executable { 0o755 } else { 0o644 });
        header.set_mtime(self.mtime);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        header
    }

    /// Adds the file at `path` under `name`, streaming its content through an [`Input`]: the
    /// copy stops when `cancel` is cancelled, and read errors name `path` (see
    /// [`super::stream::WriteError::from_io`]).
    pub fn append_file(
        &mut self,
        name: &str,
        path: &Path,
        cancel: &CancellationToken,
    ) -> io::Result<()> {
        let file = Input::open(path, cancel)?;
        let meta = file.file().metadata()?;
        let executable = meta.permissions().mode() & 0o111 != 0;
        let mut header = self.header(meta.len(), executable);
        self.builder.append_data(&mut header, name, file)
    }

    /// Adds in-memory content under `name`.
    pub fn append_bytes(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let mut header = self.header(bytes.len() as u64, false);
        self.builder.append_data(&mut header, name, bytes)
    }

    /// Writes the end-of-archive marker and returns the writer.
    pub fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }
}

/// Size of the pieces compressed independently; large enough that the ratio stays within about 1%
/// of single-stream gzip.
const CHUNK: usize = 4 << 20;

type Compressed = (u64, io::Result<Vec<u8>>);

/// A gzip writer that compresses on all cores. The output is a multi-member gzip file (one member per
/// 4 MiB piece), which gzip, zlib-based readers, Go, Python and bsdtar (what Vagrant unpacks with)
/// all read as one stream. Its bytes depend only on the input and the level, not on the thread count.
///
/// A pipeline, like pigz: worker threads compress pieces while the caller goes on reading input and
/// writing finished members in order, with a bounded number of pieces in flight (memory stays at a
/// few pieces per core). There is no barrier per batch, so one descheduled worker on a loaded
/// machine does not stall the others.
pub struct ParallelGzWriter<W: Write> {
    out: W,
    current: Vec<u8>,
    jobs: Option<std::sync::mpsc::SyncSender<(u64, Vec<u8>)>>,
    results: std::sync::mpsc::Receiver<Compressed>,
    workers: Vec<std::thread::JoinHandle<()>>,
    /// Pieces sent so far, and the next one to write.
    sent: u64,
    next: u64,
    /// Finished pieces waiting for their turn.
    done: std::collections::BTreeMap<u64, Vec<u8>>,
    max_in_flight: u64,
}

impl<W: Write> ParallelGzWriter<W> {
    /// `level` 0–9 (0 stores); `threads` 0 means one per core.
    pub fn new(out: W, level: u32, threads: usize) -> Self {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let level = level.min(9);
        let (jobs, queue) = std::sync::mpsc::sync_channel::<(u64, Vec<u8>)>(threads);
        let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
        let (report, results) = std::sync::mpsc::channel::<Compressed>();
        let workers = (0..threads)
            .map(|_| {
                let (queue, report) = (queue.clone(), report.clone());
                std::thread::spawn(move || {
                    let mut compressor = GzipMember::new(level);
                    loop {
                        let job = match queue.lock() {
                            Ok(q) => q.recv(),
                            Err(_) => return,
                        };
                        let Ok((seq, piece)) = job else { return };
                        if report.send((seq, compressor.compress(&piece))).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        ParallelGzWriter {
            out,
            current: Vec::with_capacity(CHUNK),
            jobs: Some(jobs),
            results,
            workers,
            sent: 0,
            next: 0,
            done: std::collections::BTreeMap::new(),
            max_in_flight: 2 * threads as u64 + 1,
        }
    }

    fn send(&mut self, piece: Vec<u8>) -> io::Result<()> {
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("the gzip writer is finished"))?;
        jobs.send((self.sent, piece))
            .map_err(|_| io::Error::other("a compression thread stopped"))?;
        self.sent += 1;
        // Write what is ready; wait only when too much is in flight.
        self.drain(false)?;
        while self.sent - self.next >= self.max_in_flight {
            self.receive_one()?;
            self.drain(false)?;
        }
        Ok(())
    }

    fn receive_one(&mut self) -> io::Result<()> {
        let (seq, member) = self
            .results
            .recv()
            .map_err(|_| io::Error::other("a compression thread stopped"))?;
        self.done.insert(seq, member?);
        Ok(())
    }

    /// Writes finished members in order; with `all`, waits for every piece sent.
    fn drain(&mut self, all: bool) -> io::Result<()> {
        loop {
            while let Ok((seq, member)) = self.results.try_recv() {
                self.done.insert(seq, member?);
            }
            while let Some(member) = self.done.remove(&self.next) {
                self.out.write_all(&member)?;
                self.next += 1;
            }
            if !all || self.next == self.sent {
                return Ok(());
            }
            self.receive_one()?;
        }
    }

    /// Compresses what is buffered, writes it, and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.current.is_empty() || self.sent == 0 {
            // An empty input still becomes one valid (empty) gzip member.
            let last = std::mem::take(&mut self.current);
            self.send(last)?;
        }
        self.drain(true)?;
        self.stop_workers();
        self.out.flush()?;
        Ok(self.out)
    }

    fn stop_workers(&mut self) {
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}
/// One worker's compressor: libdeflate, which compresses whole buffers (what a 4 MiB piece is)
/// about twice as fast as zlib at the same level and ratio. Its gzip header has no name and a
/// zero mtime, so members are reproducible.
struct GzipMember(libdeflater::Compressor);

impl GzipMember {
    fn new(level: u32) -> Self {
        let level = libdeflater::CompressionLvl::new(level as i32)
            .unwrap_or_else(|_| libdeflater::CompressionLvl::default());
        GzipMember(libdeflater::Compressor::new(level))
    }

    fn compress(&mut self, piece: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = vec![0u8; self.0.gzip_compress_bound(piece.len())];
        let n = self
            .0
            .gzip_compress(piece, &mut out)
            .map_err(|e| io::Error::other(format!("gzip: {e:?}")))?;
        out.truncate(n);
        Ok(out)
    }
}

impl<W: Write> Write for ParallelGzWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.current.len();
        let n = room.min(buf.len());
        self.current.extend_from_slice(&buf[..n]);
        if self.current.len() == CHUNK {
            let full = std::mem::replace(&mut self.current, Vec::with_capacity(CHUNK));
            self.send(full)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Flushing cannot end a member early without changing the output, so it only flushes what
        // is already compressed; `finish` writes the rest.
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::MultiGzDecoder;
    use std::io::Read;
    use std::process::Command;

    fn sample(len: usize) -> Vec<u8> {
        // Compressible but not trivial: a counter pattern with some noise.
        (0..len).map(|i| ((i / 7) ^ (i * 31 % 251)) as u8).collect()
    }

    fn gz(data: &[u8], threads: usize) -> Vec<u8> {
        let mut w = ParallelGzWriter::new(Vec::new(), 6, threads);
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn parallel_gzip_round_trips_and_ignores_thread_count() {
        let data = sample(CHUNK * 3 + 12345);
        let one = gz(&data, 1);
        let four = gz(&data, 4);
        assert_eq!(one, four, "output must not depend on the thread count");
        let mut back = Vec::new();
        MultiGzDecoder::new(&one[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn system_gzip_reads_the_multi_member_stream() {
        let data = sample(CHUNK * 2 + 99);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.gz");
        std::fs::write(&file, gz(&data, 2)).unwrap();
        let out = Command::new("gzip").arg("-dc").arg(&file).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, data);
    }

    #[test]
    fn empty_input_is_a_valid_gzip_file() {
        let out = gz(&[], 2);
        let mut back = Vec::new();
        MultiGzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
    }

    #[test]
    fn tar_is_byte_identical_whatever_the_files_mtimes_and_system_tar_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.img");
        let b = dir.path().join("run.sh");
        std::fs::write(&a, sample(10_000)).unwrap();
        std::fs::write(&b, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o700)).unwrap();
        let build = || {
            let mut t = ReproducibleTar::new(Vec::new());
            t.append_bytes("metadata.json", b"{}").unwrap();
            let cancel = CancellationToken::new();
            t.append_file("box_0.img", &a, &cancel).unwrap();
            t.append_file("run.sh", &b, &cancel).unwrap();
            t.finish().unwrap()
        };
        let first = build();
        assert_eq!(first.len() as u64, tar_size([2, 10_000, 10]));
        // Touch the inputs: a new mtime must not change the archive.
        std::fs::write(&a, sample(10_000)).unwrap();
        let second = build();
        assert_eq!(first, second);

        let tarball = dir.path().join("x.tar");
        std::fs::write(&tarball, &first).unwrap();
        let listing = Command::new("tar")
            .arg("-tvf")
            .arg(&tarball)
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&listing.stdout);
        let lines: Vec<_> = listing.lines().collect();
        assert_eq!(lines.len(), 3, "{listing}");
        assert!(
            lines[0].starts_with("-rw-r--r-- 0/0") && lines[0].ends_with("metadata.json"),
            "{listing}"
        );
        assert!(
            lines[2].starts_with("-rwxr-xr-x 0/0") && lines[2].ends_with("run.sh"),
            "{listing}"
        );
    }
}
