//! The HTTP API of API.md, driven over real HTTP against a server on port 0 with a fresh
//! database (SQLite always, PostgreSQL when `HERALD_TEST_POSTGRES_URL` is set).

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod analytics;
mod auth;
mod automations;
mod campaigns;
mod contacts;
mod dashboard;
mod exports;
mod groups;
mod idempotency;
mod imports;
mod messages;
mod metrics;
mod openapi;
mod platforms;
mod quotas;
mod senders;
mod templates;
mod webhooks;
mod whatsapp_cloud;

use std::time::Duration;

use common::TestDb;
use herald::app::{AppState, Application};
use herald::cli::{CreateKey, create_api_key};
use herald::clock::SystemClock;
use herald::config::Config;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A running server and a client holding a `*` token of workspace `acme`.
pub struct Api {
    pub base: String,
    pub token: String,
    client: reqwest::Client,
    state: AppState,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _db: TestDb,
}

/// A response: status, headers and JSON body (`Null` when empty).
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn id(&self) -> String {
        self.body["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id in {}", self.body))
            .to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Fails with the body when the status is not `status`.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        &self.body
    }

    /// Asserts an error envelope with `status` and `code`.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.code(), code, "body: {}", self.body);
        assert!(
            self.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "an error has a message: {}",
            self.body
        );
        &self.body["error"]["details"]
    }
}

impl Api {
    /// The server with private addresses allowed: the tests' gateways and receivers are mock
    /// servers on 127.0.0.1.
    pub async fn start(db: TestDb) -> Self {
        Self::start_with(db, |config| Config {
            allow_private_urls: true,
            ..config
        })
        .await
    }

    /// The server on `clock`, with private addresses allowed.
    pub async fn start_on_clock(
        db: TestDb,
        clock: std::sync::Arc<dyn herald::clock::Clock>,
    ) -> Self {
        Self::launch(
            db,
            |config| Config {
                allow_private_urls: true,
                ..config
            },
            clock,
        )
        .await
    }

    /// The server with its configuration changed by `configure`.
    pub async fn start_with(db: TestDb, configure: impl FnOnce(Config) -> Config) -> Self {
        Self::launch(db, configure, std::sync::Arc::new(SystemClock)).await
    }

    async fn launch(
        db: TestDb,
        configure: impl FnOnce(Config) -> Config,
        clock: std::sync::Arc<dyn herald::clock::Clock>,
    ) -> Self {
        // `RUST_LOG=herald=debug cargo test --test api` shows the server's log with a failure.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let config = configure(Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: db.url.clone(),
            engine_tick_ms: 20,
            ..Config::default()
        });
        let app = Application::build_with_clock(config, clock)
            .await
            .expect("the app starts");
        let base = format!("http://{}", app.local_addr().unwrap());
        let state = app.state().clone();
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async {
            let _ = stop.await;
        }));
        let mut api = Self {
            base,
            token: String::new(),
            client: reqwest::Client::new(),
            state,
            server,
            shutdown: Some(shutdown),
            _db: db,
        };
        api.token = api.key("acme", "*", None).await;
        api
    }

    /// A new API key's token.
    pub async fn key(
        &self,
        workspace: &str,
        abilities: &str,
        rate_per_minute: Option<u32>,
    ) -> String {
        let args = CreateKey {
            name: "test".into(),
            abilities: abilities.into(),
            workspace: workspace.into(),
            rate_per_minute,
            daily_quota: None,
            monthly_quota: None,
            expires_at: None,
        };
        create_api_key(&self.state.db, &SystemClock, &args)
            .await
            .expect("key created")
            .1
    }

    /// A second server on the same database, as another process would be: its own pools, its
    /// own in-memory limits. Returns its base URL; it stops when the test's runtime ends.
    pub async fn twin(&self) -> String {
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: self._db.url.clone(),
            engine_tick_ms: 20,
            allow_private_urls: true,
            ..Config::default()
        };
        let app = Application::build(config).await.expect("the twin starts");
        let base = format!("http://{}", app.local_addr().unwrap());
        tokio::spawn(app.run_until(std::future::pending()));
        base
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("a body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn request_as(&self, token: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }

    pub fn client_without_token(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.request_as(&self.token, method, path)
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(self.request(Method::POST, path).json(&body))
            .await
    }

    pub async fn post_empty(&self, path: &str) -> Reply {
        self.send(self.request(Method::POST, path)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send(self.request(Method::PATCH, path).json(&body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(self.request(Method::DELETE, path)).await
    }

    /// A sandbox sender that reports nothing by itself; returns its id.
    pub async fn sandbox_sender(&self) -> String {
        self.post(
            "/v1/senders",
            json!({"name": "Sandbox", "provider": "sandbox",
                   "provider_config": {"deliver_rate": 0, "read_rate": 0}}),
        )
        .await
        .expect(201);
        let list = self.get("/v1/senders").await;
        list.body["data"][0]["id"].as_str().unwrap().to_owned()
    }

    /// Creates a campaign saying "Hi" to every contact through `sender` and starts it; its id.
    pub async fn start_campaign(&self, sender: &str, name: &str) -> String {
        let campaign = self
            .post(
                "/v1/campaigns",
                json!({"name": name, "sender_id": sender, "content": "Hi",
                       "audience": {"type": "all"}}),
            )
            .await
            .id();
        self.post_empty(&format!("/v1/campaigns/{campaign}/start"))
            .await
            .expect(200);
        campaign
    }

    pub async fn contact(&self, phone: &str, extra: Value) -> String {
        let mut body = json!({ "phone": phone });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let reply = self.post("/v1/contacts", body).await;
        reply.expect(201);
        reply.id()
    }

    /// Polls `path` until `done` holds of its body (the engine works in the background).
    pub async fn wait_for(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let reply = self.get(path).await;
            if done(&reply.body) {
                return reply.body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} never reached the expected state: {}",
                reply.body
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Stops the server and starts another on the same database, as a restart does.
    pub async fn restart(mut self) -> Self {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let server = std::mem::replace(&mut self.server, tokio::spawn(async { Ok(()) }));
        server
            .await
            .expect("server task")
            .expect("server stops cleanly");
        Self::start(self._db).await
    }

    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let server = std::mem::replace(&mut self.server, tokio::spawn(async { Ok(()) }));
        server
            .await
            .expect("server task")
            .expect("server stops cleanly");
    }
}

/// A string id that exists nowhere.
pub fn unknown_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
