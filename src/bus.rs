//! The in-process event bus: each task's new events, as they are stored, for live viewers.
//!
//! The store is the record; the bus only tells listeners that something new arrived, so a viewer
//! that lags or connects late reads what it missed from the store (events carry their sequence
//! numbers) and never misses a line.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::broadcast;

/// A stored task event, as published.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub task_id: i64,
    pub seq: i64,
    pub kind: String,
    pub data: serde_json::Value,
}

/// A published event as listeners get it: shared, with its live-stream form made once for all of
/// them.
#[derive(Debug)]
pub struct BusEvent {
    pub event: Published,
    sse: OnceLock<bytes::Bytes>,
}

impl BusEvent {
    /// The event as one frame of the status page's stream (`id`, `event`, `data`).
    pub fn sse_frame(&self) -> bytes::Bytes {
        self.sse
            .get_or_init(|| {
                crate::pages::sse::frame(self.event.seq, &self.event.kind, &self.event.data)
            })
            .clone()
    }
}

/// How many events a slow listener may fall behind before it must catch up from the store.
const CAPACITY: usize = 1024;

#[derive(Debug, Default)]
pub struct EventBus {
    channels: Mutex<HashMap<i64, Channel>>,
}

#[derive(Debug)]
struct Channel {
    sender: broadcast::Sender<Arc<BusEvent>>,
    /// The highest sequence number published on it.
    last: i64,
}

impl EventBus {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn subscribe(&self, task_id: i64) -> broadcast::Receiver<Arc<BusEvent>> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels
            .entry(task_id)
            .or_insert_with(|| Channel {
                sender: broadcast::channel(CAPACITY).0,
                last: 0,
            })
            .sender
            .subscribe()
    }

    /// The highest sequence number published for a task someone listens to; `None` when
    /// nobody listens here (so another replica's events need not be read for it).
    pub fn watched(&self, task_id: i64) -> Option<i64> {
        let channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels
            .get(&task_id)
            .filter(|c| c.sender.receiver_count() > 0)
            .map(|c| c.last)
    }

    /// Every task someone listens to here, with the highest sequence number published for it.
    pub fn watched_tasks(&self) -> Vec<(i64, i64)> {
        let channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels
            .iter()
            .filter(|(_, c)| c.sender.receiver_count() > 0)
            .map(|(id, c)| (*id, c.last))
            .collect()
    }

    /// How many listeners the task has now.
    pub fn receivers(&self, task_id: i64) -> usize {
        let channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels
            .get(&task_id)
            .map(|c| c.sender.receiver_count())
            .unwrap_or(0)
    }

    /// Publish to the task's listeners, if any; a channel nobody listens to is dropped.
    pub fn publish(&self, event: Published) {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = channels.get_mut(&event.task_id) {
            let task_id = event.task_id;
            channel.last = channel.last.max(event.seq);
            let shared = Arc::new(BusEvent {
                event,
                sse: OnceLock::new(),
            });
            if channel.sender.send(shared).is_err() {
                channels.remove(&task_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(task_id: i64, seq: i64) -> Published {
        Published {
            task_id,
            seq,
            kind: "log".into(),
            data: serde_json::json!({"line": seq}),
        }
    }

    #[tokio::test]
    async fn listeners_get_their_tasks_events_in_order() {
        let bus = EventBus::new();
        bus.publish(event(1, 1)); // nobody listens yet: dropped
        let mut one = bus.subscribe(1);
        let mut two = bus.subscribe(2);
        bus.publish(event(1, 2));
        bus.publish(event(2, 1));
        bus.publish(event(1, 3));
        assert_eq!(one.recv().await.unwrap().event.seq, 2);
        assert_eq!(one.recv().await.unwrap().event.seq, 3);
        assert_eq!(two.recv().await.unwrap().event, event(2, 1));
        drop(one);
        bus.publish(event(1, 4));
        assert!(
            bus.channels.lock().unwrap().get(&1).is_none(),
            "unused channels are dropped"
        );
    }
}
