//! The dashboard in a real browser: headless Chromium driven through chromedriver (WebDriver),
//! against a server on port 0 with a fresh SQLite database and sandbox senders.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Without them the
//! tests say so and pass, unless `HERALD_TEST_BROWSER=required` (CI sets it), when they fail.

#[path = "common/mod.rs"]
mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use herald::app::Application;
use herald::cli::{CreateKey, create_api_key};
use herald::clock::SystemClock;
use herald::config::Config;
use serde_json::{Value, json};

const REQUIRED_VAR: &str = "HERALD_TEST_BROWSER";

/// chromedriver, and the Chromium it drives, for one test.
struct Driver {
    process: Child,
    client: Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn find_program(names: &[&str]) -> Option<String> {
    let path = std::env::var("PATH").unwrap_or_default();
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
            .map(|found| found.display().to_string())
    })
}

/// A headless Chromium, or `None` (with a note) when this machine has none and none is required.
async fn browser() -> Option<Driver> {
    let required = std::env::var(REQUIRED_VAR).is_ok_and(|value| value == "required");
    let (Some(chromedriver), Some(chromium)) = (
        find_program(&["chromedriver"]),
        find_program(&["chromium", "chromium-browser", "google-chrome"]),
    ) else {
        assert!(
            !required,
            "{REQUIRED_VAR}=required but chromium and chromedriver are not installed \
             (apt-get install chromium chromium-driver)"
        );
        eprintln!("chromium or chromedriver is not installed: browser test not run");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let process = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,900"],
        }
    });
    let capabilities = match capabilities {
        Value::Object(map) => map,
        _ => unreachable!(),
    };
    let url = format!("http://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let client = loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&url)
            .await
        {
            Ok(client) => break client,
            Err(error) if tokio::time::Instant::now() < deadline => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("chromedriver on {url} did not start a browser: {error}"),
        }
    };
    Some(Driver { process, client })
}

/// A running Herald and an API client for setting things up.
struct Herald {
    base: String,
    http: reqwest::Client,
    token: String,
    state: herald::app::AppState,
    _db: common::TestDb,
}

impl Herald {
    async fn start() -> Self {
        let db = common::sqlite().await;
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: db.url.clone(),
            engine_tick_ms: 20,
            ..Config::default()
        };
        let app = Application::build(config).await.expect("herald starts");
        let base = format!("http://{}", app.local_addr().unwrap());
        let state = app.state().clone();
        tokio::spawn(app.run_until(std::future::pending()));
        let mut herald = Self {
            base,
            http: reqwest::Client::new(),
            token: String::new(),
            state,
            _db: db,
        };
        herald.token = herald.key("acme").await;
        herald
    }

    async fn key(&self, workspace: &str) -> String {
        let args = CreateKey {
            name: format!("{workspace} marketing"),
            abilities: "*".into(),
            workspace: workspace.into(),
            rate_per_minute: None,
            daily_quota: None,
            monthly_quota: None,
            expires_at: None,
        };
        create_api_key(&self.state.db, &SystemClock, &args)
            .await
            .expect("key created")
            .1
    }

    async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the API answers");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap_or(Value::Null)
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.api(reqwest::Method::POST, path, Some(body)).await
    }

    /// A sandbox sender sending `per_minute` messages a minute.
    async fn sender(&self, name: &str, per_minute: u32) -> String {
        self.post(
            "/v1/senders",
            json!({"name": name, "provider": "sandbox", "timezone": "UTC",
                   "pacing": {"rate_per_minute": per_minute},
                   "provider_config": {"deliver_rate": 1, "read_rate": 0}}),
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn contacts(&self, count: usize) {
        for i in 0..count {
            self.post(
                "/v1/contacts",
                json!({"phone": format!("+2010000{i:05}"), "name": format!("Friend {i}")}),
            )
            .await;
        }
    }
}

/// Polls until `check` holds, for up to 20 s (the engine and the page's script work on their
/// own time).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|error| panic!("no {css}: {error}"))
        .click()
        .await
        .unwrap();
}

async fn type_into(client: &Client, id: &str, text: &str) {
    client
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|error| panic!("no #{id}: {error}"))
        .send_keys(text)
        .await
        .unwrap();
}

async fn text(client: &Client, css: &str) -> String {
    match client.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn sign_in(client: &Client, herald: &Herald, token: &str) {
    client.goto(&format!("{}/", herald.base)).await.unwrap();
    assert!(client.current_url().await.unwrap().path() == "/login");
    type_into(client, "token", token).await;
    click(client, "main button[type=submit]").await;
    eventually("the campaigns page after signing in", || async {
        client
            .current_url()
            .await
            .is_ok_and(|url| url.path() == "/campaigns")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_is_written_with_a_preview_started_and_watched_to_completion() {
    let Some(driver) = browser().await else {
        return;
    };
    let client = &driver.client;
    let herald = Herald::start().await;
    herald.sender("Promotions", 600).await;
    herald.contacts(8).await;
    sign_in(client, &herald, &herald.token).await;

    client
        .find(Locator::LinkText("New campaign"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    type_into(client, "name", "Winter sale").await;
    type_into(client, "content", "Hi <<name>>, 20% off today").await;
    type_into(client, "preview_phone", "+201000000003").await;
    eventually("the preview of the chosen contact", || async {
        text(client, "[data-check=preview]").await == "Hi Friend 3, 20% off today"
    })
    .await;
    assert_eq!(text(client, "[data-check=recipients]").await, "8");
    let estimate = text(client, "[data-check=estimate]").await;
    assert!(
        estimate.contains("UTC"),
        "an estimate with a time: {estimate}"
    );

    click(client, "input[name=when][value=now]").await;
    click(client, "form.draft button[type=submit]").await;
    eventually("the campaign's page", || async {
        text(client, "h1").await == "Winter sale"
    })
    .await;
    assert!(text(client, ".note").await.contains("started"));
    // Marks this page: a reload would forget it, so the counters below are live updates.
    client
        .execute("window.notReloaded = true;", vec![])
        .await
        .unwrap();
    eventually("the live counters reach completed", || async {
        text(client, "[data-live=status]").await == "completed"
            && text(client, "[data-live=sent]").await == "8"
    })
    .await;
    let same_page = client
        .execute("return window.notReloaded === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same_page, json!(true), "updated without a reload");
    let buttons_shown = client
        .execute(
            "return [...document.querySelectorAll('form[data-action]')].filter(f => !f.hidden).length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        buttons_shown,
        json!(0),
        "a completed campaign offers no move"
    );

    // Every field has a label, and nothing needs sideways scrolling on a 390 px phone.
    let campaign_page = client.current_url().await.unwrap().path().to_owned();
    client.set_window_size(390, 900).await.unwrap();
    for path in [
        "/campaigns",
        campaign_page.as_str(),
        "/campaigns/new",
        "/contacts",
        "/senders",
    ] {
        client
            .goto(&format!("{}{path}", herald.base))
            .await
            .unwrap();
        let unlabelled = client
            .execute(
                "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                     .filter(field => field.labels.length === 0).map(field => field.name);",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(unlabelled, json!([]), "{path}: fields without a label");
        let fits = client
            .execute(
                "return document.documentElement.scrollWidth <= window.innerWidth;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(fits, json!(true), "{path} is wider than a 390 px screen");
    }
    client.set_window_size(1280, 900).await.unwrap();

    click(client, ".sign-out button").await;
    eventually("the sign-in page", || async {
        client
            .current_url()
            .await
            .is_ok_and(|url| url.path() == "/login")
    })
    .await;
    client
        .goto(&format!("{}/campaigns", herald.base))
        .await
        .unwrap();
    assert_eq!(client.current_url().await.unwrap().path(), "/login");
    driver.client.clone().close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_a_refused_move_and_a_form_without_its_csrf_token() {
    let Some(driver) = browser().await else {
        return;
    };
    let client = &driver.client;
    let herald = Herald::start().await;
    let sender = herald.sender("Slow", 6).await;
    herald.contacts(5).await;
    let campaign = herald
        .post(
            "/v1/campaigns",
            json!({"name": "Slow drip", "sender_id": sender, "content": "Hello",
                   "audience": {"type": "all"}}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    herald
        .post(&format!("/v1/campaigns/{campaign}/start"), json!({}))
        .await;
    sign_in(client, &herald, &herald.token).await;
    client
        .find(Locator::LinkText("Slow drip"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    click(client, "form[data-action=pause] button").await;
    eventually("paused", || async {
        text(client, "[data-live=status]").await == "paused"
    })
    .await;
    assert!(text(client, ".note").await.contains("Paused"));
    click(client, "form[data-action=resume] button").await;
    eventually("running again", || async {
        text(client, "[data-live=status]").await == "running"
    })
    .await;

    // The same button with its CSRF token removed: refused, and nothing changes.
    client
        .execute(
            "const form = document.querySelector('form[data-action=pause]');
             form.querySelector('input[name=csrf]').remove();
             form.submit();",
            vec![],
        )
        .await
        .unwrap();
    eventually("the refusal", || async {
        text(client, ".problem")
            .await
            .contains("did not come from this dashboard")
    })
    .await;
    let status = herald
        .api(
            reqwest::Method::GET,
            &format!("/v1/campaigns/{campaign}"),
            None,
        )
        .await;
    assert_eq!(status["status"], "running");

    // Canceled elsewhere while this page was open: its pause button, pressed, is explained.
    client
        .goto(&format!("{}/campaigns/{campaign}", herald.base))
        .await
        .unwrap();
    herald
        .post(&format!("/v1/campaigns/{campaign}/cancel"), json!({}))
        .await;
    client
        .execute(
            "document.querySelector('form[data-action=pause]').submit();",
            vec![],
        )
        .await
        .unwrap();
    eventually("the reason", || async {
        text(client, ".note").await == "Cannot pause this campaign: it is canceled now."
    })
    .await;
    driver.client.clone().close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_shows_its_progress_names_stay_text_and_workspaces_stay_apart() {
    let Some(driver) = browser().await else {
        return;
    };
    let client = &driver.client;
    let herald = Herald::start().await;
    herald
        .post(
            "/v1/contacts",
            json!({"phone": "+201099999999", "name": "<script>alert(1)</script>"}),
        )
        .await;
    sign_in(client, &herald, &herald.token).await;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("contacts.csv");
    let mut csv = String::from("phone,name,city\n");
    for i in 0..3000 {
        csv.push_str(&format!("+2011{i:08},Customer {i},Cairo\n"));
    }
    csv.push_str("not a phone,Broken,Giza\n");
    std::fs::write(&file, csv).unwrap();

    client
        .goto(&format!("{}/contacts", herald.base))
        .await
        .unwrap();
    let scripted = client
        .execute("return document.title;", vec![])
        .await
        .unwrap();
    assert_eq!(scripted, json!("Contacts · Herald"));
    // Shown as text: the page holds the name, and no alert opened.
    assert!(
        client
            .source()
            .await
            .unwrap()
            .contains("&lt;script&gt;alert(1)&lt;/script&gt;")
    );
    assert!(client.get_alert_text().await.is_err(), "no script ran");
    let cell = text(client, "tbody td[data-label=Name] a").await;
    assert_eq!(cell, "<script>alert(1)</script>");

    type_into(client, "file", &file.display().to_string()).await;
    click(client, "form[enctype] button").await;
    eventually("the import's page", || async {
        text(client, "h1").await == "Import"
    })
    .await;
    eventually("the import completes, live", || async {
        text(client, "[data-import=status]").await == "completed"
    })
    .await;
    assert_eq!(text(client, "[data-import=created]").await, "3000");
    assert_eq!(text(client, "[data-import=failed]").await, "1");
    assert!(
        text(client, "[data-import=errors]")
            .await
            .contains("line 3002")
    );

    // Another workspace's token, in the same browser after signing out, sees none of it.
    click(client, ".sign-out button").await;
    let other = herald.key("globex").await;
    sign_in(client, &herald, &other).await;
    client
        .goto(&format!("{}/contacts", herald.base))
        .await
        .unwrap();
    assert!(text(client, ".empty").await.contains("No contacts"));
    driver.client.clone().close().await.ok();
}
