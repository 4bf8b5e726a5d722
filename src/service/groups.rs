//! Groups: static ones hold the contacts added to them, dynamic ones whoever matches their
//! filters; a group's size is who it reaches now (opted-out and blocked contacts left out).

use chrono::{DateTime, Utc};

use super::{ServiceError, ServiceResult};
use crate::domain::campaign::Audience;
use crate::domain::group::{GroupFilters, GroupKind};
use crate::domain::ids::{ContactId, GroupId, WorkspaceId};
use crate::domain::phone::Phone;
use crate::domain::validation::FieldErrors;
use crate::store::groups::{self, Group};
use crate::store::{Db, Page, audience, contacts};

/// Most contacts one membership change may name.
pub const MAX_MEMBERS_PER_REQUEST: usize = 10_000;

/// Contacts named by id or by phone (in any common spelling).
#[derive(Clone, Debug, Default)]
pub struct Members {
    pub contact_ids: Vec<ContactId>,
    pub phones: Vec<String>,
}

/// What a membership change did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipChange {
    /// Contacts that became (or stopped being) members.
    pub changed: u64,
    /// Phones that name no contact of the workspace.
    pub unknown_phones: Vec<String>,
}

fn check_name(name: &str, errors: &mut FieldErrors) {
    if name.trim().is_empty() {
        errors.add("name", "must not be empty");
    }
}

fn check_filters(kind: GroupKind, filters: Option<&GroupFilters>, errors: &mut FieldErrors) {
    if kind == GroupKind::Static && filters.is_some_and(|f| !f.is_empty()) {
        errors.add(
            "filters",
            "only dynamic groups have filters; add members to a static group",
        );
    }
}

pub async fn create(
    db: &Db,
    workspace: WorkspaceId,
    name: &str,
    kind: GroupKind,
    filters: Option<GroupFilters>,
    now: DateTime<Utc>,
) -> ServiceResult<Group> {
    let mut errors = FieldErrors::new();
    check_name(name, &mut errors);
    check_filters(kind, filters.as_ref(), &mut errors);
    errors.into_result()?;
    let mut conn = db.write().await?;
    let filters = filters.unwrap_or_default();
    Ok(groups::insert(conn.conn(), workspace, name.trim(), kind, &filters, now).await?)
}

/// Renames a group or replaces a dynamic group's filters; `None` keeps what it has.
pub async fn update(
    db: &Db,
    workspace: WorkspaceId,
    id: GroupId,
    name: Option<String>,
    filters: Option<GroupFilters>,
    now: DateTime<Utc>,
) -> ServiceResult<Group> {
    let mut conn = db.write().await?;
    let current = groups::get(conn.conn(), workspace, id).await?;
    let mut errors = FieldErrors::new();
    let name = name.unwrap_or(current.name);
    check_name(&name, &mut errors);
    check_filters(current.kind, filters.as_ref(), &mut errors);
    errors.into_result()?;
    let filters = filters.unwrap_or(current.filters.0);
    Ok(groups::update(conn.conn(), workspace, id, name.trim(), &filters, now).await?)
}

pub async fn get(db: &Db, workspace: WorkspaceId, id: GroupId) -> ServiceResult<Group> {
    let mut conn = db.read().await?;
    Ok(groups::get(conn.conn(), workspace, id).await?)
}

/// A page of the workspace's groups, by name.
pub async fn list(db: &Db, workspace: WorkspaceId, page: Page) -> ServiceResult<(Vec<Group>, i64)> {
    let mut conn = db.read().await?;
    Ok(groups::list(conn.conn(), workspace, page).await?)
}

/// How many contacts the group reaches now.
pub async fn size(db: &Db, group: &Group) -> ServiceResult<i64> {
    let mut conn = db.read().await?;
    let audience = Audience::Group { group_id: group.id };
    Ok(audience::count(conn.conn(), group.workspace_id, &audience).await?)
}

/// Its contacts stay.
pub async fn delete(db: &Db, workspace: WorkspaceId, id: GroupId) -> ServiceResult<()> {
    let mut conn = db.write().await?;
    Ok(groups::delete(conn.conn(), workspace, id).await?)
}

/// Adds contacts to a static group; ids of other workspaces' contacts are ignored.
pub async fn add_members(
    db: &Db,
    workspace: WorkspaceId,
    id: GroupId,
    members: Members,
    now: DateTime<Utc>,
) -> ServiceResult<MembershipChange> {
    let (ids, unknown_phones) = resolve_members(db, workspace, id, members).await?;
    let mut conn = db.write().await?;
    let changed = groups::add_members(conn.conn(), workspace, id, &ids, now).await?;
    Ok(MembershipChange {
        changed,
        unknown_phones,
    })
}

pub async fn remove_members(
    db: &Db,
    workspace: WorkspaceId,
    id: GroupId,
    members: Members,
) -> ServiceResult<MembershipChange> {
    let (ids, unknown_phones) = resolve_members(db, workspace, id, members).await?;
    let mut conn = db.write().await?;
    let changed = groups::remove_members(conn.conn(), workspace, id, &ids).await?;
    Ok(MembershipChange {
        changed,
        unknown_phones,
    })
}

/// The contacts a membership change names: its ids and the contacts of its phones, and the
/// phones no contact has. Only a static group's members can be changed by hand.
async fn resolve_members(
    db: &Db,
    workspace: WorkspaceId,
    group: GroupId,
    members: Members,
) -> ServiceResult<(Vec<ContactId>, Vec<String>)> {
    let mut errors = FieldErrors::new();
    if members.contact_ids.len() + members.phones.len() > MAX_MEMBERS_PER_REQUEST {
        errors.add(
            "contact_ids",
            format!("at most {MAX_MEMBERS_PER_REQUEST} contacts per request"),
        );
    }
    if members.contact_ids.is_empty() && members.phones.is_empty() {
        errors.add("contact_ids", "give contact_ids or phones");
    }
    let mut phones = Vec::new();
    for (index, text) in members.phones.into_iter().enumerate() {
        match Phone::parse(&text) {
            Ok(phone) => phones.push((text, phone)),
            Err(error) => errors.add(format!("phones.{index}"), error.to_string()),
        }
    }
    errors.into_result()?;

    let mut conn = db.read().await?;
    let group = groups::get(conn.conn(), workspace, group).await?;
    if group.kind == GroupKind::Dynamic {
        return Err(ServiceError::validation(
            "type",
            "a dynamic group's members come from its filters; change the filters instead",
        ));
    }
    let mut ids = members.contact_ids;
    let mut unknown = Vec::new();
    for (text, phone) in phones {
        match contacts::find_by_phone(conn.conn(), workspace, &phone).await? {
            Some(contact) => ids.push(contact.id),
            None => unknown.push(text),
        }
    }
    ids.sort();
    ids.dedup();
    Ok((ids, unknown))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::workspace_with_one_contact;

    #[tokio::test]
    async fn a_static_group_has_no_filters_and_a_dynamic_one_no_hand_picked_members() {
        let (db, ws, _) = workspace_with_one_contact().await;
        let now = Utc::now();
        let filters = GroupFilters {
            tags: vec!["vip".into()],
            ..GroupFilters::default()
        };
        let refused = create(&db, ws, " ", GroupKind::Static, Some(filters.clone()), now).await;
        let Err(ServiceError::Validation(errors)) = refused else {
            panic!("{refused:?}");
        };
        assert!(errors.get("name").is_some() && errors.get("filters").is_some());

        let dynamic = create(&db, ws, "VIPs", GroupKind::Dynamic, Some(filters), now)
            .await
            .unwrap();
        let members = Members {
            phones: vec!["+201000000001".into()],
            ..Members::default()
        };
        let refused = add_members(&db, ws, dynamic.id, members.clone(), now).await;
        assert!(matches!(refused, Err(ServiceError::Validation(e)) if e.get("type").is_some()));

        let picked = create(&db, ws, "Picked", GroupKind::Static, None, now)
            .await
            .unwrap();
        let unknown = Members {
            phones: vec!["+201000000001".into(), "+201000000002".into()],
            ..Members::default()
        };
        let change = add_members(&db, ws, picked.id, unknown, now).await.unwrap();
        assert_eq!(change.changed, 1);
        assert_eq!(change.unknown_phones, ["+201000000002"]);
        assert_eq!(size(&db, &picked).await.unwrap(), 1);
    }
}
