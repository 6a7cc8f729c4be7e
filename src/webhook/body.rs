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

/// The blocks a body is read into: no one allocation as large as the body (which the allocator
/// may keep after it is freed), and no buffer of the connection's kept past its chunk (a chunk
/// that is kept pins the whole buffer it was read into, however small the chunk).
const BLOCK: usize = 64 * 1024;

/// A body as read: its bytes in blocks of [`BLOCK`], not yet joined.
#[derive(Debug, Default)]
pub struct Chunks {
    blocks: Vec<BytesMut>,
    len: usize,
}

impl Chunks {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The blocks, in order.
    pub fn as_slices(&self) -> impl Iterator<Item = &[u8]> + Clone {
        self.blocks.iter().map(|b| b.as_ref())
    }

    /// The whole body in one buffer (the one block itself when there is only one).
    pub fn join(self) -> Bytes {
        if self.blocks.len() == 1 {
            return self.blocks.into_iter().next().expect("one block").freeze();
        }
        let mut joined = BytesMut::with_capacity(self.len);
        for block in self.blocks {
            joined.extend_from_slice(&block);
        }
        joined.freeze()
    }

    /// Copy `data` in, filling the last block before starting a new one; the first is no
    /// larger than the declared length.
    fn push(&mut self, mut data: &[u8], declared: Option<u64>) {
        while !data.is_empty() {
            let full = self.blocks.last().is_none_or(|b| b.len() == b.capacity());
            if full {
                let size = match (self.blocks.is_empty(), declared) {
                    (true, Some(n)) => (n as usize).clamp(1, BLOCK),
                    _ => BLOCK,
                };
                self.blocks.push(BytesMut::with_capacity(size));
            }
            let block = self.blocks.last_mut().expect("a block with room");
            let n = (block.capacity() - block.len()).min(data.len());
            block.extend_from_slice(&data[..n]);
            data = &data[n..];
            self.len += n;
        }
    }
}

/// Read `body` whole, refusing more than `limit` bytes. Each chunk is copied into [`Chunks`]
/// and let go at once, so what a body holds is its own size, however it was sent.
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
            read.push(&data, declared);
        }
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_fill_in_turn_and_join_to_the_body() {
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut chunks = Chunks::default();
        for piece in body.chunks(7_000) {
            chunks.push(piece, Some(body.len() as u64));
        }
        assert_eq!(chunks.len(), body.len());
        let sizes: Vec<usize> = chunks.as_slices().map(<[u8]>::len).collect();
        assert_eq!(sizes, [BLOCK, BLOCK, BLOCK, body.len() - 3 * BLOCK]);
        assert_eq!(chunks.join(), body);

        // A small body is one block of its own size, handed on without a copy.
        let mut small = Chunks::default();
        small.push(b"{\"zen\":", Some(13));
        small.push(b"\"hi\"}", Some(13));
        assert_eq!(small.as_slices().count(), 1);
        assert_eq!(small.join(), &b"{\"zen\":\"hi\"}"[..]);
    }
}
