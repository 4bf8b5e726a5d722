//! Many `herald serve` processes on one PostgreSQL database: each holds at most its fair share
//! of the senders with work (⌈S/N⌉ + 1 lanes), a process stopped by SIGTERM hands its senders
//! over at once, and one killed with `kill -9` is replaced within its lease. Every recipient is
//! sent once through all of it.

mod common;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use common::Server;
use herald::domain::campaign::CampaignStatus;
use herald::domain::ids::CampaignId;
use herald::domain::pacing::Pacing;
use herald::domain::phone::Phone;
use herald::store::campaigns::{self};
use herald::store::contacts::{self, ContactFields};
use herald::store::workspaces;
use serde_json::json;
use sqlx::Connection;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Senders with work, each a campaign of its own.
const SENDERS: usize = 12;
/// Recipients of each campaign: at one send per 40 ms, 12 s of work per sender.
const RECIPIENTS: u32 = 300;
const GAP_MS: u32 = 40;

/// One test at a time: each runs several `herald serve` processes and times their hand-overs,
/// which two at once on a 2-core machine would only starve.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A `herald serve` with a 50 ms tick and lane leases of `lease_ms`.
fn serve(database_url: &str, lease_ms: u64) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("serve")
        .env("HERALD_DATABASE_URL", database_url)
        .env("HERALD_LISTEN", "127.0.0.1:0")
        .env("HERALD_LANE_LEASE_MS", lease_ms.to_string())
        // What a killed process had claimed is sent again 3 s after (120 s by default).
        .env("HERALD_CLAIM_LEASE_MS", "3000")
        .env("HERALD_ALLOW_PRIVATE_URLS", "true")
        .env("HERALD_ENGINE_TICK_MS", "50")
        .env("HERALD_DATABASE_MAX_CONNECTIONS", "4")
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn herald serve");
    Server(child)
}

/// SIGTERM, as a service manager stops a process; waits for it to exit.
async fn terminate(server: Server) -> Duration {
    let started = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let mut server = server;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if server.0.try_wait().expect("wait").is_some() {
            return started.elapsed();
        }
        assert!(Instant::now() < deadline, "the process did not stop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `SENDERS` paced senders, each with a launched campaign to `RECIPIENTS` contacts.
async fn launch(db: &common::TestDb, gateway: &MockServer) -> Vec<CampaignId> {
    let now = Utc::now();
    let mut tx = db.begin().await.unwrap();
    let ws = workspaces::ensure(tx.conn(), "acme", now).await.unwrap().id;
    let people: Vec<ContactFields> = (0..RECIPIENTS)
        .map(|n| ContactFields::new(Phone::from_trusted(format!("+2010{n:08}"))))
        .collect();
    contacts::insert_new_batch(&mut tx, ws, &people, now)
        .await
        .unwrap();
    let config = json!({"url": format!("{}/send", gateway.uri()), "timeout_ms": 2_000});
    let pacing = Pacing {
        shift_min_ms: Some(GAP_MS),
        shift_max_ms: Some(GAP_MS),
        ..Pacing::default()
    };
    let mut launched = Vec::new();
    for n in 0..SENDERS {
        let name = format!("Line {n}");
        let sender = common::http_sender(&mut tx, ws, &name, &config, &pacing, "secret").await;
        let campaign = format!("Campaign {n}");
        launched.push(common::launch_hello(&mut tx, ws, sender, campaign, now).await);
    }
    tx.commit().await.unwrap();
    launched
}

async fn accepting_gateway() -> MockServer {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(5)))
        .mount(&gateway)
        .await;
    gateway
}

/// Unexpired lanes held by each of `pids`, in order.
async fn lanes_held(url: &str, pids: &[u32]) -> Vec<usize> {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let mut held = Vec::with_capacity(pids.len());
    for pid in pids {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sender_lanes WHERE owner LIKE $1 AND lease_expires_at > now()",
        )
        .bind(format!("{pid}:%"))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        held.push(usize::try_from(count).unwrap());
    }
    held
}

/// Waits until `ready` holds of the lanes `pids` hold; returns how long it took.
async fn until_lanes(
    url: &str,
    pids: &[u32],
    within: Duration,
    what: &str,
    ready: impl Fn(&[usize]) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let held = lanes_held(url, pids).await;
        if ready(&held) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{what}: lanes held {held:?} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every campaign completes with each recipient sent, and at most `max_repeats` sends made
/// twice (a paced lane has one send in flight at a time).
async fn check_each_recipient_sent(
    db: &common::TestDb,
    gateway: &MockServer,
    launched: &[CampaignId],
    max_repeats: usize,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    for campaign in launched {
        loop {
            let current = {
                let mut conn = db.read().await.unwrap();
                campaigns::get_unscoped(conn.conn(), *campaign)
                    .await
                    .unwrap()
            };
            if current.status == CampaignStatus::Completed {
                assert_eq!(current.sent_count, i64::from(RECIPIENTS));
                break;
            }
            assert!(Instant::now() < deadline, "not completed: {current:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let keys: Vec<String> = gateway
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|request| {
            request.headers["idempotency-key"]
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let unique: HashSet<&String> = keys.iter().collect();
    assert_eq!(
        unique.len(),
        SENDERS * RECIPIENTS as usize,
        "every recipient"
    );
    assert!(
        keys.len() - unique.len() <= max_repeats,
        "{} sends repeated",
        keys.len() - unique.len()
    );
}

/// Three processes split twelve senders: none holds more than ⌈12/3⌉ + 1 = 5 lanes once the
/// three are up, even though the first took all twelve alone. One stopped by SIGTERM releases
/// its leases as it stops (the lease is 20 s here, so only a release can explain a takeover
/// within a second), and the two left split its senders.
async fn three_processes_share_the_senders_and_a_stopped_one_hands_over_at_once(
    db: common::TestDb,
) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let gateway = accepting_gateway().await;
    let launched = launch(&db, &gateway).await;
    let url = db.url.clone();
    let lease_ms = 20_000;

    let first = serve(&url, lease_ms);
    let pid_first = first.0.id();
    until_lanes(
        &url,
        &[pid_first],
        Duration::from_secs(20),
        "alone",
        |held| held[0] == SENDERS,
    )
    .await;
    let second = serve(&url, lease_ms);
    let third = serve(&url, lease_ms);
    let pids = [pid_first, second.0.id(), third.0.id()];
    let fair = SENDERS.div_ceil(3) + 1;
    until_lanes(&url, &pids, Duration::from_secs(20), "shared", |held| {
        held.iter().sum::<usize>() == SENDERS && held.iter().all(|n| (1..=fair).contains(n))
    })
    .await;
    // It stays shared.
    for _ in 0..20 {
        let held = lanes_held(&url, &pids).await;
        assert!(held.iter().all(|n| *n <= fair), "lanes held {held:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let stopping = terminate(first).await;
    let fair = SENDERS.div_ceil(2) + 1;
    let takeover = until_lanes(
        &url,
        &pids[1..],
        Duration::from_secs(5),
        "after SIGTERM",
        |held| held.iter().sum::<usize>() == SENDERS && held.iter().all(|n| *n <= fair),
    )
    .await;
    assert!(
        takeover < Duration::from_secs(1),
        "the senders were taken over {takeover:?} after the process stopped (in {stopping:?}): \
         it did not release its leases"
    );
    // A stopping process records what it sent and hands back the rest: nothing is repeated.
    check_each_recipient_sent(&db, &gateway, &launched, 0).await;
    drop((second, third));
}

/// A process killed with `kill -9` releases nothing: the others take its senders once its
/// leases (3 s here) run out, and send what it left.
async fn a_killed_process_is_replaced_within_its_lease(db: common::TestDb) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let gateway = accepting_gateway().await;
    let launched = launch(&db, &gateway).await;
    let url = db.url.clone();
    let lease = Duration::from_secs(3);
    let lease_ms = u64::try_from(lease.as_millis()).unwrap();

    let doomed = serve(&url, lease_ms);
    let survivor = serve(&url, lease_ms);
    let pids = [doomed.0.id(), survivor.0.id()];
    until_lanes(&url, &pids, Duration::from_secs(20), "shared", |held| {
        held.iter().sum::<usize>() == SENDERS && held.iter().all(|n| *n > 0)
    })
    .await;
    let killed_lanes = lanes_held(&url, &pids[..1]).await[0];
    doomed.kill();
    let takeover = until_lanes(&url, &pids[1..], lease * 3, "after kill -9", |held| {
        held[0] == SENDERS
    })
    .await;
    // The lease, plus a tick and the survivor's own look at the queue.
    assert!(
        takeover <= lease + Duration::from_millis(1_500),
        "taken over after {takeover:?}"
    );
    // At most the one send each of its paced lanes had in flight.
    check_each_recipient_sent(&db, &gateway, &launched, killed_lanes).await;
    drop(survivor);
}

/// Several processes share one database only on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_three_processes_share_and_hand_over() {
    match common::postgres().await {
        Some(db) => {
            three_processes_share_the_senders_and_a_stopped_one_hands_over_at_once(db).await
        }
        None => eprintln!(
            "{} is not set: the lane-sharing test not run",
            common::POSTGRES_URL_VAR
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_killed_process_is_replaced() {
    match common::postgres().await {
        Some(db) => a_killed_process_is_replaced_within_its_lease(db).await,
        None => eprintln!(
            "{} is not set: the take-over test not run",
            common::POSTGRES_URL_VAR
        ),
    }
}
