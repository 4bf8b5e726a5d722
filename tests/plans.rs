//! The plans PostgreSQL chooses for the send path's statements, as Herald runs them: a campaign
//! of 20,000 goes out through the engine with `auto_explain` logging every statement's plan to
//! the client, and no plan may read `messages` by a sequential scan, or reach a claimed message
//! by any index but its primary key. Once with the plans made for each statement's values, once
//! with the generic plans a prepared statement switches to after its fifth run.
//!
//! The trap this guards: with statistics taken right after a launch (nothing in flight), the
//! planner once answered the recorder's `status = 'sending' AND id = …` by a bitmap scan of a
//! partial index of sending messages, whose dead entries grow with every claim, so recording 64
//! sends read every message claimed since the last vacuum.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use herald::clock::SystemClock;
use herald::domain::campaign::Audience;
use herald::domain::ids::WorkspaceId;
use herald::domain::pacing::Pacing;
use herald::engine::{self, EngineConfig};
use herald::service::campaigns::{self, Draft, LaunchBy};
use herald::service::contacts::{self, ContactInput};
use herald::service::senders::{self, SenderSettings};
use herald::service::workspaces;
use herald::store::{Db, DbOptions};
use herald::url_guard::UrlGuard;
use serde_json::{Value, json};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

const RECIPIENTS: u32 = 20_000;

/// The plans PostgreSQL sent as notices, as JSON.
#[derive(Clone, Default)]
struct Plans(Arc<Mutex<Vec<Value>>>);

struct NoticeText(String);

impl Visit for NoticeText {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.0);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" && self.0.is_empty() {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for Plans {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != "sqlx::postgres::notice" {
            return;
        }
        let mut text = NoticeText(String::new());
        event.record(&mut text);
        // auto_explain's notice: "duration: 0.123 ms  plan:\n{…}".
        let plan = text
            .0
            .find('{')
            .and_then(|start| serde_json::from_str::<Value>(&text.0[start..]).ok());
        if let (Some(plan), Ok(mut plans)) = (plan, self.0.lock()) {
            plans.push(plan);
        }
    }
}

/// Every node of a plan, depth first.
fn nodes(plan: &Value) -> Vec<&Value> {
    let mut found = vec![plan];
    if let Some(children) = plan["Plans"].as_array() {
        for child in children {
            found.extend(nodes(child));
        }
    }
    found
}

/// How a node reads `messages`, if it does: the scan, and the index it goes by (none for a
/// sequential or bitmap heap scan).
fn reads_messages_by(node: &Value) -> Option<(&str, &str)> {
    let scan = node["Node Type"].as_str().unwrap_or("");
    (node["Relation Name"] == "messages" && scan.ends_with("Scan"))
        .then(|| (scan, node["Index Name"].as_str().unwrap_or("")))
}

#[tokio::test]
async fn the_send_paths_statements_never_scan_messages() {
    let Some(test_db) = common::postgres().await else {
        eprintln!(
            "{} is not set: the plan test is PostgreSQL's",
            common::POSTGRES_URL_VAR
        );
        return;
    };
    let plans = Plans::default();
    let subscriber = tracing_subscriber::registry().with(plans.clone());
    let _guard = tracing::subscriber::set_default(subscriber);

    let workspace = seed(&test_db.db).await;
    for plan_cache_mode in ["force_custom_plan", "force_generic_plan"] {
        // Each connection of a new pool loads auto_explain with these settings.
        {
            let mut conn = test_db.db.write().await.expect("connection");
            for setting in [
                "session_preload_libraries = 'auto_explain'".to_owned(),
                "auto_explain.log_min_duration = 0".to_owned(),
                "auto_explain.log_format = 'json'".to_owned(),
                "auto_explain.log_level = 'notice'".to_owned(),
                "auto_explain.log_nested_statements = on".to_owned(),
                format!("plan_cache_mode = '{plan_cache_mode}'"),
            ] {
                let database = test_db.database().expect("a PostgreSQL database");
                let sql = format!("ALTER DATABASE {database} SET {setting}");
                common::execute(conn.conn(), &sql).await;
            }
        }
        let db = Db::connect(
            &test_db.url,
            &DbOptions {
                max_connections: 5,
                ..DbOptions::default()
            },
        )
        .await
        .expect("a pool with auto_explain");
        plans.0.lock().expect("plans").clear();
        send_a_campaign(&db, workspace, plan_cache_mode).await;
        db.close().await;

        let plans = plans.0.lock().expect("plans").clone();
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for plan in &plans {
            let query = plan["Query Text"].as_str().unwrap_or("");
            let kind = if query.contains("SET status = 'sending'") {
                "claim"
            } else if query.contains("unnest($1::uuid[], $2::text[], $3::timestamptz[])") {
                "record"
            } else if query.contains("FROM contacts WHERE id = ANY") {
                "render"
            } else if query.contains("SELECT id FROM messages WHERE id IN")
                || query.contains("provider_message_id IN")
            {
                "callback lookup"
            } else if query.contains("WITH v (id, status, sent_at") {
                "callback write"
            } else if query.contains("INSERT INTO messages") {
                "launch"
            } else {
                "other"
            };
            *seen.entry(kind).or_default() += 1;
            for (scan, index) in nodes(&plan["Plan"])
                .into_iter()
                .filter_map(reads_messages_by)
            {
                assert_ne!(
                    scan, "Seq Scan",
                    "{plan_cache_mode}: a {kind} statement reads every message: {query}\n{plan:#}"
                );
                if matches!(kind, "record" | "callback write") {
                    assert_eq!(
                        index, "messages_pkey",
                        "{plan_cache_mode}: a {kind} statement finds its messages by {scan} on {index}: {query}\n{plan:#}"
                    );
                }
            }
        }
        for kind in [
            "claim",
            "record",
            "render",
            "callback lookup",
            "callback write",
        ] {
            assert!(
                seen.get(kind).is_some_and(|n| *n > 0),
                "{plan_cache_mode}: no {kind} statement was explained ({seen:?})"
            );
        }
    }
}

async fn seed(db: &Db) -> WorkspaceId {
    let now = Utc::now();
    let workspace = workspaces::ensure(db, "plans", now)
        .await
        .expect("workspace")
        .id;
    let people: Vec<ContactInput> = (0..RECIPIENTS)
        .map(|n| ContactInput {
            phone: Some(format!("+2010{n:08}")),
            name: Some(format!("Contact {n}")),
            ..ContactInput::default()
        })
        .collect();
    for chunk in people.chunks(5_000) {
        contacts::create_many(db, workspace, chunk.to_vec(), now)
            .await
            .expect("contacts");
    }
    workspace
}

/// A campaign to every contact through a sandbox that reports each message delivered and read,
/// sent by the engine as `herald serve` runs it; statistics are taken right after the launch.
async fn send_a_campaign(db: &Db, workspace: WorkspaceId, name: &str) {
    let now = Utc::now();
    let sandbox = json!({"latency_ms": 0, "deliver_rate": 1, "read_rate": 1,
                         "deliver_after_ms": 0, "read_after_ms": 0});
    let (sender, _) = senders::create(
        db,
        workspace,
        SenderSettings {
            name: name.into(),
            provider: "sandbox".into(),
            provider_config: sandbox,
            timezone: "UTC".into(),
            pacing: Pacing::default(),
        },
        UrlGuard::STRICT,
        now,
    )
    .await
    .expect("sender");
    let draft = Draft {
        name: name.into(),
        sender_id: sender.id,
        template_id: None,
        content: Some("Hi <<name|there>>".into()),
        media_url: None,
        audience: Audience::All,
        variables: BTreeMap::new(),
    };
    let campaign = campaigns::create(db, workspace, draft, now)
        .await
        .expect("campaign");
    campaigns::launch(db, workspace, campaign.id, LaunchBy::Person, now)
        .await
        .expect("launch")
        .expect("launched");
    {
        let mut conn = db.write().await.expect("connection");
        common::execute(conn.conn(), "ANALYZE").await;
    }
    let engine = engine::start(
        db.clone(),
        Arc::new(SystemClock),
        reqwest::Client::new(),
        EngineConfig::default(),
    )
    .await
    .expect("engine");
    let started = Instant::now();
    loop {
        let current = campaigns::get(db, workspace, campaign.id)
            .await
            .expect("campaign");
        if current.status.is_finished() && current.read_count == i64::from(RECIPIENTS) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the campaign did not finish: {current:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    engine.shutdown().await;
}
