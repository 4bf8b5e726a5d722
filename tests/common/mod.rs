//! Test databases: a fresh SQLite file per test, and — when `HERALD_TEST_POSTGRES_URL` is set —
//! a fresh PostgreSQL database per test, dropped afterwards even if the test fails.
#![allow(dead_code)]

use chrono::{DateTime, TimeZone, Utc};
use herald::domain::provider::ProviderKind;
use herald::domain::time::Zone;
use herald::store::{Db, DbOptions};
use sqlx::Connection;

pub const POSTGRES_URL_VAR: &str = "HERALD_TEST_POSTGRES_URL";

pub struct TestDb {
    pub db: Db,
    /// Where the database is, for a `herald` process to open it too.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<PostgresCleanup>,
}

struct PostgresCleanup {
    admin_url: String,
    database: String,
}

impl std::ops::Deref for TestDb {
    type Target = Db;
    fn deref(&self) -> &Db {
        &self.db
    }
}

pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("herald.db").display());
    let db = Db::connect(&url, &DbOptions::default())
        .await
        .expect("open sqlite");
    db.migrate().await.expect("migrate sqlite");
    TestDb {
        db,
        url,
        _dir: Some(dir),
        postgres: None,
    }
}

/// A fresh PostgreSQL database, or `None` when the variable is unset. Set but unreachable is a
/// failure, never a skip.
pub async fn postgres() -> Option<TestDb> {
    let admin_url = std::env::var(POSTGRES_URL_VAR).ok()?;
    let database = format!("herald_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|error| {
            panic!("{POSTGRES_URL_VAR} is set but PostgreSQL is unreachable: {error}")
        });
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&mut admin)
        .await
        .expect("create test database");
    admin.close().await.ok();
    let url = with_database(&admin_url, &database);
    let db = Db::connect(
        &url,
        &DbOptions {
            max_connections: 5,
            ..DbOptions::default()
        },
    )
    .await
    .expect("open test database");
    db.migrate().await.expect("migrate postgres");
    Some(TestDb {
        db,
        url,
        _dir: None,
        postgres: Some(PostgresCleanup {
            admin_url,
            database,
        }),
    })
}

impl TestDb {
    /// The PostgreSQL database's name (`None` on SQLite).
    pub fn database(&self) -> Option<&str> {
        self.postgres
            .as_ref()
            .map(|cleanup| cleanup.database.as_str())
    }
}

/// Runs statements a test writes out whole (set-up, `ANALYZE`), in either dialect.
pub async fn execute(conn: herald::store::Conn<'_>, sql: &str) {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    let done = match conn {
        herald::store::Conn::Postgres(c) => sqlx::raw_sql(sql).execute(c).await.map(drop),
        herald::store::Conn::Sqlite(c) => sqlx::raw_sql(sql).execute(c).await.map(drop),
    };
    done.unwrap_or_else(|error| panic!("{error}"));
}

/// The one integer a test's query answers (a `COUNT(*)`), in either dialect.
pub async fn count(db: &Db, sql: &'static str) -> i64 {
    let mut conn = db.read().await.unwrap();
    let counted = match conn.conn() {
        herald::store::Conn::Postgres(c) => sqlx::query_scalar(sql).fetch_one(&mut *c).await,
        herald::store::Conn::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(&mut *c).await,
    };
    counted.unwrap_or_else(|error| panic!("{sql}: {error}"))
}

/// `admin_url` with its database name replaced.
fn with_database(admin_url: &str, database: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{root}/{database}?{query}"),
        None => format!("{root}/{database}"),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(cleanup) = self.postgres.take() else {
            return;
        };
        // Drop runs outside async; a private runtime on its own thread drops the database.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&cleanup.admin_url).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    cleanup.database
                )))
                .execute(&mut admin)
                .await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop a PostgreSQL test database");
        }
    }
}

/// Runs each named `async fn(TestDb)` once per dialect: `sqlite::name` always, `postgres::name`
/// against `HERALD_TEST_POSTGRES_URL` when it is set.
#[macro_export]
macro_rules! dialect_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    match $crate::common::postgres().await {
                        Some(db) => super::$name(db).await,
                        None => eprintln!(
                            "{} is not set: PostgreSQL half of {} not run",
                            $crate::common::POSTGRES_URL_VAR,
                            stringify!($name)
                        ),
                    }
                }
            )*
        }
    };
}

/// Runs each named `async fn(TestDb)` on PostgreSQL alone (what only several processes sharing
/// a database can show), when `HERALD_TEST_POSTGRES_URL` is set.
#[macro_export]
macro_rules! postgres_tests {
    ($($name:ident),* $(,)?) => {
        mod postgres_only {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    match $crate::common::postgres().await {
                        Some(db) => super::$name(db).await,
                        None => eprintln!(
                            "{} is not set: {} not run",
                            $crate::common::POSTGRES_URL_VAR,
                            stringify!($name)
                        ),
                    }
                }
            )*
        }
    };
}

/// An `http` sender of `ws` posting to the gateway of `config`, paced by `pacing`.
pub async fn http_sender(
    tx: &mut herald::store::Tx,
    ws: herald::domain::ids::WorkspaceId,
    name: &str,
    config: &serde_json::Value,
    pacing: &herald::domain::pacing::Pacing,
    callback_secret: &str,
) -> herald::domain::ids::SenderId {
    let fields = herald::store::senders::SenderFields {
        name,
        provider: ProviderKind::Http,
        provider_config: config,
        timezone: Zone::UTC,
        pacing,
        warmup_started_on: None,
    };
    herald::store::senders::insert(tx, ws, &fields, callback_secret, Utc::now())
        .await
        .unwrap()
        .id
}

/// A campaign named `name` saying "Hello <<phone>>" to every contact of `ws` through `sender`,
/// launched in `tx`.
pub async fn launch_hello(
    tx: &mut herald::store::Tx,
    ws: herald::domain::ids::WorkspaceId,
    sender: herald::domain::ids::SenderId,
    name: String,
    now: DateTime<Utc>,
) -> herald::domain::ids::CampaignId {
    use herald::store::campaigns::{self, CampaignFields};
    let fields = CampaignFields {
        whatsapp: None,
        name,
        sender_id: sender,
        template_id: None,
        content: "Hello <<phone>>".into(),
        media_url: None,
        audience: herald::domain::campaign::Audience::All,
        variables: std::collections::BTreeMap::new(),
    };
    let campaign = campaigns::insert(tx.conn(), ws, &fields, now)
        .await
        .unwrap()
        .id;
    campaigns::launch(tx, ws, campaign, now).await.unwrap();
    campaign
}

/// A fixed instant for tests that need "now".
pub fn at(year: i32, month: u32, day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, day, hour, minute, 0)
        .unwrap()
}

#[test]
fn database_names_are_swapped_in_urls() {
    assert_eq!(
        with_database("postgres://u@h:5432/postgres", "x"),
        "postgres://u@h:5432/x"
    );
    assert_eq!(
        with_database("postgres://h/postgres?sslmode=disable", "x"),
        "postgres://h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
}

/// What [`silent_campaign_sent`] made.
pub struct SentCampaign {
    pub ws: herald::domain::ids::WorkspaceId,
    pub sender: herald::store::senders::Sender,
    pub campaign: herald::store::campaigns::Campaign,
    /// Its messages, every one sent.
    pub sent: Vec<herald::store::messages::Message>,
}

/// A campaign "Spring" to three contacts, sent by a sandbox that reports nothing itself (so
/// that callbacks tell the rest) and signs callbacks with `callback_secret`; returns once the
/// engine running on `db` has sent it.
pub async fn silent_campaign_sent(db: &Db, callback_secret: &str) -> SentCampaign {
    use herald::domain::campaign::{Audience, CampaignStatus};
    use herald::domain::pacing::Pacing;
    use herald::domain::phone::Phone;
    use herald::store::campaigns::{self, CampaignFields};
    use herald::store::contacts::{self, ContactFields};
    use herald::store::messages::{self, MessageFilter};
    use herald::store::senders::{self, SenderFields};
    use herald::store::{Page, workspaces};

    let now = Utc::now();
    let mut tx = db.begin().await.unwrap();
    let ws = workspaces::ensure(tx.conn(), "acme", now).await.unwrap().id;
    let people: Vec<_> = (0..3)
        .map(|n| ContactFields::new(Phone::from_trusted(format!("+2010{n:08}"))))
        .collect();
    contacts::insert_new_batch(&mut tx, ws, &people, now)
        .await
        .unwrap();
    let silent = serde_json::json!({"deliver_rate": 0});
    let fields = SenderFields {
        name: "S",
        provider: ProviderKind::Sandbox,
        provider_config: &silent,
        timezone: Zone::UTC,
        pacing: &Pacing::default(),
        warmup_started_on: None,
    };
    let sender = senders::insert(&mut tx, ws, &fields, callback_secret, now)
        .await
        .unwrap();
    let fields = CampaignFields {
        whatsapp: None,
        name: "Spring".into(),
        sender_id: sender.id,
        template_id: None,
        content: "Hi".into(),
        media_url: None,
        audience: Audience::All,
        variables: std::collections::BTreeMap::new(),
    };
    let campaign = campaigns::insert(tx.conn(), ws, &fields, now)
        .await
        .unwrap();
    campaigns::launch(&mut tx, ws, campaign.id, now)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    loop {
        let mut conn = db.read().await.unwrap();
        let current = campaigns::get(conn.conn(), ws, campaign.id).await.unwrap();
        if current.status == CampaignStatus::Completed {
            let filter = MessageFilter {
                campaign: Some(campaign.id),
                ..Default::default()
            };
            let sent = messages::list(conn.conn(), ws, filter, Page::default())
                .await
                .unwrap()
                .0;
            return SentCampaign {
                ws,
                sender,
                campaign,
                sent,
            };
        }
        drop(conn);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A `herald serve` child process, killed when dropped (a failed test leaves none behind).
pub struct Server(pub std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Server {
    /// SIGKILL: no shutdown, no cleanup, whatever was in flight.
    pub fn kill(mut self) {
        self.0.kill().expect("kill -9");
        self.0.wait().expect("reap the killed process");
    }
}
