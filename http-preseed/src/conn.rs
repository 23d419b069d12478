//! Bookkeeping of open connections, so a flood of idle ones cannot starve the guest's real
//! request: every connection's last activity is stamped, a connection where no byte moves for
//! the idle timeout is closed, and at the connection cap a new connection closes the least
//! recently active one.
//!
//! Why evict rather than stop accepting at the cap: a connection waiting in the listen backlog
//! behind hundreds of idle ones would wait for their timeouts (seconds), while the guest's
//! answer-file fetch has to be served at once. A real client sends its request as soon as it
//! is connected, so it is the most recently active connection and the last to be evicted;
//! idle connections are the first.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::{AbortHandle, Id, JoinSet};
use tokio::time::{Instant, Sleep};

/// When a connection last moved a byte, as a tick of a counter shared by all connections of
/// one server: a strict order needs no clock and has no ties.
#[derive(Debug, Clone)]
struct Activity {
    clock: Arc<AtomicU64>,
    last: Arc<AtomicU64>,
}

impl Activity {
    fn new(clock: &Arc<AtomicU64>) -> Self {
        let activity = Self {
            clock: Arc::clone(clock),
            last: Arc::new(AtomicU64::new(0)),
        };
        activity.touch();
        activity
    }

    fn touch(&self) {
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        self.last.store(tick, Ordering::Relaxed);
    }

    fn last(&self) -> u64 {
        self.last.load(Ordering::Relaxed)
    }
}

/// A stream that stamps its connection's activity on every read or write that makes progress
/// and fails with `TimedOut` once neither has for `timeout`.
#[derive(Debug)]
pub(crate) struct IdleIo<S> {
    inner: S,
    activity: Activity,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<S> IdleIo<S> {
    fn progressed(&mut self) {
        self.activity.touch();
        self.deadline.as_mut().reset(Instant::now() + self.timeout);
    }

    /// Called when the inner stream is not ready: polling the deadline registers the waker,
    /// so an idle connection is woken (and failed) when it expires.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn idle_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "no data moved within the idle timeout",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.progressed();
                Poll::Ready(result)
            }
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(result) => {
                this.progressed();
                Poll::Ready(result)
            }
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One open connection, as the accept loop sees it.
#[derive(Debug)]
struct Open {
    client: SocketAddr,
    activity: Activity,
    abort: AbortHandle,
}

/// The open connections of one server, at most `cap` of them.
#[derive(Debug)]
pub(crate) struct Connections<T> {
    tasks: JoinSet<T>,
    open: HashMap<Id, Open>,
    clock: Arc<AtomicU64>,
    cap: usize,
    idle_timeout: Duration,
}

impl<T: Send + 'static> Connections<T> {
    /// No connections yet; at most `cap` (at least 1) at a time, each closed after
    /// `idle_timeout` without traffic.
    pub(crate) fn new(cap: usize, idle_timeout: Duration) -> Self {
        Self {
            tasks: JoinSet::new(),
            open: HashMap::new(),
            clock: Arc::new(AtomicU64::new(0)),
            cap: cap.max(1),
            idle_timeout,
        }
    }

    /// Whether no connection is open.
    pub(crate) fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// At the cap, close the least recently active connection and return its client.
    pub(crate) fn make_room(&mut self) -> Option<SocketAddr> {
        if self.open.len() < self.cap {
            return None;
        }
        let id = self
            .open
            .iter()
            .min_by_key(|(_, open)| open.activity.last())
            .map(|(id, _)| *id)?;
        let evicted = self.open.remove(&id)?;
        // Aborting drops the connection's future, and with it the socket.
        evicted.abort.abort();
        Some(evicted.client)
    }

    /// Serve `stream` from `client` with `serve`, which gets the stream wrapped to track
    /// activity and enforce the idle timeout.
    pub(crate) fn spawn<S, F, Fut>(&mut self, stream: S, client: SocketAddr, serve: F)
    where
        F: FnOnce(IdleIo<S>) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let activity = Activity::new(&self.clock);
        let io = IdleIo {
            inner: stream,
            activity: activity.clone(),
            timeout: self.idle_timeout,
            deadline: Box::pin(tokio::time::sleep(self.idle_timeout)),
        };
        let abort = self.tasks.spawn(serve(io));
        self.open.insert(
            abort.id(),
            Open {
                client,
                activity,
                abort,
            },
        );
    }

    /// Wait for a connection to end and return its output (`None` for an evicted one, or
    /// when none is open).
    pub(crate) async fn join_next(&mut self) -> Option<T> {
        match self.tasks.join_next_with_id().await? {
            Ok((id, output)) => {
                self.open.remove(&id);
                Some(output)
            }
            Err(e) => {
                self.open.remove(&e.id());
                None
            }
        }
    }
}
