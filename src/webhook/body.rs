//! Reading a webhook's body within bounds, before anyone knows whether GitHub sent it.
//!
//! A body is read only once a slot is free: at most `MAX_CONCURRENT_WEBHOOK_BODIES` bodies are
//! read and checked at once, and the slot is given back when the signature has been checked. So
//! bodies nobody has signed hold at most that many times [`super::intake::MAX_BODY_BYTES`],
//! however many arrive. A request that finds no slot within a short wait is answered `503` with
//! `Retry-After` (GitHub records the failed delivery, and missed-webhook recovery redelivers it).
//! A declared length over the limit is refused before a slot is taken or a byte is read; the
//! body's deadline is the server's ([`crate::server`]).

use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Body as _;
use tokio::sync::{Semaphore, SemaphorePermit};

/// The slots for bodies being read.
pub struct BodyGate {
    slots: Semaphore,
    wait: Duration,
    /// Seconds, for the `Retry-After` of a request that found no slot.
    pub retry_after: u64,
}

impl BodyGate {
    pub fn new(slots: usize, wait: Duration, retry_after: u64) -> Self {
        BodyGate {
            slots: Semaphore::new(slots),
            wait,
            retry_after,
        }
    }

    /// A slot, waiting at most the configured time for one; `None` if none came free.
    pub async fn enter(&self) -> Option<SemaphorePermit<'_>> {
        tokio::time::timeout(self.wait, self.slots.acquire())
            .await
            .ok()
            .map(|permit| permit.expect("the semaphore is never closed"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the body did not arrive in time")]
    TimedOut,
    #[error("the body could not be read: {0}")]
    Broken(axum::Error),
}

/// How much of a refused request's body is read and thrown away (see [`discard`]).
const DISCARD_LIMIT: usize = super::intake::MAX_BODY_BYTES + 1024 * 1024;

/// Read and throw away, in the background, what a refused request still sends (at most
/// [`DISCARD_LIMIT`] bytes, and never past its deadline), so a client that is still sending
/// gets to read the answer instead of a reset connection. Nothing is kept, so this costs no
/// memory. A client that waits to be told to go on (`Expect: 100-continue`) has sent nothing
/// and is not asked for it.
pub fn discard(body: Body, headers: &axum::http::HeaderMap) {
    if body.is_end_stream() || headers.contains_key(axum::http::header::EXPECT) {
        return;
    }
    tokio::spawn(async move {
        let mut body = body;
        let mut left = DISCARD_LIMIT;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                if data.len() >= left {
                    break;
                }
                left -= data.len();
            }
        }
    });
}

/// The length a request declares, if it declares one.
pub fn declared_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A body as it arrived: the chunks the connection read, not yet joined.
#[derive(Debug, Default)]
pub struct Chunks {
    chunks: Vec<Bytes>,
    len: usize,
}

impl Chunks {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunks, in order.
    pub fn as_slices(&self) -> impl Iterator<Item = &[u8]> + Clone {
        self.chunks.iter().map(|c| c.as_ref())
    }

    /// The whole body in one buffer (the one chunk itself when there is only one).
    pub fn join(self) -> Bytes {
        if self.chunks.len() == 1 {
            return self.chunks.into_iter().next().expect("one chunk");
        }
        let mut joined = BytesMut::with_capacity(self.len);
        for chunk in self.chunks {
            joined.extend_from_slice(&chunk);
        }
        joined.freeze()
    }
}

/// Read `body` whole, refusing more than `limit` bytes. The chunks are kept as the connection
/// read them rather than copied into one buffer: a body that turns out unsigned is dropped
/// without ever having been copied, and no body needs one large allocation (which the
/// allocator may keep after it is freed) before it is known to come from GitHub.
pub async fn read(
    mut body: Body,
    declared: Option<u64>,
    limit: usize,
) -> Result<Chunks, BodyError> {
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let mut read = Chunks::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            if crate::server::is_body_timeout(&e) {
                BodyError::TimedOut
            } else {
                BodyError::Broken(e)
            }
        })?;
        if let Ok(data) = frame.into_data() {
            if read.len + data.len() > limit {
                return Err(BodyError::TooLarge(limit));
            }
            if !data.is_empty() {
                read.len += data.len();
                read.chunks.push(data);
            }
        }
    }
    Ok(read)
}
