//! The job queues (apalis) for coarse work: launching a campaign at its `scheduled_at`, and
//! importing a CSV of contacts, each kind in a queue of its own. Jobs live in the same database,
//! so one whose process died is run by the next process that polls; one that was never queued
//! (its process died between the commit that asked for it and the push) is found by a sweep of
//! the engine. Recipients are rows, never jobs (see DESIGN.md).

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::Shared;
use crate::domain::ids::{CampaignId, ImportId, WorkspaceId};
use crate::service::campaigns::LaunchBy;
use crate::store::Db;

/// Import an uploaded CSV of contacts. Its own queue (`herald.import`): a job of one kind can
/// never be decoded as another, and an unknown field is refused rather than ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportContacts {
    pub import_id: ImportId,
}

/// Launch a scheduled campaign. Its own queue (`herald.launch`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchCampaign {
    pub workspace_id: WorkspaceId,
    pub campaign_id: CampaignId,
}

/// How often workers look for due jobs. Run-at times have one-second granularity, so a
/// campaign starts within about a second of its time.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// apalis 1.0 can lose the wake-up of its poll when a fetch completes at once (it parks the
/// waker without polling the tick stream again); its heartbeat timer wakes the worker too, so a
/// short heartbeat bounds how long a due launch can wait.
const HEARTBEAT: Duration = Duration::from_millis(500);
/// Finished jobs are kept this long, then vacuumed: on SQLite, acks slow down as they pile up.
const KEEP_FINISHED: Duration = Duration::from_secs(3600);

/// The job queues, in Herald's own database: one per kind of job, both on the same dialect.
#[derive(Clone)]
pub enum JobQueue {
    Sqlite {
        launches: SqliteStorage<LaunchCampaign>,
        imports: SqliteStorage<ImportContacts>,
    },
    Postgres {
        launches: PostgresStorage<LaunchCampaign>,
        imports: PostgresStorage<ImportContacts>,
    },
}

/// A job queue's error, with its cause kept.
#[derive(Debug, thiserror::Error)]
#[error("job queue: {0}")]
pub struct JobError(#[source] BoxDynError);

fn queue_error(error: impl Into<BoxDynError>) -> JobError {
    JobError(error.into())
}

const LAUNCH_QUEUE: &str = "herald.launch";
const IMPORT_QUEUE: &str = "herald.import";
/// Jobs a worker fetches at once.
const BATCH: usize = 16;

impl JobQueue {
    /// Opens the queues in Herald's database, creating their tables when missing.
    pub async fn open(db: &Db) -> Result<Self, JobError> {
        match db {
            Db::Sqlite { jobs, .. } => {
                // Only the queue's tables: `SqliteStorage::setup` would also turn its
                // connection's durability off (`synchronous = OFF`), give it a 250 MB page cache
                // and run `PRAGMA optimize`, whose scan of a million-row table then stays in that
                // cache for the life of the process. Herald's connection options already set WAL.
                SqliteStorage::<()>::migrations()
                    .run(jobs)
                    .await
                    .map_err(queue_error)?;
                let settings = |queue: &str| {
                    apalis_sqlite::Config::default()
                        .queue(queue)
                        .batch_size(BATCH)
                        .heartbeat_interval(HEARTBEAT)
                };
                Ok(Self::Sqlite {
                    launches: SqliteStorage::new(jobs).with_config(settings(LAUNCH_QUEUE)),
                    imports: SqliteStorage::new(jobs).with_config(settings(IMPORT_QUEUE)),
                })
            }
            Db::Postgres(pool) => {
                PostgresStorage::setup(pool).await.map_err(queue_error)?;
                let settings = |queue: &str| {
                    apalis_postgres::Config::default()
                        .queue(queue)
                        .batch_size(BATCH)
                        .heartbeat_interval(HEARTBEAT)
                };
                Ok(Self::Postgres {
                    launches: PostgresStorage::new(pool).with_config(settings(LAUNCH_QUEUE)),
                    imports: PostgresStorage::new(pool).with_config(settings(IMPORT_QUEUE)),
                })
            }
        }
    }

    /// Queues the launch of a campaign at `at`.
    pub async fn schedule_launch(
        &self,
        job: LaunchCampaign,
        at: DateTime<Utc>,
    ) -> Result<(), JobError> {
        // Whole seconds, rounded up: never before the campaign's time.
        let seconds = at.timestamp() + i64::from(at.timestamp_subsec_nanos() > 0);
        let task = TaskBuilder::new(job)
            .run_at_timestamp(u64::try_from(seconds).unwrap_or(0))
            .build();
        match self.clone() {
            Self::Sqlite { mut launches, .. } => {
                launches.push_task(task).await.map_err(queue_error)
            }
            Self::Postgres { mut launches, .. } => {
                launches.push_task(task).await.map_err(queue_error)
            }
        }
    }

    /// Queues an import to run now.
    pub async fn queue_import(&self, import_id: ImportId) -> Result<(), JobError> {
        let task = TaskBuilder::new(ImportContacts { import_id }).build();
        match self.clone() {
            Self::Sqlite { mut imports, .. } => imports.push_task(task).await.map_err(queue_error),
            Self::Postgres { mut imports, .. } => {
                imports.push_task(task).await.map_err(queue_error)
            }
        }
    }

    /// Removes jobs that finished more than an hour ago. Not apalis' own `vacuum_before`: on
    /// SQLite it ends with a `VACUUM` of the whole database file, which would rewrite every
    /// message row and stall the writer; PostgreSQL's storage has none.
    async fn vacuum(&self, now: DateTime<Utc>) -> Result<u64, JobError> {
        let before = now - chrono::Duration::from_std(KEEP_FINISHED).unwrap_or_default();
        // Finished jobs of every queue share one table.
        let deleted = match self {
            Self::Sqlite { launches, .. } => sqlx::query(
                "DELETE FROM Jobs WHERE status IN ('Done', 'Killed') AND done_at IS NOT NULL AND done_at < $1",
            )
            .bind(before.timestamp())
            .execute(launches.pool())
            .await
            .map(|done| done.rows_affected()),
            Self::Postgres { launches, .. } => sqlx::query(
                "DELETE FROM apalis.jobs WHERE status IN ('Done', 'Killed') AND done_at IS NOT NULL AND done_at < $1",
            )
            .bind(before)
            .execute(launches.pool())
            .await
            .map(|done| done.rows_affected()),
        };
        deleted.map_err(queue_error)
    }
}

async fn run_launch(job: LaunchCampaign, shared: Data<Arc<Shared>>) -> Result<(), BoxDynError> {
    launch(job, &shared).await
}

async fn run_import(job: ImportContacts, shared: Data<Arc<Shared>>) -> Result<(), BoxDynError> {
    crate::service::imports::run(
        &shared.db,
        shared.clock.as_ref(),
        &shared.owner,
        job.import_id,
    )
    .await?;
    Ok(())
}

async fn launch(job: LaunchCampaign, shared: &Shared) -> Result<(), BoxDynError> {
    crate::service::campaigns::launch(
        &shared.db,
        job.workspace_id,
        job.campaign_id,
        LaunchBy::Schedule,
        shared.clock.now(),
    )
    .await?;
    Ok(())
}

impl crate::service::campaigns::LaunchQueue for JobQueue {
    fn schedule_launch<'a>(
        &'a self,
        workspace: WorkspaceId,
        campaign: CampaignId,
        at: DateTime<Utc>,
    ) -> futures::future::BoxFuture<'a, Result<(), String>> {
        let job = LaunchCampaign {
            workspace_id: workspace,
            campaign_id: campaign,
        };
        Box::pin(async move {
            JobQueue::schedule_launch(self, job, at)
                .await
                .map_err(|error| error.to_string())
        })
    }
}

/// Runs the launch and import workers and the vacuum of finished jobs until the engine shuts
/// down.
pub(super) fn spawn_worker(queue: JobQueue, shared: Arc<Shared>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let vacuuming = tokio::spawn({
            let queue = queue.clone();
            let shared = shared.clone();
            let mut shutdown = shared.shutdown.clone();
            async move {
                loop {
                    match queue.vacuum(shared.clock.now()).await {
                        Ok(0) => {}
                        Ok(removed) => tracing::debug!(removed, "finished jobs vacuumed"),
                        Err(error) => tracing::warn!(%error, "job vacuum failed"),
                    }
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(600)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        });
        let stopping = |mut shutdown: tokio::sync::watch::Receiver<bool>| async move {
            let _ = shutdown.changed().await;
            Ok::<(), std::io::Error>(())
        };
        macro_rules! worker {
            ($storage:expr, $name:expr, $handler:expr) => {
                WorkerBuilder::new($name)
                    .backend($storage.poll_with_interval(POLL_EVERY))
                    .data(shared.clone())
                    .build($handler)
                    .run_until(stopping(shared.shutdown.clone()))
            };
        }
        let (launch_worker, import_worker) = (
            format!("herald-launch-{}", shared.owner),
            format!("herald-import-{}", shared.owner),
        );
        let results = match queue {
            JobQueue::Sqlite { launches, imports } => tokio::join!(
                worker!(launches, launch_worker.as_str(), run_launch),
                worker!(imports, import_worker.as_str(), run_import)
            ),
            JobQueue::Postgres { launches, imports } => tokio::join!(
                worker!(launches, launch_worker.as_str(), run_launch),
                worker!(imports, import_worker.as_str(), run_import)
            ),
        };
        vacuuming.abort();
        for result in [results.0, results.1] {
            if let Err(error) = result {
                tracing::error!(%error, "job worker stopped");
            }
        }
    })
}

impl crate::service::imports::ImportQueue for JobQueue {
    fn queue_import(&self, id: ImportId) -> futures::future::BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            JobQueue::queue_import(self, id)
                .await
                .map_err(|error| error.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DbOptions;

    #[tokio::test]
    async fn opening_the_queue_keeps_the_connection_settings_of_herald() {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let url = format!("sqlite://{}", dir.path().join("herald.db").display());
        let db = Db::connect(&url, &DbOptions::default())
            .await
            .expect("the database opens");
        db.migrate().await.expect("migrations run");
        JobQueue::open(&db).await.expect("the queue opens");
        let Db::Sqlite { jobs, .. } = &db else {
            unreachable!("a sqlite URL opens SQLite")
        };
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(jobs)
            .await
            .expect("pragma reads");
        let cache_size: i64 = sqlx::query_scalar("PRAGMA cache_size")
            .fetch_one(jobs)
            .await
            .expect("pragma reads");
        assert_eq!(
            synchronous, 1,
            "NORMAL: commits stay durable across crashes"
        );
        assert_eq!(
            cache_size, -32_000,
            "Herald's 32 MB page cache, not 64,000 pages"
        );
    }
}
