//! The `compress` post-processor's work: the format comes from the output name, read as Packer reads
//! it (the last two `.ext` parts; `format` adds extensions for the choice without renaming the
//! output): an archive (`.tar`, `.zip`) and/or a compressor (`.gz`, `.lz4`, `.xz`, `.bzip2`,
//! `.bgzf`, and kiln's `.zst`), as in `.tar.xz`; a name with no known extension means tar +
//! gzip, as in Packer (so `.tar.bz2` is gzip data there and here: Packer's name for bzip2 is
//! `.bzip2`). gzip runs on all cores (see [`crate::artifact::archive::ParallelGzWriter`]) and
//! zstd with its own worker threads; xz, bzip2 and BGZF on one (Packer's xz and bzip2 libraries
//! are single-threaded too). The archive is written under a temporary name and renamed when
//! complete, so a failed run never leaves a truncated file where the finished one would be.
//! Progress goes to a [`Reporter`].

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::{render, Outcome, PostProcessContext, PostProcessError};
use crate::artifact::archive::{tar_size, ParallelGzWriter, ReproducibleTar};
use crate::artifact::stream::{ensure_space, Input, WriteError};
use crate::artifact::{write_through_temp, Artifact};
use crate::config::post_processors::CompressConfig;
use crate::ui::progress::Reporter;

/// Packer's id for a compress artifact.
pub const BUILDER_ID: &str = "packer.post-processor.compress";

/// What the output name asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tar,
    TarGz,
    TarZst,
    TarLz4,
    TarXz,
    TarBzip2,
    TarBgzf,
    Gz,
    Zst,
    Lz4,
    Xz,
    Bzip2,
    Bgzf,
    /// A zip archive of the files, each deflated (Go's `zip.Writer.Create`).
    Zip,
}

/// Why compression failed.
#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    #[error("{format:?} holds one file, but the artifact has {count}\nhint: name the output .tar.gz or .tar.zst to archive several files")]
    OneFileOnly { format: Format, count: usize },
    /// Reading an input or writing the archive failed, or the build was cancelled.
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl Format {
    /// The format named by `output`'s extensions, as Packer reads them (lower-case `.ext` parts of
    /// the whole name; `tar` before the last one asks for an archive).
    pub fn from_output(output: &Path) -> Result<Self, CompressError> {
        Self::detect(&output.to_string_lossy(), None)
    }

    /// The format for `output`, with `format` (e.g. `tar.gz`) appended for the choice when set.
    pub fn detect(output: &str, format: Option<&str>) -> Result<Self, CompressError> {
        let name = match format.filter(|f| !f.is_empty()) {
            Some(f) => format!("{output}.{}", f.trim_start_matches('.')),
            None => output.to_string(),
        };
        let parts = extensions(&name);
        let (last, before) = match parts.as_slice() {
            [] => return Ok(Format::TarGz),
            [last] => (last.as_str(), ""),
            [.., before, last] => (last.as_str(), before.as_str()),
        };
        let tar = before == "tar";
        Ok(match last {
            "tar" => Format::Tar,
            "gz" if tar => Format::TarGz,
            "gz" => Format::Gz,
            "zst" if tar => Format::TarZst,
            "zst" => Format::Zst,
            "lz4" if tar => Format::TarLz4,
            "lz4" => Format::Lz4,
            "xz" if tar => Format::TarXz,
            "xz" => Format::Xz,
            "bzip2" if tar => Format::TarBzip2,
            "bzip2" => Format::Bzip2,
            "bgzf" if tar => Format::TarBgzf,
            "bgzf" => Format::Bgzf,
            "zip" => Format::Zip,
            _ => Format::TarGz,
        })
    }

    fn is_tar(self) -> bool {
        matches!(
            self,
            Format::Tar
                | Format::TarGz
                | Format::TarZst
                | Format::TarLz4
                | Format::TarXz
                | Format::TarBzip2
                | Format::TarBgzf
        )
    }

    /// Whether the output holds several files (a tar or zip archive).
    fn is_archive(self) -> bool {
        self.is_tar() || self == Format::Zip
    }
}

/// Packer's extension parts: every `.` followed by lower-case letters or digits.
fn extensions(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = name;
    while let Some(at) = rest.find('.') {
        rest = &rest[at + 1..];
        let ext: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            .collect();
        if !ext.is_empty() {
            out.push(ext);
        }
    }
    out
}

/// Compresses `inputs` into `output` in the format its name asks for; see [`compress_as`].
pub fn compress(
    inputs: &[PathBuf],
    output: &Path,
    level: Option<i32>,
    threads: usize,
    reporter: &dyn Reporter,
    cancel: &CancellationToken,
) -> Result<Format, CompressError> {
    compress_as(
        inputs,
        output,
        Format::from_output(output)?,
        level,
        threads,
        reporter,
        cancel,
    )
}

/// Compresses `inputs` into `output` as `format`; `level` is the format's level (gzip 1–9, with
/// 0 and -1 meaning the default 6 as in Packer; zstd 1–22, default 3; lz4 has one level);
/// `threads` 0 means one per core. Progress counts the bytes going into the compressor.
///
/// Stops within one read of `cancel` being cancelled ([`WriteError::Cancelled`]); whatever
/// stops it, nothing is left at `output` or its temporary name. A plain tar's size is known, so
/// it is refused up front when the filesystem has less free space.
pub fn compress_as(
    inputs: &[PathBuf],
    output: &Path,
    format: Format,
    level: Option<i32>,
    threads: usize,
    reporter: &dyn Reporter,
    cancel: &CancellationToken,
) -> Result<Format, CompressError> {
    if !format.is_archive() && inputs.len() != 1 {
        return Err(CompressError::OneFileOnly {
            format,
            count: inputs.len(),
        });
    }
    let size = payload_size(inputs, format);
    if format == Format::Tar {
        ensure_space(output, size)?;
    }
    reporter.start(
        &format!("Compressing to {}", output.display()),
        Some(size),
        0,
    );
    let result = write_through_temp(
        output,
        |tmp| write_archive(inputs, tmp, format, level, threads, reporter, cancel),
        |e| e,
    );
    reporter.finish();
    result.map_err(|e| WriteError::from_io(e, output))?;
    Ok(format)
}

fn write_archive(
    inputs: &[PathBuf],
    tmp: &Path,
    format: Format,
    level: Option<i32>,
    threads: usize,
    reporter: &dyn Reporter,
    cancel: &CancellationToken,
) -> io::Result<()> {
    let file = BufWriter::with_capacity(1 << 20, File::create(tmp)?);
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    match format {
        Format::Tar => {
            finish_file(write_payload(inputs, format, cancel, Counted(file, reporter))?.0)
        }
        Format::TarGz | Format::Gz => {
            let level = match level {
                None | Some(..=0) => 6,
                Some(l) => l.min(9) as u32,
            };
            let gz = ParallelGzWriter::new(file, level, threads);
            finish_file(
                write_payload(inputs, format, cancel, Counted(gz, reporter))?
                    .0
                    .finish()?,
            )
        }
        Format::TarZst | Format::Zst => {
            let mut zst = zstd::stream::write::Encoder::new(file, level.unwrap_or(3))?;
            zst.multithread(u32::try_from(threads).unwrap_or(1))?;
            finish_file(
                write_payload(inputs, format, cancel, Counted(zst, reporter))?
                    .0
                    .finish()?,
            )
        }
        Format::TarLz4 | Format::Lz4 => {
            let lz4 = lz4_flex::frame::FrameEncoder::new(file);
            let file = write_payload(inputs, format, cancel, Counted(lz4, reporter))?
                .0
                .finish()
                .map_err(|e| match e {
                    lz4_flex::frame::Error::IoError(e) => e,
                    other => io::Error::other(other),
                })?;
            finish_file(file)
        }
        Format::TarXz | Format::Xz => {
            let xz = liblzma::write::XzEncoder::new(file, 6);
            finish_file(
                write_payload(inputs, format, cancel, Counted(xz, reporter))?
                    .0
                    .finish()?,
            )
        }
        Format::TarBzip2 | Format::Bzip2 => {
            // Packer's default is 9; a level in 1..=9 chooses another.
            let level = match level {
                Some(l @ 1..=9) => l as u32,
                _ => 9,
            };
            let bz = bzip2::write::BzEncoder::new(file, bzip2::Compression::new(level));
            finish_file(
                write_payload(inputs, format, cancel, Counted(bz, reporter))?
                    .0
                    .finish()?,
            )
        }
        Format::TarBgzf | Format::Bgzf => {
            let level = match level {
                None | Some(..=0) => 6,
                Some(l) => l.min(9),
            };
            let bgzf = BgzfWriter::new(file, level)?;
            finish_file(
                write_payload(inputs, format, cancel, Counted(bgzf, reporter))?
                    .0
                    .finish()?,
            )
        }
        Format::Zip => finish_file(write_zip(inputs, file, reporter, cancel)?),
    }
}

/// A zip archive of `inputs` (by file name), each entry deflated, with zip64 records when a
/// file needs them, and the fixed 1980-01-01 time so the same files give the same bytes.
fn write_zip(
    inputs: &[PathBuf],
    file: BufWriter<File>,
    reporter: &dyn Reporter,
    cancel: &CancellationToken,
) -> io::Result<BufWriter<File>> {
    let mut zip = zip::ZipWriter::new(file);
    for input in inputs {
        let name = input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| io::Error::other(format!("{} has no file name", input.display())))?;
        let size = std::fs::metadata(input)?.len();
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(zip::DateTime::default())
            .unix_permissions(0o644)
            .large_file(size >= u64::from(u32::MAX));
        zip.start_file(name, options).map_err(io::Error::other)?;
        let mut source = Input::open(input, cancel)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = source.read(&mut buf)?;
            if n == 0 {
                break;
            }
            zip.write_all(&buf[..n])?;
            reporter.advance(n as u64);
        }
    }
    zip.finish().map_err(io::Error::other)
}

/// BGZF (the blocked gzip of SAMtools' `bgzip`): gzip members of at most 64 KiB, each with a
/// `BC` extra field giving its size so readers can seek, then the standard empty end-of-file
/// member. Every member is valid gzip, so `gzip -d` reads the whole file too.
struct BgzfWriter<W: Write> {
    out: W,
    block: Vec<u8>,
    compressor: libdeflater::Compressor,
    compressed: Vec<u8>,
}

/// Input bytes per member, as `bgzip` uses, so even incompressible data fits 64 KiB.
const BGZF_BLOCK: usize = 0xff00;
/// The empty member every BGZF file ends with.
const BGZF_EOF: [u8; 28] = [
    0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff, 6, 0, b'B', b'C', 2, 0, 0x1b, 0, 3, 0, 0, 0, 0, 0, 0, 0,
    0, 0,
];

impl<W: Write> BgzfWriter<W> {
    fn new(out: W, level: i32) -> io::Result<Self> {
        let level = libdeflater::CompressionLvl::new(level)
            .map_err(|e| io::Error::other(format!("{e:?}")))?;
        Ok(Self {
            out,
            block: Vec::with_capacity(BGZF_BLOCK),
            compressor: libdeflater::Compressor::new(level),
            compressed: vec![0; 0x10000],
        })
    }

    fn write_block(&mut self) -> io::Result<()> {
        let n = self
            .compressor
            .deflate_compress(&self.block, &mut self.compressed)
            .map_err(|e| io::Error::other(format!("{e:?}")))?;
        // Header (18 bytes with the extra field), data, CRC32 and size (8).
        let total = 18 + n + 8;
        let bsize = u16::try_from(total - 1).map_err(io::Error::other)?;
        let mut head = [
            0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff, 6, 0, b'B', b'C', 2, 0, 0, 0,
        ];
        head[16..18].copy_from_slice(&bsize.to_le_bytes());
        let mut crc = libdeflater::Crc::new();
        crc.update(&self.block);
        self.out.write_all(&head)?;
        self.out.write_all(&self.compressed[..n])?;
        self.out.write_all(&crc.sum().to_le_bytes())?;
        self.out
            .write_all(&(self.block.len() as u32).to_le_bytes())?;
        self.block.clear();
        Ok(())
    }

    fn finish(mut self) -> io::Result<W> {
        if !self.block.is_empty() {
            self.write_block()?;
        }
        self.out.write_all(&BGZF_EOF)?;
        Ok(self.out)
    }
}

impl<W: Write> Write for BgzfWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let take = buf.len().min(BGZF_BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..take]);
        if self.block.len() == BGZF_BLOCK {
            self.write_block()?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn write_payload<W: Write>(
    inputs: &[PathBuf],
    format: Format,
    cancel: &CancellationToken,
    mut out: W,
) -> io::Result<W> {
    if format.is_tar() {
        let mut tar = ReproducibleTar::new(out);
        for input in inputs {
            let name = input
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| io::Error::other(format!("{} has no file name", input.display())))?;
            tar.append_file(&name, input, cancel)?;
        }
        tar.finish()
    } else {
        // Large reads: the compressors take input in big pieces, not io::copy's 8 KiB.
        let mut input = Input::open(&inputs[0], cancel)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])?;
        }
        Ok(out)
    }
}

/// The bytes that go into the compressor: the file, or the tar stream of the files.
fn payload_size(inputs: &[PathBuf], format: Format) -> u64 {
    let sizes = inputs
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()));
    if format.is_tar() {
        tar_size(sizes)
    } else {
        sizes.sum()
    }
}

/// A writer that reports every byte written through it.
struct Counted<'a, W>(W, &'a dyn Reporter);

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.0.write(buf)?;
        self.1.advance(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Flushes, without fsync (see [`write_through_temp`]).
fn finish_file(mut out: BufWriter<File>) -> io::Result<()> {
    out.flush()
}

/// The `compress` post-processor: one archive; the input goes unless `keep_input_artifact`.
pub(super) async fn run(
    c: &CompressConfig,
    input: &Artifact,
    ctx: &PostProcessContext<'_>,
) -> Result<Outcome, PostProcessError> {
    let format = Format::detect(&c.output, c.format.as_deref())?;
    let output = render(&c.output, input, &[]);
    ctx.ui
        .say(&format!("Compressing to {} ({format:?})", output.display()));
    let (files, out2, level) = (input.files.clone(), output.clone(), c.compression_level);
    let (reporter, cancel) = (ctx.ui.reporter(), ctx.cancel.clone());
    tokio::task::spawn_blocking(move || {
        compress_as(&files, &out2, format, level, 0, &reporter, &cancel)
    })
    .await??;
    ctx.ui
        .say(&format!("Archive {} completed", output.display()));
    Ok(Outcome {
        artifact: Artifact {
            builder_id: BUILDER_ID.into(),
            id: output.display().to_string(),
            description: format!("compressed artifacts in: {}", output.display()),
            files: vec![output],
            facts: Default::default(),
            ..input.clone()
        },
        keep_default: false,
        force_keep: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::stream::testing::{cancel_once_exists, noise, Tmpfs};
    use crate::ui::progress::Silent;
    use std::process::Command;

    fn inputs(dir: &Path) -> Vec<PathBuf> {
        let a = dir.join("disk.qcow2");
        let b = dir.join("efivars.fd");
        std::fs::write(&a, vec![1u8; 300_000]).unwrap();
        std::fs::write(&b, b"vars").unwrap();
        vec![a, b]
    }

    #[test]
    fn format_follows_the_output_name() {
        let f = |n: &str| Format::from_output(Path::new(n));
        assert_eq!(f("a.tar.gz").unwrap(), Format::TarGz);
        assert_eq!(f("a.tgz").unwrap(), Format::TarGz);
        assert_eq!(f("a.tar.zst").unwrap(), Format::TarZst);
        assert_eq!(f("a.qcow2.gz").unwrap(), Format::Gz);
        assert_eq!(f("a.zst").unwrap(), Format::Zst);
        assert_eq!(f("a.tar").unwrap(), Format::Tar);
        assert_eq!(f("packer_out").unwrap(), Format::TarGz);
        assert_eq!(f("a.lz4").unwrap(), Format::Lz4);
        assert_eq!(f("a.tar.lz4").unwrap(), Format::TarLz4);
        // Packer reads lower-case extensions of the whole path; unknown ones mean tar + gzip.
        assert_eq!(f("out.d/disk.QCOW2").unwrap(), Format::TarGz);
        assert_eq!(f("packer_{{.BuildName}}").unwrap(), Format::TarGz);
        let d = |o: &str, fmt: &str| Format::detect(o, Some(fmt)).unwrap();
        assert_eq!(d("image", "tar.zst"), Format::TarZst);
        assert_eq!(d("image", "gz"), Format::Gz);
        // Packer's post-processor/compress detectFromFilename table.
        assert_eq!(f("a.zip").unwrap(), Format::Zip);
        assert_eq!(f("a.xz").unwrap(), Format::Xz);
        assert_eq!(f("a.tar.xz").unwrap(), Format::TarXz);
        assert_eq!(f("a.bzip2").unwrap(), Format::Bzip2);
        assert_eq!(f("a.tar.bzip2").unwrap(), Format::TarBzip2);
        assert_eq!(f("a.bgzf").unwrap(), Format::Bgzf);
        assert_eq!(f("a.tar.bgzf").unwrap(), Format::TarBgzf);
        // Not a name Packer knows: tar + gzip there, so here too.
        assert_eq!(f("a.tar.bz2").unwrap(), Format::TarGz);
    }

    /// Every format Packer writes, read back by the standard tool for it: the archive lists
    /// both files, a single-file format gives the file's bytes back, and BGZF is also checked
    /// by `bgzip`, which reads its block structure.
    #[test]
    fn every_packer_format_is_read_back_by_its_standard_tool() {
        let dir = tempfile::tempdir().unwrap();
        let files = inputs(dir.path());
        let run = |cmd: &mut Command| {
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        let make = |name: &str, inputs: &[PathBuf]| {
            let out = dir.path().join(name);
            compress(inputs, &out, None, 2, &Silent, &CancellationToken::new()).unwrap();
            assert!(!dir.path().join(format!("{name}.tmp")).exists());
            out
        };
        let listing = b"disk.qcow2\nefivars.fd\n".to_vec();
        for (name, flag) in [
            ("o.tar.xz", "--xz"),
            ("o.tar.bzip2", "--bzip2"),
            ("o.tar.bgzf", "-z"),
        ] {
            let out = make(name, &files);
            let listed = run(Command::new("tar").arg("-t").arg(flag).arg("-f").arg(&out));
            assert_eq!(listed, listing, "{name}");
        }
        let zip = make("o.zip", &files);
        run(Command::new("unzip").arg("-t").arg(&zip));
        let listed = run(Command::new("unzip").arg("-Z1").arg(&zip));
        assert_eq!(listed, listing);
        let disk = std::fs::read(&files[0]).unwrap();
        for (name, tool) in [("d.xz", "xz"), ("d.bzip2", "bzip2"), ("d.bgzf", "gzip")] {
            let out = make(name, &files[..1]);
            run(Command::new(tool).arg("-t").arg(&out));
            assert!(
                run(Command::new(tool).arg("-dc").arg(&out)) == disk,
                "{name}"
            );
        }
        let bgzf = dir.path().join("d.bgzf");
        run(Command::new("bgzip").arg("-t").arg(&bgzf));
        // The blocks are whole: bgzip indexes them (walking the BC sizes) and reads from an
        // offset inside the file through that index.
        run(Command::new("bgzip").arg("-r").arg(&bgzf));
        let at = run(Command::new("bgzip")
            .args(["-b", "70000", "-s", "16", "-d", "-c"])
            .arg(&bgzf));
        assert_eq!(at, disk[70000..70016]);
    }

    #[test]
    fn system_tar_unpacks_gzip_and_zstd_archives() {
        let dir = tempfile::tempdir().unwrap();
        let files = inputs(dir.path());
        for (name, flag) in [
            ("o.tar.gz", "-z"),
            ("o.tar.zst", "--zstd"),
            ("o.tar.lz4", "--use-compress-program=lz4"),
            ("o.tar", ""),
        ] {
            let out = dir.path().join(name);
            compress(&files, &out, None, 2, &Silent, &CancellationToken::new()).unwrap();
            let mut cmd = Command::new("tar");
            cmd.arg("-t").arg("-f").arg(&out);
            if !flag.is_empty() {
                cmd.arg(flag);
            }
            let listing = cmd.output().unwrap();
            assert!(
                listing.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&listing.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&listing.stdout),
                "disk.qcow2\nefivars.fd\n"
            );
            assert!(!dir.path().join(format!("{name}.tmp")).exists());
        }
    }

    #[test]
    fn single_file_formats_round_trip_and_refuse_several_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let files = inputs(dir.path());
        let out = dir.path().join("disk.qcow2.gz");
        compress(
            &files[..1],
            &out,
            Some(1),
            2,
            &Silent,
            &CancellationToken::new(),
        )
        .unwrap();
        let back = Command::new("gzip").arg("-dc").arg(&out).output().unwrap();
        assert_eq!(back.stdout, std::fs::read(&files[0]).unwrap());
        let zst = dir.path().join("disk.qcow2.zst");
        compress(
            &files[..1],
            &zst,
            None,
            2,
            &Silent,
            &CancellationToken::new(),
        )
        .unwrap();
        let back = zstd::decode_all(File::open(&zst).unwrap()).unwrap();
        assert_eq!(back, std::fs::read(&files[0]).unwrap());
        // lz4 as the lz4 tool reads it.
        let lz4 = dir.path().join("disk.qcow2.lz4");
        compress(
            &files[..1],
            &lz4,
            None,
            2,
            &Silent,
            &CancellationToken::new(),
        )
        .unwrap();
        let back = Command::new("lz4").arg("-dc").arg(&lz4).output().unwrap();
        assert_eq!(back.stdout, std::fs::read(&files[0]).unwrap());
        let err = compress(
            &files,
            &dir.path().join("x.gz"),
            None,
            2,
            &Silent,
            &CancellationToken::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("Gz holds one file, but the artifact has 2"),
            "{err}"
        );
    }

    #[test]
    fn a_failed_run_leaves_no_partial_output() {
        let dir = tempfile::tempdir().unwrap();
        let missing = vec![dir.path().join("absent.qcow2")];
        let out = dir.path().join("o.tar.gz");
        assert!(compress(&missing, &out, None, 1, &Silent, &CancellationToken::new()).is_err());
        assert!(!out.exists());
        assert!(!dir.path().join("o.tar.gz.tmp").exists());
    }

    /// Issue 13: on a full disk the error names the archive and the OS's reason; a plain tar,
    /// whose size is known, is refused before writing with both sizes; nothing is left behind.
    #[test]
    fn a_full_disk_names_the_archive_and_the_os_error() {
        let Some(fs) = Tmpfs::mount() else { return };
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("disk.qcow2");
        std::fs::write(&input, noise(6 << 20)).unwrap();
        let inputs = [input];
        let never = CancellationToken::new();
        for name in ["out.tar.gz", "disk.qcow2.zst", "out.tar.lz4"] {
            let out = fs.path().join(name);
            let err = compress(&inputs, &out, None, 2, &Silent, &never).unwrap_err();
            assert_eq!(
                crate::report::report(&err),
                format!(
                    "cannot write {}: No space left on device (os error 28)",
                    out.display()
                )
            );
            assert_eq!(fs.listing(), Vec::<PathBuf>::new());
        }
        let out = fs.path().join("out.tar");
        let err = compress(&inputs, &out, None, 2, &Silent, &never)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "not enough free space to write {}: it needs 6.0 MiB, but 4.0 MiB is free",
                out.display()
            )),
            "{err}"
        );
        assert_eq!(fs.listing(), Vec::<PathBuf>::new());
    }

    /// Issue 13: Ctrl-C during a long compression stops it and leaves nothing.
    #[test]
    fn a_cancelled_compression_stops_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("disk.raw");
        // 300 MB of hole: long to compress, nothing on disk.
        File::create(&input).unwrap().set_len(300 << 20).unwrap();
        let out = dir.path().join("disk.raw.gz");
        let cancel = CancellationToken::new();
        let canceller = cancel_once_exists(dir.path().join("disk.raw.gz.tmp"), cancel.clone());
        let result = compress(&[input], &out, None, 1, &Silent, &cancel);
        canceller.join().unwrap();
        assert!(
            matches!(result, Err(CompressError::Write(WriteError::Cancelled))),
            "{result:?}"
        );
        assert!(!out.exists() && !dir.path().join("disk.raw.gz.tmp").exists());
    }

    #[test]
    fn archives_are_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let files = inputs(dir.path());
        let (a, b) = (dir.path().join("a.tar.zst"), dir.path().join("b.tar.zst"));
        compress(&files, &a, None, 2, &Silent, &CancellationToken::new()).unwrap();
        compress(&files, &b, None, 1, &Silent, &CancellationToken::new()).unwrap();
        assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    }

    #[test]
    fn progress_counts_every_byte_into_the_compressor() {
        let dir = tempfile::tempdir().unwrap();
        let files = inputs(dir.path());
        for name in ["p.tar.zst", "p.tar"] {
            let rec = crate::ui::progress::Recorder::default();
            compress(
                &files,
                &dir.path().join(name),
                None,
                1,
                &rec,
                &CancellationToken::new(),
            )
            .unwrap();
            let events = rec.events();
            let total = payload_size(&files, Format::from_output(Path::new(name)).unwrap());
            assert_eq!(
                events.first(),
                Some(&crate::ui::progress::Event::Start(
                    format!("Compressing to {}", dir.path().join(name).display()),
                    Some(total),
                    0
                ))
            );
            assert!(total > 300_004);
            assert_eq!(rec.done(), total, "{name}");
        }
    }
}
