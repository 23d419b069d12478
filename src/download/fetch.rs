//! Fetching an input (`iso_url`/`iso_urls` with `iso_checksum`) into the cache, or using it in place
//! when it is a local file.
//!
//! URLs are tried in order; a remote file is streamed to a `.part` file while it is hashed, resumed
//! with an HTTP `Range` request when the connection drops, verified, and only then renamed into the
//! cache. In offline mode (`KILN_OFFLINE=1`) any network fetch is an error naming the URL, so an
//! air-gapped build never reaches out behind its user's back.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::cache::Cache;
use super::checksum::{find_in_list, Algorithm, Checksum, ChecksumError, ChecksumSpec, Hasher};
use super::source::{Source, SourceError};

/// Receives progress; the CLI draws bars with it, tests ignore it.
pub trait Reporter: Send + Sync {
    /// A transfer of `what` starts; `total` when the server says, `already` bytes resumed.
    fn start(&self, _what: &str, _total: Option<u64>, _already: u64) {}
    /// `bytes` more arrived.
    fn advance(&self, _bytes: u64) {}
    /// The transfer ended (successfully or not).
    fn finish(&self) {}
    /// Something the user should know that does not stop the build.
    fn warn(&self, _message: &str) {}
}

/// A reporter that says nothing.
#[derive(Debug, Default)]
pub struct Silent;
impl Reporter for Silent {}

/// What to fetch.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// `iso_urls`, or `[iso_url]`, tried in order.
    pub urls: &'a [String],
    /// `iso_checksum` as written in the template.
    pub checksum: &'a str,
    /// Relative paths are resolved against it.
    pub template_dir: &'a Path,
    /// `iso_target_extension` (Packer's default: `iso`).
    pub extension: &'a str,
    /// `iso_target_path`: where to put the download instead of the cache.
    pub target_path: Option<PathBuf>,
}

/// Why no URL gave a usable file.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no URL to fetch\nhint: set iso_url or iso_urls")]
    NoUrls,
    #[error(transparent)]
    Checksum(#[from] ChecksumError),
    #[error("could not fetch the checksum file {location}: {reason}")]
    ChecksumList { location: String, reason: String },
    #[error("every URL failed:\n{}", list(.attempts))]
    AllFailed { attempts: Vec<(String, String)> },
    #[error("could not use the cache at {path}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn list(attempts: &[(String, String)]) -> String {
    attempts
        .iter()
        .map(|(url, why)| format!("  {url}: {why}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Why one URL failed; the fetcher moves on to the next.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("offline mode (KILN_OFFLINE) forbids network fetches")]
    Offline,
    #[error("no such file")]
    Missing,
    #[error("HTTP {0}")]
    Status(u16),
    #[error("{0}")]
    Transport(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Checksum(#[from] ChecksumError),
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// Fetches inputs into a cache.
#[derive(Debug, Clone)]
pub struct Fetcher {
    cache: Cache,
    offline: bool,
    agent: ureq::Agent,
    /// How many times a dropped transfer is resumed before the URL counts as failed.
    resumes: u32,
}

impl Fetcher {
    /// A fetcher over `cache`; `offline` forbids network access.
    pub fn new(cache: Cache, offline: bool) -> Self {
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            // The platform's CA store, so mirrors behind an internal CA work as they do for curl.
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .unversioned_rustls_crypto_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .build()
            .new_agent();
        Fetcher {
            cache,
            offline,
            agent,
            resumes: 5,
        }
    }

    /// True when `KILN_OFFLINE` is set to anything but `0` or empty.
    pub fn offline_from_env() -> bool {
        std::env::var("KILN_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0")
    }

    /// Returns the path of a verified copy of the input.
    pub fn fetch(&self, req: &Request<'_>, reporter: &dyn Reporter) -> Result<PathBuf, FetchError> {
        let first = req.urls.first().ok_or(FetchError::NoUrls)?;
        let first_source =
            Source::parse(first, req.template_dir).map_err(|e| FetchError::AllFailed {
                attempts: vec![(first.clone(), e.to_string())],
            })?;
        let expected = self.expected_checksum(req, &first_source.file_name(), reporter)?;
        let key = expected
            .as_ref()
            .map_or_else(|| first.clone(), ToString::to_string);
        let entry = match &req.target_path {
            Some(path) => path.clone(),
            None => self.cache.entry_path(&key, req.extension),
        };

        let mut attempts = Vec::new();
        for url in req.urls {
            let result = match Source::parse(url, req.template_dir) {
                Ok(Source::Local(path)) => use_local(&path, expected.as_ref()),
                Ok(Source::Remote(url)) => {
                    self.fetch_remote(&url, &entry, expected.as_ref(), reporter)
                }
                Err(e) => Err(e.into()),
            };
            match result {
                Ok(path) => return Ok(path),
                Err(e) => {
                    tracing::warn!(url = %url, error = %e, "could not fetch; trying the next URL");
                    attempts.push((url.clone(), e.to_string()));
                }
            }
        }
        Err(FetchError::AllFailed { attempts })
    }

    fn expected_checksum(
        &self,
        req: &Request<'_>,
        file_name: &str,
        reporter: &dyn Reporter,
    ) -> Result<Option<Checksum>, FetchError> {
        match ChecksumSpec::parse(req.checksum)? {
            ChecksumSpec::None => {
                reporter.warn("iso_checksum is \"none\": the input is not verified");
                Ok(None)
            }
            ChecksumSpec::Digest(c) => Ok(Some(c)),
            ChecksumSpec::File {
                algorithm,
                location,
            } => {
                let text = self.read_list(&location, req.template_dir)?;
                Ok(Some(find_in_list(&text, &location, file_name, algorithm)?))
            }
        }
    }

    fn read_list(&self, location: &str, template_dir: &Path) -> Result<String, FetchError> {
        let fail = |reason: String| FetchError::ChecksumList {
            location: location.to_string(),
            reason,
        };
        match Source::parse(location, template_dir).map_err(|e| fail(e.to_string()))? {
            Source::Local(path) => std::fs::read_to_string(&path).map_err(|e| fail(e.to_string())),
            Source::Remote(url) => {
                if self.offline {
                    return Err(fail(AttemptError::Offline.to_string()));
                }
                let response = self
                    .agent
                    .get(&url)
                    .call()
                    .map_err(|e| fail(e.to_string()))?;
                if response.status() != 200 {
                    return Err(fail(format!("HTTP {}", response.status().as_u16())));
                }
                response
                    .into_body()
                    .read_to_string()
                    .map_err(|e| fail(e.to_string()))
            }
        }
    }

    fn fetch_remote(
        &self,
        url: &str,
        entry: &Path,
        expected: Option<&Checksum>,
        reporter: &dyn Reporter,
    ) -> Result<PathBuf, AttemptError> {
        if self.offline {
            return Err(AttemptError::Offline);
        }
        if let Some(dir) = entry.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let _lock = self.cache.lock(entry)?;
        // Another build may have fetched it while we waited for the lock.
        if entry.exists() {
            match expected {
                None => return Ok(entry.to_path_buf()),
                Some(c) => match c.verify_file(entry) {
                    Ok(()) => return Ok(entry.to_path_buf()),
                    Err(e) => {
                        reporter.warn(&format!(
                            "cached {} is damaged ({e}); fetching again",
                            entry.display()
                        ));
                        std::fs::remove_file(entry)?;
                    }
                },
            }
        }
        let part = Cache::part_path(entry);
        let algorithm = expected.map_or(Algorithm::Sha256, |c| c.algorithm);
        let digest = self.download(url, &part, algorithm, reporter);
        reporter.finish();
        let digest = match digest {
            Ok(d) => d,
            Err(e) => {
                // Keep a partial transfer for a later resume, but not an empty file.
                if std::fs::metadata(&part).is_ok_and(|m| m.len() == 0) {
                    std::fs::remove_file(&part)?;
                }
                return Err(e);
            }
        };
        if let Some(c) = expected {
            if let Err(e) = c.compare(&digest, url) {
                // A wrong file must not stay where a resume would append to it.
                std::fs::remove_file(&part)?;
                return Err(e.into());
            }
        }
        Cache::commit(entry)?;
        Ok(entry.to_path_buf())
    }

    /// Streams `url` into `part`, resuming from what `part` already holds; returns the hex digest.
    fn download(
        &self,
        url: &str,
        part: &Path,
        algorithm: Algorithm,
        reporter: &dyn Reporter,
    ) -> Result<String, AttemptError> {
        let mut file = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(part)?;
        let mut hasher = algorithm.hasher();
        let mut have = hash_prefix(&mut file, &mut hasher)?;
        let mut failures = 0;
        let mut started = false;
        loop {
            let mut request = self.agent.get(url);
            if have > 0 {
                request = request.header("Range", format!("bytes={have}-"));
            }
            let response = match request.call() {
                Ok(r) => r,
                Err(e) => {
                    failures += 1;
                    if failures > self.resumes || have == 0 {
                        return Err(AttemptError::Transport(e.to_string()));
                    }
                    continue;
                }
            };
            let status = response.status().as_u16();
            match status {
                206 => {}
                200 => {
                    // The server ignored the range (or there was none): start over.
                    if have > 0 {
                        file.set_len(0)?;
                        file.seek(SeekFrom::Start(0))?;
                        hasher = algorithm.hasher();
                        have = 0;
                    }
                }
                // The part file already holds the whole thing.
                416 if have > 0 => return Ok(hasher.finish_hex()),
                404 | 410 => return Err(AttemptError::Missing),
                _ => return Err(AttemptError::Status(status)),
            }
            let total = content_total(&response, have);
            if !started {
                reporter.start(url, total, have);
                started = true;
            }
            match copy_hashing(
                response.into_body().into_reader(),
                &mut file,
                &mut hasher,
                reporter,
            ) {
                Ok(n) => {
                    have += n;
                    if total.is_none_or(|t| have >= t) {
                        file.flush()?;
                        return Ok(hasher.finish_hex());
                    }
                    // The body ended early without an error: resume like a drop.
                }
                Err(CopyError::Write(e)) => return Err(e.into()),
                Err(CopyError::Read(n, e)) => {
                    have += n;
                    tracing::debug!(url, error = %e, have, "transfer dropped; resuming");
                }
            }
            failures += 1;
            if failures > self.resumes {
                return Err(AttemptError::Transport(format!(
                    "the transfer dropped {failures} times (last at byte {have})"
                )));
            }
        }
    }
}

fn use_local(path: &Path, expected: Option<&Checksum>) -> Result<PathBuf, AttemptError> {
    if !path.is_file() {
        return Err(AttemptError::Missing);
    }
    if let Some(c) = expected {
        c.verify_file(path)?;
    }
    Ok(path.to_path_buf())
}

/// The full size from `Content-Range` (206) or `Content-Length` (200).
fn content_total(response: &ureq::http::Response<ureq::Body>, have: u64) -> Option<u64> {
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(range) = header("content-range") {
        return range.rsplit('/').next().and_then(|t| t.parse().ok());
    }
    header("content-length")
        .and_then(|v| v.parse::<u64>().ok())
        .map(|len| len + have)
}

/// Hashes what a resumed part file already holds and leaves the cursor at its end.
fn hash_prefix(file: &mut File, hasher: &mut Hasher) -> std::io::Result<u64> {
    file.seek(SeekFrom::Start(0))?;
    let mut have = 0;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(have);
        }
        hasher.update(&buf[..n]);
        have += n as u64;
    }
}

enum CopyError {
    /// The network failed after `.0` bytes were written.
    Read(u64, std::io::Error),
    Write(std::io::Error),
}

fn copy_hashing(
    mut body: impl Read,
    file: &mut File,
    hasher: &mut Hasher,
    reporter: &dyn Reporter,
) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; 256 << 10];
    let mut written = 0u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => return Ok(written),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(written, e)),
        };
        file.write_all(&buf[..n]).map_err(CopyError::Write)?;
        hasher.update(&buf[..n]);
        written += n as u64;
        reporter.advance(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::download::checksum::hash_reader;
    use std::io::{BufRead, BufReader};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// A real HTTP/1.1 server on loopback with scripted faults, for the paths users hit: a mirror that
    /// drops the connection mid-file, one that serves the wrong file, one that 404s.
    struct FaultyServer {
        port: u16,
        log: Arc<Mutex<Vec<String>>>,
        full_gets: Arc<AtomicUsize>,
    }

    const GOOD: &[u8] = &[7u8; 3 * 1024 * 1024 + 17];

    impl FaultyServer {
        fn start() -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let log = Arc::new(Mutex::new(Vec::new()));
            let full_gets = Arc::new(AtomicUsize::new(0));
            let dropped_once = Arc::new(AtomicUsize::new(0));
            let (l, f) = (log.clone(), full_gets.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let (l, f, d) = (l.clone(), f.clone(), dropped_once.clone());
                    std::thread::spawn(move || serve(stream, &l, &f, &d));
                }
            });
            FaultyServer {
                port,
                log,
                full_gets,
            }
        }

        fn url(&self, path: &str) -> String {
            format!("http://127.0.0.1:{}{path}", self.port)
        }
    }

    fn serve(
        mut stream: TcpStream,
        log: &Mutex<Vec<String>>,
        full: &AtomicUsize,
        dropped: &AtomicUsize,
    ) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_string();
        let mut range_from = None;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                range_from = v.trim().trim_end_matches('-').parse::<usize>().ok();
            }
        }
        log.lock().unwrap().push(format!("{path} {range_from:?}"));
        let body: Vec<u8> = match path.as_str() {
            "/good.iso" | "/drop.iso" | "/slow.iso" => GOOD.to_vec(),
            "/wrong.iso" => vec![8u8; 1000],
            "/SHA256SUMS" => format!(
                "{}  good.iso\n",
                hash_reader(Algorithm::Sha256, &mut &GOOD[..]).unwrap()
            )
            .into_bytes(),
            _ => {
                let _ = stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                return;
            }
        };
        let from = range_from.unwrap_or(0);
        if from == 0 {
            full.fetch_add(1, Ordering::SeqCst);
        }
        let head = if from > 0 {
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{}\r\nConnection: close\r\n\r\n",
                body.len() - from,
                body.len() - 1,
                body.len()
            )
        } else {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
        };
        let _ = stream.write_all(head.as_bytes());
        if path == "/drop.iso" && dropped.fetch_add(1, Ordering::SeqCst) == 0 {
            // First transfer: send a third of the file, then cut the connection.
            let _ = stream.write_all(&body[from..body.len() / 3]);
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
        if path == "/slow.iso" {
            std::thread::sleep(Duration::from_millis(300));
        }
        let _ = stream.write_all(&body[from..]);
    }

    fn good_sum() -> String {
        format!(
            "sha256:{}",
            hash_reader(Algorithm::Sha256, &mut &GOOD[..]).unwrap()
        )
    }

    fn fetch(
        cache: &Path,
        urls: &[String],
        checksum: &str,
        offline: bool,
    ) -> Result<PathBuf, FetchError> {
        let fetcher = Fetcher::new(Cache::new(cache.to_path_buf()), offline);
        let req = Request {
            urls,
            checksum,
            template_dir: Path::new("/"),
            extension: "iso",
            target_path: None,
        };
        fetcher.fetch(&req, &Silent)
    }

    #[test]
    fn resumes_a_dropped_transfer_with_range() {
        let server = FaultyServer::start();
        let dir = tempfile::tempdir().unwrap();
        let path = fetch(dir.path(), &[server.url("/drop.iso")], &good_sum(), false).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), GOOD);
        let log = server.log.lock().unwrap().clone();
        assert_eq!(log.len(), 2, "{log:?}");
        assert_eq!(log[0], "/drop.iso None");
        assert!(
            log[1].starts_with("/drop.iso Some("),
            "second request must resume: {log:?}"
        );
        assert!(!Cache::part_path(&path).exists());
    }

    #[test]
    fn wrong_file_names_both_sums_and_leaves_the_cache_untouched() {
        let server = FaultyServer::start();
        let dir = tempfile::tempdir().unwrap();
        let err = fetch(dir.path(), &[server.url("/wrong.iso")], &good_sum(), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("expected {}", good_sum())), "{err}");
        assert!(err.contains("got sha256:"), "{err}");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".lock"))
            .collect();
        assert!(left.is_empty(), "cache holds {left:?}");
    }

    #[test]
    fn a_404_mirror_falls_through_to_the_next() {
        let server = FaultyServer::start();
        let dir = tempfile::tempdir().unwrap();
        let urls = [server.url("/gone.iso"), server.url("/good.iso")];
        let path = fetch(dir.path(), &urls, &good_sum(), false).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), GOOD);
        let parts = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
            .count();
        assert_eq!(parts, 0, "the 404 left a part file");
    }

    #[test]
    fn every_failure_is_listed() {
        let server = FaultyServer::start();
        let dir = tempfile::tempdir().unwrap();
        let urls = [server.url("/gone.iso"), "/nonexistent/x.iso".to_string()];
        let err = fetch(dir.path(), &urls, &good_sum(), false)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "every URL failed:\n  {}: no such file\n  /nonexistent/x.iso: no such file",
                urls[0]
            )
        );
    }

    #[test]
    fn offline_mode_names_the_url_and_touches_no_network() {
        let server = FaultyServer::start();
        let dir = tempfile::tempdir().unwrap();
        let url = server.url("/good.iso");
        let err = fetch(dir.path(), std::slice::from_ref(&url), &good_sum(), true)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "every URL failed:\n  {url}: offline mode (KILN_OFFLINE) forbids network fetches"
            )
        );
        assert!(server.log.lock().unwrap().is_empty());
    }

    #[test]
    fn checksum_file_is_looked_up_by_name() {
        let server = FaultyServer::start();
        let dir = tempfile::tempdir().unwrap();
        let checksum = format!("file:{}", server.url("/SHA256SUMS"));
        let path = fetch(dir.path(), &[server.url("/good.iso")], &checksum, false).unwrap();
        assert_eq!(std::fs::read(path).unwrap(), GOOD);
    }

    #[test]
    fn parallel_builds_share_one_download() {
        let server = FaultyServer::start();
        let dir = tempfile::tempdir().unwrap();
        let url = server.url("/slow.iso");
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let (d, u) = (dir.path().to_path_buf(), url.clone());
                std::thread::spawn(move || fetch(&d, &[u], &good_sum(), false).unwrap())
            })
            .collect();
        let paths: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(paths.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(server.full_gets.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn local_files_are_verified_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let iso = dir.path().join("local.iso");
        std::fs::write(&iso, GOOD).unwrap();
        let url = format!("file://{}", iso.display());
        assert_eq!(
            fetch(
                &dir.path().join("c"),
                std::slice::from_ref(&url),
                &good_sum(),
                false
            )
            .unwrap(),
            iso
        );
        let md5_of_nothing = "md5:d41d8cd98f00b204e9800998ecf8427e";
        let err = fetch(&dir.path().join("c"), &[url], md5_of_nothing, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
    }
}
