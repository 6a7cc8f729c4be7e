//! A task's events as the status page shows them: assistant text as text, tool calls collapsed to
//! their name and a short input, results, raw output monospaced with ANSI stripped, and state
//! changes on the timeline. The page and its live stream render lines with the same code.

use askama::Template;
use serde_json::Value;

use crate::text::{clip, strip_ansi};

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub seq: i64,
    /// CSS class: `text`, `tool`, `result`, `raw`, `log`, `error`, `change` (a state change).
    pub class: &'static str,
    /// What shows (the summary, for collapsed lines).
    pub text: String,
    /// Shown on demand (tool input and output).
    pub detail: Option<String>,
}

/// Longest text shown for a line; the rest is in the stored event.
const MAX_TEXT: usize = 16 * 1024;

/// The line for a stored event (`kind` and its JSON `data`).
pub fn line(seq: i64, kind: &str, data: &Value) -> Line {
    let s = |key: &str| data[key].as_str().unwrap_or_default().to_string();
    let (class, text, detail) = match kind {
        "state" => {
            let reason = data["reason"]
                .as_str()
                .filter(|r| !r.is_empty())
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            ("change", format!("→ {}{reason}", s("to")), None)
        }
        "log" => {
            let class = if data["level"] == "error" {
                "error"
            } else {
                "log"
            };
            (class, s("text"), None)
        }
        "agent" => match data["type"].as_str().unwrap_or_default() {
            "init" => ("log", format!("Amp thread {}", s("thread_id")), None),
            "text" => ("text", s("text"), None),
            "tool_use" => {
                let input = match &data["input"] {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    // The command or path a tool call is about, when it names one.
                    other => ["cmd", "command", "path", "file_path", "pattern"]
                        .iter()
                        .find_map(|k| other[*k].as_str().map(str::to_string))
                        .unwrap_or_else(|| other.to_string()),
                };
                let short: String = input
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take(120)
                    .collect();
                ("tool", format!("▸ {} {short}", s("name")), Some(input))
            }
            "tool_result" => {
                let output = match &data["output"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let class = if data["is_error"] == true {
                    "error"
                } else {
                    "result"
                };
                let first: String = output
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take(120)
                    .collect();
                (class, format!("◂ {first}"), Some(output))
            }
            "result" => {
                let class = if data["is_error"] == true {
                    "error"
                } else {
                    "result"
                };
                let usage = format!(
                    "{} turns, {} input and {} output tokens, {:.1} s",
                    data["num_turns"].as_u64().unwrap_or(0),
                    data["input_tokens"].as_u64().unwrap_or(0),
                    data["output_tokens"].as_u64().unwrap_or(0),
                    data["duration_ms"].as_u64().unwrap_or(0) as f64 / 1000.0
                );
                (
                    class,
                    format!("Amp finished: {} ({usage})", s("text")),
                    None,
                )
            }
            "stderr" | "raw" => ("raw", strip_ansi(&s("text")), None),
            _ => ("raw", strip_ansi(&data.to_string()), None),
        },
        _ => ("raw", strip_ansi(&data.to_string()), None),
    };
    Line {
        seq,
        class,
        text: clip(&text, MAX_TEXT),
        detail: detail.map(|d| clip(&strip_ansi(&d), MAX_TEXT)),
    }
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
pub fn sse_payload(seq: i64, kind: &str, data: &Value) -> String {
    let line = line(seq, kind, data);
    let mut payload = serde_json::json!({"seq": seq, "kind": kind, "html": line.html()});
    if kind == "state" {
        payload["state"] = data["to"].clone();
    }
    payload.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lines_for_each_kind_of_event() {
        let l = line(
            3,
            "agent",
            &json!({"type": "tool_use", "name": "Bash", "input": {"cmd": "cargo test\nmore"}}),
        );
        assert_eq!(l.class, "tool");
        assert_eq!(l.text, "▸ Bash cargo test");
        assert_eq!(l.detail.as_deref(), Some("cargo test\nmore"));
        assert!(l.detail.is_some());
        let l = line(
            4,
            "agent",
            &json!({"type": "raw", "text": "\u{1b}[31mred\u{1b}[0m"}),
        );
        assert_eq!((l.class, l.text.as_str()), ("raw", "red"));
        let l = line(
            5,
            "state",
            &json!({"from": "running", "to": "pushing", "reason": null}),
        );
        assert_eq!((l.class, l.text.as_str()), ("change", "→ pushing"));
        let l = line(6, "log", &json!({"level": "error", "text": "boom"}));
        assert_eq!(l.class, "error");
        let html = line(
            7,
            "agent",
            &json!({"type": "text", "text": "<script>x</script>"}),
        )
        .html();
        assert!(
            html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"),
            "{html}"
        );
        let payload: Value =
            serde_json::from_str(&sse_payload(8, "state", &json!({"to": "succeeded"}))).unwrap();
        assert_eq!(payload["state"], "succeeded");
        assert_eq!(payload["seq"], 8);
    }
}
