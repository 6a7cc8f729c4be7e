//! `GET /tasks/{public_id}/events`: a task's events as server-sent events.
//!
//! Stored events after `Last-Event-ID` (or `?after=`, or from the start) are replayed from the
//! store, then new ones stream from the in-process bus, each with its sequence number as its id:
//! `line` for log lines, `state` for state changes. The stream ends with an `end` event once the
//! task is over. A client too slow to keep up falls behind on the bus: it gets a `resync` event
//! and the stream closes, and the browser reconnects from its last id, reading what it missed
//! from the store, so it never sees a gap or a duplicate and never slows anyone else.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::broadcast;

use crate::bus::{BusEvent, Published};
use crate::context::Ctx;
use crate::domain::{EventPayload, TaskId};
use crate::store::tasks;

/// Events read from the store per query while replaying.
const PAGE: u64 = 500;
/// Live events already waiting are sent together, up to this many per write.
const BATCH: usize = 64;

#[derive(serde::Deserialize)]
pub struct After {
    after: Option<i64>,
}

/// One event of the stream: `line` for log lines, `state` for state changes, with the sequence
/// number as its id and the page's rendering of it as its data.
pub fn frame(seq: i64, event: &EventPayload) -> Bytes {
    let payload = super::log::sse_payload(seq, event);
    let name = if matches!(event, EventPayload::State(_)) {
        "state"
    } else {
        "line"
    };
    let mut out = BytesMut::with_capacity(payload.len() + 32);
    out.put_slice(format!("id: {seq}\nevent: {name}\ndata: ").as_bytes());
    // The payload is one line of JSON: newlines in it are escaped.
    out.put_slice(payload.as_bytes());
    out.put_slice(b"\n\n");
    out.freeze()
}

pub async fn events(
    State(ctx): State<Ctx>,
    Path(public_id): Path<String>,
    Query(query): Query<After>,
    headers: HeaderMap,
) -> Response {
    let task = match tasks::get_by_public_id(&ctx.db, &public_id).await {
        Ok(Some(task)) => task,
        Ok(None) => return super::not_found(),
        Err(e) => return super::internal_error(e),
    };
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .or(query.after)
        .unwrap_or(0)
        .max(0);
    // Subscribe before reading the store: whatever is stored from now on also arrives here.
    let rx = ctx.bus.subscribe(task.id);
    let stream = stream(Replay {
        ctx,
        task_id: task.id,
        last: after,
        rx,
        phase: Phase::Replay,
    });
    let mut response = (StatusCode::OK, Body::from_stream(stream)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies (nginx and others) must pass events on as they come.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

enum Phase {
    Replay,
    Live,
    Done,
}

struct Replay {
    ctx: Ctx,
    task_id: TaskId,
    /// The last sequence number sent (or the client's).
    last: i64,
    rx: broadcast::Receiver<Arc<BusEvent>>,
    phase: Phase,
}

fn ends_task(event: &EventPayload) -> bool {
    event.new_state().is_some_and(|s| s.is_terminal())
}

/// The frame of a published event, made once for every viewer.
fn wire(published: &Published) -> Bytes {
    frame(published.seq, &published.payload)
}

const END: &[u8] = b"event: end\ndata: {}\n\n";
const KEEP_ALIVE_FRAME: &[u8] = b": keep-alive\n\n";

/// What one bus event adds to the chunk being built; `Err(())` when the rest must come from the
/// store (a gap).
fn take(s: &mut Replay, bus: &BusEvent, out: &mut BytesMut) -> Result<(), ()> {
    let e = &bus.event;
    if e.seq <= s.last {
        return Ok(());
    }
    if e.seq > s.last + 1 {
        // Published out of order (two writers): read the gap from the store.
        return Err(());
    }
    s.last = e.seq;
    out.put_slice(&bus.wire(wire));
    if ends_task(&e.payload) {
        out.put_slice(END);
        s.phase = Phase::Done;
    }
    Ok(())
}

fn stream(state: Replay) -> impl futures::Stream<Item = Result<Bytes, Infallible>> {
    futures::stream::unfold(state, |mut s| async move {
        let mut out = BytesMut::new();
        loop {
            match s.phase {
                Phase::Done => {
                    return (!out.is_empty()).then(|| (Ok(out.freeze()), s));
                }
                Phase::Replay => {
                    let stored = match tasks::events_after(&s.ctx.db, s.task_id, s.last, PAGE).await
                    {
                        Ok(stored) => stored,
                        Err(e) => {
                            tracing::warn!(task_id = %s.task_id, error = %e, "reading events for a stream failed");
                            s.phase = Phase::Done;
                            continue;
                        }
                    };
                    let full_page = stored.len() as u64 == PAGE;
                    for e in stored {
                        let payload = e.payload();
                        out.put_slice(&frame(e.seq, &payload));
                        s.last = e.seq;
                        if ends_task(&payload) {
                            out.put_slice(END);
                            s.phase = Phase::Done;
                            break;
                        }
                    }
                    if matches!(s.phase, Phase::Replay) && !full_page {
                        // Caught up. A task that is over has nothing more to say.
                        let over = tasks::get(&s.ctx.db, s.task_id)
                            .await
                            .ok()
                            .flatten()
                            .is_some_and(|t| t.state.is_terminal());
                        if over {
                            out.put_slice(END);
                            s.phase = Phase::Done;
                        } else {
                            s.phase = Phase::Live;
                        }
                    }
                    if !out.is_empty() {
                        return Some((Ok(out.freeze()), s));
                    }
                }
                Phase::Live => {
                    // A comment line now and then keeps proxies from closing an idle stream.
                    let idle = s.ctx.tunables.sse_keep_alive;
                    let first = tokio::select! {
                        received = tokio::time::timeout(idle, s.rx.recv()) => match received {
                            Err(_) => return Some((Ok(Bytes::from_static(KEEP_ALIVE_FRAME)), s)),
                            Ok(received) => received,
                        },
                        // This replica is going away: the browser reconnects (to another one)
                        // from its last event id.
                        _ = s.ctx.shutdown.cancelled() => return None,
                    };
                    let mut next = Some(first);
                    let mut taken = 0;
                    while let Some(received) = next.take() {
                        match received {
                            Ok(bus) => {
                                if take(&mut s, &bus, &mut out).is_err() {
                                    s.phase = Phase::Replay;
                                    break;
                                }
                            }
                            Err(broadcast::error::RecvError::Lagged(_)) => {
                                // Too slow: reconnect and catch up from the store, from `last`.
                                out.put_slice(
                                    format!("event: resync\ndata: {{\"last\":{}}}\n\n", s.last)
                                        .as_bytes(),
                                );
                                s.phase = Phase::Done;
                            }
                            Err(broadcast::error::RecvError::Closed) => s.phase = Phase::Done,
                        }
                        taken += 1;
                        if !matches!(s.phase, Phase::Live) || taken >= BATCH {
                            break;
                        }
                        // What else is already waiting goes in the same write.
                        next = match s.rx.try_recv() {
                            Ok(bus) => Some(Ok(bus)),
                            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                                Some(Err(broadcast::error::RecvError::Lagged(n)))
                            }
                            Err(_) => None,
                        };
                    }
                    if !out.is_empty() {
                        return Some((Ok(out.freeze()), s));
                    }
                }
            }
        }
    })
}
