//! `GET /tasks/{public_id}/events`: a task's events as server-sent events.
//!
//! Stored events after `Last-Event-ID` (or `?after=`, or from the start) are replayed from the
//! store, then new ones stream from the in-process bus, each with its sequence number as its id:
//! `line` for log lines, `state` for state changes. The stream ends with an `end` event once the
//! task is over. A client too slow to keep up falls behind on the bus: it gets a `resync` event
//! and the stream closes, and the browser reconnects from its last id, reading what it missed
//! from the store, so it never sees a gap or a duplicate and never slows anyone else.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use tokio::sync::broadcast;

use crate::app::Ctx;
use crate::bus::BusEvent;
use crate::state::TaskState;
use crate::store::tasks;

/// Events read from the store per query while replaying.
const PAGE: u64 = 500;
/// A comment line sent this often keeps proxies from closing an idle stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(serde::Deserialize)]
pub struct After {
    after: Option<i64>,
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
        pending: VecDeque::new(),
        phase: Phase::Replay,
    });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    let h = response.headers_mut();
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
    task_id: i64,
    /// The last sequence number sent (or the client's).
    last: i64,
    rx: broadcast::Receiver<Arc<BusEvent>>,
    pending: VecDeque<Event>,
    phase: Phase,
}

fn sse_event(seq: i64, kind: &str, data: &str) -> Event {
    Event::default()
        .id(seq.to_string())
        .event(if kind == "state" { "state" } else { "line" })
        .data(data)
}

fn ends_task(kind: &str, data: &serde_json::Value) -> bool {
    kind == "state"
        && data["to"]
            .as_str()
            .and_then(|s| s.parse::<TaskState>().ok())
            .is_some_and(TaskState::is_terminal)
}

fn end_event() -> Event {
    Event::default().event("end").data("{}")
}

fn stream(state: Replay) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(event) = s.pending.pop_front() {
                return Some((Ok(event), s));
            }
            match s.phase {
                Phase::Done => return None,
                Phase::Replay => {
                    let stored = match tasks::events_after(&s.ctx.db, s.task_id, s.last, PAGE).await
                    {
                        Ok(stored) => stored,
                        Err(e) => {
                            tracing::warn!(task_id = s.task_id, error = %e, "reading events for a stream failed");
                            s.phase = Phase::Done;
                            continue;
                        }
                    };
                    let full_page = stored.len() as u64 == PAGE;
                    for e in stored {
                        let data: serde_json::Value =
                            serde_json::from_str(&e.data).unwrap_or_default();
                        let payload = super::log::sse_payload(e.seq, &e.kind, &data);
                        s.pending.push_back(sse_event(e.seq, &e.kind, &payload));
                        s.last = e.seq;
                        if ends_task(&e.kind, &data) {
                            s.pending.push_back(end_event());
                            s.phase = Phase::Done;
                        }
                    }
                    if matches!(s.phase, Phase::Replay) && !full_page {
                        // Caught up. A task that is over has nothing more to say.
                        let over = tasks::get(&s.ctx.db, s.task_id)
                            .await
                            .ok()
                            .flatten()
                            .and_then(|t| t.state.parse::<TaskState>().ok())
                            .is_some_and(TaskState::is_terminal);
                        if over {
                            s.pending.push_back(end_event());
                            s.phase = Phase::Done;
                        } else {
                            s.phase = Phase::Live;
                        }
                    }
                }
                Phase::Live => match s.rx.recv().await {
                    Ok(bus) => {
                        let e = &bus.event;
                        if e.seq <= s.last {
                            continue;
                        }
                        if e.seq > s.last + 1 {
                            // Published out of order (two writers): read the gap from the store.
                            s.phase = Phase::Replay;
                            continue;
                        }
                        s.last = e.seq;
                        s.pending
                            .push_back(sse_event(e.seq, &e.kind, bus.sse_data()));
                        if ends_task(&e.kind, &e.data) {
                            s.pending.push_back(end_event());
                            s.phase = Phase::Done;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Too slow: reconnect and catch up from the store, from `last`.
                        s.pending.push_back(
                            Event::default()
                                .event("resync")
                                .data(format!("{{\"last\":{}}}", s.last)),
                        );
                        s.phase = Phase::Done;
                    }
                    Err(broadcast::error::RecvError::Closed) => s.phase = Phase::Done,
                },
            }
        }
    })
}
