//! A task's event log, typed: state changes, the service's own log lines, and the agent's output.
//!
//! Each event is stored as its kind (`task_events.kind`) and its payload as JSON text
//! (`task_events.data`), serialized once when it is recorded; [`EventPayload::decode`] is the one
//! place stored events are read back.

use sea_orm::sea_query::StringLen;
use sea_orm::{DeriveActiveEnum, EnumIter};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::state::TaskState;

/// Stored as its name in `task_events.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::None)",
    rename_all = "snake_case"
)]
pub enum EventKind {
    State,
    Log,
    Agent,
}

/// A state change: `{"from": state|null, "to": state, "reason": text|null}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateChange {
    pub from: Option<TaskState>,
    pub to: TaskState,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    #[default]
    Info,
    Warn,
    Error,
}

/// A line of the service's own: `{"level", "text", …measurements}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    #[serde(default)]
    pub level: LogLevel,
    #[serde(default)]
    pub text: String,
    /// Numbers a step measured (for example how long a CI decision took), kept beside the text.
    #[serde(flatten)]
    pub measured: serde_json::Map<String, Value>,
}

impl LogLine {
    pub fn info(text: impl Into<String>) -> LogLine {
        LogLine {
            level: LogLevel::Info,
            text: text.into(),
            measured: Default::default(),
        }
    }

    pub fn error(text: impl Into<String>) -> LogLine {
        LogLine {
            level: LogLevel::Error,
            ..LogLine::info(text)
        }
    }
}

/// A line of the agent's output, as stored (see [`crate::agent::stream`] for how it is read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentLine {
    /// The Amp thread of this turn.
    Init {
        thread_id: String,
    },
    Text {
        text: String,
    },
    ToolUse {
        name: String,
        #[serde(default)]
        input: Value,
    },
    ToolResult {
        #[serde(default)]
        is_error: bool,
        #[serde(default)]
        output: Value,
    },
    /// The turn's end: its final message and usage.
    Result {
        #[serde(default)]
        is_error: bool,
        #[serde(default)]
        text: String,
        #[serde(default)]
        duration_ms: Option<u64>,
        #[serde(default)]
        num_turns: Option<u64>,
        #[serde(default)]
        input_tokens: Option<u64>,
        #[serde(default)]
        output_tokens: Option<u64>,
    },
    Stderr {
        text: String,
    },
    /// A line printed by one of the repository's setup commands (`.github/amp.toml`).
    Setup {
        text: String,
    },
    /// Output that is not the stream's JSON, kept as it came.
    Raw {
        text: String,
    },
    /// Where older output was dropped to keep the task's log within its bounds: how many lines
    /// and bytes (as stored) are gone, in all.
    Dropped {
        lines: u64,
        bytes: u64,
    },
}

impl AgentLine {
    /// How a stored [`AgentLine::Result`] begins (`task_events.data`; the tag comes first), so
    /// the store can find a turn's results without reading every line.
    pub const RESULT_PREFIX: &'static str = r#"{"type":"result""#;
    /// How a stored [`AgentLine::Dropped`] begins.
    pub const DROPPED_PREFIX: &'static str = r#"{"type":"dropped""#;
}

/// One event of a task's log.
#[derive(Debug, Clone, PartialEq)]
pub enum EventPayload {
    State(StateChange),
    Log(LogLine),
    Agent(AgentLine),
}

impl EventPayload {
    pub fn kind(&self) -> EventKind {
        match self {
            EventPayload::State(_) => EventKind::State,
            EventPayload::Log(_) => EventKind::Log,
            EventPayload::Agent(_) => EventKind::Agent,
        }
    }

    /// The payload as stored in `task_events.data`.
    pub fn to_json(&self) -> String {
        let value = match self {
            EventPayload::State(change) => serde_json::to_string(change),
            EventPayload::Log(line) => serde_json::to_string(line),
            EventPayload::Agent(line) => serde_json::to_string(line),
        };
        value.unwrap_or_else(|_| "{}".into())
    }

    /// A stored event read back. Data that does not fit its kind (written by an older version,
    /// or damaged) comes back as a raw line holding the text, so nothing stored is lost from view.
    pub fn decode(kind: EventKind, data: &str) -> EventPayload {
        let decoded = match kind {
            EventKind::State => serde_json::from_str(data).map(EventPayload::State),
            EventKind::Log => serde_json::from_str(data).map(EventPayload::Log),
            EventKind::Agent => serde_json::from_str(data).map(EventPayload::Agent),
        };
        decoded.unwrap_or_else(|e| {
            tracing::debug!(?kind, error = %e, "a stored event does not decode");
            EventPayload::Agent(AgentLine::Raw {
                text: data.to_string(),
            })
        })
    }

    /// The state this event moves the task to, if it is a state change.
    pub fn new_state(&self) -> Option<TaskState> {
        match self {
            EventPayload::State(change) => Some(change.to),
            _ => None,
        }
    }

    /// Rewrite every text the payload carries (to mask secrets before it is stored or shown).
    pub fn rewrite_texts(&mut self, f: &impl Fn(&str) -> String) {
        fn in_value(value: &mut Value, f: &impl Fn(&str) -> String) {
            match value {
                Value::String(s) => *s = f(s),
                Value::Array(items) => items.iter_mut().for_each(|v| in_value(v, f)),
                Value::Object(map) => map.values_mut().for_each(|v| in_value(v, f)),
                _ => {}
            }
        }
        let rewrite = |s: &mut String| *s = f(s);
        match self {
            EventPayload::State(change) => change.reason.iter_mut().for_each(rewrite),
            EventPayload::Log(line) => {
                rewrite(&mut line.text);
                line.measured.values_mut().for_each(|v| in_value(v, f));
            }
            EventPayload::Agent(line) => match line {
                AgentLine::Init { thread_id: text }
                | AgentLine::Text { text }
                | AgentLine::Stderr { text }
                | AgentLine::Setup { text }
                | AgentLine::Raw { text }
                | AgentLine::Result { text, .. } => rewrite(text),
                AgentLine::ToolUse { name, input } => {
                    rewrite(name);
                    in_value(input, f);
                }
                AgentLine::ToolResult { output, .. } => in_value(output, f),
                AgentLine::Dropped { .. } => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_results_and_markers_start_with_their_tag() {
        let result = EventPayload::Agent(AgentLine::Result {
            is_error: false,
            text: r#"{"type":"raw"}"#.into(),
            duration_ms: Some(1),
            num_turns: None,
            input_tokens: None,
            output_tokens: None,
        });
        assert!(result.to_json().starts_with(AgentLine::RESULT_PREFIX));
        let dropped = EventPayload::Agent(AgentLine::Dropped { lines: 3, bytes: 9 });
        assert!(dropped.to_json().starts_with(AgentLine::DROPPED_PREFIX));
        assert_eq!(
            EventPayload::decode(EventKind::Agent, &dropped.to_json()),
            dropped
        );
        let raw = EventPayload::Agent(AgentLine::Raw {
            text: r#"{"type":"result"}"#.into(),
        });
        assert!(!raw.to_json().starts_with(AgentLine::RESULT_PREFIX));
    }
}
