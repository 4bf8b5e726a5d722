//! Contacts: what a contact may hold (a phone that parses, an email, a known time zone, flat
//! custom fields) and their consent flags.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::ServiceResult;
use crate::domain::contact::{normalize_tags, parse_email, parse_timezone};
use crate::domain::ids::{ContactId, WorkspaceId};
use crate::domain::message::Direction;
use crate::domain::phone::Phone;
use crate::domain::validation::FieldErrors;
use crate::store::contacts::{self, Contact, ContactFields, ContactFilter};
use crate::store::messages::{self, Message, MessageFilter};
use crate::store::{Db, Page};

/// A contact as a client gives it, before it is checked. Custom field values may be strings,
/// numbers or booleans; they are kept as text.
#[derive(Clone, Debug, Default)]
pub struct ContactInput {
    pub phone: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub tags: Vec<String>,
    pub custom_fields: BTreeMap<String, Value>,
    pub timezone: Option<String>,
}

/// Fields to change; `None` keeps the current value, `Some(None)` clears it.
#[derive(Clone, Debug, Default)]
pub struct ContactChange {
    pub phone: Option<String>,
    pub name: Option<Option<String>>,
    pub email: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    /// Replaces the custom fields.
    pub custom_fields: Option<BTreeMap<String, Value>>,
    pub timezone: Option<Option<String>>,
}

impl ContactInput {
    /// Every problem is reported at once, each under its field.
    fn check(self) -> ServiceResult<ContactFields> {
        let mut errors = FieldErrors::new();
        let phone = match self.phone.as_deref().map(Phone::parse) {
            Some(Ok(phone)) => Some(phone),
            Some(Err(error)) => {
                errors.add("phone", error.to_string());
                None
            }
            None => {
                errors.add("phone", "is required");
                None
            }
        };
        let email = match non_blank(self.email) {
            Some(email) => match parse_email(&email) {
                Ok(email) => Some(email),
                Err(error) => {
                    errors.add("email", error.to_string());
                    None
                }
            },
            None => None,
        };
        let timezone = non_blank(self.timezone);
        if let Some(Err(error)) = timezone.as_deref().map(parse_timezone) {
            errors.add("timezone", error.to_string());
        }
        let mut custom_fields = BTreeMap::new();
        for (name, value) in self.custom_fields {
            let text = match value {
                Value::String(text) => text,
                Value::Number(number) => number.to_string(),
                Value::Bool(flag) => flag.to_string(),
                Value::Null => continue,
                Value::Array(_) | Value::Object(_) => {
                    errors.add(
                        format!("custom_fields.{name}"),
                        "must be a string, number or boolean",
                    );
                    continue;
                }
            };
            if name.trim().is_empty() {
                errors.add("custom_fields", "field names must not be empty");
                continue;
            }
            custom_fields.insert(name.trim().to_owned(), text);
        }
        errors.into_result()?;
        Ok(ContactFields {
            phone,
            name: non_blank(self.name),
            email,
            tags: normalize_tags(self.tags),
            custom_fields,
            timezone,
        })
    }
}

fn non_blank(text: Option<String>) -> Option<String> {
    text.map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
}

pub async fn create(
    db: &Db,
    workspace: WorkspaceId,
    input: ContactInput,
    now: DateTime<Utc>,
) -> ServiceResult<Contact> {
    let fields = input.check()?;
    let mut tx = db.begin().await?;
    let contact = contacts::insert(&mut tx, workspace, &fields, now).await?;
    tx.commit().await?;
    Ok(contact)
}

/// Several contacts at once, each checked as `create` checks one; a phone the workspace already
/// has keeps its contact. Returns how many were new.
pub async fn create_many(
    db: &Db,
    workspace: WorkspaceId,
    inputs: Vec<ContactInput>,
    now: DateTime<Utc>,
) -> ServiceResult<u64> {
    let fields = inputs
        .into_iter()
        .map(ContactInput::check)
        .collect::<ServiceResult<Vec<_>>>()?;
    let mut tx = db.begin().await?;
    let inserted = contacts::insert_new_batch(&mut tx, workspace, &fields, now).await?;
    tx.commit().await?;
    Ok(inserted)
}

pub async fn update(
    db: &Db,
    workspace: WorkspaceId,
    id: ContactId,
    change: ContactChange,
    now: DateTime<Utc>,
) -> ServiceResult<Contact> {
    let mut tx = db.begin().await?;
    let current = contacts::get(tx.conn(), workspace, id).await?;
    let input = ContactInput {
        phone: Some(change.phone.unwrap_or(current.phone)),
        name: change.name.unwrap_or(current.name),
        email: change.email.unwrap_or(current.email),
        tags: change.tags.unwrap_or(current.tags.0),
        custom_fields: change.custom_fields.unwrap_or_else(|| {
            current
                .custom_fields
                .0
                .into_iter()
                .map(|(name, value)| (name, Value::String(value)))
                .collect()
        }),
        timezone: change.timezone.unwrap_or(current.timezone),
    };
    let fields = input.check()?;
    let contact = contacts::update(&mut tx, workspace, id, &fields, now).await?;
    tx.commit().await?;
    Ok(contact)
}

pub async fn get(db: &Db, workspace: WorkspaceId, id: ContactId) -> ServiceResult<Contact> {
    let mut conn = db.read().await?;
    Ok(contacts::get(conn.conn(), workspace, id).await?)
}

pub async fn list(
    db: &Db,
    workspace: WorkspaceId,
    filter: &ContactFilter,
    page: Page,
) -> ServiceResult<(Vec<Contact>, i64)> {
    let mut conn = db.read().await?;
    Ok(contacts::list(conn.conn(), workspace, filter, page).await?)
}

/// The conversation with a contact, both directions, newest first.
pub async fn conversation(
    db: &Db,
    workspace: WorkspaceId,
    id: ContactId,
    direction: Option<Direction>,
    page: Page,
) -> ServiceResult<(Vec<Message>, i64)> {
    let mut conn = db.read().await?;
    contacts::get(conn.conn(), workspace, id).await?;
    let filter = MessageFilter {
        contact: Some(id),
        direction,
        ..MessageFilter::default()
    };
    Ok(messages::list(conn.conn(), workspace, filter, page).await?)
}

/// The workspace's contact with this phone number (written in any international form).
pub async fn find_by_phone(
    db: &Db,
    workspace: WorkspaceId,
    phone: &str,
) -> ServiceResult<Option<Contact>> {
    let Ok(phone) = Phone::parse(phone) else {
        return Ok(None);
    };
    let mut conn = db.read().await?;
    Ok(contacts::find_by_phone(conn.conn(), workspace, &phone).await?)
}

/// The contacts these phone numbers belong to, in order; `field` names the input in the error
/// that lists the numbers that are not a contact.
pub async fn ids_by_phone(
    db: &Db,
    workspace: WorkspaceId,
    phones: &[&str],
    field: &str,
) -> ServiceResult<Vec<ContactId>> {
    let mut conn = db.read().await?;
    let (mut ids, mut unknown) = (Vec::with_capacity(phones.len()), Vec::new());
    for &written in phones {
        let found = match Phone::parse(written) {
            Ok(phone) => contacts::find_by_phone(conn.conn(), workspace, &phone).await?,
            Err(_) => None,
        };
        match found {
            Some(contact) => ids.push(contact.id),
            None => unknown.push(written),
        }
    }
    if !unknown.is_empty() {
        return Err(super::ServiceError::validation(
            field,
            format!("not a contact of this workspace: {}", unknown.join(", ")),
        ));
    }
    Ok(ids)
}

/// Its messages stay, for the campaigns' records.
pub async fn delete(db: &Db, workspace: WorkspaceId, id: ContactId) -> ServiceResult<()> {
    let mut conn = db.write().await?;
    Ok(contacts::delete(conn.conn(), workspace, id).await?)
}

/// A blocked contact is reached by no campaign and no message: what still waits for it is
/// skipped.
pub async fn set_blocked(
    db: &Db,
    workspace: WorkspaceId,
    id: ContactId,
    blocked: bool,
    now: DateTime<Utc>,
) -> ServiceResult<Contact> {
    let mut tx = db.begin().await?;
    let contact = contacts::set_blocked(tx.conn(), workspace, id, blocked, now).await?;
    tx.commit().await?;
    Ok(contact)
}

pub async fn set_opted_out(
    db: &Db,
    workspace: WorkspaceId,
    id: ContactId,
    opted_out: bool,
    now: DateTime<Utc>,
) -> ServiceResult<Contact> {
    let since = opted_out.then_some(now);
    let mut tx = db.begin().await?;
    let contact = contacts::set_opted_out(tx.conn(), workspace, id, since, now).await?;
    tx.commit().await?;
    Ok(contact)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::ServiceError;
    use crate::service::testing::workspace_with_one_contact;

    fn jane() -> ContactInput {
        ContactInput {
            phone: Some("+20 101 234 5678".into()),
            ..ContactInput::default()
        }
    }

    #[tokio::test]
    async fn every_bad_field_is_named_at_once() {
        let (db, ws, _) = workspace_with_one_contact().await;
        let mut custom_fields = BTreeMap::new();
        custom_fields.insert("plan".to_owned(), serde_json::json!(["gold"]));
        let input = ContactInput {
            phone: Some("12".into()),
            email: Some("not an email".into()),
            timezone: Some("Mars/Olympus".into()),
            custom_fields,
            ..ContactInput::default()
        };
        let Err(ServiceError::Validation(errors)) = create(&db, ws, input, Utc::now()).await else {
            panic!("a contact with four bad fields was accepted");
        };
        let fields: Vec<_> = errors.fields().collect();
        assert_eq!(
            fields,
            ["custom_fields.plan", "email", "phone", "timezone"],
            "{errors:?}"
        );
    }

    #[tokio::test]
    async fn a_change_keeps_what_it_does_not_name_and_clears_what_it_nulls() {
        let (db, ws, _) = workspace_with_one_contact().await;
        let mut input = jane();
        input.name = Some("  Jane ".into());
        input.email = Some("jane@example.com".into());
        input.tags = vec![" vip ".into(), "vip".into()];
        input
            .custom_fields
            .insert("plan".into(), serde_json::json!(3));
        let contact = create(&db, ws, input, Utc::now()).await.unwrap();
        assert_eq!(contact.phone, "+201012345678");
        assert_eq!(contact.name.as_deref(), Some("Jane"));
        assert_eq!(contact.tags.0, ["vip"]);
        assert_eq!(contact.custom_fields.0["plan"], "3");

        let change = ContactChange {
            email: Some(None),
            ..ContactChange::default()
        };
        let changed = update(&db, ws, contact.id, change, Utc::now())
            .await
            .unwrap();
        assert_eq!(changed.email, None);
        assert_eq!(changed.name.as_deref(), Some("Jane"));
        assert_eq!(changed.custom_fields.0["plan"], "3");
    }
}
