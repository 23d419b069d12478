//! 1.44 MB FAT12 floppy images, as Packer's `floppy_files`, `floppy_dirs` and
//! `floppy_content` make them (Windows reads `A:\Autounattend.xml` from one). Long file names
//! are kept (VFAT). Timestamps are FAT's epoch and the volume id is fixed, so the same files
//! give the same image. Which files go where is the caller's business ([`FloppyFile`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use fatfs::{FatType, FileSystem, FormatVolumeOptions, FsOptions};

/// Size of a 3.5" high-density floppy.
pub const FLOPPY_BYTES: u64 = 1440 * 1024;

/// One file to put on the floppy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloppyFile {
    /// Path on the floppy, `/`-separated, without a leading `/` (`scripts/setup.ps1`).
    pub dest: String,
    /// What to write.
    pub data: FloppyData,
}

/// Where a floppy file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FloppyData {
    /// A file on the host.
    Path(PathBuf),
    /// Bytes given in the template (`floppy_content`).
    Bytes(Vec<u8>),
}

/// Why the floppy could not be written.
#[derive(Debug, thiserror::Error)]
pub enum FloppyError {
    /// The label is not a valid FAT volume label.
    #[error("floppy_label {0:?} is not a FAT volume label: at most 11 ASCII characters")]
    Label(String),
    /// The files do not fit.
    #[error("the floppy is full: {dest} does not fit on a 1.44 MB floppy\nhint: put large files on a CD with cd_files, or serve them over HTTP")]
    Full {
        /// The file that did not fit.
        dest: String,
    },
    /// Two sources give the same path on the floppy.
    #[error("{0} is put on the floppy twice")]
    Duplicate(String),
    /// A host file could not be read.
    #[error("cannot read {0}")]
    Read(PathBuf, #[source] io::Error),
    /// The image could not be written.
    #[error("cannot write the floppy image {0}")]
    Write(PathBuf, #[source] io::Error),
}

/// Write a formatted floppy holding `files` to `image` (created or truncated).
pub fn write(image: &Path, label: &str, files: &[FloppyFile]) -> Result<(), FloppyError> {
    let label_bytes = volume_label(label)?;
    let mut seen = std::collections::BTreeSet::new();
    for f in files {
        if !seen.insert(f.dest.to_ascii_lowercase()) {
            return Err(FloppyError::Duplicate(f.dest.clone()));
        }
    }
    let werr = |e| FloppyError::Write(image.to_owned(), e);
    let mut disk = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(image)
        .map_err(werr)?;
    disk.set_len(FLOPPY_BYTES).map_err(werr)?;
    let opts = FormatVolumeOptions::new()
        .fat_type(FatType::Fat12)
        .bytes_per_sector(512)
        .total_sectors(2880)
        .sectors_per_track(18)
        .heads(2)
        .media(0xF0)
        .drive_num(0)
        .volume_id(0x6b69_6c6e)
        .volume_label(label_bytes);
    fatfs::format_volume(&mut disk, opts).map_err(werr)?;
    let fs = FileSystem::new(&mut disk, FsOptions::new()).map_err(werr)?;
    let root = fs.root_dir();
    for f in files {
        let parts: Vec<&str> = f.dest.split('/').filter(|p| !p.is_empty()).collect();
        let Some((name, dirs)) = parts.split_last() else {
            continue;
        };
        let mut dir = root.clone();
        for d in dirs {
            dir = match dir.open_dir(d) {
                Ok(existing) => existing,
                Err(_) => dir.create_dir(d).map_err(|e| full_or(e, f, image))?,
            };
        }
        let mut out = dir.create_file(name).map_err(|e| full_or(e, f, image))?;
        match &f.data {
            FloppyData::Bytes(b) => out.write_all(b).map_err(|e| full_or(e, f, image))?,
            FloppyData::Path(p) => {
                let mut src = File::open(p).map_err(|e| FloppyError::Read(p.clone(), e))?;
                io::copy(&mut src, &mut out).map_err(|e| full_or(e, f, image))?;
            }
        }
    }
    drop(root);
    fs.unmount().map_err(werr)?;
    Ok(())
}

/// fatfs reports a full disk as an `io::Error` whose kind is not specific; a failed write
/// or create while adding a file is that in practice, the rest are I/O on the image.
fn full_or(e: io::Error, f: &FloppyFile, image: &Path) -> FloppyError {
    if matches!(e.kind(), io::ErrorKind::Other | io::ErrorKind::WriteZero) {
        FloppyError::Full {
            dest: f.dest.clone(),
        }
    } else {
        FloppyError::Write(image.to_owned(), e)
    }
}

/// The label padded with spaces to 11 bytes, upper-cased as DOS shows it.
fn volume_label(label: &str) -> Result<[u8; 11], FloppyError> {
    if label.len() > 11 || !label.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(FloppyError::Label(label.to_owned()));
    }
    let mut out = [b' '; 11];
    for (o, b) in out.iter_mut().zip(label.bytes()) {
        *o = b.to_ascii_uppercase();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn read_back(image: &Path, path: &str) -> String {
        let mut disk = File::open(image).unwrap();
        let fs = FileSystem::new(&mut disk, FsOptions::new()).unwrap();
        let mut s = String::new();
        fs.root_dir()
            .open_file(path)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    #[test]
    fn writes_nested_long_names_and_a_label() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("f.img");
        let files = vec![
            FloppyFile {
                dest: "Autounattend.xml".into(),
                data: FloppyData::Bytes(b"<unattend/>".to_vec()),
            },
            FloppyFile {
                dest: "scripts/enable-winrm.ps1".into(),
                data: FloppyData::Bytes(b"winrm quickconfig".to_vec()),
            },
        ];
        write(&img, "packer", &files).unwrap();
        assert_eq!(std::fs::metadata(&img).unwrap().len(), FLOPPY_BYTES);
        assert_eq!(read_back(&img, "Autounattend.xml"), "<unattend/>");
        assert_eq!(
            read_back(&img, "scripts/enable-winrm.ps1"),
            "winrm quickconfig"
        );
        let mut disk = File::open(&img).unwrap();
        let fs = FileSystem::new(&mut disk, FsOptions::new()).unwrap();
        assert_eq!(fs.fat_type(), FatType::Fat12);
        assert_eq!(fs.volume_label(), "PACKER");
    }

    #[test]
    fn same_files_give_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![FloppyFile {
            dest: "a.txt".into(),
            data: FloppyData::Bytes(b"x".to_vec()),
        }];
        write(&dir.path().join("1"), "packer", &files).unwrap();
        write(&dir.path().join("2"), "packer", &files).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("1")).unwrap(),
            std::fs::read(dir.path().join("2")).unwrap()
        );
    }

    #[test]
    fn too_much_data_says_the_floppy_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![FloppyFile {
            dest: "big.bin".into(),
            data: FloppyData::Bytes(vec![7; 2 * 1024 * 1024]),
        }];
        let e = write(&dir.path().join("f"), "packer", &files).unwrap_err();
        assert!(matches!(e, FloppyError::Full { .. }), "{e:?}");
        assert!(e.to_string().contains("big.bin"), "{e}");
    }

    #[test]
    fn bad_labels_and_duplicates_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("f");
        assert!(matches!(
            write(&img, "much-too-long-label", &[]),
            Err(FloppyError::Label(_))
        ));
        let twice = vec![
            FloppyFile {
                dest: "a.txt".into(),
                data: FloppyData::Bytes(vec![]),
            },
            FloppyFile {
                dest: "A.TXT".into(),
                data: FloppyData::Bytes(vec![]),
            },
        ];
        assert!(matches!(
            write(&img, "packer", &twice),
            Err(FloppyError::Duplicate(_))
        ));
    }
}
