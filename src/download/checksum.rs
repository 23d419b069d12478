//! Checksums as Packer templates write them (`iso_checksum`): `md5:`, `sha1:`, `sha256:`, `sha512:`
//! prefixes, a bare hex value whose length names the algorithm, `file:<path or url>` pointing at a
//! `SHA256SUMS`-style list, and `none`. Hashing is streamed, so a file is read once whatever its size.

use std::fmt;
use std::io::{Read, Write};
use std::path::Path;

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

use tokio_util::sync::CancellationToken;

use crate::ui::progress::{Reporter, Silent};

/// A hash algorithm kiln can verify with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as templates write it (`sha256`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "md5",
            Algorithm::Sha1 => "sha1",
            Algorithm::Sha224 => "sha224",
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha384 => "sha384",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// The algorithm a template names (`sha256`, any case).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "md5" => Algorithm::Md5,
            "sha1" => Algorithm::Sha1,
            "sha224" => Algorithm::Sha224,
            "sha256" => Algorithm::Sha256,
            "sha384" => Algorithm::Sha384,
            "sha512" => Algorithm::Sha512,
            _ => return None,
        })
    }

    /// Guesses the algorithm of a bare hex digest from its length, as Packer does.
    fn from_hex_len(len: usize) -> Option<Self> {
        Some(match len {
            32 => Algorithm::Md5,
            40 => Algorithm::Sha1,
            56 => Algorithm::Sha224,
            64 => Algorithm::Sha256,
            96 => Algorithm::Sha384,
            128 => Algorithm::Sha512,
            _ => return None,
        })
    }

    /// A streaming hasher for this algorithm.
    pub fn hasher(self) -> Hasher {
        Hasher(match self {
            Algorithm::Md5 => Inner::Md5(Md5::new()),
            Algorithm::Sha1 => Inner::Sha1(Sha1::new()),
            Algorithm::Sha224 => Inner::Sha224(Sha224::new()),
            Algorithm::Sha256 => Inner::Sha256(Sha256::new()),
            Algorithm::Sha384 => Inner::Sha384(Sha384::new()),
            Algorithm::Sha512 => Inner::Sha512(Sha512::new()),
        })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A running hash; feed it with [`Hasher::update`] while the bytes stream past.
#[derive(Debug, Clone)]
pub struct Hasher(Inner);

#[derive(Debug, Clone)]
enum Inner {
    Md5(Md5),
    Sha1(Sha1),
    Sha224(Sha224),
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.0 {
            Inner::Md5(h) => h.update(bytes),
            Inner::Sha1(h) => h.update(bytes),
            Inner::Sha224(h) => h.update(bytes),
            Inner::Sha256(h) => h.update(bytes),
            Inner::Sha384(h) => h.update(bytes),
            Inner::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest as lower-case hex.
    pub fn finish_hex(self) -> String {
        let bytes = match self.0 {
            Inner::Md5(h) => h.finalize().to_vec(),
            Inner::Sha1(h) => h.finalize().to_vec(),
            Inner::Sha224(h) => h.finalize().to_vec(),
            Inner::Sha256(h) => h.finalize().to_vec(),
            Inner::Sha384(h) => h.finalize().to_vec(),
            Inner::Sha512(h) => h.finalize().to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// What `iso_checksum` asks for, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChecksumSpec {
    /// `none`: nothing is verified (kiln warns).
    None,
    /// A digest given in the template.
    Digest(Checksum),
    /// `file:<location>`: the digest is looked up by file name in a checksum list, with the algorithm
    /// given by a prefix (`sha256:file:…`, rare) or guessed from the digest's length.
    File {
        algorithm: Option<Algorithm>,
        location: String,
    },
}

/// An algorithm and the expected digest (lower-case hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub algorithm: Algorithm,
    pub hex: String,
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

/// Why a checksum could not be parsed, found or matched.
#[derive(Debug, thiserror::Error)]
pub enum ChecksumError {
    #[error("iso_checksum is empty\nhint: set it to \"sha256:<hex>\", \"file:<SHA256SUMS url or path>\", or \"none\" to skip verification")]
    Empty,
    #[error("unknown checksum type `{0}`\nhint: use md5, sha1, sha224, sha256, sha384 or sha512, e.g. \"sha256:<hex>\"")]
    UnknownAlgorithm(String),
    #[error("`{0}` is not a hex digest\nhint: a checksum is hex digits, optionally prefixed with its type, e.g. \"sha256:<64 hex digits>\"")]
    NotHex(String),
    #[error("a {algorithm} digest has {expected} hex digits, but `{value}` has {actual}")]
    WrongLength {
        algorithm: Algorithm,
        expected: usize,
        actual: usize,
        value: String,
    },
    #[error("cannot tell the checksum type of a {0}-digit value\nhint: prefix it with its type, e.g. \"sha256:…\"")]
    UnknownLength(usize),
    #[error("no checksum for `{file}` in the checksum file {list}\nhint: check that the checksum file lists the file name of the ISO you download")]
    NotListed { file: String, list: String },
    #[error("checksum mismatch for {path}: expected {expected}, got {actual}")]
    Mismatch {
        path: String,
        expected: Checksum,
        actual: String,
    },
    #[error("could not read {path} to verify its checksum")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl ChecksumSpec {
    /// Parses an `iso_checksum` value.
    pub fn parse(value: &str) -> Result<Self, ChecksumError> {
        let value = value.trim();
        if value.is_empty() {
            return Err(ChecksumError::Empty);
        }
        if value.eq_ignore_ascii_case("none") {
            return Ok(ChecksumSpec::None);
        }
        if let Some(location) = value.strip_prefix("file:") {
            return Ok(ChecksumSpec::File {
                algorithm: None,
                location: location.to_string(),
            });
        }
        match value.split_once(':') {
            Some((algo, rest)) => {
                let algorithm = Algorithm::from_name(algo)
                    .ok_or_else(|| ChecksumError::UnknownAlgorithm(algo.to_string()))?;
                if let Some(location) = rest.strip_prefix("file:") {
                    return Ok(ChecksumSpec::File {
                        algorithm: Some(algorithm),
                        location: location.to_string(),
                    });
                }
                Ok(ChecksumSpec::Digest(Checksum::new(algorithm, rest)?))
            }
            None => Ok(ChecksumSpec::Digest(Checksum::guess(value)?)),
        }
    }
}

impl Checksum {
    /// A digest of a known algorithm; checks it is hex of the right length.
    pub fn new(algorithm: Algorithm, hex: &str) -> Result<Self, ChecksumError> {
        let hex = hex.trim().to_ascii_lowercase();
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ChecksumError::NotHex(hex));
        }
        let expected = algorithm.hasher().finish_hex().len();
        if hex.len() != expected {
            return Err(ChecksumError::WrongLength {
                algorithm,
                expected,
                actual: hex.len(),
                value: hex,
            });
        }
        Ok(Checksum { algorithm, hex })
    }

    /// A bare digest: the algorithm is named by its length.
    pub fn guess(hex: &str) -> Result<Self, ChecksumError> {
        let hex = hex.trim();
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ChecksumError::NotHex(hex.to_string()));
        }
        let algorithm =
            Algorithm::from_hex_len(hex.len()).ok_or(ChecksumError::UnknownLength(hex.len()))?;
        Checksum::new(algorithm, hex)
    }

    /// Hashes everything `reader` yields and compares; `what` names the input in the error.
    pub fn verify_reader(
        &self,
        reader: &mut (dyn Read + Send),
        what: &str,
    ) -> Result<(), ChecksumError> {
        let actual = hash_reader(self.algorithm, reader).map_err(|source| ChecksumError::Read {
            path: what.to_string(),
            source,
        })?;
        self.compare(&actual, what)
    }

    /// Hashes a file, showing progress as "Verifying <path>", and compares.
    pub fn verify_file(&self, path: &Path, reporter: &dyn Reporter) -> Result<(), ChecksumError> {
        let actual = hash_file(self.algorithm, path, reporter)?;
        self.compare(&actual, &path.display().to_string())
    }

    /// Compares a computed digest with the expected one.
    pub fn compare(&self, actual_hex: &str, what: &str) -> Result<(), ChecksumError> {
        if actual_hex.eq_ignore_ascii_case(&self.hex) {
            Ok(())
        } else {
            Err(ChecksumError::Mismatch {
                path: what.to_string(),
                expected: self.clone(),
                actual: format!("{}:{}", self.algorithm, actual_hex.to_ascii_lowercase()),
            })
        }
    }
}

/// Hashes a stream in 1 MiB reads.
pub fn hash_reader(
    algorithm: Algorithm,
    reader: &mut (dyn Read + Send),
) -> std::io::Result<String> {
    let mut digests = hash_reader_all(&[algorithm], reader)?;
    Ok(digests.remove(0))
}

/// Hashes a stream once with each of `algorithms` (one read for all of them, in 1 MiB reads);
/// the digests come in the same order.
pub fn hash_reader_all(
    algorithms: &[Algorithm],
    reader: &mut (dyn Read + Send),
) -> std::io::Result<Vec<String>> {
    let mut hashers: Vec<Hasher> = algorithms.iter().map(|a| a.hasher()).collect();
    copy_hashing(reader, &mut std::io::sink(), &mut hashers, &Silent, None)
        .map_err(CopyError::into_io)?;
    Ok(hashers.into_iter().map(Hasher::finish_hex).collect())
}

/// Hashes a file, reporting it as "Verifying <path>".
pub fn hash_file(
    algorithm: Algorithm,
    path: &Path,
    reporter: &dyn Reporter,
) -> Result<String, ChecksumError> {
    let read_err = |source| ChecksumError::Read {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    let total = file.metadata().map(|m| m.len()).ok();
    let mut hasher = algorithm.hasher();
    reporter.start(&format!("Verifying {}", path.display()), total, 0);
    let copied = copy_hashing(
        &mut file,
        &mut std::io::sink(),
        std::slice::from_mut(&mut hasher),
        reporter,
        None,
    );
    reporter.finish();
    copied.map_err(|e| read_err(e.into_io()))?;
    Ok(hasher.finish_hex())
}

/// Why [`copy_hashing`] stopped.
#[derive(Debug)]
pub(crate) enum CopyError {
    /// Reading failed after `.0` bytes were copied (a dropped connection, for a download).
    Read(u64, std::io::Error),
    /// Writing failed (a full disk).
    Write(std::io::Error),
    /// The build was cancelled.
    Cancelled,
}

impl CopyError {
    pub(crate) fn into_io(self) -> std::io::Error {
        match self {
            CopyError::Read(_, e) | CopyError::Write(e) => e,
            CopyError::Cancelled => std::io::Error::other("cancelled"),
        }
    }
}

/// Copies `from` into `to` until the end, hashing (with each of `hashers`) and reporting every
/// chunk on the way: every
/// byte is read once, whether it is downloaded, imported or only verified. A second thread
/// reads the next chunk while this one hashes (and writes) the last, so hashing overlaps the
/// disk or the network instead of waiting for it. Returns the count.
/// With `cancel`, a cancelled token stops the copy after the chunk at hand
/// ([`CopyError::Cancelled`]).
pub(crate) fn copy_hashing(
    from: &mut (dyn Read + Send),
    to: &mut dyn Write,
    hashers: &mut [Hasher],
    reporter: &dyn Reporter,
    cancel: Option<&CancellationToken>,
) -> Result<u64, CopyError> {
    const CHUNK: usize = 1 << 20;
    // Filled chunks travel one way, emptied ones come back: at most four buffers exist.
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(2);
    let (free_tx, free_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || -> std::io::Result<()> {
            loop {
                let mut buf = free_rx.try_recv().unwrap_or_else(|_| vec![0; CHUNK]);
                let (n, result) = fill(from, &mut buf);
                if n > 0 && full_tx.send((buf, n)).is_err() {
                    return Ok(()); // the consumer stopped (a write failed)
                }
                match result {
                    Ok(true) => {}
                    Ok(false) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        });
        let mut copied = 0u64;
        for (buf, n) in full_rx {
            to.write_all(&buf[..n]).map_err(CopyError::Write)?;
            for hasher in hashers.iter_mut() {
                hasher.update(&buf[..n]);
            }
            copied += n as u64;
            reporter.advance(n as u64);
            if cancel.is_some_and(CancellationToken::is_cancelled) {
                return Err(CopyError::Cancelled);
            }
            let _ = free_tx.send(buf);
        }
        match reader.join() {
            Ok(Ok(())) => Ok(copied),
            Ok(Err(e)) => Err(CopyError::Read(copied, e)),
            Err(_) => Err(CopyError::Read(
                copied,
                std::io::Error::other("the reading thread panicked"),
            )),
        }
    })
}

/// One read into `buf` (a file fills it; a network body gives what has arrived, so progress
/// keeps moving on a slow link); returns how much was read and whether more may follow.
fn fill(from: &mut dyn Read, buf: &mut [u8]) -> (usize, std::io::Result<bool>) {
    loop {
        match from.read(buf) {
            Ok(0) => return (0, Ok(false)),
            Ok(n) => return (n, Ok(true)),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (0, Err(e)),
        }
    }
}

/// Finds the digest for `file_name` in a checksum list: GNU style (`<hex>  name`, `<hex> *name`) and
/// BSD style (`SHA256 (name) = <hex>`). Entries may carry a path (`./name`, `dir/name`); the last
/// path component is compared, as Packer does for lists that name files relative to the list.
pub fn find_in_list(
    list: &str,
    list_name: &str,
    file_name: &str,
    algorithm: Option<Algorithm>,
) -> Result<Checksum, ChecksumError> {
    let base = |name: &str| name.rsplit('/').next().unwrap_or(name).to_string();
    let wanted = base(file_name);
    for line in list.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let entry = if let Some((head, hex)) = line.split_once(" = ") {
            // BSD: `SHA256 (name) = hex`
            let (algo, name) = match head.split_once(" (") {
                Some((algo, name)) => (Algorithm::from_name(algo), name.trim_end_matches(')')),
                None => continue,
            };
            (hex.trim(), name.to_string(), algo.or(algorithm))
        } else {
            let mut parts = line.splitn(2, char::is_whitespace);
            let (Some(hex), Some(name)) = (parts.next(), parts.next()) else {
                continue;
            };
            (
                hex,
                name.trim().trim_start_matches('*').to_string(),
                algorithm,
            )
        };
        let (hex, name, algo) = entry;
        if base(&name) != wanted {
            continue;
        }
        return match algo {
            Some(algorithm) => Checksum::new(algorithm, hex),
            None => Checksum::guess(hex),
        };
    }
    Err(ChecksumError::NotListed {
        file: wanted,
        list: list_name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const ABC_MD5: &str = "900150983cd24fb0d6963f7d28e17f72";

    #[test]
    fn parses_prefixed_bare_file_and_none() {
        assert_eq!(ChecksumSpec::parse("none").unwrap(), ChecksumSpec::None);
        assert_eq!(
            ChecksumSpec::parse(&format!("sha256:{ABC_SHA256}")).unwrap(),
            ChecksumSpec::Digest(Checksum {
                algorithm: Algorithm::Sha256,
                hex: ABC_SHA256.into()
            })
        );
        let upper = ABC_MD5.to_ascii_uppercase();
        let ChecksumSpec::Digest(c) = ChecksumSpec::parse(&upper).unwrap() else {
            panic!("expected a digest")
        };
        assert_eq!((c.algorithm, c.hex.as_str()), (Algorithm::Md5, ABC_MD5));
        assert_eq!(
            ChecksumSpec::parse("file:https://example.invalid/SHA256SUMS").unwrap(),
            ChecksumSpec::File {
                algorithm: None,
                location: "https://example.invalid/SHA256SUMS".into()
            }
        );
        assert_eq!(
            ChecksumSpec::parse("sha512:file:./SUMS").unwrap(),
            ChecksumSpec::File {
                algorithm: Some(Algorithm::Sha512),
                location: "./SUMS".into()
            }
        );
    }

    #[test]
    fn rejects_bad_values_with_hints() {
        let err = ChecksumSpec::parse("crc32:abcd").unwrap_err().to_string();
        assert!(err.starts_with("unknown checksum type `crc32`"), "{err}");
        let err = ChecksumSpec::parse("sha256:abcd").unwrap_err().to_string();
        assert_eq!(err, "a sha256 digest has 64 hex digits, but `abcd` has 4");
        let err = ChecksumSpec::parse("xyz").unwrap_err().to_string();
        assert!(err.starts_with("`xyz` is not a hex digest"), "{err}");
        let err = ChecksumSpec::parse("abcdef").unwrap_err().to_string();
        assert!(
            err.starts_with("cannot tell the checksum type of a 6-digit value"),
            "{err}"
        );
        assert!(matches!(
            ChecksumSpec::parse("  "),
            Err(ChecksumError::Empty)
        ));
    }

    #[test]
    fn verifies_streams_and_names_both_sums_on_mismatch() {
        let good = Checksum::new(Algorithm::Sha256, ABC_SHA256).unwrap();
        good.verify_reader(&mut &b"abc"[..], "abc").unwrap();
        let err = good
            .verify_reader(&mut &b"abd"[..], "x.iso")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "checksum mismatch for x.iso: expected sha256:{ABC_SHA256}, got sha256:"
            )),
            "{err}"
        );
        assert!(!err.ends_with(ABC_SHA256));
    }

    #[test]
    fn every_algorithm_matches_known_vectors() {
        // Digests of "abc" from the algorithms' published test vectors.
        let vectors = [
            (Algorithm::Md5, ABC_MD5),
            (Algorithm::Sha1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (Algorithm::Sha224, "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7"),
            (Algorithm::Sha256, ABC_SHA256),
            (Algorithm::Sha384, "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"),
            (Algorithm::Sha512, "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"),
        ];
        for (algorithm, hex) in vectors {
            assert_eq!(
                hash_reader(algorithm, &mut &b"abc"[..]).unwrap(),
                hex,
                "{algorithm}"
            );
            assert_eq!(Checksum::guess(hex).unwrap().algorithm, algorithm);
        }
    }

    /// Yields `chunks` reads of 100 KiB of 7s, then fails like a dropped connection.
    struct Dropping {
        chunks: usize,
    }
    impl Read for Dropping {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.chunks == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
            }
            self.chunks -= 1;
            let n = buf.len().min(100 << 10);
            buf[..n].fill(7);
            Ok(n)
        }
    }

    #[test]
    fn copying_writes_and_hashes_every_byte_across_chunks() {
        let data: Vec<u8> = (0..(3u32 << 20) + 17).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        let mut hasher = Algorithm::Sha256.hasher();
        let n = copy_hashing(
            &mut &data[..],
            &mut out,
            std::slice::from_mut(&mut hasher),
            &Silent,
            None,
        )
        .unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(out, data);
        assert_eq!(
            hasher.finish_hex(),
            Sha256::digest(&data)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
    }

    #[test]
    fn a_read_error_reports_what_was_copied_before_it() {
        let mut out = Vec::new();
        let mut hasher = Algorithm::Sha256.hasher();
        let err = copy_hashing(
            &mut Dropping { chunks: 3 },
            &mut out,
            std::slice::from_mut(&mut hasher),
            &Silent,
            None,
        )
        .unwrap_err();
        let CopyError::Read(n, e) = err else {
            panic!("expected a read error")
        };
        assert_eq!((n, out.len()), (300 << 10, 300 << 10));
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset);
    }

    #[test]
    fn finds_entries_in_gnu_and_bsd_lists() {
        let list = format!(
            "# comment\n{ABC_MD5}  other.iso\n{ABC_SHA256} *./images/debian.iso\nSHA256 (bsd.iso) = {ABC_SHA256}\n"
        );
        let c = find_in_list(&list, "SUMS", "debian.iso", None).unwrap();
        assert_eq!(
            (c.algorithm, c.hex.as_str()),
            (Algorithm::Sha256, ABC_SHA256)
        );
        let c = find_in_list(&list, "SUMS", "https://m.invalid/x/bsd.iso", None).unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha256);
        let err = find_in_list(&list, "SUMS", "missing.iso", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("no checksum for `missing.iso` in the checksum file SUMS"),
            "{err}"
        );
    }
}
