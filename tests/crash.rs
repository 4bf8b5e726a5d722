//! Invariant 1 of DESIGN.md with real processes: `kill -9` a `herald serve` in the middle of a
//! campaign, start another, and every recipient is sent, none lost; repeats are only messages
//! that were in flight at a kill — at most a lane's concurrency per lane killed, never a batch —
//! and the counters equal the truth.

mod common;

use common::Server;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use herald::domain::callback::sign;
use herald::domain::campaign::{Audience, CampaignStatus};
use herald::domain::ids::{CampaignId, WorkspaceId};
use herald::domain::message::MessageStatus;
use herald::domain::pacing::Pacing;
use herald::domain::phone::Phone;
use herald::store::campaigns::{self, CampaignFields};
use herald::store::contacts::{self, ContactFields};
use herald::store::messages::{self, Outcome};
use herald::store::workspaces;
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Recipients of each campaign: two full batches of 1,024 and some.
const RECIPIENTS: u32 = 3_000;
/// Sends in flight per lane: what one `kill -9` may repeat, at most, per lane it stops.
const CONCURRENCY: usize = 64;

/// A `herald serve` whose API is of no use to the test.
fn serve(database_url: &str) -> Server {
    spawn_serve(database_url, "127.0.0.1:0")
}

/// A `herald serve` with the default batch (1,024) and concurrency (64). Claims last 10 s: the
/// gateway's 200 ms timeout (ten times its 20 ms, so that a loaded machine does not make retries
/// the test would count as repeats) sends a batch of 1,024 in 3.2 s at worst, a third of it.
fn spawn_serve(database_url: &str, listen: &str) -> Server {
    let log = serve_log();
    let child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("serve")
        .env("HERALD_DATABASE_URL", database_url)
        .env("HERALD_LISTEN", listen)
        .env("HERALD_CLAIM_LEASE_MS", "10000")
        .env("HERALD_LANE_LEASE_MS", "1500")
        .env("HERALD_ALLOW_PRIVATE_URLS", "true")
        .env("HERALD_ENGINE_TICK_MS", "50")
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn herald serve");
    Server(child)
}

/// The processes' logs of the running test, to show when a bound fails.
static SERVE_LOGS: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());

/// A new file for one `herald serve`'s log.
fn serve_log() -> std::fs::File {
    let mut logs = SERVE_LOGS.lock().unwrap();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "crash-{}-{}.log",
        std::process::id(),
        logs.len()
    ));
    let file = std::fs::File::create(&path).expect("a log file");
    logs.push(path);
    file
}

/// What the processes logged, a line each at most once with its count.
fn serve_logs() -> String {
    let mut lines: BTreeMap<String, usize> = BTreeMap::new();
    for path in SERVE_LOGS.lock().unwrap().iter() {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for line in text.lines() {
            // Without the timestamp, so that repeats of one line count together.
            let line = line.split_once(' ').map_or(line, |(_, rest)| rest);
            *lines.entry(line.chars().take(300).collect()).or_default() += 1;
        }
    }
    lines
        .iter()
        .map(|(line, count)| format!("{count:>5} {line}\n"))
        .collect()
}

/// A gateway that takes 20 ms per message (so many are in flight when a process dies) and
/// remembers every request.
async fn slow_gateway() -> MockServer {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(20)))
        .mount(&gateway)
        .await;
    gateway
}

struct Launched {
    ws: WorkspaceId,
    campaigns: Vec<CampaignId>,
}

/// `RECIPIENTS` contacts, and one launched campaign to all of them per sender.
async fn launch(db: &common::TestDb, gateway: &MockServer, senders: usize) -> Launched {
    let now = Utc::now();
    let mut tx = db.begin().await.unwrap();
    let ws = workspaces::ensure(tx.conn(), "acme", now).await.unwrap().id;
    let people: Vec<ContactFields> = (0..RECIPIENTS)
        .map(|n| ContactFields::new(Phone::from_trusted(format!("+2010{n:08}"))))
        .collect();
    contacts::insert_new_batch(&mut tx, ws, &people, now)
        .await
        .unwrap();
    let config = json!({"url": format!("{}/send", gateway.uri()), "timeout_ms": 200});
    let mut launched = Vec::new();
    for n in 0..senders {
        let name = format!("Gateway {n}");
        let sender =
            common::http_sender(&mut tx, ws, &name, &config, &Pacing::default(), "secret").await;
        launched.push(common::launch_hello(&mut tx, ws, sender, format!("Crash {n}"), now).await);
    }
    tx.commit().await.unwrap();
    Launched {
        ws,
        campaigns: launched,
    }
}

/// The keys the gateway got by the time a killed process's last requests arrived: a request it
/// wrote to its socket just before it died still reaches the gateway a moment later, and that
/// send is one made before the kill.
async fn keys_after_kill(gateway: &MockServer) -> HashSet<String> {
    tokio::time::sleep(Duration::from_millis(250)).await;
    keys(gateway).await.into_iter().collect()
}

/// Waits until the gateway has received at least `count` requests.
async fn until_requests(gateway: &MockServer, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while gateway.received_requests().await.unwrap_or_default().len() < count {
        assert!(Instant::now() < deadline, "fewer than {count} sends came");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until every campaign completed, then checks what the gateway saw: every recipient of
/// every campaign, repeats only of messages sent before a kill and at most `max_repeats`, and
/// counters equal to the truth.
async fn check_every_recipient_sent(
    db: &common::TestDb,
    gateway: &MockServer,
    launched: &Launched,
    sent_before_kills: &HashSet<String>,
    max_repeats: usize,
) {
    let deadline = Instant::now() + Duration::from_secs(90);
    for &campaign in &launched.campaigns {
        loop {
            let mut conn = db.read().await.unwrap();
            let current = campaigns::get(conn.conn(), launched.ws, campaign)
                .await
                .unwrap();
            if current.status == CampaignStatus::Completed {
                assert_eq!(current.sent_count, i64::from(RECIPIENTS));
                assert_eq!(
                    current.counters(),
                    campaigns::counted_from_messages(conn.conn(), campaign)
                        .await
                        .unwrap(),
                    "counters equal the truth"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "never completed: {:?}",
                current.counters()
            );
            drop(conn);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let all = keys(gateway).await;
    let mut sends: HashMap<&str, usize> = HashMap::new();
    for key in &all {
        *sends.entry(key).or_default() += 1;
    }
    assert_eq!(
        sends.len(),
        RECIPIENTS as usize * launched.campaigns.len(),
        "every recipient was sent, none lost"
    );
    let repeated: Vec<&&str> = sends
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(key, _)| key)
        .collect();
    assert!(
        sends.values().all(|&n| n <= 2),
        "nobody more than twice; the processes logged:\n{}",
        serve_logs()
    );
    assert!(
        repeated.iter().all(|key| sent_before_kills.contains(**key)),
        "only messages sent before a kill were repeated; the processes logged:\n{}",
        serve_logs()
    );
    eprintln!(
        "{} sends, {} repeated (at most {max_repeats} allowed)",
        all.len(),
        repeated.len()
    );
    assert!(
        repeated.len() <= max_repeats,
        "repeats are bounded by the sends in flight, not by a batch: {} > {max_repeats}; the processes logged:\n{}",
        repeated.len(),
        serve_logs()
    );
}

/// One kill test at a time: each runs several `herald serve` processes against a gateway, and
/// six at once starve a 2-core machine until the bounds they check measure the starvation.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits for this test's turn; the logs shown on a failure are then its own processes'.
async fn turn() -> tokio::sync::MutexGuard<'static, ()> {
    let turn = ONE_AT_A_TIME.lock().await;
    SERVE_LOGS.lock().unwrap().clear();
    turn
}

async fn two_kills_repeat_at_most_what_was_in_flight_and_lose_nothing(db: common::TestDb) {
    let _turn = turn().await;
    let gateway = slow_gateway().await;
    let launched = launch(&db, &gateway, 1).await;
    let url = db.url.clone();

    let first = serve(&url);
    until_requests(&gateway, 500).await;
    first.kill();
    let second = serve(&url);
    until_requests(&gateway, 1_700).await;
    second.kill();
    let sent_before_kills = keys_after_kill(&gateway).await;
    assert!(
        sent_before_kills.len() < RECIPIENTS as usize,
        "both kills came mid-campaign"
    );

    let _third = serve(&url);
    check_every_recipient_sent(
        &db,
        &gateway,
        &launched,
        &sent_before_kills,
        2 * CONCURRENCY,
    )
    .await;
}

/// Two processes share four senders on one PostgreSQL database; one is killed mid-campaign. The
/// survivor takes its senders over when their leases run out, and sends what was left.
async fn a_killed_process_of_two_repeats_only_its_in_flight_sends(db: common::TestDb) {
    let _turn = turn().await;
    let gateway = slow_gateway().await;
    let launched = launch(&db, &gateway, 4).await;
    let url = db.url.clone();

    // The first process takes the senders; the second waits for any that come free.
    let doomed = serve(&url);
    until_requests(&gateway, 200).await;
    let _survivor = serve(&url);
    until_requests(&gateway, 2_000).await;
    let pid = doomed.0.id();
    // Killed while it holds a lane: on a loaded machine its stalled heartbeats may have let the
    // survivor take every sender for a moment.
    let deadline = Instant::now() + Duration::from_secs(30);
    while lanes_owned_by(&url, pid).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the doomed process never held a lane again; the processes logged:\n{}",
            serve_logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    doomed.kill();
    // Counted after the kill: a lane the process took in its last instant counts too.
    let lanes_killed = lanes_owned_by(&url, pid).await;
    let sent_before_kill = keys_after_kill(&gateway).await;
    assert!(sent_before_kill.len() < 4 * RECIPIENTS as usize);
    assert!(
        lanes_killed > 0,
        "the killed process was sending; the processes logged:\n{}",
        serve_logs()
    );
    // The bound is per lane the process was sending on, and that is not always a lane it still
    // held: on a loaded machine a stalled heartbeat lets the survivor take a sender over while
    // the stalled lane's sends (at most 64) are still out. So: at most every sender's worth of
    // sends in flight, far below a batch (1,024) per lane.
    check_every_recipient_sent(&db, &gateway, &launched, &sent_before_kill, 4 * CONCURRENCY).await;
}

/// A `herald serve` on a port of its own, once its API answers; returns it with its address.
async fn serve_api(database_url: &str) -> (Server, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let server = spawn_serve(database_url, &format!("127.0.0.1:{port}"));
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{base}/v1/health")).await.is_err() {
        assert!(Instant::now() < deadline, "herald serve never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (server, base)
}

/// Invariant 7: a status report answered 2xx survives a `kill -9` that comes right after the
/// answer, even when it overtook the record of the send it reports on.
async fn a_callback_answered_2xx_survives_a_kill(db: common::TestDb) {
    let _turn = turn().await;
    let now = Utc::now();
    let mut tx = db.begin().await.unwrap();
    let ws = workspaces::ensure(tx.conn(), "acme", now).await.unwrap().id;
    contacts::insert_new_batch(
        &mut tx,
        ws,
        &[ContactFields::new(Phone::from_trusted(
            "+201000000001".into(),
        ))],
        now,
    )
    .await
    .unwrap();
    let config = json!({"url": "http://127.0.0.1:9/send"});
    let sender =
        common::http_sender(&mut tx, ws, "Gateway", &config, &Pacing::default(), "whsec").await;
    let campaign = campaigns::insert(
        tx.conn(),
        ws,
        &CampaignFields {
            whatsapp: None,
            name: "Callbacks".into(),
            sender_id: sender,
            template_id: None,
            content: "Hi".into(),
            media_url: None,
            audience: Audience::All,
            variables: BTreeMap::new(),
        },
        now,
    )
    .await
    .unwrap()
    .id;
    campaigns::launch(&mut tx, ws, campaign, now).await.unwrap();
    // Claimed by a lane (of a process that is not running): the send is out, its answer not
    // recorded, so the provider's id is unknown to Herald.
    let far = now + chrono::Duration::hours(1);
    let claimed = messages::claim(&mut tx, sender, now, far, 1).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(claimed.len(), 1);

    let (first, base) = serve_api(&db.url).await;
    let body = json!({"events": [{"type": "status", "message_id": "wamid.overtaking",
                                  "status": "delivered", "at": now}]})
    .to_string();
    let timestamp = Utc::now().timestamp();
    let answered = reqwest::Client::new()
        .post(format!("{base}/v1/callbacks/{sender}"))
        .header("X-Herald-Timestamp", timestamp.to_string())
        .header(
            "X-Herald-Signature",
            sign("whsec", timestamp, body.as_bytes()),
        )
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 200);
    assert_eq!(
        answered.json::<serde_json::Value>().await.unwrap()["deferred"],
        1
    );
    first.kill();

    // The send's answer is recorded afterwards, by whichever lane sent it.
    let mut tx = db.begin().await.unwrap();
    let sent = Outcome::Sent {
        provider_message_id: Some("wamid.overtaking".into()),
    };
    messages::record_outcomes(&mut tx, &[(claimed[0].id, sent)], Utc::now())
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let (_second, _) = serve_api(&db.url).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut conn = db.read().await.unwrap();
        let message = messages::get(conn.conn(), ws, claimed[0].id).await.unwrap();
        if message.status == MessageStatus::Delivered {
            let current = campaigns::get(conn.conn(), ws, campaign).await.unwrap();
            assert_eq!(current.delivered_count, 1);
            assert_eq!(
                current.counters(),
                campaigns::counted_from_messages(conn.conn(), campaign)
                    .await
                    .unwrap()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the report answered before the kill was lost: {:?}",
            message.status
        );
        drop(conn);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many senders the process `pid` may still be sending for (a lease's owner is
/// `"{pid}:{uuid}"`): a lane whose heartbeat is late on a loaded machine still has its sends in
/// flight, so a lease that ran out less than a lease ago (1.5 s) counts too.
async fn lanes_owned_by(url: &str, pid: u32) -> usize {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let owned: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sender_lanes
         WHERE owner LIKE $1 AND lease_expires_at > now() - interval '1500 milliseconds'",
    )
    .bind(format!("{pid}:%"))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    usize::try_from(owned).unwrap()
}

/// The idempotency keys of every request the gateway received, in order.
async fn keys(gateway: &MockServer) -> Vec<String> {
    gateway
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|request| {
            request
                .headers
                .get("idempotency-key")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

dialect_tests!(
    two_kills_repeat_at_most_what_was_in_flight_and_lose_nothing,
    a_callback_answered_2xx_survives_a_kill,
);

/// Several processes share one database only on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_processes_one_killed() {
    match common::postgres().await {
        Some(db) => a_killed_process_of_two_repeats_only_its_in_flight_sends(db).await,
        None => eprintln!(
            "{} is not set: the two-process crash test not run",
            common::POSTGRES_URL_VAR
        ),
    }
}
