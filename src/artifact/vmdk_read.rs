//! A VMDK reader, as a [`DiskSource`]: the disks VMware's builders leave (monolithicSparse,
//! twoGbMaxExtentSparse: a text descriptor naming `-s001.vmdk`… sparse extents, monolithicFlat
//! and twoGbMaxExtentFlat: flat extents) and the streamOptimized VMDKs of OVAs, with linked
//! clones' delta disks read through their parents (`parentFileNameHint`) wherever the delta
//! holds nothing.
//!
//! Every number in a header or descriptor is checked before it sizes a read or an allocation,
//! so a damaged file is an error, never a panic or a huge allocation. Memory is bounded: per
//! disk in the chain, the grain directory (at most 16 MiB), one grain table and one grain.
//! Refused: VMDK3 (`COWD`) sparse extents and ESX's VMFSSPARSE/SESPARSE extents.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use flate2::read::ZlibDecoder;

use super::source::{DiskSource, Each, VmdkError};

const SECTOR: u64 = 512;
const MAGIC: u32 = 0x564d_444b; // "KDMV"
const FLAG_ZERO_GRAIN: u32 = 1 << 2;
const FLAG_COMPRESSED: u32 = 1 << 16;
const FLAG_MARKERS: u32 = 1 << 17;
const GD_AT_END: u64 = u64::MAX;
const MARKER_FOOTER: u32 = 3;
/// Grain table entry of a grain that reads as zeros without consulting the parent.
const GTE_ZEROED: u32 = 1;
/// Pieces handed to [`DiskSource::for_each_extent`].
const CHUNK: u64 = 64 << 10;
/// Longest parent chain followed: deeper is a loop or a damaged chain.
const MAX_PARENTS: usize = 32;
/// Largest descriptor read (text files and embedded ones alike).
const MAX_DESCRIPTOR: u64 = 1 << 20;
/// Most grain tables an extent may have (a 16 MiB directory).
const MAX_TABLES: u64 = 1 << 22;

/// An open VMDK: its extents in guest order and, for a delta disk, its parent.
#[derive(Debug)]
pub struct VmdkImage {
    capacity: u64,
    extents: Vec<Extent>,
    parent: Option<Box<VmdkImage>>,
}

#[derive(Debug)]
struct Extent {
    /// Guest byte offset of its first byte.
    start: u64,
    len: u64,
    data: ExtentData,
}

#[derive(Debug)]
enum ExtentData {
    /// Reads as zeros (`ZERO` extents, and `NOACCESS` ones).
    Zero,
    /// Raw bytes at `offset` of `file`.
    Flat {
        file: File,
        path: PathBuf,
        offset: u64,
    },
    Sparse(Box<Sparse>),
}

/// A hosted sparse extent (VMware's `SparseExtentHeader` format).
#[derive(Debug)]
struct Sparse {
    file: File,
    path: PathBuf,
    grain: u64,
    gtes: u64,
    directory: Vec<u32>,
    compressed: bool,
    markers: bool,
    zero_grain: bool,
    /// The grain table last read: (its index, its entries).
    table: Option<(u64, Vec<u32>)>,
    /// The compressed grain last inflated: (its index, its bytes).
    inflated: Option<(u64, Vec<u8>)>,
}

/// Where a grain is.
enum Grain {
    /// Not in this disk: the parent's, or zeros.
    Unallocated,
    /// Zeros, whatever the parent holds.
    Zero,
    /// At this sector.
    At(u64),
}

/// What a descriptor says.
#[derive(Debug, Default)]
struct Descriptor {
    extents: Vec<ExtentLine>,
    parent: Option<String>,
}

#[derive(Debug)]
struct ExtentLine {
    access: String,
    sectors: u64,
    kind: String,
    file: String,
    offset: u64,
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn format_err(path: &Path, what: impl Into<String>) -> VmdkError {
    VmdkError::Format {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> VmdkError + '_ {
    move |source| VmdkError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads into `buf` from `offset` until it is full or the file ends; how many bytes came.
fn read_up_to(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn sectors_to_bytes(path: &Path, sectors: u64, what: &str) -> Result<u64, VmdkError> {
    sectors
        .checked_mul(SECTOR)
        .ok_or_else(|| format_err(path, format!("{what} of {sectors} sectors is out of range")))
}

impl VmdkImage {
    /// Opens the VMDK at `path` (a sparse extent with its embedded descriptor, or a descriptor
    /// file), and its parents.
    pub fn open(path: &Path) -> Result<Self, VmdkError> {
        Self::open_at(path, 0)
    }

    fn open_at(path: &Path, depth: usize) -> Result<Self, VmdkError> {
        if depth > MAX_PARENTS {
            return Err(format_err(
                path,
                format!("a chain of more than {MAX_PARENTS} parent disks (a loop?)"),
            ));
        }
        let file = File::open(path).map_err(io_err(path))?;
        let len = file.metadata().map_err(io_err(path))?.len();
        let mut head = [0u8; 512];
        let n = read_up_to(&file, &mut head, 0).map_err(io_err(path))?;
        let (capacity, extents, descriptor) = if n >= 4 && le32(&head, 0) == MAGIC {
            if n < head.len() {
                return Err(format_err(path, "the header is truncated"));
            }
            let (sparse, capacity, embedded) = Sparse::open(file, path, &head, len)?;
            let descriptor = match embedded {
                Some(text) => parse_descriptor(&text),
                None => Descriptor::default(),
            };
            let extent = Extent {
                start: 0,
                len: capacity,
                data: ExtentData::Sparse(Box::new(sparse)),
            };
            (capacity, vec![extent], descriptor)
        } else if head.starts_with(b"COWD") {
            return Err(format_err(
                path,
                "VMDK3 (COWD) sparse extents are not supported",
            ));
        } else {
            let text = descriptor_text(&file, path, len)?;
            let descriptor = parse_descriptor(&text);
            if descriptor.extents.is_empty() {
                return Err(format_err(path, "no KDMV magic and no extent descriptor"));
            }
            let (capacity, extents) = open_extents(path, &descriptor.extents)?;
            (capacity, extents, descriptor)
        };
        let parent = match descriptor.parent {
            Some(hint) => {
                let hint = Path::new(&hint);
                let parent_path = if hint.is_absolute() {
                    hint.to_path_buf()
                } else {
                    path.parent().unwrap_or(Path::new(".")).join(hint)
                };
                Some(Box::new(Self::open_at(&parent_path, depth + 1)?))
            }
            None => None,
        };
        Ok(VmdkImage {
            capacity,
            extents,
            parent,
        })
    }

    /// Fills `buf` with the guest bytes at `pos`, writing only where a disk in the chain holds
    /// data (`buf` must be zeroed); whether it wrote any.
    fn read(&mut self, pos: u64, buf: &mut [u8]) -> Result<bool, VmdkError> {
        let mut any = false;
        let mut done = 0usize;
        while done < buf.len() {
            let at = pos + done as u64;
            let i = self.extents.partition_point(|e| e.start + e.len <= at);
            let Some(extent) = self.extents.get_mut(i) else {
                // Past the last extent: zeros.
                break;
            };
            let within = at - extent.start;
            let room = (extent.len - within).min((buf.len() - done) as u64) as usize;
            let piece = &mut buf[done..done + room];
            let taken = match &mut extent.data {
                ExtentData::Zero => room,
                ExtentData::Flat { file, path, offset } => {
                    let from = offset.checked_add(within).ok_or_else(|| {
                        format_err(path, "a flat extent's offset is out of range")
                    })?;
                    file.read_exact_at(piece, from).map_err(io_err(path))?;
                    any = true;
                    room
                }
                ExtentData::Sparse(sparse) => {
                    let index = within / sparse.grain;
                    let in_grain = within % sparse.grain;
                    let take = ((sparse.grain - in_grain) as usize).min(room);
                    let piece = &mut piece[..take];
                    match sparse.lookup(index)? {
                        Grain::Zero => {}
                        Grain::Unallocated => {
                            if let Some(parent) = self.parent.as_mut() {
                                any |= parent.read(at, piece)?;
                            }
                        }
                        Grain::At(sector) => {
                            sparse.read_grain(index, sector, in_grain, piece)?;
                            any = true;
                        }
                    }
                    take
                }
            };
            done += taken;
        }
        Ok(any)
    }
}

impl DiskSource for VmdkImage {
    fn size(&self) -> u64 {
        self.capacity
    }

    fn for_each_extent(&mut self, each: &mut Each<'_>) -> Result<(), VmdkError> {
        let mut buf = vec![0u8; CHUNK as usize];
        let mut pos = 0;
        while pos < self.capacity {
            let len = (self.capacity - pos).min(CHUNK);
            let piece = &mut buf[..len as usize];
            if self.read(pos, piece)? {
                each(pos, len, Some(piece))?;
                piece.fill(0);
            } else {
                each(pos, len, None)?;
            }
            pos += len;
        }
        Ok(())
    }
}

/// The text of a descriptor file.
fn descriptor_text(file: &File, path: &Path, len: u64) -> Result<String, VmdkError> {
    if len > MAX_DESCRIPTOR {
        return Err(format_err(
            path,
            "no KDMV magic, and too large for a descriptor",
        ));
    }
    let mut raw = Vec::new();
    file.take(MAX_DESCRIPTOR)
        .read_to_end(&mut raw)
        .map_err(io_err(path))?;
    String::from_utf8(raw).map_err(|_| format_err(path, "no KDMV magic and no text descriptor"))
}

/// The extents and the parent a descriptor names (what kiln needs of it).
fn parse_descriptor(text: &str) -> Descriptor {
    let mut d = Descriptor::default();
    let mut parent_cid_none = false;
    for line in text.lines() {
        let line = line.trim_matches(|c: char| c.is_whitespace() || c == '\0');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            let value = value.trim().trim_matches('"');
            match key.trim() {
                "parentFileNameHint" if !value.is_empty() => d.parent = Some(value.to_owned()),
                "parentCID" => parent_cid_none = value.eq_ignore_ascii_case("ffffffff"),
                _ => {}
            }
            continue;
        }
        if let Some(extent) = parse_extent(line) {
            d.extents.push(extent);
        }
    }
    if parent_cid_none {
        d.parent = None;
    }
    d
}

/// `RW 4192256 SPARSE "disk-s001.vmdk"`, `RW 8388608 FLAT "disk-flat.vmdk" 0`, `RW 100 ZERO`.
fn parse_extent(line: &str) -> Option<ExtentLine> {
    let mut words = line.splitn(3, char::is_whitespace);
    let access = words.next()?;
    if !matches!(access, "RW" | "RDONLY" | "NOACCESS") {
        return None;
    }
    let sectors = words.next()?.parse().ok()?;
    let rest = words.next()?.trim_start();
    let (kind, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let rest = rest.trim();
    let (file, after) = match rest.strip_prefix('"') {
        Some(quoted) => quoted.split_once('"')?,
        None => ("", rest),
    };
    let offset = match after.trim() {
        "" => 0,
        n => n.parse().ok()?,
    };
    Some(ExtentLine {
        access: access.to_owned(),
        sectors,
        kind: kind.to_owned(),
        file: file.to_owned(),
        offset,
    })
}

/// Opens a descriptor's extents (files relative to the descriptor's directory); the capacity.
fn open_extents(path: &Path, lines: &[ExtentLine]) -> Result<(u64, Vec<Extent>), VmdkError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut start = 0u64;
    let mut extents = Vec::with_capacity(lines.len());
    for line in lines {
        let len = sectors_to_bytes(path, line.sectors, "an extent")?;
        let file_path = || -> Result<PathBuf, VmdkError> {
            if line.file.is_empty() {
                return Err(format_err(
                    path,
                    format!("a {} extent names no file", line.kind),
                ));
            }
            Ok(dir.join(&line.file))
        };
        let data = match (line.access.as_str(), line.kind.as_str()) {
            ("NOACCESS", _) | (_, "ZERO") => ExtentData::Zero,
            (_, "FLAT" | "VMFS") => {
                let p = file_path()?;
                let file = File::open(&p).map_err(io_err(&p))?;
                let offset = sectors_to_bytes(path, line.offset, "a flat extent's offset")?;
                ExtentData::Flat {
                    file,
                    path: p,
                    offset,
                }
            }
            (_, "SPARSE") => {
                let p = file_path()?;
                let file = File::open(&p).map_err(io_err(&p))?;
                let file_len = file.metadata().map_err(io_err(&p))?.len();
                let mut head = [0u8; 512];
                let n = read_up_to(&file, &mut head, 0).map_err(io_err(&p))?;
                if n < head.len() || le32(&head, 0) != MAGIC {
                    return Err(format_err(&p, "a sparse extent without a KDMV header"));
                }
                let (sparse, _, _) = Sparse::open(file, &p, &head, file_len)?;
                ExtentData::Sparse(Box::new(sparse))
            }
            (_, other) => {
                return Err(format_err(
                    path,
                    format!("{other} extents are not supported"),
                ))
            }
        };
        extents.push(Extent { start, len, data });
        start = start
            .checked_add(len)
            .ok_or_else(|| format_err(path, "the extents add up to more than 16 EiB"))?;
    }
    Ok((start, extents))
}

impl Sparse {
    /// Checks the header `head` of `file` (`len` bytes); the extent, its capacity in bytes
    /// and its embedded descriptor, if any.
    fn open(
        file: File,
        path: &Path,
        head: &[u8; 512],
        len: u64,
    ) -> Result<(Sparse, u64, Option<String>), VmdkError> {
        let fail = |what: String| format_err(path, what);
        let flags = le32(head, 8);
        let capacity_sectors = le64(head, 12);
        let grain_sectors = le64(head, 20);
        if grain_sectors == 0 || grain_sectors > 2048 {
            return Err(fail(format!("grain size {grain_sectors} sectors")));
        }
        let gtes = u64::from(le32(head, 44));
        if gtes == 0 || gtes > 65536 {
            return Err(fail(format!("{gtes} entries per grain table")));
        }
        let mut gd_offset = le64(head, 56);
        if gd_offset == GD_AT_END {
            if len < 1536 {
                return Err(fail("too short for a footer".into()));
            }
            let mut footer = [0u8; 1024];
            file.read_exact_at(&mut footer, len - 1536)
                .map_err(io_err(path))?;
            if le32(&footer, 12) != MARKER_FOOTER || le32(&footer, 512) != MAGIC {
                return Err(fail("no footer marker".into()));
            }
            gd_offset = le64(&footer[512..], 56);
        }
        let capacity = sectors_to_bytes(path, capacity_sectors, "a capacity")?;
        let grains = capacity_sectors.div_ceil(grain_sectors);
        let tables = grains.div_ceil(gtes);
        // Every table needs at least 4 bytes in the file; anything else is a lie about the capacity.
        if tables > MAX_TABLES || tables * 4 > len {
            return Err(fail(format!(
                "a capacity of {capacity_sectors} sectors does not fit in {len} bytes"
            )));
        }
        let mut raw = vec![0u8; (tables * 4) as usize];
        let gd_at = sectors_to_bytes(path, gd_offset, "the grain directory's offset")?;
        file.read_exact_at(&mut raw, gd_at).map_err(io_err(path))?;
        let directory = raw.chunks_exact(4).map(|c| le32(c, 0)).collect();
        let (desc_offset, desc_sectors) = (le64(head, 28), le64(head, 36));
        let embedded = if desc_offset != 0 && desc_sectors != 0 {
            let size = desc_sectors.min(MAX_DESCRIPTOR / SECTOR) * SECTOR;
            let mut text = vec![0u8; size as usize];
            let at = sectors_to_bytes(path, desc_offset, "the descriptor's offset")?;
            let n = read_up_to(&file, &mut text, at).map_err(io_err(path))?;
            text.truncate(n);
            let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
            Some(String::from_utf8_lossy(&text[..end]).into_owned())
        } else {
            None
        };
        let sparse = Sparse {
            file,
            path: path.to_path_buf(),
            grain: grain_sectors * SECTOR,
            gtes,
            directory,
            compressed: flags & FLAG_COMPRESSED != 0,
            markers: flags & FLAG_MARKERS != 0,
            zero_grain: flags & FLAG_ZERO_GRAIN != 0,
            table: None,
            inflated: None,
        };
        Ok((sparse, capacity, embedded))
    }

    fn lookup(&mut self, index: u64) -> Result<Grain, VmdkError> {
        let t = index / self.gtes;
        let Some(&gt) = usize::try_from(t).ok().and_then(|t| self.directory.get(t)) else {
            return Ok(Grain::Unallocated);
        };
        if gt == 0 {
            return Ok(Grain::Unallocated);
        }
        let cached = matches!(&self.table, Some((i, _)) if *i == t);
        if !cached {
            let mut raw = vec![0u8; (self.gtes * 4) as usize];
            self.file
                .read_exact_at(&mut raw, u64::from(gt) * SECTOR)
                .map_err(io_err(&self.path))?;
            let entries = raw.chunks_exact(4).map(|c| le32(c, 0)).collect();
            self.table = Some((t, entries));
        }
        let entry = self
            .table
            .as_ref()
            .and_then(|(_, e)| e.get((index % self.gtes) as usize).copied())
            .unwrap_or(0);
        Ok(match entry {
            0 => Grain::Unallocated,
            GTE_ZEROED if self.zero_grain => Grain::Zero,
            sector => Grain::At(u64::from(sector)),
        })
    }

    /// Reads `out.len()` bytes from `in_grain` into grain `index`, stored at `sector`.
    fn read_grain(
        &mut self,
        index: u64,
        sector: u64,
        in_grain: u64,
        out: &mut [u8],
    ) -> Result<(), VmdkError> {
        let at = sector * SECTOR;
        if !self.compressed {
            return self
                .file
                .read_exact_at(out, at + in_grain)
                .map_err(io_err(&self.path));
        }
        let cached = matches!(&self.inflated, Some((i, _)) if *i == index);
        if !cached {
            let grain = self.inflate(index, at)?;
            self.inflated = Some((index, grain));
        }
        if let Some((_, grain)) = &self.inflated {
            let from = in_grain as usize;
            out.copy_from_slice(&grain[from..from + out.len()]);
        }
        Ok(())
    }

    /// A compressed grain's bytes (zeros past what its stream holds).
    fn inflate(&self, index: u64, at: u64) -> Result<Vec<u8>, VmdkError> {
        let fail = |what: String| format_err(&self.path, what);
        // Deflate never grows a grain by more than a small fraction; more is damage.
        let most = self.grain * 2 + 4096;
        let (data_at, size) = if self.markers {
            let mut frame = [0u8; 12];
            self.file
                .read_exact_at(&mut frame, at)
                .map_err(io_err(&self.path))?;
            let lba = le64(&frame, 0);
            if lba != index * (self.grain / SECTOR) {
                return Err(fail(format!(
                    "grain {index} has the wrong LBA in its marker"
                )));
            }
            let size = u64::from(le32(&frame, 8));
            if size > most {
                return Err(fail(format!(
                    "grain {index} claims {size} compressed bytes"
                )));
            }
            (at + 12, size)
        } else {
            (at, most)
        };
        let mut compressed = vec![0u8; size as usize];
        let got = read_up_to(&self.file, &mut compressed, data_at).map_err(io_err(&self.path))?;
        let mut grain = vec![0u8; self.grain as usize];
        let mut decoder = ZlibDecoder::new(&compressed[..got]);
        let mut filled = 0;
        while filled < grain.len() {
            match decoder.read(&mut grain[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => return Err(fail(format!("grain {index} does not inflate: {e}"))),
            }
        }
        Ok(grain)
    }
}

/// Test helpers shared with the VMDK writer's and the VMware export's tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;
    use std::process::Command;

    /// `qemu-img create` of a twoGbMaxExtentSparse VMDK (what `vmware-vdiskmanager -t 1`
    /// makes) at `path`: `size` big, and a delta over `backing` (a VMDK named relative to
    /// `path`'s directory) when given.
    pub fn create_split_sparse(path: &Path, size: Option<&str>, backing: Option<&str>) {
        let mut cmd = Command::new("qemu-img");
        cmd.args([
            "create",
            "-q",
            "-f",
            "vmdk",
            "-o",
            "subformat=twoGbMaxExtentSparse",
        ]);
        if let Some(b) = backing {
            cmd.args(["-b", b, "-F", "vmdk"]);
        }
        cmd.arg(path).args(size);
        if let Some(dir) = path.parent() {
            cmd.current_dir(dir);
        }
        run(&mut cmd);
    }

    /// Runs `cmd`, failing the test with its output unless it succeeds; its stdout.
    pub fn run(cmd: &mut Command) -> String {
        let out = cmd.output().expect("the command runs");
        assert!(
            out.status.success(),
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::vmdk::{convert, read_to_raw, Subformat};
    use std::process::Command;
    use tokio_util::sync::CancellationToken;

    use testing::run;

    fn write(image: &Path, format: &str, pattern: &str, offset: &str, len: &str) {
        run(Command::new("qemu-io")
            .args(["-f", format, "-c"])
            .arg(format!("write -P {pattern} {offset} {len}"))
            .arg(image));
    }

    fn qcow2(dir: &Path, size: &str, writes: &[(&str, &str, &str)]) -> PathBuf {
        let disk = dir.join("src.qcow2");
        run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&disk)
            .arg(size));
        for (pattern, offset, len) in writes {
            write(&disk, "qcow2", pattern, offset, len);
        }
        disk
    }

    /// kiln converts `vmdk` (read by this module) to both subformats it writes; qemu-img must
    /// find each identical to `vmdk` as qemu reads it.
    fn assert_kiln_reads_it_as_qemu_does(vmdk: &Path, what: &str) {
        let dir = vmdk.parent().unwrap();
        for subformat in [Subformat::MonolithicSparse, Subformat::StreamOptimized] {
            let out = dir.join(format!("kiln-{subformat:?}.vmdk"));
            convert(vmdk, &out, "lsilogic", subformat, &CancellationToken::new()).unwrap();
            let same = run(Command::new("qemu-img").arg("compare").arg(vmdk).arg(&out));
            assert!(same.contains("Images are identical"), "{what}: {same}");
            std::fs::remove_file(out).unwrap();
        }
    }

    #[test]
    fn reads_every_subformat_qemu_img_writes() {
        let dir = tempfile::tempdir().unwrap();
        let source = qcow2(
            dir.path(),
            "48M",
            &[
                ("0xab", "0", "100k"),
                ("0x11", "130k", "20k"),
                ("0x77", "40M", "64k"),
                ("0x5a", "47M", "1M"),
            ],
        );
        for subformat in [
            "monolithicSparse",
            "monolithicFlat",
            "streamOptimized",
            "twoGbMaxExtentFlat",
        ] {
            let vmdk = dir.path().join(format!("{subformat}.vmdk"));
            run(Command::new("qemu-img")
                .args(["convert", "-O", "vmdk", "-o"])
                .arg(format!("subformat={subformat}"))
                .arg(&source)
                .arg(&vmdk));
            assert_kiln_reads_it_as_qemu_does(&vmdk, subformat);
        }
    }

    /// twoGbMaxExtentSparse (what `vmware-vdiskmanager -t 1` makes): a descriptor and 2 GB
    /// sparse extents; data across the boundary between the first two.
    #[test]
    fn reads_split_sparse_disks_across_their_extents() {
        let dir = tempfile::tempdir().unwrap();
        let vmdk = dir.path().join("split.vmdk");
        testing::create_split_sparse(&vmdk, Some("2100M"), None);
        write(&vmdk, "vmdk", "0x42", "2047M", "2M");
        write(&vmdk, "vmdk", "0x24", "0", "64k");
        write(&vmdk, "vmdk", "0x99", "2099M", "1M");
        assert!(dir.path().join("split-s002.vmdk").is_file());
        let mut raw = Vec::new();
        assert_eq!(read_to_raw(&vmdk, &mut raw).unwrap(), 2100 << 20);
        assert!(raw[(2047 << 20)..(2049 << 20)].iter().all(|&b| b == 0x42));
        assert!(raw[(2049 << 20)..(2099 << 20)].iter().all(|&b| b == 0));
        assert_kiln_reads_it_as_qemu_does(&vmdk, "twoGbMaxExtentSparse");
    }

    /// A linked clone's disk: deltas (one monolithic, one split) over a parent, each holding
    /// some grains, one of them overwriting the parent's data with zeros.
    #[test]
    fn a_delta_disk_reads_through_its_parents() {
        let dir = tempfile::tempdir().unwrap();
        let parent = dir.path().join("parent.vmdk");
        run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "vmdk"])
            .arg(&parent)
            .arg("8M"));
        write(&parent, "vmdk", "0x11", "0", "4M");
        let child = dir.path().join("child.vmdk");
        let grandchild = dir.path().join("grandchild.vmdk");
        // Relative hints: found beside the delta, wherever kiln runs.
        run(Command::new("qemu-img")
            .args([
                "create",
                "-q",
                "-f",
                "vmdk",
                "-b",
                "parent.vmdk",
                "-F",
                "vmdk",
            ])
            .arg(&child)
            .current_dir(dir.path()));
        write(&child, "vmdk", "0x22", "1M", "1M");
        write(&child, "vmdk", "0", "3M", "64k");
        testing::create_split_sparse(&grandchild, None, Some("child.vmdk"));
        write(&grandchild, "vmdk", "0x33", "1536k", "1M");
        let mut raw = Vec::new();
        read_to_raw(&grandchild, &mut raw).unwrap();
        assert_eq!(raw.len(), 8 << 20);
        for (from, to, byte) in [
            (0, 1 << 20, 0x11),
            (1 << 20, 1536 << 10, 0x22),
            (1536 << 10, 2560 << 10, 0x33),
            (2560 << 10, 3 << 20, 0x11),
            (3 << 20, (3 << 20) + (64 << 10), 0),
            ((3 << 20) + (64 << 10), 4 << 20, 0x11),
            (4 << 20, 8 << 20, 0),
        ] {
            assert!(raw[from..to].iter().all(|&b| b == byte), "{from}..{to}");
        }
        assert_kiln_reads_it_as_qemu_does(&child, "delta");
        assert_kiln_reads_it_as_qemu_does(&grandchild, "delta of a delta");
    }

    /// Damaged VMDKs are errors, never panics or runaway allocations: truncations, header
    /// fields and metadata bytes changed, lying descriptors, a parent chain that loops.
    #[test]
    fn corrupt_vmdks_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let source = qcow2(
            dir.path(),
            "4M",
            &[("0x5a", "0", "1M"), ("0x17", "3M", "64k")],
        );
        let bad = dir.path().join("bad.vmdk");
        let read = |bytes: &[u8]| {
            std::fs::write(&bad, bytes).unwrap();
            read_to_raw(&bad, &mut std::io::sink())
        };
        for subformat in ["monolithicSparse", "streamOptimized"] {
            let good = dir.path().join(format!("{subformat}.vmdk"));
            run(Command::new("qemu-img")
                .args(["convert", "-O", "vmdk", "-o"])
                .arg(format!("subformat={subformat}"))
                .arg(&source)
                .arg(&good));
            let bytes = std::fs::read(&good).unwrap();
            assert!(read(&bytes).is_ok());
            for len in [
                0,
                3,
                100,
                511,
                512,
                1000,
                4096,
                bytes.len() / 2,
                bytes.len() - 1,
            ] {
                let _ = read(&bytes[..len]);
            }
            assert!(read(&bytes[..511]).is_err());
            for (at, value) in [
                (12, u64::MAX),            // capacity
                (20, 0),                   // grain size
                (20, 4096),                // grain size
                (44, u64::from(u32::MAX)), // entries per table
                (56, 1 << 40),             // directory offset
                (56, 0),                   // directory offset
                (28, u64::MAX),            // descriptor offset
            ] {
                let mut b = bytes.clone();
                b[at..at + 8].copy_from_slice(&value.to_le_bytes());
                let _ = read(&b);
            }
            // Every metadata byte of the first 64 KiB (header, descriptor, tables), one at a
            // time, and the footer's, scrambled.
            let mut x: u64 = 0x2545_f491_4f6c_dd1d;
            for _ in 0..400 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let mut b = bytes.clone();
                let at = if x & 1 == 0 {
                    (x >> 8) as usize % b.len().min(64 << 10)
                } else {
                    b.len() - 1 - (x >> 8) as usize % 1536.min(b.len())
                };
                b[at] ^= (x >> 40) as u8 | 1;
                let _ = read(&b);
            }
        }
        let descriptor = |extents: &str| {
            format!("# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n{extents}\n")
        };
        for (extents, error) in [
            ("RW 99999999999999999 FLAT \"x\" 0", "out of range"),
            ("RW 100 FLAT \"missing-flat.vmdk\" 0", "could not read"),
            (
                "RW 100 VMFSSPARSE \"x\"",
                "VMFSSPARSE extents are not supported",
            ),
            ("RW 100 SPARSE", "names no file"),
            (
                "RW 100 SPARSE \"bad.vmdk\"",
                "a sparse extent without a KDMV header",
            ),
            ("", "no extent descriptor"),
        ] {
            let err = read(descriptor(extents).as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(error), "{extents}: {err}");
        }
        // A flat extent whose offset points past its file's end.
        std::fs::write(dir.path().join("flat.bin"), [7u8; 512]).unwrap();
        let err = read(descriptor("RW 2 FLAT \"flat.bin\" 1").as_bytes()).unwrap_err();
        assert!(matches!(err, VmdkError::Io { .. }), "{err}");
        // A delta that is its own parent.
        let looping = dir.path().join("loop.vmdk");
        std::fs::write(
            &looping,
            "# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=2\nparentFileNameHint=\"loop.vmdk\"\nRW 1 ZERO\n",
        )
        .unwrap();
        let err = read_to_raw(&looping, &mut std::io::sink()).unwrap_err();
        assert!(err.to_string().contains("a chain of more than 32"), "{err}");
        assert!(read(b"COWD and more")
            .unwrap_err()
            .to_string()
            .contains("COWD"));
        assert!(read(&vec![0xffu8; 4096]).is_err());
    }
}
