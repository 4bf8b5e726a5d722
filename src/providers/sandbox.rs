//! The sandbox: a simulated provider, so the whole engine runs with no account anywhere. It
//! takes `latency_ms`, `fail_rate`, `transient_rate`, `deliver_rate`, `read_rate`,
//! `deliver_after_ms` and `read_after_ms` from `provider_config`, and reports deliveries and reads
//! through the same ingestion path as real provider callbacks. `refuse_sender` (a reason)
//! simulates an account the platform has blocked: every send is refused for the whole sender.

use std::time::Duration;

use rand::Rng;
use serde_json::Value;

use super::{
    Accepted, BoxFuture, EventSink, Outbound, Provider, ProviderConfigError, ProviderContext,
    SendError, invalid,
};
use crate::domain::callback::{CallbackEvent, SenderEvents, StatusKind};
use crate::domain::ids::{MessageId, SenderId};
use crate::domain::provider::ProviderKind;

/// The `sandbox` provider module: no secrets, Herald's own callback format.
pub struct SandboxModule;

impl super::ProviderModule for SandboxModule {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Sandbox
    }

    fn capabilities(&self) -> super::Capabilities {
        super::Capabilities {
            // It never sends anything twice: it sends nothing at all.
            idempotency_keys: true,
            typing_indicator: false,
            templates: false,
            media: true,
            customer_service_window: false,
        }
    }

    fn build(
        &self,
        config: &Value,
        context: &ProviderContext,
    ) -> Result<std::sync::Arc<dyn Provider>, ProviderConfigError> {
        Ok(std::sync::Arc::new(Sandbox::from_config(config, context)?))
    }
}

#[derive(Clone, Debug)]
pub struct Sandbox {
    latency: Duration,
    fail_rate: f64,
    transient_rate: f64,
    deliver_rate: f64,
    read_rate: f64,
    deliver_after: Duration,
    read_after: Duration,
    /// Why the simulated platform refuses this sender, if it does.
    refuse_sender: Option<String>,
    events: EventSink,
    sender: Option<SenderId>,
}

/// `provider_config` of a sandbox sender: every field optional.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SandboxConfig {
    latency_ms: Option<u64>,
    fail_rate: Option<f64>,
    transient_rate: Option<f64>,
    deliver_rate: Option<f64>,
    read_rate: Option<f64>,
    deliver_after_ms: Option<u64>,
    read_after_ms: Option<u64>,
    /// The reason a simulated platform refuses the sender with.
    refuse_sender: Option<String>,
}

/// A probability: a fraction between 0 and 1.
fn rate(value: Option<f64>, field: &str, default: f64) -> Result<f64, ProviderConfigError> {
    let value = value.unwrap_or(default);
    if !(0.0..=1.0).contains(&value) {
        return Err(invalid(field, "is a fraction between 0 and 1"));
    }
    Ok(value)
}

impl Sandbox {
    pub fn from_config(
        config: &Value,
        context: &ProviderContext,
    ) -> Result<Self, ProviderConfigError> {
        let config: SandboxConfig = super::typed_config(config)?;
        let millis = |value: Option<u64>, default| Duration::from_millis(value.unwrap_or(default));
        Ok(Self {
            latency: millis(config.latency_ms, 0),
            fail_rate: rate(config.fail_rate, "fail_rate", 0.0)?,
            transient_rate: rate(config.transient_rate, "transient_rate", 0.0)?,
            deliver_rate: rate(config.deliver_rate, "deliver_rate", 0.95)?,
            read_rate: rate(config.read_rate, "read_rate", 0.6)?,
            deliver_after: millis(config.deliver_after_ms, 800),
            read_after: millis(config.read_after_ms, 2500),
            refuse_sender: config.refuse_sender,
            events: context.events.clone(),
            sender: context.sender,
        })
    }

    /// Decides now what will become of an accepted message, and reports it when it happens,
    /// naming it by Herald's id. Reports due at once are handed in before the send returns
    /// (waiting for room when ingestion is behind); later ones from a task of their own.
    async fn report(&self, message: MessageId) {
        let Some(sender) = self.sender else { return };
        let (read, deliver_in, read_in) = {
            let mut rng = rand::rng();
            if !rng.random_bool(self.deliver_rate) {
                return;
            }
            let read = rng.random_bool(self.read_rate);
            let deliver_in = jitter(&mut rng, self.deliver_after);
            (
                read,
                deliver_in,
                deliver_in + jitter(&mut rng, self.read_after),
            )
        };
        let events = self.events.clone();
        let reference = message.to_string();
        let reports = async move {
            tokio::time::sleep(deliver_in).await;
            emit(&events, sender, &reference, StatusKind::Delivered).await;
            if read {
                tokio::time::sleep(read_in - deliver_in).await;
                emit(&events, sender, &reference, StatusKind::Read).await;
            }
        };
        if deliver_in.is_zero() && read_in.is_zero() {
            reports.await;
        } else {
            tokio::spawn(reports);
        }
    }
}

async fn emit(events: &EventSink, sender: SenderId, reference: &str, kind: StatusKind) {
    let report = CallbackEvent::Status {
        reference: reference.to_owned(),
        kind,
        at: chrono::Utc::now(),
        error: None,
    };
    // Closed only when the engine has stopped: nothing is left to report to.
    let _ = events.send(SenderEvents::new(sender, vec![report])).await;
}

/// Between half and one and a half of `around`: simulated networks are not metronomes.
fn jitter(rng: &mut impl Rng, around: Duration) -> Duration {
    if around.is_zero() {
        return around;
    }
    around.mul_f64(rng.random_range(0.5..1.5))
}

impl Provider for Sandbox {
    fn send_timeout(&self) -> Duration {
        self.latency
    }

    fn send<'a>(&'a self, message: &'a Outbound<'a>) -> BoxFuture<'a, Result<Accepted, SendError>> {
        Box::pin(async move {
            if !self.latency.is_zero() {
                tokio::time::sleep(self.latency).await;
            }
            if let Some(reason) = &self.refuse_sender {
                return Err(SendError::PauseSender(format!("sandbox: {reason}")));
            }
            let (failed, transient) = {
                let mut rng = rand::rng();
                (
                    rng.random_bool(self.fail_rate),
                    rng.random_bool(self.transient_rate),
                )
            };
            if failed {
                return Err(SendError::Fail(
                    "sandbox: simulated rejection (invalid number)".into(),
                ));
            }
            if transient {
                return Err(SendError::retry("sandbox: simulated timeout"));
            }
            let provider_id = format!("sbx-{}", message.id.0.simple());
            self.report(message.id).await;
            Ok(Accepted {
                provider_message_id: Some(provider_id),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sandbox(config: Value) -> (Sandbox, tokio::sync::mpsc::Receiver<SenderEvents>) {
        let (events, received) = tokio::sync::mpsc::channel(64);
        let context =
            ProviderContext::new(reqwest::Client::new(), events, Some(SenderId::generate()));
        (Sandbox::from_config(&config, &context).unwrap(), received)
    }

    fn message() -> Outbound<'static> {
        Outbound {
            id: MessageId::generate(),
            to: "+14155552671",
            body: "hi",
            media_url: None,
            template: None,
        }
    }

    #[tokio::test]
    async fn certain_delivery_and_read_are_reported_in_order() {
        let (sandbox, mut events) = sandbox(
            json!({"deliver_rate": 1, "read_rate": 1, "deliver_after_ms": 0, "read_after_ms": 0}),
        );
        let message = message();
        sandbox.send(&message).await.unwrap();
        let herald_id = message.id.to_string();
        for expected in [StatusKind::Delivered, StatusKind::Read] {
            let batch = events.recv().await.unwrap();
            match &batch.events[0] {
                CallbackEvent::Status {
                    reference, kind, ..
                } => {
                    assert_eq!((reference, *kind), (&herald_id, expected));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn failure_rates_decide_the_error_kind() {
        let (always_fails, _) = sandbox(json!({"fail_rate": 1}));
        assert!(matches!(
            always_fails.send(&message()).await,
            Err(SendError::Fail(_))
        ));
        let (flaky, _) = sandbox(json!({"transient_rate": 1}));
        assert!(matches!(
            flaky.send(&message()).await,
            Err(SendError::Retry { .. })
        ));
        let (silent, mut events) = sandbox(json!({"deliver_rate": 0}));
        silent.send(&message()).await.unwrap();
        assert!(
            events.try_recv().is_err(),
            "nothing delivered, nothing reported"
        );
    }

    #[test]
    fn rates_are_fractions() {
        let (events, _) = tokio::sync::mpsc::channel(1);
        let context = ProviderContext::new(reqwest::Client::new(), events, None);
        assert!(Sandbox::from_config(&json!({"read_rate": 1.5}), &context).is_err());
        assert!(Sandbox::from_config(&json!("fast"), &context).is_err());
    }
}
