//! Prometheus metrics: what the engine counts as it works (sends by sender and outcome, provider
//! latency, lane waits by gate, webhook attempts, inbound messages, automatic replies), through
//! the `metrics` facade, rendered by its Prometheus exporter at `GET /metrics`. Counters are of
//! this process since it started, as Prometheus expects; figures every process shares (the
//! queue's depth) are read from the database when scraped.

use std::sync::OnceLock;
use std::time::Duration;

pub use ::metrics::Histogram;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::domain::ids::SenderId;
use crate::store::messages::Outcome;

pub const SENDS: &str = "herald_sends_total";
pub const PROVIDER_LATENCY: &str = "herald_provider_request_seconds";
pub const LANE_WAIT: &str = "herald_lane_wait_seconds";
pub const PENDING: &str = "herald_pending_messages";
pub const WEBHOOK_ATTEMPTS: &str = "herald_webhook_deliveries_total";
pub const INBOUND: &str = "herald_inbound_messages_total";
pub const AUTOMATION_REPLIES: &str = "herald_automation_replies_total";

/// Provider requests take milliseconds on a LAN and seconds on a slow platform.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Lane waits run from a typing pause (seconds) to a closed window or a spent cap (hours).
const WAIT_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's recorder, installed on first use; `None` when the embedding program installed
/// a recorder of its own.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(PROVIDER_LATENCY.into()), LATENCY_BUCKETS)
                .and_then(|builder| {
                    builder.set_buckets_for_metric(Matcher::Full(LANE_WAIT.into()), WAIT_BUCKETS)
                });
            match builder.and_then(|builder| builder.install_recorder()) {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(error) => {
                    tracing::warn!(%error, "metrics recorder not installed; /metrics is empty");
                    None
                }
            }
        })
        .as_ref()
}

fn describe() {
    metrics::describe_counter!(SENDS, "Send attempts recorded, by sender and outcome");
    metrics::describe_histogram!(
        PROVIDER_LATENCY,
        metrics::Unit::Seconds,
        "Time a provider took to answer a send"
    );
    metrics::describe_histogram!(
        LANE_WAIT,
        metrics::Unit::Seconds,
        "Waits of sender lanes, by the gate that held them"
    );
    metrics::describe_gauge!(PENDING, "Messages waiting to be sent or in flight");
    metrics::describe_counter!(
        WEBHOOK_ATTEMPTS,
        "Webhook delivery attempts, by outcome (succeeded, retrying, failed)"
    );
    metrics::describe_counter!(INBOUND, "Inbound messages recorded");
    metrics::describe_counter!(AUTOMATION_REPLIES, "Automatic replies queued");
}

/// Installs the recorder and keeps the histograms' recent samples from piling up between
/// scrapes, once per process (every application built in it shares them).
pub fn start_upkeep() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let Some(handle) = handle() else { return };
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                handle.run_upkeep();
            }
        });
    });
}

/// The gates a lane waits at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Outside the sender's send window.
    Window,
    /// Spacing between sends: rate limit, shift interval.
    Spacing,
    /// The typing delay before a paced send.
    Typing,
    /// Today's cap (warmup or daily limit) is spent.
    DailyCap,
    /// The provider asked the sender to wait (429 and the like).
    Throttled,
}

impl Gate {
    fn as_str(self) -> &'static str {
        match self {
            Gate::Window => "window",
            Gate::Spacing => "spacing",
            Gate::Typing => "typing",
            Gate::DailyCap => "daily_cap",
            Gate::Throttled => "throttled",
        }
    }
}

pub fn lane_waits(gate: Gate, wait: chrono::Duration) {
    let seconds = wait.num_milliseconds().max(0) as f64 / 1000.0;
    metrics::histogram!(LANE_WAIT, "gate" => gate.as_str()).record(seconds);
}

/// The latency histogram of one provider, to record each send into.
pub fn provider_latency(provider: &'static str) -> metrics::Histogram {
    metrics::histogram!(PROVIDER_LATENCY, "provider" => provider)
}

/// Counts a recorded group of send outcomes.
pub fn sends_recorded<'a>(sender: SenderId, outcomes: impl IntoIterator<Item = &'a Outcome>) {
    let mut counts = [0u64; 4];
    for outcome in outcomes {
        let index = match outcome {
            Outcome::Sent { .. } => 0,
            Outcome::Failed { .. } | Outcome::Unwanted { .. } => 1,
            Outcome::Retry { .. } | Outcome::CampaignBlocked { .. } => 2,
            Outcome::Skipped { .. } => 3,
        };
        counts[index] += 1;
    }
    let sender = sender.to_string();
    for (outcome, count) in ["sent", "failed", "retried", "skipped"]
        .into_iter()
        .zip(counts)
    {
        if count > 0 {
            metrics::counter!(SENDS, "sender_id" => sender.clone(), "outcome" => outcome)
                .increment(count);
        }
    }
}

/// Counts one webhook attempt's outcome: `succeeded`, `retrying` or `failed`.
pub fn webhook_attempt(outcome: &'static str) {
    metrics::counter!(WEBHOOK_ATTEMPTS, "outcome" => outcome).increment(1);
}

/// Counts what a callback brought in, once it is committed.
pub fn ingested(inbound: usize, replies: usize) {
    if inbound > 0 {
        metrics::counter!(INBOUND).increment(inbound as u64);
    }
    if replies > 0 {
        metrics::counter!(AUTOMATION_REPLIES).increment(replies as u64);
    }
}

/// The text of every metric, with the database's figures read now.
pub fn render(pending: i64) -> String {
    let Some(handle) = handle() else {
        return String::new();
    };
    metrics::gauge!(PENDING).set(pending as f64);
    handle.render()
}
