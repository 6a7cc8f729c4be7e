//! The agent container on the real Docker engine with the locally built test image
//! (`scripts/build-test-agent-image.sh`, run by `scripts/test.sh`): lock-down, exec, the stub
//! agent's stream-json, cleanup, and the errors a task reports.

use amp_orchestrator::agent::stream::{TurnOutcome, TurnTracker, parse_line};
use amp_orchestrator::docker::{ContainerSpec, DockerError, Engine, Exec, Output, WorkspaceAccess};
use tokio::sync::mpsc;

fn test_image() -> String {
    std::env::var("TEST_AGENT_IMAGE").unwrap_or_else(|_| {
        panic!("TEST_AGENT_IMAGE is not set: run ./scripts/test.sh, which builds the test image")
    })
}

fn spec(image: &str) -> ContainerSpec {
    ContainerSpec {
        image: image.to_string(),
        helper_image: image.to_string(),
        cli_volume: None,
        task: format!("docker-test-{}", rand::random::<u64>()),
        instance_id: "docker-test".into(),
        store: "docker-test".into(),
        network: "none".into(),
        git_network: "none".into(),
        memory_bytes: 512 * 1024 * 1024,
        nano_cpus: 1_000_000_000,
        pids_limit: 256,
        user: "1000:1000".into(),
    }
}

async fn engine() -> Engine {
    Engine::connect(None)
        .await
        .expect("the Docker engine is needed (./scripts/test.sh starts it)")
}

async fn run(
    engine: &Engine,
    c: &amp_orchestrator::docker::TaskContainer,
    exec: Exec,
) -> (Option<i64>, Vec<String>, String) {
    let (tx, mut rx) = mpsc::channel(1024);
    let collect = tokio::spawn(async move {
        let (mut out, mut err) = (String::new(), String::new());
        while let Some(o) = rx.recv().await {
            match o {
                Output::Stdout(s) => out.push_str(&s),
                Output::Stderr(s) => err.push_str(&s),
            }
        }
        (out, err)
    });
    let code = engine.exec(c, exec, tx).await.unwrap();
    let (out, err) = collect.await.unwrap();
    (code, out.lines().map(str::to_string).collect(), err)
}

fn sh(script: &str) -> Exec {
    Exec {
        cmd: vec!["sh".into(), "-c".into(), script.into()],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_runs_locked_down_and_everything_is_removed() {
    let engine = engine().await;
    let spec = spec(&test_image());
    let container = engine.start_task_container(&spec).await.unwrap();

    let (code, out, err) = run(
        &engine,
        &container,
        sh("id -u; id -g; cat /proc/self/status | grep -E '^(CapEff|NoNewPrivs)'"),
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out[0], "1000", "not root");
    assert!(
        out.iter()
            .any(|l| l.starts_with("CapEff:") && l.ends_with("0000000000000000")),
        "{out:?}"
    );
    assert!(
        out.iter()
            .any(|l| l.starts_with("NoNewPrivs:") && l.ends_with('1')),
        "{out:?}"
    );

    let (code, _, err) = run(
        &engine,
        &container,
        sh("git init -q -b main . && mkdir .amp-stub && printf 'echo 42 > answer.txt\\n' > .amp-stub/answer.sh"),
    )
    .await;
    assert_eq!(code, Some(0), "{err}");

    let (code, lines, err) = run(
        &engine,
        &container,
        Exec {
            cmd: [
                "amp",
                "-x",
                "what is the answer?",
                "--stream-json",
                "--dangerously-allow-all",
            ]
            .map(String::from)
            .to_vec(),
            env: vec![
                "AMP_API_KEY=sgamp_test_key".into(),
                "AMP_SKIP_UPDATE_CHECK=1".into(),
            ],
            ..Default::default()
        },
    )
    .await;
    let mut tracker = TurnTracker::default();
    for line in &lines {
        for event in parse_line(line) {
            tracker.observe(&event);
        }
    }
    match tracker.finish(code, &err) {
        TurnOutcome::Succeeded { thread_id, message } => {
            assert!(thread_id.unwrap().starts_with("T-"));
            assert!(message.contains("answer"), "{message}");
        }
        other => panic!("{other:?} {lines:?} {err}"),
    }
    let (_, out, _) = run(&engine, &container, sh("cat answer.txt")).await;
    assert_eq!(out, ["42"], "the edit is in the workspace volume");

    // The container stays up between commands (later CI rounds use it).
    let (code, _, _) = run(&engine, &container, sh("true")).await;
    assert_eq!(code, Some(0));

    let owned = engine.owned(None).await.unwrap();
    assert!(
        owned
            .iter()
            .any(|(t, c)| *t == spec.task && *c == container)
    );
    engine.remove(&container).await;
    let owned = engine.owned(None).await.unwrap();
    assert!(
        !owned.iter().any(|(t, _)| *t == spec.task),
        "container and volume removed"
    );
}

/// A command that prints a burst and exits while its reader is stalled (the log writer behind
/// under load) is still read to its last byte, with its own exit status: the engine keeps an
/// exec's output until it is read, well past the process's exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_prints_a_burst_and_exits_is_read_to_the_end_by_a_slow_reader() {
    let engine = engine().await;
    let spec = spec(&test_image());
    let container = engine.start_task_container(&spec).await.unwrap();
    // Less than what the pipes between the command and the reader hold: the command has
    // printed all it will and exited while the reader waits.
    let stall_left = 200_000;
    const OUT: usize = 4_000_000;
    const ERR: usize = 1_000_000;
    let burst = format!(
        "head -c {OUT} /dev/zero | tr '\\000' o; head -c {ERR} /dev/zero | tr '\\000' e >&2; cat; exit 7"
    );
    let (tx, mut rx) = mpsc::channel(1);
    let exec = tokio::spawn({
        let (engine, container) = (engine.clone(), container.clone());
        async move { engine.exec(&container, sh(&burst), tx).await }
    });
    let read = async {
        let (mut out, mut err) = (0, 0);
        let mut stalled = false;
        while let Some(o) = rx.recv().await {
            match o {
                Output::Stdout(s) => out += s.len(),
                Output::Stderr(s) => err += s.len(),
            }
            if !stalled && out + err + stall_left >= OUT + ERR {
                stalled = true;
                tokio::time::sleep(std::time::Duration::from_secs(4)).await;
            }
        }
        (exec.await.unwrap().unwrap(), out, err)
    };
    let (code, out, err) = tokio::time::timeout(std::time::Duration::from_secs(60), read)
        .await
        .expect("the command ends");
    engine.remove(&container).await;
    assert_eq!(
        (code, out, err),
        (Some(7), OUT, ERR),
        "the command's status and all it printed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_within_reach_of_the_agent_is_found() {
    let engine = engine().await;
    let spec = spec(&test_image());
    let container = engine.start_task_container(&spec).await.unwrap();
    let agent = || Exec {
        cmd: ["amp", "-x", "anything", "--stream-json"]
            .map(String::from)
            .to_vec(),
        env: vec!["AMP_API_KEY=sgamp_test_key".into()],
        ..Default::default()
    };
    // A token in another exec's environment is not visible to the agent.
    let mut with_token = sh("true");
    with_token.env = vec!["GIT_TOKEN=ghs_0123456789abcdefghijklmnopqrstuv".into()];
    run(&engine, &container, with_token).await;
    let (code, lines, _) = run(&engine, &container, agent()).await;
    assert_eq!(code, Some(0), "{lines:?}");

    // One left in a file is.
    run(&engine, &container, sh("mkdir -p .git && printf '[remote]\\n url = https://x-access-token:ghs_0123456789abcdefghijklmnopqrstuv@example.com\\n' > .git/config")).await;
    let (code, lines, _) = run(&engine, &container, agent()).await;
    assert_eq!(code, Some(3));
    assert!(lines.last().unwrap().contains("SECURITY"), "{lines:?}");
    engine.remove(&container).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_a_clear_error_and_leaves_nothing() {
    let engine = engine().await;
    let spec = spec("amp-orchestrator-no-such-image:never");
    match engine.start_task_container(&spec).await {
        Err(DockerError::MissingImage(image)) => assert_eq!(image, spec.image),
        other => panic!("{other:?}"),
    }
    let owned = engine.owned(None).await.unwrap();
    assert!(!owned.iter().any(|(t, _)| *t == spec.task));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_helpers_use_their_own_network_and_may_write_the_workspace() {
    let engine = engine().await;
    let spec = spec(&test_image());
    let agent = engine.start_task_container(&spec).await.unwrap();
    let docker = bollard::Docker::connect_with_defaults().unwrap();

    // The clone's helper writes the workspace, on the git network (not the agent's).
    let cloner = engine
        .start_helper_container(&spec, &agent.volume, "host", WorkspaceAccess::ReadWrite)
        .await
        .unwrap();
    let mode = docker
        .inspect_container(&cloner.id, None)
        .await
        .unwrap()
        .host_config
        .unwrap()
        .network_mode;
    assert_eq!(mode.as_deref(), Some("host"));
    let (code, _, err) = run(&engine, &cloner, sh("echo cloned > /workspace/file")).await;
    assert_eq!(code, Some(0), "{err}");
    engine.remove(&cloner).await;
    let (_, out, _) = run(&engine, &agent, sh("cat /workspace/file")).await;
    assert_eq!(out, ["cloned"], "the agent sees what the helper wrote");

    // The push's helper only reads it.
    let pusher = engine
        .start_helper_container(&spec, &agent.volume, "none", WorkspaceAccess::ReadOnly)
        .await
        .unwrap();
    let (code, out, _) = run(
        &engine,
        &pusher,
        sh("cat /workspace/file; echo changed > /workspace/file"),
    )
    .await;
    assert_ne!(code, Some(0));
    assert_eq!(out, ["cloned"]);
    engine.remove(&pusher).await;
    engine.remove(&agent).await;
    let owned = engine.owned(None).await.unwrap();
    assert!(!owned.iter().any(|(t, _)| *t == spec.task));
}
