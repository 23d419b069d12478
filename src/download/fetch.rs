//! Fetching an input (`iso_url`/`iso_urls` with `iso_checksum`) into the cache, or using it in place
//! when it is a local file.
//!
//! URLs are tried in order; a remote file is streamed to a `.part` file while it is hashed (each
//! byte is read once), resumed with an HTTP `Range` request (with `If-Range`, so only against the
//! same version of the file) when the connection drops, verified, and only then renamed into the
//! cache (see [`super::cache`] for the names and the lock). A cached entry is verified before it
//! is used; one with `iso_checksum = "none"` is checked against its note and the server instead. In offline mode (`KILN_OFFLINE=1` or `-offline`)
//! cached and local inputs work and any network fetch is an error naming the URL, so an
//! air-gapped build never reaches out behind its user's back.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::cache::{Cache, Note, Validators};
use super::checksum::{
    copy_hashing, find_in_list, Algorithm, Checksum, ChecksumError, ChecksumSpec, CopyError, Hasher,
};
use super::source::{Source, SourceError};
use tokio_util::sync::CancellationToken;

use crate::ui::progress::{Reporter, Silent};

/// Why a cached entry is not reused (said in a warning before it is fetched again).
#[derive(Debug, thiserror::Error)]
enum Stale {
    /// The entry cannot be read.
    #[error(transparent)]
    Unreadable(std::io::Error),
    /// An unverified entry is not the size it was downloaded at.
    #[error("holds {size} bytes where {downloaded} were downloaded")]
    Size {
        /// Its size now.
        size: u64,
        /// Its size when downloaded.
        downloaded: u64,
    },
    /// The server describes another version of the file.
    #[error("has changed on the server")]
    Changed,
    /// The entry fails the template's checksum.
    #[error("does not match")]
    Mismatch(#[source] ChecksumError),
}

/// What to fetch.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// `iso_urls`, or `[iso_url]`, tried in order.
    pub urls: &'a [String],
    /// `iso_checksum` as written in the template (with an old `iso_checksum_type` folded in).
    pub checksum: &'a str,
    /// Relative paths are resolved against it.
    pub template_dir: &'a Path,
    /// `iso_target_extension` (Packer's default: `iso`).
    pub extension: &'a str,
    /// `iso_target_path`: where to put the download instead of the cache; a path without an
    /// extension (or ending in `/`) is a directory that gets the cache's file name, as in Packer.
    pub target_path: Option<PathBuf>,
}

/// Why no URL gave a usable file.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no URL to fetch\nhint: set iso_url or iso_urls")]
    NoUrls,
    #[error("the download was cancelled")]
    Cancelled,
    #[error(transparent)]
    Checksum(#[from] ChecksumError),
    #[error("could not fetch the checksum file {location}: {reason}")]
    ChecksumList { location: String, reason: String },
    #[error("every URL failed:\n{}{}", list(.attempts), if *.offline { OFFLINE_HINT } else if *.network { NETWORK_HINT } else { "" })]
    AllFailed {
        attempts: Vec<(String, String)>,
        /// Whether offline mode refused a URL (the error then says how to get the file in).
        offline: bool,
        /// Whether a URL failed for lack of a network (the same hint applies).
        network: bool,
    },
}

const NETWORK_HINT: &str = "\nhint: without network access, copy the file in with `kiln cache import FILE` (see `kiln cache list`), and set KILN_OFFLINE=1 so that kiln does not try the network";
const OFFLINE_HINT: &str = "\nhint: offline mode uses only local files and the cache; copy the file in with `kiln cache import FILE` (see `kiln cache list`), or unset KILN_OFFLINE";

fn looked_at(places: &[PathBuf]) -> String {
    if places.is_empty() {
        return String::new();
    }
    let places: Vec<String> = places.iter().map(|p| p.display().to_string()).collect();
    format!("; looked for it at {}", places.join(" and "))
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
    #[error("offline mode (KILN_OFFLINE) forbids fetching {url}{}", looked_at(.looked))]
    Offline {
        /// The URL.
        url: String,
        /// Every local place that could have held it.
        looked: Vec<PathBuf>,
    },
    #[error("cancelled")]
    Cancelled,
    #[error("no such file")]
    Missing,
    #[error("HTTP {0}")]
    Status(u16),
    #[error("{0}")]
    Transport(String),
    /// No answer at all (no route, refused, DNS, timeout): the network may be missing.
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Checksum(#[from] ChecksumError),
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// `-offline` on the command line; `KILN_OFFLINE` is read as well.
static OFFLINE_FLAG: AtomicBool = AtomicBool::new(false);

/// Fetches inputs into a cache.
#[derive(Debug, Clone)]
pub struct Fetcher {
    cache: Cache,
    offline: bool,
    agent: ureq::Agent,
    /// How many times a dropped transfer is resumed before the URL counts as failed.
    resumes: u32,
    /// The build's Ctrl-C: a download stops at the next chunk, keeping its `.part` file.
    cancel: Option<CancellationToken>,
}

impl Fetcher {
    /// A fetcher over `cache`; `offline` forbids network access.
    pub fn new(cache: Cache, offline: bool) -> Self {
        let agent = crate::http::agent(None);
        Fetcher {
            cache,
            offline,
            agent,
            resumes: 5,
            cancel: None,
        }
    }

    /// Stops downloads when `cancel` is cancelled (the partial file stays for a resume).
    #[must_use]
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = Some(cancel);
        self
    }

    /// Turns offline mode on for the whole process (the `-offline` flag).
    pub fn set_offline() {
        OFFLINE_FLAG.store(true, Ordering::Relaxed);
    }

    /// True after `-offline`, or when `KILN_OFFLINE` is set to anything but `0` or empty.
    pub fn offline_from_env() -> bool {
        OFFLINE_FLAG.load(Ordering::Relaxed)
            || std::env::var("KILN_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0")
    }

    /// Returns the path of a verified copy of the input.
    pub fn fetch(&self, req: &Request<'_>, reporter: &dyn Reporter) -> Result<PathBuf, FetchError> {
        let first = req.urls.first().ok_or(FetchError::NoUrls)?;
        let file_name = Source::parse(first, req.template_dir)
            .map(|s| s.file_name())
            .unwrap_or_default();
        let expected =
            self.resolve_checksum(req.checksum, &file_name, req.template_dir, reporter)?;

        let mut attempts = Vec::new();
        let (mut offline, mut network) = (false, false);
        for url in req.urls {
            let result = match Source::parse(url, req.template_dir) {
                Ok(Source::Local(path)) => use_local(&path, expected.as_ref(), reporter),
                Ok(Source::Remote(url)) => {
                    // Packer's key: the checksum, or the URL when there is none.
                    let key = expected
                        .as_ref()
                        .map_or_else(|| url.clone(), ToString::to_string);
                    let entry = self.entry_path(req, &key);
                    match self.cached_elsewhere(req, &key, &entry, expected.as_ref(), reporter) {
                        Some(cached) => Ok(cached),
                        None => self
                            .fetch_remote(&url, &entry, expected.as_ref(), reporter)
                            .map_err(|e| match e {
                                AttemptError::Offline { url, mut looked }
                                    if entry != self.cache.entry_path(&key, req.extension) =>
                                {
                                    looked.push(self.cache.entry_path(&key, req.extension));
                                    AttemptError::Offline { url, looked }
                                }
                                other => other,
                            }),
                    }
                }
                Err(e) => Err(e.into()),
            };
            match result {
                Ok(path) => return Ok(path),
                Err(AttemptError::Cancelled) => return Err(FetchError::Cancelled),
                Err(e) => {
                    tracing::warn!(url = %url, error = %e, "could not fetch; trying the next URL");
                    offline |= matches!(e, AttemptError::Offline { .. });
                    network |= matches!(e, AttemptError::Unreachable(_));
                    attempts.push((url.clone(), e.to_string()));
                }
            }
        }
        Err(FetchError::AllFailed {
            attempts,
            offline,
            network,
        })
    }

    /// The digest `iso_checksum` stands for: the value itself, or the entry for `file_name` in
    /// the checksum file it names (read from disk, or fetched unless offline). `None` for `none`,
    /// with a warning.
    pub fn resolve_checksum(
        &self,
        checksum: &str,
        file_name: &str,
        template_dir: &Path,
        reporter: &dyn Reporter,
    ) -> Result<Option<Checksum>, FetchError> {
        match ChecksumSpec::parse(checksum)? {
            ChecksumSpec::None => {
                reporter.warn("iso_checksum is \"none\": the input is not verified");
                Ok(None)
            }
            ChecksumSpec::Digest(c) => Ok(Some(c)),
            ChecksumSpec::File {
                algorithm,
                location,
            } => {
                let text = self.read_list(&location, template_dir)?;
                Ok(Some(find_in_list(&text, &location, file_name, algorithm)?))
            }
        }
    }

    /// With `iso_target_path` and a checksum, when the target has no copy: the cache's verified
    /// copy (imported with `kiln cache import`, or fetched by a build without the target path),
    /// put at the target (a hard link, or a copy across filesystems) without the network.
    fn cached_elsewhere(
        &self,
        req: &Request<'_>,
        key: &str,
        entry: &Path,
        expected: Option<&Checksum>,
        reporter: &dyn Reporter,
    ) -> Option<PathBuf> {
        let expected = expected?;
        let cached = self.cache.entry_path(key, req.extension);
        if cached == entry || entry.exists() || !cached.exists() {
            return None;
        }
        let _lock = Cache::lock(&cached).ok()?;
        expected.verify_file(&cached, reporter).ok()?;
        Cache::touch(&cached);
        let part = Cache::part_path(entry);
        let placed = entry
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                let _ = std::fs::remove_file(&part);
                std::fs::hard_link(&cached, &part)
                    .or_else(|_| std::fs::copy(&cached, &part).map(drop))
            })
            .and_then(|()| std::fs::rename(&part, entry));
        match placed {
            Ok(()) => Some(entry.to_path_buf()),
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                tracing::debug!(error = %e, "cannot put the cached copy at iso_target_path; using it in the cache");
                Some(cached)
            }
        }
    }

    /// Where the input for `key` goes: the cache, or `iso_target_path`.
    fn entry_path(&self, req: &Request<'_>, key: &str) -> PathBuf {
        match &req.target_path {
            None => self.cache.entry_path(key, req.extension),
            Some(path) if path.extension().is_none() || path.to_string_lossy().ends_with('/') => {
                let ext = if req.extension.is_empty() {
                    "iso"
                } else {
                    req.extension
                };
                path.join(Cache::entry_name(key, ext))
            }
            Some(path) => path.clone(),
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
                    return Err(fail(format!(
                        "{}\nhint: write the digest into iso_checksum (\"sha256:…\"), or copy the checksum file beside the template and use \"file:./SHA256SUMS\"",
                        AttemptError::Offline {
                            url: url.clone(),
                            looked: Vec::new(),
                        }
                    )));
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
        // Another build may be fetching it: wait, then use what it fetched.
        let _lock = Cache::lock(entry)?;
        if entry.exists() {
            let reusable = match expected {
                None => self.still_current(url, entry),
                Some(c) => c.verify_file(entry, reporter).map_err(Stale::Mismatch),
            };
            match reusable {
                Ok(()) => {
                    Cache::touch(entry);
                    return Ok(entry.to_path_buf());
                }
                Err(why) => {
                    reporter.warn(&format!(
                        "{} {}; fetching it again",
                        entry.display(),
                        crate::report::chain(&why)
                    ));
                    std::fs::remove_file(entry)?;
                    Note::remove(entry)?;
                }
            }
        }
        if self.offline {
            return Err(AttemptError::Offline {
                url: url.to_string(),
                looked: vec![entry.to_path_buf()],
            });
        }
        let part = Cache::part_path(entry);
        let algorithm = expected.map_or(Algorithm::Sha256, |c| c.algorithm);
        let fetched = self.download(url, entry, algorithm, expected.is_some(), reporter);
        reporter.finish();
        let (digest, validators) = match fetched {
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
        let note = Note {
            checksum: expected.map(ToString::to_string),
            origin: Some(url.to_string()),
            validators,
        };
        Cache::commit(entry, &note)?;
        Ok(entry.to_path_buf())
    }

    /// Whether an unverified (`none`) entry is still the file at `url`: its size must be the one
    /// noted when it was downloaded, and when online the server (asked with `HEAD`) must still
    /// describe the same version and size. A server that cannot be asked leaves it trusted, as
    /// offline mode does. `Err` says why not.
    fn still_current(&self, url: &str, entry: &Path) -> Result<(), Stale> {
        let size = std::fs::metadata(entry).map_err(Stale::Unreadable)?.len();
        let noted = Note::read(entry).validators;
        if let Some(downloaded) = noted.size.filter(|&s| s != size) {
            return Err(Stale::Size { size, downloaded });
        }
        if self.offline {
            return Ok(());
        }
        match self.agent.head(url).call() {
            Ok(r) if r.status() == 200 => {
                let now = validators(&r, 0);
                let here = Validators {
                    size: Some(size),
                    ..noted
                };
                if here.same_version(&now) {
                    Ok(())
                } else {
                    Err(Stale::Changed)
                }
            }
            Ok(r) => {
                tracing::debug!(
                    url,
                    status = r.status().as_u16(),
                    "could not revalidate; using the cached copy"
                );
                Ok(())
            }
            Err(e) => {
                tracing::debug!(url, error = %e, "could not revalidate; using the cached copy");
                Ok(())
            }
        }
    }

    /// Streams `url` into `entry`'s `.part` file, resuming from what it already holds; returns
    /// the hex digest and what the server said identifies the file.
    ///
    /// A resume sends `If-Range` with the validators of the transfer it continues, and a `206`
    /// is only appended when it starts where the part ends and names the same version (a server
    /// may ignore `If-Range`): anything else starts over, so a part never mixes two versions. A
    /// body counts as whole only when its length is known and reached, or its chunked encoding
    /// ended; a body delimited by the connection's close (which a cut also looks like) is
    /// confirmed by asking for the bytes after it, unless the checksum will decide. Without a
    /// checksum (`verified` false), a part is only resumed when the server gave a validator.
    fn download(
        &self,
        url: &str,
        entry: &Path,
        algorithm: Algorithm,
        verified: bool,
        reporter: &dyn Reporter,
    ) -> Result<(String, Validators), AttemptError> {
        let part = Cache::part_path(entry);
        let mut file = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&part)?;
        let mut hasher = algorithm.hasher();
        // What a part left by an earlier build is a prefix of, if it came from this URL.
        let note = Note::read(entry);
        let mut version = (note.origin.as_deref() == Some(url)).then_some(note.validators);
        let resumable =
            |v: &Option<Validators>| verified || v.as_ref().is_some_and(|v| v.if_range().is_some());
        let mut have = if resumable(&version) {
            hash_prefix(&mut file, &mut hasher)?
        } else {
            0
        };
        let mut failures = 0;
        let mut started = false;
        loop {
            if have == 0 {
                hasher = start_over(&mut file, algorithm)?;
            }
            let mut request = self.agent.get(url);
            if have > 0 {
                request = request.header("Range", format!("bytes={have}-"));
                if let Some(v) = version.as_ref().and_then(Validators::if_range) {
                    request = request.header("If-Range", v);
                }
            }
            let response = match request.call() {
                Ok(r) => r,
                Err(e) => {
                    failures += 1;
                    if failures > self.resumes || have == 0 {
                        return Err(AttemptError::Unreachable(e.to_string()));
                    }
                    continue;
                }
            };
            let status = response.status().as_u16();
            let got = validators(&response, have);
            let same = version.as_ref().is_none_or(|v| v.same_version(&got));
            match status {
                206 if same && content_range(&response).0 == Some(have) => {}
                // A range of another version (If-Range ignored) or from elsewhere: start over.
                206 => have = 0,
                // The whole file: the first response, or the server's answer to an If-Range
                // that no longer matches (or it ignores ranges). Start over with it.
                200 => {
                    if have > 0 {
                        have = 0;
                        hasher = start_over(&mut file, algorithm)?;
                    }
                    version = Some(got);
                    // So that a later build resumes this part only against this version.
                    let note = Note {
                        checksum: None,
                        origin: Some(url.to_string()),
                        validators: version.clone().unwrap_or_default(),
                    };
                    if let Err(e) = note.write(entry) {
                        tracing::debug!(url, error = %e, "could not note the download's validators");
                    }
                }
                // Nothing after the part's end: it is whole if the server says the file is
                // exactly that long, and the same version.
                416 if have > 0 => {
                    if same && content_range(&response).1 == Some(have) {
                        return Ok((hasher.finish_hex(), finished(version, have)));
                    }
                    have = 0;
                }
                404 | 410 => return Err(AttemptError::Missing),
                _ => return Err(AttemptError::Status(status)),
            }
            if status == 206 && have == 0 {
                // Drop this response and ask for the whole file.
                failures += 1;
                if failures > self.resumes {
                    return Err(AttemptError::Transport(
                        "the server keeps sending ranges of another version of the file".into(),
                    ));
                }
                continue;
            }
            if status == 416 {
                continue;
            }
            let total = content_total(&response, have);
            let chunked = response
                .headers()
                .get("transfer-encoding")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
            if !started {
                reporter.start(&format!("Downloading {url}"), total, have);
                started = true;
            }
            let mut body = response.into_body().into_reader();
            match copy_hashing(
                &mut body,
                &mut file,
                std::slice::from_mut(&mut hasher),
                reporter,
                self.cancel.as_ref(),
            ) {
                Ok(n) => {
                    have += n;
                    let whole = match total {
                        Some(t) => have >= t,
                        None => chunked || verified,
                    };
                    if whole {
                        file.flush()?;
                        return Ok((hasher.finish_hex(), finished(version, have)));
                    }
                    if total.is_none() && !resumable(&version) {
                        return Err(AttemptError::Transport(
                            "the server gave neither the file's length nor a validator (ETag, Last-Modified), so a cut transfer cannot be told from a whole one\nhint: set iso_checksum".into(),
                        ));
                    }
                    // The body ended early without an error, or ended with the connection
                    // (as a cut does): ask for the rest, which a whole file has none of (416).
                }
                Err(CopyError::Write(e)) => return Err(e.into()),
                Err(CopyError::Cancelled) => {
                    file.flush()?;
                    return Err(AttemptError::Cancelled);
                }
                Err(CopyError::Read(n, e)) => {
                    have += n;
                    tracing::debug!(url, error = %e, have, "transfer dropped; resuming");
                    if !resumable(&version) {
                        have = 0;
                    }
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

/// Empties a part file to download it from the start; returns the hasher for it.
fn start_over(file: &mut File, algorithm: Algorithm) -> std::io::Result<Hasher> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(algorithm.hasher())
}

/// The validators of a finished download of `size` bytes.
fn finished(version: Option<Validators>, size: u64) -> Validators {
    Validators {
        size: Some(size),
        ..version.unwrap_or_default()
    }
}

/// What `response` says identifies the file: its strong `ETag`, `Last-Modified`, and the whole
/// size (see [`content_total`]; `have` is where a `206` starts).
fn validators(response: &ureq::http::Response<ureq::Body>, have: u64) -> Validators {
    let header = |name: &str| crate::http::header(response, name);
    Validators {
        etag: header("etag").filter(|e| !e.starts_with("W/")),
        last_modified: header("last-modified"),
        size: content_total(response, have),
    }
}

fn use_local(
    path: &Path,
    expected: Option<&Checksum>,
    reporter: &dyn Reporter,
) -> Result<PathBuf, AttemptError> {
    if !path.is_file() {
        return Err(AttemptError::Missing);
    }
    if let Some(c) = expected {
        c.verify_file(path, reporter)?;
    }
    Ok(path.to_path_buf())
}

/// The full size from `Content-Range` (206) or `Content-Length` (200).
fn content_total(response: &ureq::http::Response<ureq::Body>, have: u64) -> Option<u64> {
    if response.headers().contains_key("content-range") {
        return content_range(response).1;
    }
    response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|len| len + have)
}

/// The first byte and the full size from `Content-Range: bytes FIRST-LAST/SIZE` (or
/// `bytes */SIZE` on a 416).
fn content_range(response: &ureq::http::Response<ureq::Body>) -> (Option<u64>, Option<u64>) {
    let Some(range) = response
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
    else {
        return (None, None);
    };
    let (span, size) = range
        .trim()
        .strip_prefix("bytes ")
        .and_then(|r| r.split_once('/'))
        .unwrap_or_default();
    let first = span
        .split_once('-')
        .and_then(|(f, _)| f.trim().parse().ok());
    (first, size.trim().parse().ok())
}

/// Hashes what a resumed part file already holds and leaves the cursor at its end.
fn hash_prefix(file: &mut File, hasher: &mut Hasher) -> std::io::Result<u64> {
    file.seek(SeekFrom::Start(0))?;
    copy_hashing(
        file,
        &mut std::io::sink(),
        std::slice::from_mut(hasher),
        &Silent,
        None,
    )
    .map_err(CopyError::into_io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::download::checksum::hash_reader;

    const DATA: &[u8] = b"an installer image";

    fn sum() -> String {
        format!(
            "sha256:{}",
            hash_reader(Algorithm::Sha256, &mut &DATA[..]).unwrap()
        )
    }

    fn request<'a>(urls: &'a [String], checksum: &'a str, dir: &'a Path) -> Request<'a> {
        Request {
            urls,
            checksum,
            template_dir: dir,
            extension: "iso",
            target_path: None,
        }
    }

    #[test]
    fn local_files_are_verified_in_place() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("local.iso"), DATA).unwrap();
        let fetcher = Fetcher::new(Cache::new(dir.path().join("c")), true);
        // A relative path is taken from the template's directory, even offline.
        let urls = ["local.iso".to_string()];
        let got = fetcher
            .fetch(&request(&urls, &sum(), dir.path()), &Silent)
            .unwrap();
        assert_eq!(got, dir.path().join("local.iso"));
        let md5_of_nothing = "md5:d41d8cd98f00b204e9800998ecf8427e";
        let err = fetcher
            .fetch(&request(&urls, md5_of_nothing, dir.path()), &Silent)
            .unwrap_err()
            .to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
        assert!(!dir.path().join("c").exists(), "a local file is not copied");
    }

    #[test]
    fn offline_mode_uses_a_cached_entry_and_refetches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        let entry = cache.entry_path(&sum(), "iso");
        std::fs::write(Cache::part_path(&entry), DATA).unwrap();
        Cache::commit(&entry, &Note::default()).unwrap();
        // Port 9 on loopback: nothing listens, and offline mode must not even try.
        let urls = ["http://127.0.0.1:9/x.iso".to_string()];
        let fetcher = Fetcher::new(cache, true);
        let got = fetcher
            .fetch(&request(&urls, &sum(), dir.path()), &Silent)
            .unwrap();
        assert_eq!(got, entry);
        // A cached entry that does not match is not used, and offline mode names the URL.
        std::fs::write(&entry, b"bit rot").unwrap();
        let err = fetcher
            .fetch(&request(&urls, &sum(), dir.path()), &Silent)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("every URL failed:\n  http://127.0.0.1:9/x.iso: offline mode (KILN_OFFLINE) forbids fetching http://127.0.0.1:9/x.iso; looked for it at {}\nhint: offline mode uses only local files and the cache", entry.display())),
            "{err}"
        );
        assert!(!entry.exists(), "the damaged entry is removed");
    }

    #[test]
    fn target_path_without_extension_is_a_directory() {
        let fetcher = Fetcher::new(Cache::new(PathBuf::from("/c")), true);
        let urls = ["http://m/x.iso".to_string()];
        let key = sum();
        let mut req = request(&urls, &key, Path::new("/t"));
        assert_eq!(
            fetcher.entry_path(&req, &key),
            Path::new("/c").join(Cache::entry_name(&key, "iso"))
        );
        req.target_path = Some("isos/debian.iso".into());
        assert_eq!(fetcher.entry_path(&req, &key), Path::new("isos/debian.iso"));
        for dir in ["isos", "isos/"] {
            req.target_path = Some(dir.into());
            assert_eq!(
                fetcher.entry_path(&req, &key),
                Path::new("isos").join(Cache::entry_name(&key, "iso"))
            );
        }
    }

    #[test]
    fn offline_mode_cannot_read_a_remote_checksum_file() {
        let dir = tempfile::tempdir().unwrap();
        let fetcher = Fetcher::new(Cache::new(dir.path().to_path_buf()), true);
        let urls = ["http://127.0.0.1:9/x.iso".to_string()];
        let err = fetcher
            .fetch(
                &request(&urls, "file:http://127.0.0.1:9/SHA256SUMS", dir.path()),
                &Silent,
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("could not fetch the checksum file http://127.0.0.1:9/SHA256SUMS: offline mode (KILN_OFFLINE) forbids fetching http://127.0.0.1:9/SHA256SUMS\nhint: write the digest"),
            "{err}"
        );
    }
}
