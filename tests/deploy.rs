//! The deploy files: no registry can be reached here to build the images, so their Dockerfiles
//! are checked instead: known instructions, stages that exist, JSON forms that parse, every file
//! they copy present in the build context, and the agent image's Amp CLI pinned to the version
//! the tests run.

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
