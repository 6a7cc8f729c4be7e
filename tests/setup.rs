//! First run without an App: the manifest flow, end to end, against the GitHub simulator and the
//! real binary (so what it prints can be checked for the credentials).

mod common;

const ADMIN: &str = "admin-token-for-setup-0123";

use common::github_sim::{APP_SLUG, GitHubSim, app_private_key};
use common::process::{ServiceProcess, free_port};
use common::{TestDb, eventually};

/// `GET url` (as the admin when `admin`): its status and body.
async fn get(http: &reqwest::Client, url: String, admin: bool) -> (u16, String) {
    let mut request = http.get(url);
    if admin {
        request = request.basic_auth("admin", Some(ADMIN));
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Undo askama's HTML escaping of an attribute value.
fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&#60;", "<")
        .replace("&gt;", ">")
        .replace("&#62;", ">")
        .replace("&amp;", "&")
        .replace("&#38;", "&")
}

/// The value of the first `attr="…"` after `marker` in `html`.
fn attribute_after(html: &str, marker: &str, attr: &str) -> String {
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {html}"));
    let rest = &html[start..];
    let open = format!("{attr}=\"");
    let from = rest.find(&open).unwrap() + open.len();
    let len = rest[from..].find('"').unwrap();
    unescape(&rest[from..from + len])
}

both_backends!(
    manifest_flow_registers_the_app_without_a_restart,
    |db: TestDb| async move {
        let sim = GitHubSim::start("not-known-before-setup").await;
        let repo = sim.add_repo("octo-org/widgets", 77, &[("octocat", "write")]);
        let port = free_port();
        let public = format!("http://127.0.0.1:{port}");
        let env = vec![
            ("DATABASE_URL".to_string(), db.url.clone()),
            ("GITHUB_API_URL".to_string(), sim.api_url()),
            ("PUBLIC_URL".to_string(), public.clone()),
            ("LOG_LEVEL".to_string(), "debug".to_string()),
            ("ADMIN_TOKEN".to_string(), ADMIN.to_string()),
        ];
        let mut service = ServiceProcess::start_on(port, &env).await;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();

        // Without an App nothing can be verified: webhooks are refused, with a reason.
        let body = serde_json::to_vec(&common::fixtures::issue_comment(
            "created",
            "/amp help",
            Some(1),
        ))
        .unwrap();
        let refused = http
            .post(service.url("/api/github/webhooks"))
            .header("x-github-event", "issue_comment")
            .header("x-github-delivery", "before-setup-1")
            .header(
                "x-hub-signature-256",
                amp_orchestrator::webhook::signature::sign("guess", &body),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 503);
        assert!(refused.text().await.unwrap().contains("no GitHub App yet"));

        // The setup page is the operator's: without the admin token, nothing to see.
        let (status, anonymous) = get(&http, service.url("/"), false).await;
        assert_eq!(status, 401);
        assert!(!anonymous.contains("manifest"));

        // The home page is the setup page: a form that posts the manifest to GitHub.
        let response = http
            .get(service.url("/"))
            .basic_auth("admin", Some(ADMIN))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let csp = response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.contains(&format!("form-action 'self' {}", sim.api_url())),
            "{csp}"
        );
        let page = response.text().await.unwrap();
        assert!(page.contains("Register GitHub App"), "{page}");
        let action = attribute_after(&page, "method=\"post\"", "action");
        assert!(
            action.starts_with(&format!("{}/settings/apps/new?state=", sim.api_url())),
            "{action}"
        );
        let manifest = attribute_after(&page, "name=\"manifest\"", "value");
        let parsed: serde_json::Value = serde_json::from_str(&manifest).unwrap();
        assert_eq!(
            parsed["hook_attributes"]["url"],
            format!("{public}/api/github/webhooks")
        );
        assert_eq!(parsed["redirect_url"], format!("{public}/setup/callback"));

        // For an organization, the form posts to the organization's page instead.
        let (_, org_page) = get(&http, service.url("/setup?organization=octo-org"), true).await;
        let org_action = attribute_after(&org_page, "method=\"post\"", "action");
        assert!(
            org_action.starts_with(&format!(
                "{}/organizations/octo-org/settings/apps/new?state=",
                sim.api_url()
            )),
            "{org_action}"
        );

        // A callback that did not start on this deployment's page is refused.
        let forged = http
            .get(service.url("/setup/callback?code=abc&state=not-ours"))
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 400);
        let incomplete = http
            .get(service.url("/setup/callback?state=not-ours"))
            .send()
            .await
            .unwrap();
        assert_eq!(incomplete.status(), 400);
        assert!(
            incomplete
                .text()
                .await
                .unwrap()
                .contains("missing its code")
        );
        // A code GitHub does not know (expired, or used): a clear answer, still in setup.
        let state = org_action.split("state=").nth(1).unwrap();
        let unknown = http
            .get(service.url(&format!(
                "/setup/callback?code=0123456789abcdef&state={state}"
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), 502);
        assert!(
            unknown
                .text()
                .await
                .unwrap()
                .contains("GitHub did not hand over the new App's credentials")
        );
        assert_eq!(sim.state.lock().unwrap().manifest_conversions, 0);
        // An organization name that cannot be one is said so; the form stays the account's.
        let (_, bad_org) = get(&http, service.url("/setup?organization=octo%2Forg"), true).await;
        assert!(bad_org.contains("is not an organization name"), "{bad_org}");
        assert!(
            attribute_after(&bad_org, "method=\"post\"", "action")
                .starts_with(&format!("{}/settings/apps/new?state=", sim.api_url()))
        );

        // GitHub creates the App and sends the browser back with a code.
        let created = http
            .post(&action)
            .form(&[("manifest", manifest.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 302);
        let location = created.headers()["location"].to_str().unwrap().to_string();
        let code = location
            .split("code=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .to_string();
        assert!(
            location.starts_with(&format!("{public}/setup/callback?code=")),
            "{location}"
        );
        let done = http.get(&location).send().await.unwrap();
        assert_eq!(done.status(), 200);
        let done = done.text().await.unwrap();
        let install = format!("{}/apps/{APP_SLUG}/installations/new", sim.api_url());
        assert!(done.contains(&install), "{done}");
        assert_eq!(sim.state.lock().unwrap().manifest_conversions, 1);

        // Reloading the page shows it again without using the code twice.
        let again = http
            .get(&location)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(again.contains(&install));
        assert_eq!(sim.state.lock().unwrap().manifest_conversions, 1);

        // Stored, and the service is in normal mode now: no more setup pages.
        let store = db.connect().await;
        let stored = amp_orchestrator::store::github_app::current(&store)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.app_id, common::github_sim::APP_ID as i64);
        assert_eq!(
            stored.webhook_secret,
            sim.state.lock().unwrap().webhook_secret
        );
        let (_, home) = get(&http, service.url("/"), false).await;
        assert!(home.contains("<code>/amp help</code>"), "{home}");
        assert_eq!(get(&http, service.url("/setup"), true).await.0, 404);

        // A webhook signed with the new secret is accepted and answered as the new App.
        sim.comment(&repo, 5, "octocat", "/amp help").await;
        eventually(20, "a reply from the registered App", || async {
            sim.app_comments(&repo, 5)
                .iter()
                .any(|c| c.body.contains("/amp help"))
                .then_some(())
        })
        .await;
        assert!(sim.hook_deliveries().iter().all(|d| d.status_code == 202));

        // After a restart the stored App is used at once.
        service.signal(nix::sys::signal::Signal::SIGTERM);
        assert_eq!(service.wait_exit(30).await, Some(0));
        let first_output = service.output();
        let service = ServiceProcess::start_on(port, &env).await;
        let (_, home) = get(&http, service.url("/"), false).await;
        assert!(home.contains("<code>/amp help</code>"), "{home}");
        sim.comment(&repo, 6, "octocat", "/amp help").await;
        eventually(20, "a reply after the restart", || async {
            (!sim.app_comments(&repo, 6).is_empty()).then_some(())
        })
        .await;

        // The credentials never appear in what the service printed (at debug level).
        let secret = sim.state.lock().unwrap().webhook_secret.clone();
        let key_line = app_private_key().lines().nth(1).unwrap().to_string();
        for output in [first_output, service.output()] {
            assert!(
                !output.contains(&secret),
                "the webhook secret was printed:\n{output}"
            );
            assert!(
                !output.contains(&key_line),
                "the private key was printed:\n{output}"
            );
            assert!(
                !output.contains(&stored.client_secret),
                "the client secret was printed"
            );
            assert!(!output.contains(&code), "the one-time code was printed");
        }
    }
);

/// Without `ADMIN_TOKEN`, setup mode only says how to go on: no form, nothing anyone could use
/// to register an App for this deployment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_needs_the_admin_token() {
    let db = TestDb::new(common::Backend::Sqlite).await;
    let mut env = common::service::test_env(&db);
    env.remove("WEBHOOK_SECRET");
    let service = common::TestService::start_with(env).await;
    let page = service
        .http
        .get(service.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Set <code>ADMIN_TOKEN</code>"), "{page}");
    assert!(!page.contains("name=\"manifest\""), "{page}");
    let store = db.connect().await;
    use sea_orm::{EntityTrait, PaginatorTrait};
    assert_eq!(
        amp_orchestrator::entities::setup_state::Entity::find()
            .count(&store)
            .await
            .unwrap(),
        0
    );
}

both_backends!(one_app_per_deployment, |db: TestDb| async move {
    let store = db.connect().await;
    let key = amp_orchestrator::sealed::SecretKey::generate();
    let app = |app_id: i64, slug: &str| amp_orchestrator::entities::github_app::Model {
        slot: 1,
        app_id,
        slug: slug.into(),
        name: slug.into(),
        owner_login: "octo-org".into(),
        html_url: format!("https://github.com/apps/{slug}"),
        client_id: "Iv1.x".into(),
        client_secret: "s".into(),
        webhook_secret: "w".into(),
        private_key: "k".into(),
        created_at: 1,
    };
    let first = amp_orchestrator::store::github_app::save(&store, app(1, "first"), &key)
        .await
        .unwrap();
    assert_eq!(first.app_id, 1);
    // A registration that finishes second gets the first one back.
    let second = amp_orchestrator::store::github_app::save(&store, app(2, "second"), &key)
        .await
        .unwrap();
    assert_eq!(second.app_id, 1);
    assert_eq!(second.slug, "first");
});
