//! All SQL lives here, as small named functions over a [`Conn`] (one statement) or a [`Tx`]
//! (several statements that must commit together).
//!
//! One schema, two dialects. Statements are written once with `$1`-style placeholders, which
//! both SQLite and PostgreSQL accept, and [`on_conn!`] runs the same text on whichever database
//! the connection belongs to. The few places that differ by dialect ask [`Conn::dialect`].
//! sqlx's compile-time macros check against one database only, so statements use runtime
//! `query_as` with `FromRow`, and the tests run every function against both databases.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};
use tokio::sync::watch;

use crate::domain::campaign::CampaignStatus;
use crate::domain::message::MessageStatus;

/// Reads of the analytics rollups.
pub mod analytics;
pub mod api_keys;
pub mod audience;
pub mod automations;
pub mod campaigns;
pub mod contacts;
pub mod conversations;
/// Where polled providers left off.
pub mod cursors;
pub mod events;
pub mod groups;
pub mod idempotency;
pub mod imports;
pub mod lanes;
pub mod logged_sends;
pub mod messages;
mod nodelay;
pub mod processes;
pub mod senders;
/// Dashboard sessions, held by digest.
pub mod sessions;
mod sql;
mod stable_plans;
pub mod templates;
mod types;
pub mod usage;
/// Outbound webhooks: endpoints, deliveries claimed with a lease, attempts.
pub mod webhooks;
pub mod withdrawals;
pub mod workspaces;

pub use sql::Page;

/// Runs `$body` with `$c` bound to the concrete connection (`&mut SqliteConnection` or
/// `&mut PgConnection`): the body is compiled once per dialect from one text.
macro_rules! on_conn {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::store::Conn::Sqlite($c) => $body,
            $crate::store::Conn::Postgres($c) => $body,
        }
    };
}
pub(crate) use on_conn;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique constraint refused the write; names what already exists.
    #[error("{0} already exists")]
    Duplicate(String),
    /// Another row still refers to this one.
    #[error("still in use by other records")]
    InUse,
    #[error("not allowed while the campaign is {current}")]
    InvalidTransition { current: CampaignStatus },
    #[error("the message is {status}, no longer pending")]
    MessageNotPending { status: MessageStatus },
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The log of sends could not be read or written (a full disk, a directory not writable).
    #[error("log of sends: {0}")]
    SendLog(#[from] std::io::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Duplicate(duplicate_subject(db.constraint(), db.message()))
            }
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::InUse,
            sqlx::Error::ColumnDecode { index, source } => {
                StoreError::Corrupt(format!("column {index}: {source}"))
            }
            _ => StoreError::Database(error),
        }
    }
}

/// What a unique violation was about, from PostgreSQL's constraint name or SQLite's message
/// (`UNIQUE constraint failed: contacts.workspace_id, contacts.phone`).
fn duplicate_subject(constraint: Option<&str>, message: &str) -> String {
    let subject = match constraint {
        Some(name) => name.to_owned(),
        None => message.rsplit(", ").next().unwrap_or(message).to_owned(),
    };
    match subject.as_str() {
        "contacts_phone_unique" | "contacts.phone" => "a contact with this phone".into(),
        "contact_groups_name_unique" | "contact_groups.name" => "a group with this name".into(),
        "workspaces_name_unique" | "workspaces.name" => "a workspace with this name".into(),
        _ => "a record with these values".into(),
    }
}

/// Where Herald keeps its state: SQLite (one writer connection, WAL readers) or PostgreSQL.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite {
        /// Readers run in parallel under WAL.
        reader: SqlitePool,
        /// The single writer: SQLite serialises writes anyway, and one connection makes that
        /// explicit instead of a storm of SQLITE_BUSY retries.
        writer: SqlitePool,
        /// Ends the background checkpoints (see [`checkpoint_in_background`]) when the last
        /// handle on the database is dropped.
        checkpoints: Option<Arc<watch::Sender<()>>>,
        /// The log of sends ([`logged_sends`]): a directory beside the database file. None in
        /// memory, where lanes record each group of sends in full.
        send_log: Option<Arc<logged_sends::SendLog>>,
    },
    Postgres(PgPool),
}

/// Settings for [`Db::connect`].
#[derive(Clone, Debug)]
pub struct DbOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Herald's migrations are tracked in their own table, not sqlx's default `_sqlx_migrations`,
/// which databases from before Herald dropped its job queue also hold for the queue's schema.
const MIGRATIONS_TABLE: &str = "herald_migrations";

impl Db {
    /// Opens `url` (`sqlite://path`, `sqlite::memory:`, `postgres://…`). A SQLite file is
    /// created when missing.
    pub async fn connect(url: &str, options: &DbOptions) -> Result<Db> {
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let connect = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.acquire_timeout)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        nodelay::set_on(conn).await;
                        Ok(())
                    })
                })
                .connect_with(connect)
                .await?;
            return Ok(Db::Postgres(pool));
        }
        if !url.starts_with("sqlite:") {
            return Err(StoreError::Database(sqlx::Error::Configuration(
                format!("unsupported database URL '{url}': use sqlite://PATH or postgres://…")
                    .into(),
            )));
        }
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL with NORMAL sync is durable across application crashes, which is what the
            // engine's guarantees are about; only an OS crash may lose the last commits.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .pragma("temp_store", "memory")
            // A new database's pages are 16 KiB, not 4 KiB: a message's row is ~200 bytes, a
            // batch of them is written in id order, and bigger pages make fewer b-tree pages to
            // split, fewer log frames to write and check, and a cheaper checkpoint (a 1M launch:
            // ~25 % less time; sends ~10 % less CPU). An existing database keeps its size.
            .page_size(16384)
            .pragma("cache_size", "-32000");
        let in_memory = connect.get_filename().to_string_lossy() == ":memory:";
        // An embedded database has no server to drop a connection: checking each connection
        // before handing it out (sqlx's default) would cost a round trip per acquire for nothing.
        let pool = |connections: u32| {
            SqlitePoolOptions::new()
                .max_connections(connections)
                .test_before_acquire(false)
                .acquire_timeout(options.acquire_timeout)
                .after_connect(|conn, _| Box::pin(stable_plans::keep_on(conn)))
        };
        // An in-memory database exists once per connection: every pool must share the writer's.
        if in_memory {
            let writer = pool(1).connect_with(connect).await?;
            return Ok(Db::Sqlite {
                reader: writer.clone(),
                writer,
                checkpoints: None,
                send_log: None,
            });
        }
        let send_log = logged_sends::SendLog::beside(connect.get_filename())?;
        // The writer hands rows over 1,024 at a time too (see the readers): a claim returns a
        // whole batch, and with sqlx's 50 SQLite's thread stopped every 50 rows, holding the
        // write lock, until a busy worker took them (sandbox +14 %, http +0.035 of loopback).
        let writer = pool(1)
            .connect_with(connect.clone().row_buffer_size(1024))
            .await?;
        // Readers hand rows over 1,024 at a time, not sqlx's 50: a long read (an analytics
        // period, a page of an export) then costs a few hand-offs between SQLite's thread and
        // the caller's instead of one every 50 rows (a 90-day activity: −1 ms of CPU).
        let reader = pool(options.max_connections.max(1))
            .connect_with(connect.clone().read_only(true).row_buffer_size(1024))
            .await?;
        let checkpointer = pool(1).connect_with(connect).await?;
        let checkpoints = checkpoint_in_background(checkpointer, writer.clone());
        Ok(Db::Sqlite {
            reader,
            writer,
            checkpoints: Some(checkpoints),
            send_log: Some(Arc::new(send_log)),
        })
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Db::Sqlite { .. } => Dialect::Sqlite,
            Db::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Whether a lane logs its sends as they complete and applies them in bulk
    /// ([`logged_sends`]) rather than recording each group in full. SQLite commits on one
    /// writer, so a commit per 64 sends that rewrites their rows, indexes, events, counters and
    /// rollups holds every other write back; PostgreSQL commits concurrently, and there the log's
    /// extra insert and delete per send cost more than they save (~−20 % in the sandbox).
    pub fn logs_sends(&self) -> bool {
        self.send_log().is_some()
    }

    /// The log of sends ([`logged_sends`]): SQLite's, in files beside the database; none on
    /// PostgreSQL or in memory.
    pub fn send_log(&self) -> Option<&logged_sends::SendLog> {
        match self {
            Db::Sqlite {
                send_log: Some(send_log),
                ..
            } => Some(send_log),
            _ => None,
        }
    }

    pub async fn migrate(&self) -> Result<()> {
        match self {
            Db::Sqlite { writer, .. } => {
                self.keep_sends_logged_by_earlier_versions().await?;
                migrator(&SQLITE_MIGRATOR).run(writer).await?
            }
            Db::Postgres(pool) => migrator(&POSTGRES_MIGRATOR).run(pool).await?,
        }
        Ok(())
    }

    /// Keeps the sends an earlier version left in its log, for the requeue to record: the log
    /// was a table of the main file until migration 0026 (which drops it), then a SQLite file
    /// of its own (`<database>-sends`, deleted here). Both are copied into a segment of the log
    /// that no lane holds; a crash before they are dropped copies them again, and the log reads
    /// each message once.
    async fn keep_sends_logged_by_earlier_versions(&self) -> Result<()> {
        let Db::Sqlite {
            writer,
            send_log: Some(send_log),
            ..
        } = self
        else {
            return Ok(());
        };
        const LOGGED: &str = "SELECT message_id, provider_message_id, sent_at FROM logged_sends";
        const HAS_LOG: &str =
            "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = 'logged_sends'";
        let mut kept: Vec<logged_sends::LoggedSend> = Vec::new();
        let mut conn = writer.acquire().await?;
        if sqlx::query_scalar::<_, i64>(HAS_LOG)
            .fetch_one(&mut *conn)
            .await?
            > 0
        {
            kept.extend(sqlx::query_as(LOGGED).fetch_all(&mut *conn).await?);
        }
        drop(conn);
        let earlier_file = send_log.earlier_file();
        if earlier_file.exists() {
            let options = SqliteConnectOptions::new().filename(&earlier_file);
            let mut earlier =
                <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options).await?;
            if sqlx::query_scalar::<_, i64>(HAS_LOG)
                .fetch_one(&mut earlier)
                .await?
                > 0
            {
                kept.extend(sqlx::query_as(LOGGED).fetch_all(&mut earlier).await?);
            }
            sqlx::Connection::close(earlier).await?;
        }
        send_log.keep(&kept)?;
        for suffix in ["", "-wal", "-shm"] {
            let mut path = earlier_file.clone().into_os_string();
            path.push(suffix);
            logged_sends::remove_if_there(std::path::Path::new(&path))?;
        }
        Ok(())
    }

    /// A connection for reads.
    pub async fn read(&self) -> Result<Pooled> {
        Ok(match self {
            Db::Sqlite { reader, .. } => Pooled::Sqlite(reader.acquire().await?),
            Db::Postgres(pool) => Pooled::Postgres(pool.acquire().await?),
        })
    }

    /// A connection for a single write statement.
    pub async fn write(&self) -> Result<Pooled> {
        Ok(match self {
            Db::Sqlite { writer, .. } => Pooled::Sqlite(writer.acquire().await?),
            Db::Postgres(pool) => Pooled::Postgres(pool.acquire().await?),
        })
    }

    /// A write transaction. Never hold one across a network call or a wait.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(match self {
            // IMMEDIATE takes the write lock up front, waiting under busy_timeout. A deferred
            // transaction that reads first fails at once (SQLITE_BUSY_SNAPSHOT) when it comes
            // to write after another process (a CLI command) committed in between.
            Db::Sqlite { writer, .. } => Tx::Sqlite(writer.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.read().await?;
        on_conn!(conn.conn(), c => sqlx::query("SELECT 1").execute(&mut *c).await.map(drop))?;
        Ok(())
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite {
                reader,
                writer,
                checkpoints,
                send_log: _,
            } => {
                if let Some(checkpoints) = checkpoints {
                    checkpoints.send_replace(());
                }
                reader.close().await;
                writer.close().await;
            }
            Db::Postgres(pool) => pool.close().await,
        }
    }
}

/// How often the background checkpoint copies SQLite's write-ahead log into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// SQLite copies its write-ahead log back into the database file (a checkpoint) on the
/// connection whose commit takes the log past 1,000 pages, and the log starts over from its
/// beginning only when a write transaction begins with all of it copied. Left to the writer,
/// the copy and its `fsync` stall the single writer: a paced lane's next claim waited ~40 ms
/// out (the WhatsApp run lost 3 % of its 80/s); while the http benchmark sends, the writer's
/// thread spent ~3 % of its time copying pages, and one of its `fsync`s took 51 ms, which the
/// lane's claims queued behind.
///
/// A connection of its own therefore checkpoints every [`CHECKPOINT_EVERY`], in two steps:
/// - PASSIVE, alongside the writer: it neither waits for nor blocks the writer or the readers,
///   and copies nearly all of the log;
/// - then PASSIVE again while it holds the writer's connection, idle: it copies what the writer
///   added meanwhile (a few pages), so that the writer's next transaction finds the log all
///   copied and starts it over. Without this step, a passive checkpoint never catches up with
///   a writer that commits without pause, and the log grows without end.
///
/// The writer's own checkpoints stay as the backstop, for a log that a long read keeps from
/// starting over. A crash loses nothing: the log is the durable copy until then. Returns the
/// handle whose last drop (or [`Db::close`]) ends it.
fn checkpoint_in_background(
    checkpointer: SqlitePool,
    writer: SqlitePool,
) -> Arc<watch::Sender<()>> {
    let (stop, mut stopped) = watch::channel(());
    tokio::spawn(async move {
        let mut every = tokio::time::interval(CHECKPOINT_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                // A close, or every handle dropped.
                _ = stopped.changed() => break,
            }
            match checkpoint(&checkpointer, &writer).await {
                Ok(()) => {}
                // Closed while this round waited for the writer: the close follows.
                Err(StoreError::Database(sqlx::Error::PoolClosed)) => break,
                Err(error) => tracing::warn!(%error, "write-ahead log checkpoint failed"),
            }
        }
        // The last connection to close checkpoints the whole log.
        checkpointer.close().await;
    });
    Arc::new(stop)
}

/// One round of [`checkpoint_in_background`].
async fn checkpoint(checkpointer: &SqlitePool, writer: &SqlitePool) -> Result<()> {
    // (busy, pages in the log, pages of it copied into the database)
    let passive = "PRAGMA wal_checkpoint(PASSIVE)";
    let (_, in_log, _): (i64, i64, i64) = sqlx::query_as(passive).fetch_one(checkpointer).await?;
    if in_log > 0 {
        let idle_writer = writer.acquire().await?;
        sqlx::query(passive).execute(checkpointer).await?;
        drop(idle_writer);
    }
    Ok(())
}

fn migrator(embedded: &'static sqlx::migrate::Migrator) -> sqlx::migrate::Migrator {
    let mut migrator = sqlx::migrate::Migrator {
        migrations: embedded.migrations.clone(),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
}

/// A connection checked out of a pool.
pub enum Pooled {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

impl Pooled {
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Pooled::Sqlite(c) => Conn::Sqlite(c),
            Pooled::Postgres(c) => Conn::Postgres(c),
        }
    }
}

/// An open transaction; dropped without [`Tx::commit`], it rolls back.
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl Tx {
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Tx::Sqlite(tx) => Conn::Sqlite(tx),
            Tx::Postgres(tx) => Conn::Postgres(tx),
        }
    }

    pub async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

/// Tells every process listening on `channel` of a PostgreSQL database: delivered when the
/// transaction commits, and not at all if it rolls back. Nothing on SQLite, which one process
/// serves.
async fn notify(conn: Conn<'_>, channel: &str, payload: String) -> Result<()> {
    if let Conn::Postgres(c) = conn {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}

/// A borrowed connection of either dialect: what store functions run statements on.
pub enum Conn<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

impl Conn<'_> {
    pub fn dialect(&self) -> Dialect {
        match self {
            Conn::Sqlite(_) => Dialect::Sqlite,
            Conn::Postgres(_) => Dialect::Postgres,
        }
    }

    /// A shorter borrow, to run several statements on one connection.
    pub fn reborrow(&mut self) -> Conn<'_> {
        match self {
            Conn::Sqlite(c) => Conn::Sqlite(c),
            Conn::Postgres(c) => Conn::Postgres(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::*;

    /// A database in a file of its own, with its URL; the file goes with the directory.
    pub(super) async fn on_a_file() -> (tempfile::TempDir, String, Db) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("herald.db").display());
        let db = Db::connect(&url, &DbOptions::default())
            .await
            .expect("the database opens");
        (dir, url, db)
    }

    async fn in_memory() -> (Db, SqlitePool) {
        let db = Db::connect("sqlite::memory:", &DbOptions::default())
            .await
            .expect("an in-memory database opens");
        let Db::Sqlite { writer, .. } = &db else {
            unreachable!("a sqlite: URL opens SQLite")
        };
        let writer = writer.clone();
        (db, writer)
    }

    /// SQLite evaluates `x IN (more than two constants)` in a CHECK constraint by building a
    /// temporary index of the constants for every row it writes. A message is written three
    /// times on its way out (launch, claim, record), so its table must not have one.
    #[tokio::test]
    async fn writing_a_message_builds_no_temporary_index() {
        let (db, writer) = in_memory().await;
        db.migrate().await.expect("migrations run");
        let statements = [
            "INSERT INTO messages (id, workspace_id, sender_id, direction, phone, status, not_before,
                                   created_at, updated_at)
             VALUES (x'01', x'02', x'03', 'outbound', '+201000000000', 'pending', '', '', '')",
            "UPDATE messages SET status = 'sent', sent_at = '' WHERE id = x'01'",
        ];
        for statement in statements {
            let program = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN {statement}")))
                .fetch_all(&writer)
                .await
                .expect("the statement compiles");
            let opcodes: Vec<String> = program
                .iter()
                .map(|instruction| instruction.get::<String, _>("opcode"))
                .collect();
            assert!(!opcodes.is_empty());
            assert!(
                !opcodes.iter().any(|opcode| opcode == "OpenEphemeral"),
                "{statement} builds a temporary index per row: {opcodes:?}"
            );
        }
    }

    /// A writer that keeps a transaction open nearly all the time: a passive checkpoint alone
    /// never finds the whole log copied when the writer begins, so the log would grow with every
    /// commit. The checkpointer's second step, with the writer held idle, lets it start over:
    /// the log's file stays smaller than what was written through it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_starts_over_under_a_writer_that_never_pauses() {
        let (dir, url, db) = on_a_file().await;
        let Db::Sqlite { writer, .. } = &db else {
            unreachable!("a sqlite: URL opens SQLite")
        };
        let writer = writer.clone();
        sqlx::query("CREATE TABLE filler (bytes BLOB NOT NULL)")
            .execute(&writer)
            .await
            .expect("a table");
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&writer)
            .await
            .expect("an empty log to start from");
        let checkpointer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .expect("a checkpointing connection");

        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let busy_writer = tokio::spawn({
            let (writer, stop) = (writer.clone(), stop.clone());
            async move {
                let mut written = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut tx = writer.begin().await.expect("a transaction");
                    let rows = "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 16)
                                INSERT INTO filler SELECT randomblob(1024) FROM n";
                    sqlx::query(rows).execute(&mut *tx).await.expect("rows");
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    tx.commit().await.expect("a commit");
                    written += 16 * 1024;
                }
                written
            }
        });
        for _ in 0..30 {
            checkpoint(&checkpointer, &writer)
                .await
                .expect("a checkpoint");
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let written = busy_writer.await.expect("the writer ends");

        let log = std::fs::metadata(dir.path().join("herald.db-wal"))
            .expect("the log's file")
            .len();
        assert!(written >= 256 * 1024, "the writer wrote {written} bytes");
        // Each commit writes whole 16 KiB pages for its 16 KiB of rows: a log that never started
        // over holds more than was written (~2.6 times here), one that did a fraction of it.
        assert!(
            log < written,
            "the log's file grew to {log} bytes for {written} bytes written: it never started over"
        );
        checkpointer.close().await;
        db.close().await;
    }

    #[tokio::test]
    async fn a_new_database_has_sixteen_kib_pages() {
        let (_dir, _, db) = on_a_file().await;
        db.migrate().await.expect("migrations run");
        let mut conn = db.read().await.expect("a reader");
        let Conn::Sqlite(reader) = conn.conn() else {
            unreachable!("a sqlite: URL opens SQLite")
        };
        let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(&mut *reader)
            .await
            .expect("the page size reads");
        assert_eq!(page_size, 16384);
        drop(conn);
        db.close().await;
    }

    /// Migration 5 rebuilds `messages`: a database migrated before it keeps every message,
    /// column for column, and the rebuilt table still refuses an unknown status.
    #[tokio::test]
    async fn rebuilding_the_messages_table_keeps_every_message() {
        let (_db, writer) = in_memory().await;
        let mut before_rebuild = migrator(&SQLITE_MIGRATOR);
        before_rebuild.migrations = SQLITE_MIGRATOR
            .migrations
            .iter()
            .filter(|migration| migration.version < 5)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        before_rebuild
            .run(&writer)
            .await
            .expect("migrations 1 to 4 run");
        sqlx::raw_sql(
            "INSERT INTO workspaces (id, name, created_at) VALUES (x'01', 'w', 't');
             INSERT INTO senders (id, workspace_id, name, provider, callback_secret, created_at, updated_at)
             VALUES (x'02', x'01', 's', 'sandbox', 'secret', 't', 't');
             INSERT INTO campaigns (id, workspace_id, name, sender_id, content, audience, created_at, updated_at)
             VALUES (x'03', x'01', 'c', x'02', 'Hi', '{\"type\":\"all\"}', 't', 't');
             INSERT INTO messages (id, workspace_id, campaign_id, sender_id, contact_id, direction, phone,
                                   body, media_url, status, attempts, not_before, lease_expires_at,
                                   provider_message_id, error, created_at, updated_at, sent_at,
                                   delivered_at, read_at, failed_at)
             VALUES (x'10', x'01', x'03', x'02', x'04', 'outbound', '+201000000001', NULL, 'https://m/1',
                     'read', 1, 'nb', NULL, 'wamid.1', NULL, 'c', 'u', 's', 'd', 'r', NULL),
                    (x'11', x'01', NULL, x'02', NULL, 'outbound', '+201000000002', 'Hello', NULL,
                     'sending', 2, 'nb', 'lease', NULL, 'timeout', 'c', 'u', NULL, NULL, NULL, NULL);",
        )
        .execute(&writer)
        .await
        .expect("the rows go in");
        let everything = "SELECT quote(id) || quote(workspace_id) || quote(campaign_id) || quote(sender_id)
                                 || quote(contact_id) || direction || phone || quote(body) || quote(media_url)
                                 || status || attempts || not_before || quote(lease_expires_at)
                                 || quote(provider_message_id) || quote(error) || created_at || updated_at
                                 || quote(sent_at) || quote(delivered_at) || quote(read_at) || quote(failed_at)
                          FROM messages ORDER BY id";
        let before: Vec<String> = sqlx::query_scalar(everything)
            .fetch_all(&writer)
            .await
            .expect("messages read");

        migrator(&SQLITE_MIGRATOR)
            .run(&writer)
            .await
            .expect("the rebuild runs");

        let after: Vec<String> = sqlx::query_scalar(everything)
            .fetch_all(&writer)
            .await
            .expect("messages read");
        assert_eq!(after, before);
        assert_eq!(before.len(), 2);
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'messages'
                                                 AND sql IS NOT NULL ORDER BY name",
        )
        .fetch_all(&writer)
        .await
        .expect("indexes read");
        assert_eq!(
            indexes,
            [
                "messages_campaign_status",
                "messages_claim",
                "messages_contact",
                "messages_in_flight",
                "messages_inbound_once",
                "messages_provider_id",
                "messages_single_due"
            ]
        );
        let table: String = sqlx::query_scalar(
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'messages'",
        )
        .fetch_one(&writer)
        .await
        .expect("the table's definition reads");
        assert!(
            table.contains("status = 'pending' OR") && !table.contains("status IN"),
            "the rebuilt table checks its status with =s: {table}"
        );
        let unknown = sqlx::query("UPDATE messages SET status = 'lost' WHERE id = x'10'")
            .execute(&writer)
            .await;
        assert!(unknown.is_err(), "an unknown status is refused");
    }

    #[test]
    fn duplicates_name_what_exists_in_both_dialects() {
        assert_eq!(
            duplicate_subject(Some("contacts_phone_unique"), "duplicate key value"),
            "a contact with this phone"
        );
        assert_eq!(
            duplicate_subject(
                None,
                "UNIQUE constraint failed: contacts.workspace_id, contacts.phone"
            ),
            "a contact with this phone"
        );
        assert_eq!(
            duplicate_subject(None, "UNIQUE constraint failed: x.y"),
            "a record with these values"
        );
    }
}
