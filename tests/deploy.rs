//! The deploy files: no registry can be reached here to build the images, so their Dockerfiles
//! are checked instead: known instructions, stages that exist, JSON forms that parse, every file
//! they copy present in the build context, and the agent image's Amp CLI pinned to the version
//! the tests run. `fly.toml` is checked against the service it deploys.

use std::path::Path;

const INSTRUCTIONS: &[&str] = &[
    "FROM",
    "RUN",
    "COPY",
    "ADD",
    "ENV",
    "ARG",
    "WORKDIR",
    "USER",
    "EXPOSE",
    "ENTRYPOINT",
    "CMD",
    "LABEL",
    "HEALTHCHECK",
    "VOLUME",
    "STOPSIGNAL",
    "SHELL",
];

/// The instructions of a Dockerfile: comments dropped, continuation lines joined.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(more) = trimmed.strip_suffix('\\') {
            current.push_str(more);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, rest) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        out.push((keyword.to_uppercase(), rest.trim().to_string()));
        current.clear();
    }
    assert!(current.is_empty(), "a continuation line ends the file");
    out
}

fn check(dockerfile: &Path, context: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dockerfile).unwrap();
    let all = instructions(&text);
    let mut stages: Vec<String> = Vec::new();
    let mut seen_from = false;
    for (keyword, rest) in &all {
        assert!(
            INSTRUCTIONS.contains(&keyword.as_str()),
            "{dockerfile:?}: unknown {keyword}"
        );
        if !seen_from {
            assert!(
                keyword == "FROM" || keyword == "ARG",
                "{dockerfile:?}: starts with {keyword}"
            );
        }
        match keyword.as_str() {
            "FROM" => {
                seen_from = true;
                let words: Vec<&str> = rest.split_whitespace().collect();
                if words.len() == 3 {
                    assert_eq!(words[1].to_uppercase(), "AS", "{rest}");
                    stages.push(words[2].to_string());
                }
            }
            "ENTRYPOINT" | "CMD" if rest.starts_with('[') => {
                let parsed: Vec<String> = serde_json::from_str(rest)
                    .unwrap_or_else(|e| panic!("{dockerfile:?}: {keyword} {rest}: {e}"));
                assert!(!parsed.is_empty());
            }
            "COPY" | "ADD" => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let from = words.iter().find_map(|w| w.strip_prefix("--from="));
                let paths: Vec<&str> = words
                    .iter()
                    .copied()
                    .filter(|w| !w.starts_with("--"))
                    .collect();
                assert!(paths.len() >= 2, "{dockerfile:?}: {keyword} {rest}");
                match from {
                    Some(stage) => assert!(stages.iter().any(|s| s == stage), "no stage {stage}"),
                    None => {
                        for source in &paths[..paths.len() - 1] {
                            assert!(
                                context.join(source).exists(),
                                "{dockerfile:?}: {source} is not in the build context {context:?}"
                            );
                        }
                    }
                }
            }
            _ => {}
        }
    }
    assert!(seen_from);
    all
}

#[test]
fn the_dockerfiles_are_valid_and_copy_only_what_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let service = check(&root.join("Dockerfile"), root);
    assert!(
        service
            .iter()
            .any(|(k, r)| k == "USER" && r != "root" && r != "0"),
        "non-root"
    );
    assert!(
        service
            .iter()
            .any(|(k, r)| k == "COPY" && r.contains("--from=build"))
    );

    let agent = check(&root.join("docker/agent.Dockerfile"), &root.join("docker"));
    assert!(agent.iter().any(|(k, r)| k == "USER" && r == "agent"));
    // The CLI the image installs is the one the tests run.
    let services = std::fs::read_to_string(root.join("scripts/services.sh")).unwrap();
    let tested = services
        .lines()
        .find_map(|l| l.strip_prefix("AMP_CLI_VERSION=\"${AMP_CLI_VERSION:-"))
        .and_then(|l| l.strip_suffix("}\""))
        .unwrap();
    assert!(
        agent
            .iter()
            .any(|(k, r)| k == "ARG" && *r == format!("AMP_CLI_VERSION={tested}")),
        "the agent image pins @ampcode/cli {tested}"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("app-manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["default_permissions"]["contents"], "write");
}

/// `fly.toml` agrees with the service: the port it routes to is the one the service listens on,
/// the health check is a route that answers 200, the release command is a subcommand of the
/// binary, and the machine gets time to drain before it is stopped.
#[tokio::test]
async fn fly_toml_matches_the_service() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("fly.toml")).unwrap();
    let fly: serde_json::Value = basic_toml::from_str(&text).unwrap();
    let env = &fly["env"];
    let port = env["PORT"].as_str().unwrap();
    assert_eq!(fly["http_service"]["internal_port"].to_string(), port);
    assert_eq!(fly["deploy"]["release_command"], "migrate");
    let config = amp_orchestrator::config::Config::from_lookup(|name| {
        env[name].as_str().map(str::to_string)
    })
    .expect("the [env] section is a valid configuration");
    let kill =
        amp_orchestrator::config::parse_duration(fly["kill_timeout"].as_str().unwrap()).unwrap();
    assert!(
        kill > config.drain_timeout + amp_orchestrator::worker::HAND_BACK_WAIT,
        "kill_timeout {kill:?} leaves no room for DRAIN_TIMEOUT {:?} and the hand-back",
        config.drain_timeout
    );
    assert!(
        fly["mounts"][0]["destination"]
            .as_str()
            .is_some_and(|d| { config.database_url.contains(d) })
    );

    // `migrate` is a subcommand of the binary (it exits 0 on a fresh database).
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_amp-orchestrator"))
        .arg("migrate")
        .current_dir(dir.path())
        .env_clear()
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/db.sqlite", dir.path().display()),
        )
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );

    // The health check's path answers 200 on the real router.
    let db = dir.path().join("serve.sqlite");
    let service_config = amp_orchestrator::config::Config::from_lookup(|name| match name {
        "DATABASE_URL" => Some(format!("sqlite://{}", db.display())),
        "MAX_CONCURRENT_TASKS" => Some("0".into()),
        _ => None,
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = amp_orchestrator::app::start_with(
        service_config,
        listener,
        amp_orchestrator::context::Tunables::default(),
    )
    .await
    .unwrap();
    for check in fly["http_service"]["checks"].as_array().unwrap() {
        let path = check["path"].as_str().unwrap();
        let url = format!("http://{}{path}", running.addr);
        let response = reqwest::get(&url).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    running.shutdown().await.unwrap();
}
