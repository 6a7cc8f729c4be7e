//! Connections the sandbox refused for a task: what the egress gateway counted, kept on the
//! task so its status page and status comment can say what the agent tried to reach.

use serde::{Deserialize, Serialize};

/// Attempts to reach one host and port that the gateway refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockedEgress {
    pub host: String,
    pub port: u16,
    pub count: u64,
}

impl BlockedEgress {
    /// `host:port`, or what the gateway counted beyond the hosts it names.
    pub fn address(&self) -> String {
        if self.port == 0 {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The list as stored on the task (`tasks.egress_blocked`); `None` when nothing was refused.
    pub fn to_stored(list: &[BlockedEgress]) -> Option<String> {
        (!list.is_empty()).then(|| serde_json::to_string(list).unwrap_or_default())
    }

    /// The stored list; an unreadable value reads as empty.
    pub fn from_stored(stored: Option<&str>) -> Vec<BlockedEgress> {
        stored
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_and_read_back() {
        let list = vec![BlockedEgress {
            host: "example.com".into(),
            port: 443,
            count: 3,
        }];
        let stored = BlockedEgress::to_stored(&list);
        assert_eq!(BlockedEgress::from_stored(stored.as_deref()), list);
        assert_eq!(BlockedEgress::to_stored(&[]), None);
        assert!(BlockedEgress::from_stored(Some("not json")).is_empty());
    }
}
