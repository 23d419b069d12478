//! http-preseed: the built-in HTTP server that serves answer files (preseed, kickstart,
//! cloud-init, autounattend) to guests during a build, as Packer's `http_directory` /
//! `http_content` options do.
//!
//! [`HttpServer::start`] binds the first free port of `http_port_min..=http_port_max` on
//! `http_bind_address` and serves GET and HEAD (with single byte-range requests) from either a
//! directory or an in-memory map, never from outside the directory and never as a listing.
//! Each request is reported through the caller's channel and a `tracing` info event. The crate
//! does not decide which IP the guest uses to reach the server (`{{ .HTTPIP }}`): the builder does.
//!
//! The server listens on every interface by default (as Packer does), so it must hold up
//! against whatever else can reach it: request headers and idle connections time out, open
//! connections are capped (a new one closes the least recently active one, see `conn`),
//! failing `accept` calls back off instead of spinning, repeated errors are logged once plus a
//! count, and request text is escaped before it is logged or reported.
#![warn(missing_docs)]

mod conn;
mod nofile;
mod report;
mod resolve;
mod response;

pub use nofile::raise_open_file_limit;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use conn::Connections;
use report::{escape, Level, Throttled};

/// Packer's default lowest port for the HTTP server.
pub const DEFAULT_PORT_MIN: u16 = 8000;
/// Packer's default highest port for the HTTP server.
pub const DEFAULT_PORT_MAX: u16 = 9000;
/// Default [`HttpConfig::header_read_timeout`]. It also bounds the wait for the next request
/// on a kept-alive connection, and a slow (TCG-emulated) guest may think for seconds between
/// two requests (cloud-init's meta-data, then user-data), so it is generous; under attack the
/// connection cap, not this timeout, keeps the server answering.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`HttpConfig::idle_timeout`]: a guest that is merely slow still moves bytes; half a
/// minute without any is a peer that is gone.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`HttpConfig::max_connections`]: a guest needs a few at a time, and the cap stays
/// far below the usual soft limit of 1,024 open files so the cap, not the file limit, is
/// reached first.
pub const DEFAULT_MAX_CONNECTIONS: usize = 128;

/// What to serve and where: Packer's `http_*` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// `http_directory`: files under it are served at the same relative path.
    pub directory: Option<PathBuf>,
    /// `http_content`: request path (starting with `/`) → content. Conflicts with `directory`.
    pub content: BTreeMap<String, String>,
    /// `http_bind_address`, 0.0.0.0 by default.
    pub bind_address: IpAddr,
    /// `http_port_min`, 8000 by default.
    pub port_min: u16,
    /// `http_port_max`, 9000 by default. Equal to `port_min` for a fixed port; both 0 lets the
    /// system pick any free port.
    pub port_max: u16,
    /// How long a connection may take to deliver a complete request header, counted from
    /// when the server starts waiting for it: at accept, and after each response on a
    /// kept-alive connection (so this is also the keep-alive idle limit).
    pub header_read_timeout: Duration,
    /// How long a connection may go without a byte moving either way, e.g. a client that
    /// stops reading a response, before it is closed.
    pub idle_timeout: Duration,
    /// At most this many connections are open at once; at the cap, a new connection closes
    /// the least recently active one (0 counts as 1).
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            directory: None,
            content: BTreeMap::new(),
            bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port_min: DEFAULT_PORT_MIN,
            port_max: DEFAULT_PORT_MAX,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// One served request, as reported to the caller's channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestEvent {
    /// The request method, e.g. `GET`.
    pub method: String,
    /// The request path as sent (not decoded), e.g. `/preseed.cfg`, with control characters
    /// and backslashes escaped (`\u{9b}`, `\\`) so it is safe to print.
    pub path: String,
    /// The response status code.
    pub status: u16,
    /// Body bytes in the response (0 for HEAD and errors without a body).
    pub bytes: u64,
    /// The guest's address.
    pub client: SocketAddr,
}

/// Why the HTTP server could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Both sources were given.
    #[error("http_directory and http_content cannot both be set: keep one of them")]
    Conflict,
    /// An `http_content` key does not start with `/`.
    #[error("http_content key {0:?} must start with \"/\" (it is the path the guest requests)")]
    ContentKey(String),
    /// `http_port_min` is above `http_port_max`.
    #[error("http_port_min ({min}) is greater than http_port_max ({max})")]
    PortRange {
        /// `http_port_min`.
        min: u16,
        /// `http_port_max`.
        max: u16,
    },
    /// `http_directory` is missing or not a directory.
    #[error("http_directory {0:?} is not a directory: check the path (relative paths are from the working directory)")]
    Directory(PathBuf, #[source] io::Error),
    /// Every port in the range is taken.
    #[error("no free port for the HTTP server on {bind} in {min}-{max}: widen http_port_min/http_port_max or stop what uses them")]
    PortsExhausted {
        /// `http_bind_address`.
        bind: IpAddr,
        /// `http_port_min`.
        min: u16,
        /// `http_port_max`.
        max: u16,
    },
    /// Binding failed for a reason other than a busy port (e.g. an address this host does not have).
    #[error("cannot listen on {0}: check http_bind_address")]
    Bind(SocketAddr, #[source] io::Error),
}

/// Where requests are answered from, fixed at start.
#[derive(Debug)]
enum Source {
    Directory(PathBuf),
    Content(BTreeMap<String, String>),
}

/// A running HTTP server. Dropping it (or awaiting [`HttpServer::shutdown`]) stops it, closes
/// open connections and frees the port.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Validate `config`, bind a port and start serving in the background.
    /// `events`, when given, receives one [`RequestEvent`] per request.
    pub async fn start(
        config: HttpConfig,
        events: Option<mpsc::UnboundedSender<RequestEvent>>,
    ) -> Result<Self, HttpError> {
        let source = match (config.directory, config.content.is_empty()) {
            (Some(_), false) => return Err(HttpError::Conflict),
            (Some(dir), true) => {
                let root = tokio::fs::canonicalize(&dir)
                    .await
                    .map_err(|e| HttpError::Directory(dir.clone(), e))?;
                let meta = tokio::fs::metadata(&root)
                    .await
                    .map_err(|e| HttpError::Directory(dir.clone(), e))?;
                if !meta.is_dir() {
                    return Err(HttpError::Directory(
                        dir,
                        io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
                    ));
                }
                Source::Directory(root)
            }
            (None, _) => {
                if let Some(key) = config.content.keys().find(|k| !k.starts_with('/')) {
                    return Err(HttpError::ContentKey(key.clone()));
                }
                Source::Content(config.content)
            }
        };
        let listener = bind(config.bind_address, config.port_min, config.port_max).await?;
        let addr = listener
            .local_addr()
            .map_err(|e| HttpError::Bind(SocketAddr::new(config.bind_address, 0), e))?;
        tracing::debug!(%addr, "HTTP server listening");
        let (stop, stopped) = oneshot::channel();
        let limits = Limits {
            header_read_timeout: config.header_read_timeout,
            idle_timeout: config.idle_timeout,
            max_connections: config.max_connections,
        };
        let task = tokio::spawn(serve(listener, Arc::new(source), events, limits, stopped));
        Ok(Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The address the server listens on (the bind address and the chosen port).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The chosen port, for `{{ .HTTPPort }}`.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stop serving and wait until the port is free.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Without an await the listener may outlive the handle for a moment; aborting makes
        // the runtime drop it at its next poll instead of after a pending accept.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Bind the first free port in `min..=max`. Ports are tried in order so a fixed range gives a
/// predictable port; a busy port just moves on to the next.
async fn bind(ip: IpAddr, min: u16, max: u16) -> Result<TcpListener, HttpError> {
    if min > max {
        return Err(HttpError::PortRange { min, max });
    }
    for port in min..=max {
        let addr = SocketAddr::new(ip, port);
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(e) if is_port_busy(&e) => continue,
            Err(e) => return Err(HttpError::Bind(addr, e)),
        }
    }
    Err(HttpError::PortsExhausted { bind: ip, min, max })
}

fn is_port_busy(e: &io::Error) -> bool {
    // Ports below 1024 need privileges: treat them as taken rather than fatal.
    matches!(
        e.kind(),
        io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied
    )
}

/// The [`HttpConfig`] settings that protect the server.
#[derive(Debug, Clone, Copy)]
struct Limits {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    max_connections: usize,
}

/// The first pause after an `accept` failure that is not about one connection (typically
/// EMFILE/ENFILE: out of file descriptors); it doubles up to [`ACCEPT_BACKOFF_MAX`] while the
/// failures go on. Retrying at once would spin: the pending connection stays queued, so the
/// listener stays readable and the next `accept` fails the same way.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// The longest pause between two `accept` attempts after failures.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

async fn serve(
    listener: TcpListener,
    source: Arc<Source>,
    events: Option<mpsc::UnboundedSender<RequestEvent>>,
    limits: Limits,
    mut stopped: oneshot::Receiver<()>,
) {
    // Dropping the set on stop aborts open connections, so shutdown never waits on a slow guest.
    let mut connections = Connections::new(limits.max_connections, limits.idle_timeout);
    let mut accept_failed = Throttled::new("accept failed", Level::Warn);
    let mut evicted = Throttled::new(
        "connection cap reached, closed the least recently active connection",
        Level::Warn,
    );
    let mut broken = Throttled::new("connection ended with an error", Level::Debug);
    let mut summaries = tokio::time::interval(report::SUMMARY_INTERVAL);
    summaries.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut paused_until: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            () = tokio::time::sleep_until(paused_until.unwrap_or_else(tokio::time::Instant::now)),
                if paused_until.is_some() => paused_until = None,
            accepted = listener.accept(), if paused_until.is_none() => {
                let (stream, client) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        accept_failed.record(&e);
                        if !is_connection_error(&e) {
                            paused_until = Some(tokio::time::Instant::now() + backoff);
                            backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                        }
                        continue;
                    }
                };
                backoff = ACCEPT_BACKOFF_MIN;
                if let Some(gone) = connections.make_room() {
                    evicted.record(format_args!("{gone}, for {client}"));
                }
                let source = Arc::clone(&source);
                let events = events.clone();
                connections.spawn(stream, client, move |io| {
                    serve_connection(io, client, source, events, limits.header_read_timeout)
                });
            }
            // Reap finished connections so the set does not grow over a long build.
            Some(ended) = connections.join_next(), if !connections.is_empty() => {
                if let Err((client, e)) = ended {
                    broken.record(format_args!("{client}: {e}"));
                }
            }
            _ = summaries.tick() => {
                for log in [&mut accept_failed, &mut evicted, &mut broken] {
                    log.flush();
                }
            }
        }
    }
    for log in [&mut accept_failed, &mut evicted, &mut broken] {
        log.flush();
    }
}

/// `accept` failures that concern only the connection being accepted (it was reset before it
/// was taken): the next one may well succeed, so there is no reason to pause.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

/// Serve the requests of one connection until it closes, fails or times out.
async fn serve_connection(
    io: conn::IdleIo<tokio::net::TcpStream>,
    client: SocketAddr,
    source: Arc<Source>,
    events: Option<mpsc::UnboundedSender<RequestEvent>>,
    header_read_timeout: Duration,
) -> Result<(), (SocketAddr, hyper::Error)> {
    let service = service_fn(move |req| {
        let source = Arc::clone(&source);
        let events = events.clone();
        async move {
            let resp = response::respond(&source, &req).await;
            let event = RequestEvent {
                method: escape(req.method().as_str()),
                path: escape(req.uri().path()),
                status: resp.status().as_u16(),
                bytes: response::body_len(&resp),
                client,
            };
            report(&event, events.as_ref());
            Ok::<_, Infallible>(resp)
        }
    });
    http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(io), service)
        .await
        .map_err(|e| (client, e))
}

fn report(event: &RequestEvent, events: Option<&mpsc::UnboundedSender<RequestEvent>>) {
    tracing::info!(
        method = %event.method,
        status = event.status,
        "served {} to {} ({}, {} bytes)",
        event.path,
        event.client.ip(),
        event.status,
        event.bytes
    );
    if let Some(tx) = events {
        // The caller may have stopped listening; the tracing event above still records it.
        let _ = tx.send(event.clone());
    }
}
