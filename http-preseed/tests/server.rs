//! The HTTP server against real clients: raw TCP requests (so `..` reaches the server
//! unnormalised) and `curl` when it is installed.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use http_preseed::{HttpConfig, HttpError, HttpServer, RequestEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Send `method target` with extra header lines, read to EOF.
async fn raw(addr: SocketAddr, method: &str, target: &str, extra: &str) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(buf[..split].to_vec()).unwrap();
    let body = buf[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_string(), v.trim().to_string())
        })
        .collect();
    Reply {
        status,
        headers,
        body,
    }
}

fn dir_config(dir: &Path) -> HttpConfig {
    HttpConfig {
        directory: Some(dir.to_path_buf()),
        bind_address: LOCALHOST,
        port_min: 0,
        port_max: 0,
        ..HttpConfig::default()
    }
}

/// A served directory with a file, a nested file, a subdirectory, a symlink inside, and a
/// symlink pointing outside to a secret; plus that secret next to it.
fn fixture() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("http");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(
        root.join("preseed.cfg"),
        "d-i debian-installer/locale string en_US\n",
    )
    .unwrap();
    std::fs::write(root.join("sub/ks.cfg"), "text\nreboot\n").unwrap();
    std::fs::write(root.join("user-data"), "#cloud-config\n").unwrap();
    std::fs::write(root.join("autounattend.xml"), "<unattend/>").unwrap();
    std::fs::write(root.join("blob"), [0u8, 1, 2, 0xff]).unwrap();
    std::fs::write(tmp.path().join("secret"), "SECRET").unwrap();
    std::os::unix::fs::symlink("preseed.cfg", root.join("inside-link")).unwrap();
    std::os::unix::fs::symlink("../secret", root.join("escape-link")).unwrap();
    std::os::unix::fs::symlink(tmp.path(), root.join("escape-dir")).unwrap();
    (tmp, root)
}

#[tokio::test]
async fn serves_files_with_content_types_and_logs_each_request() {
    let (_tmp, root) = fixture();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server = HttpServer::start(dir_config(&root), Some(tx))
        .await
        .unwrap();
    let addr = server.local_addr();

    let r = raw(addr, "GET", "/preseed.cfg", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"d-i debian-installer/locale string en_US\n");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("content-length"), Some("41"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));

    for (path, ctype) in [
        ("/sub/ks.cfg", "text/plain; charset=utf-8"),
        ("/user-data", "text/plain; charset=utf-8"),
        ("/autounattend.xml", "text/xml; charset=utf-8"),
        ("/blob", "application/octet-stream"),
        ("/inside-link", "text/plain; charset=utf-8"),
    ] {
        let r = raw(addr, "GET", path, "").await;
        assert_eq!(
            (r.status, r.header("content-type")),
            (200, Some(ctype)),
            "{path}"
        );
    }

    let first: RequestEvent = rx.recv().await.unwrap();
    assert_eq!(first.method, "GET");
    assert_eq!(first.path, "/preseed.cfg");
    assert_eq!(first.status, 200);
    assert_eq!(first.bytes, 41);
    assert_eq!(first.client.ip(), LOCALHOST);
}

#[tokio::test]
async fn no_listing_and_no_way_out_of_the_directory() {
    let (_tmp, root) = fixture();
    let server = HttpServer::start(dir_config(&root), None).await.unwrap();
    let addr = server.local_addr();

    for dir in ["/", "/sub", "/sub/"] {
        let r = raw(addr, "GET", dir, "").await;
        assert_eq!(r.status, 404, "{dir}");
        assert!(!String::from_utf8_lossy(&r.body).contains("ks.cfg"));
    }
    for target in [
        "/../secret",
        "/sub/../../secret",
        "/%2e%2e/secret",
        "/%2E%2E%2Fsecret",
        "/sub/..%2f..%2fsecret",
        "/..%5csecret",
        "/escape-link",
        "/escape-dir/secret",
        "//etc/passwd",
        "/etc/passwd",
        "http://x/../secret",
    ] {
        let r = raw(addr, "GET", target, "").await;
        assert!(
            r.status == 403 || r.status == 404,
            "{target} gave {}",
            r.status
        );
        assert!(
            !String::from_utf8_lossy(&r.body).contains("SECRET"),
            "{target}"
        );
        assert!(
            !String::from_utf8_lossy(&r.body).contains("root:"),
            "{target}"
        );
    }
    assert_eq!(raw(addr, "GET", "/../secret", "").await.status, 403);
    assert_eq!(raw(addr, "GET", "/escape-link", "").await.status, 403);
}

#[tokio::test]
async fn head_and_byte_ranges() {
    let (_tmp, root) = fixture();
    let server = HttpServer::start(dir_config(&root), None).await.unwrap();
    let addr = server.local_addr();

    let r = raw(addr, "HEAD", "/preseed.cfg", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("41"));
    assert!(r.body.is_empty());

    let r = raw(addr, "GET", "/preseed.cfg", "Range: bytes=4-15\r\n").await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, b"debian-insta");
    assert_eq!(r.header("content-range"), Some("bytes 4-15/41"));
    assert_eq!(r.header("content-length"), Some("12"));

    let r = raw(addr, "GET", "/preseed.cfg", "Range: bytes=-6\r\n").await;
    assert_eq!((r.status, r.body.as_slice()), (206, &b"en_US\n"[..]));

    let r = raw(addr, "GET", "/preseed.cfg", "Range: bytes=35-\r\n").await;
    assert_eq!((r.status, r.body.as_slice()), (206, &b"en_US\n"[..]));

    let r = raw(addr, "GET", "/preseed.cfg", "Range: bytes=41-\r\n").await;
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */41"));

    // Several ranges are not supported: the whole file comes back, as RFC 9110 allows.
    let r = raw(addr, "GET", "/preseed.cfg", "Range: bytes=0-1,4-5\r\n").await;
    assert_eq!((r.status, r.body.len()), (200, 41));

    let r = raw(addr, "POST", "/preseed.cfg", "Content-Length: 0\r\n").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
}

#[tokio::test]
async fn serves_http_content_from_memory() {
    let content = BTreeMap::from([
        ("/ks.cfg".to_string(), "lang en_US\n".to_string()),
        (
            "/nested/user-data".to_string(),
            "#cloud-config\n".to_string(),
        ),
    ]);
    let config = HttpConfig {
        content,
        bind_address: LOCALHOST,
        port_min: 0,
        port_max: 0,
        ..HttpConfig::default()
    };
    let server = HttpServer::start(config, None).await.unwrap();
    let addr = server.local_addr();
    let r = raw(addr, "GET", "/ks.cfg", "").await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"lang en_US\n"[..]));
    let r = raw(addr, "GET", "/nested/user-data", "Range: bytes=1-5\r\n").await;
    assert_eq!((r.status, r.body.as_slice()), (206, &b"cloud"[..]));
    assert_eq!(raw(addr, "GET", "/missing", "").await.status, 404);
    assert_eq!(raw(addr, "GET", "/nested/../ks.cfg", "").await.status, 403);
}

#[tokio::test]
async fn invalid_configs_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let both = HttpConfig {
        directory: Some(tmp.path().to_path_buf()),
        content: BTreeMap::from([("/a".to_string(), String::new())]),
        ..HttpConfig::default()
    };
    assert!(matches!(
        HttpServer::start(both, None).await,
        Err(HttpError::Conflict)
    ));
    let bad_key = HttpConfig {
        content: BTreeMap::from([("a".to_string(), String::new())]),
        ..HttpConfig::default()
    };
    assert!(matches!(
        HttpServer::start(bad_key, None).await,
        Err(HttpError::ContentKey(k)) if k == "a"
    ));
    let missing = dir_config(&tmp.path().join("nope"));
    assert!(matches!(
        HttpServer::start(missing, None).await,
        Err(HttpError::Directory(..))
    ));
    let reversed = HttpConfig {
        port_min: 9000,
        port_max: 8000,
        ..HttpConfig::default()
    };
    assert!(matches!(
        HttpServer::start(reversed, None).await,
        Err(HttpError::PortRange { .. })
    ));
}

#[tokio::test]
async fn exhausted_range_names_it_and_shutdown_frees_the_port() {
    let tmp = tempfile::tempdir().unwrap();
    let first = HttpServer::start(dir_config(tmp.path()), None)
        .await
        .unwrap();
    let port = first.port();
    let fixed = HttpConfig {
        port_min: port,
        port_max: port,
        ..dir_config(tmp.path())
    };
    let err = HttpServer::start(fixed.clone(), None).await.unwrap_err();
    assert!(matches!(err, HttpError::PortsExhausted { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("{port}-{port}")), "{err}");

    first.shutdown().await;
    let second = HttpServer::start(fixed.clone(), None).await.unwrap();
    assert_eq!(second.port(), port);

    // Dropping the handle stops the server too: connections are refused once it is gone.
    drop(second);
    let mut freed = false;
    for _ in 0..100 {
        if TcpStream::connect((LOCALHOST, port)).await.is_err() {
            freed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(freed, "port {port} still accepts connections after drop");
    HttpServer::start(fixed, None).await.unwrap();
}

#[tokio::test]
async fn range_picks_the_next_free_port() {
    let tmp = tempfile::tempdir().unwrap();
    let first = HttpServer::start(dir_config(tmp.path()), None)
        .await
        .unwrap();
    let port = first.port();
    let Some(max) = port.checked_add(20) else {
        return;
    };
    let config = HttpConfig {
        port_min: port,
        port_max: max,
        ..dir_config(tmp.path())
    };
    let second = HttpServer::start(config, None).await.unwrap();
    assert!(second.port() > port && second.port() <= max);
}

#[tokio::test]
async fn curl_fetches_file_and_range() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: curl is not installed");
        return;
    }
    let (_tmp, root) = fixture();
    let server = HttpServer::start(dir_config(&root), None).await.unwrap();
    let url = format!("http://{}/preseed.cfg", server.local_addr());
    let out = tokio::process::Command::new("curl")
        .args(["-sf", "-r", "0-2", &url])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, b"d-i");
    let out = tokio::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--path-as-is",
        ])
        .arg(format!("http://{}/../secret", server.local_addr()))
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout, b"403");
}

/// Collects what the fmt subscriber writes.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn each_request_is_logged_as_a_tracing_info_event() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // The test runtime is single-threaded, so the server's tasks see this default too.
    let _guard = tracing::subscriber::set_default(subscriber);
    let (_tmp, root) = fixture();
    let server = HttpServer::start(dir_config(&root), None).await.unwrap();
    raw(server.local_addr(), "GET", "/preseed.cfg", "").await;
    raw(server.local_addr(), "GET", "/missing", "").await;
    server.shutdown().await;
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("INFO") && text.contains("served /preseed.cfg to 127.0.0.1 (200, 41 bytes)"),
        "{text}"
    );
    assert!(
        text.contains("served /missing to 127.0.0.1 (404,"),
        "{text}"
    );
}

#[tokio::test]
async fn control_characters_in_a_request_path_are_reported_escaped() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let (_tmp, root) = fixture();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server = HttpServer::start(dir_config(&root), Some(tx))
        .await
        .unwrap();
    // NEL and the 8-bit CSI (C1 controls, sent as UTF-8), and a backslash.
    // The backslash makes it a refused path (403), the rest of it a missing file (404).
    let r = raw(server.local_addr(), "GET", "/a\u{85}b\u{9b}2Jc\\d", "").await;
    assert_eq!(r.status, 403);
    server.shutdown().await;

    let event = rx.recv().await.unwrap();
    assert_eq!(event.path, "/a\\u{85}b\\u{9b}2Jc\\\\d");
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("served /a\\u{85}b\\u{9b}2Jc\\\\d to"),
        "{text}"
    );
    assert!(!text.contains(['\u{85}', '\u{9b}']), "{text:?}");
}

/// Read from `s` until the server closes the connection; how long that took, or `None` if it
/// was still open after 10 s.
async fn until_closed(s: &mut TcpStream) -> Option<std::time::Duration> {
    let start = std::time::Instant::now();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

fn timeouts(root: &Path, header_ms: u64, idle_ms: u64) -> HttpConfig {
    HttpConfig {
        header_read_timeout: std::time::Duration::from_millis(header_ms),
        idle_timeout: std::time::Duration::from_millis(idle_ms),
        ..dir_config(root)
    }
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_idle_timeout() {
    let (_tmp, root) = fixture();
    let server = HttpServer::start(timeouts(&root, 60_000, 300), None)
        .await
        .unwrap();
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    let closed = until_closed(&mut s)
        .await
        .expect("idle connection left open");
    assert!(
        closed >= std::time::Duration::from_millis(300),
        "{closed:?}"
    );
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_when_no_next_request_comes() {
    let (_tmp, root) = fixture();
    let server = HttpServer::start(timeouts(&root, 300, 60_000), None)
        .await
        .unwrap();
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    s.write_all(b"GET /preseed.cfg HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The response: its header, then the 41-byte body.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"en_US\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the response was complete");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"));
    assert!(
        until_closed(&mut s).await.is_some(),
        "kept-alive connection left open"
    );
}

#[tokio::test]
async fn a_header_sent_a_line_at_a_time_is_cut_off() {
    let (_tmp, root) = fixture();
    let server = HttpServer::start(timeouts(&root, 500, 60_000), None)
        .await
        .unwrap();
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    s.write_all(b"GET /preseed.cfg HTTP/1.1\r\n").await.unwrap();
    let mut buf = [0u8; 4096];
    // A header line every 100 ms keeps bytes moving, so only the header timeout can end it.
    let mut closed = false;
    for i in 0..50 {
        tokio::select! {
            read = s.read(&mut buf) => {
                if matches!(read, Ok(0) | Err(_)) {
                    closed = true;
                    break;
                }
            }
            () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {
                if s.write_all(format!("X-Slow-{i}: y\r\n").as_bytes()).await.is_err() {
                    closed = true;
                    break;
                }
            }
        }
    }
    assert!(closed, "a header trickling in for 5 s was still being read");
}
