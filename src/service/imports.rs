//! CSV imports of contacts: an upload is refused at once when its header row cannot import,
//! stored, and run by the engine. A run reads rows in batches, each batch written in one transaction
//! together with the import's progress, so a rerun after a crash resumes after the last batch
//! written. A bad row is reported with its line and never stops the good ones.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};

use super::{ServiceError, ServiceResult};
use crate::clock::Clock;
use crate::domain::contact::{normalize_tags, parse_email, parse_timezone};
use crate::domain::ids::{ImportId, WorkspaceId};
use crate::domain::phone::Phone;
use crate::store::contacts::{self, ContactFields};
use crate::store::imports::{self, Import, MAX_ERRORS_KEPT, Progress, RowError};
use crate::store::{Db, StoreError};

/// Rows written per transaction.
const BATCH: usize = 1000;

/// Checks a file's header row before it is queued, so an upload that can never import is
/// refused at once.
pub fn check_header(csv: &[u8]) -> Result<(), String> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(csv);
    Columns::read(&mut reader).map(drop)
}

/// Stores a CSV upload whose header row is usable; the engine runs it (its rows are read then,
/// and each bad row is reported on the import).
pub async fn upload(
    db: &Db,
    workspace: WorkspaceId,
    csv: &[u8],
    now: DateTime<Utc>,
) -> ServiceResult<Import> {
    if csv.iter().all(u8::is_ascii_whitespace) {
        return Err(ServiceError::validation(
            "body",
            "send the CSV file as the body, with a header row",
        ));
    }
    check_header(csv).map_err(|error| ServiceError::validation("body", error))?;
    let mut conn = db.write().await?;
    Ok(imports::insert(conn.conn(), workspace, csv, now).await?)
}

pub async fn get(db: &Db, workspace: WorkspaceId, id: ImportId) -> ServiceResult<Import> {
    let mut conn = db.read().await?;
    Ok(imports::get(conn.conn(), workspace, id).await?)
}

/// Runs import `id` to its end, as `owner`. An import already finished (or deleted), or taken
/// by another run, is left alone.
pub async fn run(db: &Db, clock: &dyn Clock, owner: &str, id: ImportId) -> Result<(), StoreError> {
    let started = {
        let now = clock.now();
        let mut conn = db.write().await?;
        imports::start(conn.conn(), id, owner, now, now + imports::IMPORT_LEASE).await
    };
    let (import, csv) = match started {
        Ok(started) => started,
        Err(StoreError::NotFound) => return Ok(()),
        Err(error) => return Err(error),
    };
    let mut run = ImportRun {
        db,
        clock,
        owner,
        id,
        workspace: import.workspace_id,
        progress: Progress::from(&import),
        batch: Vec::new(),
        phones_in_batch: HashSet::new(),
    };
    let completed = match run.rows(&csv).await {
        Ok(()) => true,
        Err(RowsError::File(message)) => {
            run.progress.errors.push(RowError { line: 1, message });
            false
        }
        Err(RowsError::Store(error)) => return Err(error),
        Err(RowsError::TakenOver) => {
            taken_over(id);
            return Ok(());
        }
    };
    let mut conn = db.write().await?;
    if !imports::finish(
        conn.conn(),
        id,
        owner,
        &run.progress,
        completed,
        clock.now(),
    )
    .await?
    {
        taken_over(id);
        return Ok(());
    }
    tracing::info!(
        import_id = %id,
        total = run.progress.total,
        created = run.progress.created,
        updated = run.progress.updated,
        failed = run.progress.failed,
        "contact import finished"
    );
    Ok(())
}

/// A run whose lease ran out (it stalled) while another run took the import stops writing.
fn taken_over(id: ImportId) {
    tracing::warn!(import_id = %id, "import taken over by another run; this one stops");
}

enum RowsError {
    /// The file as a whole cannot be imported (no header, no phone column).
    File(String),
    /// Another run holds the import now.
    TakenOver,
    Store(StoreError),
}

impl From<StoreError> for RowsError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

struct ImportRun<'a> {
    db: &'a Db,
    clock: &'a dyn Clock,
    owner: &'a str,
    id: ImportId,
    workspace: WorkspaceId,
    progress: Progress,
    batch: Vec<ContactFields>,
    phones_in_batch: HashSet<String>,
}

impl ImportRun<'_> {
    async fn rows(&mut self, csv: &[u8]) -> Result<(), RowsError> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(csv);
        let columns = Columns::read(&mut reader).map_err(RowsError::File)?;
        // Rows a previous run already wrote (and counted) are skipped.
        let done = u64::try_from(self.progress.total).unwrap_or_default();
        let mut record = csv::StringRecord::new();
        let mut index = 0u64;
        loop {
            let line = reader.position().line();
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) if record.iter().all(str::is_empty) => continue,
                Ok(true) => {
                    index += 1;
                    if index <= done {
                        continue;
                    }
                    self.progress.total += 1;
                    match columns.contact(&record) {
                        Ok(fields) => self.push(fields).await?,
                        Err(message) => self.fail(line, message),
                    }
                }
                Err(error) => {
                    index += 1;
                    if index <= done {
                        continue;
                    }
                    self.progress.total += 1;
                    let line = error.position().map_or(line, csv::Position::line);
                    self.fail(line, format!("unreadable row: {error}"));
                }
            }
            if self.batch.len() >= BATCH {
                self.flush().await?;
            }
        }
        self.flush().await?;
        Ok(())
    }

    async fn push(&mut self, fields: ContactFields) -> Result<(), RowsError> {
        let phone = fields
            .phone
            .as_ref()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        // The same phone twice in a file: the later row updates what the earlier one wrote.
        if self.phones_in_batch.contains(&phone) {
            self.flush().await?;
        }
        self.phones_in_batch.insert(phone);
        self.batch.push(fields);
        Ok(())
    }

    fn fail(&mut self, line: u64, message: String) {
        self.progress.failed += 1;
        if self.progress.errors.len() < MAX_ERRORS_KEPT {
            self.progress.errors.push(RowError { line, message });
        }
    }

    async fn flush(&mut self) -> Result<(), RowsError> {
        let rows = std::mem::take(&mut self.batch);
        self.phones_in_batch.clear();
        let now = self.clock.now();
        let mut tx = self.db.begin().await?;
        let written = contacts::upsert_batch(&mut tx, self.workspace, rows, now).await?;
        self.progress.created += i64::try_from(written.created).unwrap_or(i64::MAX);
        self.progress.updated += i64::try_from(written.updated).unwrap_or(i64::MAX);
        // Dropped without a commit, the batch's rows go with it.
        if !imports::record_progress(tx.conn(), self.id, self.owner, &self.progress, now).await? {
            return Err(RowsError::TakenOver);
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Where each field is in a row, from the header: `phone`, `name`, `email`, `tags` (separated
/// by `;`), `timezone`; any other column is a custom field.
struct Columns {
    phone: usize,
    name: Option<usize>,
    email: Option<usize>,
    tags: Option<usize>,
    timezone: Option<usize>,
    custom: Vec<(usize, String)>,
}

impl Columns {
    fn read(reader: &mut csv::Reader<&[u8]>) -> Result<Self, String> {
        let header = reader
            .headers()
            .map_err(|error| format!("the header row cannot be read: {error}"))?
            .clone();
        let mut columns = Columns {
            phone: usize::MAX,
            name: None,
            email: None,
            tags: None,
            timezone: None,
            custom: Vec::new(),
        };
        for (index, title) in header.iter().enumerate() {
            let title = title.trim_start_matches('\u{feff}').trim();
            match title.to_ascii_lowercase().as_str() {
                "phone" => columns.phone = index,
                "name" => columns.name = Some(index),
                "email" => columns.email = Some(index),
                "tags" => columns.tags = Some(index),
                "timezone" => columns.timezone = Some(index),
                "" => {}
                _ => columns.custom.push((index, title.to_owned())),
            }
        }
        if columns.phone == usize::MAX {
            return Err("the header row has no 'phone' column".into());
        }
        Ok(columns)
    }

    fn contact(&self, record: &csv::StringRecord) -> Result<ContactFields, String> {
        let cell = |index: Option<usize>| {
            index
                .and_then(|index| record.get(index))
                .filter(|value| !value.is_empty())
        };
        let phone = cell(Some(self.phone)).ok_or("phone is empty")?;
        let phone = Phone::parse(phone).map_err(|error| error.to_string())?;
        let email = cell(self.email)
            .map(parse_email)
            .transpose()
            .map_err(|error| error.to_string())?;
        let timezone = cell(self.timezone)
            .map(|zone| parse_timezone(zone).map(|_| zone.to_owned()))
            .transpose()
            .map_err(|error| error.to_string())?;
        let tags = cell(self.tags).map_or_else(Vec::new, |tags| normalize_tags(tags.split(';')));
        let custom_fields: BTreeMap<String, String> = self
            .custom
            .iter()
            .filter_map(|(index, name)| Some((name.clone(), cell(Some(*index))?.to_owned())))
            .collect();
        Ok(ContactFields {
            phone: Some(phone),
            name: cell(self.name).map(str::to_owned),
            email,
            tags,
            custom_fields,
            timezone,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::workspace_with_one_contact;

    #[tokio::test]
    async fn an_upload_without_a_phone_column_is_refused_before_it_is_stored() {
        let (db, ws, _) = workspace_with_one_contact().await;
        for csv in [&b" \n"[..], b"name,email\nJane,j@example.com\n"] {
            let refused = upload(&db, ws, csv, Utc::now()).await;
            assert!(
                matches!(refused, Err(ServiceError::Validation(_))),
                "{refused:?}"
            );
        }
    }
}
