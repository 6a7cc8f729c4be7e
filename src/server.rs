//! The HTTP server: the router on hyper's HTTP/1 connections, with the limits that keep clients
//! who have proven nothing from holding the process's connections and memory.
//!
//! - At most `MAX_CONNECTIONS` connections are served at once. Beyond that the service stops
//!   accepting: new connections wait in the kernel's listen backlog (their bytes stay in the
//!   kernel, not here) and are taken in turn as served ones close.
//! - A connection has `HEADER_READ_TIMEOUT` to send a request's headers, counted from when the
//!   service is ready to read them (on a new connection, and between requests on a kept-alive
//!   one); then it is closed. So half a header, or an idle keep-alive connection, does not keep a
//!   slot for longer than that. A stream being answered (the live logs) is not reading headers
//!   and is not affected.
//! - A request's body has `BODY_READ_TIMEOUT` to arrive, counted from the end of its headers; a
//!   body still arriving then ends in an error for whoever reads it and the request is answered
//!   `408` (and the connection closed). Responses have no deadline.
//! - Headers are read into a buffer of at most [`MAX_HEADER_BUFFER`] bytes (`431` beyond), so a
//!   connection holds little before its request is routed.
//!
//! `axum::serve` has none of these settings, hence this loop; graceful shutdown works as there:
//! on the signal the listener closes, idle connections close, and requests in hand finish.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use axum::serve::Listener;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::config::Config;

/// The most a connection buffers while reading a request's headers (hyper's own default is
/// about 400 KiB). GitHub's and browsers' headers are a few KiB.
pub const MAX_HEADER_BUFFER: usize = 64 * 1024;

/// The server's limits (see the module's documentation).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
}

impl Limits {
    pub fn from_config(config: &Config) -> Self {
        Limits {
            max_connections: config.max_connections,
            header_read_timeout: config.header_read_timeout,
            body_read_timeout: config.body_read_timeout,
        }
    }
}

/// Serve `app` on `listener` within `limits` until `shutdown` completes, then wait for the
/// connections in hand to finish.
pub async fn serve<L>(
    mut listener: L,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: Listener,
    L::Addr: std::fmt::Debug,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEADER_BUFFER);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A slot first, then the connection: over the cap, connections wait in the backlog.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (io, remote) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        tracing::trace!(?remote, "connection accepted");
        let app = app.clone();
        let body_read_timeout = limits.body_read_timeout;
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            call(app.clone(), request, body_read_timeout)
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(io), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::trace!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// One request: its body under the deadline, through the router; a request whose body missed
/// the deadline is answered `408` whatever the handler made of the part it got.
async fn call(
    app: Router,
    request: Request<Incoming>,
    body_read_timeout: Duration,
) -> Result<Response<Body>, Infallible> {
    let (parts, incoming) = request.into_parts();
    let (request, missed) = if incoming.is_end_stream() {
        (Request::from_parts(parts, Body::new(incoming)), None)
    } else {
        let body = DeadlineBody::new(incoming, body_read_timeout);
        let missed = body.missed.clone();
        (Request::from_parts(parts, Body::new(body)), Some(missed))
    };
    let response = app.oneshot(request).await?;
    match missed {
        Some(missed) if missed.load(Ordering::Relaxed) => Ok(body_timed_out()),
        _ => Ok(response),
    }
}

/// The answer to a request whose body did not arrive in time.
pub fn body_timed_out() -> Response<Body> {
    let mut response = Response::new(Body::from(
        "{\"error\":\"the request body did not arrive in time\"}",
    ));
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

/// The error a request body gives once its deadline has passed.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

/// Whether `error` (or an error it wraps) is a body's missed deadline.
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<BodyTimedOut>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// A request body that fails with [`BodyTimedOut`] if it has not ended by its deadline.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    missed: Arc<AtomicBool>,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            missed: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.missed.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(BodyTimedOut.into())));
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.missed.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(BodyTimedOut.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
