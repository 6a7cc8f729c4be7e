//! The in-process event bus: each task's new events, as they are stored, for live viewers.
//!
//! The store is the record; the bus only tells listeners that something new arrived, so a viewer
//! that lags or connects late reads what it missed from the store (events carry their sequence
//! numbers) and never misses a line.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::broadcast;

use crate::domain::{EventPayload, TaskId};
use crate::entities::task_event;

/// A stored task event, as published.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub task_id: TaskId,
    pub seq: i64,
    pub payload: EventPayload,
}

impl Published {
    /// A stored event, read back.
    pub fn of(event: &task_event::Model) -> Published {
        Published {
            task_id: event.task_id,
            seq: event.seq,
            payload: event.payload(),
        }
    }
}

/// A published event as listeners get it: shared, with its wire form made once for all of them.
#[derive(Debug)]
pub struct BusEvent {
    pub event: Published,
    wire: OnceLock<bytes::Bytes>,
}

impl BusEvent {
    /// The event as its listeners send it on (for the status page: one frame of its stream),
    /// rendered by the first listener to ask and shared by the others.
    pub fn wire(&self, render: impl FnOnce(&Published) -> bytes::Bytes) -> bytes::Bytes {
        self.wire.get_or_init(|| render(&self.event)).clone()
    }
}

/// How many events a slow listener may fall behind before it must catch up from the store.
const CAPACITY: usize = 1024;

#[derive(Debug, Default)]
pub struct EventBus {
    channels: Mutex<HashMap<TaskId, Channel>>,
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

    pub fn subscribe(&self, task_id: TaskId) -> broadcast::Receiver<Arc<BusEvent>> {
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
    pub fn watched(&self, task_id: TaskId) -> Option<i64> {
        let channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels
            .get(&task_id)
            .filter(|c| c.sender.receiver_count() > 0)
            .map(|c| c.last)
    }

    /// Every task someone listens to here, with the highest sequence number published for it.
    pub fn watched_tasks(&self) -> Vec<(TaskId, i64)> {
        let channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels
            .iter()
            .filter(|(_, c)| c.sender.receiver_count() > 0)
            .map(|(id, c)| (*id, c.last))
            .collect()
    }

    /// Publish to the task's listeners, if any; a channel nobody listens to is dropped.
    pub fn publish(&self, event: Published) {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = channels.get_mut(&event.task_id) {
            let task_id = event.task_id;
            channel.last = channel.last.max(event.seq);
            let shared = Arc::new(BusEvent {
                event,
                wire: OnceLock::new(),
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
            task_id: TaskId(task_id),
            seq,
            payload: EventPayload::Log(crate::domain::LogLine::info(format!("line {seq}"))),
        }
    }

    #[tokio::test]
    async fn listeners_get_their_tasks_events_in_order() {
        let bus = EventBus::new();
        bus.publish(event(1, 1)); // nobody listens yet: dropped
        let mut one = bus.subscribe(TaskId(1));
        let mut two = bus.subscribe(TaskId(2));
        bus.publish(event(1, 2));
        bus.publish(event(2, 1));
        bus.publish(event(1, 3));
        assert_eq!(one.recv().await.unwrap().event.seq, 2);
        assert_eq!(one.recv().await.unwrap().event.seq, 3);
        assert_eq!(two.recv().await.unwrap().event, event(2, 1));
        drop(one);
        bus.publish(event(1, 4));
        assert!(
            bus.channels.lock().unwrap().get(&TaskId(1)).is_none(),
            "unused channels are dropped"
        );
    }
}
