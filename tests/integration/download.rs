//! Getting a build's inputs, against a real HTTP/1.1 server on loopback written for these tests
//! (it can drop a connection mid-file, serve the wrong bytes, 404, or be slow): resume with
//! `Range`, checksum mismatches that leave the cache clean, mirror fall-through, offline mode,
//! parallel builds sharing one download, every `iso_url`/`iso_checksum` form, `kiln cache
//! import` feeding an offline build, Ctrl-C mid-download then a resume, and progress as a bar on
//! a terminal, plain lines in a pipe and nothing with `-machine-readable`.
//!
//! The fetch API is tested directly where that says it best; what users see is tested with the
//! real `kiln` binary. Builds boot a real QEMU (TCG) with a 4 MiB "disk image" whose boot sector
//! is kiln's KVM probe guest: it exits QEMU through `isa-debug-exit` a few seconds after boot
//! (SeaBIOS's boot menu waits 2.5 s first, past kiln's check for a QEMU that dies at once), so a
//! whole build — download, disk copy, boot, shutdown, `qemu-img convert` — takes seconds.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::text;
use kiln::download::checksum::hash_reader;
use kiln::download::{Algorithm, Cache, Fetcher, Request};
use kiln::ui::{Reporter, Silent};

/// What the server does for one path.
#[derive(Clone)]
enum Route {
    /// Serve the bytes (honouring `Range`).
    File(Arc<Vec<u8>>),
    /// The first transfer stops after a third of the file; later ones are served whole.
    DropOnce(Arc<Vec<u8>>),
    /// Wait before sending, so that concurrent requests overlap.
    Slow(Arc<Vec<u8>>),
    /// The first transfer trickles (64 KiB every `.1` ms); later ones are served whole.
    DripOnce(Arc<Vec<u8>>, u64),
    /// Each GET takes the next reply; the last one answers every GET after it. `HEAD` describes
    /// the reply next in line.
    Script(Arc<Mutex<VecDeque<Reply>>>),
}

/// One answer of a [`Route::Script`], like a real server's: a version of the file with its
/// `ETag`, honouring `Range` (and `If-Range` unless told not to).
#[derive(Clone)]
struct Reply {
    body: Arc<Vec<u8>>,
    /// Sent as a strong `ETag`; empty for none.
    etag: &'static str,
    framing: Framing,
    /// Stop after this many bytes of the body and close the connection.
    cut: Option<usize>,
    if_range: bool,
    /// Answer with this status and no body instead.
    status: Option<u16>,
}

#[derive(Clone, Copy, Debug)]
enum Framing {
    ContentLength,
    Chunked,
    /// No length: the body ends when the connection closes (HTTP/1.0 style).
    Close,
}

impl Reply {
    fn new(body: &Arc<Vec<u8>>, etag: &'static str) -> Self {
        Reply {
            body: body.clone(),
            etag,
            framing: Framing::ContentLength,
            cut: None,
            if_range: true,
            status: None,
        }
    }
    fn cut(self, at: usize, framing: Framing) -> Self {
        Reply {
            cut: Some(at),
            framing,
            ..self
        }
    }
    fn ignoring_if_range(self) -> Self {
        Reply {
            if_range: false,
            ..self
        }
    }
    fn status(self, status: u16) -> Self {
        Reply {
            status: Some(status),
            ..self
        }
    }
}

fn script(replies: Vec<Reply>) -> Route {
    Route::Script(Arc::new(Mutex::new(replies.into())))
}

/// One request the server saw: the path, the first byte of a `Range: bytes=N-` header and
/// the `If-Range` header, for GETs (HEADs are logged with `head` set).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    path: String,
    range: Option<usize>,
    if_range: Option<String>,
    head: bool,
}

struct Server {
    port: u16,
    log: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    /// Serves `routes` on an ephemeral loopback port until the test ends; other paths 404.
    fn start(routes: Vec<(&str, Route)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let routes: Arc<HashMap<String, Route>> =
            Arc::new(routes.into_iter().map(|(p, r)| (p.to_owned(), r)).collect());
        let dropped = Arc::new(Mutex::new(Vec::<String>::new()));
        let l = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (l, r, d) = (l.clone(), routes.clone(), dropped.clone());
                std::thread::spawn(move || serve(stream, &l, &r, &d));
            }
        });
        Server { port, log }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn seen(&self, path: &str) -> Vec<Seen> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }

    /// GETs for `path`.
    fn gets(&self, path: &str) -> Vec<Seen> {
        self.seen(path).into_iter().filter(|s| !s.head).collect()
    }

    /// Requests for `path` that started at byte 0 (whole-file transfers).
    fn full_gets(&self, path: &str) -> usize {
        self.gets(path)
            .iter()
            .filter(|s| s.range.unwrap_or(0) == 0)
            .count()
    }
}

fn serve(
    mut stream: TcpStream,
    log: &Mutex<Vec<Seen>>,
    routes: &HashMap<String, Route>,
    dropped: &Mutex<Vec<String>>,
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
        .to_owned();
    let head = request_line.starts_with("HEAD ");
    let (mut range, mut if_range) = (None, None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
            range = v.trim().trim_end_matches('-').parse::<usize>().ok();
        }
        if line.to_ascii_lowercase().starts_with("if-range:") {
            if_range = Some(line["if-range:".len()..].trim().to_owned());
        }
    }
    log.lock().unwrap().push(Seen {
        path: path.clone(),
        range,
        if_range: if_range.clone(),
        head,
    });
    let Some(route) = routes.get(&path) else {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let body = match route {
        Route::File(b) | Route::DropOnce(b) | Route::Slow(b) | Route::DripOnce(b, _) => b.clone(),
        Route::Script(replies) => {
            let reply = {
                let mut replies = replies.lock().unwrap();
                match replies.len() {
                    n if n > 1 && !head => replies.pop_front(),
                    _ => replies.front().cloned(),
                }
            };
            if let Some(reply) = reply {
                answer(stream, &reply, head, range, if_range.as_deref());
            }
            return;
        }
    };
    let from = range.unwrap_or(0).min(body.len());
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
    match route {
        Route::DropOnce(_) if !dropped.lock().unwrap().contains(&path) => {
            dropped.lock().unwrap().push(path);
            let _ = stream.write_all(&body[from..body.len() / 3]);
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
        Route::Slow(_) => std::thread::sleep(Duration::from_millis(500)),
        Route::DripOnce(_, ms) if !dropped.lock().unwrap().contains(&path) => {
            dropped.lock().unwrap().push(path);
            for chunk in body[from..].chunks(64 << 10) {
                std::thread::sleep(Duration::from_millis(*ms));
                if stream.write_all(chunk).is_err() {
                    return; // the client went away
                }
            }
            return;
        }
        _ => {}
    }
    let _ = stream.write_all(&body[from..]);
}

/// Answers one request with `reply`, as a real server does: a `206` for a `Range` whose
/// `If-Range` (if any) names the current version, else the whole file.
fn answer(
    mut stream: TcpStream,
    reply: &Reply,
    head: bool,
    range: Option<usize>,
    if_range: Option<&str>,
) {
    let body = &reply.body;
    if let Some(status) = reply.status {
        let _ = write!(
            stream,
            "HTTP/1.1 {status} Nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        return;
    }
    let etag = format!("\"{}\"", reply.etag);
    let current = !reply.if_range || if_range.is_none_or(|v| v == etag);
    let from = range.filter(|_| current).unwrap_or(0);
    if from >= body.len() && from > 0 {
        let _ = write!(
            stream,
            "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nETag: {etag}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            body.len()
        );
        return;
    }
    let mut head_lines = if from > 0 {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{}/{}\r\n",
            body.len() - 1,
            body.len()
        )
    } else {
        "HTTP/1.1 200 OK\r\n".to_owned()
    };
    match reply.framing {
        Framing::ContentLength => {
            head_lines.push_str(&format!("Content-Length: {}\r\n", body.len() - from));
        }
        Framing::Chunked => head_lines.push_str("Transfer-Encoding: chunked\r\n"),
        Framing::Close => {}
    }
    if !reply.etag.is_empty() {
        head_lines.push_str(&format!("ETag: {etag}\r\n"));
    }
    head_lines.push_str("Connection: close\r\n\r\n");
    if stream.write_all(head_lines.as_bytes()).is_err() || head {
        return;
    }
    let end = reply.cut.unwrap_or(body.len()).clamp(from, body.len());
    let data = &body[from..end];
    let _ = match reply.framing {
        Framing::Chunked => {
            // One chunk per 64 KiB; the terminating empty chunk only for a whole body.
            let mut out = Vec::new();
            for chunk in data.chunks(64 << 10) {
                out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            if reply.cut.is_none() {
                out.extend_from_slice(b"0\r\n\r\n");
            }
            stream.write_all(&out)
        }
        _ => stream.write_all(data),
    };
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// A 4 MiB raw disk whose boot sector exits QEMU (see the module doc).
fn disk() -> Arc<Vec<u8>> {
    let mut d = include_bytes!("../../src/builder/qemu/kvm-probe.bin").to_vec();
    d.resize(4 << 20, 0);
    Arc::new(d)
}

fn sha256(data: &[u8]) -> String {
    hash_reader(Algorithm::Sha256, &mut &data[..]).unwrap()
}

/// Files in `dir` that are neither lock files nor kiln's notes.
fn cache_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".lock") && !n.ends_with(".kiln"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn fetch(
    cache: &Path,
    urls: &[String],
    checksum: &str,
    offline: bool,
) -> Result<PathBuf, kiln::download::FetchError> {
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

// ---- the fetch API ----------------------------------------------------------------------

#[test]
fn fetch_resumes_a_dropped_transfer_with_range() {
    let data = disk();
    let server = Server::start(vec![("/d.img", Route::DropOnce(data.clone()))]);
    let dir = tempfile::tempdir().unwrap();
    let sum = format!("sha256:{}", sha256(&data));
    let path = fetch(dir.path(), &[server.url("/d.img")], &sum, false).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), *data);
    let seen = server.seen("/d.img");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].range, None);
    let resumed_at = seen[1]
        .range
        .expect("the second request resumes with Range");
    assert!(resumed_at > 0 && resumed_at <= data.len() / 3, "{seen:?}");
    assert_eq!(path, dir.path().join(Cache::entry_name(&sum, "iso")));
    assert_eq!(cache_files(dir.path()), [Cache::entry_name(&sum, "iso")]);
}

#[test]
fn fetch_of_a_wrong_file_names_both_sums_and_leaves_the_cache_clean() {
    let good = disk();
    let wrong = Arc::new(vec![8u8; 100_000]);
    let server = Server::start(vec![
        ("/wrong.img", Route::File(wrong.clone())),
        ("/good.img", Route::File(good.clone())),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let sum = format!("sha256:{}", sha256(&good));
    let err = fetch(dir.path(), &[server.url("/wrong.img")], &sum, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("expected {sum}")), "{err}");
    assert!(
        err.contains(&format!("got sha256:{}", sha256(&wrong))),
        "{err}"
    );
    assert_eq!(cache_files(dir.path()), Vec::<String>::new());
    // Nothing of the wrong file is reused: the next fetch downloads the good one whole.
    let path = fetch(dir.path(), &[server.url("/good.img")], &sum, false).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), *good);
    assert_eq!(server.seen("/good.img")[0].range, None);
}

#[test]
fn fetch_falls_through_a_404_mirror_to_the_next() {
    let data = disk();
    let server = Server::start(vec![("/good.img", Route::File(data.clone()))]);
    let dir = tempfile::tempdir().unwrap();
    let urls = [server.url("/gone.img"), server.url("/good.img")];
    let sum = format!("sha256:{}", sha256(&data));
    let path = fetch(dir.path(), &urls, &sum, false).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), *data);
    assert_eq!(server.seen("/gone.img").len(), 1);
    assert_eq!(cache_files(dir.path()), [Cache::entry_name(&sum, "iso")]);

    // When every mirror fails, each says why.
    let urls = [server.url("/gone.img"), "/nonexistent/x.iso".to_owned()];
    let err = fetch(&dir.path().join("c2"), &urls, &sum, false)
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
fn fetch_offline_names_the_url_and_sends_nothing() {
    let data = disk();
    let server = Server::start(vec![("/good.img", Route::File(data.clone()))]);
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("/good.img");
    let sum = format!("sha256:{}", sha256(&data));
    let err = fetch(dir.path(), std::slice::from_ref(&url), &sum, true)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "every URL failed:\n  {url}: offline mode (KILN_OFFLINE) forbids fetching {url}; looked for it at "
        )),
        "{err}"
    );
    assert!(err.contains("kiln cache import"), "{err}");
    assert!(server.log.lock().unwrap().is_empty());
}

#[test]
fn fetch_from_three_threads_downloads_once() {
    let data = disk();
    let server = Server::start(vec![("/slow.img", Route::Slow(data.clone()))]);
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("/slow.img");
    let sum = format!("sha256:{}", sha256(&data));
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let (d, u, s) = (dir.path().to_path_buf(), url.clone(), sum.clone());
            std::thread::spawn(move || fetch(&d, &[u], &s, false).unwrap())
        })
        .collect();
    let paths: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(paths.windows(2).all(|w| w[0] == w[1]), "{paths:?}");
    assert_eq!(server.seen("/slow.img").len(), 1);
}

/// Collects warnings (the fetch API's only user-facing words besides errors).
#[derive(Default)]
struct Warnings(Mutex<Vec<String>>);
impl Reporter for Warnings {
    fn warn(&self, message: &str) {
        self.0.lock().unwrap().push(message.to_owned());
    }
}

#[test]
fn every_checksum_form_and_target_path() {
    let data = disk();
    let hex = sha256(&data);
    let other = "0".repeat(64);
    let sums = format!("{other}  other.img\n{hex} *./images/good.img\n");
    let server = Server::start(vec![
        ("/images/good.img", Route::File(data.clone())),
        (
            "/SHA256SUMS",
            Route::File(Arc::new(sums.clone().into_bytes())),
        ),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let template_dir = dir.path().join("tpl");
    std::fs::create_dir_all(template_dir.join("images")).unwrap();
    std::fs::write(template_dir.join("images/good.img"), &*data).unwrap();
    std::fs::write(template_dir.join("SHA256SUMS"), &sums).unwrap();
    let fetcher = Fetcher::new(Cache::new(dir.path().join("cache")), false);
    let get = |url: &str, checksum: &str, target: Option<PathBuf>, reporter: &dyn Reporter| {
        let urls = [url.to_owned()];
        let req = Request {
            urls: &urls,
            checksum,
            template_dir: &template_dir,
            extension: "iso",
            target_path: target,
        };
        fetcher.fetch(&req, reporter)
    };
    let local = template_dir.join("images/good.img");

    // A relative path is taken from the template's directory and used in place; a bare hex value
    // names its algorithm by its length; upper case is fine.
    let got = get("images/good.img", &hex.to_uppercase(), None, &Silent).unwrap();
    assert_eq!(got, local);
    // file:// URL, with a checksum file next to the template, looked up by file name.
    let file_url = format!("file://{}", local.display());
    assert_eq!(
        get(&file_url, "file:SHA256SUMS", None, &Silent).unwrap(),
        local
    );
    // A checksum file over HTTP, for a download.
    let url = server.url("/images/good.img");
    let checksum_url = format!("file:{}", server.url("/SHA256SUMS"));
    let got = get(&url, &checksum_url, None, &Silent).unwrap();
    // The entry is named by the digest the list gave, as Packer 1.6 names it.
    assert_eq!(
        got,
        dir.path()
            .join("cache")
            .join(Cache::entry_name(&format!("sha256:{hex}"), "iso"))
    );
    // A list without the file says which name it looked for.
    std::fs::write(
        template_dir.join("OTHERSUMS"),
        format!("{other}  other.img\n"),
    )
    .unwrap();
    let err = get(&url, "file:./OTHERSUMS", None, &Silent)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("no checksum for `good.img` in the checksum file"),
        "{err}"
    );
    // `none` is accepted with a warning, and the entry is named by the URL.
    let warnings = Warnings::default();
    let got = get(&url, "none", None, &warnings).unwrap();
    assert_eq!(
        got,
        dir.path()
            .join("cache")
            .join(Cache::entry_name(&url, "iso"))
    );
    assert_eq!(
        *warnings.0.lock().unwrap(),
        ["iso_checksum is \"none\": the input is not verified"]
    );
    // md5/sha1/sha512 prefixes work like sha256.
    for algorithm in [Algorithm::Md5, Algorithm::Sha1, Algorithm::Sha512] {
        let digest = hash_reader(algorithm, &mut &data[..]).unwrap();
        get(
            "images/good.img",
            &format!("{algorithm}:{digest}"),
            None,
            &Silent,
        )
        .unwrap();
    }
    // iso_target_path: a file name is used as is; a directory gets the cache's name.
    let target = dir.path().join("isos/debian.iso");
    let sum = format!("sha256:{hex}");
    assert_eq!(
        get(&url, &sum, Some(target.clone()), &Silent).unwrap(),
        target
    );
    assert_eq!(std::fs::read(&target).unwrap(), *data);
    let target_dir = dir.path().join("isodir");
    assert_eq!(
        get(&url, &sum, Some(target_dir.clone()), &Silent).unwrap(),
        target_dir.join(Cache::entry_name(&sum, "iso"))
    );
}

// ---- iso_checksum = "none": only the server vouches for the file ------------------------

/// 1 MiB that differs from `version(other seed)` at every byte.
fn version(seed: u8) -> Arc<Vec<u8>> {
    Arc::new((0..1usize << 20).map(|i| (i % 251) as u8 ^ seed).collect())
}

/// Fetches `url` with `iso_checksum = "none"`.
fn fetch_unverified(
    cache: &Path,
    url: &str,
    offline: bool,
) -> Result<PathBuf, kiln::download::FetchError> {
    fetch(cache, &[url.to_owned()], "none", offline)
}

fn same(path: &Path, data: &[u8]) -> bool {
    std::fs::read(path).is_ok_and(|d| d == data)
}

#[test]
fn a_cut_body_without_a_length_is_resumed_never_cached_short() {
    let data = version(1);
    let cut = data.len() * 2 / 5;
    for framing in [Framing::Close, Framing::Chunked] {
        let server = Server::start(vec![(
            "/x.iso",
            script(vec![
                Reply::new(&data, "v1").cut(cut, framing),
                Reply::new(&data, "v1"),
            ]),
        )]);
        let dir = tempfile::tempdir().unwrap();
        let url = server.url("/x.iso");
        let got = fetch_unverified(dir.path(), &url, false).unwrap();
        assert_eq!(got, dir.path().join(Cache::entry_name(&url, "iso")));
        assert!(
            same(&got, &data),
            "{framing:?}: the entry is not the whole file"
        );
        // The end of the cut body was not taken for the end of the file: the rest was asked
        // for, of the same version.
        let gets = server.gets("/x.iso");
        assert_eq!(gets.len(), 2, "{framing:?}: {gets:?}");
        assert!(gets[1].range.is_some_and(|r| r > 0 && r <= cut), "{gets:?}");
        assert_eq!(gets[1].if_range.as_deref(), Some("\"v1\""), "{gets:?}");
    }

    // Neither a length nor a validator: a cut cannot be told from the end, so no entry.
    let server = Server::start(vec![(
        "/x.iso",
        script(vec![Reply::new(&data, "").cut(cut, Framing::Close)]),
    )]);
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("/x.iso");
    let err = fetch_unverified(dir.path(), &url, false)
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("cannot be told from a whole one\nhint: set iso_checksum"),
        "{err}"
    );
    assert!(!dir.path().join(Cache::entry_name(&url, "iso")).exists());
}

#[test]
fn a_file_changed_on_the_server_before_a_resume_is_fetched_whole_never_mixed() {
    let (old, new) = (version(1), version(2));
    let cut = old.len() / 3;
    for honours_if_range in [true, false] {
        let second = Reply::new(&new, "v2");
        let second = if honours_if_range {
            second
        } else {
            second.ignoring_if_range()
        };
        let server = Server::start(vec![(
            "/x.iso",
            script(vec![
                Reply::new(&old, "v1").cut(cut, Framing::ContentLength),
                second,
            ]),
        )]);
        let dir = tempfile::tempdir().unwrap();
        let url = server.url("/x.iso");
        let got = fetch_unverified(dir.path(), &url, false).unwrap();
        assert!(
            same(&got, &new),
            "honours If-Range: {honours_if_range}: the entry is not the new file"
        );
        let gets = server.gets("/x.iso");
        assert_eq!(gets[1].range, Some(cut), "{gets:?}");
        assert_eq!(gets[1].if_range.as_deref(), Some("\"v1\""), "{gets:?}");
        // A server that ignores If-Range sends the new version's range: that is dropped, and
        // the whole file asked for.
        let expected = if honours_if_range { 2 } else { 3 };
        assert_eq!(gets.len(), expected, "{gets:?}");
        assert_eq!(gets.last().unwrap().range.is_none(), !honours_if_range);
    }
}

#[test]
fn a_resume_in_a_later_build_asks_with_if_range_for_the_same_version() {
    let (old, new) = (version(1), version(2));
    let cut = old.len() / 3;
    for changed in [false, true] {
        let last = if changed {
            Reply::new(&new, "v2")
        } else {
            Reply::new(&old, "v1")
        };
        let server = Server::start(vec![(
            "/x.iso",
            script(vec![
                Reply::new(&old, "v1").cut(cut, Framing::ContentLength),
                Reply::new(&old, "v1").status(503),
                last,
            ]),
        )]);
        let dir = tempfile::tempdir().unwrap();
        let url = server.url("/x.iso");
        // The first build: the transfer is cut, then the server fails; the part stays.
        let err = fetch_unverified(dir.path(), &url, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("HTTP 503"), "{err}");
        let entry = dir.path().join(Cache::entry_name(&url, "iso"));
        assert!(!entry.exists());
        assert_eq!(
            std::fs::metadata(Cache::part_path(&entry)).unwrap().len(),
            cut as u64
        );
        // The next build resumes it, naming the version it holds part of.
        let got = fetch_unverified(dir.path(), &url, false).unwrap();
        let want = if changed { &new } else { &old };
        assert!(same(&got, want), "changed: {changed}");
        let gets = server.gets("/x.iso");
        assert_eq!(gets.len(), 3, "{gets:?}");
        assert_eq!(gets[2].range, Some(cut), "{gets:?}");
        assert_eq!(gets[2].if_range.as_deref(), Some("\"v1\""), "{gets:?}");
    }
}

#[test]
fn an_unverified_entry_is_reused_only_while_the_server_still_describes_it() {
    let (old, new) = (version(1), version(2));
    let replies = Arc::new(Mutex::new(VecDeque::from([Reply::new(&old, "v1")])));
    let server = Server::start(vec![("/x.iso", Route::Script(replies.clone()))]);
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("/x.iso");
    let entry = fetch_unverified(dir.path(), &url, false).unwrap();
    assert!(same(&entry, &old));

    // Unchanged: a HEAD says so, nothing is downloaded again; offline, it is used as it is.
    assert_eq!(fetch_unverified(dir.path(), &url, false).unwrap(), entry);
    assert_eq!(fetch_unverified(dir.path(), &url, true).unwrap(), entry);
    assert_eq!(server.gets("/x.iso").len(), 1);
    assert_eq!(server.seen("/x.iso").iter().filter(|s| s.head).count(), 1);

    // Changed on the server: fetched again, whole.
    *replies.lock().unwrap() = VecDeque::from([Reply::new(&new, "v2")]);
    assert_eq!(fetch_unverified(dir.path(), &url, false).unwrap(), entry);
    assert!(same(&entry, &new));
    assert_eq!(server.full_gets("/x.iso"), 2);

    // Cut short behind kiln's back: not used, not even offline.
    std::fs::File::options()
        .write(true)
        .open(&entry)
        .unwrap()
        .set_len(1000)
        .unwrap();
    let err = fetch_unverified(dir.path(), &url, true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("offline mode (KILN_OFFLINE) forbids"), "{err}");
    assert!(!entry.exists());

    // A short entry without kiln's note (an interrupted Packer run writes to the final name)
    // does not match the server's length: fetched again.
    std::fs::write(&entry, &new[..1000]).unwrap();
    assert_eq!(fetch_unverified(dir.path(), &url, false).unwrap(), entry);
    assert!(same(&entry, &new));
    assert_eq!(server.full_gets("/x.iso"), 3);
}

// ---- the kiln binary ----------------------------------------------------------------------

/// A template of one `qemu` source (the probe disk image, see the module doc) built once per
/// `(name, iso attributes)`: each build block source sets `iso_url`, `iso_checksum`….
fn write_template(dir: &Path, builds: &[(&str, String)]) -> PathBuf {
    let mut text = String::from(
        r#"source "qemu" "base" {
  disk_image       = true
  communicator     = "none"
  headless         = true
  memory           = 64
  accelerator      = "tcg"
  format           = "qcow2"
  disk_size        = "8M"
  shutdown_timeout = "5m"
  qemuargs = [
    ["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"],
    ["-boot", "menu=on,splash-time=2500"],
  ]
}

build {
"#,
    );
    for (name, iso) in builds {
        text.push_str(&format!(
            "  source \"qemu.base\" {{\n    name             = \"{name}\"\n    output_directory = \"out-{name}\"\n{iso}  }}\n"
        ));
    }
    text.push_str("}\n");
    let path = dir.join("t.pkr.hcl");
    std::fs::write(&path, text).unwrap();
    path
}

fn kiln(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.current_dir(dir)
        .env("KILN_CACHE_DIR", dir.join("cache"))
        .env("NO_COLOR", "1")
        .env_remove("PACKER_CACHE_DIR")
        .env_remove("KILN_OFFLINE")
        .env_remove("PACKER_LOG")
        .env_remove("KILN_LOG");
    c
}

fn iso(url: &str, checksum: &str) -> String {
    format!("    iso_url          = \"{url}\"\n    iso_checksum     = \"{checksum}\"\n")
}

#[test]
fn two_builds_share_one_resumed_download_after_a_404_mirror() {
    let data = disk();
    let server = Server::start(vec![("/drop.img", Route::DropOnce(data.clone()))]);
    let dir = tempfile::tempdir().unwrap();
    let sum = format!("sha256:{}", sha256(&data));
    let mirrors = format!(
        "    iso_urls         = [\"{}\", \"{}\"]\n    iso_checksum     = \"{sum}\"\n",
        server.url("/gone.img"),
        server.url("/drop.img")
    );
    let t = write_template(dir.path(), &[("a", mirrors.clone()), ("b", mirrors)]);
    let o = kiln(dir.path()).arg("build").arg(&t).output().unwrap();
    let out = text(&o);
    assert!(o.status.success(), "{out}");

    // The dead mirror was tried first (by each build that did not find the entry cached
    // already); one transfer of the file, cut and resumed.
    let gone = server.seen("/gone.img").len();
    assert!(
        (1..=2).contains(&gone),
        "{gone} requests for /gone.img:\n{out}"
    );
    let seen = server.seen("/drop.img");
    assert_eq!(server.full_gets("/drop.img"), 1, "{seen:?}");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[1].range.is_some_and(|r| r > 0), "{seen:?}");
    let entry = dir
        .path()
        .join("cache")
        .join(Cache::entry_name(&sum, "iso"));
    assert_eq!(std::fs::read(&entry).unwrap(), *data);
    assert!(out.contains(&format!("Using {}", entry.display())), "{out}");
    for name in ["a", "b"] {
        assert!(
            dir.path()
                .join(format!("out-{name}/packer-{name}"))
                .is_file(),
            "{out}"
        );
    }

    // Not a terminal: plain progress lines, a few per task, never one per chunk.
    let download = format!("Downloading {}", server.url("/drop.img"));
    let lines: Vec<&str> = out.lines().filter(|l| l.contains(&download)).collect();
    assert!(
        lines[0].ends_with(&format!("{download} (4.00 MiB)")),
        "{out}"
    );
    assert!(
        lines
            .last()
            .unwrap()
            .contains(&format!("{download}: done, 4.00 MiB in ")),
        "{out}"
    );
    assert!(lines.len() <= 4, "{lines:#?}");
    // The build that waited verified the finished entry instead.
    assert!(
        out.contains(&format!("Verifying {}", entry.display())),
        "{out}"
    );
    // qemu-img convert reports through the same lines.
    assert!(
        out.contains("Converting out-a/packer-a") && out.contains(": done, 8.00 MiB in "),
        "{out}"
    );
}

#[test]
fn every_iso_url_form_works_in_a_build() {
    let data = disk();
    let hex = sha256(&data);
    let server = Server::start(vec![("/images/disk.img", Route::File(data.clone()))]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tpl/images")).unwrap();
    std::fs::write(dir.path().join("tpl/images/disk.img"), &*data).unwrap();
    std::fs::write(
        dir.path().join("tpl/SHA256SUMS"),
        format!("{hex}  disk.img\n"),
    )
    .unwrap();
    let local = dir.path().join("tpl/images/disk.img");
    let url = server.url("/images/disk.img");
    let t = write_template(
        &dir.path().join("tpl"),
        &[
            // Relative to the template, not to where kiln runs; a bare hex checksum.
            ("rel", iso("images/disk.img", &hex)),
            // A file:// URL with a checksum file beside the template, looked up by name.
            (
                "fileurl",
                iso(&format!("file://{}", local.display()), "file:SHA256SUMS"),
            ),
            // No checksum: a warning, and the download is still used.
            ("none", iso(&url, "none")),
            // iso_target_path as a directory.
            (
                "target",
                format!(
                    "{}    iso_target_path  = \"isos\"\n",
                    iso(&url, &format!("sha256:{hex}"))
                ),
            ),
        ],
    );
    let o = kiln(dir.path()).arg("build").arg(&t).output().unwrap();
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let uses = |name: &str, path: &Path| {
        let line = format!("    qemu.{name}: Using {}", path.display());
        assert!(out.lines().any(|l| l == line), "no `{line}` in:\n{out}");
    };
    uses("rel", &local);
    uses("fileurl", &local);
    uses(
        "none",
        &dir.path()
            .join("cache")
            .join(Cache::entry_name(&url, "iso")),
    );
    uses(
        "target",
        &PathBuf::from("isos").join(Cache::entry_name(&format!("sha256:{hex}"), "iso")),
    );
    assert!(
        out.contains("==> qemu.none: Warning: iso_checksum is \"none\": the input is not verified"),
        "{out}"
    );
    // Local files are verified in place, with progress, and never copied.
    assert!(
        out.contains(&format!("qemu.rel: Verifying {}", local.display())),
        "{out}"
    );
    assert!(
        dir.path().join("isos").is_dir(),
        "relative to the working directory, as Packer"
    );
    for name in ["rel", "fileurl", "none", "target"] {
        assert!(
            dir.path()
                .join(format!("out-{name}/packer-{name}"))
                .is_file(),
            "{out}"
        );
    }
}

#[test]
fn a_wrong_file_fails_the_build_naming_both_sums() {
    let wrong = Arc::new(vec![8u8; 3 << 20]);
    let server = Server::start(vec![("/x.img", Route::File(wrong.clone()))]);
    let dir = tempfile::tempdir().unwrap();
    let expected = format!("sha256:{}", sha256(&disk()));
    let t = write_template(dir.path(), &[("a", iso(&server.url("/x.img"), &expected))]);
    let o = kiln(dir.path()).arg("build").arg(&t).output().unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "expected {expected}, got sha256:{}",
            sha256(&wrong)
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("Downloading {} (3.00 MiB)", server.url("/x.img"))),
        "{out}"
    );
    assert_eq!(
        cache_files(&dir.path().join("cache")),
        Vec::<String>::new(),
        "{out}"
    );
    assert!(!dir.path().join("out-a").exists());

    // Machine-readable: Packer-style ui lines, and no progress at all.
    let o = kiln(dir.path())
        .args(["-machine-readable", "build"])
        .arg(&t)
        .output()
        .unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(",ui,say,==> qemu.a: Retrieving disk image\n"),
        "{out}"
    );
    assert!(
        out.contains(",ui,error,") && out.contains("checksum mismatch"),
        "{out}"
    );
    assert!(!out.contains("Downloading"), "{out}");
    assert_eq!(
        server.full_gets("/x.img"),
        2,
        "a wrong file is never reused"
    );
}

#[test]
fn offline_mode_refuses_the_network_naming_the_url() {
    let data = disk();
    let server = Server::start(vec![("/x.img", Route::File(data.clone()))]);
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("/x.img");
    let t = write_template(
        dir.path(),
        &[("a", iso(&url, &format!("sha256:{}", sha256(&data))))],
    );
    for flag in ["KILN_OFFLINE", "-offline"] {
        let mut c = kiln(dir.path());
        if flag == "KILN_OFFLINE" {
            c.env("KILN_OFFLINE", "1").arg("build");
        } else {
            c.args(["build", "-offline"]);
        }
        let o = c.arg(&t).output().unwrap();
        let out = text(&o);
        assert_eq!(o.status.code(), Some(1), "{flag}: {out}");
        assert!(
            out.contains(&format!(
                "{url}: offline mode (KILN_OFFLINE) forbids fetching {url}"
            )),
            "{flag}: {out}"
        );
        assert!(out.contains("kiln cache import FILE"), "{flag}: {out}");
    }
    assert!(
        server.log.lock().unwrap().is_empty(),
        "offline mode sent a request"
    );
}

#[test]
fn an_imported_file_is_found_by_an_offline_build() {
    let data = disk();
    // The server only watches: an offline build must not ask it for anything.
    let server = Server::start(vec![]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("debian.img");
    std::fs::write(&file, &*data).unwrap();
    let sum = format!("sha256:{}", sha256(&data));

    let o = kiln(dir.path())
        .args(["cache", "import"])
        .arg(&file)
        .output()
        .unwrap();
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let entry = dir
        .path()
        .join("cache")
        .join(Cache::entry_name(&sum, "iso"));
    assert!(
        out.contains(&format!(
            "Imported {} as {}",
            file.display(),
            entry.display()
        )),
        "{out}"
    );
    assert!(out.contains(&format!("iso_checksum \"{sum}\"")), "{out}");

    let url = server.url("/debian-12.img");
    let t = write_template(dir.path(), &[("a", iso(&url, &sum))]);
    let o = kiln(dir.path())
        .env("KILN_OFFLINE", "1")
        .arg("build")
        .arg(&t)
        .output()
        .unwrap();
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains(&format!("Using {}", entry.display())), "{out}");
    assert!(server.log.lock().unwrap().is_empty());
    assert!(dir.path().join("out-a/packer-a").is_file());

    // list shows it with its checksum and origin; prune keeps it until it is old enough.
    let list = |args: &[&str]| {
        let o = kiln(dir.path()).arg("cache").args(args).output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let name = Cache::entry_name(&sum, "iso");
    let listed = list(&["list"]);
    assert!(
        listed.contains(&format!("{name}    4.00 MiB  ")),
        "{listed}"
    );
    assert!(
        listed.contains(&format!("{sum}  imported from {}", file.display())),
        "{listed}"
    );
    let machine = list(&["list", "-machine-readable"]);
    assert!(
        machine.contains(&format!(",cache-entry,{name},4194304,{sum},")),
        "{machine}"
    );
    std::fs::write(dir.path().join("cache/stale.iso.part"), b"half").unwrap();
    let pruned = list(&["prune"]);
    assert!(pruned.contains("stale.iso.part"), "{pruned}");
    assert!(entry.is_file());
    let pruned = list(&["prune", "-older-than=0d"]);
    assert!(
        pruned.contains(&format!("Removed {}", entry.display())),
        "{pruned}"
    );
    assert!(list(&["list"]).contains("(empty)"));
}

#[test]
fn a_terminal_gets_a_bar_with_speed_and_eta() {
    // A wrong file, so the build stops right after the download; it trickles for about a
    // second so that the bar is drawn a few times.
    let wrong = Arc::new(vec![8u8; 1 << 20]);
    let server = Server::start(vec![("/x.img", Route::DripOnce(wrong, 60))]);
    let dir = tempfile::tempdir().unwrap();
    let t = write_template(
        dir.path(),
        &[(
            "a",
            iso(
                &server.url("/x.img"),
                &format!("sha256:{}", sha256(&disk())),
            ),
        )],
    );
    // `script` (util-linux) runs kiln on a pseudo-terminal and copies what it shows.
    let command = format!("{} build {}", env!("CARGO_BIN_EXE_kiln"), t.display());
    let o = Command::new("script")
        .current_dir(dir.path())
        .env("KILN_CACHE_DIR", dir.path().join("cache"))
        .env("TERM", "xterm")
        .env_remove("KILN_OFFLINE")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .unwrap();
    let out = text(&o);
    assert!(out.contains("checksum mismatch"), "{out}");
    assert!(
        out.contains(&format!("Downloading {}", server.url("/x.img"))),
        "{out}"
    );
    assert!(
        out.contains("/1.00 MiB") && out.contains("ETA "),
        "no bar in:\n{out}"
    );
    assert!(out.contains("/s"), "no speed in:\n{out}");
    assert!(
        !out.contains(": done, "),
        "plain progress lines on a terminal:\n{out}"
    );
}

#[test]
fn ctrl_c_stops_a_download_and_the_next_build_resumes_it() {
    use std::io::BufRead as _;
    let data = disk();
    // 4 MiB at 64 KiB per 100 ms: about 7 s, far longer than the test waits before Ctrl-C.
    let server = Server::start(vec![("/d.img", Route::DripOnce(data.clone(), 100))]);
    let dir = tempfile::tempdir().unwrap();
    let sum = format!("sha256:{}", sha256(&data));
    let t = write_template(dir.path(), &[("a", iso(&server.url("/d.img"), &sum))]);
    let mut child = kiln(dir.path())
        .arg("build")
        .arg(&t)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("Downloading http") {
            break;
        }
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let out = format!("{seen}{}", text(&o));
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("Cancelling builds"), "{out}");
    let entry = dir
        .path()
        .join("cache")
        .join(Cache::entry_name(&sum, "iso"));
    let part = Cache::part_path(&entry);
    assert!(
        !entry.exists(),
        "a cancelled download became an entry:\n{out}"
    );
    let kept = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    assert!(kept < data.len() as u64, "{kept} bytes kept:\n{out}");
    assert!(!dir.path().join("out-a").exists(), "{out}");

    // The next build asks only for the rest (when anything was kept) and succeeds.
    let o = kiln(dir.path()).arg("build").arg(&t).output().unwrap();
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let seen = server.seen("/d.img");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        seen[1].range,
        (kept > 0).then_some(kept as usize),
        "{seen:?}"
    );
    assert_eq!(std::fs::read(&entry).unwrap(), *data);
}
