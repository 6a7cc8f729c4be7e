//! The admin's task list, form and API: the token they need, and a task created through the API
//! running end to end (the simulator, the real worker and Docker, the test agent image).

mod common;

use amp_orchestrator::entities::task;
use common::TestDb;
use common::story::story_with;
use sea_orm::EntityTrait;
use serde_json::{Value, json};

const TOKEN: &str = "admin-token-0123456789abcdef";
const FILES: &[(&str, &str)] = &[
    ("README.md", "# widgets\n"),
    (".amp-stub/json.sh", "printf -- '--json\\n' >> FLAGS\n"),
];

/// `POST /api/tasks` with the admin token and `request`: the answer's status and its `error`.
async fn api_refusal(s: &common::story::Story, request: Value) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(s.service.url("/api/tasks"))
        .bearer_auth(TOKEN)
        .json(&request)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_string(),
    )
}

/// Requests that read a repository or an installation, which creating a task starts with.
fn repo_calls(sim: &common::github_sim::GitHubSim) -> usize {
    sim.requests("GET", "/repos/").len() + sim.requests("GET", "/installation").len()
}

both_backends!(
    admin_pages_and_the_api_need_the_token,
    |db: TestDb| async move {
        let s = story_with(db, &[("ADMIN_TOKEN", TOKEN)], FILES).await;
        let http = reqwest::Client::new();
        let url = |p: &str| s.service.url(p);
        let requests = || {
            vec![
                http.get(url("/tasks")),
                http.get(url("/tasks/new")),
                http.post(url("/tasks"))
                    .form(&[("repo", "octo-org/widgets"), ("prompt", "x")]),
                http.post(url("/api/tasks"))
                    .json(&json!({"repo": "octo-org/widgets", "prompt": "x"})),
                http.get(url("/api/tasks/AAAAAAAAAAAAAAAAAAAAAAAA")),
            ]
        };
        for request in requests() {
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 401, "no token: {}", r.url());
            assert!(r.headers().contains_key("www-authenticate"));
        }
        for request in requests() {
            let r = request
                .bearer_auth("wrong-token-0123456789")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "wrong token: {}", r.url());
        }
        for request in requests() {
            let r = request
                .basic_auth("admin", Some("wrong-token-0123456789"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "wrong password: {}", r.url());
        }
        // Nothing was created by the refused requests.
        assert!(task::Entity::find().all(&s.conn).await.unwrap().is_empty());
        let r = http
            .get(url("/tasks"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = http
            .get(url("/tasks/new"))
            .basic_auth("me", Some(TOKEN))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("<form method=\"post\" action=\"/tasks\">")
        );
        // A form post from another site is refused even with the credentials a browser resends.
        let r = http
            .post(url("/tasks"))
            .basic_auth("me", Some(TOKEN))
            .header("sec-fetch-site", "cross-site")
            .form(&[("repo", "octo-org/widgets"), ("prompt", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        // Bad requests get clear answers.
        let (status, error) =
            api_refusal(&s, json!({"repo": "octo-org/nowhere", "prompt": "x"})).await;
        assert_eq!(status, 422);
        assert!(
            error.contains("is the App installed on octo-org/nowhere"),
            "{error}"
        );
        let r = http
            .post(url("/api/tasks"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        // A repository name that would steer the API path is refused before GitHub is asked.
        let before = repo_calls(&s.sim);
        let (status, error) = api_refusal(
            &s,
            json!({"repo": "a/../../app/installation", "prompt": "x"}),
        )
        .await;
        assert_eq!(status, 422);
        assert!(error.contains("is not a repository name"), "{error}");
        assert_eq!(repo_calls(&s.sim), before, "GitHub was not asked");
        assert!(task::Entity::find().all(&s.conn).await.unwrap().is_empty());
    }
);

both_backends!(
    other_sites_cannot_make_a_browser_create_tasks,
    |db: TestDb| async move {
        let s = story_with(db, &[("ADMIN_TOKEN", TOKEN)], FILES).await;
        let http = reqwest::Client::new();
        let url = |p: &str| s.service.url(p);
        let before = repo_calls(&s.sim);
        // A page elsewhere auto-submits `<form enctype="text/plain">` whose name and value make
        // JSON; the browser adds the Basic credentials it remembers.
        let forged = r#"{"repo":"octo-org/widgets","prompt":"leak the secrets","x":"=1"}"#;
        let r = http
            .post(url("/api/tasks"))
            .basic_auth("admin", Some(TOKEN))
            .header("content-type", "text/plain")
            .header("origin", "https://evil.example")
            .header("sec-fetch-site", "cross-site")
            .body(forged)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        // Without the browser's fetch headers: Basic is not taken by the API at all…
        let r = http
            .post(url("/api/tasks"))
            .basic_auth("admin", Some(TOKEN))
            .header("content-type", "text/plain")
            .body(forged)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("only as `Authorization: Bearer")
        );
        // …and with the right token the body must still be JSON.
        let r = http
            .post(url("/api/tasks"))
            .bearer_auth(TOKEN)
            .header("content-type", "text/plain")
            .body(forged)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415);
        // The form: a foreign Origin is refused even without Sec-Fetch-Site.
        for (origin, site) in [
            (Some("https://evil.example"), None),
            (Some("null"), None),
            (None, Some("same-site")),
            (None, Some("cross-site")),
        ] {
            let mut request = http
                .post(url("/tasks"))
                .basic_auth("me", Some(TOKEN))
                .form(&[("repo", "octo-org/widgets"), ("prompt", "x")]);
            if let Some(origin) = origin {
                request = request.header("origin", origin);
            }
            if let Some(site) = site {
                request = request.header("sec-fetch-site", site);
            }
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 403, "{origin:?} {site:?}");
        }
        assert_eq!(repo_calls(&s.sim), before, "nothing reached GitHub");
        assert!(task::Entity::find().all(&s.conn).await.unwrap().is_empty());
        // This site's own form, as a browser sends it, gets through to the task's checks (here:
        // an issue that does not exist).
        let r = http
            .post(url("/tasks"))
            .basic_auth("me", Some(TOKEN))
            .header("origin", s.service.base.as_str())
            .header("sec-fetch-site", "same-origin")
            .form(&[
                ("repo", "octo-org/widgets"),
                ("issue", "999"),
                ("prompt", "x"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422);
        assert!(r.text().await.unwrap().contains("reading issue #999"));
    }
);

both_backends!(
    a_task_created_through_the_api_runs_end_to_end,
    |db: TestDb| async move {
        let s = story_with(
            db,
            &[("ADMIN_TOKEN", TOKEN), ("CI_WAIT_TIMEOUT", "2s")],
            FILES,
        )
        .await;
        let http = reqwest::Client::new();
        let r = http
            .post(s.service.url("/api/tasks"))
            .bearer_auth(TOKEN)
            .json(&json!({"repo": "octo-org/widgets", "prompt": "Add a json flag", "requester": "writer"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let created: Value = r.json().await.unwrap();
        let public_id = created["public_id"].as_str().unwrap().to_string();
        assert!(created["url"].as_str().unwrap().ends_with(&public_id));
        // An issue was opened for it, and its status comment is there.
        let issue = created["issue"].as_i64().unwrap();
        let issues = s.sim.state.lock().unwrap().issues.clone();
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].1, issue);
        assert_eq!(issues[0].2, "Add a json flag");

        let task = s.wait_for_state("succeeded", 90).await;
        assert_eq!(task.public_id, public_id);
        let pull = s.sim.pulls().remove(0);
        assert!(!pull.draft);
        assert!(pull.body.contains(&format!("Closes #{issue}")));
        s.status_saying(issue, "taken to have no CI").await;
        let shown: Value = http
            .get(s.service.url(&format!("/api/tasks/{public_id}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(shown["state"], "succeeded");
        assert_eq!(shown["pull_request"], pull.number);

        // The form, on an existing issue, redirects to the new task's page.
        let number = s
            .sim
            .open_issue(&s.repo, "Docs", "Please document the flag.");
        let r = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .post(s.service.url("/tasks"))
            .basic_auth("me", Some(TOKEN))
            .header("sec-fetch-site", "same-origin")
            .form(&[
                ("repo", "octo-org/widgets"),
                ("issue", &number.to_string()),
                ("prompt", "explain the readme"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let location = r.headers()["location"].to_str().unwrap().to_string();
        assert!(location.starts_with("/tasks/"));
        let second = s.wait_for_state("succeeded", 90).await;
        assert_eq!(second.issue_number, number);
        assert_eq!(location, format!("/tasks/{}", second.public_id));
        // Both are in the list, and the filter works.
        let list = http
            .get(
                s.service
                    .url("/tasks?state=succeeded&repo=octo-org/widgets"),
            )
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            list.contains(&public_id) && list.contains(&second.public_id),
            "{list}"
        );
        let none = http
            .get(s.service.url("/tasks?state=failed"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!none.contains(&public_id));
    }
);

both_backends!(
    the_api_refuses_a_second_task_on_a_busy_issue,
    |db: TestDb| async move {
        // This replica runs no tasks: the first one stays queued.
        let s = story_with(
            db,
            &[("ADMIN_TOKEN", TOKEN), ("MAX_CONCURRENT_TASKS", "0")],
            FILES,
        )
        .await;
        let number = s.sim.open_issue(&s.repo, "Flags", "Add a json flag.");
        let create = |prompt: &'static str| {
            reqwest::Client::new()
                .post(s.service.url("/api/tasks"))
                .bearer_auth(TOKEN)
                .json(&json!({"repo": "octo-org/widgets", "issue": number, "prompt": prompt}))
                .send()
        };
        let first = create("Add a json flag").await.unwrap();
        assert_eq!(first.status(), 201);
        let first: Value = first.json().await.unwrap();
        let second = create("Add a yaml flag too").await.unwrap();
        assert_eq!(second.status(), 409);
        let body: Value = second.json().await.unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(error.contains("already running"), "{error}");
        assert!(
            error.contains(first["public_id"].as_str().unwrap()),
            "{error}"
        );
        assert_eq!(task::Entity::find().all(&s.conn).await.unwrap().len(), 1);
    }
);

/// Guessing the admin token: after a burst of wrong tokens every admin request gets a 429 with
/// `Retry-After` for a while, the right token included, so answers say nothing about guesses.
#[tokio::test]
async fn wrong_admin_tokens_are_slowed_down() {
    let db = TestDb::new(common::db::Backend::Sqlite).await;
    let mut env = common::service::test_env(&db);
    env.insert("ADMIN_TOKEN".into(), TOKEN.into());
    let mut service = common::TestService::start_with(env).await;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..40 {
        let r = http
            .get(service.url("/api/tasks/AAAAAAAAAAAAAAAAAAAAAAAA"))
            .bearer_auth(format!("guess-{i:04}-0123456789abcdef"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    let wrong = statuses.iter().filter(|s| **s == 401).count();
    assert!(
        (amp_orchestrator::pages::guard::WRONG_TOKEN_BURST as usize
            ..=amp_orchestrator::pages::guard::WRONG_TOKEN_BURST as usize + 1)
            .contains(&wrong),
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let r = http
        .get(service.url("/tasks"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_lists_and_removes_setup_snapshots() {
    use amp_orchestrator::store::snapshots;
    let s = story_with(
        TestDb::new(common::Backend::Sqlite).await,
        &[("ADMIN_TOKEN", TOKEN)],
        FILES,
    )
    .await;
    // A snapshot as a task leaves one: an image on the engine and its row.
    let key = format!("admin{:016x}", rand::random::<u64>());
    let image = format!("amp-orchestrator-snapshot:{key}");
    let base = std::env::var("TEST_AGENT_IMAGE").expect("TEST_AGENT_IMAGE");
    let tagged = std::process::Command::new("docker")
        .args(["tag", &base, &image])
        .status()
        .unwrap();
    assert!(tagged.success());
    snapshots::record(&s.conn, &key, s.repo.id, &image, 1234)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let url = |p: &str| s.service.url(p);

    let unauthorized = http.get(url("/api/snapshots")).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    let listed: Value = http
        .get(url("/api/snapshots"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["key"], key.as_str());
    assert_eq!(listed[0]["bytes"], 1234);

    // Not the whole store by a missing parameter.
    let r = http
        .delete(url("/api/snapshots"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .delete(url(&format!("/api/snapshots/{key}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let gone = std::process::Command::new("docker")
        .args(["image", "inspect", &image])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "the image is removed");
    let again = http
        .delete(url(&format!("/api/snapshots/{key}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    let by_repo: Value = http
        .delete(url(&format!("/api/snapshots?repo_id={}", s.repo.id)))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_repo["removed"], 0);
}
