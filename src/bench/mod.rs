//! `herald bench`: the end-to-end load benchmark. A fresh database, N contacts, every pacing
//! gate off, and the production engine sending one campaign through (a) the sandbox provider at
//! zero latency and (b) the http provider against a minimal HTTP sink on 127.0.0.1 — then a bare
//! reqwest client posting the same bodies to the same sink, the loopback limit Herald's http
//! rate is measured against. It also times what analysts wait on: a campaign's stats and the
//! first page of its messages filtered by status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::routing::post;
use clap::Args;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::app::{open_database, start_engine};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::domain::campaign::Audience;
use crate::domain::ids::{CampaignId, TemplateId, WorkspaceId};
use crate::domain::message::MessageStatus;
use crate::domain::pacing::Pacing;
use crate::domain::whatsapp::WhatsAppTemplate;
use crate::service::campaigns::{self as service, Draft, LaunchBy};
use crate::service::contacts::{self, ContactInput};
use crate::service::senders::{self as sender_service, SenderSettings};
use crate::service::templates::TemplateInput;
use crate::service::{messages, workspaces};
use crate::store::messages::MessageFilter;
use crate::store::{Db, Page};
use crate::url_guard::UrlGuard;

mod dashboard;
mod processes;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Recipients of each campaign.
    #[arg(long, default_value_t = 100_000)]
    pub recipients: u32,
    /// 1,000,000 recipients (overrides --recipients).
    #[arg(long)]
    pub million: bool,
    /// Only the sandbox run (no HTTP sink, no loopback comparison).
    #[arg(long)]
    pub sandbox_only: bool,
    /// Only the automatic replies: inbound callback to reply latency (idle and under a
    /// 50,000-recipient campaign) and the ingestion rate of signed callbacks with 100 rules.
    #[arg(long, conflicts_with = "sandbox_only")]
    pub automations_only: bool,
    /// Only outbound webhooks: the sandbox campaign without and with a `message.*` webhook to
    /// an in-process receiver; the send rate each time, deliveries a second, CPU per delivery,
    /// and how long after the campaign's end the last `message.sent` arrives.
    #[arg(long, conflicts_with_all = ["sandbox_only", "automations_only"])]
    pub webhooks_only: bool,
    /// Only analytics: 1,000,000 messages (one campaign of them all, 99 small ones, 50,000
    /// inbound) and 100,000 contacts over 90 days, then each analytics endpoint's p50 and p95
    /// over HTTP, and the CSV export of the 1,000,000 messages (rows a second, memory).
    #[arg(long, conflicts_with_all = ["sandbox_only", "automations_only", "webhooks_only"])]
    pub analytics: bool,
    /// Only the dashboard: the analytics history, then each dashboard page's p50 and p95 as a
    /// signed-in browser asks for it.
    #[arg(long, conflicts_with_all = ["sandbox_only", "automations_only", "webhooks_only", "analytics"])]
    pub dashboard: bool,
    /// Run on this database instead of a fresh SQLite file (it should be empty: the benchmark
    /// adds a workspace of its own).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Only the scale-out run: this many `herald serve` processes on the database of
    /// `--database-url` (PostgreSQL), twelve senders behind a gateway that answers in 20 ms,
    /// `--recipients` messages in all; sends a second, the lanes each process held, and the
    /// time the others take to replace one killed with `kill -9`.
    #[arg(long, requires = "database_url", conflicts_with_all = ["sandbox_only", "automations_only", "webhooks_only", "analytics"])]
    pub processes: Option<u32>,
}

/// What one campaign run measured.
struct Run {
    launch: Duration,
    sends: i64,
    elapsed: Duration,
    cpu: Duration,
    peak_rss_kib: u64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.sends as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    fn cpu_micros_per_send(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / (self.sends.max(1) as f64)
    }

    fn json(&self) -> Value {
        json!({
            "launch_ms": round(self.launch.as_secs_f64() * 1e3),
            "sends": self.sends,
            "seconds": round(self.elapsed.as_secs_f64()),
            "sends_per_second": self.rate().round(),
            "cpu_us_per_send": round(self.cpu_micros_per_send()),
            "peak_rss_mib": round(self.peak_rss_kib as f64 / 1024.0),
        })
    }
}

fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

pub async fn run(config: Config, args: BenchArgs) -> anyhow::Result<()> {
    let recipients = if args.million {
        1_000_000
    } else {
        args.recipients
    };
    let scratch = std::env::temp_dir().join(format!("herald-bench-{}", uuid::Uuid::now_v7()));
    let database_url = match &args.database_url {
        Some(url) => url.clone(),
        None => {
            std::fs::create_dir_all(&scratch).context("cannot create a scratch directory")?;
            format!("sqlite://{}", scratch.join("bench.db").display())
        }
    };
    let config = Config {
        database_url,
        // The benchmark's gateway and webhook receiver listen on 127.0.0.1.
        allow_private_urls: true,
        ..config
    };
    let outcome = if let Some(processes) = args.processes {
        processes::bench(&config, processes, recipients).await
    } else if args.automations_only {
        bench_automations(&config).await
    } else if args.webhooks_only {
        bench_webhooks(&config, recipients).await
    } else if args.analytics || args.dashboard {
        bench_analytics(&config, args.dashboard).await
    } else {
        bench(&config, recipients, args.sandbox_only).await
    };
    if args.database_url.is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    outcome
}

async fn bench(config: &Config, recipients: u32, sandbox_only: bool) -> anyhow::Result<()> {
    let db = open_database(config).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let started = Instant::now();
    let workspace = seed(&db, clock.as_ref(), recipients).await?;
    eprintln!(
        "{recipients} contacts written in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let engine = start_engine(config, &db, clock.clone()).await?;

    let sandbox = json!({"latency_ms": 0, "deliver_rate": 0, "read_rate": 0});
    let (campaign, sandbox_run) =
        send_campaign(&db, clock.as_ref(), workspace, "sandbox", &sandbox, None).await?;
    let latency = read_latency(&db, workspace, campaign).await?;
    let mut report = json!({
        "recipients": recipients,
        "database": crate::app::redact(&config.database_url),
        "sandbox": sandbox_run.json(),
        "stats_read_us": latency.stats_micros,
        "messages_page_us": latency.page_micros,
    });
    eprintln!(
        "sandbox: launch {:.0} ms, {:.0} sends/s, {:.1} µs CPU per send, peak RSS {:.0} MiB; stats read {:.0} µs, first page {:.0} µs",
        sandbox_run.launch.as_secs_f64() * 1e3,
        sandbox_run.rate(),
        sandbox_run.cpu_micros_per_send(),
        sandbox_run.peak_rss_kib as f64 / 1024.0,
        latency.stats_micros,
        latency.page_micros,
    );

    if !sandbox_only {
        let sink = Sink::start().await?;
        let http = json!({"url": sink.url(), "timeout_ms": 10_000});
        let (_, http_run) =
            send_campaign(&db, clock.as_ref(), workspace, "http", &http, None).await?;
        let bare = bare_reqwest(&sink, recipients, config.engine().concurrency).await?;
        let fraction = http_run.rate() / bare.max(f64::EPSILON);
        eprintln!(
            "http: {:.0} sends/s, {:.1} µs CPU per send (sink included); bare reqwest {:.0} requests/s; Herald at {:.2} of the loopback limit",
            http_run.rate(),
            http_run.cpu_micros_per_send(),
            bare,
            fraction
        );
        report["http"] = http_run.json();
        report["bare_reqwest_per_second"] = json!(bare.round());
        report["http_fraction_of_loopback"] = json!(round(fraction));
        report["sink_requests"] = json!(sink.requests());

        let WhatsAppRun {
            run: whatsapp,
            pace,
        } = whatsapp_run(&db, clock.as_ref(), recipients.min(WHATSAPP_RECIPIENTS)).await?;
        let pace = pace.unwrap_or_default();
        eprintln!(
            "whatsapp_cloud (mock Graph API, {} ms a request, Meta's default 80/s): {:.2} sends/s held from the first send to the last ({:+.2} % of 80), {:.2} sends/s from launch to completion, {:.1} µs CPU per send",
            GRAPH_LATENCY.as_millis(),
            pace,
            (pace / 80.0 - 1.0) * 100.0,
            whatsapp.rate(),
            whatsapp.cpu_micros_per_send(),
        );
        report["whatsapp_cloud"] = whatsapp.json();
        report["whatsapp_cloud"]["sends_per_second"] = json!(round(whatsapp.rate()));
        report["whatsapp_cloud"]["pace_per_second"] = json!(round(pace));
    }
    engine.shutdown().await;
    db.close().await;
    if !sandbox_only {
        // With the API: a server of its own on the same database.
        report["automations"] = automations(config).await?;
    }
    println!("{report}");
    Ok(())
}

async fn bench_automations(config: &Config) -> anyhow::Result<()> {
    let report = json!({
        "database": crate::app::redact(&config.database_url),
        "automations": automations(config).await?,
    });
    println!("{report}");
    Ok(())
}

/// Recipients of the campaign the reply latency is measured under.
const UNDER_CAMPAIGN_RECIPIENTS: u32 = 50_000;
/// Keyword rules in the workspace while the automations are measured.
const KEYWORD_RULES: usize = 100;
/// Signed callbacks of the ingestion run, and how many are in flight at once.
const INGESTED: usize = 10_000;
const INGESTED_IN_FLIGHT: usize = 32;
const IDLE_SAMPLES: usize = 200;

/// Automatic replies through the whole server (API and engine, one process): how long from a
/// signed inbound callback leaving the client to the reply reaching the gateway, with the sender
/// idle and while an unpaced 50,000-recipient campaign runs on it; then how many signed inbound
/// callbacks a second the API ingests with 100 keyword rules to check each against.
async fn automations(config: &Config) -> anyhow::Result<Value> {
    let config = Config {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        ..config.clone()
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let app = crate::app::Application::build_with_clock(config, clock.clone()).await?;
    let db = app.state().db.clone();
    let base = format!("http://{}", app.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));

    let measured = async {
        let workspace = seed(&db, clock.as_ref(), UNDER_CAMPAIGN_RECIPIENTS).await?;
        let (gateway, mut replies) = ReplyGateway::start().await?;
        let config = json!({"url": gateway.url(), "timeout_ms": 10_000});
        let (sender, secret) =
            unpaced_sender(&db, workspace, "Replies", "http", config, clock.now()).await?;
        for n in 0..KEYWORD_RULES {
            keyword_rule(&db, workspace, &format!("kw{n}"), "never sent", clock.now()).await?;
        }
        keyword_rule(&db, workspace, "ping", REPLY, clock.now()).await?;
        let callbacks = Callbacks {
            client: reqwest::Client::new(),
            url: format!("{base}/v1/callbacks/{}", sender.id),
            secret,
        };

        let mut phones = (0u32..).map(|n| format!("+1555{n:07}"));
        let mut idle = Vec::with_capacity(IDLE_SAMPLES);
        for _ in 0..IDLE_SAMPLES {
            let phone = phones.next().context("phones")?;
            idle.push(reply_latency(&callbacks, &mut replies, &phone).await?);
        }

        let campaign = service::create(
            &db,
            workspace,
            Draft {
                name: "Under way".into(),
                sender_id: sender.id,
                template_id: None,
                content: Some("Hi <<name|there>>, our sale is on.".into()),
                media_url: None,
                audience: Audience::All,
                variables: BTreeMap::new(),
            },
            clock.now(),
        )
        .await?;
        service::launch(&db, workspace, campaign.id, LaunchBy::Person, clock.now()).await?;
        while service::get(&db, workspace, campaign.id).await?.sent_count < 1_000 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut busy = Vec::new();
        loop {
            let phone = phones.next().context("phones")?;
            let latency = reply_latency(&callbacks, &mut replies, &phone).await?;
            if service::get(&db, workspace, campaign.id)
                .await?
                .status
                .is_finished()
            {
                break;
            }
            busy.push(latency);
        }

        // Ingestion: messages that match none of the rules, so each is checked against all.
        let started = Instant::now();
        let cpu_before = process_cpu()?;
        let failures = futures::stream::iter(0..INGESTED)
            .map(|n| {
                let phone = format!("+1556{:07}", n % 2_000);
                let callbacks = &callbacks;
                async move { callbacks.inbound(&phone, "hello, is anyone there?").await }
            })
            .buffer_unordered(INGESTED_IN_FLIGHT)
            .filter(|sent| std::future::ready(sent.is_err()))
            .count()
            .await;
        let ingest_rate = INGESTED as f64 / started.elapsed().as_secs_f64();
        // The client's share included, as in the analytics figures: steadier than the rate on
        // a machine whose speed moves within the hour.
        let cpu_per_callback = (process_cpu()? - cpu_before).as_secs_f64() * 1e6 / INGESTED as f64;
        if failures > 0 {
            bail!("{failures} of {INGESTED} callbacks failed");
        }
        anyhow::Ok((idle, busy, (ingest_rate, cpu_per_callback)))
    };
    let outcome = measured.await;
    let _ = stop.send(());
    server.await.context("the server task")??;
    let (idle, busy, (ingest_rate, cpu_per_callback)) = outcome?;
    let (idle_median, idle_p99) = median_and_p99(idle.clone());
    let (busy_median, busy_p99) = median_and_p99(busy.clone());
    eprintln!(
        "automations: reply latency idle median {idle_median:.1} ms, p99 {idle_p99:.1} ms ({} samples); under a {UNDER_CAMPAIGN_RECIPIENTS}-recipient campaign median {busy_median:.1} ms, p99 {busy_p99:.1} ms ({} samples); {ingest_rate:.0} inbound callbacks/s with {KEYWORD_RULES} keyword rules, {cpu_per_callback:.0} µs CPU a callback",
        idle.len(),
        busy.len()
    );
    Ok(json!({
        "idle_reply_ms": {"median": round(idle_median), "p99": round(idle_p99), "samples": idle.len()},
        "under_campaign_reply_ms": {"median": round(busy_median), "p99": round(busy_p99), "samples": busy.len()},
        "inbound_callbacks_per_second": ingest_rate.round(),
        "cpu_us_per_callback": cpu_per_callback.round(),
    }))
}

/// What the measured rule replies.
const REPLY: &str = "pong";

async fn keyword_rule(
    db: &Db,
    workspace: WorkspaceId,
    keyword: &str,
    reply: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let input = crate::service::automations::AutomationInput {
        name: format!("Keyword {keyword}"),
        enabled: true,
        trigger: crate::domain::automation::TriggerInput {
            kind: Some("keyword".into()),
            keywords: Some(vec![keyword.into()]),
            mode: Some("exact".into()),
            hours: None,
        },
        reply: crate::domain::automation::Reply {
            content: Some(reply.into()),
            template_id: None,
        },
        ..Default::default()
    };
    crate::service::automations::create(db, workspace, input, now).await?;
    Ok(())
}

/// Signed inbound callbacks of one `http` sender.
struct Callbacks {
    client: reqwest::Client,
    url: String,
    secret: String,
}

impl Callbacks {
    async fn inbound(&self, from: &str, text: &str) -> anyhow::Result<()> {
        let body = json!({"events": [{"type": "inbound", "from": from, "body": text}]}).to_string();
        let timestamp = chrono::Utc::now().timestamp();
        let signature = crate::domain::callback::sign(&self.secret, timestamp, body.as_bytes());
        let response = self
            .client
            .post(&self.url)
            .header("X-Herald-Timestamp", timestamp.to_string())
            .header("X-Herald-Signature", signature)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("callback answered {}", response.status());
        }
        Ok(())
    }
}

/// From a signed "ping" leaving the client to "pong" reaching the gateway, in milliseconds.
async fn reply_latency(
    callbacks: &Callbacks,
    replies: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Instant)>,
    phone: &str,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    callbacks.inbound(phone, "ping").await?;
    loop {
        let arrival = tokio::time::timeout(Duration::from_secs(30), replies.recv())
            .await
            .context("no reply within 30 s")?
            .context("the gateway stopped")?;
        if arrival.0 == phone {
            return Ok(arrival.1.duration_since(started).as_secs_f64() * 1e3);
        }
    }
}

fn median_and_p99(mut samples: Vec<f64>) -> (f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0);
    }
    samples.sort_by(f64::total_cmp);
    let at = |quantile: f64| {
        let index = ((samples.len() - 1) as f64 * quantile).round() as usize;
        samples[index.min(samples.len() - 1)]
    };
    (at(0.5), at(0.99))
}

/// A gateway on 127.0.0.1 that accepts every message and tells when each reply arrived.
struct ReplyGateway {
    address: std::net::SocketAddr,
}

impl ReplyGateway {
    // The gateway stands in for a provider; it is no part of Herald's API.
    #[allow(clippy::disallowed_methods)]
    async fn start() -> anyhow::Result<(
        Self,
        tokio::sync::mpsc::UnboundedReceiver<(String, Instant)>,
    )> {
        let (arrived, replies) = tokio::sync::mpsc::unbounded_channel();
        let router = axum::Router::new().route(
            "/send",
            post(move |axum::Json(body): axum::Json<Value>| {
                let arrived = arrived.clone();
                async move {
                    let at = Instant::now();
                    if body["body"] == REPLY {
                        let to = body["to"].as_str().unwrap_or_default().to_owned();
                        let _ = arrived.send((to, at));
                    }
                    axum::Json(json!({ "id": body["id"] }))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok((Self { address }, replies))
    }

    fn url(&self) -> String {
        format!("http://{}/send", self.address)
    }
}

/// A workspace of `recipients` contacts, written in large batches.
async fn seed(db: &Db, clock: &dyn Clock, recipients: u32) -> anyhow::Result<WorkspaceId> {
    let name = format!("bench-{}", clock.now().format("%Y%m%d-%H%M%S%.3f"));
    seed_named(db, clock, &name, recipients).await
}

/// A workspace of this name with `recipients` contacts.
async fn seed_named(
    db: &Db,
    clock: &dyn Clock,
    name: &str,
    recipients: u32,
) -> anyhow::Result<WorkspaceId> {
    const BATCH: u32 = 10_000;
    let now = clock.now();
    let workspace = workspaces::ensure(db, name, now).await?.id;
    let mut next = 0;
    while next < recipients {
        let end = (next + BATCH).min(recipients);
        let people: Vec<ContactInput> = (next..end)
            .map(|n| ContactInput {
                phone: Some(format!("+2010{n:08}")),
                name: Some(format!("Contact {n}")),
                custom_fields: BTreeMap::from([("city".to_owned(), Value::from("Cairo"))]),
                ..ContactInput::default()
            })
            .collect();
        contacts::create_many(db, workspace, people, now).await?;
        next = end;
    }
    Ok(workspace)
}

/// A sender in UTC with every pacing gate off (the benchmark's gateways are on 127.0.0.1), made
/// through the senders service; returns it with its callback secret.
async fn unpaced_sender(
    db: &Db,
    workspace: WorkspaceId,
    name: &str,
    provider: &str,
    provider_config: Value,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<(crate::store::senders::Sender, String)> {
    let settings = SenderSettings {
        name: name.into(),
        provider: provider.into(),
        provider_config,
        timezone: "UTC".into(),
        pacing: Pacing::default(),
    };
    Ok(sender_service::create(db, workspace, settings, UrlGuard::ALLOW_PRIVATE, now).await?)
}

/// Sends one campaign to every contact through a new sender of `provider`, all gates off
/// except the platform's default rate, with its own text or `template`'s.
async fn send_campaign(
    db: &Db,
    clock: &dyn Clock,
    workspace: WorkspaceId,
    provider: &str,
    provider_config: &Value,
    template: Option<TemplateId>,
) -> anyhow::Result<(CampaignId, Run)> {
    let now = clock.now();
    let (sender, _) = unpaced_sender(
        db,
        workspace,
        provider,
        provider,
        provider_config.clone(),
        now,
    )
    .await?;
    let fields = Draft {
        name: format!("Bench via {provider}"),
        sender_id: sender.id,
        template_id: template,
        content: template.is_none().then(|| "Hi <<name|there>>! Our sale reaches <<city|your city>> today: <<discount|20%>> off with code <<code>>.".into()),
        media_url: None,
        audience: Audience::All,
        variables: BTreeMap::from([("code".to_owned(), "BENCH".to_owned())]),
    };
    // Through the service, like any campaign: every variable must be fillable.
    let campaign = service::create(db, workspace, fields, now).await?;

    let cpu_before = process_cpu()?;
    reset_peak_rss();
    let started = Instant::now();
    let launched = service::launch(db, workspace, campaign.id, LaunchBy::Person, clock.now())
        .await?
        .context("the campaign was not launched")?;
    let launch = started.elapsed();
    let sending = Instant::now();
    let mut peak_rss_kib = current_rss_kib();
    let finished = loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        peak_rss_kib = peak_rss_kib.max(current_rss_kib());
        let current = service::get(db, workspace, campaign.id).await?;
        if current.status.is_finished() {
            break current;
        }
        if sending.elapsed() > Duration::from_secs(3600) {
            bail!("the campaign did not finish within an hour");
        }
    };
    let elapsed = sending.elapsed();
    let cpu = process_cpu()?.saturating_sub(cpu_before);
    let counters = finished.counters();
    if counters.sent + counters.failed != launched.total_count {
        bail!(
            "{} recipients but {} sent and {} failed",
            launched.total_count,
            counters.sent,
            counters.failed
        );
    }
    Ok((
        campaign.id,
        Run {
            launch,
            sends: counters.sent + counters.failed,
            elapsed,
            cpu,
            peak_rss_kib: peak_rss_kib.max(read_status_kib("VmHWM:")),
        },
    ))
}

/// Recipients of the WhatsApp run: 30 s at Meta's default 80 messages a second.
const WHATSAPP_RECIPIENTS: u32 = 2_400;
/// What a request to Meta's Graph API takes from here, roughly.
const GRAPH_LATENCY: Duration = Duration::from_millis(30);

/// A campaign through the `whatsapp_cloud` provider against an in-process mock of Meta's Graph
/// API that answers after [`GRAPH_LATENCY`], at the sender's default pace (80/s): the rate it
/// holds and its CPU per send. Its recipients never wrote, so it sends a template.
async fn whatsapp_run(db: &Db, clock: &dyn Clock, recipients: u32) -> anyhow::Result<WhatsAppRun> {
    let graph = MockGraph::start().await?;
    let workspace = seed(db, clock, recipients).await?;
    let whatsapp: WhatsAppTemplate = serde_json::from_value(json!({
        "name": "bench_sale", "language": "en_US",
        "body_params": ["<<name|there>>", "<<city|your city>>", "<<code>>"]}))?;
    let template = crate::service::templates::create(
        db,
        workspace,
        TemplateInput {
            name: "Bench sale".into(),
            content: "Hi <<name|there>>! Our sale reaches <<city|your city>>: code <<code>>."
                .into(),
            media_url: None,
            whatsapp: Some(whatsapp),
        },
        clock.now(),
    )
    .await?;
    let config = json!({"phone_number_id": "1122334455667", "access_token": "bench-token",
                        "app_secret": "bench-secret", "verify_token": "bench-verify",
                        "api_base": graph.base()});
    let (campaign, run) = send_campaign(
        db,
        clock,
        workspace,
        "whatsapp_cloud",
        &config,
        Some(template.id),
    )
    .await?;
    let span = {
        let mut conn = db.read().await?;
        crate::store::messages::sent_between(conn.conn(), campaign).await?
    };
    // The pace held from the first send to the last, without the lane's start and the poll
    // that sees the campaign complete.
    let pace = span
        .filter(|(first, last)| last > first && run.sends > 1)
        .map(|(first, last)| (run.sends - 1) as f64 / (last - first).as_seconds_f64());
    Ok(WhatsAppRun { run, pace })
}

struct WhatsAppRun {
    run: Run,
    /// Sends a second between the first send and the last.
    pace: Option<f64>,
}

/// Meta's `POST /{version}/{phone_number_id}/messages`, answering a wamid after a delay.
struct MockGraph {
    address: std::net::SocketAddr,
}

impl MockGraph {
    // The mock stands in for Meta; it is no part of Herald's API.
    #[allow(clippy::disallowed_methods)]
    async fn start() -> anyhow::Result<Self> {
        let sent = Arc::new(AtomicU64::new(0));
        let router = axum::Router::new().route(
            "/{version}/{phone_number_id}/messages",
            post(move |body: axum::body::Bytes| {
                let sent = sent.clone();
                async move {
                    tokio::time::sleep(GRAPH_LATENCY).await;
                    std::hint::black_box(body);
                    let n = sent.fetch_add(1, Ordering::Relaxed);
                    axum::Json(json!({"messaging_product": "whatsapp",
                                      "messages": [{"id": format!("wamid.bench{n}")}]}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self { address })
    }

    fn base(&self) -> String {
        format!("http://{}", self.address)
    }
}

struct Latency {
    stats_micros: f64,
    page_micros: f64,
}

/// Mean time of a campaign's stats read and of the first page of its sent messages.
async fn read_latency(
    db: &Db,
    workspace: WorkspaceId,
    campaign: CampaignId,
) -> anyhow::Result<Latency> {
    const STATS_READS: u32 = 2_000;
    const PAGE_READS: u32 = 200;
    let started = Instant::now();
    for _ in 0..STATS_READS {
        let stats = service::get(db, workspace, campaign).await?.stats();
        std::hint::black_box(stats);
    }
    let stats_micros = started.elapsed().as_secs_f64() * 1e6 / f64::from(STATS_READS);
    let filter = MessageFilter {
        campaign: Some(campaign),
        status: Some(MessageStatus::Sent),
        direction: None,
        contact: None,
    };
    let started = Instant::now();
    for _ in 0..PAGE_READS {
        let page = messages::list(db, workspace, filter, Page::default()).await?;
        std::hint::black_box(page);
    }
    let page_micros = started.elapsed().as_secs_f64() * 1e6 / f64::from(PAGE_READS);
    Ok(Latency {
        stats_micros: round(stats_micros),
        page_micros: round(page_micros),
    })
}

/// The sandbox campaign without a webhook, with a `message.*` webhook to an in-process
/// receiver, and without again (the machine's drift shows in the two runs without).
async fn bench_webhooks(config: &Config, recipients: u32) -> anyhow::Result<()> {
    let db = open_database(config).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let workspace = seed(&db, clock.as_ref(), recipients).await?;
    let engine = start_engine(config, &db, clock.clone()).await?;
    let sandbox = json!({"latency_ms": 0, "deliver_rate": 0, "read_rate": 0});

    let (_, before) =
        send_campaign(&db, clock.as_ref(), workspace, "sandbox", &sandbox, None).await?;
    eprintln!("without webhooks: {:.0} sends/s", before.rate());

    let receiver = Receiver::start().await?;
    let dispatcher = crate::webhooks::WebhookDispatcher::start(
        db.clone(),
        clock.clone(),
        config.url_guard().client(),
        crate::webhooks::DispatcherConfig {
            url_guard: config.url_guard(),
            send_activity: engine.activity(),
            ..crate::webhooks::DispatcherConfig::default()
        },
    );
    crate::service::webhooks::create(
        &db,
        workspace,
        crate::service::webhooks::WebhookInput {
            url: receiver.url(),
            events: vec!["message.*".into()],
            description: Some("bench".into()),
            enabled: true,
        },
        UrlGuard::ALLOW_PRIVATE,
        clock.now(),
    )
    .await?;
    // The fan-out registers at the log's end when it starts: let it, before the campaign.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu_before = process_cpu()?;
    let started = Instant::now();
    let (_, with) =
        send_campaign(&db, clock.as_ref(), workspace, "sandbox", &sandbox, None).await?;
    let campaign_end = Instant::now();
    eprintln!("with a message.* webhook: {:.0} sends/s", with.rate());
    let expected = u64::try_from(with.sends).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(600);
    while receiver.sent() < expected {
        if Instant::now() > deadline {
            bail!(
                "{} of {expected} message.sent deliveries arrived in 10 minutes",
                receiver.sent()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let last = receiver.last_sent().unwrap_or(campaign_end);
    let cpu = process_cpu()?.saturating_sub(cpu_before);
    let deliveries = receiver.requests();
    let span = last.duration_since(started);
    let after_end = last.saturating_duration_since(campaign_end);
    // What the sends cost without webhooks, taken off the run's CPU: the rest is the webhooks'.
    let sends_cpu = before.cpu.as_secs_f64() * (with.sends as f64 / before.sends.max(1) as f64);
    let per_delivery_us = (cpu.as_secs_f64() - sends_cpu).max(0.0) * 1e6 / deliveries.max(1) as f64;
    dispatcher.shutdown().await;

    let (_, after) =
        send_campaign(&db, clock.as_ref(), workspace, "sandbox", &sandbox, None).await?;
    eprintln!("without webhooks again: {:.0} sends/s", after.rate());
    let baseline = (before.rate() + after.rate()) / 2.0;
    let ratio = with.rate() / baseline.max(f64::EPSILON);
    eprintln!(
        "webhooks: send rate at {ratio:.2} of the runs without; {deliveries} deliveries at {:.0}/s, {per_delivery_us:.1} µs CPU each; the last message.sent {:.2} s after the campaign's end",
        deliveries as f64 / span.as_secs_f64().max(f64::EPSILON),
        after_end.as_secs_f64(),
    );
    engine.shutdown().await;
    db.close().await;
    let report = json!({
        "recipients": recipients,
        "database": crate::app::redact(&config.database_url),
        "without_webhooks": before.json(),
        "with_webhook": with.json(),
        "without_webhooks_again": after.json(),
        "send_rate_ratio": round(ratio),
        "deliveries": deliveries,
        "deliveries_per_second": (deliveries as f64 / span.as_secs_f64().max(f64::EPSILON)).round(),
        "cpu_us_per_delivery": round(per_delivery_us),
        "last_sent_after_campaign_end_s": round(after_end.as_secs_f64()),
    });
    println!("{report}");
    Ok(())
}

/// A webhook receiver on 127.0.0.1 that counts what it gets and when the last `message.sent`
/// came.
struct Receiver {
    address: std::net::SocketAddr,
    requests: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    last_sent: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl Receiver {
    async fn start() -> anyhow::Result<Self> {
        let requests = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let last_sent = Arc::new(std::sync::Mutex::new(None));
        let (r, s, l) = (requests.clone(), sent.clone(), last_sent.clone());
        let router = axum::Router::new().fallback(move |body: axum::body::Bytes| {
            let (r, s, l) = (r.clone(), s.clone(), l.clone());
            async move {
                r.fetch_add(1, Ordering::Relaxed);
                if is_message_sent(&body) {
                    s.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut last) = l.lock() {
                        *last = Some(Instant::now());
                    }
                }
                axum::http::StatusCode::NO_CONTENT
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self {
            address,
            requests,
            sent,
            last_sent,
        })
    }

    fn url(&self) -> String {
        format!("http://{}/hooks", self.address)
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    fn last_sent(&self) -> Option<Instant> {
        self.last_sent.lock().ok().and_then(|last| *last)
    }
}

/// Whether a delivery's body is a `message.sent` event, wherever its `type` field sits.
fn is_message_sent(body: &[u8]) -> bool {
    let needle = br#""type":"message.sent""#;
    body.windows(needle.len()).any(|window| window == needle)
}

/// A minimal HTTP gateway on 127.0.0.1 that accepts every message.
struct Sink {
    address: std::net::SocketAddr,
    requests: Arc<AtomicU64>,
}

impl Sink {
    // The sink stands in for a provider's gateway; it is no part of Herald's API.
    #[allow(clippy::disallowed_methods)]
    async fn start() -> anyhow::Result<Self> {
        Self::answering_after(Duration::ZERO).await
    }

    /// A sink that answers each request after `latency`, as a provider across a network does.
    #[allow(clippy::disallowed_methods)]
    async fn answering_after(latency: Duration) -> anyhow::Result<Self> {
        let requests = Arc::new(AtomicU64::new(0));
        let counter = requests.clone();
        let router = axum::Router::new().route(
            "/send",
            post(move |body: axum::body::Bytes| {
                let counter = counter.clone();
                async move {
                    if !latency.is_zero() {
                        tokio::time::sleep(latency).await;
                    }
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    std::hint::black_box(body);
                    axum::Json(json!({ "id": format!("sink-{n}") }))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self { address, requests })
    }

    fn url(&self) -> String {
        format!("http://{}/send", self.address)
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// Requests per second of a bare reqwest client posting Herald's bodies to the sink, with as
/// many in flight as a lane keeps.
async fn bare_reqwest(sink: &Sink, count: u32, in_flight: usize) -> anyhow::Result<f64> {
    let client = reqwest::Client::new();
    let url = sink.url();
    let started = Instant::now();
    let failures = futures::stream::iter(0..count)
        .map(|n| {
            let request = client
                .post(&url)
                .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
                .json(&json!({
                    "id": uuid::Uuid::now_v7(),
                    "to": format!("+2010{n:08}"),
                    "body": format!("Hi Contact {n}! Our sale reaches Cairo today: 20% off with code BENCH."),
                    "media_url": null,
                }));
            async move {
                match request.send().await {
                    Ok(response) => response.bytes().await.is_err(),
                    Err(_) => true,
                }
            }
        })
        .buffer_unordered(in_flight.max(1))
        .filter(|failed| std::future::ready(*failed))
        .count()
        .await;
    if failures > 0 {
        bail!("{failures} of the bare client's requests failed");
    }
    Ok(f64::from(count) / started.elapsed().as_secs_f64().max(f64::EPSILON))
}

/// CPU time (user + system) of this process so far.
fn process_cpu() -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |index: usize| fields.get(index).and_then(|v| v.parse::<u64>().ok());
    // utime and stime are fields 14 and 15 of proc(5); the state (field 3) comes first here.
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => Ok(Duration::from_millis(
            (user + system) * 1000 / CLOCK_TICKS_PER_SECOND,
        )),
        _ => bail!("unexpected /proc/self/stat: {stat}"),
    }
}

/// USER_HZ, which Linux fixes at 100 for /proc.
const CLOCK_TICKS_PER_SECOND: u64 = 100;

fn read_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix(field)
                    .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

fn current_rss_kib() -> u64 {
    read_status_kib("VmRSS:")
}

/// Resets VmHWM to the current RSS (writing 5 to clear_refs), so a run's peak is its own.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Days of history the analytics benchmark writes.
const HISTORY_DAYS: i64 = 90;
const HISTORY_CONTACTS: u32 = 100_000;
const BIG_CAMPAIGN: usize = 1_000_000;
const SMALL_CAMPAIGNS: usize = 99;
const SMALL_CAMPAIGN: usize = 1_000;
const HISTORY_INBOUND: usize = 50_000;
const HISTORY_SENDERS: usize = 5;
const ENDPOINT_SAMPLES: usize = 200;

/// The analytics history, then the analytics endpoints and exports — or, for `dashboard`, the
/// dashboard's pages.
async fn bench_analytics(config: &Config, dashboard: bool) -> anyhow::Result<()> {
    let config = Config {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        ..config.clone()
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let app = crate::app::Application::build_with_clock(config.clone(), clock.clone()).await?;
    let db = app.state().db.clone();
    let base = format!("http://{}", app.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let measured = async {
        let written = Instant::now();
        let (workspace_name, big) = analytics_history(&db, clock.now()).await?;
        let history_seconds = written.elapsed().as_secs_f64();
        let key = crate::service::api_keys::NewKey {
            workspace: &workspace_name,
            name: "analyst",
            abilities: vec![crate::domain::auth::Ability::All],
            rate_per_minute: Some(100_000_000),
            daily_quota: None,
            monthly_quota: None,
            expires_at: None,
        };
        let token = crate::service::api_keys::create(&db, key, clock.now())
            .await?
            .token;
        if dashboard {
            let workspace = workspaces::ensure(&db, &workspace_name, clock.now()).await?.id;
            let everyone = crate::store::contacts::ContactFilter::default();
            let (some, _) = contacts::list(&db, workspace, &everyone, Page::default()).await?;
            let contact = some.first().context("no contact")?.id.to_string();
            let pages = dashboard::pages(&base, &token, big, &contact).await?;
            return anyhow::Ok(json!({
                "database": crate::app::redact(&config.database_url),
                "pages": pages,
            }));
        }
        let client = reqwest::Client::new();
        let today = clock.now().date_naive();
        let from = today - chrono::Days::new(HISTORY_DAYS as u64);
        let quarter = format!("from={from}&to={today}&timezone=Asia/Kolkata");
        let endpoints = [
            ("overview".to_owned(), "/v1/analytics/overview?timezone=Asia/Kolkata".to_owned()),
            ("campaigns, 90 days".into(), format!("/v1/analytics/campaigns?{quarter}")),
            ("senders, 90 days".into(), format!("/v1/analytics/senders?{quarter}")),
            ("contacts, 90 days".into(), format!("/v1/analytics/contacts?{quarter}")),
            ("activity, 90 days".into(), format!("/v1/analytics/activity?{quarter}")),
            ("activity, 30 days".into(), "/v1/analytics/activity".into()),
            (
                "timeline of the 1M campaign, by hour".into(),
                format!("/v1/campaigns/{}/timeline?bucket=hour", big.0),
            ),
        ];
        let mut latencies = serde_json::Map::new();
        for (name, path) in &endpoints {
            let mut samples = Vec::with_capacity(ENDPOINT_SAMPLES);
            // CPU time is what a busy or shared machine moves least: the figure to compare
            // builds by (the client's share included, the same for every build).
            let cpu_before = process_cpu()?;
            for _ in 0..ENDPOINT_SAMPLES {
                let started = Instant::now();
                let response = client
                    .get(format!("{base}{path}"))
                    .bearer_auth(&token)
                    .send()
                    .await?;
                anyhow::ensure!(response.status().is_success(), "{path}: {}", response.status());
                response.bytes().await?;
                samples.push(started.elapsed());
            }
            let cpu_ms = (process_cpu()? - cpu_before).as_secs_f64() * 1e3 / samples.len() as f64;
            samples.sort();
            let (p50, p95) = (samples[samples.len() / 2], samples[samples.len() * 95 / 100]);
            println!(
                "{name}: p50 {:.2} ms, p95 {:.2} ms, CPU {cpu_ms:.2} ms a request",
                p50.as_secs_f64() * 1e3,
                p95.as_secs_f64() * 1e3
            );
            latencies.insert(
                name.clone(),
                json!({"p50_ms": round(p50.as_secs_f64() * 1e3), "p95_ms": round(p95.as_secs_f64() * 1e3),
                       "cpu_ms": round(cpu_ms)}),
            );
        }

        // The export of the 1,000,000 messages, read as it streams; memory sampled meanwhile.
        // Twice: the first warms SQLite's page caches (32 MB per reader connection), so the
        // second shows what the export itself holds.
        let idle_rss = current_rss_kib();
        let mut exports = Vec::new();
        for _ in 0..2 {
            let started = Instant::now();
            let mut response = client
                .get(format!("{base}/v1/campaigns/{}/messages/export", big.0))
                .bearer_auth(&token)
                .send()
                .await?;
            anyhow::ensure!(response.status().is_success(), "export: {}", response.status());
            let (mut lines, mut bytes, mut peak_rss) = (0u64, 0u64, idle_rss);
            while let Some(chunk) = response.chunk().await? {
                lines += chunk.iter().filter(|byte| **byte == b'\n').count() as u64;
                bytes += chunk.len() as u64;
                peak_rss = peak_rss.max(current_rss_kib());
            }
            let seconds = started.elapsed().as_secs_f64();
            let rows = lines.saturating_sub(1);
            let over_idle = peak_rss.saturating_sub(idle_rss) as f64 / 1024.0;
            println!(
                "export of {rows} messages: {:.0} rows/s, {:.1} MiB of CSV, peak RSS +{over_idle:.1} MiB over the idle server ({:.1} MiB)",
                rows as f64 / seconds,
                bytes as f64 / 1_048_576.0,
                idle_rss as f64 / 1024.0,
            );
            exports.push(json!({"rows": rows, "seconds": round(seconds),
                                "rows_per_second": (rows as f64 / seconds).round(),
                                "rss_over_idle_mib": round(over_idle),
                                "idle_rss_mib": round(idle_rss as f64 / 1024.0)}));
        }
        anyhow::Ok(json!({
            "database": crate::app::redact(&config.database_url),
            "history": {"messages": BIG_CAMPAIGN + SMALL_CAMPAIGNS * SMALL_CAMPAIGN + HISTORY_INBOUND,
                        "contacts": HISTORY_CONTACTS, "days": HISTORY_DAYS,
                        "written_seconds": round(history_seconds)},
            "endpoints": latencies,
            "exports": exports,
        }))
    }
    .await;
    let _ = stop.send(());
    let _ = server.await;
    println!("{}", measured?);
    Ok(())
}

/// Writes the analytics benchmark's history into a workspace of its own; returns the
/// workspace's name and the big campaign.
async fn analytics_history(
    db: &Db,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<(String, CampaignId)> {
    use crate::domain::message::{Counters, Event, Progress};
    use crate::store::analytics::{PastMessage, insert_past, insert_past_campaign};
    use rand::{Rng, SeedableRng};

    let name = format!("analytics-{}", now.format("%Y%m%d-%H%M%S%.3f"));
    let workspace = workspaces::ensure(db, &name, now).await?.id;
    let start = now - chrono::Duration::days(HISTORY_DAYS);
    let span = (now - start).num_seconds();
    // Contacts, a day's worth at a time, each day's on that day.
    let per_day = HISTORY_CONTACTS.div_ceil(HISTORY_DAYS as u32);
    for day in 0..HISTORY_DAYS as u32 {
        let first = day * per_day;
        let last = (first + per_day).min(HISTORY_CONTACTS);
        let people: Vec<ContactInput> = (first..last)
            .map(|n| ContactInput {
                phone: Some(format!("+2010{n:08}")),
                name: Some(format!("Contact {n}")),
                ..ContactInput::default()
            })
            .collect();
        let at = start + chrono::Duration::days(i64::from(day)) + chrono::Duration::hours(9);
        contacts::create_many(db, workspace, people, at).await?;
    }
    let mut senders = Vec::new();
    for n in 0..HISTORY_SENDERS {
        let name = format!("Line {n}");
        let (sender, _) = unpaced_sender(db, workspace, &name, "sandbox", json!({}), now).await?;
        senders.push(sender.id);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x4157);
    // How one send ended: 5 % failed, the rest sent, 85 % of those delivered, 60 % of those read.
    let ended = |sent_at: chrono::DateTime<chrono::Utc>, rng: &mut rand::rngs::StdRng| {
        let progress = Progress::pending();
        if rng.random_bool(0.05) {
            return progress
                .apply(Event::Failed { at: sent_at })
                .unwrap_or(progress);
        }
        let mut progress = progress
            .apply(Event::Sent { at: sent_at })
            .unwrap_or(progress);
        if rng.random_bool(0.85) {
            let at = sent_at + chrono::Duration::seconds(rng.random_range(1..120));
            progress = progress.apply(Event::Delivered { at }).unwrap_or(progress);
            if rng.random_bool(0.6) {
                let at = at + chrono::Duration::seconds(rng.random_range(1..7200));
                progress = progress.apply(Event::Read { at }).unwrap_or(progress);
            }
        }
        progress
    };
    let write = async |batch: &mut Vec<PastMessage>| -> anyhow::Result<()> {
        let mut tx = db.begin().await?;
        insert_past(tx.conn(), batch).await?;
        tx.commit().await?;
        batch.clear();
        Ok(())
    };
    // The big campaign: its sends spread over the 90 days.
    let mut all = Vec::new();
    let mut plan: Vec<(
        usize,
        chrono::DateTime<chrono::Utc>,
        i64,
        crate::domain::ids::SenderId,
    )> = vec![(BIG_CAMPAIGN, start, span, senders[0])];
    for n in 0..SMALL_CAMPAIGNS {
        let from = start + chrono::Duration::seconds(rng.random_range(0..span - 3600));
        plan.push((
            SMALL_CAMPAIGN,
            from,
            3600,
            senders[1 + n % (HISTORY_SENDERS - 1)],
        ));
    }
    let mut big = None;
    for (index, (size, from, seconds, sender)) in plan.into_iter().enumerate() {
        let mut counters = Counters::default();
        let mut ends = Vec::with_capacity(size);
        for _ in 0..size {
            let sent_at = from + chrono::Duration::seconds(rng.random_range(0..seconds));
            let progress = ended(sent_at, &mut rng);
            counters += Counters::of(&progress);
            ends.push((sent_at, progress));
        }
        let last = ends.iter().map(|(at, _)| *at).max().unwrap_or(from);
        let id = insert_past_campaign(
            db.write().await?.conn(),
            workspace,
            sender,
            &format!("History {index}"),
            (from, last),
            counters,
        )
        .await?;
        big.get_or_insert(id);
        for (n, (sent_at, progress)) in ends.into_iter().enumerate() {
            all.push(PastMessage {
                workspace,
                sender,
                campaign: Some(id),
                contact: None,
                phone: format!("+2010{:08}", n as u32 % HISTORY_CONTACTS),
                inbound: false,
                created_at: sent_at - chrono::Duration::seconds(1),
                progress,
            });
            if all.len() >= 20_000 {
                write(&mut all).await?;
            }
        }
    }
    for n in 0..HISTORY_INBOUND {
        let at = start + chrono::Duration::seconds(rng.random_range(0..span));
        all.push(PastMessage {
            workspace,
            sender: senders[n % HISTORY_SENDERS],
            campaign: None,
            contact: None,
            phone: format!("+2010{:08}", n as u32 % HISTORY_CONTACTS),
            inbound: true,
            created_at: at,
            progress: Progress {
                status: crate::domain::message::MessageStatus::Delivered,
                delivered_at: Some(at),
                ..Progress::pending()
            },
        });
        if all.len() >= 20_000 {
            write(&mut all).await?;
        }
    }
    write(&mut all).await?;
    Ok((name, big.context("no campaign was written")?))
}
