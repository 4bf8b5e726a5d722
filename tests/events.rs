//! The event log, read as its consumers read it: after a campaign with callbacks and an inbound
//! message, under concurrent writers that commit out of order or roll back, and by a reader
//! killed mid-log that resumes where it had recorded.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use common::TestDb;
use herald::app::Application;
use herald::config::Config;
use herald::domain::callback::sign;
use herald::domain::event::EventType;
use herald::domain::ids::WorkspaceId;
use herald::domain::phone::Phone;
use herald::eventlog::{EventLog, StartAt};
use herald::store::contacts::{self, ContactFields};
use herald::store::events::{self as log, NewEvent, StoredEvent};
use herald::store::{Db, workspaces};
use serde_json::{Value, json};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

dialect_tests! {
    a_campaign_with_callbacks_and_an_inbound_message_is_told_once_in_order,
    readers_see_every_committed_event_once_in_order_while_writers_race,
    a_killed_reader_resumes_from_its_recorded_position_without_gaps,
    pruning_keeps_what_a_consumer_has_not_read,
}

async fn everything(db: &TestDb, consumer: &str) -> Vec<StoredEvent> {
    let log = EventLog::new(
        db.db.clone(),
        std::sync::Arc::new(herald::clock::SystemClock),
    );
    let mut reader = log.reader(consumer, StartAt::Beginning).await.unwrap();
    let mut all = Vec::new();
    loop {
        let batch = reader.poll(7).await.unwrap();
        if batch.is_empty() && !reader.waiting_on_gap() {
            return all;
        }
        all.extend(batch);
    }
}

async fn a_campaign_with_callbacks_and_an_inbound_message_is_told_once_in_order(db: TestDb) {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: db.url.clone(),
        engine_tick_ms: 20,
        allow_private_urls: true,
        ..Config::default()
    };
    let app = Application::build(config).await.unwrap();
    let base = format!("http://{}", app.local_addr().unwrap());
    let server = tokio::spawn(app.run_until(std::future::pending()));

    let common::SentCampaign {
        ws,
        sender,
        campaign,
        sent,
    } = common::silent_campaign_sent(&db, "whsec_test").await;

    let body = json!({"events": [
        {"type": "status", "message_id": sent[0].id.to_string(), "status": "read"},
        {"type": "status", "message_id": sent[0].id.to_string(), "status": "delivered"},
        {"type": "status", "message_id": sent[1].id.to_string(), "status": "delivered"},
        {"type": "status", "message_id": sent[2].id.to_string(), "status": "failed", "error": "131026 undeliverable"},
        {"type": "inbound", "from": "+20 100 000 0001", "body": "Hello?"}
    ]})
    .to_string();
    let timestamp = Utc::now().timestamp();
    let answer = reqwest::Client::new()
        .post(format!("{base}/v1/callbacks/{}", sender.id))
        .header("X-Herald-Timestamp", timestamp.to_string())
        .header(
            "X-Herald-Signature",
            sign("whsec_test", timestamp, body.as_bytes()),
        )
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    server.abort();

    let events = everything(&db, "test").await;
    let positions: Vec<i64> = events.iter().map(|e| e.position).collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "in order: {positions:?}"
    );
    let told: Vec<(EventType, uuid::Uuid)> = events.iter().map(|e| (e.kind, e.subject)).collect();
    let distinct: BTreeSet<_> = told.iter().collect();
    assert_eq!(distinct.len(), told.len(), "each event once: {told:?}");
    let kinds: Vec<EventType> = events.iter().map(|e| e.kind).collect();
    use EventType::*;
    let m = |index: usize| (sent[index].id.0, sent[index].phone.clone());
    // The order things happened in: contacts, the launch, three sends in any order, the
    // completion with the last of them, then the callback's changes and the inbound message.
    assert_eq!(
        &kinds[..4],
        [
            ContactCreated,
            ContactCreated,
            ContactCreated,
            CampaignStarted
        ]
    );
    assert_eq!(&kinds[4..7], [MessageSent, MessageSent, MessageSent]);
    assert_eq!(told[7], (CampaignCompleted, campaign.id.0));
    // One callback's reports are applied in one statement: their events follow each other, in
    // any order between messages (one message's own changes are merged into one). A read that
    // skipped delivered tells delivered first, and the late delivered after it nothing.
    let callback: BTreeSet<(EventType, uuid::Uuid)> = told[8..12].iter().copied().collect();
    assert_eq!(
        callback,
        BTreeSet::from([
            (MessageDelivered, m(0).0),
            (MessageRead, m(0).0),
            (MessageDelivered, m(1).0),
            (MessageFailed, m(2).0),
        ]),
        "a late delivered after read tells nothing"
    );
    let first_of = |wanted: (EventType, uuid::Uuid)| told.iter().position(|t| *t == wanted);
    assert!(first_of((MessageDelivered, m(0).0)) < first_of((MessageRead, m(0).0)));
    assert_eq!(told[12].0, MessageReceived);
    assert_eq!(told.len(), 13);
    assert!(events.iter().all(|e| e.workspace == ws));
    let sends: BTreeSet<uuid::Uuid> = events[4..7].iter().map(|e| e.subject).collect();
    assert_eq!(sends, (0..3).map(|i| m(i).0).collect());

    let started = &events[3].payload;
    assert_eq!(started["campaign_id"], json!(campaign.id));
    assert_eq!(
        (started["status"].as_str(), started["total"].as_i64()),
        (Some("running"), Some(3))
    );
    let completed = &events[7].payload;
    assert_eq!(
        (
            completed["status"].as_str(),
            completed["sent"].as_i64(),
            completed["pending"].as_i64()
        ),
        (Some("completed"), Some(3), Some(0))
    );
    let failed = &events[8..12]
        .iter()
        .find(|e| e.kind == MessageFailed)
        .unwrap()
        .payload;
    assert_eq!(
        failed,
        &json!({
            "message_id": sent[2].id, "campaign_id": campaign.id, "contact_id": sent[2].contact_id,
            "sender_id": sender.id, "to": m(2).1, "status": "failed",
            "error": "131026 undeliverable"
        })
    );
    let received = &events[12].payload;
    assert_eq!(
        (received["from"].as_str(), received["body"].as_str()),
        (Some("+201000000001"), Some("Hello?"))
    );
    assert_eq!(received["sender_id"], json!(sender.id));
    assert!(
        received["contact_id"].is_string(),
        "linked to the contact with that phone"
    );
    let contact = &events[0].payload;
    assert_eq!(contact["opted_out"], json!(false));
    assert!(
        contact["phone"]
            .as_str()
            .is_some_and(|p| p.starts_with("+2010"))
    );
}

/// Appends `count` events in one transaction, or rolls them back.
async fn write_events(db: &Db, ws: WorkspaceId, count: usize, commit: bool, pause: Duration) {
    let mut tx = db.begin().await.unwrap();
    let events: Vec<NewEvent> = (0..count)
        .map(|n| {
            NewEvent::new(
                ws,
                EventType::WebhookTest,
                uuid::Uuid::now_v7(),
                &json!({"n": n}),
                Utc::now(),
            )
            .unwrap()
        })
        .collect();
    log::append(tx.conn(), &events).await.unwrap();
    // Held open after taking its positions, so that later writers commit first.
    tokio::time::sleep(pause).await;
    if commit {
        tx.commit().await.unwrap();
    }
}

async fn readers_see_every_committed_event_once_in_order_while_writers_race(db: TestDb) {
    let ws = {
        let mut conn = db.write().await.unwrap();
        workspaces::ensure(conn.conn(), "acme", Utc::now())
            .await
            .unwrap()
            .id
    };
    let log = EventLog::new(
        db.db.clone(),
        std::sync::Arc::new(herald::clock::SystemClock),
    );
    let mut reader = log.reader("racer", StartAt::Beginning).await.unwrap();
    let writers: Vec<_> = (0..24u64)
        .map(|n| {
            let db = db.db.clone();
            tokio::spawn(async move {
                // Every fifth writer rolls back; pauses vary so commits overtake each other.
                let pause = Duration::from_millis((n * 37) % 90);
                write_events(&db, ws, 1 + (n as usize % 4), n % 5 != 3, pause).await;
            })
        })
        .collect();
    let mut read = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while writers.iter().any(|w| !w.is_finished()) {
        read.extend(reader.poll(5).await.unwrap());
        tokio::time::sleep(Duration::from_millis(3)).await;
        assert!(tokio::time::Instant::now() < deadline);
    }
    loop {
        let batch = reader.poll(5).await.unwrap();
        if batch.is_empty() && !reader.waiting_on_gap() {
            break;
        }
        read.extend(batch);
    }
    let positions: Vec<i64> = read.iter().map(|e| e.position).collect();
    assert!(positions.windows(2).all(|p| p[0] < p[1]), "{positions:?}");
    let committed: Vec<i64> = {
        let mut conn = db.read().await.unwrap();
        log::read_after(conn.conn(), 0, 10_000)
            .await
            .unwrap()
            .0
            .iter()
            .map(|e| e.position)
            .collect()
    };
    assert_eq!(
        positions, committed,
        "every committed event, once, in order"
    );
    let expected: usize = (0..24u64)
        .filter(|n| n % 5 != 3)
        .map(|n| 1 + (n as usize % 4))
        .sum();
    assert_eq!(positions.len(), expected);
}

async fn a_killed_reader_resumes_from_its_recorded_position_without_gaps(db: TestDb) {
    // Two thousand contacts: two thousand contact.created events.
    let now = Utc::now();
    let mut tx = db.begin().await.unwrap();
    let ws = workspaces::ensure(tx.conn(), "acme", now).await.unwrap().id;
    let people: Vec<_> = (0..2000)
        .map(|n| ContactFields::new(Phone::from_trusted(format!("+2010{n:08}"))))
        .collect();
    contacts::insert_new_batch(&mut tx, ws, &people, now)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let all: Vec<i64> = everything(&db, "counter")
        .await
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(all.len(), 2000);

    let tail = |follow: bool| {
        let mut command = Command::new(HERALD);
        command
            .args([
                "events",
                "tail",
                "--consumer",
                "crm",
                "--from-beginning",
                "--batch",
                "50",
            ])
            .env("HERALD_DATABASE_URL", &db.url)
            .env_remove("HERALD_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if follow {
            command.arg("--follow");
        }
        command.spawn().expect("spawn herald events tail")
    };
    let position_of = |line: &str| -> i64 {
        let event: Value = serde_json::from_str(line).expect("one JSON object per line");
        assert_eq!(event["type"], "contact.created");
        event["position"].as_i64().expect("a position")
    };

    // Killed once it has printed 700 lines, wherever it is in its batch.
    let mut first = tail(true);
    let mut before_kill = Vec::new();
    for line in BufReader::new(first.stdout.take().unwrap()).lines() {
        before_kill.push(position_of(&line.unwrap()));
        if before_kill.len() == 700 {
            first.kill().unwrap();
            break;
        }
    }
    first.wait().unwrap();
    let recorded = {
        let mut conn = db.read().await.unwrap();
        log::consumer_position(conn.conn(), "crm")
            .await
            .unwrap()
            .unwrap()
    };
    assert!(
        recorded >= before_kill[649] && recorded <= *before_kill.last().unwrap(),
        "every printed batch but the last is recorded: {recorded}"
    );

    let second = tail(false).wait_with_output().unwrap();
    assert!(second.status.success());
    let after: Vec<i64> = String::from_utf8(second.stdout)
        .unwrap()
        .lines()
        .map(position_of)
        .collect();
    assert_eq!(
        after.first(),
        all.iter().find(|p| **p > recorded),
        "resumes right after"
    );
    assert_eq!(after.last(), all.last(), "and reads to the end");
    let mut seen: Vec<i64> = before_kill.iter().chain(&after).copied().collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, all, "nothing skipped");
    let repeated = before_kill.len() + after.len() - all.len();
    assert!(
        repeated <= 50,
        "at most the batch being printed repeats: {repeated}"
    );
}

async fn pruning_keeps_what_a_consumer_has_not_read(db: TestDb) {
    let ws = {
        let mut conn = db.write().await.unwrap();
        workspaces::ensure(conn.conn(), "acme", Utc::now())
            .await
            .unwrap()
            .id
    };
    let old = Utc::now() - chrono::Duration::days(30);
    let events: Vec<NewEvent> = (0..10)
        .map(|n| {
            NewEvent::new(
                ws,
                EventType::WebhookTest,
                uuid::Uuid::now_v7(),
                &json!({"n": n}),
                old,
            )
            .unwrap()
        })
        .collect();
    {
        let mut conn = db.write().await.unwrap();
        log::append(conn.conn(), &events).await.unwrap();
    }
    let positions: Vec<i64> = everything(&db, "probe")
        .await
        .iter()
        .map(|e| e.position)
        .collect();
    let log = EventLog::new(
        db.db.clone(),
        std::sync::Arc::new(herald::clock::SystemClock),
    );
    let mut slow = log.reader("slow", StartAt::Beginning).await.unwrap();
    let first_four = slow.poll(4).await.unwrap();
    slow.commit(first_four[3].position).await.unwrap();
    let mut probe = log.reader("probe", StartAt::Beginning).await.unwrap();
    probe.commit(positions[9]).await.unwrap();

    let cutoff = Utc::now() - chrono::Duration::days(7);
    let pruned = {
        let mut conn = db.write().await.unwrap();
        log::prune(conn.conn(), cutoff, 1000).await.unwrap()
    };
    assert_eq!(pruned, 4, "only what the slowest consumer has read");
    let left = everything(&db, "late").await;
    assert_eq!(left.first().map(|e| e.position), Some(positions[4]));
    // Events younger than the retention stay whoever has read them.
    let pruned = {
        let mut conn = db.write().await.unwrap();
        log::prune(conn.conn(), old - chrono::Duration::days(1), 1000)
            .await
            .unwrap()
    };
    assert_eq!(pruned, 0);
    let by_kind: HashMap<EventType, usize> =
        left.iter().fold(HashMap::new(), |mut counts, event| {
            *counts.entry(event.kind).or_default() += 1;
            counts
        });
    assert_eq!(by_kind.get(&EventType::WebhookTest), Some(&6));
}
