//! A repository's own `.github/amp.toml`, read from its default branch when a command arrives:
//! a broken file is answered with its line and column and starts nothing, `/amp config` shows
//! what tasks run with, the file's rules on who may command the agent hold, and its settings
//! (Amp's mode, instructions, variables, a working directory) reach the agent. The real service
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
