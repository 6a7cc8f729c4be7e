//! `GET /metrics`: Prometheus text that parses, with counters that move with a task's traffic.

mod common;

use std::collections::HashMap;

use amp_orchestrator::entities::delivery;
use common::story::story_with;
use common::{TestDb, eventually};
use sea_orm::{ActiveModelTrait, Set};

/// Parse Prometheus' text format strictly enough to catch a malformed line: every sample is
/// `name{label="value",…} number`, and every family has `# HELP` and `# TYPE` first.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    let mut typed = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let name = parts.next().unwrap().to_string();
            let kind = parts.next().unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.push(name);
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        if let Some(labels) = series.strip_prefix(name)
            && !labels.is_empty()
        {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .unwrap_or_else(|| panic!("{line}"));
            for pair in inner.split("\",") {
                let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                assert!(
                    k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{line}"
                );
                assert!(!v.trim_end_matches('"').contains('"'), "{line}");
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| typed.iter().any(|t| t == f))
            })
            .unwrap_or(name);
        assert!(typed.iter().any(|t| t == family), "no # TYPE for {name}");
        samples.insert(series.to_string(), value);
    }
    samples
}

both_backends!(
    metrics_parse_and_move_with_the_traffic,
    |db: TestDb| async move {
        let s = story_with(db, &[], &[("README.md", "# widgets\n")]).await;
        let scrape = || async {
            let r = reqwest::get(s.service.url("/metrics")).await.unwrap();
            assert_eq!(r.status(), 200);
            assert!(
                r.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/plain; version=0.0.4")
            );
            parse(&r.text().await.unwrap())
        };
        let before = scrape().await;
        let get = |m: &HashMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
        assert_eq!(get(&before, "amp_tasks{state=\"succeeded\"}"), 0.0);

        // The store's figures are read once for a burst of scrapes: a delivery stored just after
        // is not counted until they are read again.
        let pinged = "amp_deliveries_total{event=\"ping\",outcome=\"done\"}";
        delivery::ActiveModel {
            delivery_id: Set("counted-later".into()),
            event: Set("ping".into()),
            status: Set("done".into()),
            attempts: Set(1),
            received_at: Set(amp_orchestrator::db::now_ms()),
            ..Default::default()
        }
        .insert(&s.conn)
        .await
        .unwrap();
        for _ in 0..20 {
            assert_eq!(get(&scrape().await, pinged), get(&before, pinged));
        }

        s.sim
            .comment(&s.repo, 71, "writer", "/amp explain the readme")
            .await;
        s.wait_for_state("succeeded", 90).await;
        let after = eventually(15, "the store's figures are read again", || async {
            let now = scrape().await;
            (get(&now, pinged) > get(&before, pinged)).then_some(now)
        })
        .await;
        let delivered = "amp_deliveries_total{event=\"issue_comment\",outcome=\"done\"}";
        assert_eq!(get(&after, delivered), get(&before, delivered) + 1.0);
        assert_eq!(get(&after, "amp_tasks{state=\"succeeded\"}"), 1.0);
        assert_eq!(get(&after, "amp_queue_depth{queue=\"tasks\"}"), 0.0);
        for grew in [
            "amp_github_calls_total{result=\"ok\"}",
            "amp_intake_seconds_count",
            "amp_agent_start_seconds_count",
        ] {
            assert!(
                get(&after, grew) > get(&before, grew),
                "{grew} did not grow"
            );
        }
        assert!(get(&after, "amp_github_rate_limit_remaining") >= -1.0);
    }
);
