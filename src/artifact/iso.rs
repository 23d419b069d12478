//! ISO 9660 images of a directory, for `cd_files`/`cd_content`: made with xorriso when it is
//! installed (what Packer runs), otherwise by kiln itself (the `hadris-iso` crate) with Joliet
//! and Rock Ridge names, so `user-data` and `meta-data` keep their lower-case names and the
//! volume label reads back as given (`cidata` for a cloud-init NoCloud seed). Neither boot
//! records nor hybrid partition tables: these CDs carry data only.

use std::path::{Path, PathBuf};

use hadris_iso::read::PathSeparator;
use hadris_iso::write::options::{CreationFeatures, IsoFormatOptions};
use hadris_iso::write::{InputTree, IsoImageWriter};

/// The longest volume label ISO 9660 stores (Joliet keeps the first 16 characters).
pub const MAX_LABEL: usize = 32;

/// Which program wrote an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// `xorriso -as mkisofs`, found on `PATH`.
    Xorriso,
    /// kiln's own writer.
    Builtin,
}

/// Why an image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error("the CD label {0:?} is longer than {MAX_LABEL} characters\nhint: shorten cd_label")]
    LabelTooLong(String),
    #[error("xorriso failed: {0}")]
    Xorriso(String),
    #[error("cannot read the CD's files in {path}")]
    Input {
        path: PathBuf,
        #[source]
        source: hadris_iso::write::FileConversionError,
    },
    #[error("cannot write the ISO image {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("cannot write the ISO image {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Write `root`'s contents as an ISO image labelled `label` to `dest`: with xorriso when it
/// is on `PATH`, else with [`write`].
pub async fn create(root: &Path, label: &str, dest: &Path) -> Result<Writer, IsoError> {
    check_label(label)?;
    if let Some(xorriso) = find_on_path("xorriso") {
        run_xorriso(&xorriso, root, label, dest).await?;
        return Ok(Writer::Xorriso);
    }
    let (root, label, dest) = (root.to_owned(), label.to_owned(), dest.to_owned());
    tokio::task::spawn_blocking(move || write(&root, &label, &dest))
        .await
        .map_err(|e| IsoError::Write {
            path: PathBuf::new(),
            message: e.to_string(),
        })??;
    Ok(Writer::Builtin)
}

/// kiln's writer: ISO 9660 with Joliet and Rock Ridge, the same names and label in all three.
/// Writes `dest` under a temporary name and renames it when complete.
pub fn write(root: &Path, label: &str, dest: &Path) -> Result<(), IsoError> {
    check_label(label)?;
    let tree = InputTree::from_fs(root, PathSeparator::ForwardSlash).map_err(|source| {
        IsoError::Input {
            path: root.to_owned(),
            source,
        }
    })?;
    let ops = IsoFormatOptions {
        volume_name: label.to_owned(),
        system_id: None,
        volume_set_id: None,
        publisher_id: None,
        preparer_id: None,
        application_id: Some("KILN".to_owned()),
        sector_size: 2048,
        features: CreationFeatures::extensions(),
        path_separator: PathSeparator::ForwardSlash,
        // Store the label as given (lower case included), as xorriso does.
        strict_charset: false,
    };
    let tmp = temporary_name(dest);
    let io = |source| IsoError::Io {
        path: dest.to_owned(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io)?;
    if let Err(e) = IsoImageWriter::create(file, tree, ops) {
        let _ = std::fs::remove_file(&tmp);
        return Err(IsoError::Write {
            path: dest.to_owned(),
            message: e.to_string(),
        });
    }
    std::fs::rename(&tmp, dest).map_err(io)
}

fn check_label(label: &str) -> Result<(), IsoError> {
    if label.chars().count() > MAX_LABEL {
        return Err(IsoError::LabelTooLong(label.to_owned()));
    }
    Ok(())
}

fn temporary_name(dest: &Path) -> PathBuf {
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    dest.with_file_name(format!(".{name}.partial"))
}

async fn run_xorriso(
    xorriso: &Path,
    root: &Path,
    label: &str,
    dest: &Path,
) -> Result<(), IsoError> {
    let mut cmd = tokio::process::Command::new(xorriso);
    cmd.args(["-as", "mkisofs", "-quiet", "-J", "-joliet-long", "-R", "-V"])
        .arg(label)
        .arg("-o")
        .arg(dest)
        .arg(root)
        .stdin(std::process::Stdio::null());
    tracing::debug!("{cmd:?}");
    let out = cmd.output().await.map_err(|e| IsoError::Io {
        path: dest.to_owned(),
        source: e,
    })?;
    if !out.status.success() {
        let _ = std::fs::remove_file(dest);
        return Err(IsoError::Xorriso(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    Ok(())
}

/// The first executable `name` in `PATH`.
fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    //! The images are read back by a small independent reader of the on-disk structures the
    //! Linux kernel's isofs driver reads: the primary and Joliet volume descriptors, directory
    //! records, and Rock Ridge `NM` entries.
    use super::*;

    const SECTOR: usize = 2048;

    fn u32_le(b: &[u8], at: usize) -> usize {
        u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
    }

    /// One directory record.
    struct Record {
        name: Vec<u8>,
        is_dir: bool,
        extent: usize,
        size: usize,
        /// The system use area (Rock Ridge entries).
        system_use: Vec<u8>,
    }

    /// The records of the directory at `extent`, without `.` and `..`.
    fn records(img: &[u8], extent: usize, size: usize) -> Vec<Record> {
        let mut out = Vec::new();
        let dir = &img[extent * SECTOR..extent * SECTOR + size];
        let mut at = 0;
        while at < dir.len() {
            let len = dir[at] as usize;
            if len == 0 {
                // Records do not cross sectors: skip to the next one.
                at = (at / SECTOR + 1) * SECTOR;
                continue;
            }
            let r = &dir[at..at + len];
            let name_len = r[32] as usize;
            let name = r[33..33 + name_len].to_vec();
            let su_start = 33 + name_len + (1 - name_len % 2);
            if name != [0] && name != [1] {
                out.push(Record {
                    name,
                    is_dir: r[25] & 2 != 0,
                    extent: u32_le(r, 2),
                    size: u32_le(r, 10),
                    system_use: r[su_start.min(len)..].to_vec(),
                });
            }
            at += len;
        }
        out
    }

    /// The volume descriptor of `kind` (1 primary, 2 supplementary).
    fn descriptor(img: &[u8], kind: u8) -> &[u8] {
        (16..32)
            .map(|s| &img[s * SECTOR..(s + 1) * SECTOR])
            .find(|d| d[0] == kind && &d[1..6] == b"CD001")
            .expect("volume descriptor")
    }

    fn joliet_name(raw: &[u8]) -> String {
        let units: Vec<u16> = raw
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16(&units).unwrap()
    }

    /// The Rock Ridge alternate name (`NM` entry) in a system use area.
    fn rock_ridge_name(su: &[u8]) -> Option<String> {
        let mut at = 0;
        while at + 4 <= su.len() {
            let len = su[at + 2] as usize;
            if len < 4 {
                break;
            }
            if &su[at..at + 2] == b"NM" {
                return Some(String::from_utf8_lossy(&su[at + 5..at + len]).into_owned());
            }
            at += len;
        }
        None
    }

    fn seed() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("user-data"), "#cloud-config\nusers: []\n").unwrap();
        std::fs::write(d.path().join("meta-data"), "instance-id: kiln-test\n").unwrap();
        std::fs::create_dir(d.path().join("scripts")).unwrap();
        std::fs::write(
            d.path().join("scripts/a-rather-long-file-name.sh"),
            "echo hi\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn builtin_writer_keeps_names_label_and_contents() {
        let root = seed();
        let out = tempfile::tempdir().unwrap();
        let iso = out.path().join("cd.iso");
        write(root.path(), "cidata", &iso).unwrap();
        let img = std::fs::read(&iso).unwrap();
        assert_eq!(img.len() % SECTOR, 0);

        let pvd = descriptor(&img, 1);
        assert_eq!(
            std::str::from_utf8(&pvd[40..72]).unwrap().trim_end(),
            "cidata"
        );

        // Joliet: UCS-2 names and label, escape sequence %/E (level 3) or %/@ or %/C.
        let svd = descriptor(&img, 2);
        assert_eq!(&svd[88..90], b"%/");
        assert_eq!(joliet_name(&svd[40..52]), "cidata");
        let root_rec = &svd[156..190];
        let top = records(&img, u32_le(root_rec, 2), u32_le(root_rec, 10));
        let mut names: Vec<String> = top.iter().map(|r| joliet_name(&r.name)).collect();
        names.sort();
        assert_eq!(names, ["meta-data", "scripts", "user-data"]);
        let user_data = top
            .iter()
            .find(|r| joliet_name(&r.name) == "user-data")
            .unwrap();
        assert_eq!(
            &img[user_data.extent * SECTOR..user_data.extent * SECTOR + user_data.size],
            b"#cloud-config\nusers: []\n"
        );
        let scripts = top.iter().find(|r| r.is_dir).unwrap();
        let inner = records(&img, scripts.extent, scripts.size);
        assert_eq!(joliet_name(&inner[0].name), "a-rather-long-file-name.sh");

        // Rock Ridge: the primary tree's records carry the real names in NM entries.
        let root_rec = &pvd[156..190];
        let mut rr: Vec<String> = records(&img, u32_le(root_rec, 2), u32_le(root_rec, 10))
            .iter()
            .filter_map(|r| rock_ridge_name(&r.system_use))
            .collect();
        rr.sort();
        assert_eq!(rr, ["meta-data", "scripts", "user-data"]);

        let leftovers: Vec<_> = std::fs::read_dir(out.path()).unwrap().flatten().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left");
    }

    #[test]
    fn overlong_label_is_refused_with_a_hint() {
        let root = seed();
        let out = tempfile::tempdir().unwrap();
        let e = write(root.path(), &"x".repeat(33), &out.path().join("cd.iso")).unwrap_err();
        assert!(e.to_string().contains("hint: shorten cd_label"), "{e}");
        assert!(!out.path().join("cd.iso").exists());
    }

    #[tokio::test]
    async fn create_uses_xorriso_when_installed() {
        let root = seed();
        let out = tempfile::tempdir().unwrap();
        let iso = out.path().join("cd.iso");
        let used = create(root.path(), "cidata", &iso).await.unwrap();
        let expected = if find_on_path("xorriso").is_some() {
            Writer::Xorriso
        } else {
            Writer::Builtin
        };
        assert_eq!(used, expected);
        let img = std::fs::read(&iso).unwrap();
        let pvd = descriptor(&img, 1);
        assert_eq!(
            std::str::from_utf8(&pvd[40..72]).unwrap().trim_end(),
            "cidata"
        );
    }
}
