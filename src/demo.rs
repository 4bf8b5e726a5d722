//! `herald demo`: the whole engine on the embedded database with the sandbox provider — demo
//! contacts, a sender with visible pacing, one campaign sent live, and its final statistics.

use anyhow::Context as _;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::app::{open_database, start_engine};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::domain::campaign::{Audience, CampaignStatus};
use crate::domain::pacing::Pacing;
use crate::http::CampaignStatsBody;
use crate::service::campaigns::{self as service, Draft, LaunchBy};
use crate::service::contacts::{self, ContactInput};
use crate::service::senders::{self as sender_service, SenderSettings};
use crate::service::workspaces;
use crate::store::Db;
use crate::store::campaigns::Campaign;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many demo contacts receive the campaign.
    #[arg(long, default_value_t = 200)]
    pub contacts: u32,
    /// Every pacing gate off and no simulated latency: a throughput run.
    #[arg(long)]
    pub no_pacing: bool,
}

const NAMES: &[&str] = &[
    "Amira", "Ben", "Chen", "Dana", "Elif", "Farid", "Grace", "Hugo", "Ines", "Jamal", "Kofi",
    "Lea",
];
const CITIES: &[&str] = &["Cairo", "Haifa", "Lagos", "Lisbon", "Osaka"];

pub async fn run(config: Config, args: DemoArgs) -> anyhow::Result<()> {
    let db = open_database(&config).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let engine = start_engine(&config, &db, clock.clone()).await?;
    let outcome = send_demo_campaign(&db, clock.as_ref(), &args).await;
    engine.shutdown().await;
    db.close().await;
    outcome
}

async fn send_demo_campaign(db: &Db, clock: &dyn Clock, args: &DemoArgs) -> anyhow::Result<()> {
    let now = clock.now();
    let workspace_name = format!("demo-{}", now.format("%Y%m%d-%H%M%S%.3f"));
    let workspace = workspaces::ensure(db, &workspace_name, now).await?.id;
    let people: Vec<ContactInput> = (0..args.contacts)
        .map(|n| ContactInput {
            phone: Some(format!("+2010{n:08}")),
            name: Some(NAMES[n as usize % NAMES.len()].to_owned()),
            tags: vec!["demo".into()],
            custom_fields: BTreeMap::from([(
                "city".to_owned(),
                json!(CITIES[n as usize % CITIES.len()]),
            )]),
            ..ContactInput::default()
        })
        .collect();
    contacts::create_many(db, workspace, people, now).await?;

    let (pacing, provider_config) = if args.no_pacing {
        (
            Pacing::default(),
            json!({"latency_ms": 0, "deliver_after_ms": 0, "read_after_ms": 0}),
        )
    } else {
        let visible = Pacing {
            shift_min_ms: Some(10),
            shift_max_ms: Some(40),
            typing_enabled: true,
            typing_cps: Some(4000),
            typing_min_ms: Some(5),
            typing_max_ms: Some(30),
            ..Pacing::default()
        };
        (
            visible,
            json!({"latency_ms": 15, "fail_rate": 0.02, "deliver_after_ms": 600, "read_after_ms": 1500}),
        )
    };
    let sender = SenderSettings {
        name: "Demo sandbox".into(),
        provider: "sandbox".into(),
        provider_config,
        timezone: "UTC".into(),
        pacing,
    };
    let (sender, _) = sender_service::create(
        db,
        workspace,
        sender,
        crate::url_guard::UrlGuard::STRICT,
        now,
    )
    .await?;
    let campaign = Draft {
        name: "Spring sale".into(),
        sender_id: sender.id,
        template_id: None,
        content: Some("Hi <<name|there>>! Our spring sale reaches <<city|your city>> today: <<discount|20%>> off with code <<code>>.".into()),
        media_url: None,
        audience: Audience::Tags { tags: vec!["demo".into()] },
        variables: BTreeMap::from([("code".to_owned(), "SPRING".to_owned())]),
    };
    // Through the service, like any campaign: every variable must be fillable.
    let campaign = service::create(db, workspace, campaign, now).await?;

    println!(
        "Workspace {workspace_name}: {} contacts, sandbox sender, campaign \"{}\".",
        args.contacts, campaign.name
    );
    let started = Instant::now();
    let launched = service::launch(db, workspace, campaign.id, LaunchBy::Person, clock.now())
        .await?
        .context("the campaign was not launched")?;
    let launch_time = started.elapsed();

    let progress = ProgressBar::new(launched.total_count.max(0) as u64);
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40.cyan/blue} {pos}/{len} sent · {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let current = |db: &Db| {
        let db = db.clone();
        async move { service::get(&db, workspace, campaign.id).await }
    };
    let show = |campaign: &Campaign| {
        let c = campaign.counters();
        progress.set_position((c.sent + c.failed + c.skipped).max(0) as u64);
        progress.set_message(format!(
            "delivered {} · read {} · failed {}",
            c.delivered, c.read, c.failed
        ));
    };
    let mut latest = current(db).await?;
    while !latest.status.is_finished() {
        show(&latest);
        tokio::time::sleep(Duration::from_millis(100)).await;
        latest = current(db).await?;
    }
    let send_time = started.elapsed();
    // Deliveries and reads keep arriving after the last send: wait until they settle.
    let mut quiet_since = Instant::now();
    let settle_deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < settle_deadline && quiet_since.elapsed() < Duration::from_millis(1500) {
        show(&latest);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let next = current(db).await?;
        if next.counters() != latest.counters() {
            quiet_since = Instant::now();
        }
        latest = next;
    }
    show(&latest);
    progress.finish();

    let stats = latest.stats();
    let sends = (stats.counters.sent + stats.counters.failed) as f64;
    println!();
    println!(
        "Campaign {}: {} recipients, launched in {:.0} ms, sent in {:.2} s ({:.0} sends/s).",
        if latest.status == CampaignStatus::Completed {
            "completed"
        } else {
            "finished"
        },
        stats.counters.total,
        launch_time.as_secs_f64() * 1000.0,
        send_time.as_secs_f64(),
        sends / send_time.as_secs_f64().max(f64::EPSILON),
    );
    println!(
        "  sent {}  delivered {} ({:.2}%)  read {} ({:.2}%)  failed {}  skipped {}  pending {}",
        stats.counters.sent,
        stats.counters.delivered,
        stats.delivery_rate,
        stats.counters.read,
        stats.read_rate,
        stats.counters.failed,
        stats.counters.skipped,
        stats.counters.pending
    );
    println!(
        "{}",
        serde_json::to_string(&CampaignStatsBody::from(stats))?
    );
    Ok(())
}
