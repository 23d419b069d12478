//! The server against a flood of idle connections, more than its open-file limit allows. The
//! server runs in a child process (this test binary again, running `flood_child`) whose
//! `RLIMIT_NOFILE` is lowered to 1,024, so the limit does not touch the other tests; all
//! traffic is on 127.0.0.1.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use http_preseed::{HttpConfig, HttpServer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

/// Set in the child: `<max_connections>,<header_read_timeout in ms>`.
const CHILD: &str = "HTTP_PRESEED_FLOOD_CHILD";
/// The child's soft and hard open-file limit: the usual default soft limit.
const FILE_LIMIT: u64 = 1024;
const IDLE_CONNECTIONS: usize = 1100;
const ANSWER: &str = "d-i debian-installer/locale string en_US\n";

/// Both floods load the machine; one at a time keeps them from skewing each other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[test]
#[ignore = "the server side of the flood tests, which run it in a child process"]
fn flood_child() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    let (cap, header_ms) = spec.split_once(',').unwrap();
    let limit = rustix::process::Rlimit {
        current: Some(FILE_LIMIT),
        maximum: Some(FILE_LIMIT),
    };
    rustix::process::setrlimit(rustix::process::Resource::Nofile, limit).unwrap();
    // Straight to stderr (not captured by the test harness), at debug level: every line the
    // server writes counts.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .init();
    let config = HttpConfig {
        content: [("/preseed.cfg".to_string(), ANSWER.to_string())].into(),
        bind_address: Ipv4Addr::LOCALHOST.into(),
        port_min: 0,
        port_max: 0,
        max_connections: cap.parse().unwrap(),
        header_read_timeout: Duration::from_millis(header_ms.parse().unwrap()),
        ..HttpConfig::default()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = HttpServer::start(config, None).await.unwrap();
        println!("port {}", server.port());
        // Serve until the parent closes stdin.
        tokio::task::spawn_blocking(|| {
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())
        })
        .await
        .unwrap()
        .unwrap();
        server.shutdown().await;
    });
}

/// What one flood showed.
struct Flood {
    /// How long the real request took, if it was answered within the wait given.
    answered_in: Option<Duration>,
    /// The lines the server logged, and their first 64 KiB.
    log_lines: usize,
    log_bytes: usize,
    log: String,
}

/// Start the server in a child with `cap` connections and `header_read_timeout`, open
/// [`IDLE_CONNECTIONS`] idle connections to it, then fetch the answer file, waiting up to
/// `wait`. `None` when this process cannot open enough files to run the flood.
async fn flood(cap: usize, header_read_timeout: Duration, wait: Duration) -> Option<Flood> {
    // The idle connections' client ends are this process's files.
    let own_limit = http_preseed::raise_open_file_limit().unwrap();
    if own_limit.is_some_and(|l| l < (IDLE_CONNECTIONS + 200) as u64) {
        eprintln!("skipped: this process may open only {own_limit:?} files");
        return None;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["flood_child", "--exact", "--ignored", "--nocapture"])
        .env(CHILD, format!("{cap},{}", header_read_timeout.as_millis()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let (mut lines, mut bytes, mut kept) = (0, 0, Vec::new());
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = stderr.read(&mut buf).await {
            lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
            bytes += n;
            let room = (64 * 1024usize).saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
        (lines, bytes, String::from_utf8_lossy(&kept).into_owned())
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let line = stdout.next_line().await.unwrap().unwrap();
            if let Some(port) = line.strip_prefix("port ") {
                return port.parse().unwrap();
            }
        }
    })
    .await
    .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));

    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        let s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .unwrap()
            .unwrap();
        idle.push(s);
    }
    let start = Instant::now();
    let answered_in = tokio::time::timeout(wait, get(addr, "/preseed.cfg"))
        .await
        .ok()
        .and_then(|body| (body == ANSWER.as_bytes()).then(|| start.elapsed()));

    // Closing stdin stops the server; a child that does not stop is killed.
    drop(child.stdin.take());
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        child.kill().await.unwrap();
    }
    drop(idle);
    let (log_lines, log_bytes, log) = log.await.unwrap();
    Some(Flood {
        answered_in,
        log_lines,
        log_bytes,
        log,
    })
}

/// A fresh connection's `GET path`: the body of a 200 answer, or what came back otherwise.
async fn get(addr: SocketAddr, path: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    // A reset (the server closing this connection) shows as a short or empty reply.
    let _ = s.read_to_end(&mut reply).await;
    match reply.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) if reply.starts_with(b"HTTP/1.1 200") => reply[end + 4..].to_vec(),
        _ => reply,
    }
}

#[tokio::test]
async fn idle_connections_beyond_the_file_limit_do_not_starve_a_real_request() {
    let Some(flood) = flood(
        http_preseed::DEFAULT_MAX_CONNECTIONS,
        http_preseed::DEFAULT_HEADER_READ_TIMEOUT,
        Duration::from_secs(5),
    )
    .await
    else {
        return;
    };
    let answered_in = flood.answered_in.expect("the answer file was not served");
    // A liveness bound (the guest's fetch must not wait for idle connections to time out),
    // not a benchmark.
    assert!(answered_in < Duration::from_secs(1), "{answered_in:?}");
    assert!(
        flood.log_lines <= 20 && flood.log_bytes <= 8 * 1024,
        "{} lines, {} bytes:\n{}",
        flood.log_lines,
        flood.log_bytes,
        flood.log
    );
    assert!(
        flood.log.contains("connection cap reached"),
        "{}",
        flood.log
    );
}

#[tokio::test]
async fn running_out_of_files_backs_off_and_recovers() {
    // A cap above the file limit: the server runs out of descriptors, and `accept` fails
    // until the idle connections' header timeout frees them.
    let Some(flood) = flood(4096, Duration::from_secs(3), Duration::from_secs(15)).await else {
        return;
    };
    assert!(
        flood.log_lines <= 30 && flood.log_bytes <= 8 * 1024,
        "{} lines, {} bytes:\n{}",
        flood.log_lines,
        flood.log_bytes,
        flood.log
    );
    // One line for the first failure, then a count of the rest: with backoff a handful, not
    // the millions of a loop that retries at once.
    let failures: u64 = flood
        .log
        .lines()
        .filter_map(|l| {
            l.split("accept failed ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(
        flood.log.contains("accept failed: Too many open files") && failures <= 100,
        "{failures} failures held back:\n{}",
        flood.log
    );
    assert!(
        flood.answered_in.is_some(),
        "not served once the idle connections timed out:\n{}",
        flood.log
    );
}
