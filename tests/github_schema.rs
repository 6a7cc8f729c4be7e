//! The GitHub simulator (`tests/common/github_sim`) held to GitHub's published descriptions of its
//! API: the REST API's OpenAPI description (`@octokit/openapi`) and the GraphQL schema
//! (`@octokit/graphql-schema`), both pinned and installed by `scripts/test.sh`.
//!
//! The suite runs with `GITHUB_SIM_RECORD_DIR` set, so every simulator records the exchanges it
//! served; then the ignored test here checks each of them: the operation exists, the request's
//! query and body are ones GitHub takes, and the answer's status and body are ones GitHub
//! documents. The other test shows that the check does find what is wrong.

mod github_schema {
    pub mod exchanges;
    pub mod graphql;
    pub mod openapi;
    pub mod report;
}

use std::path::PathBuf;

use github_schema::exchanges::{Exchange, read_recorded};
use github_schema::report::GitHubSchemas;
use serde_json::{Value, json};

const RECORD_DIR_VAR: &str = "GITHUB_SIM_RECORD_DIR";

#[test]
#[ignore = "run by scripts/test.sh after the suite, over the exchanges it recorded"]
fn simulator_exchanges_follow_githubs_published_schemas() {
    let dir = std::env::var_os(RECORD_DIR_VAR)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "{RECORD_DIR_VAR} is not set: it names the directory the simulators recorded \
                 their exchanges in while the suite ran (scripts/test.sh sets it)"
            )
        });
    let exchanges = read_recorded(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !exchanges.is_empty(),
        "{} holds no recorded exchanges: the suite made no request to a simulator",
        dir.display()
    );
    let mut schemas = GitHubSchemas::from_env().unwrap_or_else(|e| panic!("{e}"));
    let report = schemas.check_all(&exchanges);
    assert!(
        report.is_clean(),
        "{}\n{}",
        report.failures_text(),
        report.summary_text()
    );
    print!("{}", report.summary_text());
}

fn exchange(
    method: &str,
    path_and_query: &str,
    request_body: Value,
    status: u16,
    response_body: Value,
) -> Exchange {
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    let json_type = |body: &Value| (!body.is_null()).then_some("application/json");
    let mut exchange: Exchange = serde_json::from_value(json!({
        "method": method,
        "path": path,
        "query": query,
        "request_content_type": json_type(&request_body),
        "request_body": request_body,
        "status": status,
        "response_content_type": json_type(&response_body),
        "response_body": response_body,
    }))
    .unwrap();
    exchange.source = "hand-written".into();
    exchange
}

#[test]
fn the_check_reports_what_github_would_not_send_or_take() {
    let mut schemas = GitHubSchemas::from_env().unwrap_or_else(|e| panic!("{e}"));
    let not_found =
        json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"});
    let ready_for_review = "mutation($id: ID!) { markPullRequestReadyForReview(input: \
                            {pullRequestId: $id}) { pullRequest { isDraft } } }";
    let failing = [
        // A repository without most of its required fields.
        exchange(
            "GET",
            "/repos/octo/widgets",
            Value::Null,
            200,
            json!({"id": 1, "name": "widgets"}),
        ),
        // A query parameter the operation does not have, and one of the wrong type.
        exchange(
            "GET",
            "/repos/octo/widgets/pulls?state=open&colour=blue",
            Value::Null,
            200,
            json!([]),
        ),
        exchange(
            "GET",
            "/repos/octo/widgets/commits/abc/check-runs?per_page=many",
            Value::Null,
            200,
            json!({"total_count": 0, "check_runs": []}),
        ),
        // A path GitHub does not have.
        exchange(
            "GET",
            "/repos/octo/widgets/not-an-endpoint",
            Value::Null,
            404,
            not_found.clone(),
        ),
        // A request body without its required title, answered with a success status GitHub
        // does not give.
        exchange(
            "POST",
            "/repos/octo/widgets/issues",
            json!({"body": "no title"}),
            200,
            json!({}),
        ),
        // An error status the operation does not document, without GitHub's error shape.
        exchange(
            "GET",
            "/repos/octo/widgets/issues/1",
            Value::Null,
            502,
            json!({"error": "bad gateway"}),
        ),
        // A GraphQL field and an input field the schema does not have, an undeclared variable.
        exchange(
            "POST",
            "/graphql",
            json!({
                "query": "mutation { markPullRequestReadyForReview(input: {pullRequestID: $id}) \
                          { pullRequest { isDraft draftiness } } }",
                "variables": {"id": "PR_1"},
            }),
            200,
            json!({"data": null, "errors": [{"message": "unknown field"}]}),
        ),
    ];
    let report = schemas.check_all(&failing);
    let text = report.failures_text();
    let graphql = "POST /graphql mutation { markPullRequestReadyForReview }";
    let expected = [
        ("GET /repos/{owner}/{repo}", "response body", "required"),
        (
            "GET /repos/{owner}/{repo}/pulls",
            "request query",
            "unknown parameter",
        ),
        (
            "GET /repos/{owner}/{repo}/commits/{ref}/check-runs",
            "request query",
            "type",
        ),
        (
            "GET /repos/octo/widgets/not-an-endpoint",
            "operation",
            "no operation",
        ),
        (
            "POST /repos/{owner}/{repo}/issues",
            "request body",
            "required",
        ),
        (
            "POST /repos/{owner}/{repo}/issues",
            "response status",
            "undocumented status",
        ),
        (
            "GET /repos/{owner}/{repo}/issues/{issue_number}",
            "response body",
            "generic error",
        ),
        (graphql, "graphql query", "unknown input field"),
        (graphql, "graphql query", "required input field"),
        (graphql, "graphql query", "unknown field"),
        (graphql, "graphql query", "undeclared variable"),
    ];
    for (operation, part, rule) in expected {
        assert!(
            report.has_failure(operation, part, rule),
            "expected a failure of {operation} in its {part} ({rule}); the check found:\n{text}"
        );
    }
    assert_eq!(report.exchanges, failing.len());

    // What GitHub does send and take passes.
    let passing = [
        exchange(
            "GET",
            "/repos/octo/widgets/pulls/7",
            Value::Null,
            404,
            not_found,
        ),
        exchange(
            "GET",
            "/repos/octo/widgets/collaborators/amy/permission",
            Value::Null,
            401,
            json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}),
        ),
        exchange(
            "GET",
            "/repos/octo/widgets/pulls?state=open&head=octo:amp/1&per_page=100",
            Value::Null,
            200,
            json!([]),
        ),
        exchange(
            "POST",
            "/graphql",
            json!({"query": ready_for_review, "variables": {"id": "PR_1"}}),
            200,
            json!({"data": {"markPullRequestReadyForReview": {"pullRequest": {"isDraft": false}}}}),
        ),
    ];
    let report = schemas.check_all(&passing);
    assert!(report.is_clean(), "{}", report.failures_text());
    assert_eq!(report.operations.len(), passing.len());
}
