//! The engine's hot paths, one by one: reading an inbound message's phone number, rendering one
//! recipient's message from a compiled template, evaluating every pacing gate for one send, and claiming and recording a batch of
//! 1,000 messages on SQLite (and PostgreSQL when `HERALD_TEST_POSTGRES_URL` is set).
//!
//! `cargo bench --bench hot_paths`; figures and what bounds them are in BENCHMARKS.md.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use herald::clock::{Clock, ManualClock};
use herald::domain::campaign::Audience;
use herald::domain::ids::{ContactId, SenderId, WorkspaceId};
use herald::domain::pacing::{Pacing, SendWindow};
use herald::domain::phone::Phone;
use herald::domain::provider::ProviderKind;
use herald::domain::template::Template;
use herald::domain::time::Zone;
use herald::engine::pacing::{Pacer, local_day, typing_delay, warmup_day, window_opens_at};
use herald::render::{CompiledCampaign, render};
use herald::store::campaigns::{self, CampaignFields};
use herald::store::contacts::{self, ContactFields, RenderFields};
use herald::store::messages::{self, Outcome};
use herald::store::senders::{self, SenderFields};
use herald::store::{Db, workspaces};
use rand::SeedableRng;
use rand::rngs::StdRng;
use sqlx::types::Json;

const CONTENT: &str = "Hi <<name|there>>! Our spring sale reaches <<city|your city>> today: \
                       <<discount|20%>> off with code <<code>>. Reply STOP to opt out.";

/// Every inbound message's number is parsed: a North American one (25 regions share `+1`), and
/// one of a code with a single region.
fn phone_numbers(c: &mut Criterion) {
    for (name, number) in [
        ("north_american", "+1 556 000 1234"),
        ("egyptian", "+20 101 234 5678"),
    ] {
        c.bench_function(&format!("phone/parse_{name}"), |b| {
            b.iter(|| Phone::parse(black_box(number)).expect("parses"))
        });
    }
}

fn rendering(c: &mut Criterion) {
    let compiled = CompiledCampaign {
        whatsapp: None,
        template: Template::parse(CONTENT),
        variables: BTreeMap::from([("code".to_owned(), "SPRING".to_owned())]),
        media_url: None,
    };
    let contact = RenderFields {
        id: ContactId::generate(),
        phone: "+201012345678".into(),
        name: Some("Amira".into()),
        email: None,
        custom_fields: Json(BTreeMap::from([("city".to_owned(), "Cairo".to_owned())])),
    };
    let mut out = String::with_capacity(256);
    c.bench_function("render/one_recipient", |b| {
        b.iter(|| {
            render(&compiled, Some(black_box(&contact)), &mut out).expect("renders");
            black_box(&out);
        })
    });
}

fn pacing_gates(c: &mut Criterion) {
    let pacing = Pacing {
        daily_limit: Some(1000),
        warmup_enabled: true,
        warmup_start_limit: Some(50),
        warmup_max_limit: Some(1000),
        warmup_days: Some(14),
        shift_min_ms: Some(2000),
        shift_max_ms: Some(5000),
        typing_enabled: true,
        typing_cps: Some(12),
        typing_min_ms: Some(800),
        typing_max_ms: Some(8000),
        rate_per_minute: Some(60),
        send_window: Some(SendWindow {
            days: vec![1, 2, 3, 4, 5],
            start: "09:00".parse().unwrap(),
            end: "20:00".parse().unwrap(),
        }),
    };
    let tz = chrono_tz::Asia::Jerusalem;
    let clock = Arc::new(ManualClock::new(common::at(2026, 11, 23, 10, 0)));
    let mut rng = StdRng::seed_from_u64(7);
    let mut pacer = Pacer::new(pacing.clone(), clock.clone(), None, &mut rng);
    let window = pacing.send_window.clone().expect("a window");
    let started_on = NaiveDate::from_ymd_opt(2026, 11, 16);
    // Every gate a lane passes before one send, in its order: window, rate and shift gap
    // (the pacer), the day's cap with warmup, then the typing delay of a 120-character message.
    c.bench_function("pacing/all_gates_one_send", |b| {
        b.iter(|| {
            let now = clock.now();
            let closed_until = window_opens_at(&window, tz, now);
            let next_send = pacer.next_send_at();
            let cap = pacing.daily_cap(warmup_day(started_on, local_day(now, tz)));
            let typing = typing_delay(&pacing, 120);
            pacer.sent(&mut rng);
            black_box((closed_until, next_send, cap, typing))
        })
    });
}

/// A sender with one fresh 1,000-recipient campaign launched per measured claim.
struct Queue {
    db: Db,
    workspace: WorkspaceId,
    sender: SenderId,
}

impl Queue {
    async fn new(db: Db) -> Self {
        let now = Utc::now();
        let mut tx = db.begin().await.expect("begin");
        let workspace = workspaces::ensure(tx.conn(), "bench", now)
            .await
            .expect("workspace")
            .id;
        let people: Vec<ContactFields> = (0..1000)
            .map(|n| ContactFields::new(Phone::from_trusted(format!("+2010{n:08}"))))
            .collect();
        contacts::insert_new_batch(&mut tx, workspace, &people, now)
            .await
            .expect("contacts");
        let fields = SenderFields {
            name: "bench",
            provider: ProviderKind::Sandbox,
            provider_config: &serde_json::json!({}),
            timezone: Zone::UTC,
            pacing: &Pacing::default(),
            warmup_started_on: None,
        };
        let sender = senders::insert(&mut tx, workspace, &fields, "secret", now)
            .await
            .expect("sender")
            .id;
        tx.commit().await.expect("commit");
        Self {
            db,
            workspace,
            sender,
        }
    }

    async fn launch(&self) {
        let now = Utc::now();
        let fields = CampaignFields {
            whatsapp: None,
            name: "bench".into(),
            sender_id: self.sender,
            template_id: None,
            content: CONTENT.into(),
            media_url: None,
            audience: Audience::All,
            variables: BTreeMap::new(),
        };
        let mut tx = self.db.begin().await.expect("begin");
        let campaign = campaigns::insert(tx.conn(), self.workspace, &fields, now)
            .await
            .expect("campaign");
        campaigns::launch(&mut tx, self.workspace, campaign.id, now)
            .await
            .expect("launch");
        tx.commit().await.expect("commit");
    }

    /// What a lane does around its sends: claim 1,000 in one transaction, record them sent in
    /// another.
    async fn claim_and_record(&self) {
        let now = Utc::now();
        let mut tx = self.db.begin().await.expect("begin");
        let claimed = messages::claim(
            &mut tx,
            self.sender,
            now,
            now + chrono::Duration::minutes(2),
            1000,
        )
        .await
        .expect("claim");
        tx.commit().await.expect("commit");
        assert_eq!(claimed.len(), 1000);
        let outcomes: Vec<_> = claimed
            .iter()
            .map(|message| {
                let provider_message_id = Some(format!("p-{}", message.id));
                (
                    message.id,
                    Outcome::Sent {
                        provider_message_id,
                    },
                )
            })
            .collect();
        let mut tx = self.db.begin().await.expect("begin");
        messages::record_outcomes(&mut tx, &outcomes, Utc::now())
            .await
            .expect("record");
        tx.commit().await.expect("commit");
    }
}

fn claim_and_record(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("store/claim_and_record_1000");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    let mut databases = vec![("sqlite", runtime.block_on(common::sqlite()))];
    if let Some(postgres) = runtime.block_on(common::postgres()) {
        databases.push(("postgres", postgres));
    }
    for (dialect, test_db) in &databases {
        let queue = runtime.block_on(Queue::new(test_db.db.clone()));
        group.bench_function(*dialect, |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let mut measured = Duration::ZERO;
                    for _ in 0..iterations {
                        queue.launch().await;
                        let started = Instant::now();
                        queue.claim_and_record().await;
                        measured += started.elapsed();
                    }
                    measured
                })
            })
        });
    }
    group.finish();
    drop(databases);
}

criterion_group!(
    benches,
    phone_numbers,
    rendering,
    pacing_gates,
    claim_and_record
);
criterion_main!(benches);
