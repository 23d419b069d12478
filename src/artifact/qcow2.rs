//! A qcow2 reader: enough of the format to stream a disk's guest contents cluster by cluster and to
//! know which clusters hold data, so exports (streamOptimized VMDK) skip holes without a raw copy.
//!
//! Handles versions 2 and 3, uncompressed and compressed clusters (deflate, and zstd when the image
//! says so), and zero clusters. Images with a backing file, encryption or extended L2 entries are
//! refused with a hint rather than read wrongly.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use flate2::read::DeflateDecoder;

const MAGIC: &[u8; 4] = b"QFI\xfb";
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const COMPRESSED: u64 = 1 << 62;
const ZERO: u64 = 1;
const INCOMPAT_COMPRESSION_TYPE: u64 = 1 << 3;
const INCOMPAT_EXTL2: u64 = 1 << 4;
const INCOMPAT_EXTERNAL_DATA: u64 = 1 << 2;

/// Why a qcow2 image cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Qcow2Error {
    #[error("{0} is not a qcow2 image")]
    NotQcow2(PathBuf),
    #[error("{path} uses {what}, which kiln cannot export yet\nhint: {hint}")]
    Unsupported {
        path: PathBuf,
        what: &'static str,
        hint: &'static str,
    },
    #[error("{path} is damaged: {what}")]
    Corrupt { path: PathBuf, what: String },
    #[error("could not read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An open qcow2 image.
#[derive(Debug)]
pub struct Qcow2 {
    path: PathBuf,
    file: File,
    cluster_bits: u32,
    size: u64,
    l1: Vec<u64>,
    zstd: bool,
}

/// Where a guest cluster's data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mapping {
    /// Reads as zeros.
    Zero,
    /// Uncompressed at this host offset.
    Data(u64),
    /// Compressed: host offset and the number of bytes that hold it.
    Compressed(u64, u64),
}

impl Qcow2 {
    /// Opens and checks the header.
    pub fn open(path: &Path) -> Result<Self, Qcow2Error> {
        let io = |source| Qcow2Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let mut header = [0u8; 112];
        let n = file.read_at(&mut header, 0).map_err(io)?;
        if n < 72 || &header[..4] != MAGIC {
            return Err(Qcow2Error::NotQcow2(path.to_path_buf()));
        }
        let be32 = |at: usize| {
            u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let be64 = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&header[at..at + 8]);
            u64::from_be_bytes(b)
        };
        let unsupported = |what, hint| Qcow2Error::Unsupported {
            path: path.to_path_buf(),
            what,
            hint,
        };
        let corrupt = |what: String| Qcow2Error::Corrupt {
            path: path.to_path_buf(),
            what,
        };
        let version = be32(4);
        if !(2..=3).contains(&version) {
            return Err(corrupt(format!("unknown qcow2 version {version}")));
        }
        if be64(8) != 0 {
            return Err(unsupported(
                "a backing file",
                "flatten it first: qemu-img convert -O qcow2 <disk> <flat disk>",
            ));
        }
        if be32(32) != 0 {
            return Err(unsupported(
                "encryption",
                "decrypt it with qemu-img convert first",
            ));
        }
        let cluster_bits = be32(20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(corrupt(format!(
                "cluster_bits {cluster_bits} is out of range"
            )));
        }
        let mut zstd = false;
        if version == 3 && n >= 104 {
            let incompatible = be64(72);
            if incompatible & INCOMPAT_EXTL2 != 0 {
                return Err(unsupported(
                    "extended L2 entries",
                    "rewrite it with qemu-img convert -O qcow2 -o extended_l2=off",
                ));
            }
            if incompatible & INCOMPAT_EXTERNAL_DATA != 0 {
                return Err(unsupported(
                    "an external data file",
                    "convert it to a self-contained qcow2 first",
                ));
            }
            let header_length = be32(100) as usize;
            if incompatible & INCOMPAT_COMPRESSION_TYPE != 0 && header_length > 104 {
                zstd = header[104] == 1;
            }
        }
        let size = be64(24);
        let l1_size = be32(36) as usize;
        let l1_offset = be64(40);
        let cluster = 1u64 << cluster_bits;
        let needed = size.div_ceil(cluster).div_ceil(cluster / 8) as usize;
        if l1_size < needed || l1_size > (1 << 26) {
            return Err(corrupt(format!(
                "L1 table has {l1_size} entries, {needed} needed"
            )));
        }
        let mut raw = vec![0u8; l1_size * 8];
        file.read_exact_at(&mut raw, l1_offset).map_err(io)?;
        let l1 = raw
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        Ok(Qcow2 {
            path: path.to_path_buf(),
            file,
            cluster_bits,
            size,
            l1,
            zstd,
        })
    }

    /// The guest-visible size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    fn io(&self, source: std::io::Error) -> Qcow2Error {
        Qcow2Error::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, what: String) -> Qcow2Error {
        Qcow2Error::Corrupt {
            path: self.path.clone(),
            what,
        }
    }

    /// Maps every cluster of one L2 table: the L2 table covering guest cluster `index` is read once.
    fn l2_table(&self, l1_index: usize) -> Result<Option<Vec<u64>>, Qcow2Error> {
        let entry = *self
            .l1
            .get(l1_index)
            .ok_or_else(|| self.corrupt(format!("L1 index {l1_index} out of range")))?;
        let offset = entry & OFFSET_MASK;
        if offset == 0 {
            return Ok(None);
        }
        let mut raw = vec![0u8; self.cluster_size() as usize];
        self.file
            .read_exact_at(&mut raw, offset)
            .map_err(|e| self.io(e))?;
        Ok(Some(
            raw.chunks_exact(8)
                .map(|c| u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        ))
    }

    fn mapping(&self, entry: u64) -> Mapping {
        if entry & COMPRESSED != 0 {
            let x = 62 - (self.cluster_bits - 8);
            let offset = entry & ((1u64 << x) - 1);
            let sectors = (entry >> x) & ((1u64 << (62 - x)) - 1);
            let len = (sectors + 1) * 512 - (offset & 511);
            Mapping::Compressed(offset, len)
        } else if entry & ZERO != 0 || entry & OFFSET_MASK == 0 {
            Mapping::Zero
        } else {
            Mapping::Data(entry & OFFSET_MASK)
        }
    }

    /// Calls `each(guest_offset, Some(data))` for every cluster that holds data, and
    /// `each(guest_offset, None)` for holes, in guest order. `data` is one cluster (shorter at the
    /// end of the disk).
    pub fn for_each_cluster<E: From<Qcow2Error>>(
        &self,
        mut each: impl FnMut(u64, Option<&[u8]>) -> Result<(), E>,
    ) -> Result<(), E> {
        let cluster = self.cluster_size();
        let per_l2 = cluster / 8;
        let clusters = self.size.div_ceil(cluster);
        let mut buf = vec![0u8; cluster as usize];
        let mut compressed = Vec::new();
        let mut index = 0u64;
        while index < clusters {
            let l1_index = (index / per_l2) as usize;
            let table = self.l2_table(l1_index)?;
            let end = ((l1_index as u64 + 1) * per_l2).min(clusters);
            for i in index..end {
                let guest = i * cluster;
                let len = (self.size - guest).min(cluster) as usize;
                let entry = table.as_ref().map_or(0, |t| t[(i % per_l2) as usize]);
                match self.mapping(entry) {
                    Mapping::Zero => each(guest, None)?,
                    Mapping::Data(host) => {
                        self.file
                            .read_exact_at(&mut buf[..len], host)
                            .map_err(|e| self.io(e))?;
                        each(guest, Some(&buf[..len]))?;
                    }
                    Mapping::Compressed(host, clen) => {
                        compressed.resize(clen as usize, 0);
                        // The last compressed cluster may end before `clen` at the end of the file.
                        let got = self
                            .file
                            .read_at(&mut compressed, host)
                            .map_err(|e| self.io(e))?;
                        self.decompress(&compressed[..got], &mut buf)?;
                        each(guest, Some(&buf[..len]))?;
                    }
                }
            }
            index = end;
        }
        Ok(())
    }

    fn decompress(&self, input: &[u8], out: &mut [u8]) -> Result<(), Qcow2Error> {
        let result = if self.zstd {
            zstd::stream::read::Decoder::new(input).and_then(|mut d| d.read_exact(out))
        } else {
            DeflateDecoder::new(input).read_exact(out)
        };
        result.map_err(|e| self.corrupt(format!("a compressed cluster does not decompress: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn run(cmd: &mut Command) {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A disk written by the real qemu-io, read back through kiln's reader, must equal what
    /// `qemu-img convert -O raw` makes of it; and likewise after `qemu-img convert -c` compresses it.
    #[test]
    fn reads_what_qemu_wrote_plain_and_compressed() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("d.qcow2");
        run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&disk)
            .arg("5M"));
        for (pattern, offset, len) in [
            ("0xab", "0", "64k"),
            ("0x11", "1M", "100k"),
            ("0x5a", "4M", "7k"),
        ] {
            run(Command::new("qemu-io")
                .arg("-c")
                .arg(format!("write -P {pattern} {offset} {len}"))
                .arg(&disk));
        }
        let packed = dir.path().join("c.qcow2");
        run(Command::new("qemu-img")
            .args(["convert", "-c", "-O", "qcow2"])
            .arg(&disk)
            .arg(&packed));
        for image in [&disk, &packed] {
            let raw = dir.path().join("raw");
            run(Command::new("qemu-img")
                .args(["convert", "-O", "raw"])
                .arg(image)
                .arg(&raw));
            let expected = std::fs::read(&raw).unwrap();
            let q = Qcow2::open(image).unwrap();
            assert_eq!(q.size(), 5 << 20);
            let mut got = vec![0u8; q.size() as usize];
            let mut holes = 0;
            q.for_each_cluster(|at, data| {
                match data {
                    Some(d) => got[at as usize..at as usize + d.len()].copy_from_slice(d),
                    None => holes += 1,
                }
                Ok::<(), Qcow2Error>(())
            })
            .unwrap();
            assert!(
                got == expected,
                "{} differs from qemu-img's raw image",
                image.display()
            );
            assert!(
                holes > 50,
                "unallocated clusters must be reported as holes, got {holes}"
            );
        }
    }

    #[test]
    fn refuses_backing_files_and_non_qcow2() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.qcow2");
        let top = dir.path().join("top.qcow2");
        run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&base)
            .arg("1M"));
        run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(&base)
            .arg(&top));
        let err = Qcow2::open(&top).unwrap_err().to_string();
        assert!(
            err.contains("uses a backing file, which kiln cannot export yet"),
            "{err}"
        );
        let raw = dir.path().join("x.raw");
        std::fs::write(&raw, [0u8; 1024]).unwrap();
        assert!(matches!(Qcow2::open(&raw), Err(Qcow2Error::NotQcow2(_))));
    }
}
