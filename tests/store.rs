//! The store against real databases: SQLite always, PostgreSQL when HERALD_TEST_POSTGRES_URL is
//! set. Every test here runs once per dialect.

mod common;

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use common::{TestDb, at};
use herald::domain::campaign::{Audience, CampaignStatus};
use herald::domain::group::{GroupFilters, GroupKind, TimeBound};
use herald::domain::ids::{CampaignId, ContactId, MessageId, SenderId, WorkspaceId};
use herald::domain::message::{Counters, Event, MessageStatus};
use herald::domain::pacing::{Pacing, SendWindow};
use herald::domain::phone::Phone;
use herald::domain::provider::ProviderKind;
use herald::domain::time::Zone;
use herald::store::analytics::{self, Snapshot};
use herald::store::campaigns::{self, CampaignFields};
use herald::store::contacts::{self, ContactFields, ContactFilter};
use herald::store::logged_sends::{self, LoggedGroup};
use herald::store::messages::{self, MessageFilter, NewMessage, Outcome, StatusReport};
use herald::store::senders::{self, SenderFields};
use herald::store::{Dialect, Page, StoreError, audience, groups, templates, usage, workspaces};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn now() -> DateTime<Utc> {
    at(2026, 11, 21, 10, 0)
}

async fn workspace(db: &TestDb, name: &str) -> WorkspaceId {
    let mut conn = db.write().await.unwrap();
    workspaces::ensure(conn.conn(), name, now())
        .await
        .unwrap()
        .id
}

fn egypt(n: u32) -> Phone {
    Phone::from_trusted(format!("+2010{n:08}"))
}

async fn contact(db: &TestDb, ws: WorkspaceId, n: u32, tags: &[&str]) -> ContactId {
    let mut fields = ContactFields::new(egypt(n));
    fields.name = Some(format!("Contact {n}"));
    fields.tags = tags.iter().map(|t| t.to_string()).collect();
    let mut tx = db.begin().await.unwrap();
    let created = contacts::insert(&mut tx, ws, &fields, now()).await.unwrap();
    tx.commit().await.unwrap();
    created.id
}

async fn sender(db: &TestDb, ws: WorkspaceId) -> SenderId {
    let pacing = Pacing::default();
    let fields = SenderFields {
        name: "Support line",
        provider: ProviderKind::Sandbox,
        provider_config: &serde_json::json!({}),
        timezone: Zone::UTC,
        pacing: &pacing,
        warmup_started_on: None,
    };
    let mut tx = db.begin().await.unwrap();
    let created = senders::insert(&mut tx, ws, &fields, "secret", now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    created.id
}

async fn campaign(
    db: &TestDb,
    ws: WorkspaceId,
    sender: SenderId,
    audience: Audience,
) -> CampaignId {
    let fields = CampaignFields {
        whatsapp: None,
        name: "Spring sale".into(),
        sender_id: sender,
        template_id: None,
        content: "Hi <<name|there>>".into(),
        media_url: None,
        audience,
        variables: BTreeMap::new(),
    };
    let mut conn = db.write().await.unwrap();
    campaigns::insert(conn.conn(), ws, &fields, now())
        .await
        .unwrap()
        .id
}

async fn launch(db: &TestDb, ws: WorkspaceId, id: CampaignId) -> campaigns::Campaign {
    let mut tx = db.begin().await.unwrap();
    let campaign = campaigns::launch(&mut tx, ws, id, now()).await.unwrap();
    tx.commit().await.unwrap();
    campaign
}

/// A new workspace's campaign to `recipients` new contacts, launched, and up to `limit` of its
/// messages claimed by its sender.
struct Claiming {
    ws: WorkspaceId,
    sender_id: SenderId,
    campaign: CampaignId,
    claimed: Vec<messages::Claimed>,
}

async fn launched_and_claimed(db: &TestDb, recipients: u32, limit: u32) -> Claiming {
    let ws = workspace(db, "acme").await;
    let sender_id = sender(db, ws).await;
    for n in 0..recipients {
        contact(db, ws, n, &[]).await;
    }
    let campaign = campaign(db, ws, sender_id, Audience::All).await;
    launch(db, ws, campaign).await;
    let claimed = claim(db, sender_id, now(), limit).await;
    Claiming {
        ws,
        sender_id,
        campaign,
        claimed,
    }
}

async fn stored_counters(db: &TestDb, ws: WorkspaceId, id: CampaignId) -> Counters {
    let mut conn = db.read().await.unwrap();
    campaigns::get(conn.conn(), ws, id)
        .await
        .unwrap()
        .counters()
}

async fn true_counters(db: &TestDb, id: CampaignId) -> Counters {
    let mut conn = db.read().await.unwrap();
    campaigns::counted_from_messages(conn.conn(), id)
        .await
        .unwrap()
}

async fn audience_ids(db: &TestDb, ws: WorkspaceId, audience: &Audience) -> HashSet<ContactId> {
    let mut conn = db.read().await.unwrap();
    audience::contact_ids(conn.conn(), ws, audience)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

async fn claim(
    db: &TestDb,
    sender: SenderId,
    when: DateTime<Utc>,
    limit: u32,
) -> Vec<messages::Claimed> {
    let mut tx = db.begin().await.unwrap();
    let claimed = messages::claim(&mut tx, sender, when, when + Duration::seconds(30), limit)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    claimed
}

async fn record(db: &TestDb, outcomes: &[(MessageId, Outcome)]) {
    let mut tx = db.begin().await.unwrap();
    messages::record_outcomes(&mut tx, outcomes, now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn contacts_are_unique_by_phone_within_a_workspace(db: TestDb) {
    let acme = workspace(&db, "acme").await;
    let other = workspace(&db, "other").await;
    let mut tx = db.begin().await.unwrap();
    let first = Phone::parse("+20 101-234-5678").unwrap();
    let created = contacts::insert(&mut tx, acme, &ContactFields::new(first), now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(created.phone, "+201012345678");
    let same = Phone::parse("00201012345678").unwrap();
    let mut tx = db.begin().await.unwrap();
    let duplicate = contacts::insert(&mut tx, acme, &ContactFields::new(same.clone()), now()).await;
    assert!(
        matches!(duplicate, Err(StoreError::Duplicate(ref what)) if what.contains("phone")),
        "{duplicate:?}"
    );
    drop(tx);

    let mut tx = db.begin().await.unwrap();
    contacts::insert(&mut tx, other, &ContactFields::new(same.clone()), now())
        .await
        .expect("another workspace may hold the same phone");
    tx.commit().await.unwrap();
    let mut conn = db.read().await.unwrap();
    let found = contacts::find_by_phone(conn.conn(), acme, &same)
        .await
        .unwrap();
    assert_eq!(
        found.map(|c| c.id),
        Some(created.id),
        "the first contact stands"
    );
}

async fn contacts_are_filtered_searched_and_paged(db: TestDb) {
    let ws = workspace(&db, "acme").await;
    for n in 0..25 {
        let tags: &[&str] = if n % 5 == 0 { &["vip"] } else { &["lead"] };
        contact(&db, ws, n, tags).await;
    }
    let mut tx = db.begin().await.unwrap();
    let mut jane = ContactFields::new(egypt(100));
    jane.name = Some("Jane O'Brien".into());
    jane.email = Some("JANE@example.com".into());
    let jane = contacts::insert(&mut tx, ws, &jane, now()).await.unwrap();
    tx.commit().await.unwrap();
    let mut conn = db.write().await.unwrap();
    contacts::set_blocked(conn.conn(), ws, jane.id, true, now())
        .await
        .unwrap();
    let opted = contacts::set_opted_out(conn.conn(), ws, jane.id, Some(now()), now())
        .await
        .unwrap();
    assert_eq!(opted.opted_out_at, Some(now()));
    let again = contacts::set_opted_out(
        conn.conn(),
        ws,
        jane.id,
        Some(now() + Duration::hours(1)),
        now(),
    )
    .await
    .unwrap();
    assert_eq!(
        again.opted_out_at,
        Some(now()),
        "opting out twice keeps the first time"
    );
    drop(conn);

    let mut conn = db.read().await.unwrap();
    let page = |page, per_page| Page { page, per_page };
    let (first, total) = contacts::list(conn.conn(), ws, &ContactFilter::default(), page(1, 10))
        .await
        .unwrap();
    assert_eq!((first.len(), total), (10, 26));
    let (last, _) = contacts::list(conn.conn(), ws, &ContactFilter::default(), page(3, 10))
        .await
        .unwrap();
    assert_eq!(last.len(), 6);

    let search = |text: &str| ContactFilter {
        search: Some(text.into()),
        ..ContactFilter::default()
    };
    for text in ["jane", "o'brien", "example.COM", "+2010000001"] {
        let (found, total) = contacts::list(conn.conn(), ws, &search(text), page(1, 50))
            .await
            .unwrap();
        assert!(
            total >= 1
                && found
                    .iter()
                    .all(|c| c.id == jane.id || text.starts_with('+')),
            "{text}"
        );
    }
    let (none, total) = contacts::list(conn.conn(), ws, &search("100%"), page(1, 50))
        .await
        .unwrap();
    assert_eq!(
        (none.len(), total),
        (0, 0),
        "wildcards in a search are literal"
    );

    let vip = ContactFilter {
        tag: Some("vip".into()),
        ..ContactFilter::default()
    };
    assert_eq!(
        contacts::list(conn.conn(), ws, &vip, page(1, 50))
            .await
            .unwrap()
            .1,
        5
    );
    let blocked = ContactFilter {
        blocked: Some(true),
        ..ContactFilter::default()
    };
    assert_eq!(
        contacts::list(conn.conn(), ws, &blocked, page(1, 50))
            .await
            .unwrap()
            .1,
        1
    );
    let opted_in = ContactFilter {
        opted_out: Some(false),
        ..ContactFilter::default()
    };
    assert_eq!(
        contacts::list(conn.conn(), ws, &opted_in, page(1, 50))
            .await
            .unwrap()
            .1,
        25
    );
}

async fn contact_updates_rewrite_tags(db: TestDb) {
    let ws = workspace(&db, "acme").await;
    let id = contact(&db, ws, 1, &["vip", "lead"]).await;
    let tagged = |tag: &'static str| Audience::Tags {
        tags: vec![tag.into()],
    };
    assert!(audience_ids(&db, ws, &tagged("lead")).await.contains(&id));

    let mut tx = db.begin().await.unwrap();
    let current = contacts::get(tx.conn(), ws, id).await.unwrap();
    let mut fields = ContactFields::from(&current);
    fields.tags = vec!["customer".into()];
    fields.custom_fields.insert("city".into(), "Cairo".into());
    fields.timezone = Some("Africa/Cairo".into());
    let updated = contacts::update(&mut tx, ws, id, &fields, now() + Duration::minutes(1))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(updated.tags.0, ["customer"]);
    assert_eq!(updated.custom_fields.0["city"], "Cairo");
    assert_eq!(updated.updated_at, now() + Duration::minutes(1));
    assert!(
        audience_ids(&db, ws, &tagged("lead")).await.is_empty(),
        "old tags are gone"
    );
    assert!(
        audience_ids(&db, ws, &tagged("customer"))
            .await
            .contains(&id)
    );

    let mut conn = db.write().await.unwrap();
    contacts::delete(conn.conn(), ws, id).await.unwrap();
    assert!(matches!(
        contacts::delete(conn.conn(), ws, id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        contacts::get(conn.conn(), ws, id).await,
        Err(StoreError::NotFound)
    ));
}

async fn workspaces_never_see_each_other(db: TestDb) {
    let acme = workspace(&db, "acme").await;
    let rival = workspace(&db, "rival").await;
    let contact_id = contact(&db, acme, 1, &["vip"]).await;
    let sender_id = sender(&db, acme).await;
    let campaign_id = campaign(&db, acme, sender_id, Audience::All).await;
    let mut conn = db.write().await.unwrap();
    assert!(matches!(
        contacts::get(conn.conn(), rival, contact_id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        contacts::delete(conn.conn(), rival, contact_id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        contacts::set_blocked(conn.conn(), rival, contact_id, true, now()).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        senders::get(conn.conn(), rival, sender_id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        campaigns::get(conn.conn(), rival, campaign_id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        campaigns::pause(conn.conn(), rival, campaign_id, now()).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        campaigns::delete(conn.conn(), rival, campaign_id).await,
        Err(StoreError::NotFound)
    ));
    let (rival_contacts, total) = contacts::list(
        conn.conn(),
        rival,
        &ContactFilter::default(),
        Page::default(),
    )
    .await
    .unwrap();
    assert!(rival_contacts.is_empty() && total == 0);
    drop(conn);
    assert!(audience_ids(&db, rival, &Audience::All).await.is_empty());
    assert!(
        audience_ids(
            &db,
            rival,
            &Audience::Contacts {
                contact_ids: vec![contact_id]
            }
        )
        .await
        .is_empty()
    );
    assert!(
        audience_ids(
            &db,
            rival,
            &Audience::Tags {
                tags: vec!["vip".into()]
            }
        )
        .await
        .is_empty()
    );
}

async fn static_groups_hold_members_of_their_own_workspace(db: TestDb) {
    let ws = workspace(&db, "acme").await;
    let rival = workspace(&db, "rival").await;
    let members = [
        contact(&db, ws, 1, &[]).await,
        contact(&db, ws, 2, &[]).await,
    ];
    let outsider = contact(&db, rival, 3, &[]).await;
    let mut conn = db.write().await.unwrap();
    let group = groups::insert(
        conn.conn(),
        ws,
        "VIP",
        GroupKind::Static,
        &GroupFilters::default(),
        now(),
    )
    .await
    .unwrap();
    let again = groups::insert(
        conn.conn(),
        ws,
        "VIP",
        GroupKind::Static,
        &GroupFilters::default(),
        now(),
    )
    .await;
    assert!(matches!(again, Err(StoreError::Duplicate(_))), "{again:?}");

    let added = groups::add_members(
        conn.conn(),
        ws,
        group.id,
        &[members[0], members[1], outsider],
        now(),
    )
    .await
    .unwrap();
    assert_eq!(added, 2, "another workspace's contact is never added");
    assert_eq!(
        groups::add_members(conn.conn(), ws, group.id, &members, now())
            .await
            .unwrap(),
        0,
        "idempotent"
    );
    assert_eq!(
        groups::add_members(conn.conn(), rival, group.id, &[outsider], now())
            .await
            .unwrap(),
        0
    );
    drop(conn);
    let in_group = Audience::Group { group_id: group.id };
    assert_eq!(
        audience_ids(&db, ws, &in_group).await,
        members.into_iter().collect()
    );

    let mut conn = db.write().await.unwrap();
    assert_eq!(
        groups::remove_members(conn.conn(), ws, group.id, &[members[0]])
            .await
            .unwrap(),
        1
    );
    drop(conn);
    assert_eq!(
        audience_ids(&db, ws, &in_group).await,
        HashSet::from([members[1]])
    );

    let mut conn = db.write().await.unwrap();
    let renamed = groups::update(
        conn.conn(),
        ws,
        group.id,
        "Gold",
        &GroupFilters::default(),
        now(),
    )
    .await
    .unwrap();
    assert_eq!(
        (renamed.name.as_str(), renamed.kind),
        ("Gold", GroupKind::Static)
    );
    let (listed, total) = groups::list(conn.conn(), ws, Page::default())
        .await
        .unwrap();
    assert_eq!((listed.len(), total), (1, 1));
    groups::delete(conn.conn(), ws, group.id).await.unwrap();
    let mut reader = db.read().await.unwrap();
    assert!(matches!(
        audience::count(reader.conn(), ws, &in_group).await,
        Err(StoreError::NotFound)
    ));
}

async fn audiences_exclude_opted_out_and_blocked_and_count_each_contact_once(db: TestDb) {
    let ws = workspace(&db, "acme").await;
    let both_tags = contact(&db, ws, 1, &["vip", "new"]).await;
    let vip = contact(&db, ws, 2, &["vip"]).await;
    let blocked = contact(&db, ws, 3, &["vip"]).await;
    let opted_out = contact(&db, ws, 4, &["new"]).await;
    let untagged = contact(&db, ws, 5, &[]).await;
    let mut conn = db.write().await.unwrap();
    contacts::set_blocked(conn.conn(), ws, blocked, true, now())
        .await
        .unwrap();
    contacts::set_opted_out(conn.conn(), ws, opted_out, Some(now()), now())
        .await
        .unwrap();
    drop(conn);

    let tags = Audience::Tags {
        tags: vec!["vip".into(), "new".into()],
    };
    assert_eq!(
        audience_ids(&db, ws, &tags).await,
        HashSet::from([both_tags, vip])
    );
    assert_eq!(
        audience_ids(&db, ws, &Audience::All).await,
        HashSet::from([both_tags, vip, untagged])
    );
    let listed = Audience::Contacts {
        contact_ids: vec![vip, vip, blocked, opted_out, untagged],
    };
    assert_eq!(
        audience_ids(&db, ws, &listed).await,
        HashSet::from([vip, untagged])
    );
    let mut conn = db.read().await.unwrap();
    assert_eq!(
        audience::count(conn.conn(), ws, &tags).await.unwrap(),
        2,
        "a contact with two matching tags counts once"
    );
    let nobody = Audience::Contacts {
        contact_ids: vec![],
    };
    assert_eq!(audience::count(conn.conn(), ws, &nobody).await.unwrap(), 0);
}

async fn dynamic_groups_resolve_their_filters_at_use(db: TestDb) {
    let ws = workspace(&db, "acme").await;
    let cairo_vip = contact(&db, ws, 1, &["vip", "new"]).await;
    let giza_vip = contact(&db, ws, 2, &["vip"]).await;
    let mut tx = db.begin().await.unwrap();
    for (id, city) in [(cairo_vip, "Cairo"), (giza_vip, "Giza")] {
        let mut fields = ContactFields::from(&contacts::get(tx.conn(), ws, id).await.unwrap());
        fields.custom_fields.insert("city".into(), city.into());
        fields
            .custom_fields
            .insert("first name".into(), "Ann".into());
        contacts::update(&mut tx, ws, id, &fields, now())
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();

    let filters = GroupFilters {
        tags: vec!["vip".into()],
        custom_fields: BTreeMap::from([("city".to_string(), "Cairo".to_string())]),
        ..GroupFilters::default()
    };
    let mut conn = db.write().await.unwrap();
    let group = groups::insert(
        conn.conn(),
        ws,
        "Cairo VIPs",
        GroupKind::Dynamic,
        &filters,
        now(),
    )
    .await
    .unwrap();
    drop(conn);
    let in_group = Audience::Group { group_id: group.id };
    assert_eq!(
        audience_ids(&db, ws, &in_group).await,
        HashSet::from([cairo_vip])
    );

    // Resolved at use: a contact that starts to match is in the group without being added.
    let later = contact(&db, ws, 3, &["vip"]).await;
    let mut tx = db.begin().await.unwrap();
    let mut fields = ContactFields::from(&contacts::get(tx.conn(), ws, later).await.unwrap());
    fields.custom_fields.insert("city".into(), "Cairo".into());
    contacts::update(&mut tx, ws, later, &fields, now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        audience_ids(&db, ws, &in_group).await,
        HashSet::from([cairo_vip, later])
    );

    let all_tags = GroupFilters {
        tags: vec!["vip".into(), "new".into()],
        ..GroupFilters::default()
    };
    let spaced_key = GroupFilters {
        custom_fields: BTreeMap::from([("first name".to_string(), "Ann".to_string())]),
        ..GroupFilters::default()
    };
    let created_today = GroupFilters {
        created_from: Some(TimeBound::Date(
            NaiveDate::from_ymd_opt(2026, 11, 21).unwrap(),
        )),
        created_to: Some(TimeBound::Date(
            NaiveDate::from_ymd_opt(2026, 11, 21).unwrap(),
        )),
        ..GroupFilters::default()
    };
    let created_tomorrow = GroupFilters {
        created_from: Some(TimeBound::Instant(now() + Duration::days(1))),
        ..GroupFilters::default()
    };
    for (name, filters, expected) in [
        ("all tags", all_tags, HashSet::from([cairo_vip])),
        (
            "spaced key",
            spaced_key,
            HashSet::from([cairo_vip, giza_vip]),
        ),
        (
            "today",
            created_today,
            HashSet::from([cairo_vip, giza_vip, later]),
        ),
        ("tomorrow", created_tomorrow, HashSet::new()),
    ] {
        let mut conn = db.write().await.unwrap();
        let group = groups::insert(conn.conn(), ws, name, GroupKind::Dynamic, &filters, now())
            .await
            .unwrap();
        drop(conn);
        assert_eq!(
            audience_ids(&db, ws, &Audience::Group { group_id: group.id }).await,
            expected,
            "{name}"
        );
    }
}

async fn templates_and_senders_round_trip(db: TestDb) {
    let ws = workspace(&db, "acme").await;
    let mut conn = db.write().await.unwrap();
    let variables = vec!["name".to_string(), "code".to_string()];
    let fields = templates::TemplateFields {
        whatsapp: None,
        name: "Welcome",
        content: "Hi <<name|there>>, your code is <<code>>",
        media_url: Some("https://example.com/a.png"),
        variables: &variables,
    };
    let template = templates::insert(conn.conn(), ws, &fields, now())
        .await
        .unwrap();
    assert_eq!(template.variables.0, variables);
    let renamed = templates::TemplateFields {
        whatsapp: None,
        name: "Hello",
        ..fields
    };
    assert_eq!(
        templates::update(conn.conn(), ws, template.id, &renamed, now())
            .await
            .unwrap()
            .name,
        "Hello"
    );
    assert_eq!(
        templates::list(conn.conn(), ws, Page::default())
            .await
            .unwrap()
            .1,
        1
    );
    templates::delete(conn.conn(), ws, template.id)
        .await
        .unwrap();
    assert!(matches!(
        templates::get(conn.conn(), ws, template.id).await,
        Err(StoreError::NotFound)
    ));
    drop(conn);

    let pacing: Pacing = serde_json::from_value(serde_json::json!({
        "daily_limit": 1000, "warmup_enabled": true, "warmup_start_limit": 50, "warmup_max_limit": 1000,
        "warmup_days": 14, "shift_min_ms": 2000, "shift_max_ms": 5000, "typing_enabled": true,
        "typing_cps": 12, "typing_min_ms": 800, "typing_max_ms": 8000, "rate_per_minute": 60,
        "send_window": {"days": [1, 2, 3, 4, 5], "start": "09:00", "end": "20:00"}
    }))
    .unwrap();
    let config =
        serde_json::json!({"url": "http://127.0.0.1:9000/send", "headers": {"X-Key": "k"}});
    let started = NaiveDate::from_ymd_opt(2026, 11, 21).unwrap();
    let fields = SenderFields {
        name: "Support line",
        provider: ProviderKind::Http,
        provider_config: &config,
        timezone: "Asia/Jerusalem".parse().unwrap(),
        pacing: &pacing,
        warmup_started_on: Some(started),
    };
    let mut tx = db.begin().await.unwrap();
    let created = senders::insert(&mut tx, ws, &fields, "cb-secret", now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(created.pacing(), pacing);
    assert_eq!(created.provider_config.0, config);
    assert_eq!(created.warmup_started_on, Some(started));
    assert_eq!(created.callback_secret, "cb-secret");

    let plain = Pacing {
        send_window: Some(SendWindow {
            days: vec![7],
            start: "22:00".parse().unwrap(),
            end: "06:00".parse().unwrap(),
        }),
        ..Pacing::default()
    };
    let mut conn = db.write().await.unwrap();
    let updated = senders::update(
        conn.conn(),
        ws,
        created.id,
        &SenderFields {
            pacing: &plain,
            warmup_started_on: None,
            ..fields
        },
        now(),
    )
    .await
    .unwrap();
    assert_eq!(
        updated.pacing(),
        plain,
        "absent fields turn their gates off"
    );
    assert_eq!(
        senders::get_unscoped(conn.conn(), created.id)
            .await
            .unwrap()
            .workspace_id,
        ws
    );
    drop(conn);

    let campaign_id = campaign(&db, ws, created.id, Audience::All).await;
    let mut conn = db.write().await.unwrap();
    assert!(
        matches!(
            senders::delete(conn.conn(), ws, created.id).await,
            Err(StoreError::InUse)
        ),
        "a sender in use stays"
    );
    campaigns::delete(conn.conn(), ws, campaign_id)
        .await
        .unwrap();
    senders::delete(conn.conn(), ws, created.id).await.unwrap();
    assert_eq!(
        senders::list(conn.conn(), ws, Page::default())
            .await
            .unwrap()
            .1,
        0
    );
}

async fn campaign_transitions_are_compare_and_set(db: TestDb) {
    use CampaignStatus::*;
    let ws = workspace(&db, "acme").await;
    let sender_id = sender(&db, ws).await;
    contact(&db, ws, 1, &[]).await;
    let id = campaign(&db, ws, sender_id, Audience::All).await;
    let mut conn = db.write().await.unwrap();
    let refused = campaigns::pause(conn.conn(), ws, id, now()).await;
    assert!(
        matches!(
            refused,
            Err(StoreError::InvalidTransition { current: Draft })
        ),
        "{refused:?}"
    );

    let launch_at = now() + Duration::days(1);
    let scheduled = campaigns::schedule(conn.conn(), ws, id, launch_at, now())
        .await
        .unwrap();
    assert_eq!(
        (scheduled.status, scheduled.scheduled_at),
        (Scheduled, Some(launch_at))
    );
    let moved = campaigns::schedule(conn.conn(), ws, id, launch_at + Duration::hours(1), now())
        .await
        .unwrap();
    assert_eq!(
        moved.scheduled_at,
        Some(launch_at + Duration::hours(1)),
        "rescheduling moves the time"
    );
    drop(conn);

    let running = launch(&db, ws, id).await;
    assert_eq!((running.status, running.started_at), (Running, Some(now())));
    let mut tx = db.begin().await.unwrap();
    assert!(matches!(
        campaigns::launch(&mut tx, ws, id, now()).await,
        Err(StoreError::InvalidTransition { current: Running })
    ));
    drop(tx);

    let mut conn = db.write().await.unwrap();
    assert_eq!(
        campaigns::pause(conn.conn(), ws, id, now())
            .await
            .unwrap()
            .status,
        Paused
    );
    assert!(matches!(
        campaigns::pause(conn.conn(), ws, id, now()).await,
        Err(StoreError::InvalidTransition { current: Paused })
    ));
    let resumed = campaigns::resume(conn.conn(), ws, id, now() + Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(
        (resumed.status, resumed.started_at, resumed.paused_at),
        (Running, Some(now()), None),
        "resume keeps the start time"
    );
    drop(conn);

    let mut tx = db.begin().await.unwrap();
    let canceled = campaigns::cancel(&mut tx, ws, id, now()).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        (canceled.status, canceled.canceled_at),
        (Canceled, Some(now()))
    );
    let mut conn = db.write().await.unwrap();
    assert!(matches!(
        campaigns::resume(conn.conn(), ws, id, now()).await,
        Err(StoreError::InvalidTransition { current: Canceled })
    ));
    assert!(matches!(
        campaigns::schedule(conn.conn(), ws, id, launch_at, now()).await,
        Err(StoreError::InvalidTransition { current: Canceled })
    ));
    let missing = CampaignId::generate();
    assert!(matches!(
        campaigns::pause(conn.conn(), ws, missing, now()).await,
        Err(StoreError::NotFound)
    ));
}

async fn campaigns_edit_and_delete_only_in_allowed_states(db: TestDb) {
    let ws = workspace(&db, "acme").await;
    let sender_id = sender(&db, ws).await;
    contact(&db, ws, 1, &[]).await;
    let id = campaign(&db, ws, sender_id, Audience::All).await;
    let mut conn = db.write().await.unwrap();
    let mut fields = CampaignFields {
        whatsapp: None,
        name: "Renamed".into(),
        sender_id,
        template_id: None,
        content: "Hello <<name>>".into(),
        media_url: None,
        audience: Audience::Tags {
            tags: vec!["vip".into()],
        },
        variables: BTreeMap::from([("code".to_string(), "X1".to_string())]),
    };
    let edited = campaigns::update(conn.conn(), ws, id, &fields, now())
        .await
        .unwrap();
    assert_eq!(
        (
            edited.name.as_str(),
            &edited.audience.0,
            &edited.variables.0["code"]
        ),
        ("Renamed", &fields.audience, &"X1".to_string())
    );
    fields.audience = Audience::All;
    campaigns::update(conn.conn(), ws, id, &fields, now())
        .await
        .unwrap();
    drop(conn);
    launch(&db, ws, id).await;
    let mut conn = db.write().await.unwrap();
    assert!(matches!(
        campaigns::update(conn.conn(), ws, id, &fields, now()).await,
        Err(StoreError::InvalidTransition {
            current: CampaignStatus::Running
        })
    ));
    assert!(matches!(
        campaigns::delete(conn.conn(), ws, id).await,
        Err(StoreError::InvalidTransition {
            current: CampaignStatus::Running
        })
    ));
    drop(conn);
    let mut tx = db.begin().await.unwrap();
    campaigns::cancel(&mut tx, ws, id, now()).await.unwrap();
    tx.commit().await.unwrap();
    let mut conn = db.write().await.unwrap();
    campaigns::delete(conn.conn(), ws, id)
        .await
        .expect("a canceled campaign may be deleted");
    let (remaining, _) = messages::list(
        conn.conn(),
        ws,
        MessageFilter {
            campaign: Some(id),
            ..MessageFilter::default()
        },
        Page::default(),
    )
    .await
    .unwrap();
    assert!(remaining.is_empty(), "its messages went with it");
    let (listed, total) = campaigns::list(conn.conn(), ws, None, Page::default())
        .await
        .unwrap();
    assert!(listed.is_empty() && total == 0);
}

async fn launch_materialises_ten_thousand_recipients_in_one_statement(db: TestDb) {
    const CONTACTS: u32 = 10_000;
    let ws = workspace(&db, "acme").await;
    let sender_id = sender(&db, ws).await;
    let mut tx = db.begin().await.unwrap();
    let mut created = Vec::new();
    // Phones descend as contacts are added, so that phone order is not creation order.
    for n in (0..CONTACTS).rev() {
        let contact = contacts::insert(&mut tx, ws, &ContactFields::new(egypt(n)), now())
            .await
            .unwrap();
        created.push(contact.id);
    }
    tx.commit().await.unwrap();
    let mut conn = db.write().await.unwrap();
    let (some, _) = contacts::list(
        conn.conn(),
        ws,
        &ContactFilter::default(),
        Page {
            page: 1,
            per_page: 200,
        },
    )
    .await
    .unwrap();
    for (index, contact) in some.iter().take(150).enumerate() {
        if index % 2 == 0 {
            contacts::set_blocked(conn.conn(), ws, contact.id, true, now())
                .await
                .unwrap();
        } else {
            contacts::set_opted_out(conn.conn(), ws, contact.id, Some(now()), now())
                .await
                .unwrap();
        }
    }
    drop(conn);
    let excluded: HashSet<ContactId> = some.iter().take(150).map(|c| c.id).collect();

    let id = campaign(&db, ws, sender_id, Audience::All).await;
    let running = launch(&db, ws, id).await;
    let expected = i64::from(CONTACTS) - 150;
    assert_eq!(
        running.counters(),
        Counters {
            total: expected,
            pending: expected,
            ..Counters::default()
        }
    );
    assert_eq!(true_counters(&db, id).await, running.counters());

    let mut conn = db.read().await.unwrap();
    let mut seen_contacts = HashSet::new();
    let mut seen_ids = HashSet::new();
    let mut in_id_order = Vec::new();
    for page in 1..=(expected as u32).div_ceil(200) {
        let filter = MessageFilter {
            campaign: Some(id),
            status: Some(MessageStatus::Pending),
            ..MessageFilter::default()
        };
        let (batch, total) = messages::list(
            conn.conn(),
            ws,
            filter,
            Page {
                page,
                per_page: 200,
            },
        )
        .await
        .unwrap();
        assert_eq!(total, expected);
        for message in batch {
            assert_eq!(
                (message.id.0.get_version_num(), message.id.0.get_variant()),
                (7, uuid::Variant::RFC4122),
                "ids are UUIDv7"
            );
            assert!(seen_ids.insert(message.id));
            let contact = message.contact_id.unwrap();
            assert!(
                !excluded.contains(&contact),
                "opted-out and blocked contacts are left out"
            );
            assert!(seen_contacts.insert(contact), "one message per contact");
            assert_eq!((message.sender_id, message.not_before), (sender_id, now()));
            in_id_order.push(contact);
        }
    }
    assert_eq!(seen_contacts.len() as i64, expected);
    if db.dialect() == Dialect::Sqlite {
        // SQLite numbers a launch's ids by contact rowid: they must ascend in the order the
        // insert meets the contacts, or a large launch inserts all over its b-trees instead of
        // appending. That order is creation order, which is also the order they go out in.
        created.retain(|contact| !excluded.contains(contact));
        assert!(
            in_id_order == created,
            "a launch's message ids follow the order contacts were added"
        );
    }
}

async fn concurrent_launches_materialise_once(db: TestDb) {
    let ws = workspace(&db, "acme").await;
    let sender_id = sender(&db, ws).await;
    for n in 0..50 {
        contact(&db, ws, n, &[]).await;
    }
    let id = campaign(&db, ws, sender_id, Audience::All).await;
    let attempts = (0..4).map(|_| {
        let db = db.db.clone();
        tokio::spawn(async move {
            let mut tx = db.begin().await?;
            let launched = campaigns::launch(&mut tx, ws, id, now()).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(launched)
        })
    });
    let mut winners = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => winners += 1,
            Err(StoreError::InvalidTransition {
                current: CampaignStatus::Running,
            }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(true_counters(&db, id).await.total, 50);
    assert_eq!(stored_counters(&db, ws, id).await.total, 50);
}

async fn claims_take_single_messages_first_and_skip_paused_campaigns(db: TestDb) {
    let ws = workspace(&db, "acme").await;
    let sender_id = sender(&db, ws).await;
    for n in 0..5 {
        contact(&db, ws, n, &[]).await;
    }
    let first = campaign(&db, ws, sender_id, Audience::All).await;
    launch(&db, ws, first).await;
    let mut conn = db.write().await.unwrap();
    let single = |body| NewMessage {
        sender_id,
        contact_id: None,
        phone: "+14155552671",
        body,
        media_url: None,
        not_before: now(),
        reply_to: None,
        whatsapp: None,
    };
    let due = messages::insert_single(conn.conn(), ws, &single("now"), now())
        .await
        .unwrap();
    let later = NewMessage {
        not_before: now() + Duration::hours(1),
        ..single("later")
    };
    let scheduled = messages::insert_single(conn.conn(), ws, &later, now())
        .await
        .unwrap();
    drop(conn);

    let claimed = claim(&db, sender_id, now(), 3).await;
    assert_eq!(claimed.len(), 3);
    assert_eq!(claimed[0].id, due.id, "single messages go first");
    assert_eq!(claimed[0].body.as_deref(), Some("now"));
    assert!(
        claimed[1..]
            .iter()
            .all(|m| m.campaign_id == Some(first) && m.attempts == 1)
    );
    assert!(
        !claimed.iter().any(|m| m.id == scheduled.id),
        "not before its time"
    );

    let mut conn = db.write().await.unwrap();
    campaigns::pause(conn.conn(), ws, first, now())
        .await
        .unwrap();
    drop(conn);
    assert!(
        claim(&db, sender_id, now(), 10).await.is_empty(),
        "a paused campaign's messages wait"
    );
    let mut conn = db.write().await.unwrap();
    campaigns::resume(conn.conn(), ws, first, now())
        .await
        .unwrap();
    drop(conn);
    let rest = claim(&db, sender_id, now() + Duration::hours(2), 10).await;
    assert_eq!(
        rest.len(),
        4,
        "the remaining 3 campaign messages and the scheduled single"
    );
    assert_eq!(rest[0].id, scheduled.id);
    assert!(
        claim(&db, sender_id, now() + Duration::hours(2), 10)
            .await
            .is_empty(),
        "nothing is claimed twice"
    );

    let mut conn = db.write().await.unwrap();
    let cancel_me = messages::insert_single(conn.conn(), ws, &single("cancel me"), now())
        .await
        .unwrap();
    let canceled = messages::cancel_single(conn.conn(), ws, cancel_me.id, now())
        .await
        .unwrap();
    assert_eq!(
        (canceled.status, canceled.error.as_deref()),
        (MessageStatus::Skipped, Some("canceled"))
    );
    let again = messages::cancel_single(conn.conn(), ws, due.id, now()).await;
    assert!(
        matches!(
            again,
            Err(StoreError::MessageNotPending {
                status: MessageStatus::Sending
            })
        ),
        "{again:?}"
    );
}

async fn expired_claims_return_to_the_queue(db: TestDb) {
    let Claiming {
        ws,
        sender_id,
        campaign: id,
        claimed,
    } = launched_and_claimed(&db, 3, 10).await;
    assert_eq!(claimed.len(), 3);

    assert_eq!(
        messages::requeue_expired(&db, now() + Duration::seconds(29))
            .await
            .unwrap()
            .requeued,
        0,
        "leases still run"
    );
    assert_eq!(
        messages::requeue_expired(&db, now() + Duration::seconds(30))
            .await
            .unwrap()
            .requeued,
        3
    );
    let again = claim(&db, sender_id, now() + Duration::seconds(31), 10).await;
    let ids = |batch: &[messages::Claimed]| batch.iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(
        ids(&again),
        ids(&claimed),
        "the same ids: the provider's idempotency keys stay"
    );
    assert!(again.iter().all(|m| m.attempts == 2));
    assert_eq!(
        true_counters(&db, id).await,
        stored_counters(&db, ws, id).await
    );
}

/// Processes say they are alive each tick; one counts those seen within a lease, itself
/// included, and forgets those gone for long.
async fn processes_are_counted_while_they_say_they_are_alive(db: TestDb) {
    use herald::store::processes;
    let start = Utc::now();
    let second = chrono::Duration::seconds(1);
    let mut conn = db.write().await.unwrap();
    assert_eq!(
        processes::alive(conn.conn(), "a", start, start - second * 5)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        processes::alive(conn.conn(), "b", start + second, start - second * 4)
            .await
            .unwrap(),
        2
    );
    // Ten seconds on, only "b" keeps saying so: "a" (last seen at `start`) no longer counts.
    let later = start + second * 10;
    assert_eq!(
        processes::alive(conn.conn(), "b", later, later - second * 5)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        processes::live(conn.conn(), start - second).await.unwrap(),
        2,
        "rows stay until forgotten"
    );
    assert_eq!(
        processes::forget_gone(conn.conn(), later - second)
            .await
            .unwrap(),
        1
    );
    processes::leave(conn.conn(), "b").await.unwrap();
    assert_eq!(
        processes::live(conn.conn(), start - second).await.unwrap(),
        0
    );
}

/// A claim is renewed and released only by the claim that made it: once it ran out and another
/// lane claimed the message again, the first lane's renewal and release touch nothing.
async fn claims_are_renewed_and_released_only_by_their_own_claim(db: TestDb) {
    let Claiming {
        ws,
        sender_id,
        campaign: id,
        claimed,
    } = launched_and_claimed(&db, 3, 10).await;
    let held = |batch: &[messages::Claimed]| {
        batch
            .iter()
            .map(|m| messages::HeldClaim {
                id: m.id,
                attempt: m.attempts,
            })
            .collect::<Vec<_>>()
    };
    let first = held(&claimed);
    let requeue = |at: DateTime<Utc>| {
        let db = &db;
        async move {
            let expired = messages::requeue_expired(db, at).await.unwrap();
            expired.requeued
        }
    };

    // Renewed, the claims outlive their first lease.
    let mut conn = db.write().await.unwrap();
    messages::renew_claims(conn.conn(), &first, now() + Duration::seconds(60))
        .await
        .unwrap();
    drop(conn);
    assert_eq!(requeue(now() + Duration::seconds(45)).await, 0, "renewed");
    assert_eq!(requeue(now() + Duration::seconds(60)).await, 3);

    // Claimed again by another lane: the first claims no longer reach the messages.
    let second = claim(&db, sender_id, now() + Duration::seconds(61), 10).await;
    assert_eq!(second.len(), 3);
    let mut conn = db.write().await.unwrap();
    messages::renew_claims(conn.conn(), &first, now() + Duration::seconds(600))
        .await
        .unwrap();
    messages::release_unsent(conn.conn(), &first, now())
        .await
        .unwrap();
    drop(conn);
    assert_eq!(
        requeue(now() + Duration::seconds(91)).await,
        3,
        "the second claims kept their own lease and were not released"
    );

    // Claimed a third time, then released by that claim: pending, the attempt undone.
    let third = claim(&db, sender_id, now() + Duration::seconds(92), 10).await;
    assert!(third.iter().all(|m| m.attempts == 3));
    let mut conn = db.write().await.unwrap();
    messages::release_unsent(conn.conn(), &held(&third), now())
        .await
        .unwrap();
    drop(conn);
    let fourth = claim(&db, sender_id, now() + Duration::seconds(93), 10).await;
    assert!(fourth.iter().all(|m| m.attempts == 3), "{fourth:?}");
    assert_eq!(
        true_counters(&db, id).await,
        stored_counters(&db, ws, id).await
    );
}

async fn cancel_skips_pending_messages_and_completion_follows_the_last_result(db: TestDb) {
    let ws = workspace(&db, "acme").await;
    let sender_id = sender(&db, ws).await;
    for n in 0..6 {
        contact(&db, ws, n, &[]).await;
    }
    let finishing = campaign(&db, ws, sender_id, Audience::All).await;
    launch(&db, ws, finishing).await;
    let claimed = claim(&db, sender_id, now(), 4).await;
    let outcomes: Vec<_> = claimed
        .iter()
        .map(|m| {
            (
                m.id,
                Outcome::Sent {
                    provider_message_id: None,
                },
            )
        })
        .collect();
    record(&db, &outcomes).await;
    let mut conn = db.read().await.unwrap();
    assert_eq!(
        campaigns::get(conn.conn(), ws, finishing)
            .await
            .unwrap()
            .status,
        CampaignStatus::Running
    );
    drop(conn);
    let last = claim(&db, sender_id, now(), 10).await;
    assert_eq!(last.len(), 2);
    record(
        &db,
        &[
            (
                last[0].id,
                Outcome::Sent {
                    provider_message_id: Some("wamid.1".into()),
                },
            ),
            (
                last[1].id,
                Outcome::Failed {
                    error: "131026 undeliverable".into(),
                },
            ),
        ],
    )
    .await;
    let mut conn = db.read().await.unwrap();
    let done = campaigns::get(conn.conn(), ws, finishing).await.unwrap();
    assert_eq!(
        (done.status, done.completed_at),
        (CampaignStatus::Completed, Some(now()))
    );
    assert_eq!(
        done.counters(),
        Counters {
            total: 6,
            pending: 0,
            sent: 5,
            failed: 1,
            ..Counters::default()
        }
    );
    drop(conn);

    let canceled = campaign(&db, ws, sender_id, Audience::All).await;
    launch(&db, ws, canceled).await;
    let in_flight = claim(&db, sender_id, now(), 2).await;
    let mut tx = db.begin().await.unwrap();
    let after = campaigns::cancel(&mut tx, ws, canceled, now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        after.counters(),
        Counters {
            total: 6,
            pending: 2,
            skipped: 4,
            ..Counters::default()
        },
        "in-flight sends finish"
    );
    assert!(claim(&db, sender_id, now(), 10).await.is_empty());
    let mut conn = db.read().await.unwrap();
    let filter = MessageFilter {
        campaign: Some(canceled),
        status: Some(MessageStatus::Skipped),
        ..MessageFilter::default()
    };
    let (skipped, _) = messages::list(conn.conn(), ws, filter, Page::default())
        .await
        .unwrap();
    assert!(
        skipped
            .iter()
            .all(|m| m.error.as_deref() == Some("campaign canceled"))
    );
    drop(conn);
    record(
        &db,
        &in_flight
            .iter()
            .map(|m| {
                (
                    m.id,
                    Outcome::Sent {
                        provider_message_id: None,
                    },
                )
            })
            .collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(
        stored_counters(&db, ws, canceled).await,
        true_counters(&db, canceled).await
    );
    let mut conn = db.read().await.unwrap();
    assert_eq!(
        campaigns::get(conn.conn(), ws, canceled)
            .await
            .unwrap()
            .status,
        CampaignStatus::Canceled,
        "canceled stays canceled"
    );
}

/// Claims a few of `sender`'s messages and records outcomes for most (sent, failed, retried);
/// the rest stay in flight until their lease runs out. Sends are remembered in `known`.
async fn random_sends(
    db: &TestDb,
    rng: &mut StdRng,
    sender: SenderId,
    clock: DateTime<Utc>,
    known: &mut Vec<(MessageId, Option<String>)>,
) {
    let mut tx = db.begin().await.unwrap();
    let claimed = messages::claim(
        &mut tx,
        sender,
        clock,
        clock + Duration::seconds(5),
        rng.random_range(1..8),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut outcomes = Vec::new();
    for message in &claimed {
        if !rng.random_bool(0.85) {
            continue; // stays in flight until its lease runs out
        }
        let outcome = match rng.random_range(0..10) {
            0 => Outcome::Failed {
                error: "400 invalid number".into(),
            },
            1 => Outcome::Retry {
                not_before: clock + Duration::seconds(2),
                error: "503".into(),
            },
            _ => Outcome::Sent {
                provider_message_id: Some(format!("p-{}", message.id)),
            },
        };
        if let Outcome::Sent {
            provider_message_id,
        } = &outcome
        {
            known.push((message.id, provider_message_id.clone()));
        }
        outcomes.push((message.id, outcome));
    }
    // As a lane on SQLite does, a third of the time: the sends logged, the rest recorded, and
    // the log applied now or left to the requeue once the claims run out.
    let mut logged = LoggedGroup {
        at: clock,
        sends: Vec::new(),
    };
    if db.logs_sends() && rng.random_bool(0.33) {
        outcomes.retain(|(id, outcome)| match outcome {
            Outcome::Sent {
                provider_message_id,
            } => {
                logged.sends.push((*id, provider_message_id.clone()));
                false
            }
            _ => true,
        });
    }
    let segment = (!logged.sends.is_empty()).then(|| {
        let mut segment = send_log(db).segment().unwrap();
        segment.append(&logged).unwrap();
        segment
    });
    let apply_now = !logged.sends.is_empty() && rng.random_bool(0.5);
    let mut tx = db.begin().await.unwrap();
    messages::record_outcomes(&mut tx, &outcomes, clock)
        .await
        .unwrap();
    if apply_now {
        logged_sends::apply(&mut tx, std::slice::from_ref(&logged))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    // Otherwise dropped as a dead lane's: no lane holds it any more.
    if let Some(segment) = segment
        && apply_now
    {
        segment.discard().unwrap();
    }
}

/// A few provider reports (delivered, read, failed) about sends in `known`, by either id, dated
/// up to `max_age` before `clock`.
async fn random_reports(
    db: &TestDb,
    rng: &mut StdRng,
    sender: SenderId,
    clock: DateTime<Utc>,
    max_age: Duration,
    known: &[(MessageId, Option<String>)],
) {
    let reports: Vec<StatusReport> = (0..rng.random_range(1..6))
        .map(|_| {
            let (id, provider) = &known[rng.random_range(0..known.len())];
            let reference = match provider {
                Some(provider) if rng.random_bool(0.5) => provider.clone(),
                _ => id.to_string(),
            };
            let at = clock - Duration::seconds(rng.random_range(0..=max_age.num_seconds()));
            let event = match rng.random_range(0..4) {
                0 => Event::Delivered { at },
                1 => Event::Read { at },
                2 => Event::Failed { at },
                _ => Event::Delivered { at },
            };
            StatusReport {
                reference,
                event,
                error: None,
            }
        })
        .collect();
    let mut tx = db.begin().await.unwrap();
    messages::record_status_reports(&mut tx, sender, &reports, clock)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn counters_equal_the_messages_after_random_transitions(db: TestDb) {
    let ws = workspace(&db, "acme").await;
    let sender_id = sender(&db, ws).await;
    for n in 0..60 {
        contact(&db, ws, n, &[]).await;
    }
    let ids: Vec<CampaignId> = vec![
        campaign(&db, ws, sender_id, Audience::All).await,
        campaign(&db, ws, sender_id, Audience::All).await,
    ];
    for &id in &ids {
        launch(&db, ws, id).await;
    }
    let mut rng = StdRng::seed_from_u64(0x4e7a1d);
    let mut known: Vec<(MessageId, Option<String>)> = Vec::new();
    let mut clock = now();
    for step in 0..250 {
        clock += Duration::seconds(1);
        match rng.random_range(0..10) {
            0..=2 => random_sends(&db, &mut rng, sender_id, clock, &mut known).await,
            3..=5 if !known.is_empty() => {
                random_reports(
                    &db,
                    &mut rng,
                    sender_id,
                    clock,
                    Duration::seconds(2),
                    &known,
                )
                .await
            }
            6 => {
                messages::requeue_expired(&db, clock).await.unwrap();
            }
            7 if step > 150 => {
                let mut tx = db.begin().await.unwrap();
                let _ = campaigns::cancel(&mut tx, ws, ids[1], clock).await;
                tx.commit().await.unwrap();
            }
            8 => {
                let mut conn = db.write().await.unwrap();
                let id = ids[rng.random_range(0..ids.len())];
                let _ = campaigns::pause(conn.conn(), ws, id, clock).await;
                let _ = campaigns::resume(conn.conn(), ws, id, clock).await;
            }
            _ => {}
        }
        if step % 25 == 0 {
            for &id in &ids {
                assert_eq!(
                    stored_counters(&db, ws, id).await,
                    true_counters(&db, id).await,
                    "step {step}"
                );
            }
        }
    }
    for &id in &ids {
        let stored = stored_counters(&db, ws, id).await;
        assert_eq!(stored, true_counters(&db, id).await);
        assert!(
            stored.sent > 0 && stored.delivered > 0,
            "the sequence exercised the stages: {stored:?}"
        );
    }
}

async fn rollups(db: &TestDb, ws: WorkspaceId) -> (Snapshot, Snapshot) {
    let mut conn = db.read().await.unwrap();
    let stored = Snapshot::stored(conn.conn(), ws).await.unwrap();
    let truth = Snapshot::from_rows(conn.conn(), ws).await.unwrap();
    (stored, truth)
}

/// Analytics' rollups (messages by hour and quarter, campaign timelines, contacts created and
/// opted out, contact totals) equal a count over the rows after a random sequence of sends,
/// reports, inbound messages, cancels, opt-outs and opt-ins, blocks and deletions, with the clock
/// crossing many hours. Another workspace's activity never shows in this one's.
async fn rollups_equal_the_messages_after_random_transitions(db: TestDb) {
    let ws = workspace(&db, "acme").await;
    let other = workspace(&db, "other").await;
    let sender_id = sender(&db, ws).await;
    let other_sender = sender(&db, other).await;
    let mut people = Vec::new();
    for n in 0..40 {
        people.push(contact(&db, ws, n, &[]).await);
    }
    contact(&db, other, 1, &[]).await;
    let ids: Vec<CampaignId> = vec![
        campaign(&db, ws, sender_id, Audience::All).await,
        campaign(&db, ws, sender_id, Audience::All).await,
    ];
    for &id in &ids {
        launch(&db, ws, id).await;
    }
    let mut rng = StdRng::seed_from_u64(0x0701_10b5);
    let mut known: Vec<(MessageId, Option<String>)> = Vec::new();
    let mut clock = now();
    let mut inbound_count = 0;
    for step in 0..300 {
        // Minutes to an hour and more per step: buckets of many hours and every quarter.
        clock += Duration::seconds(rng.random_range(1..5000));
        match rng.random_range(0..12) {
            0..=2 => random_sends(&db, &mut rng, sender_id, clock, &mut known).await,
            3..=4 if !known.is_empty() => {
                random_reports(&db, &mut rng, sender_id, clock, Duration::hours(2), &known).await
            }
            5 => {
                messages::requeue_expired(&db, clock).await.unwrap();
            }
            6 | 7 => {
                let n = rng.random_range(0..60);
                let from = egypt(n).into_string();
                let (sender, workspace) = if rng.random_bool(0.9) {
                    (sender_id, ws)
                } else {
                    (other_sender, other)
                };
                let at = clock - Duration::seconds(rng.random_range(0..600));
                let new = messages::NewInbound {
                    from: &from,
                    body: "hello",
                    at,
                    name: None,
                    id: None,
                };
                let mut tx = db.begin().await.unwrap();
                let contact = contacts::find_by_phone(tx.conn(), workspace, &egypt(n))
                    .await
                    .unwrap()
                    .map(|contact| contact.id);
                let arrival = messages::Arrival {
                    sender,
                    workspace,
                    contact,
                    phone: &from,
                    message: &new,
                    now: clock,
                };
                let mut received = Vec::new();
                let inbound = messages::insert_inbound(tx.conn(), &[arrival], &mut received)
                    .await
                    .unwrap();
                analytics::add_steps(tx.conn(), &received).await.unwrap();
                tx.commit().await.unwrap();
                inbound_count += inbound.iter().flatten().count();
            }
            8 => {
                let person = people[rng.random_range(0..people.len())];
                let opted_out = rng.random_bool(0.6).then_some(clock);
                let mut tx = db.begin().await.unwrap();
                let _ = contacts::set_opted_out(tx.conn(), ws, person, opted_out, clock).await;
                tx.commit().await.unwrap();
            }
            9 => {
                let person = people[rng.random_range(0..people.len())];
                let mut tx = db.begin().await.unwrap();
                let _ =
                    contacts::set_blocked(tx.conn(), ws, person, rng.random_bool(0.5), clock).await;
                tx.commit().await.unwrap();
            }
            10 if step > 200 => {
                let index = rng.random_range(0..people.len());
                let person = people.swap_remove(index);
                let mut conn = db.write().await.unwrap();
                contacts::delete(conn.conn(), ws, person).await.unwrap();
            }
            11 if step > 150 => {
                let mut tx = db.begin().await.unwrap();
                let _ = campaigns::cancel(&mut tx, ws, ids[1], clock).await;
                tx.commit().await.unwrap();
            }
            _ => {}
        }
        if step % 25 == 0 {
            let (stored, truth) = rollups(&db, ws).await;
            assert_eq!(stored, truth, "step {step}");
        }
    }
    let (stored, truth) = rollups(&db, ws).await;
    assert_eq!(stored, truth);
    let outcomes: HashSet<&str> = stored
        .messages
        .keys()
        .map(|(_, _, _, outcome)| outcome.as_str())
        .collect();
    assert_eq!(
        outcomes,
        HashSet::from(["sent", "delivered", "read", "failed", "received"]),
        "the sequence exercised every outcome"
    );
    let hours: HashSet<i64> = stored.messages.keys().map(|(hour, ..)| *hour).collect();
    assert!(hours.len() > 20, "many hours: {}", hours.len());
    assert!(inbound_count > 0 && stored.totals.opted_out > 0 && stored.totals.blocked > 0);
    assert!(
        stored
            .contacts
            .keys()
            .any(|(_, outcome)| outcome == "opted_out")
    );
    assert!(!stored.timeline.is_empty());
    let (other_stored, other_truth) = rollups(&db, other).await;
    assert_eq!(other_stored, other_truth);
}

/// A report naming the provider's id before the send that carries it is recorded is parked,
/// applied once the send is recorded, and dropped if its send never comes.
async fn reports_that_overtake_their_send_are_parked_then_applied(db: TestDb) {
    let Claiming {
        ws,
        sender_id,
        campaign: id,
        claimed,
    } = launched_and_claimed(&db, 2, 2).await;
    let report = |reference: &str| StatusReport {
        reference: reference.to_owned(),
        event: Event::Read { at: now() },
        error: None,
    };
    let mut tx = db.begin().await.unwrap();
    let parked = messages::record_status_reports(
        &mut tx,
        sender_id,
        &[report("wamid.first"), report("wamid.never")],
        now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(parked.len(), 2);
    let sweep = |at| {
        let db = db.db.clone();
        async move {
            let mut tx = db.begin().await.unwrap();
            let swept = messages::apply_parked_reports(&mut tx, at, Duration::hours(24))
                .await
                .unwrap();
            tx.commit().await.unwrap();
            swept
        }
    };
    assert_eq!(
        sweep(now()).await,
        messages::ParkedSweep::default(),
        "nothing to apply yet"
    );
    record(
        &db,
        &[(
            claimed[0].id,
            Outcome::Sent {
                provider_message_id: Some("wamid.first".into()),
            },
        )],
    )
    .await;
    assert_eq!(
        sweep(now()).await,
        messages::ParkedSweep {
            applied: 1,
            expired: 0
        }
    );
    let mut conn = db.read().await.unwrap();
    let read = messages::get(conn.conn(), ws, claimed[0].id).await.unwrap();
    assert_eq!(read.status, MessageStatus::Read);
    drop(conn);
    assert_eq!(
        stored_counters(&db, ws, id).await,
        true_counters(&db, id).await
    );
    assert_eq!(
        sweep(now() + Duration::hours(25)).await,
        messages::ParkedSweep {
            applied: 0,
            expired: 1
        },
        "a report whose send never came is dropped after the retention"
    );
    let mut conn = db.read().await.unwrap();
    assert!(!messages::has_parked_reports(conn.conn()).await.unwrap());
}

async fn a_send_recorded_after_its_callback_keeps_what_the_callback_said(db: TestDb) {
    let Claiming {
        ws,
        sender_id,
        campaign: id,
        claimed,
    } = launched_and_claimed(&db, 3, 3).await;
    // The provider's "delivered" for the second message overtakes the lane's record of its send.
    let delivered_at = now() + Duration::seconds(1);
    let mut tx = db.begin().await.unwrap();
    let unmatched = messages::record_status_reports(
        &mut tx,
        sender_id,
        &[StatusReport {
            reference: claimed[1].id.to_string(),
            event: Event::Delivered { at: delivered_at },
            error: None,
        }],
        now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(unmatched.is_empty());
    let sends: Vec<_> = claimed
        .iter()
        .map(|m| {
            (
                m.id,
                Outcome::Sent {
                    provider_message_id: Some(format!("p-{}", m.id)),
                },
            )
        })
        .collect();
    record(&db, &sends).await;
    let mut conn = db.read().await.unwrap();
    let overtaken = messages::get(conn.conn(), ws, claimed[1].id).await.unwrap();
    assert_eq!(
        (overtaken.status, overtaken.delivered_at),
        (MessageStatus::Delivered, Some(delivered_at)),
        "the later record of the send does not undo the delivery"
    );
    assert!(overtaken.sent_at.is_some());
    let plain = messages::get(conn.conn(), ws, claimed[0].id).await.unwrap();
    assert_eq!(plain.status, MessageStatus::Sent);
    assert_eq!(
        plain.provider_message_id.as_deref(),
        Some(format!("p-{}", claimed[0].id).as_str())
    );
    drop(conn);
    let counters = stored_counters(&db, ws, id).await;
    assert_eq!(counters, true_counters(&db, id).await);
    assert_eq!(
        (counters.sent, counters.delivered, counters.pending),
        (3, 1, 0)
    );
}

async fn status_reports_find_messages_by_either_id(db: TestDb) {
    let Claiming {
        ws,
        sender_id,
        campaign: id,
        claimed,
    } = launched_and_claimed(&db, 2, 2).await;
    let other_sender = sender(&db, ws).await;
    record(
        &db,
        &[
            (
                claimed[0].id,
                Outcome::Sent {
                    provider_message_id: Some("wamid.A".into()),
                },
            ),
            (
                claimed[1].id,
                Outcome::Sent {
                    provider_message_id: None,
                },
            ),
        ],
    )
    .await;
    let report = |reference: &str, event| StatusReport {
        reference: reference.into(),
        event,
        error: None,
    };
    let read_at = now() + Duration::minutes(2);
    let mut tx = db.begin().await.unwrap();
    let foreign = messages::record_status_reports(
        &mut tx,
        other_sender,
        &[report("wamid.A", Event::Read { at: read_at })],
        now(),
    )
    .await
    .unwrap();
    assert_eq!(
        foreign.len(),
        1,
        "a sender's callbacks reach only its own messages"
    );
    let unmatched = messages::record_status_reports(
        &mut tx,
        sender_id,
        &[
            report("wamid.A", Event::Read { at: read_at }),
            report(
                "wamid.A",
                Event::Delivered {
                    at: now() + Duration::minutes(1),
                },
            ),
            report(
                &claimed[1].id.to_string(),
                Event::Delivered {
                    at: now() + Duration::minutes(1),
                },
            ),
            report("unknown", Event::Delivered { at: now() }),
        ],
        now(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let unmatched: Vec<_> = unmatched.iter().map(|r| r.reference.as_str()).collect();
    assert_eq!(
        unmatched,
        ["unknown"],
        "only the unknown reference is handed back"
    );
    let mut conn = db.read().await.unwrap();
    let first = messages::get(conn.conn(), ws, claimed[0].id).await.unwrap();
    assert_eq!(
        (first.status, first.read_at, first.delivered_at),
        (MessageStatus::Read, Some(read_at), Some(read_at)),
        "late delivered changes nothing"
    );
    assert_eq!(first.provider_message_id.as_deref(), Some("wamid.A"));
    let counters = stored_counters(&db, ws, id).await;
    assert_eq!(
        (counters.sent, counters.delivered, counters.read),
        (2, 2, 1)
    );
    assert_eq!(
        (counters.delivery_rate(), counters.read_rate()),
        (100.0, 50.0)
    );
    assert_eq!(counters, true_counters(&db, id).await);
}

async fn daily_usage_never_exceeds_the_cap(db: TestDb) {
    let ws = workspace(&db, "acme").await;
    let sender_id = sender(&db, ws).await;
    let day = NaiveDate::from_ymd_opt(2026, 11, 21).unwrap();
    let reserve = |wanted, cap| {
        let db = db.db.clone();
        async move {
            let mut tx = db.begin().await.unwrap();
            let granted = usage::reserve(&mut tx, ws, sender_id, day, wanted, cap)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            granted
        }
    };
    assert_eq!(reserve(30, Some(100)).await, 30);
    assert_eq!(reserve(80, Some(100)).await, 70, "only what is left");
    assert_eq!(reserve(5, Some(100)).await, 0);
    assert_eq!(
        reserve(5, Some(50)).await,
        0,
        "a lowered cap grants nothing past it"
    );
    let mut conn = db.write().await.unwrap();
    usage::release(conn.conn(), sender_id, day, 10)
        .await
        .unwrap();
    assert_eq!(
        usage::sent_on(conn.conn(), sender_id, day).await.unwrap(),
        90
    );
    drop(conn);
    assert_eq!(reserve(50, Some(100)).await, 10);
    assert_eq!(reserve(7, None).await, 7, "no cap, no limit");
    let mut conn = db.read().await.unwrap();
    assert_eq!(
        usage::sent_on(conn.conn(), sender_id, day).await.unwrap(),
        107
    );
    assert_eq!(
        usage::sent_on(conn.conn(), sender_id, day.succ_opt().unwrap())
            .await
            .unwrap(),
        0,
        "a new day starts at zero"
    );
}

/// Keys are listed with their workspace's name, all or one workspace's; an expired or revoked
/// key is listed but not found active.
async fn api_keys_are_listed_and_found_active_only_while_they_last(db: TestDb) {
    use herald::domain::auth::Ability;
    use herald::domain::ids::ApiKeyId;
    use herald::store::api_keys::{self, NewApiKey};
    let acme = workspace(&db, "acme").await;
    let other = workspace(&db, "other").await;
    let mut conn = db.write().await.unwrap();
    let mut keys = Vec::new();
    for (workspace, expires_at) in [(acme, None), (other, Some(now() + Duration::hours(1)))] {
        let id = ApiKeyId::generate();
        let key = NewApiKey {
            id,
            workspace_id: workspace,
            name: "k",
            secret_digest: "digest",
            abilities: &[Ability::All],
            rate_per_minute: None,
            daily_quota: None,
            monthly_quota: None,
            expires_at,
        };
        api_keys::insert(conn.conn(), &key, now()).await.unwrap();
        keys.push(id);
    }
    let all = api_keys::list(conn.conn(), None).await.unwrap();
    let names: Vec<&str> = all.iter().map(|k| k.workspace.as_str()).collect();
    assert_eq!(names, ["acme", "other"]);
    let others = api_keys::list(conn.conn(), Some(other)).await.unwrap();
    assert_eq!(others.len(), 1);
    assert_eq!(others[0].id, keys[1]);
    let later = now() + Duration::hours(2);
    assert!(
        api_keys::find_active(conn.conn(), keys[1], now())
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        api_keys::find_active(conn.conn(), keys[1], later)
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    assert!(api_keys::revoke(conn.conn(), keys[0], now()).await.unwrap());
    assert!(
        api_keys::find_active(conn.conn(), keys[0], now())
            .await
            .unwrap()
            .is_none(),
        "revoked"
    );
}

/// An import's lease fences its runs: once another run has taken an import whose lease ran
/// out, the stalled run's progress and finish are refused and write nothing.
async fn an_import_taken_over_refuses_the_stalled_runs_writes(db: TestDb) {
    use herald::store::imports::{self, IMPORT_LEASE, Progress};
    let ws = workspace(&db, "acme").await;
    let mut conn = db.write().await.unwrap();
    let import = imports::insert(conn.conn(), ws, b"phone\n+15550000001\n", now())
        .await
        .unwrap();
    imports::start(
        conn.conn(),
        import.id,
        "stalled",
        now(),
        now() + IMPORT_LEASE,
    )
    .await
    .unwrap();
    assert!(
        imports::start(conn.conn(), import.id, "other", now(), now() + IMPORT_LEASE)
            .await
            .is_err(),
        "taken while its lease holds"
    );
    let later = now() + IMPORT_LEASE + Duration::seconds(1);
    imports::start(conn.conn(), import.id, "other", later, later + IMPORT_LEASE)
        .await
        .unwrap();
    let progress = Progress {
        total: 7,
        ..Progress::default()
    };
    assert!(
        !imports::record_progress(conn.conn(), import.id, "stalled", &progress, later)
            .await
            .unwrap()
    );
    assert!(
        !imports::finish(conn.conn(), import.id, "stalled", &progress, true, later)
            .await
            .unwrap()
    );
    let current = imports::get(conn.conn(), ws, import.id).await.unwrap();
    assert_eq!((current.status.as_str(), current.total), ("running", 0));
    assert!(
        imports::finish(conn.conn(), import.id, "other", &progress, true, later)
            .await
            .unwrap()
    );
    let current = imports::get(conn.conn(), ws, import.id).await.unwrap();
    assert_eq!((current.status.as_str(), current.total), ("completed", 7));
}

/// Lanes of several processes reserve from one sender's cap at once: together they never get
/// more than the cap (PostgreSQL runs these truly concurrently; SQLite's writer serialises them).
async fn concurrent_reservations_never_exceed_the_cap(db: TestDb) {
    let ws = workspace(&db, "acme").await;
    let sender_id = sender(&db, ws).await;
    let day = NaiveDate::from_ymd_opt(2026, 11, 21).unwrap();
    let reservations = (0..16).map(|_| {
        let db = db.db.clone();
        tokio::spawn(async move {
            let mut tx = db.begin().await.unwrap();
            let granted = usage::reserve(&mut tx, ws, sender_id, day, 7, Some(50))
                .await
                .unwrap();
            // Hold the transaction a moment, as a claim does, so that others pile up behind it.
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            tx.commit().await.unwrap();
            granted
        })
    });
    let mut granted = 0;
    for reservation in reservations.collect::<Vec<_>>() {
        granted += reservation.await.unwrap();
    }
    assert_eq!(granted, 50, "the whole cap and not one more");
    let mut conn = db.read().await.unwrap();
    assert_eq!(
        usage::sent_on(conn.conn(), sender_id, day).await.unwrap(),
        50
    );
}

/// A single message to `sender`, due now.
fn single_to(sender_id: SenderId) -> NewMessage<'static> {
    NewMessage {
        sender_id,
        contact_id: None,
        phone: "+14155552671",
        body: "Hello",
        media_url: None,
        not_before: now(),
        reply_to: None,
        whatsapp: None,
    }
}

/// Copies message `from` as a new message of `campaign`, by hand: no store function inserts a
/// message for a campaign it has not just locked.
async fn copy_into_campaign(
    conn: herald::store::Conn<'_>,
    campaign: CampaignId,
    from: MessageId,
) -> Result<(), sqlx::Error> {
    const COPY: &str = "INSERT INTO messages (id, workspace_id, campaign_id, sender_id, direction,
                                              phone, status, not_before, created_at, updated_at)
                        SELECT $1, workspace_id, $2, sender_id, direction, phone, 'pending',
                               not_before, created_at, updated_at
                        FROM messages WHERE id = $3";
    let id = MessageId::generate();
    match conn {
        herald::store::Conn::Sqlite(c) => sqlx::query(COPY)
            .bind(id)
            .bind(campaign)
            .bind(from)
            .execute(c)
            .await
            .map(drop),
        herald::store::Conn::Postgres(c) => sqlx::query(COPY)
            .bind(id)
            .bind(campaign)
            .bind(from)
            .execute(c)
            .await
            .map(drop),
    }
}

/// A message names a campaign and a sender that exist; a campaign's deletion takes its messages
/// along; a sender that messages name cannot be deleted. SQLite keeps this with foreign keys,
/// PostgreSQL with triggers that check once per statement.
async fn messages_name_only_campaigns_and_senders_that_exist(db: TestDb) {
    let ws = workspace(&db, "acme").await;
    let sender_id = sender(&db, ws).await;
    let mut conn = db.write().await.unwrap();
    let unknown =
        messages::insert_single(conn.conn(), ws, &single_to(SenderId::generate()), now()).await;
    assert!(
        matches!(unknown, Err(StoreError::InUse)),
        "a message to an unknown sender is refused as a key violation: {unknown:?}"
    );
    let queued = messages::insert_single(conn.conn(), ws, &single_to(sender_id), now())
        .await
        .unwrap();
    let copied = copy_into_campaign(conn.conn(), CampaignId::generate(), queued.id).await;
    assert!(
        matches!(&copied, Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation()),
        "a message of an unknown campaign is refused: {copied:?}"
    );
    assert!(
        matches!(
            senders::delete(conn.conn(), ws, sender_id).await,
            Err(StoreError::InUse)
        ),
        "a sender that a single message names stays"
    );
    drop(conn);

    contact(&db, ws, 1, &[]).await;
    let campaign_id = campaign(&db, ws, sender_id, Audience::All).await;
    let mut conn = db.write().await.unwrap();
    copy_into_campaign(conn.conn(), campaign_id, queued.id)
        .await
        .expect("a message of a campaign that exists");
    campaigns::delete(conn.conn(), ws, campaign_id)
        .await
        .unwrap();
    let (remaining, total) =
        messages::list(conn.conn(), ws, MessageFilter::default(), Page::default())
            .await
            .unwrap();
    assert_eq!(
        (remaining.iter().map(|m| m.id).collect::<Vec<_>>(), total),
        (vec![queued.id], 1),
        "the campaign's message went with it, the single message stayed"
    );
}

/// A sender deleted while a message for it is being queued: whichever transaction comes first,
/// the other fails, and no message is left naming a sender that is gone.
async fn a_sender_and_a_message_for_it_never_both_commit(db: TestDb) {
    let wait = std::time::Duration::from_millis(200);
    let ws = workspace(&db, "acme").await;

    // The insert first: the deletion waits for its transaction, then finds its message.
    let kept = sender(&db, ws).await;
    let mut inserting = db.begin().await.unwrap();
    messages::insert_single(inserting.conn(), ws, &single_to(kept), now())
        .await
        .unwrap();
    let deleting = {
        let db = db.db.clone();
        tokio::spawn(async move {
            let mut conn = db.write().await.unwrap();
            senders::delete(conn.conn(), ws, kept).await
        })
    };
    tokio::time::sleep(wait).await;
    assert!(!deleting.is_finished(), "the deletion waits for the insert");
    inserting.commit().await.unwrap();
    let deleted = deleting.await.unwrap();
    assert!(matches!(deleted, Err(StoreError::InUse)), "{deleted:?}");

    // The deletion first: the insert waits for it, then finds the sender gone.
    let gone = sender(&db, ws).await;
    let mut deleting = db.begin().await.unwrap();
    senders::delete(deleting.conn(), ws, gone).await.unwrap();
    let inserting = {
        let db = db.db.clone();
        tokio::spawn(async move {
            let mut conn = db.write().await.unwrap();
            messages::insert_single(conn.conn(), ws, &single_to(gone), now())
                .await
                .map(|message| message.id)
        })
    };
    tokio::time::sleep(wait).await;
    assert!(
        !inserting.is_finished(),
        "the insert waits for the deletion"
    );
    deleting.commit().await.unwrap();
    let inserted = inserting.await.unwrap();
    assert!(matches!(inserted, Err(StoreError::InUse)), "{inserted:?}");

    let mut conn = db.read().await.unwrap();
    let (left, _) = messages::list(conn.conn(), ws, MessageFilter::default(), Page::default())
        .await
        .unwrap();
    assert!(
        left.iter().all(|message| message.sender_id == kept),
        "no message names the deleted sender"
    );
}

/// Statuses, provider ids and sent times of these messages, in order.
async fn progress_of(
    db: &TestDb,
    ws: WorkspaceId,
    ids: &[MessageId],
) -> Vec<(MessageStatus, Option<String>, Option<DateTime<Utc>>)> {
    let mut conn = db.read().await.unwrap();
    let mut progress = Vec::new();
    for id in ids {
        let message = messages::get(conn.conn(), ws, *id).await.unwrap();
        progress.push((message.status, message.provider_message_id, message.sent_at));
    }
    progress
}

fn send_log(db: &herald::store::Db) -> &logged_sends::SendLog {
    db.send_log().expect("SQLite keeps a log of sends")
}

fn logged_count(db: &TestDb) -> usize {
    send_log(db).read().unwrap().len()
}

/// A lane that dies after logging sends and before applying them: once their claims run out,
/// the logged ones are recorded as sent, at the time they were logged, and only the others go
/// back to the queue to be sent again.
async fn logged_sends_are_recorded_not_requeued_when_their_claims_run_out(db: TestDb) {
    let Claiming {
        ws,
        sender_id,
        campaign: id,
        claimed,
    } = launched_and_claimed(&db, 4, 10).await;
    let ids: Vec<MessageId> = claimed.iter().map(|m| m.id).collect();
    let logged_at = now() + Duration::seconds(2);
    let group = LoggedGroup {
        at: logged_at,
        sends: vec![(ids[0], Some("wamid.0".into())), (ids[2], None)],
    };
    let mut dead_lane = send_log(&db).segment().unwrap();
    dead_lane.append(&group).unwrap();
    drop(dead_lane);
    // A lane that lost its lease logs a send its successor logged too: the first logging stays.
    let again = LoggedGroup {
        at: logged_at + Duration::seconds(1),
        sends: vec![(ids[0], Some("wamid.again".into()))],
    };
    let mut successor = send_log(&db).segment().unwrap();
    successor.append(&again).unwrap();
    drop(successor);
    assert_eq!(logged_count(&db), 2);

    let early = messages::requeue_expired(&db, now() + Duration::seconds(29))
        .await
        .unwrap();
    assert_eq!(early, messages::Expired::default(), "the claims still hold");
    assert_eq!(
        progress_of(&db, ws, &ids[..1]).await[0].0,
        MessageStatus::Sending
    );

    let expired = messages::requeue_expired(&db, now() + Duration::seconds(30))
        .await
        .unwrap();
    assert_eq!(
        expired,
        messages::Expired {
            recorded: 2,
            requeued: 2
        }
    );
    assert_eq!(
        progress_of(&db, ws, &ids).await,
        vec![
            (MessageStatus::Sent, Some("wamid.0".into()), Some(logged_at)),
            (MessageStatus::Pending, None, None),
            (MessageStatus::Sent, None, Some(logged_at)),
            (MessageStatus::Pending, None, None),
        ]
    );
    assert_eq!(logged_count(&db), 0, "recorded sends leave the log");
    let counters = stored_counters(&db, ws, id).await;
    assert_eq!((counters.sent, counters.pending), (2, 2));
    assert_eq!(counters, true_counters(&db, id).await);
    let again = claim(&db, sender_id, now() + Duration::seconds(31), 10).await;
    assert_eq!(
        again.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![ids[1], ids[3]],
        "only the sends never logged go out again"
    );
}

/// Applying logged sends records them in full (status, counters, events) and empties the log;
/// applying them a second time (a lane that lost its lease, after the requeue recorded them)
/// changes nothing. The sweep deletes the segments no lane holds whose messages are no longer
/// in flight, and only those.
async fn applied_logged_sends_are_recorded_once_and_leave_the_log(db: TestDb) {
    let Claiming {
        ws,
        campaign: id,
        claimed,
        ..
    } = launched_and_claimed(&db, 3, 3).await;
    let ids: Vec<MessageId> = claimed.iter().map(|m| m.id).collect();
    let group = LoggedGroup {
        at: now(),
        sends: vec![(ids[0], Some("p-0".into())), (ids[1], Some("p-1".into()))],
    };
    for _ in 0..2 {
        let mut segment = send_log(&db).segment().unwrap();
        segment.append(&group).unwrap();
        let mut tx = db.begin().await.unwrap();
        logged_sends::apply(&mut tx, std::slice::from_ref(&group))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        segment.discard().unwrap();
        let counters = stored_counters(&db, ws, id).await;
        assert_eq!((counters.sent, counters.pending), (2, 1));
        assert_eq!(counters, true_counters(&db, id).await);
        assert_eq!(logged_count(&db), 0);
    }
    let mut conn = db.read().await.unwrap();
    let (events, _) = herald::store::events::read_after(conn.conn(), 0, 100)
        .await
        .unwrap();
    let sent_events = events
        .iter()
        .filter(|event| event.kind == herald::domain::event::EventType::MessageSent)
        .count();
    drop(conn);
    assert_eq!(
        sent_events, 2,
        "one event a send, however often it is applied"
    );

    // Segments no lane holds: one of applied sends only, one with a send still in flight; and
    // one of applied sends that its lane still holds.
    let applied = LoggedGroup {
        at: now(),
        sends: vec![(ids[0], None)],
    };
    let in_flight = LoggedGroup {
        at: now(),
        sends: vec![(ids[1], None), (ids[2], None)],
    };
    let log = send_log(&db);
    for group in [&applied, &in_flight] {
        let mut segment = log.segment().unwrap();
        segment.append(group).unwrap();
    }
    let mut held = log.segment().unwrap();
    held.append(&applied).unwrap();
    assert_eq!(logged_sends::sweep(&db).await.unwrap(), 1);
    assert_eq!(
        logged_count(&db),
        3,
        "the send in flight keeps its segment, and a lane's own segment is its own"
    );
    drop(held);
    assert_eq!(logged_sends::sweep(&db).await.unwrap(), 1);
    let left: Vec<MessageId> = log
        .read()
        .unwrap()
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(left, vec![ids[1], ids[2]]);
}

/// Groups logged at different times and applied in one go: each send keeps the time its group
/// was logged, and the rollups count each in its own minute.
async fn logged_groups_applied_together_keep_each_its_own_time(db: TestDb) {
    let Claiming {
        ws,
        campaign: id,
        claimed,
        ..
    } = launched_and_claimed(&db, 3, 3).await;
    let ids: Vec<MessageId> = claimed.iter().map(|m| m.id).collect();
    let first = now() + Duration::seconds(61);
    let second = now() + Duration::seconds(185);
    let groups = [
        LoggedGroup {
            at: first,
            sends: vec![(ids[0], Some("p-0".into()))],
        },
        LoggedGroup {
            at: second,
            sends: vec![(ids[1], Some("p-1".into())), (ids[2], None)],
        },
    ];
    let mut tx = db.begin().await.unwrap();
    logged_sends::apply(&mut tx, &groups).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        progress_of(&db, ws, &ids).await,
        vec![
            (MessageStatus::Sent, Some("p-0".into()), Some(first)),
            (MessageStatus::Sent, Some("p-1".into()), Some(second)),
            (MessageStatus::Sent, None, Some(second)),
        ]
    );
    let counters = stored_counters(&db, ws, id).await;
    assert_eq!((counters.sent, counters.pending), (3, 0));
    assert_eq!(counters, true_counters(&db, id).await);
    let (stored, truth) = rollups(&db, ws).await;
    assert_eq!(stored, truth);
}

/// SQLite's log of sends (PostgreSQL keeps none: its lanes record each group in full).
mod send_log {
    use sqlx::Connection;

    /// A database whose process stopped with sends in the log, when the log was a table of the
    /// main file (migration 0025): upgraded, the log's own file holds them, for the requeue to
    /// record, and the main file's table is gone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sends_logged_before_the_log_had_a_file_of_its_own_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("herald.db").display());
        let mut before = sqlx::migrate!("migrations/sqlite");
        before.migrations = before
            .migrations
            .iter()
            .filter(|migration| migration.version <= 25)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        before.dangerous_set_table_name("herald_migrations");
        let options: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
        let mut old = sqlx::SqliteConnection::connect_with(&options.create_if_missing(true))
            .await
            .unwrap();
        before.run(&mut old).await.unwrap();
        let id = super::MessageId::generate();
        let at = super::now();
        sqlx::query(
            "INSERT INTO logged_sends (message_id, provider_message_id, sent_at) VALUES ($1, $2, $3)",
        )
        .bind(id)
        .bind("wamid.left")
        .bind(at)
        .execute(&mut old)
        .await
        .unwrap();
        old.close().await.unwrap();

        let db = herald::store::Db::connect(&url, &herald::store::DbOptions::default())
            .await
            .unwrap();
        db.migrate().await.unwrap();
        assert_eq!(
            super::send_log(&db).read().unwrap(),
            vec![(id, Some("wamid.left".to_owned()), at)]
        );
        let in_main = crate::common::count(
            &db,
            "SELECT COUNT(*) FROM main.sqlite_schema WHERE name = 'logged_sends'",
        )
        .await;
        assert_eq!(in_main, 0, "the main file's log is dropped");
        db.close().await;
    }

    /// A database whose process stopped with sends in the log when the log was a SQLite file
    /// of its own (`<database>-sends`): reopened, the log holds them, for the requeue to record,
    /// and the old file is gone; reopened again, they are still there once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sends_logged_in_the_log_file_of_the_version_before_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("herald.db").display());
        let earlier = dir.path().join("herald.db-sends");
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&earlier)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
        let mut old = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        sqlx::query(
            "CREATE TABLE logged_sends (
                 message_id BLOB PRIMARY KEY, provider_message_id TEXT, sent_at TEXT NOT NULL
             ) WITHOUT ROWID",
        )
        .execute(&mut old)
        .await
        .unwrap();
        let at = super::now();
        let mut left = vec![
            (
                super::MessageId::generate(),
                Some("wamid.left".to_owned()),
                at,
            ),
            (
                super::MessageId::generate(),
                None,
                at + super::Duration::seconds(1),
            ),
        ];
        for (id, provider_message_id, sent_at) in &left {
            sqlx::query(
                "INSERT INTO logged_sends (message_id, provider_message_id, sent_at) VALUES ($1, $2, $3)",
            )
            .bind(id)
            .bind(provider_message_id)
            .bind(sent_at)
            .execute(&mut old)
            .await
            .unwrap();
        }
        old.close().await.unwrap();
        left.sort_by_key(|(id, _, _)| *id);

        for _ in 0..2 {
            let db = herald::store::Db::connect(&url, &herald::store::DbOptions::default())
                .await
                .unwrap();
            db.migrate().await.unwrap();
            let mut kept = super::send_log(&db).read().unwrap();
            kept.sort_by_key(|(id, _, _)| *id);
            assert_eq!(kept, left);
            assert!(!earlier.exists(), "the old log's file is deleted");
            db.close().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn logged_sends_are_recorded_not_requeued_when_their_claims_run_out() {
        super::logged_sends_are_recorded_not_requeued_when_their_claims_run_out(
            crate::common::sqlite().await,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn logged_groups_applied_together_keep_each_its_own_time() {
        super::logged_groups_applied_together_keep_each_its_own_time(crate::common::sqlite().await)
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn applied_logged_sends_are_recorded_once_and_leave_the_log() {
        super::applied_logged_sends_are_recorded_once_and_leave_the_log(
            crate::common::sqlite().await,
        )
        .await;
    }
}

dialect_tests!(
    messages_name_only_campaigns_and_senders_that_exist,
    a_sender_and_a_message_for_it_never_both_commit,
    processes_are_counted_while_they_say_they_are_alive,
    api_keys_are_listed_and_found_active_only_while_they_last,
    an_import_taken_over_refuses_the_stalled_runs_writes,
    reports_that_overtake_their_send_are_parked_then_applied,
    concurrent_reservations_never_exceed_the_cap,
    contacts_are_unique_by_phone_within_a_workspace,
    contacts_are_filtered_searched_and_paged,
    contact_updates_rewrite_tags,
    workspaces_never_see_each_other,
    static_groups_hold_members_of_their_own_workspace,
    audiences_exclude_opted_out_and_blocked_and_count_each_contact_once,
    dynamic_groups_resolve_their_filters_at_use,
    templates_and_senders_round_trip,
    campaign_transitions_are_compare_and_set,
    campaigns_edit_and_delete_only_in_allowed_states,
    launch_materialises_ten_thousand_recipients_in_one_statement,
    concurrent_launches_materialise_once,
    claims_take_single_messages_first_and_skip_paused_campaigns,
    expired_claims_return_to_the_queue,
    claims_are_renewed_and_released_only_by_their_own_claim,
    cancel_skips_pending_messages_and_completion_follows_the_last_result,
    counters_equal_the_messages_after_random_transitions,
    rollups_equal_the_messages_after_random_transitions,
    status_reports_find_messages_by_either_id,
    a_send_recorded_after_its_callback_keeps_what_the_callback_said,
    daily_usage_never_exceeds_the_cap,
);
