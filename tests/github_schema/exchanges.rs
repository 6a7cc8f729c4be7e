//! The exchanges the GitHub simulator recorded (`tests/common/github_sim/recording.rs`): one JSON
//! object a line, in `.jsonl` files in `GITHUB_SIM_RECORD_DIR`.

use std::path::Path;

use serde_json::Value;

/// One request the simulator answered, and its answer.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub request_content_type: Option<String>,
    /// The request's JSON body; null when there was none (or it was not JSON).
    #[serde(default)]
    pub request_body: Value,
    pub status: u16,
    #[serde(default)]
    pub response_content_type: Option<String>,
    /// The answer's JSON body; null when there was none (or it was not JSON).
    #[serde(default)]
    pub response_body: Value,
    /// Where it was read: `file.jsonl:line`.
    #[serde(skip)]
    pub source: String,
}

impl Exchange {
    /// `GET /repos/o/r?per_page=100`, as the request was made.
    pub fn request_line(&self) -> String {
        match &self.query {
            Some(query) => format!("{} {}?{query}", self.method, self.path),
            None => format!("{} {}", self.method, self.path),
        }
    }
}

/// Every exchange recorded in `dir`'s `.jsonl` files, in file name and line order.
pub fn read_recorded(dir: &Path) -> Result<Vec<Exchange>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(format!(
            "{} holds no .jsonl files: no simulator recorded anything there",
            dir.display()
        ));
    }
    let mut exchanges = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let source = format!("{name}:{}", i + 1);
            let mut exchange: Exchange = serde_json::from_str(line)
                .map_err(|e| format!("{source} is not a recorded exchange: {e}"))?;
            exchange.source = source;
            exchanges.push(exchange);
        }
    }
    Ok(exchanges)
}
