//! The record of every API exchange the simulator served, kept when `GITHUB_SIM_RECORD_DIR` is
//! set, for `tests/github_schema.rs` to hold against GitHub's published OpenAPI description and
//! GraphQL schema.
//!
//! Each simulator appends to its own file in that directory, `<pid>-<port>.jsonl`, one JSON object
//! a line:
//!
//! ```json
//! {"method": "POST", "path": "/repos/o/r/issues", "query": null,
//!  "request_content_type": "application/json", "request_body": {"title": "…"},
//!  "status": 201, "response_content_type": "application/json", "response_body": {…}}
//! ```
//!
//! Bodies are JSON, or null when there was none or it was not JSON. What is not GitHub's REST or
//! GraphQL API is left out: git's smart HTTP (`/git/…`), the job log storage (`/_blobs/…`) and
//! github.com's pages that create an App from a manifest.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::json::github_error;

/// The environment variable naming the directory the exchanges are recorded in.
pub const RECORD_DIR_VAR: &str = "GITHUB_SIM_RECORD_DIR";

/// The largest body the recording buffers (the simulator's are far smaller).
const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// One simulator's record file, written through a buffer (flushed when the simulator stops).
pub struct Recorder {
    path: PathBuf,
    file: Mutex<BufWriter<File>>,
}

/// What the recording keeps of a request until its answer is known.
pub(super) struct RecordedRequest {
    method: String,
    path: String,
    query: Option<String>,
    content_type: Option<String>,
    body: Value,
}

impl Recorder {
    /// The recorder for the simulator on `port`, when `GITHUB_SIM_RECORD_DIR` is set.
    pub(super) fn from_env(port: u16) -> Option<Arc<Recorder>> {
        let dir = PathBuf::from(std::env::var_os(RECORD_DIR_VAR).filter(|d| !d.is_empty())?);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("{RECORD_DIR_VAR}: cannot create {}: {e}", dir.display()));
        let path = dir.join(format!("{}-{port}.jsonl", std::process::id()));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{RECORD_DIR_VAR}: cannot open {}: {e}", path.display()));
        Some(Arc::new(Recorder {
            path,
            file: Mutex::new(BufWriter::new(file)),
        }))
    }

    /// Buffer the request's body (the handler gets it back whole) and keep what the record needs.
    pub(super) async fn take_request(
        request: Request,
    ) -> Result<(Request, RecordedRequest), Response> {
        let (parts, body) = request.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, BODY_LIMIT).await else {
            return Err(github_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "The request body could not be read for the simulator's recording",
            ));
        };
        let recorded = RecordedRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            content_type: content_type(&parts.headers),
            body: json_or_null(&bytes),
        };
        Ok((Request::from_parts(parts, Body::from(bytes)), recorded))
    }

    /// Append the exchange to the record and hand the answer on, its body buffered.
    pub(super) async fn record(&self, request: RecordedRequest, response: Response) -> Response {
        let (parts, body) = response.into_parts();
        let bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
            Ok(bytes) => bytes,
            Err(e) => panic!("the simulator's answer could not be read for its recording: {e}"),
        };
        let line = json!({
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "request_content_type": request.content_type,
            "request_body": request.body,
            "status": parts.status.as_u16(),
            "response_content_type": content_type(&parts.headers),
            "response_body": json_or_null(&bytes),
        });
        let mut line = serde_json::to_vec(&line).unwrap();
        line.push(b'\n');
        if let Err(e) = self.file.lock().unwrap().write_all(&line) {
            panic!("writing {}: {e}", self.path.display());
        }
        Response::from_parts(parts, Body::from(bytes))
    }

    /// Write out what the buffer holds; the error names the file.
    pub(super) fn flush(&self) -> Result<(), String> {
        self.file
            .lock()
            .unwrap()
            .flush()
            .map_err(|e| format!("writing {}: {e}", self.path.display()))
    }
}

/// Whether a path is GitHub's API (REST or GraphQL), which the recording keeps, rather than git's
/// smart HTTP, the log storage or a github.com page.
pub(super) fn is_api_path(path: &str) -> bool {
    let web_flow = path == "/settings/apps/new"
        || (path.starts_with("/organizations/") && path.ends_with("/settings/apps/new"));
    !(path.starts_with("/git/") || path.starts_with("/_blobs/") || web_flow)
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn json_or_null(bytes: &Bytes) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}
