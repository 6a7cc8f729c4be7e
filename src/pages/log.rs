//! A task's events as the status page shows them: assistant text as text, tool calls collapsed to
//! their name and a short input, results, raw output monospaced with ANSI stripped, and state
//! changes on the timeline. The page and its live stream render lines with the same code.

use askama::Template;
use serde_json::Value;

use crate::domain::{AgentLine, EventPayload, LogLevel};
use crate::text::{clip, strip_ansi};

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub seq: i64,
    /// CSS class: `text`, `tool`, `result`, `raw`, `setup` (a setup command's output), `log`,
    /// `error`, `change` (a state change), `omitted` (where dropped output was).
    pub class: &'static str,
    /// What shows (the summary, for collapsed lines).
    pub text: String,
    /// Shown on demand (tool input and output).
    pub detail: Option<String>,
}

/// Longest text shown for a line; the rest is in the stored event.
const MAX_TEXT: usize = 16 * 1024;

/// The line for an event.
pub fn line(seq: i64, payload: &EventPayload) -> Line {
    let (class, text, detail) = match payload {
        EventPayload::State(change) => {
            let reason = change
                .reason
                .as_deref()
                .filter(|r| !r.is_empty())
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            ("change", format!("→ {}{reason}", change.to), None)
        }
        EventPayload::Log(log) => {
            let class = if log.level == LogLevel::Error {
                "error"
            } else {
                "log"
            };
            (class, log.text.clone(), None)
        }
        EventPayload::Agent(agent) => match agent {
            AgentLine::Init { thread_id } => ("log", format!("Amp thread {thread_id}"), None),
            AgentLine::Text { text } => ("text", text.clone(), None),
            AgentLine::ToolUse { name, input } => {
                let input = match input {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    // The command or path a tool call is about, when it names one.
                    other => ["cmd", "command", "path", "file_path", "pattern"]
                        .iter()
                        .find_map(|k| other[*k].as_str().map(str::to_string))
                        .unwrap_or_else(|| other.to_string()),
                };
                let short = first_line(&input);
                ("tool", format!("▸ {name} {short}"), Some(input))
            }
            AgentLine::ToolResult { is_error, output } => {
                let output = match output {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let class = if *is_error { "error" } else { "result" };
                (class, format!("◂ {}", first_line(&output)), Some(output))
            }
            AgentLine::Result {
                is_error,
                text,
                duration_ms,
                num_turns,
                input_tokens,
                output_tokens,
            } => {
                let class = if *is_error { "error" } else { "result" };
                let usage = format!(
                    "{} turns, {} input and {} output tokens, {:.1} s",
                    num_turns.unwrap_or(0),
                    input_tokens.unwrap_or(0),
                    output_tokens.unwrap_or(0),
                    duration_ms.unwrap_or(0) as f64 / 1000.0
                );
                (class, format!("Amp finished: {text} ({usage})"), None)
            }
            AgentLine::Stderr { text } | AgentLine::Raw { text } => ("raw", strip_ansi(text), None),
            AgentLine::Setup { text } => ("setup", strip_ansi(text), None),
            AgentLine::Dropped { lines, bytes } => (
                "omitted",
                format!(
                    "[… {lines} earlier lines of Amp's output ({}) were dropped: a task's log \
                     keeps the newest …]",
                    size(*bytes)
                ),
                None,
            ),
        },
    };
    Line {
        seq,
        class,
        text: clip(&text, MAX_TEXT),
        detail: detail.map(|d| clip(&strip_ansi(&d), MAX_TEXT)),
    }
}

/// A size for people: `812 bytes`, `3.4 KiB`, `16.0 MiB`.
fn size(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} bytes"),
        1024..1_048_576 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
    }
}

/// The first line of `text`, at most 120 characters.
fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(120)
        .collect()
}

/// One `<li>` of the log or the timeline.
#[derive(Template)]
#[template(path = "line.html")]
pub struct LineHtml<'a> {
    pub line: &'a Line,
}

impl Line {
    pub fn html(&self) -> String {
        LineHtml { line: self }.render().unwrap_or_default()
    }
}

/// What the live stream sends for an event: `{"seq", "kind", "html"}`, plus `"state"` for a
/// state change.
pub fn sse_payload(seq: i64, payload: &EventPayload) -> String {
    let line = line(seq, payload);
    let kind = match payload {
        EventPayload::State(_) => "state",
        EventPayload::Log(_) => "log",
        EventPayload::Agent(AgentLine::Setup { .. }) => "setup",
        EventPayload::Agent(_) => "agent",
    };
    let mut out = serde_json::json!({"seq": seq, "kind": kind, "html": line.html()});
    if let Some(state) = payload.new_state() {
        out["state"] = Value::String(state.as_str().into());
    }
    out.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{LogLine, StateChange, TaskState};
    use serde_json::json;

    fn agent(line: serde_json::Value) -> EventPayload {
        EventPayload::Agent(serde_json::from_value(line).unwrap())
    }

    #[test]
    fn lines_for_each_kind_of_event() {
        let l = line(
            3,
            &agent(
                json!({"type": "tool_use", "name": "Bash", "input": {"cmd": "cargo test\nmore"}}),
            ),
        );
        assert_eq!(l.class, "tool");
        assert_eq!(l.text, "▸ Bash cargo test");
        assert_eq!(l.detail.as_deref(), Some("cargo test\nmore"));
        let l = line(
            4,
            &agent(json!({"type": "raw", "text": "\u{1b}[31mred\u{1b}[0m"})),
        );
        assert_eq!((l.class, l.text.as_str()), ("raw", "red"));
        let change = EventPayload::State(StateChange {
            from: Some(TaskState::Running),
            to: TaskState::Pushing,
            reason: None,
        });
        let l = line(5, &change);
        assert_eq!((l.class, l.text.as_str()), ("change", "→ pushing"));
        let l = line(6, &EventPayload::Log(LogLine::error("boom")));
        assert_eq!(l.class, "error");
        // A setup line goes to the page's setup section, live too.
        let setup = agent(json!({"type": "setup", "text": "\u{1b}[1mnpm\u{1b}[0m ci"}));
        assert_eq!(
            (line(9, &setup).class, line(9, &setup).text.as_str()),
            ("setup", "npm ci")
        );
        let payload: Value = serde_json::from_str(&sse_payload(9, &setup)).unwrap();
        assert_eq!(payload["kind"], "setup");
        let html = line(
            7,
            &agent(json!({"type": "text", "text": "<script>x</script>"})),
        )
        .html();
        assert!(
            html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"),
            "{html}"
        );
        let done = EventPayload::State(StateChange {
            from: Some(TaskState::AwaitingCi),
            to: TaskState::Succeeded,
            reason: None,
        });
        let payload: Value = serde_json::from_str(&sse_payload(8, &done)).unwrap();
        assert_eq!(payload["state"], "succeeded");
        assert_eq!(payload["seq"], 8);
    }

    #[test]
    fn where_output_was_dropped_the_log_says_how_much() {
        let l = line(
            10,
            &agent(json!({"type": "dropped", "lines": 980000, "bytes": 3_500_000})),
        );
        assert_eq!(l.class, "omitted");
        assert_eq!(
            l.text,
            "[… 980000 earlier lines of Amp's output (3.3 MiB) were dropped: a task's log keeps \
             the newest …]"
        );
    }

    #[test]
    fn stored_events_that_do_not_decode_are_shown_raw() {
        let payload = EventPayload::decode(crate::domain::EventKind::State, "{\"to\": \"done\"}");
        let l = line(9, &payload);
        assert_eq!(l.class, "raw");
        assert!(l.text.contains("done"), "{}", l.text);
    }
}
