//! The connection loop under the router: HTTP/1.1 over hyper, with the limits `axum::serve` does
//! not offer.
//!
//! - At most `HTTP_MAX_CONNECTIONS` connections are open; further clients wait in the listen backlog.
//! - A client has `HTTP_HEADER_TIMEOUT` to send a complete request head once its first byte arrived
//!   (slow-header clients are cut off), and a keep-alive connection that starts no new request for
//!   `HTTP_IDLE_TIMEOUT` is closed. The two clocks differ, as in Go's `net/http`: idle keep-alive
//!   connections may live longer than a client may take over one request head.
//! - On shutdown the listener closes, connections that are idle or have not sent a complete request
//!   are closed at once, and in-flight requests finish with `Connection: close`.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use crate::attribution::{self, Part};
use crate::config::HttpSettings;

/// Serves `app` on `listener` until `stop` resolves, then closes the listener and asks every
/// connection to finish. The returned [`Draining`] resolves when the last connection is gone.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpSettings,
    stop: impl Future<Output = ()>,
) -> Draining {
    let graceful = GracefulShutdown::new();
    let (closing, closing_rx) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(
        usize::try_from(limits.max_connections).unwrap_or(usize::MAX),
    ));
    let open = metrics::gauge!("http_server_open_connections");
    tokio::pin!(stop);
    loop {
        // Wait for a free slot first: at the cap, clients queue in the kernel's backlog.
        let permit = tokio::select! {
            () = &mut stop => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                // The semaphore is never closed.
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(err) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::error!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Responses are written whole; waiting to coalesce them only adds latency.
        let _ = stream.set_nodelay(true);
        if !attribution::on(Part::Limits) {
            // Neither cap nor timeouts: hyper's connection alone (attribution builds only).
            drop(permit);
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), PlainService(app.clone()));
            tokio::spawn(graceful.watch(connection));
            continue;
        }
        let connection = serve_connection(
            stream,
            app.clone(),
            limits,
            graceful.watcher(),
            closing_rx.clone(),
        );
        let open = open.clone();
        let metered = attribution::on(Part::Metrics);
        tokio::spawn(async move {
            if metered {
                open.increment(1.0);
            }
            connection.await;
            if metered {
                open.decrement(1.0);
            }
            drop(permit);
        });
    }
    drop(listener);
    Draining { graceful, closing }
}

/// Connections still finishing after the listener closed.
pub struct Draining {
    graceful: GracefulShutdown,
    closing: watch::Sender<bool>,
}

impl Draining {
    /// Asks every connection to finish and resolves when the last one has closed.
    pub async fn finished(self) {
        self.closing.send_replace(true);
        self.graceful.shutdown().await;
    }
}

/// What a connection is doing, for its timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of the next request.
    Idle = 0,
    /// The first byte of a request arrived; its head is not complete yet.
    ReadingHead = 1,
    /// The router is handling a request.
    Busy = 2,
}

/// A connection's phase and when it entered it, shared by its socket, its service and its watchdog.
/// A phase change is two atomic stores: the watchdog is not woken, it reads them when it wakes
/// (see [`watchdog`]).
struct Activity {
    born: Instant,
    phase: AtomicU8,
    since_ms: AtomicU64,
    served: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            born: Instant::now(),
            phase: AtomicU8::new(Phase::Idle as u8),
            since_ms: AtomicU64::new(0),
            served: AtomicU64::new(0),
        }
    }

    fn request_done(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
        self.enter(Phase::Idle);
    }

    /// Still receiving the head of its first request: nothing was ever written on this
    /// connection, so closing it cannot cut a response short.
    fn receiving_first_request(&self) -> bool {
        self.phase() == Phase::ReadingHead && self.served.load(Ordering::Relaxed) == 0
    }

    fn enter(&self, phase: Phase) {
        let now = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.since_ms.store(now, Ordering::Relaxed);
        self.phase.store(phase as u8, Ordering::Release);
    }

    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Idle,
            1 => Phase::ReadingHead,
            _ => Phase::Busy,
        }
    }

    /// Time spent in the current phase.
    fn elapsed(&self) -> Duration {
        let since = Duration::from_millis(self.since_ms.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(since)
    }
}

/// How long a connection may stay in `phase`, `None` for as long as it takes (the request's own
/// work is bounded elsewhere: database calls by `DB_TIMEOUT`, bodies by their size limit).
fn allowance(phase: Phase, limits: &HttpSettings) -> Option<Duration> {
    match phase {
        Phase::Idle => Some(limits.idle_timeout),
        Phase::ReadingHead => Some(limits.header_timeout),
        Phase::Busy => None,
    }
}

/// One connection: hyper's HTTP/1.1 state machine, and a watchdog that drops the connection when
/// it overstays its phase's allowance.
async fn serve_connection(
    stream: TcpStream,
    app: Router,
    limits: HttpSettings,
    shutdown: Watcher,
    closing: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = PhaseService {
        app,
        activity: activity.clone(),
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The watchdog below replaces hyper's header timer, which also runs while a keep-alive
    // connection is idle and so cannot tell the two allowances apart.
    builder.header_read_timeout(None);
    // On shutdown: an idle connection, or one still receiving a request head, closes at once; one
    // with a request in flight answers it with `Connection: close`, then closes.
    let connection = shutdown.watch(builder.serve_connection(io, service));
    tokio::pin!(connection);
    let watchdog = watchdog(&activity, &limits, closing);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(err) = result {
                tracing::debug!(error = %err, "connection ended with an error");
            }
        }
        phase = watchdog => {
            tracing::debug!(?phase, "closing a connection that overstayed its allowance");
        }
    }
}

/// Resolves with the phase a connection overstayed, or at shutdown when the connection is still
/// receiving its first request (hyper's graceful shutdown closes idle connections, but would wait
/// for such a client to finish its request, however slowly it sends).
///
/// Phase changes do not wake it (that would be three wake-ups per request); it wakes at the
/// deadline of the phase it saw, and never later than one header allowance from now. That bound
/// keeps every deadline exact: a request head that starts at any later moment `t` is due at
/// `t + header_timeout`, after the watchdog's next wake-up, which then sleeps until that deadline.
async fn watchdog(
    activity: &Activity,
    limits: &HttpSettings,
    mut closing: watch::Receiver<bool>,
) -> Phase {
    loop {
        let phase = activity.phase();
        if *closing.borrow() && activity.receiving_first_request() {
            return phase;
        }
        let wait = match next_check(phase, activity.elapsed(), limits) {
            Some(wait) => wait,
            None => return phase,
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            changed = closing.changed() => {
                // The sender lives until every connection is gone; without it, stop watching.
                if changed.is_err() {
                    return phase;
                }
            }
        }
    }
}

/// How long the watchdog may sleep before it looks again at a connection that has been in `phase`
/// for `elapsed`: until the phase's deadline, but at most one header allowance (see [`watchdog`]).
/// `None` when the deadline has passed.
fn next_check(phase: Phase, elapsed: Duration, limits: &HttpSettings) -> Option<Duration> {
    let bound = limits.header_timeout;
    match allowance(phase, limits) {
        Some(allowed) => match allowed.checked_sub(elapsed) {
            Some(left) if !left.is_zero() => Some(left.min(bound)),
            _ => None,
        },
        // Busy: no deadline of its own; the next phase (idle) may start at any moment.
        None => Some(bound),
    }
}

/// The socket of a connection: its first byte read while idle starts the header clock.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before && self.activity.phase() == Phase::Idle {
            self.activity.enter(Phase::ReadingHead);
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The router, marking the connection busy while it handles a request and idle after.
#[derive(Clone)]
struct PhaseService {
    app: Router,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for PhaseService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.activity.enter(Phase::Busy);
        let app = self.app.clone();
        let activity = self.activity.clone();
        Box::pin(async move {
            let response = app.oneshot(request).await;
            // The response body is written after this; the bodies here are small and complete.
            activity.request_done();
            response
        })
    }
}

/// The router alone, for a connection without limits (attribution builds only).
#[derive(Clone)]
struct PlainService(Router);

impl hyper::service::Service<Request<Incoming>> for PlainService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        Box::pin(self.0.clone().oneshot(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_phase_has_its_own_allowance() {
        let limits = HttpSettings {
            header_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1,
        };
        assert_eq!(
            allowance(Phase::Idle, &limits),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            allowance(Phase::ReadingHead, &limits),
            Some(Duration::from_secs(2))
        );
        assert_eq!(allowance(Phase::Busy, &limits), None);
    }

    #[test]
    fn the_watchdog_sleeps_until_the_deadline_but_never_longer_than_a_header_allowance() {
        let limits = HttpSettings {
            header_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1,
        };
        let secs = Duration::from_secs;
        // Idle for 10 s of 60: a request head may start any moment, so look again within 2 s.
        assert_eq!(next_check(Phase::Idle, secs(10), &limits), Some(secs(2)));
        // Idle for 59 s: one second is left.
        assert_eq!(next_check(Phase::Idle, secs(59), &limits), Some(secs(1)));
        assert_eq!(next_check(Phase::Idle, secs(60), &limits), None);
        // A head started 500 ms ago is due in 1.5 s.
        assert_eq!(
            next_check(Phase::ReadingHead, Duration::from_millis(500), &limits),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(next_check(Phase::ReadingHead, secs(3), &limits), None);
        // Busy has no deadline: looked at again every header allowance.
        assert_eq!(next_check(Phase::Busy, secs(300), &limits), Some(secs(2)));
    }

    #[test]
    fn activity_reports_its_phase_and_restarts_its_clock_on_each_change() {
        let activity = Activity::new();
        assert_eq!(activity.phase(), Phase::Idle);
        std::thread::sleep(Duration::from_millis(20));
        assert!(activity.elapsed() >= Duration::from_millis(20));
        activity.enter(Phase::ReadingHead);
        assert_eq!(activity.phase(), Phase::ReadingHead);
        assert!(activity.elapsed() < Duration::from_millis(20));
    }
}
