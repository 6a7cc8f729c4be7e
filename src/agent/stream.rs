//! The Amp CLI's `--stream-json` output, one JSON object per line, turned into task events.
//!
//! Lines: `system`/`init` (carries `session_id`, the thread id), `assistant` (text and `tool_use`
//! content), `user` (`tool_result` content), and a final `result` (`is_error`, `duration_ms`,
//! `num_turns`, `usage`, and the final message in `result`). Anything that is not JSON is kept as
//! a raw line, and so is a line cut at [`super::lines::LINE_MAX`] (its start is not a message).
//! A turn succeeded only with a `result` whose `is_error` is false and a zero exit.

use serde_json::Value;

use super::lines::Line;
use crate::domain::AgentLine;
use crate::text::{clip, inert};

/// How much of the agent's final message (or failure) goes on to GitHub: a pull request body
/// holds at most 65,536 characters, and a summary is a few paragraphs.
pub const AGENT_WORDS_MAX: usize = 16 * 1024;

/// How much of a tool's input or output a log line keeps.
const SHORT: usize = 300;

#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// The thread this turn runs in (`T-<uuid>`); follow-ups continue it.
    Init {
        thread_id: String,
    },
    Text(String),
    ToolUse {
        name: String,
        input: String,
    },
    ToolResult {
        is_error: bool,
        output: String,
    },
    Result {
        is_error: bool,
        message: String,
        duration_ms: Option<u64>,
        num_turns: Option<u64>,
        input_tokens: Option<u64>,
        output_tokens: Option<u64>,
    },
    /// A line that is not stream-json (kept as it came).
    Raw(String),
}

impl AgentEvent {
    /// The event as the task's log stores it.
    pub fn stored(&self) -> AgentLine {
        match self {
            AgentEvent::Init { thread_id } => AgentLine::Init {
                thread_id: thread_id.clone(),
            },
            AgentEvent::Text(text) => AgentLine::Text { text: text.clone() },
            AgentEvent::ToolUse { name, input } => AgentLine::ToolUse {
                name: name.clone(),
                input: Value::String(input.clone()),
            },
            AgentEvent::ToolResult { is_error, output } => AgentLine::ToolResult {
                is_error: *is_error,
                output: Value::String(output.clone()),
            },
            AgentEvent::Result {
                is_error,
                message,
                duration_ms,
                num_turns,
                input_tokens,
                output_tokens,
            } => AgentLine::Result {
                is_error: *is_error,
                text: message.clone(),
                duration_ms: *duration_ms,
                num_turns: *num_turns,
                input_tokens: *input_tokens,
                output_tokens: *output_tokens,
            },
            AgentEvent::Raw(line) => AgentLine::Raw { text: line.clone() },
        }
    }
}

fn short(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() <= SHORT {
        return text.to_string();
    }
    let cut: String = text.chars().take(SHORT).collect();
    format!("{cut}…")
}

fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str().or_else(|| p.as_str()))
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The events a line of output carries: a cut line is kept as text, with its mark, and never
/// read as a message.
pub fn parse(line: &Line) -> Vec<AgentEvent> {
    if line.is_cut() {
        return vec![AgentEvent::Raw(line.marked())];
    }
    parse_line(&line.text)
}

/// The events one output line carries (an assistant message can hold several parts).
pub fn parse_line(line: &str) -> Vec<AgentEvent> {
    let trimmed = line.trim_end_matches(['\r', '\n']);
    if trimmed.trim().is_empty() {
        return vec![];
    }
    let Ok(json) = serde_json::from_str::<Value>(trimmed) else {
        return vec![AgentEvent::Raw(trimmed.to_string())];
    };
    let Some(kind) = json["type"].as_str() else {
        return vec![AgentEvent::Raw(trimmed.to_string())];
    };
    match kind {
        "system" => match (json["subtype"].as_str(), json["session_id"].as_str()) {
            (Some("init"), Some(thread)) => vec![AgentEvent::Init {
                thread_id: thread.to_string(),
            }],
            _ => vec![],
        },
        "assistant" => json["message"]["content"]
            .as_array()
            .map(|parts| {
                parts
                    .iter()
                    .filter_map(|part| match part["type"].as_str() {
                        Some("text") => part["text"]
                            .as_str()
                            .filter(|t| !t.trim().is_empty())
                            .map(|t| AgentEvent::Text(t.to_string())),
                        Some("tool_use") => Some(AgentEvent::ToolUse {
                            name: part["name"].as_str().unwrap_or("tool").to_string(),
                            input: short(&match &part["input"] {
                                Value::Object(map) => map
                                    .get("cmd")
                                    .or_else(|| map.get("command"))
                                    .or_else(|| map.get("path"))
                                    .and_then(Value::as_str)
                                    .map(str::to_string)
                                    .unwrap_or_else(|| part["input"].to_string()),
                                other => other.to_string(),
                            }),
                        }),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        "user" => json["message"]["content"]
            .as_array()
            .map(|parts| {
                parts
                    .iter()
                    .filter(|p| p["type"] == "tool_result")
                    .map(|p| AgentEvent::ToolResult {
                        is_error: p["is_error"].as_bool().unwrap_or(false),
                        output: short(&content_text(&p["content"])),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        "result" => {
            let usage = &json["usage"];
            vec![AgentEvent::Result {
                is_error: json["is_error"].as_bool().unwrap_or(true),
                message: json["result"]
                    .as_str()
                    .or_else(|| json["error"].as_str())
                    .unwrap_or("")
                    .to_string(),
                duration_ms: json["duration_ms"].as_u64(),
                num_turns: json["num_turns"].as_u64(),
                input_tokens: usage["input_tokens"].as_u64(),
                output_tokens: usage["output_tokens"].as_u64(),
            }]
        }
        _ => vec![AgentEvent::Raw(trimmed.to_string())],
    }
}

/// What one agent turn came to.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnOutcome {
    Succeeded {
        thread_id: Option<String>,
        /// The agent's final message (for the PR body and the status comment).
        message: String,
    },
    Failed {
        thread_id: Option<String>,
        /// The agent's own words: the `result` text, or stderr when it printed nothing else.
        reason: String,
    },
}

/// Collects a turn's events to decide its outcome.
#[derive(Debug, Default)]
pub struct TurnTracker {
    thread_id: Option<String>,
    result: Option<(bool, String)>,
    last_text: Option<String>,
}

impl TurnTracker {
    pub fn observe(&mut self, event: &AgentEvent) {
        match event {
            AgentEvent::Init { thread_id } => self.thread_id = Some(thread_id.clone()),
            AgentEvent::Text(text) => self.last_text = Some(text.clone()),
            AgentEvent::Result {
                is_error, message, ..
            } => self.result = Some((*is_error, message.clone())),
            _ => {}
        }
    }

    pub fn thread_id(&self) -> Option<&str> {
        self.thread_id.as_deref()
    }

    /// Decide, given the process's exit code and its stderr. The words in the outcome are the
    /// agent's, which anyone who can write an issue can steer: they come bounded and inert
    /// ([`crate::text::inert`]: no mentions, no closing keywords), ready for GitHub.
    pub fn finish(self, exit_code: Option<i64>, stderr: &str) -> TurnOutcome {
        match self.decide(exit_code, stderr) {
            TurnOutcome::Succeeded { thread_id, message } => TurnOutcome::Succeeded {
                thread_id,
                message: inert(&clip(&message, AGENT_WORDS_MAX)),
            },
            TurnOutcome::Failed { thread_id, reason } => TurnOutcome::Failed {
                thread_id,
                reason: inert(&clip(&reason, AGENT_WORDS_MAX)),
            },
        }
    }

    fn decide(self, exit_code: Option<i64>, stderr: &str) -> TurnOutcome {
        let stderr = stderr.trim();
        let fallback = |what: &str| {
            if stderr.is_empty() {
                what.to_string()
            } else {
                stderr.to_string()
            }
        };
        match (self.result, exit_code) {
            (Some((false, message)), Some(0)) => TurnOutcome::Succeeded {
                thread_id: self.thread_id,
                message: if message.trim().is_empty() {
                    self.last_text.unwrap_or_default()
                } else {
                    message
                },
            },
            (Some((true, message)), _) => TurnOutcome::Failed {
                thread_id: self.thread_id,
                reason: if message.trim().is_empty() {
                    fallback("the agent reported an error without a message")
                } else {
                    message
                },
            },
            (Some((false, _)), code) => TurnOutcome::Failed {
                thread_id: self.thread_id,
                reason: fallback(&format!(
                    "the agent exited with status {}",
                    code.map_or("unknown".to_string(), |c| c.to_string())
                )),
            },
            (None, code) => TurnOutcome::Failed {
                thread_id: self.thread_id,
                reason: fallback(&format!(
                    "the agent ended without a result (exit status {})",
                    code.map_or("unknown".to_string(), |c| c.to_string())
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_events() {
        let cases: Vec<(&str, Vec<AgentEvent>)> = vec![
            (
                r#"{"type":"system","subtype":"init","session_id":"T-5f1e1c3a-8d7b-4c1e-9a55-0b1f6a2c3d4e","cwd":"/workspace","tools":["Bash"]}"#,
                vec![AgentEvent::Init {
                    thread_id: "T-5f1e1c3a-8d7b-4c1e-9a55-0b1f6a2c3d4e".into(),
                }],
            ),
            (
                r#"{"type":"assistant","message":{"content":[{"type":"text","text":"Looking at the code."},{"type":"tool_use","id":"t1","name":"Bash","input":{"cmd":"cargo test"}}]},"session_id":"T-1"}"#,
                vec![
                    AgentEvent::Text("Looking at the code.".into()),
                    AgentEvent::ToolUse {
                        name: "Bash".into(),
                        input: "cargo test".into(),
                    },
                ],
            ),
            (
                r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"ok"}],"is_error":false}]}}"#,
                vec![AgentEvent::ToolResult {
                    is_error: false,
                    output: "ok".into(),
                }],
            ),
            (
                r#"{"type":"result","subtype":"success","is_error":false,"duration_ms":1200,"num_turns":3,"result":"Added the flag.","usage":{"input_tokens":10,"output_tokens":20}}"#,
                vec![AgentEvent::Result {
                    is_error: false,
                    message: "Added the flag.".into(),
                    duration_ms: Some(1200),
                    num_turns: Some(3),
                    input_tokens: Some(10),
                    output_tokens: Some(20),
                }],
            ),
            (
                "warning: not json",
                vec![AgentEvent::Raw("warning: not json".into())],
            ),
            ("", vec![]),
            (
                r#"{"no_type":1}"#,
                vec![AgentEvent::Raw(r#"{"no_type":1}"#.into())],
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_line(line), expected, "{line}");
        }
    }

    #[test]
    fn a_cut_line_is_text_not_a_message() {
        let whole = Line {
            text: r#"{"type":"result","is_error":false,"result":"Done."}"#.into(),
            dropped: 0,
        };
        assert!(matches!(parse(&whole)[..], [AgentEvent::Result { .. }]));
        let cut = Line {
            text: r#"{"type":"result","is_error":false,"result":"Do"#.into(),
            dropped: 10,
        };
        assert_eq!(
            parse(&cut),
            [AgentEvent::Raw(
                r#"{"type":"result","is_error":false,"result":"Do… [line cut: 10 bytes dropped]"#
                    .into()
            )]
        );
    }

    #[test]
    fn long_tool_input_is_shortened() {
        let input = "x".repeat(1000);
        let line = format!(
            r#"{{"type":"assistant","message":{{"content":[{{"type":"tool_use","name":"edit_file","input":{{"path":"{input}"}}}}]}}}}"#
        );
        match &parse_line(&line)[0] {
            AgentEvent::ToolUse { input, .. } => assert_eq!(input.chars().count(), SHORT + 1),
            other => panic!("{other:?}"),
        }
    }

    fn turn(lines: &[&str], exit: Option<i64>, stderr: &str) -> TurnOutcome {
        let mut tracker = TurnTracker::default();
        for line in lines {
            for event in parse_line(line) {
                tracker.observe(&event);
            }
        }
        tracker.finish(exit, stderr)
    }

    #[test]
    fn outcomes() {
        let init = r#"{"type":"system","subtype":"init","session_id":"T-1"}"#;
        let ok = r#"{"type":"result","is_error":false,"result":"Done."}"#;
        let err = r#"{"type":"result","is_error":true,"result":"Out of credits."}"#;
        assert_eq!(
            turn(&[init, ok], Some(0), ""),
            TurnOutcome::Succeeded {
                thread_id: Some("T-1".into()),
                message: "Done.".into()
            }
        );
        assert_eq!(
            turn(&[init, err], Some(1), ""),
            TurnOutcome::Failed {
                thread_id: Some("T-1".into()),
                reason: "Out of credits.".into()
            }
        );
        // The real CLI without its server: nothing on stdout, the reason on stderr, exit 1.
        assert_eq!(
            turn(&[], Some(1), "Error: connect ECONNREFUSED 127.0.0.1:9\n"),
            TurnOutcome::Failed {
                thread_id: None,
                reason: "Error: connect ECONNREFUSED 127.0.0.1:9".into()
            }
        );
        assert_eq!(
            turn(&[init], Some(0), ""),
            TurnOutcome::Failed {
                thread_id: Some("T-1".into()),
                reason: "the agent ended without a result (exit status 0)".into()
            }
        );
        assert_eq!(
            turn(&[init, ok], Some(2), ""),
            TurnOutcome::Failed {
                thread_id: Some("T-1".into()),
                reason: "the agent exited with status 2".into()
            }
        );
    }

    #[test]
    fn the_agent_cannot_mention_or_close_through_its_words() {
        let steered = r#"{"type":"result","is_error":false,"result":"Done. Fixes #1, closes #2, cc @octo-org/owners"}"#;
        let TurnOutcome::Succeeded { message, .. } = turn(&[steered], Some(0), "") else {
            panic!("the turn succeeded");
        };
        assert!(
            !message.contains("Fixes #1") && !message.contains("closes #2"),
            "{message}"
        );
        assert!(!message.contains("@octo-org"), "{message}");
        assert_eq!(
            message.replace('\u{200D}', ""),
            "Done. Fixes #1, closes #2, cc @octo-org/owners"
        );
        let long = format!(
            r#"{{"type":"result","is_error":true,"result":"{}"}}"#,
            "x".repeat(100_000)
        );
        let TurnOutcome::Failed { reason, .. } = turn(&[&long], Some(1), "") else {
            panic!("the turn failed");
        };
        assert!(reason.len() < AGENT_WORDS_MAX + 16, "{}", reason.len());
    }
}
