//! `herald bench --processes N --database-url postgres://…`: PostgreSQL as the way past one
//! process. N `herald serve` processes share the database; twelve senders, each with a campaign
//! to its own workspace's contacts, post to a gateway that answers in 20 ms. Measured: sends a
//! second from the launch to the last completion, the lanes each process held (sampled every
//! 100 ms), and — with two or more processes — how long the others take to hold again the
//! senders of one killed with `kill -9` mid-campaign (its leases must run out first). The
//! processes get this one's configuration of leases (`HERALD_LANE_LEASE_MS`, and
//! `HERALD_CLAIM_LEASE_MS`, after which the killed process's claimed messages are sent).

use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use super::{Sink, round, seed_named, unpaced_sender};
use crate::app::open_database;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::domain::campaign::Audience;
use crate::domain::ids::{CampaignId, SenderId, WorkspaceId};
use crate::service::campaigns::{self as service, Draft, LaunchBy};
use crate::store::{self, Db};

const SENDERS: u32 = 12;
const GATEWAY_LATENCY: Duration = Duration::from_millis(20);
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The `herald serve` processes of the run, killed when it ends however it ends.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Line {
    workspace: WorkspaceId,
    sender: SenderId,
}

pub(super) async fn bench(config: &Config, processes: u32, recipients: u32) -> anyhow::Result<()> {
    if !config.database_url.starts_with("postgres") {
        bail!("--processes needs --database-url postgres://…: processes share only PostgreSQL");
    }
    if processes == 0 {
        bail!("--processes must be at least 1");
    }
    let db = open_database(config).await?;
    let clock = SystemClock;
    let sink = Sink::answering_after(GATEWAY_LATENCY).await?;
    let per_sender = recipients.div_ceil(SENDERS);
    let run = uuid::Uuid::now_v7().simple().to_string();
    let mut lines = Vec::new();
    for n in 0..SENDERS {
        let workspace = seed_named(&db, &clock, &format!("scale-{run}-{n}"), per_sender).await?;
        let config = json!({"url": sink.url(), "timeout_ms": 2_000});
        let name = format!("Line {n}");
        let (sender, _) =
            unpaced_sender(&db, workspace, &name, "http", config, clock.now()).await?;
        lines.push(Line {
            workspace,
            sender: sender.id,
        });
    }
    eprintln!("{SENDERS} senders, {per_sender} recipients each; starting {processes} processes");
    let mut children = Children(Vec::new());
    let lease = Duration::from_millis(config.lane_lease_ms);
    for _ in 0..processes {
        children.0.push(spawn_serve(config)?);
    }
    until_processes_alive(&db, processes).await?;

    let pids: Vec<u32> = children.0.iter().map(Child::id).collect();
    let (elapsed, sends, held) = send_round(&db, &lines, &pids, None).await?;
    let rate = sends as f64 / elapsed.as_secs_f64();
    let held_text: Vec<String> = held
        .iter()
        .map(|(pid, most)| format!("{pid}: {most}"))
        .collect();
    eprintln!(
        "{processes} processes: {sends} sends in {:.2} s, {rate:.0} sends/s; most lanes held: {}",
        elapsed.as_secs_f64(),
        held_text.join(", ")
    );
    let mut report = json!({
        "processes": processes,
        "senders": SENDERS,
        "gateway_latency_ms": GATEWAY_LATENCY.as_millis(),
        "sends": sends,
        "seconds": round(elapsed.as_secs_f64()),
        "sends_per_second": round(rate),
        "most_lanes_held": held.values().collect::<Vec<_>>(),
    });

    if processes >= 2 {
        let failover = failover_round(&db, &lines, &mut children).await?;
        match failover.after {
            Some(after) => eprintln!(
                "kill -9 of a process holding {} lanes: the others held its senders {:.2} s later (lease {:.1} s)",
                failover.lanes,
                after.as_secs_f64(),
                lease.as_secs_f64()
            ),
            None => eprintln!(
                "kill -9 of a process holding {} lanes: the campaigns ended before its leases ran out",
                failover.lanes
            ),
        }
        report["failover"] = json!({
            "lanes": failover.lanes,
            "seconds": failover.after.map(|after| round(after.as_secs_f64())),
            "lease_seconds": lease.as_secs_f64(),
        });
    }
    drop(children);
    db.close().await;
    println!("{report}");
    Ok(())
}

fn spawn_serve(config: &Config) -> anyhow::Result<Child> {
    let herald = std::env::current_exe().context("cannot find the herald binary")?;
    Command::new(herald)
        .arg("serve")
        .env("HERALD_DATABASE_URL", &config.database_url)
        .env("HERALD_LISTEN", "127.0.0.1:0")
        .env("HERALD_ALLOW_PRIVATE_URLS", "true")
        .env("HERALD_LANE_LEASE_MS", config.lane_lease_ms.to_string())
        .env("HERALD_CLAIM_LEASE_MS", config.claim_lease_ms.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start herald serve")
}

async fn until_processes_alive(db: &Db, processes: u32) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let alive = {
            let mut conn = db.read().await?;
            let since = SystemClock.now() - chrono::Duration::seconds(2);
            store::processes::live(conn.conn(), since).await?
        };
        if alive >= processes {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("{alive} of {processes} processes came up within a minute");
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

/// Lanes held now by each of `pids` (a lease's owner is `"{pid}:{uuid}"`).
async fn lanes_by_pid(db: &Db, pids: &[u32]) -> anyhow::Result<HashMap<u32, i64>> {
    let holders = {
        let mut conn = db.read().await?;
        store::lanes::holders(conn.conn(), SystemClock.now()).await?
    };
    let mut by_pid: HashMap<u32, i64> = pids.iter().map(|pid| (*pid, 0)).collect();
    for (owner, lanes) in holders {
        let pid = owner.split(':').next().and_then(|pid| pid.parse().ok());
        if let Some(held) = pid.and_then(|pid| by_pid.get_mut(&pid)) {
            *held += lanes;
        }
    }
    Ok(by_pid)
}

/// What a round has come to at a sample.
struct Progress<'a> {
    /// Campaigns not finished yet.
    unfinished: i64,
    /// Lanes held by each process.
    lanes: &'a HashMap<u32, i64>,
}

/// A campaign per line, launched together; returns once all are finished, with the time from
/// the first launch, the sends, and the most lanes each process held meanwhile. `on_sample`
/// runs at each sample until it returns false.
async fn send_round(
    db: &Db,
    lines: &[Line],
    pids: &[u32],
    mut on_sample: Option<&mut dyn FnMut(Progress<'_>) -> bool>,
) -> anyhow::Result<(Duration, i64, BTreeMap<u32, i64>)> {
    let campaigns = create_campaigns(db, lines).await?;
    let started = Instant::now();
    for (line, campaign) in lines.iter().zip(&campaigns) {
        service::launch(
            db,
            line.workspace,
            *campaign,
            LaunchBy::Person,
            SystemClock.now(),
        )
        .await?
        .context("a campaign was not launched")?;
    }
    let mut held: BTreeMap<u32, i64> = BTreeMap::new();
    loop {
        tokio::time::sleep(SAMPLE_EVERY).await;
        let mut sends = 0;
        let mut finished = 0;
        for (line, campaign) in lines.iter().zip(&campaigns) {
            let current = service::get(db, line.workspace, *campaign).await?;
            let counters = current.counters();
            sends += counters.sent + counters.failed;
            finished += usize::from(current.status.is_finished());
        }
        if finished == campaigns.len() {
            return Ok((started.elapsed(), sends, held));
        }
        let lanes = lanes_by_pid(db, pids).await?;
        for (pid, lanes) in &lanes {
            let most = held.entry(*pid).or_default();
            *most = (*most).max(*lanes);
        }
        let progress = Progress {
            unfinished: i64::try_from(campaigns.len() - finished).unwrap_or(i64::MAX),
            lanes: &lanes,
        };
        if let Some(watch) = on_sample.as_mut()
            && !watch(progress)
        {
            on_sample = None;
        }
        if started.elapsed() > Duration::from_secs(3600) {
            bail!("the campaigns did not finish within an hour");
        }
    }
}

async fn create_campaigns(db: &Db, lines: &[Line]) -> anyhow::Result<Vec<CampaignId>> {
    let mut campaigns = Vec::with_capacity(lines.len());
    for (n, line) in lines.iter().enumerate() {
        let draft = Draft {
            name: format!("Scale {n}"),
            sender_id: line.sender,
            template_id: None,
            content: Some("Hi <<name|there>>! Our sale reaches <<city|your city>> today.".into()),
            media_url: None,
            audience: Audience::All,
            variables: BTreeMap::new(),
        };
        campaigns.push(
            service::create(db, line.workspace, draft, SystemClock.now())
                .await?
                .id,
        );
    }
    Ok(campaigns)
}

struct Failover {
    lanes: i64,
    /// `None` when the campaigns ended before the others took its senders.
    after: Option<Duration>,
}

/// Another round; once every process holds lanes, the process holding the most is killed, and
/// the time until the others hold every sender that still has work is its failover.
async fn failover_round(
    db: &Db,
    lines: &[Line],
    children: &mut Children,
) -> anyhow::Result<Failover> {
    let pids: Vec<u32> = children.0.iter().map(Child::id).collect();
    let mut killed: Option<(u32, i64, Instant)> = None;
    let mut failover: Option<Duration> = None;
    let mut watch = |progress: Progress<'_>| -> bool {
        let lanes = progress.lanes;
        match killed {
            None => {
                if lanes.values().all(|held| *held > 0) {
                    let (pid, held) = lanes
                        .iter()
                        .max_by_key(|(_, held)| **held)
                        .map_or((0, 0), |(pid, held)| (*pid, *held));
                    if let Some(child) = children.0.iter_mut().find(|child| child.id() == pid) {
                        let _ = child.kill();
                        let _ = child.wait();
                        killed = Some((pid, held, Instant::now()));
                    }
                }
                true
            }
            Some((pid, _, at)) => {
                let others: i64 = lanes
                    .iter()
                    .filter(|(other, _)| **other != pid)
                    .map(|(_, held)| *held)
                    .sum();
                let dead: i64 = lanes.get(&pid).copied().unwrap_or(0);
                if dead == 0 && others >= progress.unfinished {
                    failover = Some(at.elapsed());
                    return false;
                }
                true
            }
        }
    };
    send_round(db, lines, &pids, Some(&mut watch)).await?;
    let Some((_, lanes, _)) = killed else {
        bail!("the round ended before a process could be killed mid-campaign");
    };
    Ok(Failover {
        lanes,
        after: failover,
    })
}
