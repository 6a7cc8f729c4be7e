//! A repository's own `.github/amp.toml`, read from its default branch when a command arrives:
//! a broken file is answered with its line and column and starts nothing, `/amp config` shows
//! what tasks run with, the file's rules on who may command the agent hold, and its settings
//! (Amp's mode, instructions, variables, a working directory) reach the agent, and its `ci` rules
//! (which checks decide, how long CI is waited for) decide the task. The real service
//! and worker, the real Docker engine with the stub agent, and the GitHub simulator.

mod common;

use amp_orchestrator::entities::task;
use common::github_sim::git::git;
use common::story::{Story, story_with};
use common::{Backend, TestDb, eventually};
use sea_orm::EntityTrait;

/// The App's reply on `issue` that says `text`, once there is one.
async fn reply_saying(s: &Story, issue: i64, text: &str) -> String {
    eventually(30, &format!("a reply saying {text:?}"), || async {
        s.sim
            .app_comments(&s.repo, issue)
            .into_iter()
            .map(|c| c.body)
            .find(|b| b.contains(text))
    })
    .await
}

async fn task_count(s: &Story) -> usize {
    task::Entity::find().all(&s.conn).await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_is_answered_with_its_line_and_column_and_starts_nothing() {
    let db = TestDb::new(Backend::Sqlite).await;
    let s = story_with(
        db,
        &[],
        &[
            ("README.md", "# widgets\n"),
            (
                ".github/amp.toml",
                "[agent]\nmode = \"high\"\n\n[ci]\nmax_round = 2\n",
            ),
        ],
    )
    .await;
    s.sim
        .comment(&s.repo, 41, "writer", "/amp add a json flag")
        .await;
    let reply = reply_saying(&s, 41, "did not start").await;
    assert!(reply.contains("`.github/amp.toml:5:1`"), "{reply}");
    assert!(reply.contains("max_round"), "{reply}");
    assert!(
        reply.contains("max_rounds"),
        "the allowed keys are named: {reply}"
    );

    // `/amp config` says the same, with what tasks would run with.
    s.sim.comment(&s.repo, 41, "writer", "/amp config").await;
    let config = reply_saying(&s, 41, "configuration").await;
    assert!(config.contains("`.github/amp.toml:5:1`"), "{config}");
    assert_eq!(task_count(&s).await, 0, "no task started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_users_the_file_lists_may_start_a_task() {
    let db = TestDb::new(Backend::Sqlite).await;
    let s = story_with(
        db,
        &[],
        &[
            ("README.md", "# widgets\n"),
            (
                ".github/amp.toml",
                "[permissions]\nusers = [\"release-captain\"]\n",
            ),
        ],
    )
    .await;
    // `writer` has write access, which the service asks for, but is not on the list.
    s.sim
        .comment(&s.repo, 42, "writer", "/amp add a json flag")
        .await;
    let refusal = reply_saying(&s, 42, "nothing was started").await;
    assert!(refusal.contains("permissions.users"), "{refusal}");
    // Reading the configuration is not work: anyone with access may ask.
    s.sim.comment(&s.repo, 42, "writer", "/amp config").await;
    let config = reply_saying(&s, 42, "release-captain").await;
    assert!(config.contains("configuration"), "{config}");
    assert_eq!(task_count(&s).await, 0, "no task started");
}

both_backends!(
    the_file_s_settings_reach_the_agent,
    |db: TestDb| async move {
        let config = "# Settings for amp-orchestrator\n\
                      [agent]\n\
                      mode = \"high\"\n\
                      instructions = \"Also apply instructed.\"\n\
                      \n\
                      [env]\n\
                      WIDGETS_FLAVOUR = \"spicy\"\n\
                      \n\
                      [paths]\n\
                      workdir = \"services/api\"\n\
                      \n\
                      [ci]\n\
                      max_rounds = 1\n";
        let s = story_with(
            db,
            &[],
            &[
                ("README.md", "# widgets\n"),
                (".github/amp.toml", config),
                ("services/api/README.md", "# api\n"),
                (
                    "services/api/.amp-stub/json.sh",
                    "printf -- '--json\\n' >> FLAGS\n",
                ),
                (
                    "services/api/.amp-stub/instructed.sh",
                    "echo yes > INSTRUCTED\n",
                ),
                ("services/api/.amp-stub/show-env", "WIDGETS_FLAVOUR\n"),
            ],
        )
        .await;
        s.sim.comment(&s.repo, 43, "writer", "/amp config").await;
        let shown = reply_saying(&s, 43, "configuration").await;
        for value in ["`high`", "`services/api`", "`WIDGETS_FLAVOUR=spicy`", "`1`"] {
            assert!(shown.contains(value), "{value} in {shown}");
        }

        s.sim
            .comment(&s.repo, 43, "writer", "/amp add a json flag")
            .await;
        let task = s.wait_for_state("awaiting_ci", 90).await;
        assert_eq!(
            task.repo_config.as_deref(),
            Some(config),
            "kept on the task"
        );
        let events = s.events(task.id).await;
        let said = |text: &str| events.iter().any(|e| e.data.contains(text));
        assert!(said("Mode: high."), "Amp runs with --mode high");
        assert!(
            said("env WIDGETS_FLAVOUR=spicy"),
            "the variable reaches Amp: {:#?}",
            events.iter().map(|e| &e.data).collect::<Vec<_>>()
        );
        assert!(
            said("Working in /workspace/services/api."),
            "Amp starts in the working directory"
        );

        // The agent worked in the directory, on the prompt and on the repository's instructions.
        let bare = s.sim.bare_repo(&s.repo);
        let branch = task.branch.clone().unwrap();
        let show = |path: &str| git(&bare, &["show", &format!("{branch}:{path}")]);
        assert_eq!(show("services/api/FLAGS"), "--json");
        assert_eq!(show("services/api/INSTRUCTED"), "yes");
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_required_checks_decide_and_the_ignored_ones_are_not_waited_for() {
    let db = TestDb::new(Backend::Sqlite).await;
    let config = "[ci]\nrequired = [\"widgets\"]\nignore = [\"deploy-preview\"]\n";
    let s = story_with(
        db,
        &[("CI_WAIT_TIMEOUT", "2s")],
        &[
            ("README.md", "# widgets\n"),
            (".github/amp.toml", config),
            (".amp-stub/json.sh", "printf -- '--json\\n' >> FLAGS\n"),
        ],
    )
    .await;
    s.sim
        .comment(&s.repo, 44, "writer", "/amp add a json flag")
        .await;
    let task = s.wait_for_state("awaiting_ci", 90).await;
    let sha = task.head_sha.clone().unwrap().0;
    // A flaky check fails, a deploy preview never finishes, and the required check has not
    // reported: past the wait for CI the task still waits, for `widgets` alone.
    s.sim
        .add_check_run(&s.repo, &sha, None, "flaky e2e", "completed", "failure");
    s.sim
        .add_check_run(&s.repo, &sha, None, "deploy-preview", "in_progress", "");
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let waiting = task::Entity::find_by_id(task.id)
        .one(&s.conn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(waiting.state.as_str(), "awaiting_ci");
    assert_eq!(waiting.ci_round, 0, "the flaky failure went nowhere");
    // It passes: the task succeeds, saying which failure did not count.
    s.sim.add_status(&s.repo, &sha, "widgets", "success");
    let done = s.wait_for_state("succeeded", 30).await;
    assert_eq!(done.ci_round, 0);
    let status = s.status_saying(44, "The required checks passed").await;
    assert!(status.body.contains("`flaky e2e`"), "{}", status.body);
    assert!(!status.body.contains("deploy-preview"), "{}", status.body);
    assert!(!s.sim.pulls()[0].draft);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_sets_its_own_wait_for_ci() {
    let db = TestDb::new(Backend::Sqlite).await;
    // The service waits ten minutes for CI; this repository, which has none, ten seconds.
    let s = story_with(
        db,
        &[("CI_WAIT_TIMEOUT", "10m")],
        &[
            ("README.md", "# widgets\n"),
            (".github/amp.toml", "[ci]\nwait_timeout = \"10s\"\n"),
            (".amp-stub/json.sh", "printf -- '--json\\n' >> FLAGS\n"),
        ],
    )
    .await;
    s.sim
        .comment(&s.repo, 45, "writer", "/amp add a json flag")
        .await;
    s.wait_for_state("succeeded", 90).await;
    let status = s.status_saying(45, "taken to have no CI").await;
    assert!(
        status
            .body
            .contains("`ci.wait_timeout` in .github/amp.toml (10s)"),
        "{}",
        status.body
    );
}

/// A secret the service holds for repositories (in a test, a token-shaped string).
const WIDGETS_TOKEN: &str = "wt_s3cr3t_0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_prepares_the_workspace_before_the_agent_starts() {
    let db = TestDb::new(Backend::Sqlite).await;
    // Setup takes a few seconds, sees the file's variables and its secret, runs in the working
    // directory, and leaves something the agent finds.
    let config = "secrets = [\"WIDGETS_TOKEN\"]\n\
                  setup = [\n  \"echo fetching; sleep 2\",\n  \
                  \"echo \\\"$TOOLCHAIN in $(pwd)\\\" > /tmp/prepared\",\n  \
                  \"echo \\\"token is $WIDGETS_TOKEN\\\"; printf %s \\\"$WIDGETS_TOKEN\\\" | wc -c > /tmp/token-length; sleep 300 >/dev/null 2>&1 &\",\n]\n\
                  [env]\nTOOLCHAIN = \"widgets-1.2\"\n[paths]\nworkdir = \"api\"\n";
    let s = story_with(
        db,
        &[
            ("CI_WAIT_TIMEOUT", "2s"),
            ("AMP_REPO_SECRET_WIDGETS_TOKEN", WIDGETS_TOKEN),
        ],
        &[
            ("README.md", "# widgets\n"),
            (".github/amp.toml", config),
            ("api/README.md", "# api\n"),
            (
                "api/.amp-stub/json.sh",
                "cp /tmp/prepared FOUND; cp /tmp/token-length TOKEN_LENGTH\n\
                 # What setup left running would hold the secret in its environment.\n\
                 cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c '^WIDGETS_TOKEN=' > LEAKS || true\n",
            ),
            ("api/.amp-stub/show-env", "TOOLCHAIN\nWIDGETS_TOKEN\n"),
        ],
    )
    .await;
    s.sim
        .comment(&s.repo, 46, "writer", "/amp add a json flag")
        .await;
    let task = s.wait_for_state("succeeded", 90).await;
    let bare = s.sim.bare_repo(&s.repo);
    let branch = task.branch.clone().unwrap();
    let show = |path: &str| git(&bare, &["show", &format!("{branch}:{path}")]);
    assert_eq!(show("api/FOUND"), "widgets-1.2 in /workspace/api");
    // Setup had the secret; the agent has the variables but not the secret.
    assert_eq!(
        show("api/TOKEN_LENGTH").trim(),
        WIDGETS_TOKEN.len().to_string()
    );
    // Nothing setup started (a `sleep` in the background) was left running with it.
    assert_eq!(show("api/LEAKS").trim(), "0");
    let events = s.events(task.id).await;
    let said = |text: &str| events.iter().any(|e| e.data.contains(text));
    assert!(said("env TOOLCHAIN=widgets-1.2"));
    assert!(said("env WIDGETS_TOKEN=<unset>"), "the agent has no secret");
    // What setup printed is in the log as its own lines, the secret masked, after each command
    // and before Amp.
    assert!(said("token is [REDACTED]"));
    assert!(!said(WIDGETS_TOKEN));
    let at = |text: &str| {
        events
            .iter()
            .position(|e| e.data.contains(text))
            .unwrap_or_else(|| panic!("{text:?} in the log"))
    };
    let printed = at(r#""text":"fetching""#);
    assert!(events[printed].data.contains(r#""type":"setup""#));
    assert!(at("Setup 1/3: echo fetching") < printed);
    assert!(printed < at("Setup 2/3"));
    assert!(at("Setup finished: 3 commands") < at("Starting Amp"));
    // The status page shows setup's output in its own section, the secret masked there too.
    let page = reqwest::get(s.service.url(&format!("/tasks/{}", task.public_id)))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let section = &page[page.find("<ol id=\"setup\"").expect("a setup section")..];
    let section = &section[..section.find("</ol>").unwrap()];
    assert!(section.contains("$ echo fetching; sleep 2"), "{section}");
    assert!(section.contains(">fetching</li>"), "{section}");
    assert!(section.contains("token is [REDACTED]"), "{section}");
    assert!(!page.contains(WIDGETS_TOKEN));
    let comments: Vec<String> = s
        .sim
        .app_comments(&s.repo, 46)
        .into_iter()
        .map(|c| c.body)
        .collect();
    assert!(!comments.iter().any(|c| c.contains(WIDGETS_TOKEN)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_setup_stops_the_task_unless_told_to_continue() {
    let db = TestDb::new(Backend::Sqlite).await;
    let setup = "setup = [\"echo one\", \"echo compiling widgets; echo 'error: libwidget not \
                 found' >&2; exit 3\", \"echo never-run\"]\n";
    let s = story_with(
        db,
        &[("CI_WAIT_TIMEOUT", "2s")],
        &[
            ("README.md", "# widgets\n"),
            (".github/amp.toml", setup),
            (".amp-stub/json.sh", "printf -- '--json\\n' >> FLAGS\n"),
            (".amp-stub/dependencies.sh", "echo told > TOLD\n"),
        ],
    )
    .await;
    s.sim
        .comment(&s.repo, 47, "writer", "/amp add a json flag")
        .await;
    let task = s.wait_for_state("failed", 90).await;
    let status = s.status_saying(47, "`failed`").await;
    for said in [
        "Setup command 2 of .github/amp.toml exited with 3",
        "exit 3",
        "error: libwidget not found",
        "setup_failure = \"continue\"",
    ] {
        assert!(status.body.contains(said), "{said:?} in {}", status.body);
    }
    let events = s.events(task.id).await;
    assert!(!events.iter().any(|e| e.data.contains("never-run\"}")));
    assert!(!events.iter().any(|e| e.data.contains("Starting Amp")));
    assert!(s.sim.pulls().is_empty());

    // With `setup_failure = "continue"` the agent starts, and is told.
    let bare = s.sim.bare_repo(&s.repo);
    let work = tempfile::tempdir().unwrap();
    git(work.path(), &["clone", "-q", bare.to_str().unwrap(), "."]);
    std::fs::write(
        work.path().join(".github/amp.toml"),
        format!("{setup}setup_failure = \"continue\"\n"),
    )
    .unwrap();
    git(
        work.path(),
        &["commit", "-qam", "Start the agent after a failed setup"],
    );
    git(work.path(), &["push", "-q", "origin", "main"]);
    s.sim
        .comment(&s.repo, 48, "writer", "/amp add a json flag")
        .await;
    let task = s.wait_for_state("succeeded", 90).await;
    assert_eq!(task.issue_number, 48);
    let branch = task.branch.clone().unwrap();
    assert_eq!(git(&bare, &["show", &format!("{branch}:TOLD")]), "told");
    let events = s.events(task.id).await;
    assert!(
        events
            .iter()
            .any(|e| e.data.contains("the agent starts anyway"))
    );
}

/// A repository's "toolchain" image, built here from the test agent image (no registry): with a
/// tool of its own (`widgetc`), without the Amp CLI, and without git when `variant` is `"nogit"`.
fn toolchain_image(variant: &str) -> String {
    let base =
        std::env::var("TEST_AGENT_IMAGE").expect("TEST_AGENT_IMAGE (scripts/test.sh sets it)");
    let without_git = if variant == "nogit" {
        " && rm -f /usr/bin/git /usr/local/bin/git"
    } else {
        ""
    };
    // An entrypoint that would end the container at once, as a tool's image may have.
    let dockerfile = format!(
        "FROM {base}\nUSER root\nRUN rm -f /usr/local/bin/amp && printf '#!/bin/sh\\necho \"widgetc 9.1\"\\n' \
         > /usr/local/bin/widgetc && chmod 0755 /usr/local/bin/widgetc{without_git}\nUSER agent\n\
         ENTRYPOINT [\"/usr/local/bin/widgetc\"]\n"
    );
    let digest = {
        use sha2::Digest as _;
        hex::encode(&sha2::Sha256::digest(dockerfile.as_bytes())[..8])
    };
    let name = format!("amp-orchestrator-test-toolchain:{variant}-{digest}");
    let exists = std::process::Command::new("docker")
        .args(["image", "inspect", &name])
        .output()
        .unwrap()
        .status
        .success();
    if exists {
        return name;
    }
    let mut build = std::process::Command::new("docker")
        .args(["build", "-q", "-t", &name, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    build
        .stdin
        .take()
        .unwrap()
        .write_all(dockerfile.as_bytes())
        .unwrap();
    let out = build.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "building {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_brings_its_own_image_and_gets_the_services_amp_cli() {
    let db = TestDb::new(Backend::Sqlite).await;
    let image = toolchain_image("widgets");
    let config = format!("image = \"{image}\"\nsetup = [\"widgetc > /tmp/version\"]\n");
    let s = story_with(
        db,
        &[("CI_WAIT_TIMEOUT", "2s")],
        &[
            ("README.md", "# widgets\n"),
            (".github/amp.toml", &config),
            (
                ".amp-stub/json.sh",
                "cp /tmp/version FOUND; command -v widgetc > TOOL; echo \"$HOME\" > HOME_WAS\n",
            ),
        ],
    )
    .await;
    s.sim
        .comment(&s.repo, 49, "writer", "/amp add a json flag")
        .await;
    let task = s.wait_for_state("succeeded", 120).await;
    let bare = s.sim.bare_repo(&s.repo);
    let branch = task.branch.clone().unwrap();
    let show = |path: &str| git(&bare, &["show", &format!("{branch}:{path}")]);
    // Setup and the agent ran in the repository's image, the agent being the service's CLI.
    assert_eq!(show("FOUND"), "widgetc 9.1");
    assert_eq!(show("TOOL"), "/usr/local/bin/widgetc");
    // The image's entrypoint was set aside, and the agent had a home it could write.
    assert_eq!(show("HOME_WAS"), "/tmp/home");
    let events = s.events(task.id).await;
    assert!(events.iter().any(|e| {
        e.data
            .contains(&format!("Starting the agent container ({image})"))
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_cannot_run_a_task_is_named_with_what_it_lacks() {
    let db = TestDb::new(Backend::Sqlite).await;
    let image = toolchain_image("nogit");
    let s = story_with(
        db,
        &[("CI_WAIT_TIMEOUT", "2s")],
        &[
            ("README.md", "# widgets\n"),
            (".github/amp.toml", &format!("image = \"{image}\"\n")),
        ],
    )
    .await;
    s.sim
        .comment(&s.repo, 50, "writer", "/amp add a json flag")
        .await;
    s.wait_for_state("failed", 90).await;
    let status = s.status_saying(50, "`failed`").await;
    assert!(
        status.body.contains(&format!("The image {image}")) && status.body.contains("lacks git"),
        "{}",
        status.body
    );

    // An image its registry does not have (one on a loopback port where nothing listens) is
    // named with the engine's reason.
    let bare = s.sim.bare_repo(&s.repo);
    let work = tempfile::tempdir().unwrap();
    git(work.path(), &["clone", "-q", bare.to_str().unwrap(), "."]);
    std::fs::write(
        work.path().join(".github/amp.toml"),
        "image = \"127.0.0.1:9/octo-org/missing:1\"\n",
    )
    .unwrap();
    git(work.path(), &["commit", "-qam", "Another image"]);
    git(work.path(), &["push", "-q", "origin", "main"]);
    s.sim
        .comment(&s.repo, 52, "writer", "/amp add a json flag")
        .await;
    s.wait_for_state("failed", 90).await;
    let status = s.status_saying(52, "could not be pulled").await;
    assert!(
        status.body.contains("127.0.0.1:9/octo-org/missing:1"),
        "{}",
        status.body
    );
}

/// Setup snapshots on the engine, by the store's rows.
async fn snapshot_rows(s: &Story) -> Vec<amp_orchestrator::entities::snapshot::Model> {
    amp_orchestrator::entities::snapshot::Entity::find()
        .all(&s.conn)
        .await
        .unwrap()
}

fn image_exists(image: &str) -> bool {
    std::process::Command::new("docker")
        .args(["image", "inspect", image])
        .output()
        .unwrap()
        .status
        .success()
}

/// The task asked for on `issue`, once it has succeeded.
async fn succeeded_on(s: &Story, issue: i64) -> task::Model {
    eventually(120, &format!("the task on #{issue} to succeed"), || async {
        task::Entity::find()
            .all(&s.conn)
            .await
            .unwrap()
            .into_iter()
            .find(|t| t.issue_number == issue && t.state.as_str() == "succeeded")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_task_with_the_same_setup_starts_from_its_snapshot() {
    let db = TestDb::new(Backend::Sqlite).await;
    // Setup takes a while, leaves files in the workspace (ignored by git) and outside it.
    let config = "setup = [\"sleep 2; mkdir -p deps && echo installed > deps/lib.txt && echo tool > /tmp/tool\"]\n";
    let s = story_with(
        db,
        &[("CI_WAIT_TIMEOUT", "2s"), ("SNAPSHOTS_PER_REPO", "1")],
        &[
            ("README.md", "# widgets\n"),
            (".gitignore", "deps/\n"),
            ("package-lock.json", "{\"lockfileVersion\": 1}\n"),
            (".github/amp.toml", config),
            (".amp-stub/json.sh", "cat deps/lib.txt /tmp/tool > FOUND\n"),
        ],
    )
    .await;
    let bare = s.sim.bare_repo(&s.repo);
    let found = |task: &task::Model| {
        let branch = task.branch.clone().unwrap();
        git(&bare, &["show", &format!("{branch}:FOUND")])
    };
    let said = |events: &[amp_orchestrator::entities::task_event::Model], text: &str| {
        events.iter().any(|e| e.data.contains(text))
    };

    // The first task runs setup and saves it.
    s.sim
        .comment(&s.repo, 53, "writer", "/amp add a json flag")
        .await;
    let first = s.wait_for_state("succeeded", 120).await;
    assert_eq!(found(&first), "installed\ntool");
    let events = s.events(first.id).await;
    assert!(said(&events, "Setup 1/1"));
    assert!(said(&events, "Saved the setup as a snapshot"));
    let saved = snapshot_rows(&s).await;
    assert_eq!(saved.len(), 1);
    assert!(image_exists(&saved[0].image));

    // The second starts from it: no setup, the same files.
    s.sim
        .comment(&s.repo, 54, "writer", "/amp add a json flag")
        .await;
    let second = succeeded_on(&s, 54).await;
    assert_eq!(found(&second), "installed\ntool");
    let events = s.events(second.id).await;
    assert!(said(&events, "Starting from the setup snapshot"));
    assert!(!said(&events, "Setup 1/1"));

    // A new lockfile is a new key: setup runs again, and the repository keeps one snapshot.
    let work = tempfile::tempdir().unwrap();
    git(work.path(), &["clone", "-q", bare.to_str().unwrap(), "."]);
    std::fs::write(
        work.path().join("package-lock.json"),
        "{\"lockfileVersion\": 2}\n",
    )
    .unwrap();
    git(work.path(), &["commit", "-qam", "Update the lockfile"]);
    git(work.path(), &["push", "-q", "origin", "main"]);
    s.sim
        .comment(&s.repo, 55, "writer", "/amp add a json flag")
        .await;
    let third = succeeded_on(&s, 55).await;
    let events = s.events(third.id).await;
    assert!(said(&events, "Setup 1/1"));
    let now = snapshot_rows(&s).await;
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now[0].key, saved[0].key);
    assert!(!image_exists(&saved[0].image), "the older snapshot is gone");

    // `/amp config --rebuild` removes it.
    s.sim
        .comment(&s.repo, 55, "writer", "/amp config --rebuild")
        .await;
    reply_saying(&s, 55, "Removed this repository's setup snapshot").await;
    assert!(snapshot_rows(&s).await.is_empty());
    assert!(!image_exists(&now[0].image));
}
