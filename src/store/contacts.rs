//! Contacts, keyed by E.164 phone within a workspace. Tags live twice: as the JSON array the API
//! shows, and as `contact_tags` rows that audiences query; both change in one transaction.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use sqlx::types::Json;

use super::events::{self, NewEvent};
use super::sql::{
    Param, SqlBuilder, bind_params, contains_pattern, fetch_page, rows_per_statement,
};
use super::{Conn, Dialect, Page, Result, StoreError, Tx, on_conn};
use crate::domain::event::{ContactEvent, EventType};
use crate::domain::ids::{ContactId, WorkspaceId};
use crate::domain::phone::Phone;

macro_rules! columns {
    () => {
        "id, workspace_id, phone, name, email, tags, custom_fields, timezone, opted_out_at, \
         blocked, created_at, updated_at"
    };
}

#[derive(Clone, Debug, PartialEq, FromRow)]
pub struct Contact {
    pub id: ContactId,
    pub workspace_id: WorkspaceId,
    pub phone: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub tags: Json<Vec<String>>,
    pub custom_fields: Json<BTreeMap<String, String>>,
    pub timezone: Option<String>,
    pub opted_out_at: Option<DateTime<Utc>>,
    pub blocked: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A contact's editable fields, already validated (phone parsed, tags normalised, time zone
/// known).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContactFields {
    pub phone: Option<Phone>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub tags: Vec<String>,
    pub custom_fields: BTreeMap<String, String>,
    pub timezone: Option<String>,
}

impl ContactFields {
    pub fn new(phone: Phone) -> Self {
        Self {
            phone: Some(phone),
            ..Self::default()
        }
    }

    fn phone(&self) -> Result<&str> {
        self.phone
            .as_ref()
            .map(Phone::as_str)
            .ok_or_else(|| StoreError::Corrupt("a contact needs a phone".into()))
    }
}

impl From<&Contact> for ContactFields {
    fn from(contact: &Contact) -> Self {
        Self {
            phone: Some(Phone::from_trusted(contact.phone.clone())),
            name: contact.name.clone(),
            email: contact.email.clone(),
            tags: contact.tags.0.clone(),
            custom_fields: contact.custom_fields.0.clone(),
            timezone: contact.timezone.clone(),
        }
    }
}

impl ContactFields {
    /// Takes what an imported row says about an existing contact: the name, email and time
    /// zone it gives replace the old ones, its tags are added, its custom fields set.
    pub fn absorb(&mut self, row: ContactFields) {
        if row.name.is_some() {
            self.name = row.name;
        }
        if row.email.is_some() {
            self.email = row.email;
        }
        if row.timezone.is_some() {
            self.timezone = row.timezone;
        }
        for tag in row.tags {
            if !self.tags.contains(&tag) {
                self.tags.push(tag);
            }
        }
        self.custom_fields.extend(row.custom_fields);
    }
}

#[derive(Clone, Debug, Default)]
pub struct ContactFilter {
    /// Part of the name, phone or email, case-insensitive.
    pub search: Option<String>,
    pub tag: Option<String>,
    pub opted_out: Option<bool>,
    pub blocked: Option<bool>,
}

pub async fn insert(
    tx: &mut Tx,
    workspace: WorkspaceId,
    fields: &ContactFields,
    now: DateTime<Utc>,
) -> Result<Contact> {
    let id = ContactId::generate();
    let phone = fields.phone()?;
    on_conn!(tx.conn(), c => sqlx::query(
        "INSERT INTO contacts (id, workspace_id, phone, name, email, tags, custom_fields, timezone,
                               blocked, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
    )
    .bind(id)
    .bind(workspace)
    .bind(phone)
    .bind(fields.name.as_deref())
    .bind(fields.email.as_deref())
    .bind(Json(&fields.tags))
    .bind(Json(&fields.custom_fields))
    .bind(fields.timezone.as_deref())
    .bind(false)
    .bind(now)
    .execute(&mut *c)
    .await.map(drop))?;
    write_tags(tx.conn(), workspace, id, &fields.tags).await?;
    let contact = get(tx.conn(), workspace, id).await?;
    announce(tx.conn(), &contact, EventType::ContactCreated, now).await?;
    Ok(contact)
}

/// Appends the event of a change to `contact`.
async fn announce(
    conn: Conn<'_>,
    contact: &Contact,
    kind: EventType,
    now: DateTime<Utc>,
) -> Result<()> {
    events::append(conn, &[contact_event(contact, kind, now)?]).await
}

fn contact_event(contact: &Contact, kind: EventType, now: DateTime<Utc>) -> Result<NewEvent> {
    let data = ContactEvent {
        contact_id: contact.id,
        phone: contact.phone.clone(),
        name: contact.name.clone(),
        opted_out: contact.opted_out_at.is_some(),
    };
    NewEvent::new(contact.workspace_id, kind, contact.id, &data, now)
}

/// Replaces every editable field of a contact.
pub async fn update(
    tx: &mut Tx,
    workspace: WorkspaceId,
    id: ContactId,
    fields: &ContactFields,
    now: DateTime<Utc>,
) -> Result<Contact> {
    let phone = fields.phone()?;
    let updated = on_conn!(tx.conn(), c => sqlx::query(
        "UPDATE contacts SET phone = $3, name = $4, email = $5, tags = $6, custom_fields = $7,
                             timezone = $8, updated_at = $9
         WHERE id = $1 AND workspace_id = $2",
    )
    .bind(id)
    .bind(workspace)
    .bind(phone)
    .bind(fields.name.as_deref())
    .bind(fields.email.as_deref())
    .bind(Json(&fields.tags))
    .bind(Json(&fields.custom_fields))
    .bind(fields.timezone.as_deref())
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected());
    if updated == 0 {
        return Err(StoreError::NotFound);
    }
    on_conn!(tx.conn(), c => sqlx::query("DELETE FROM contact_tags WHERE contact_id = $1")
        .bind(id)
        .execute(&mut *c)
        .await.map(drop))?;
    write_tags(tx.conn(), workspace, id, &fields.tags).await?;
    let contact = get(tx.conn(), workspace, id).await?;
    announce(tx.conn(), &contact, EventType::ContactUpdated, now).await?;
    Ok(contact)
}

async fn write_tags(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    contact: ContactId,
    tags: &[String],
) -> Result<()> {
    let rows: Vec<(ContactId, &str)> = tags.iter().map(|tag| (contact, tag.as_str())).collect();
    write_tags_of(conn, workspace, &rows).await
}

/// Inserts `contact_tags` rows, many per statement.
async fn write_tags_of(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    rows: &[(ContactId, &str)],
) -> Result<()> {
    for chunk in rows.chunks(rows_per_statement(3)) {
        let mut insert =
            SqlBuilder::new("INSERT INTO contact_tags (workspace_id, tag, contact_id) VALUES ");
        for (index, (contact, tag)) in chunk.iter().enumerate() {
            if index > 0 {
                insert.push(", ");
            }
            insert
                .push("(")
                .bind(Param::Id(workspace.0))
                .push(", ")
                .bind(Param::Text((*tag).to_owned()))
                .push(", ")
                .bind(Param::Id(contact.0))
                .push(")");
        }
        insert.push(" ON CONFLICT DO NOTHING");
        on_conn!(conn.reborrow(), c => bind_params!(sqlx::query(super::sql::built(&insert, &*c)), &insert.params)
            .execute(&mut *c)
            .await
            .map(drop))?;
    }
    Ok(())
}

pub async fn get(conn: Conn<'_>, workspace: WorkspaceId, id: ContactId) -> Result<Contact> {
    on_conn!(conn, c => Ok(sqlx::query_as(concat!(
        "SELECT ", columns!(), " FROM contacts WHERE id = $1 AND workspace_id = $2"
    ))
    .bind(id)
    .bind(workspace)
    .fetch_one(&mut *c)
    .await?))
}

pub async fn find_by_phone(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    phone: &Phone,
) -> Result<Option<Contact>> {
    on_conn!(conn, c => Ok(sqlx::query_as(concat!(
        "SELECT ", columns!(), " FROM contacts WHERE workspace_id = $1 AND phone = $2"
    ))
    .bind(workspace)
    .bind(phone.as_str())
    .fetch_optional(&mut *c)
    .await?))
}

/// The workspace's contacts with these phones (E.164), in no particular order.
pub async fn find_by_phones(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    phones: &[&str],
) -> Result<Vec<Contact>> {
    let mut found = Vec::new();
    for chunk in phones.chunks(rows_per_statement(1)) {
        let mut select = SqlBuilder::new(concat!(
            "SELECT ",
            columns!(),
            " FROM contacts WHERE workspace_id = "
        ));
        select
            .bind(Param::Id(workspace.0))
            .push(" AND phone IN ")
            .bind_list(chunk.iter().map(|phone| Param::Text((*phone).to_owned())));
        let contacts: Vec<Contact> = on_conn!(conn.reborrow(), c => bind_params!(sqlx::query_as(super::sql::built(&select, &*c)), &select.params)
            .fetch_all(&mut *c)
            .await?);
        found.extend(contacts);
    }
    Ok(found)
}

/// One page of a workspace's contacts, newest first, and how many match in all.
pub async fn list(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    filter: &ContactFilter,
    page: Page,
) -> Result<(Vec<Contact>, i64)> {
    fetch_page(
        conn,
        columns!(),
        &matching(workspace, filter),
        "created_at DESC, id DESC",
        page,
    )
    .await
}

/// `FROM contacts WHERE …`: the workspace's contacts that `filter` keeps.
fn matching(workspace: WorkspaceId, filter: &ContactFilter) -> SqlBuilder {
    let mut condition = SqlBuilder::new("");
    push_matching(&mut condition, workspace, filter);
    condition
}

fn push_matching(condition: &mut SqlBuilder, workspace: WorkspaceId, filter: &ContactFilter) {
    condition.push("FROM contacts WHERE workspace_id = ");
    condition.bind(Param::Id(workspace.0));
    if let Some(search) = filter.search.as_deref().filter(|s| !s.trim().is_empty()) {
        let pattern = contains_pattern(search.trim());
        condition.push(" AND (LOWER(COALESCE(name, '')) LIKE ");
        condition
            .bind(Param::Text(pattern.clone()))
            .push(" ESCAPE '\\'");
        condition.push(" OR phone LIKE ");
        condition
            .bind(Param::Text(pattern.clone()))
            .push(" ESCAPE '\\'");
        condition.push(" OR LOWER(COALESCE(email, '')) LIKE ");
        condition.bind(Param::Text(pattern)).push(" ESCAPE '\\')");
    }
    if let Some(tag) = &filter.tag {
        condition.push(" AND id IN (SELECT contact_id FROM contact_tags WHERE workspace_id = ");
        condition.bind(Param::Id(workspace.0)).push(" AND tag = ");
        condition.bind(Param::Text(tag.trim().to_owned())).push(")");
    }
    match filter.opted_out {
        Some(true) => condition.push(" AND opted_out_at IS NOT NULL"),
        Some(false) => condition.push(" AND opted_out_at IS NULL"),
        None => condition,
    };
    if let Some(blocked) = filter.blocked {
        condition.push(" AND blocked = ").bind(Param::Bool(blocked));
    }
}

/// Up to `limit` of the contacts `filter` keeps, in id order after `after`: an export reads
/// the whole list in pages of this, whatever its size, without holding it.
pub async fn page_after(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    filter: &ContactFilter,
    after: Option<ContactId>,
    limit: i64,
) -> Result<Vec<Contact>> {
    let mut query = SqlBuilder::new(concat!("SELECT ", columns!(), " "));
    push_matching(&mut query, workspace, filter);
    if let Some(after) = after {
        query.push(" AND id > ").bind(Param::Id(after.0));
    }
    query.push(" ORDER BY id LIMIT ").bind(Param::Int(limit));
    on_conn!(conn, c => Ok(bind_params!(sqlx::query_as(super::sql::built(&query, &*c)), &query.params)
        .fetch_all(&mut *c)
        .await?))
}

/// The names of the custom fields the contacts `filter` keeps have, sorted.
pub async fn custom_field_names(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    filter: &ContactFilter,
) -> Result<Vec<String>> {
    let keys = match conn.dialect() {
        Dialect::Sqlite => "SELECT DISTINCT j.key FROM (SELECT custom_fields ",
        Dialect::Postgres => {
            "SELECT DISTINCT jsonb_object_keys(custom_fields) FROM (SELECT custom_fields "
        }
    };
    let mut query = SqlBuilder::new(keys);
    push_matching(&mut query, workspace, filter);
    query.push(match conn.dialect() {
        Dialect::Sqlite => ") AS c, json_each(c.custom_fields) AS j",
        Dialect::Postgres => ") AS c",
    });
    let mut names: Vec<String> = on_conn!(conn, c => bind_params!(sqlx::query_scalar(super::sql::built(&query, &*c)), &query.params)
        .fetch_all(&mut *c)
        .await?);
    names.sort();
    Ok(names)
}

pub async fn delete(conn: Conn<'_>, workspace: WorkspaceId, id: ContactId) -> Result<()> {
    let deleted = on_conn!(conn, c => sqlx::query("DELETE FROM contacts WHERE id = $1 AND workspace_id = $2")
        .bind(id)
        .bind(workspace)
        .execute(&mut *c)
        .await?
        .rows_affected());
    if deleted == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Blocking skips what still waits to be sent to the contact (reason `blocked`): run it in a
/// transaction, so that both happen or neither.
pub async fn set_blocked(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    id: ContactId,
    blocked: bool,
    now: DateTime<Utc>,
) -> Result<Contact> {
    let updated = on_conn!(conn.reborrow(), c => sqlx::query(
        "UPDATE contacts SET blocked = $3, updated_at = $4 WHERE id = $1 AND workspace_id = $2",
    )
    .bind(id)
    .bind(workspace)
    .bind(blocked)
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected());
    if updated == 0 {
        return Err(StoreError::NotFound);
    }
    let contact = get(conn.reborrow(), workspace, id).await?;
    if blocked {
        super::messages::skip_pending_to(conn.reborrow(), id, "blocked", now).await?;
        super::withdrawals::announce(conn.reborrow(), id).await?;
    }
    announce(conn, &contact, EventType::ContactUpdated, now).await?;
    Ok(contact)
}

/// Opts a contact out (`Some(time)`) or back in (`None`). Opting out twice keeps the first time.
/// Opting out skips what still waits to be sent to it (reason `opted_out`): run it in a
/// transaction, so that both happen or neither.
pub async fn set_opted_out(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    id: ContactId,
    opted_out_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Contact> {
    let was_opted_out = get(conn.reborrow(), workspace, id)
        .await?
        .opted_out_at
        .is_some();
    let updated = on_conn!(conn.reborrow(), c => sqlx::query(
        "UPDATE contacts
         SET opted_out_at = CASE WHEN $3 IS NULL THEN NULL ELSE COALESCE(opted_out_at, $3) END,
             updated_at = $4
         WHERE id = $1 AND workspace_id = $2",
    )
    .bind(id)
    .bind(workspace)
    .bind(opted_out_at)
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected());
    if updated == 0 {
        return Err(StoreError::NotFound);
    }
    let contact = get(conn.reborrow(), workspace, id).await?;
    let kind = match (was_opted_out, contact.opted_out_at.is_some()) {
        (false, true) => Some(EventType::ContactOptedOut),
        (true, false) => Some(EventType::ContactOptedIn),
        _ => None,
    };
    if kind == Some(EventType::ContactOptedOut) {
        super::messages::skip_pending_to(conn.reborrow(), id, "opted_out", now).await?;
        super::withdrawals::announce(conn.reborrow(), id).await?;
    }
    if let Some(kind) = kind {
        announce(conn, &contact, kind, now).await?;
    }
    Ok(contact)
}

/// Of `ids`, the contacts that no campaign message may reach any more, with the reason their
/// messages are skipped for (`blocked`, else `opted_out`). `wait_for_writers`: answer only once
/// a transaction changing one of them has ended (PostgreSQL: a share lock on their rows; SQLite:
/// run it on the writer connection).
pub async fn withdrawn(
    conn: Conn<'_>,
    ids: &[ContactId],
    wait_for_writers: bool,
) -> Result<Vec<(ContactId, &'static str)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<(ContactId, bool, bool)> = match conn {
        Conn::Postgres(c) => {
            const WITHDRAWN: &str = "SELECT id, blocked, opted_out_at IS NOT NULL FROM contacts
                 WHERE id = ANY($1) AND (blocked OR opted_out_at IS NOT NULL)";
            // Every row is locked, whatever it held: a row whose old version does not match a
            // condition would be passed over without waiting for the transaction changing it.
            const WITHDRAWN_WAITING: &str =
                "SELECT id, blocked, opted_out_at IS NOT NULL FROM contacts
                 WHERE id = ANY($1) FOR SHARE";
            let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
            sqlx::query_as(if wait_for_writers {
                WITHDRAWN_WAITING
            } else {
                WITHDRAWN
            })
            .bind(ids)
            .fetch_all(&mut *c)
            .await?
        }
        // The caller's connection decides whether it waits: the writer does.
        Conn::Sqlite(c) => {
            let mut select = SqlBuilder::new(
                "SELECT id, blocked, opted_out_at IS NOT NULL FROM contacts WHERE id IN ",
            );
            select.bind_list(ids.iter().map(|id| Param::Id(id.0)));
            select.push(" AND (blocked OR opted_out_at IS NOT NULL)");
            bind_params!(
                sqlx::query_as(super::sql::built(&select, &*c)),
                &select.params
            )
            .fetch_all(&mut *c)
            .await?
        }
    };
    Ok(rows
        .into_iter()
        .filter_map(|(id, blocked, opted_out)| match (blocked, opted_out) {
            (true, _) => Some((id, "blocked")),
            (false, true) => Some((id, "opted_out")),
            (false, false) => None,
        })
        .collect())
}

/// What rendering a message needs of a contact.
#[derive(Clone, Debug, PartialEq, FromRow)]
pub struct RenderFields {
    pub id: ContactId,
    pub phone: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub custom_fields: Json<BTreeMap<String, String>>,
}

/// The render fields of `ids` (any that still exist), in one query.
pub async fn render_fields(conn: Conn<'_>, ids: &[ContactId]) -> Result<Vec<RenderFields>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    match conn {
        // One array parameter: a statement of one shape, planned once, where a list of 1,024
        // placeholders is bound and planned again for each batch.
        Conn::Postgres(c) => {
            let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
            Ok(sqlx::query_as(
                "SELECT id, phone, name, email, custom_fields FROM contacts WHERE id = ANY($1)",
            )
            .bind(ids)
            .fetch_all(&mut *c)
            .await?)
        }
        Conn::Sqlite(c) => {
            let mut select = SqlBuilder::new(
                "SELECT id, phone, name, email, custom_fields FROM contacts WHERE id IN ",
            );
            select.bind_list(ids.iter().map(|id| Param::Id(id.0)));
            Ok(bind_params!(
                sqlx::query_as(super::sql::built(&select, &*c)),
                &select.params
            )
            .fetch_all(&mut *c)
            .await?)
        }
    }
}

/// Inserts many contacts in a few statements, leaving phones the workspace already has as they
/// are. Returns how many were new.
pub async fn insert_new_batch(
    tx: &mut Tx,
    workspace: WorkspaceId,
    contacts: &[ContactFields],
    now: DateTime<Utc>,
) -> Result<u64> {
    let mut created = 0;
    for chunk in contacts.chunks(rows_per_statement(10)) {
        let mut insert = SqlBuilder::new(
            "INSERT INTO contacts (id, workspace_id, phone, name, email, tags, custom_fields, timezone,
                                   created_at, updated_at) VALUES ",
        );
        for (index, fields) in chunk.iter().enumerate() {
            if index > 0 {
                insert.push(", ");
            }
            insert.push("(").bind(Param::Id(ContactId::generate().0));
            for param in [
                Param::Id(workspace.0),
                Param::Text(fields.phone()?.to_owned()),
                Param::OptText(fields.name.clone()),
                Param::OptText(fields.email.clone()),
                Param::Json(serde_json::json!(fields.tags)),
                Param::Json(serde_json::json!(fields.custom_fields)),
                Param::OptText(fields.timezone.clone()),
                Param::Time(now),
                Param::Time(now),
            ] {
                insert.push(", ").bind(param);
            }
            insert.push(")");
        }
        insert.push(" ON CONFLICT (workspace_id, phone) DO NOTHING RETURNING id, phone");
        let inserted: Vec<(ContactId, String)> = on_conn!(tx.conn(), c => bind_params!(sqlx::query_as(super::sql::built(&insert, &*c)), &insert.params)
            .fetch_all(&mut *c)
            .await?);
        created += inserted.len() as u64;
        let by_phone: HashMap<&str, &ContactFields> = chunk
            .iter()
            .map(|fields| (phone_of(fields), fields))
            .collect();
        let mut tags: Vec<(ContactId, &str)> = Vec::new();
        let mut created_events = Vec::with_capacity(inserted.len());
        for (id, phone) in &inserted {
            if let Some(fields) = by_phone.get(phone.as_str()) {
                tags.extend(fields.tags.iter().map(|tag| (*id, tag.as_str())));
                let data = ContactEvent {
                    contact_id: *id,
                    phone: phone.clone(),
                    name: fields.name.clone(),
                    opted_out: false,
                };
                created_events.push(NewEvent::new(
                    workspace,
                    EventType::ContactCreated,
                    *id,
                    &data,
                    now,
                )?);
            }
        }
        write_tags_of(tx.conn(), workspace, &tags).await?;
        events::append(tx.conn(), &created_events).await?;
    }
    Ok(created)
}

/// What [`upsert_batch`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Upserted {
    pub created: u64,
    pub updated: u64,
}

/// Writes a batch of imported contacts: new phones become contacts, and a phone the workspace
/// already has updates its contact (see [`ContactFields::absorb`]). Phones must be unique
/// within `rows`.
pub async fn upsert_batch(
    tx: &mut Tx,
    workspace: WorkspaceId,
    rows: Vec<ContactFields>,
    now: DateTime<Utc>,
) -> Result<Upserted> {
    let phones: Vec<&str> = rows.iter().map(phone_of).collect();
    let existing: HashMap<String, Contact> = find_by_phones(tx.conn(), workspace, &phones)
        .await?
        .into_iter()
        .map(|contact| (contact.phone.clone(), contact))
        .collect();
    let (known, fresh): (Vec<_>, Vec<_>) = rows
        .into_iter()
        .partition(|row| existing.contains_key(phone_of(row)));
    let created = insert_new_batch(tx, workspace, &fresh, now).await?;
    let mut updated = 0;
    for row in known {
        let Some(contact) = existing.get(phone_of(&row)) else {
            continue;
        };
        let before = ContactFields::from(contact);
        let mut fields = before.clone();
        fields.absorb(row);
        if fields != before {
            update(tx, workspace, contact.id, &fields, now).await?;
        }
        updated += 1;
    }
    Ok(Upserted { created, updated })
}

fn phone_of(row: &ContactFields) -> &str {
    row.phone.as_ref().map(Phone::as_str).unwrap_or_default()
}
