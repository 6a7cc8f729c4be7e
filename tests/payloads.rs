//! Every real payload example for the events the service handles parses into its event type.

mod common;

use amp_orchestrator::webhook::events::{self, WebhookEvent};

#[test]
fn every_fixture_of_a_handled_event_parses() {
    let dir = common::fixtures::fixtures_dir().join("webhooks");
    let mut parsed = 0;
    for event in [
        "issue_comment",
        "check_suite",
        "installation",
        "installation_repositories",
        "pull_request",
        "ping",
    ] {
        let mut files: Vec<_> = std::fs::read_dir(dir.join(event))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no fixtures for {event}");
        for file in files {
            let body = std::fs::read(&file).unwrap();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let parsed_event = events::parse(event, &body)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
                .unwrap_or_else(|| panic!("{}: not recognised", file.display()));
            // The action and installation the service routes on come through.
            if event != "ping" {
                assert_eq!(
                    parsed_event.action(),
                    json["action"].as_str(),
                    "{}",
                    file.display()
                );
            }
            assert_eq!(
                parsed_event.installation_id(),
                json["installation"]["id"].as_i64(),
                "{}",
                file.display()
            );
            match (&parsed_event, event) {
                (WebhookEvent::IssueComment(e), _) => {
                    assert_eq!(e.comment.id, json["comment"]["id"].as_i64().unwrap());
                    assert_eq!(e.comment.body, json["comment"]["body"].as_str().unwrap());
                    assert_eq!(e.issue.number, json["issue"]["number"].as_i64().unwrap());
                    assert_eq!(
                        e.repository.clone_url,
                        json["repository"]["clone_url"].as_str().unwrap()
                    );
                    assert_eq!(
                        e.issue.is_pull_request(),
                        !json["issue"]["pull_request"].is_null()
                    );
                    if e.action.as_str() == "edited" {
                        assert_eq!(e.previous_body(), json["changes"]["body"]["from"].as_str());
                    }
                }
                (WebhookEvent::CheckSuite(e), _) => {
                    assert_eq!(
                        e.check_suite.head_sha,
                        json["check_suite"]["head_sha"].as_str().unwrap()
                    );
                    assert_eq!(
                        e.check_suite.conclusion.as_deref(),
                        json["check_suite"]["conclusion"].as_str()
                    );
                    assert_eq!(
                        e.check_suite.app.as_ref().map(|a| a.id),
                        json["check_suite"]["app"]["id"].as_i64()
                    );
                }
                (WebhookEvent::Installation(e), _) => {
                    assert_eq!(
                        e.installation.account.login,
                        json["installation"]["account"]["login"].as_str().unwrap()
                    );
                }
                (WebhookEvent::InstallationRepositories(e), _) => {
                    assert_eq!(
                        e.repositories_added.len() + e.repositories_removed.len(),
                        json["repositories_added"].as_array().unwrap().len()
                            + json["repositories_removed"].as_array().unwrap().len()
                    );
                }
                (WebhookEvent::PullRequest(e), _) => {
                    assert_eq!(e.number, json["number"].as_i64().unwrap());
                    assert_eq!(e.pull_request.number, e.number);
                    assert_eq!(e.pull_request.state, json["pull_request"]["state"]);
                    assert_eq!(
                        e.pull_request.merged,
                        json["pull_request"]["merged"].as_bool()
                    );
                }
                (WebhookEvent::Ping, "ping") => {}
                (other, name) => panic!("{name} parsed as {other:?}"),
            }
            parsed += 1;
        }
    }
    assert!(parsed >= 55, "only {parsed} fixtures parsed");
}

#[test]
fn actionable_events_are_the_ones_the_service_acts_on() {
    let dir = common::fixtures::fixtures_dir().join("webhooks");
    let actionable = |event: &str, file: &str| {
        let body = std::fs::read(dir.join(event).join(file)).unwrap();
        events::parse(event, &body)
            .unwrap()
            .unwrap()
            .is_actionable()
    };
    // The examples' comments carry no `/amp` command: recorded, but nothing to do.
    assert!(!actionable("issue_comment", "created.payload.json"));
    assert!(!actionable("issue_comment", "edited.payload.json"));
    assert!(!actionable("issue_comment", "deleted.payload.json"));
    let with_body = |file: &str, body: &str, previous: Option<&str>| {
        let mut json = common::fixture(&format!("webhooks/issue_comment/{file}"));
        json["comment"]["body"] = body.into();
        if let Some(previous) = previous {
            json["changes"]["body"]["from"] = previous.into();
        }
        events::parse("issue_comment", &serde_json::to_vec(&json).unwrap())
            .unwrap()
            .unwrap()
            .is_actionable()
    };
    assert!(with_body("created.payload.json", "/amp fix it", None));
    assert!(with_body("created.payload.json", "/amp stop", None));
    assert!(!with_body("deleted.payload.json", "/amp fix it", None));
    assert!(with_body(
        "edited.payload.json",
        "/amp fix it",
        Some("fix it")
    ));
    assert!(!with_body(
        "edited.payload.json",
        "/amp fix it",
        Some("/amp fix it")
    ));
    assert!(actionable("pull_request", "closed.payload.json"));
    assert!(!actionable("pull_request", "reopened.payload.json"));
    assert!(!actionable("pull_request", "synchronize.payload.json"));
    assert!(actionable("check_suite", "completed.payload.json"));
    assert!(!actionable("check_suite", "requested.payload.json"));
    assert!(!actionable("check_suite", "rerequested.payload.json"));
    assert!(actionable("installation", "deleted.payload.json"));
    assert!(actionable(
        "installation_repositories",
        "added.payload.json"
    ));
}
