//! Every recorded exchange held to GitHub's published schemas (REST through [`RestApi`], GraphQL
//! through [`GraphQlSchema`]), and the report: the failures grouped by what failed, a few
//! examples of each, and the operations the exchanges used.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::PathBuf;

use super::exchanges::Exchange;
use super::graphql::GraphQlSchema;
use super::openapi::RestApi;

/// The variable naming GitHub's OpenAPI description (`api.github.com.json`).
pub const OPENAPI_VAR: &str = "GITHUB_OPENAPI";
/// The variable naming GitHub's GraphQL schema (`schema.graphql`).
pub const GRAPHQL_VAR: &str = "GITHUB_GRAPHQL_SCHEMA";

/// How many examples the report shows of each distinct failure.
const EXAMPLES: usize = 3;

/// One way an exchange differs from what GitHub documents.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The part of the exchange: `operation`, `request query`, `request body`,
    /// `response status`, `response body`, or `graphql query` / `graphql variables`.
    pub part: &'static str,
    /// Where in that part: a JSON pointer into the body, a parameter's name, a GraphQL field.
    pub at: String,
    /// The rule broken: the schema keyword's location, or a short name for the rule.
    pub rule: String,
    /// What was wrong with this exchange.
    pub message: String,
}

impl Failure {
    pub fn new(part: &'static str, at: &str, rule: &str, message: impl Into<String>) -> Failure {
        Failure {
            part,
            at: at.to_string(),
            rule: rule.to_string(),
            message: message.into(),
        }
    }
}

/// A distinct failure: the same rule broken at the same place of the same operation's exchange
/// (array indices in the place do not count).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FailureKind {
    pub operation: String,
    pub status: u16,
    pub part: &'static str,
    pub at: String,
    pub rule: String,
}

/// The exchanges that failed one way: how many, and the first few.
#[derive(Debug, Default)]
pub struct Occurrences {
    pub count: usize,
    /// `source: request line: message`.
    pub examples: Vec<String>,
}

/// GitHub's published REST and GraphQL schemas, ready to hold exchanges to.
pub struct GitHubSchemas {
    rest: RestApi,
    graphql: GraphQlSchema,
}

/// What checking a set of exchanges found.
#[derive(Debug, Default)]
pub struct Report {
    pub exchanges: usize,
    /// `GET /repos/{owner}/{repo}`, `POST /graphql mutation { markPullRequestReadyForReview }`.
    pub operations: BTreeSet<String>,
    pub failures: BTreeMap<FailureKind, Occurrences>,
}

impl GitHubSchemas {
    /// The schemas the test command installed, named by `GITHUB_OPENAPI` and
    /// `GITHUB_GRAPHQL_SCHEMA`.
    pub fn from_env() -> Result<GitHubSchemas, String> {
        let rest = RestApi::load(&env_path(OPENAPI_VAR, "api.github.com.json")?)?;
        let graphql = GraphQlSchema::load(&env_path(GRAPHQL_VAR, "schema.graphql")?)?;
        Ok(GitHubSchemas { rest, graphql })
    }

    pub fn check_all(&mut self, exchanges: &[Exchange]) -> Report {
        let mut report = Report {
            exchanges: exchanges.len(),
            ..Report::default()
        };
        for exchange in exchanges {
            let mut counted = BTreeSet::new();
            let (operation, failures) = if exchange.method == "POST" && exchange.path == "/graphql"
            {
                let (operation, failures) = self.graphql.check(exchange);
                (Some(operation), failures)
            } else {
                self.rest.check(exchange)
            };
            let name = operation.unwrap_or_else(|| exchange.request_line());
            for failure in failures {
                let kind = FailureKind {
                    operation: name.clone(),
                    status: exchange.status,
                    part: failure.part,
                    at: without_indices(&failure.at),
                    rule: failure.rule,
                };
                let seen = report.failures.entry(kind.clone()).or_default();
                if counted.insert(kind) {
                    seen.count += 1;
                }
                if seen.examples.len() < EXAMPLES {
                    seen.examples.push(format!(
                        "{}: {}: {}",
                        exchange.source,
                        exchange.request_line(),
                        failure.message
                    ));
                }
            }
            report.operations.insert(name);
        }
        report
    }
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.failures.is_empty()
    }

    /// Whether some failure of `operation` is in `part` with a rule containing `rule`.
    pub fn has_failure(&self, operation: &str, part: &str, rule: &str) -> bool {
        self.failures
            .keys()
            .any(|k| k.operation == operation && k.part == part && k.rule.contains(rule))
    }

    /// Every distinct failure with its examples.
    pub fn failures_text(&self) -> String {
        let mut text = format!(
            "{} distinct ways the simulator's exchanges differ from GitHub's published schemas:\n",
            self.failures.len()
        );
        for (kind, seen) in &self.failures {
            let at = if kind.at.is_empty() {
                String::new()
            } else {
                format!(" at {}", kind.at)
            };
            let _ = writeln!(
                text,
                "\n{} → {}: {}{at} (rule: {}), {} exchange(s), e.g.",
                kind.operation, kind.status, kind.part, kind.rule, seen.count
            );
            for example in &seen.examples {
                let _ = writeln!(text, "    {example}");
            }
        }
        text
    }

    /// How many exchanges and operations were checked, and the operations, one a line.
    pub fn summary_text(&self) -> String {
        let mut text = format!(
            "{} exchanges over {} operations checked against GitHub's published OpenAPI \
             description and GraphQL schema: {}\n",
            self.exchanges,
            self.operations.len(),
            if self.is_clean() {
                "all follow them"
            } else {
                "some do not (above)"
            }
        );
        for operation in &self.operations {
            let _ = writeln!(text, "  {operation}");
        }
        text
    }
}

fn env_path(var: &str, what: &str) -> Result<PathBuf, String> {
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(path) => Ok(PathBuf::from(path)),
        None => Err(format!(
            "{var} is not set: it names GitHub's {what}, which scripts/test.sh installs \
             (ensure_github_schema in scripts/services.sh)"
        )),
    }
}

/// `/check_runs/3/output` → `/check_runs/*/output`.
fn without_indices(at: &str) -> String {
    at.split('/')
        .map(|s| {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                "*"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A message cut to a readable length.
pub fn shorten(text: &str) -> String {
    const LIMIT: usize = 240;
    if text.chars().count() <= LIMIT {
        return text.to_string();
    }
    let cut: String = text.chars().take(LIMIT).collect();
    format!("{cut}…")
}
