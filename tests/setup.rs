//! First run without an App: the manifest flow, end to end, against the GitHub simulator and the
//! real binary (so what it prints can be checked for the credentials).

mod common;

const ADMIN: &str = "admin-token-for-setup-0123";

use amp_orchestrator::entities::github_app;
use amp_orchestrator::sealed::{Keyring, SecretKey};
use common::github_sim::{APP_SLUG, GitHubSim, app_private_key};
use common::process::{ServiceProcess, free_port};
use common::{TestDb, eventually};
use nix::sys::signal::Signal;
use secrecy::ExposeSecret;

/// A new `SECRET_KEY` value (base64) and its key id.
fn new_secret_key() -> (String, String) {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    let id = SecretKey::parse(&text).unwrap().id().to_string();
    (text, id)
}

fn keyring(current: &str, previous: &[&str]) -> Keyring {
    Keyring {
        current: Some(SecretKey::parse(current).unwrap()),
        previous: previous
            .iter()
            .map(|k| SecretKey::parse(k).unwrap())
            .collect(),
    }
}

/// `env` with `overrides` in place of the variables of the same names.
fn with(env: &[(String, String)], overrides: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = env
        .iter()
        .filter(|(name, _)| !overrides.iter().any(|(n, _)| n == name))
        .cloned()
        .collect();
    env.extend(
        overrides
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string())),
    );
    env
}

/// What GitHub handed over for the App: the private key's body lines, the webhook secret and
/// the client secret.
fn issued_credentials(sim: &GitHubSim) -> Vec<String> {
    let state = sim.state.lock().unwrap();
    let mut issued: Vec<String> = app_private_key()
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with("-----") && line.len() >= 16)
        .map(str::to_string)
        .collect();
    assert!(issued.len() > 10, "the test key has a body");
    issued.push(state.webhook_secret.clone());
    issued.push(state.client_secret.clone());
    issued
}

/// The stored App's credentials as they are in the database: sealed with the key `key_id`, and
/// none of what GitHub handed over in them.
fn assert_sealed(stored: &github_app::Model, key_id: &str, issued: &[String]) {
    for (column, value) in [
        ("private_key", &stored.private_key),
        ("webhook_secret", &stored.webhook_secret),
        ("client_secret", &stored.client_secret),
    ] {
        assert!(
            value.starts_with(&format!("enc:v1:{key_id}:")),
            "{column} is not sealed with key {key_id}: {value}"
        );
        for secret in issued {
            assert!(
                !value.contains(secret.as_str()),
                "{column} holds a credential"
            );
        }
    }
}

/// On SQLite, none of `issued` is anywhere in the database file or its write-ahead log.
fn assert_not_in_files(db: &TestDb, issued: &[String]) {
    let Some(path) = amp_orchestrator::config::sqlite_path(&db.url) else {
        return;
    };
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend(std::fs::read(sibling(&path, "-wal")).unwrap_or_default());
    assert!(bytes.len() > 4096, "the database was read");
    for secret in issued {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "a credential is in the database file"
        );
    }
}

fn sibling(path: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

/// On SQLite, the database and its `-wal` and `-shm` files are its owner's only.
fn assert_owner_only(db: &TestDb) {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = amp_orchestrator::config::sqlite_path(&db.url) else {
        return;
    };
    for file in [path.clone(), sibling(&path, "-wal"), sibling(&path, "-shm")] {
        let mode = std::fs::metadata(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }
}

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
        let (key, key_id) = new_secret_key();
        let env = vec![
            ("SECRET_KEY".to_string(), key.clone()),
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
        // Reloading the page hands out the same state: a thousand reloads keep one row.
        let state_of = |action: &str| action.split("state=").nth(1).unwrap().to_string();
        for _ in 0..5 {
            let (_, again) = get(&http, service.url("/setup"), true).await;
            let again = attribute_after(&again, "method=\"post\"", "action");
            assert_eq!(state_of(&again), state_of(&action));
        }
        {
            use sea_orm::{EntityTrait, PaginatorTrait};
            let store = db.connect().await;
            assert_eq!(
                amp_orchestrator::entities::setup_state::Entity::find()
                    .count(&store)
                    .await
                    .unwrap(),
                1
            );
        }

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

        // GitHub creates the App and sends the browser back with a code. (The state that came
        // back with the unknown code is used up: the page hands out a new one.)
        let (_, page) = get(&http, service.url("/setup"), true).await;
        let action = attribute_after(&page, "method=\"post\"", "action");
        assert_ne!(state_of(&action), state);
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

        // The database is its owner's only (checked before the test opens it itself).
        assert_owner_only(&db);
        // Stored encrypted with SECRET_KEY, and the service is in normal mode now: no more
        // setup pages.
        let store = db.connect().await;
        let stored = amp_orchestrator::store::github_app::current(&store)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.app_id, common::github_sim::APP_ID as i64);
        let issued = issued_credentials(&sim);
        assert_sealed(&stored, &key_id, &issued);
        assert_not_in_files(&db, &issued);
        let opened =
            amp_orchestrator::store::github_app::credentials(&stored, &keyring(&key, &[])).unwrap();
        assert_eq!(
            opened.webhook_secret.expose_secret(),
            sim.state.lock().unwrap().webhook_secret
        );
        assert_eq!(
            opened.client_secret.expose_secret(),
            sim.state.lock().unwrap().client_secret
        );
        assert_eq!(
            opened.private_key.expose_secret().trim(),
            app_private_key().trim()
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

        // After a restart with the same key the stored App is used at once.
        service.signal(Signal::SIGTERM);
        assert_eq!(service.wait_exit(30).await, Some(0));
        let first_output = service.output();
        let mut service = ServiceProcess::start_on(port, &env).await;
        let (_, home) = get(&http, service.url("/"), false).await;
        assert!(home.contains("<code>/amp help</code>"), "{home}");
        sim.comment(&repo, 6, "octocat", "/amp help").await;
        eventually(20, "a reply after the restart", || async {
            (!sim.app_comments(&repo, 6).is_empty()).then_some(())
        })
        .await;
        assert_eq!(sim.hook_deliveries().last().unwrap().status_code, 202);

        // With another SECRET_KEY the credentials do not decrypt: the service says why and does
        // not act as the App; its webhooks are refused (GitHub keeps them as failed deliveries).
        service.signal(Signal::SIGTERM);
        assert_eq!(service.wait_exit(30).await, Some(0));
        let second_output = service.output();
        let (new_key, new_key_id) = new_secret_key();
        let mut service =
            ServiceProcess::start_on(port, &with(&env, &[("SECRET_KEY", &new_key)])).await;
        let output = service.output();
        assert!(
            output.contains("credentials are unusable"),
            "no word of the unusable credentials:\n{output}"
        );
        assert!(output.contains(&key_id), "{output}");
        assert!(output.contains("SECRET_KEY_PREVIOUS"), "{output}");
        sim.comment(&repo, 7, "octocat", "/amp help").await;
        assert_eq!(sim.hook_deliveries().last().unwrap().status_code, 503);
        // The setup page says so instead of offering another registration, and a callback is
        // refused without the code being exchanged.
        let (_, page) = get(&http, service.url("/"), true).await;
        assert!(page.contains("its credentials cannot be"), "{page}");
        assert!(page.contains(&key_id), "{page}");
        assert!(!page.contains("name=\"manifest\""), "{page}");
        let refused = http
            .get(service.url(&format!("/setup/callback?code={code}&state={state}")))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 409);
        assert_eq!(sim.state.lock().unwrap().manifest_conversions, 1);
        let still = amp_orchestrator::store::github_app::current(&store)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(still, stored, "the stored App is left as it was");

        // The new key as SECRET_KEY and the old one in SECRET_KEY_PREVIOUS: the App works again,
        // and its credentials are sealed with the new key at start.
        service.signal(Signal::SIGTERM);
        assert_eq!(service.wait_exit(30).await, Some(0));
        let wrong_key_output = service.output();
        let rotating = with(
            &env,
            &[("SECRET_KEY", &new_key), ("SECRET_KEY_PREVIOUS", &key)],
        );
        let service = ServiceProcess::start_on(port, &rotating).await;
        let resealed = amp_orchestrator::store::github_app::current(&store)
            .await
            .unwrap()
            .unwrap();
        assert_sealed(&resealed, &new_key_id, &issued);
        assert_not_in_files(&db, &issued);
        assert_owner_only(&db);
        let opened =
            amp_orchestrator::store::github_app::credentials(&resealed, &keyring(&new_key, &[]))
                .unwrap();
        assert_eq!(
            opened.webhook_secret.expose_secret(),
            sim.state.lock().unwrap().webhook_secret
        );
        sim.comment(&repo, 8, "octocat", "/amp help").await;
        eventually(20, "a reply after the rotation", || async {
            (!sim.app_comments(&repo, 8).is_empty()).then_some(())
        })
        .await;
        // The webhook refused meanwhile is asked for again at start, and answered.
        eventually(
            20,
            "a reply to the webhook refused with the wrong key",
            || async { (!sim.app_comments(&repo, 7).is_empty()).then_some(()) },
        )
        .await;

        // The credentials and the keys never appear in what the service printed (at debug
        // level).
        let secret = sim.state.lock().unwrap().webhook_secret.clone();
        let client_secret = sim.state.lock().unwrap().client_secret.clone();
        let key_line = app_private_key().lines().nth(1).unwrap().to_string();
        for output in [
            first_output,
            second_output,
            wrong_key_output,
            service.output(),
        ] {
            assert!(
                !output.contains(&secret),
                "the webhook secret was printed:\n{output}"
            );
            assert!(
                !output.contains(&key_line),
                "the private key was printed:\n{output}"
            );
            assert!(
                !output.contains(&client_secret),
                "the client secret was printed"
            );
            assert!(!output.contains(&code), "the one-time code was printed");
            assert!(
                !output.contains(&key) && !output.contains(&new_key),
                "a SECRET_KEY was printed"
            );
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

// Without `SECRET_KEY` nothing could be stored encrypted: the setup page says what to set and
// offers no registration, and a registration that comes back anyway is refused before GitHub's
// one-time code is exchanged, so the credentials are not fetched only to be lost. Once the key
// is set, reloading the same page (within the hour the code lasts) registers the App.
both_backends!(registration_needs_the_secret_key, |db: TestDb| async move {
    let sim = GitHubSim::start("not-known-before-setup").await;
    let mut env = common::service::test_env(&db);
    env.remove("WEBHOOK_SECRET");
    env.insert("GITHUB_API_URL".into(), sim.api_url());
    env.insert("ADMIN_TOKEN".into(), ADMIN.into());
    let mut service = common::TestService::start_with(env.clone()).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let (status, page) = get(&http, service.url("/"), true).await;
    assert_eq!(status, 200);
    assert!(page.contains("Set <code>SECRET_KEY</code>"), "{page}");
    assert!(page.contains("openssl rand -base64 32"), "{page}");
    assert!(!page.contains("name=\"manifest\""), "{page}");
    assert!(!page.contains("Register GitHub App"), "{page}");
    let store = db.connect().await;
    use sea_orm::{EntityTrait, PaginatorTrait};
    assert_eq!(
        amp_orchestrator::entities::setup_state::Entity::find()
            .count(&store)
            .await
            .unwrap(),
        0,
        "no state is handed out"
    );

    // A registration started on a page served before (with a key since removed, say).
    let state = "0123456789abcdef0123456789abcdef";
    amp_orchestrator::store::github_app::issue_state(&store, state)
        .await
        .unwrap();
    let manifest = amp_orchestrator::pages::setup::manifest(&service.base).to_string();
    let created = http
        .post(format!("{}/settings/apps/new?state={state}", sim.api_url()))
        .form(&[("manifest", manifest.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 302);
    let location = created.headers()["location"].to_str().unwrap().to_string();
    let callback = location[location.find("/setup/callback?").unwrap()..].to_string();
    let refused = http.get(service.url(&callback)).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    let text = refused.text().await.unwrap();
    assert!(text.contains("SECRET_KEY is not set"), "{text}");
    assert!(text.contains("openssl rand"), "{text}");
    assert!(text.contains("not fetched from GitHub"), "{text}");
    {
        let sim_state = sim.state.lock().unwrap();
        assert_eq!(sim_state.manifest_conversions, 0);
        assert!(
            sim_state
                .log
                .iter()
                .all(|r| !r.path.contains("/app-manifests/")),
            "the code was exchanged: {:?}",
            sim_state.log
        );
    }
    assert!(
        amp_orchestrator::store::github_app::current(&store)
            .await
            .unwrap()
            .is_none()
    );
    assert!(service.ctx().in_setup());

    // SECRET_KEY set, the service restarted: the same page, reloaded, registers the App.
    service.stop().await;
    let (key, key_id) = new_secret_key();
    env.insert("SECRET_KEY".into(), key);
    let service = common::TestService::start_with(env).await;
    let done = http.get(service.url(&callback)).send().await.unwrap();
    assert_eq!(done.status(), 200);
    let done = done.text().await.unwrap();
    assert!(
        done.contains(&format!(
            "{}/apps/{APP_SLUG}/installations/new",
            sim.api_url()
        )),
        "{done}"
    );
    assert_eq!(sim.state.lock().unwrap().manifest_conversions, 1);
    let stored = amp_orchestrator::store::github_app::current(&store)
        .await
        .unwrap()
        .unwrap();
    assert_sealed(&stored, &key_id, &issued_credentials(&sim));
    assert!(!service.ctx().in_setup());
});

// Credentials stored in plain text (before `SECRET_KEY` existed) are encrypted at the first
// start with a key, and the App keeps working; on SQLite no copy of the plain text is left in
// the database file or its write-ahead log.
both_backends!(
    plain_text_credentials_are_sealed_at_start,
    |db: TestDb| async move {
        let webhook_secret = "legacy-webhook-secret-0123";
        let client_secret = "legacy-client-secret-456789abcdef";
        let sim = GitHubSim::start(webhook_secret).await;
        let repo = sim.add_repo("octo-org/widgets", 77, &[("octocat", "write")]);
        let store = db.connect().await;
        use sea_orm::{ActiveValue::Set, EntityTrait};
        github_app::Entity::insert(github_app::ActiveModel {
            slot: Set(1),
            app_id: Set(common::github_sim::APP_ID as i64),
            slug: Set(APP_SLUG.into()),
            name: Set("amp-orchestrator".into()),
            owner_login: Set("octo-org".into()),
            html_url: Set(format!("{}/apps/{APP_SLUG}", sim.api_url())),
            client_id: Set("Iv1.8a61f9b3a7aba766".into()),
            client_secret: Set(client_secret.into()),
            webhook_secret: Set(webhook_secret.into()),
            private_key: Set(app_private_key()),
            created_at: Set(1),
        })
        .exec_without_returning(&store)
        .await
        .unwrap();

        let (key, key_id) = new_secret_key();
        let mut env = common::service::test_env(&db);
        env.remove("WEBHOOK_SECRET");
        env.insert("GITHUB_API_URL".into(), sim.api_url());
        env.insert("SECRET_KEY".into(), key.clone());
        let service = common::TestService::start_with(env).await;
        assert!(service.ctx().identity().registered.is_some());

        let stored = amp_orchestrator::store::github_app::current(&store)
            .await
            .unwrap()
            .unwrap();
        let mut plain: Vec<String> = app_private_key()
            .lines()
            .map(str::trim)
            .filter(|line| !line.starts_with("-----") && line.len() >= 16)
            .map(str::to_string)
            .collect();
        plain.push(webhook_secret.into());
        plain.push(client_secret.into());
        assert_sealed(&stored, &key_id, &plain);
        assert_not_in_files(&db, &plain);
        let opened =
            amp_orchestrator::store::github_app::credentials(&stored, &keyring(&key, &[])).unwrap();
        assert_eq!(opened.webhook_secret.expose_secret(), webhook_secret);
        assert_eq!(opened.client_secret.expose_secret(), client_secret);
        assert!(!opened.plain_text);

        // A webhook signed with the stored secret is accepted.
        sim.deliver_to(&service.base);
        sim.comment(&repo, 5, "octocat", "/amp help").await;
        assert_eq!(sim.hook_deliveries().last().unwrap().status_code, 202);
    }
);
