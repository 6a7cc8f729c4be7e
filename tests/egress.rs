//! The agent's sandbox end to end: the real service and worker, the real Docker engine, the
//! egress gateway built from this binary, the stub agent (and the real Amp CLI), and servers the
//! test runs itself on a Docker network it makes for the gateway's way out. Nothing here sends
//! traffic anywhere else.

mod common;

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::{Arc, Mutex};

use amp_orchestrator::domain::BlockedEgress;
use amp_orchestrator::entities::task;
use common::story::{Story, exec_in_agent_container, story_with};
use common::{TestDb, eventually};
use sea_orm::EntityTrait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const AMP_KEY: &str = "sgamp_real_key_never_in_the_container_0123";

/// A bridge network the test makes for the gateway's way out, removed when dropped.
struct EgressNetwork {
    name: String,
    subnet: String,
    /// The host's address on it, where the test's servers listen.
    host: Ipv4Addr,
}

impl EgressNetwork {
    fn create() -> EgressNetwork {
        let name = format!("amp-test-egress-{:08x}", rand::random::<u32>());
        let created = Command::new("docker")
            .args([
                "network",
                "create",
                "--label",
                "io.amp-orchestrator.test=egress",
                &name,
            ])
            .output()
            .unwrap();
        assert!(created.status.success(), "{created:?}");
        let inspect = Command::new("docker")
            .args([
                "network",
                "inspect",
                &name,
                "-f",
                "{{(index .IPAM.Config 0).Subnet}} {{(index .IPAM.Config 0).Gateway}}",
            ])
            .output()
            .unwrap();
        let out = String::from_utf8(inspect.stdout).unwrap();
        let (subnet, host) = out.trim().split_once(' ').expect("subnet and gateway");
        EgressNetwork {
            subnet: subnet.to_string(),
            host: host.parse().unwrap(),
            name,
        }
    }
}

impl Drop for EgressNetwork {
    fn drop(&mut self) {
        // The gateway (removed with the test's database) may still be attached.
        let attached = Command::new("docker")
            .args([
                "network",
                "inspect",
                &self.name,
                "-f",
                "{{range .Containers}}{{.Name}} {{end}}",
            ])
            .output();
        if let Ok(out) = attached {
            for container in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("docker")
                    .args(["network", "disconnect", "-f", &self.name, container])
                    .output();
            }
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &self.name])
            .output();
    }
}

/// A server that answers every request with `200 hello` and keeps each request's head.
#[derive(Clone)]
struct Recorder {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    async fn start(ip: Ipv4Addr, status: &'static str, body: &'static str) -> Recorder {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let kept = heads.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let kept = kept.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    kept.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&head).into_owned());
                    let answer = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        Recorder { port, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

both_backends!(
    the_agent_reaches_allowed_hosts_through_the_gateway_and_nothing_else,
    |db: TestDb| async move {
        let net = EgressNetwork::create();
        let allowed = Recorder::start(net.host, "200 OK", "hello").await;
        let denied = Recorder::start(net.host, "200 OK", "should never be read").await;
        // Stands in for what listens on the Docker host: the engine's API, this service.
        let host_service = Recorder::start(net.host, "200 OK", "host service").await;
        let host = net.host;
        // What the agent tries: an allowed host and a host not on the list through the proxy
        // (git uses the proxy the environment names), then the host directly (no proxy).
        let probe = format!(
            "env > /tmp/agent-env\n\
             git -c http.connectTimeout=3 ls-remote http://allowed.test:{a}/r.git > /tmp/allowed.out 2>&1\n\
             git -c http.connectTimeout=3 ls-remote http://denied.test:{d}/r.git > /tmp/denied.out 2>&1\n\
             git -c http.connectTimeout=3 ls-remote https://denied.test:{d}/r.git >> /tmp/denied.out 2>&1\n\
             env -u http_proxy -u HTTP_PROXY git -c http.connectTimeout=3 \
               ls-remote http://{host}:{h}/r.git > /tmp/direct.out 2>&1\n\
             echo probed > PROBED\n",
            a = allowed.port,
            d = denied.port,
            h = host_service.port,
        );
        let allow = format!("allowed.test:{}", allowed.port);
        let hosts = format!("allowed.test={host},denied.test={host}");
        let s: Story = story_with(
            db,
            &[
                ("AMP_API_KEY", AMP_KEY),
                ("GATEWAY_NETWORK", net.name.as_str()),
                ("AGENT_EGRESS_ALLOW", allow.as_str()),
                ("AGENT_EGRESS_HOSTS", hosts.as_str()),
                ("AGENT_EGRESS_ALLOW_NETWORKS", net.subnet.as_str()),
            ],
            &[("README.md", "# widgets\n"), (".amp-stub/probe.sh", &probe)],
        )
        .await;
        s.sim.comment(&s.repo, 51, "writer", "/amp probe").await;
        let task = s.wait_for_state("awaiting_ci", 120).await;

        // The allowed host answered through the proxy, which kept its credentials to itself.
        let heads = allowed.heads();
        assert!(!heads.is_empty(), "the allowed server saw nothing");
        assert!(heads[0].starts_with("GET /r.git/info/refs"), "{heads:?}");
        assert!(
            heads
                .iter()
                .all(|h| !h.to_ascii_lowercase().contains("proxy-authorization")),
            "{heads:?}"
        );
        // The other host never saw a byte; the agent read why.
        assert!(denied.heads().is_empty(), "{:?}", denied.heads());
        let denied_out = exec_in_agent_container(&task, "cat /tmp/denied.out", &[]).await;
        assert!(denied_out.contains("403"), "{denied_out}");
        // Nothing on the host is reachable directly.
        assert!(host_service.heads().is_empty());
        let direct = exec_in_agent_container(&task, "cat /tmp/direct.out", &[]).await;
        assert!(
            direct.contains("Failed to connect") || direct.contains("Could not resolve"),
            "{direct}"
        );

        // The agent held a credential bound to its task and address, never the key; no file
        // or process in its container holds the key either.
        let env = exec_in_agent_container(&task, "cat /tmp/agent-env", &[]).await;
        let amp_key = env
            .lines()
            .find_map(|l| l.strip_prefix("AMP_API_KEY="))
            .expect("the agent has an AMP_API_KEY");
        assert!(amp_key.starts_with("amp-sbx."), "{amp_key}");
        assert!(!env.contains(AMP_KEY));
        assert!(env.contains("AMP_URL=http://amp-gateway:3128"), "{env}");
        // (A pattern that does not match its own text, so the search does not find itself in
        // its command line.)
        let pattern = AMP_KEY.replacen("never", "neve[r]", 1);
        let found = exec_in_agent_container(
            &task,
            &format!(
                "grep -rlsE '{pattern}' / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev; \
                 cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr '\\000' '\\n' \
                   | grep -E '{pattern}'; true"
            ),
            &[],
        )
        .await;
        assert_eq!(
            found.trim(),
            "",
            "the Amp key is readable in the agent's container"
        );

        // What the gateway refused is on the task, its page and its status comment.
        let blocked = eventually(20, "the refusals are recorded", || async {
            let t = task::Entity::find_by_id(task.id)
                .one(&s.conn)
                .await
                .unwrap()
                .unwrap();
            let blocked = BlockedEgress::from_stored(t.egress_blocked.as_deref());
            (!blocked.is_empty()).then_some(blocked)
        })
        .await;
        assert!(
            blocked
                .iter()
                .any(|b| b.host == "denied.test" && b.port == denied.port && b.count >= 2),
            "{blocked:?}"
        );
        assert!(
            blocked.iter().all(|b| b.host != "allowed.test"),
            "{blocked:?}"
        );
        let page = s
            .service
            .http
            .get(s.service.url(&format!("/tasks/{}", task.public_id)))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("Blocked by the sandbox"), "{page}");
        assert!(
            page.contains(&format!("to denied.test:{}", denied.port)),
            "{page}"
        );
        s.status_saying(51, &format!("to `denied.test:{}`", denied.port))
            .await;

        s.sim.comment(&s.repo, 51, "writer", "/amp stop").await;
        let task = s.wait_for_state("cancelled", 30).await;
        s.assert_no_containers_for(&task).await;
    }
);

both_backends!(
    the_real_amp_cli_talks_to_the_relay_which_holds_the_key,
    |db: TestDb| async move {
        // The real CLI in the sandbox, with the relay as its Amp server; a server standing in
        // for the Amp service refuses every key, so the CLI stops after its first request.
        let image = std::env::var("TEST_REAL_AMP_IMAGE")
            .expect("TEST_REAL_AMP_IMAGE is not set: run ./scripts/test.sh, which builds it");
        let net = EgressNetwork::create();
        let amp =
            Recorder::start(net.host, "401 Unauthorized", r#"{"error":"unauthorized"}"#).await;
        let amp_url = format!("http://{}:{}", net.host, amp.port);
        let s = story_with(
            db,
            &[
                ("AGENT_IMAGE", image.as_str()),
                ("AMP_API_KEY", AMP_KEY),
                ("AMP_URL", amp_url.as_str()),
                ("GATEWAY_NETWORK", net.name.as_str()),
                ("AGENT_IDLE_TIMEOUT", "60s"),
            ],
            &[("README.md", "# widgets\n")],
        )
        .await;
        s.sim
            .comment(&s.repo, 52, "writer", "/amp add a json flag")
            .await;
        let task = s.wait_for_state("failed", 90).await;
        let reason = task.error_message.clone().unwrap();
        assert!(reason.contains("Invalid or missing API key"), "{reason}");
        // The Amp service saw the real key, from the relay, and never the task's credential.
        let heads = amp.heads();
        assert!(!heads.is_empty(), "the Amp service saw nothing");
        for head in &heads {
            let auth = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .starts_with("authorization:")
                        .then(|| l["authorization:".len()..].trim().to_string())
                })
                .unwrap_or_default();
            assert_eq!(auth, format!("Bearer {AMP_KEY}"), "{head}");
            assert!(!head.contains("amp-sbx."), "{head}");
        }
        assert!(
            heads[0].starts_with("POST /api/internal?getUserInfo"),
            "{heads:?}"
        );
        s.assert_no_containers_for(&task).await;
    }
);

both_backends!(
    with_egress_none_the_agent_has_the_relay_and_no_proxy,
    |db: TestDb| async move {
        let net = EgressNetwork::create();
        let server = Recorder::start(net.host, "200 OK", "hello").await;
        let host = net.host;
        // Even when told the gateway's address as a proxy, the agent gets nowhere.
        let probe = format!(
            "env > /tmp/agent-env\n\
             git -c http.connectTimeout=3 -c \"http.proxy=http://amp:$AMP_API_KEY@amp-gateway:3128\" \
               ls-remote http://mirror.test:{p}/r.git > /tmp/proxied.out 2>&1\n\
             echo probed > PROBED\n",
            p = server.port,
        );
        let allow = format!("mirror.test:{}", server.port);
        let hosts = format!("mirror.test={host}");
        let s: Story = story_with(
            db,
            &[
                ("AMP_API_KEY", AMP_KEY),
                ("AGENT_EGRESS", "none"),
                ("GATEWAY_NETWORK", net.name.as_str()),
                ("AGENT_EGRESS_ALLOW", allow.as_str()),
                ("AGENT_EGRESS_HOSTS", hosts.as_str()),
                ("AGENT_EGRESS_ALLOW_NETWORKS", net.subnet.as_str()),
            ],
            &[("README.md", "# widgets\n"), (".amp-stub/probe.sh", &probe)],
        )
        .await;
        s.sim.comment(&s.repo, 53, "writer", "/amp probe").await;
        let task = s.wait_for_state("awaiting_ci", 120).await;
        let env = exec_in_agent_container(&task, "cat /tmp/agent-env", &[]).await;
        assert!(env.contains("AMP_URL=http://amp-gateway:3128"), "{env}");
        assert!(!env.to_ascii_lowercase().contains("_proxy=http"), "{env}");
        let proxied = exec_in_agent_container(&task, "cat /tmp/proxied.out", &[]).await;
        assert!(proxied.contains("403"), "{proxied}");
        assert!(server.heads().is_empty(), "{:?}", server.heads());
        s.sim.comment(&s.repo, 53, "writer", "/amp stop").await;
        s.wait_for_state("cancelled", 30).await;
    }
);
