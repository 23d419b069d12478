//! streamOptimized VMDK, the disk format inside OVAs and VirtualBox/VMware Vagrant boxes: a sparse
//! extent whose 64 KiB grains are deflate-compressed and framed by markers, with the grain tables,
//! the grain directory and a footer at the end, so it can be written in one pass.
//!
//! The writer takes a qcow2 image and streams it cluster by cluster (no raw copy), skips holes and
//! all-zero grains, and gives the same bytes for the same input. The reader exists so tests (and
//! `kiln`'s own checks) can read back what was written without trusting the writer.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};

use super::qcow2::{Qcow2, Qcow2Error};

const SECTOR: u64 = 512;
/// Grain size in sectors (64 KiB), as VMware and qemu write.
const GRAIN_SECTORS: u64 = 128;
const GRAIN: u64 = GRAIN_SECTORS * SECTOR;
const GTES_PER_GT: u64 = 512;
const DESCRIPTOR_SECTORS: u64 = 20;
/// Header and descriptor take the first grain, so grains start aligned.
const OVERHEAD_SECTORS: u64 = 128;
const GD_AT_END: u64 = u64::MAX;
const MAGIC: u32 = 0x564d_444b; // "KDMV"
const FLAGS: u32 = 0x1 | 0x1_0000 | 0x2_0000; // newline check, compressed grains, markers
const MARKER_EOS: u32 = 0;
const MARKER_GT: u32 = 1;
const MARKER_GD: u32 = 2;
const MARKER_FOOTER: u32 = 3;

/// Why a VMDK could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum VmdkError {
    #[error(transparent)]
    Source(#[from] Qcow2Error),
    #[error("{path} is not a streamOptimized VMDK kiln can read: {what}")]
    Format { path: PathBuf, what: String },
    #[error("could not write or read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmdkInfo {
    /// Guest size in bytes.
    pub capacity: u64,
    /// Size of the .vmdk file.
    pub file_size: u64,
    /// Grains that hold data.
    pub grains: u64,
}

fn header(capacity_sectors: u64, gd_offset: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        h[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(&MAGIC.to_le_bytes());
    put(&3u32.to_le_bytes()); // version 3: streamOptimized
    put(&FLAGS.to_le_bytes());
    put(&capacity_sectors.to_le_bytes());
    put(&GRAIN_SECTORS.to_le_bytes());
    put(&1u64.to_le_bytes()); // descriptor offset
    put(&DESCRIPTOR_SECTORS.to_le_bytes());
    put(&(GTES_PER_GT as u32).to_le_bytes());
    put(&0u64.to_le_bytes()); // no redundant grain directory
    put(&gd_offset.to_le_bytes());
    put(&OVERHEAD_SECTORS.to_le_bytes());
    put(&[0, b'\n', b' ', b'\r', b'\n']); // clean shutdown, then the newline-check characters
    put(&1u16.to_le_bytes()); // deflate
    h
}

fn marker(value: u64, kind: u32) -> [u8; 512] {
    let mut m = [0u8; 512];
    m[..8].copy_from_slice(&value.to_le_bytes());
    m[12..16].copy_from_slice(&kind.to_le_bytes());
    m
}

fn descriptor(capacity_sectors: u64, cid: u32, file_name: &str, adapter: &str) -> String {
    let cylinders = (capacity_sectors / (16 * 63)).clamp(1, 65535);
    format!(
        "# Disk DescriptorFile\nversion=1\nCID={cid:08x}\nparentCID=ffffffff\ncreateType=\"streamOptimized\"\n\n\
         # Extent description\nRW {capacity_sectors} SPARSE \"{file_name}\"\n\n\
         # The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\nddb.geometry.cylinders = \"{cylinders}\"\n\
         ddb.geometry.heads = \"16\"\nddb.geometry.sectors = \"63\"\nddb.adapterType = \"{adapter}\"\n"
    )
}

struct Writer {
    out: BufWriter<File>,
    path: PathBuf,
    /// Sectors written so far.
    sector: u64,
    /// Sector of each grain's marker (0: not stored).
    table: Vec<u32>,
    grain: Vec<u8>,
    grain_index: u64,
    grain_has_data: bool,
    stored: u64,
    content: Sha256,
    compressed: Vec<u8>,
}

impl Writer {
    fn io(&self, source: std::io::Error) -> VmdkError {
        VmdkError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), VmdkError> {
        debug_assert_eq!(bytes.len() as u64 % SECTOR, 0);
        self.out.write_all(bytes).map_err(|e| self.io(e))?;
        self.sector += bytes.len() as u64 / SECTOR;
        Ok(())
    }

    /// Adds guest bytes at `offset` (`None`: `len` bytes of hole). Input arrives in guest order.
    fn feed(&mut self, offset: u64, data: Option<&[u8]>, len: u64) -> Result<(), VmdkError> {
        let mut pos = offset;
        let end = offset + len;
        while pos < end {
            let index = pos / GRAIN;
            if index != self.grain_index {
                self.flush_grain()?;
                self.grain_index = index;
            }
            let within = (pos % GRAIN) as usize;
            let take = ((GRAIN - pos % GRAIN).min(end - pos)) as usize;
            if let Some(data) = data {
                let from = (pos - offset) as usize;
                let piece = &data[from..from + take];
                if piece.iter().any(|&b| b != 0) {
                    self.grain[within..within + take].copy_from_slice(piece);
                    self.grain_has_data = true;
                }
            }
            pos += take as u64;
        }
        Ok(())
    }

    fn flush_grain(&mut self) -> Result<(), VmdkError> {
        if !self.grain_has_data {
            return Ok(());
        }
        let lba = self.grain_index * GRAIN_SECTORS;
        self.content.update(lba.to_le_bytes());
        self.content.update(&self.grain);
        self.compressed.clear();
        let mut encoder =
            ZlibEncoder::new(std::mem::take(&mut self.compressed), Compression::new(6));
        encoder.write_all(&self.grain).map_err(|e| self.io(e))?;
        let compressed = encoder.finish().map_err(|e| self.io(e))?;
        let mut frame = Vec::with_capacity(compressed.len() + 512);
        frame.extend_from_slice(&lba.to_le_bytes());
        frame.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
        frame.extend_from_slice(&compressed);
        frame.resize(frame.len().div_ceil(512) * 512, 0);
        let at = u32::try_from(self.sector)
            .map_err(|_| self.io(std::io::Error::other("VMDK larger than 2 TiB")))?;
        self.table[self.grain_index as usize] = at;
        self.write(&frame)?;
        self.compressed = compressed;
        self.grain.fill(0);
        self.grain_has_data = false;
        self.stored += 1;
        Ok(())
    }
}

/// Writes `source` as a streamOptimized VMDK at `output` (through `<output>.tmp`); `adapter` is the
/// descriptor's `ddb.adapterType` (`lsilogic`, `ide`, `buslogic`).
pub fn write_from_qcow2(
    source: &Path,
    output: &Path,
    adapter: &str,
) -> Result<VmdkInfo, VmdkError> {
    let qcow2 = Qcow2::open(source)?;
    let mut tmp = output.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let file_name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let result = write(&qcow2, &tmp, &file_name, adapter);
    match result {
        Ok(info) => {
            std::fs::rename(&tmp, output).map_err(|source| VmdkError::Io {
                path: output.to_path_buf(),
                source,
            })?;
            Ok(info)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn write(
    qcow2: &Qcow2,
    path: &Path,
    file_name: &str,
    adapter: &str,
) -> Result<VmdkInfo, VmdkError> {
    let io = |source| VmdkError::Io {
        path: path.to_path_buf(),
        source,
    };
    let capacity = qcow2.size();
    let capacity_sectors = capacity.div_ceil(SECTOR);
    let grains = capacity.div_ceil(GRAIN);
    let tables = grains.div_ceil(GTES_PER_GT);
    let file = File::create(path).map_err(io)?;
    let mut w = Writer {
        out: BufWriter::with_capacity(1 << 20, file),
        path: path.to_path_buf(),
        sector: 0,
        table: vec![0; (tables * GTES_PER_GT) as usize],
        grain: vec![0; GRAIN as usize],
        grain_index: 0,
        grain_has_data: false,
        stored: 0,
        content: Sha256::new(),
        compressed: Vec::new(),
    };
    // Header and a placeholder descriptor; the descriptor's CID is filled in at the end.
    w.write(&header(capacity_sectors, GD_AT_END))?;
    w.write(&vec![0u8; ((OVERHEAD_SECTORS - 1) * SECTOR) as usize])?;

    qcow2.for_each_cluster(|offset, data| {
        let len = (capacity - offset).min(qcow2.cluster_size());
        w.feed(offset, data, len).map_err(|e| match e {
            VmdkError::Io { source, .. } => Qcow2Error::Io {
                path: path.to_path_buf(),
                source,
            },
            other => Qcow2Error::Corrupt {
                path: path.to_path_buf(),
                what: other.to_string(),
            },
        })
    })?;
    w.flush_grain()?;

    // Grain tables (only those with data), then the directory pointing at them.
    let mut directory = vec![0u32; tables as usize];
    let per_table: Vec<Vec<u8>> = w
        .table
        .chunks(GTES_PER_GT as usize)
        .map(|entries| {
            if entries.iter().all(|&e| e == 0) {
                Vec::new()
            } else {
                entries.iter().flat_map(|e| e.to_le_bytes()).collect()
            }
        })
        .collect();
    for (slot, bytes) in directory.iter_mut().zip(&per_table) {
        if bytes.is_empty() {
            continue;
        }
        w.write(&marker(bytes.len() as u64 / SECTOR, MARKER_GT))?;
        *slot = u32::try_from(w.sector)
            .map_err(|_| io(std::io::Error::other("VMDK larger than 2 TiB")))?;
        w.write(bytes)?;
    }
    let mut gd: Vec<u8> = directory.iter().flat_map(|e| e.to_le_bytes()).collect();
    gd.resize(gd.len().div_ceil(512) * 512, 0);
    w.write(&marker(gd.len() as u64 / SECTOR, MARKER_GD))?;
    let gd_offset = w.sector;
    w.write(&gd)?;
    w.write(&marker(1, MARKER_FOOTER))?;
    w.write(&header(capacity_sectors, gd_offset))?;
    w.write(&marker(0, MARKER_EOS))?;

    let digest = w.content.clone().finalize();
    let cid = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]);
    let text = descriptor(capacity_sectors, cid, file_name, adapter);
    let file_size = w.sector * SECTOR;
    let stored = w.stored;
    let mut file = w.out.into_inner().map_err(|e| io(e.into_error()))?;
    file.seek(SeekFrom::Start(SECTOR)).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(VmdkInfo {
        capacity,
        file_size,
        grains: stored,
    })
}

/// Reads a streamOptimized VMDK back into raw guest bytes, written to `out` (holes as zeros).
/// Returns the guest size.
pub fn read_to_raw(path: &Path, out: &mut dyn Write) -> Result<u64, VmdkError> {
    let fail = |what: String| VmdkError::Format {
        path: path.to_path_buf(),
        what,
    };
    let io = |source| VmdkError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut head = [0u8; 512];
    file.read_exact(&mut head).map_err(io)?;
    let le32 = |h: &[u8], at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    let le64 = |h: &[u8], at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[at..at + 8]);
        u64::from_le_bytes(b)
    };
    if le32(&head, 0) != MAGIC {
        return Err(fail("no KDMV magic".into()));
    }
    let capacity_sectors = le64(&head, 12);
    let grain_sectors = le64(&head, 20);
    if grain_sectors == 0 || grain_sectors > 2048 {
        return Err(fail(format!("grain size {grain_sectors} sectors")));
    }
    let gtes = u64::from(le32(&head, 44));
    let mut gd_offset = le64(&head, 56);
    if gd_offset == GD_AT_END {
        if len < 1536 {
            return Err(fail("too short for a footer".into()));
        }
        let mut footer = [0u8; 1024];
        file.seek(SeekFrom::Start(len - 1536)).map_err(io)?;
        file.read_exact(&mut footer).map_err(io)?;
        if le32(&footer, 12) != MARKER_FOOTER {
            return Err(fail("no footer marker".into()));
        }
        gd_offset = le64(&footer[512..], 56);
    }
    let grain = grain_sectors * SECTOR;
    let grains = capacity_sectors.div_ceil(grain_sectors);
    let tables = grains.div_ceil(gtes);
    let read_u32s = |file: &mut File, sector: u64, n: u64| -> Result<Vec<u32>, VmdkError> {
        let mut raw = vec![0u8; (n * 4) as usize];
        file.seek(SeekFrom::Start(sector * SECTOR)).map_err(io)?;
        file.read_exact(&mut raw).map_err(io)?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    };
    let directory = read_u32s(&mut file, gd_offset, tables)?;
    let capacity = capacity_sectors * SECTOR;
    let zeros = vec![0u8; grain as usize];
    let mut data = vec![0u8; grain as usize];
    let mut written = 0u64;
    for (t, &gt) in directory.iter().enumerate() {
        let entries = if gt == 0 {
            vec![0; gtes as usize]
        } else {
            read_u32s(&mut file, u64::from(gt), gtes)?
        };
        for (g, &at) in entries.iter().enumerate() {
            let index = t as u64 * gtes + g as u64;
            if index >= grains {
                break;
            }
            let take = (capacity - index * grain).min(grain) as usize;
            if at == 0 {
                out.write_all(&zeros[..take]).map_err(io)?;
            } else {
                let mut frame = [0u8; 12];
                file.seek(SeekFrom::Start(u64::from(at) * SECTOR))
                    .map_err(io)?;
                file.read_exact(&mut frame).map_err(io)?;
                if le64(&frame, 0) != index * grain_sectors {
                    return Err(fail(format!(
                        "grain {index} has the wrong LBA in its marker"
                    )));
                }
                let size = le32(&frame, 8) as u64;
                let mut decoder = ZlibDecoder::new((&mut file).take(size));
                decoder
                    .read_exact(&mut data)
                    .map_err(|e| fail(format!("grain {index} does not inflate: {e}")))?;
                out.write_all(&data[..take]).map_err(io)?;
            }
            written += take as u64;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn run(cmd: &mut Command) -> String {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn sample_disk(dir: &Path, size: &str) -> PathBuf {
        let disk = dir.join("src.qcow2");
        run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&disk)
            .arg(size));
        // Data at the start, across a grain boundary, past the first grain table (32 MiB), and at the end.
        for (pattern, offset, len) in [
            ("0xab", "0", "100k"),
            ("0x11", "130k", "20k"),
            ("0x77", "40M", "64k"),
            ("0x5a", "47M", "1M"),
        ] {
            run(Command::new("qemu-io")
                .arg("-c")
                .arg(format!("write -P {pattern} {offset} {len}"))
                .arg(&disk));
        }
        disk
    }

    /// The real judge: qemu-img reads kiln's VMDK as streamOptimized, finds it consistent, and says
    /// its contents equal the source's.
    #[test]
    fn qemu_img_accepts_and_compares_equal() {
        let dir = tempfile::tempdir().unwrap();
        let disk = sample_disk(dir.path(), "48M");
        let vmdk = dir.path().join("disk.vmdk");
        let info = write_from_qcow2(&disk, &vmdk, "lsilogic").unwrap();
        assert_eq!(info.capacity, 48 << 20);
        assert_eq!(info.grains, 2 + 1 + 1 + 16);
        let text = run(Command::new("qemu-img").arg("info").arg(&vmdk));
        assert!(text.contains("file format: vmdk"), "{text}");
        assert!(text.contains("create type: streamOptimized"), "{text}");
        run(Command::new("qemu-img").arg("check").arg(&vmdk));
        let same = run(Command::new("qemu-img")
            .arg("compare")
            .arg(&disk)
            .arg(&vmdk));
        assert!(same.contains("Images are identical"), "{same}");
        assert!(!dir.path().join("disk.vmdk.tmp").exists());
    }

    #[test]
    fn reader_gives_back_the_raw_image() {
        let dir = tempfile::tempdir().unwrap();
        let disk = sample_disk(dir.path(), "48M");
        let vmdk = dir.path().join("disk.vmdk");
        write_from_qcow2(&disk, &vmdk, "ide").unwrap();
        let raw = dir.path().join("raw");
        run(Command::new("qemu-img")
            .args(["convert", "-O", "raw"])
            .arg(&disk)
            .arg(&raw));
        let mut back = Vec::new();
        assert_eq!(read_to_raw(&vmdk, &mut back).unwrap(), 48 << 20);
        assert!(back == std::fs::read(raw).unwrap());
    }

    #[test]
    fn odd_sizes_and_empty_disks_round_trip_through_qemu_img() {
        let dir = tempfile::tempdir().unwrap();
        for size in ["1000k", "3M"] {
            let disk = dir.path().join(format!("{size}.qcow2"));
            run(Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2"])
                .arg(&disk)
                .arg(size));
            if size == "1000k" {
                run(Command::new("qemu-io")
                    .arg("-c")
                    .arg("write -P 0x42 960k 40k")
                    .arg(&disk));
            }
            let vmdk = dir.path().join(format!("{size}.vmdk"));
            write_from_qcow2(&disk, &vmdk, "lsilogic").unwrap();
            let same = run(Command::new("qemu-img")
                .arg("compare")
                .arg(&disk)
                .arg(&vmdk));
            assert!(same.contains("Images are identical"), "{size}: {same}");
        }
    }

    #[test]
    fn the_same_input_gives_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let disk = sample_disk(dir.path(), "48M");
        let (a, b) = (dir.path().join("a.vmdk"), dir.path().join("b.vmdk"));
        write_from_qcow2(&disk, &a, "lsilogic").unwrap();
        write_from_qcow2(&disk, &b, "lsilogic").unwrap();
        // The descriptor names the file, so compare after the descriptor.
        let (a, b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
        assert_eq!(a.len(), b.len());
        assert!(
            a[(OVERHEAD_SECTORS * SECTOR) as usize..] == b[(OVERHEAD_SECTORS * SECTOR) as usize..]
        );
    }

    #[test]
    fn garbage_is_a_format_error() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.vmdk");
        std::fs::write(&bad, vec![1u8; 4096]).unwrap();
        let err = read_to_raw(&bad, &mut std::io::sink())
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("is not a streamOptimized VMDK kiln can read: no KDMV magic"),
            "{err}"
        );
    }
}
