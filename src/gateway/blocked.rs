//! The refused attempts per task, so the service can tell a person which hosts their task
//! wanted (`GET /blocked?task=<public id>` on the control port).
//!
//! Memory is bounded whatever an agent does: at most [`MAX_HOSTS_PER_TASK`] distinct
//! (host, port) pairs per task (further ones are counted together under [`OTHER_HOSTS`]) and at
//! most [`MAX_TASKS`] tasks, the oldest forgotten first.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

pub const MAX_HOSTS_PER_TASK: usize = 200;
pub const MAX_TASKS: usize = 10_000;
/// The host attempts beyond [`MAX_HOSTS_PER_TASK`] are counted under (with port 0).
pub const OTHER_HOSTS: &str = "(other hosts)";

/// One line of `/blocked`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlockedHost {
    pub host: String,
    pub port: u16,
    pub count: u64,
}

#[derive(Default)]
struct Inner {
    tasks: HashMap<String, BTreeMap<(String, u16), u64>>,
    /// Tasks in the order they were first seen, for eviction.
    order: VecDeque<String>,
}

#[derive(Default)]
pub struct Blocked {
    inner: Mutex<Inner>,
}

impl Blocked {
    pub fn new() -> Blocked {
        Blocked::default()
    }

    /// Count one refused attempt of `task` to reach `host:port`.
    pub fn record(&self, task: &str, host: &str, port: u16) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *inner;
        if !inner.tasks.contains_key(task) {
            while inner.order.len() >= MAX_TASKS {
                if let Some(oldest) = inner.order.pop_front() {
                    inner.tasks.remove(&oldest);
                }
            }
            inner.order.push_back(task.to_owned());
            inner.tasks.insert(task.to_owned(), BTreeMap::new());
        }
        let hosts = inner.tasks.get_mut(task).expect("inserted above");
        let key = (host.to_owned(), port);
        let key = if hosts.contains_key(&key) || hosts.len() < MAX_HOSTS_PER_TASK {
            key
        } else {
            (OTHER_HOSTS.to_owned(), 0)
        };
        *hosts.entry(key).or_insert(0) += 1;
    }

    /// The refused attempts of `task`, sorted by host then port; empty for a task never refused
    /// (or long forgotten).
    pub fn for_task(&self, task: &str) -> Vec<BlockedHost> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .tasks
            .get(task)
            .map(|hosts| {
                hosts
                    .iter()
                    .map(|((host, port), count)| BlockedHost {
                        host: host.clone(),
                        port: *port,
                        count: *count,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(host: &str, port: u16, count: u64) -> BlockedHost {
        BlockedHost {
            host: host.into(),
            port,
            count,
        }
    }

    #[test]
    fn attempts_are_counted_per_task_and_sorted() {
        let b = Blocked::new();
        b.record("t1", "pypi.org", 443);
        b.record("t1", "example.com", 443);
        b.record("t1", "example.com", 80);
        b.record("t1", "example.com", 443);
        b.record("t2", "other.org", 443);
        assert_eq!(
            b.for_task("t1"),
            vec![
                line("example.com", 80, 1),
                line("example.com", 443, 2),
                line("pypi.org", 443, 1)
            ]
        );
        assert_eq!(b.for_task("t2"), vec![line("other.org", 443, 1)]);
        assert_eq!(b.for_task("t3"), vec![]);
        assert_eq!(
            serde_json::to_string(&b.for_task("t2")).unwrap(),
            r#"[{"host":"other.org","port":443,"count":1}]"#
        );
    }

    #[test]
    fn hosts_beyond_the_bound_are_counted_together() {
        let b = Blocked::new();
        for i in 0..MAX_HOSTS_PER_TASK + 5 {
            b.record("t1", &format!("h{i:04}.example"), 443);
        }
        b.record("t1", "h0000.example", 443);
        let lines = b.for_task("t1");
        assert_eq!(lines.len(), MAX_HOSTS_PER_TASK + 1);
        assert_eq!(lines[0], line(OTHER_HOSTS, 0, 5));
        assert_eq!(lines[1], line("h0000.example", 443, 2));
    }

    #[test]
    fn the_oldest_tasks_are_forgotten_first() {
        let b = Blocked::new();
        for i in 0..MAX_TASKS + 2 {
            b.record(&format!("t{i}"), "example.com", 443);
        }
        assert_eq!(b.for_task("t0"), vec![]);
        assert_eq!(b.for_task("t1"), vec![]);
        assert_eq!(b.for_task("t2").len(), 1);
        assert_eq!(b.for_task(&format!("t{}", MAX_TASKS + 1)).len(), 1);
        // A task seen again is not re-queued and does not evict anything.
        b.record("t2", "example.com", 443);
        assert_eq!(b.for_task("t2"), vec![line("example.com", 443, 2)]);
        assert_eq!(b.for_task("t3").len(), 1);
    }
}
