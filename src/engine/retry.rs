//! What to do after a send attempt failed.

use std::time::Duration;

use rand::Rng;

use crate::providers::SendError;

/// Attempts before a transient failure becomes the message's final one.
pub const MAX_ATTEMPTS: i64 = 5;
/// The first retry's wait, doubled for each further one.
pub const DEFAULT_BASE: Duration = Duration::from_secs(2);
const CAP: Duration = Duration::from_secs(300);

/// The wait before attempt `attempt + 1`: exponential (2 s, 4 s, 8 s, …, at most 5 min, from the
/// default base), with jitter between half and all of it so that a burst of failures does not
/// retry in lockstep.
pub fn backoff(base: Duration, attempt: i64, rng: &mut impl Rng) -> Duration {
    let exponent = u32::try_from(attempt.clamp(1, 20) - 1).unwrap_or(0);
    let ceiling = base.saturating_mul(2u32.saturating_pow(exponent)).min(CAP);
    ceiling.mul_f64(rng.random_range(0.5..=1.0))
}

/// The decision for a failed attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    RetryIn(Duration),
    GiveUp,
}

/// What becomes of the message whose send failed with `error`, on its `attempts`th attempt.
/// (What becomes of its lane — held, stopped — is the lane's.)
pub fn after_failure(error: &SendError, attempts: i64, base: Duration, rng: &mut impl Rng) -> Next {
    match error {
        SendError::Fail(_) | SendError::RecipientOptedOut(_) => Next::GiveUp,
        // Waits for its campaign's resume, however long: never the message's fault.
        SendError::PauseCampaign(_) => Next::RetryIn(Duration::ZERO),
        // Not the message's fault: it waits at least as long as the provider asks, however
        // often, and longer each time the recipient is still held.
        SendError::HoldRecipient { after, .. } => {
            Next::RetryIn((*after).max(backoff(*after, attempts, rng)))
        }
        SendError::Retry { .. } | SendError::HoldLane { .. } | SendError::PauseSender(_)
            if attempts >= MAX_ATTEMPTS =>
        {
            Next::GiveUp
        }
        SendError::Retry {
            after: Some(after), ..
        }
        | SendError::HoldLane {
            after: Some(after), ..
        } => Next::RetryIn(*after),
        SendError::Retry { after: None, .. }
        | SendError::HoldLane { after: None, .. }
        | SendError::PauseSender(_) => Next::RetryIn(backoff(base, attempts, rng)),
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        let mut rng = StdRng::seed_from_u64(9);
        for (attempt, ceiling) in [(1, 2), (2, 4), (3, 8), (4, 16), (12, 300)] {
            for _ in 0..50 {
                let wait = backoff(DEFAULT_BASE, attempt, &mut rng);
                let ceiling = Duration::from_secs(ceiling);
                assert!(
                    wait >= ceiling / 2 && wait <= ceiling,
                    "attempt {attempt}: {wait:?}"
                );
            }
        }
    }

    #[test]
    fn transient_errors_retry_until_the_last_attempt_and_fatal_ones_never() {
        let mut rng = StdRng::seed_from_u64(1);
        let transient = SendError::retry("503");
        assert!(matches!(
            after_failure(&transient, 1, DEFAULT_BASE, &mut rng),
            Next::RetryIn(_)
        ));
        assert_eq!(
            after_failure(&transient, MAX_ATTEMPTS, DEFAULT_BASE, &mut rng),
            Next::GiveUp
        );
        assert_eq!(
            after_failure(&SendError::Fail("400".into()), 1, DEFAULT_BASE, &mut rng),
            Next::GiveUp
        );
        let told = SendError::HoldLane {
            after: Some(Duration::from_secs(7)),
            reason: "429".into(),
        };
        assert_eq!(
            after_failure(&told, 2, DEFAULT_BASE, &mut rng),
            Next::RetryIn(Duration::from_secs(7)),
            "the provider's word wins"
        );
        let pair_limit = SendError::HoldRecipient {
            after: Duration::from_secs(60),
            reason: "131056".into(),
        };
        assert_eq!(
            after_failure(&pair_limit, 1, DEFAULT_BASE, &mut rng),
            Next::RetryIn(Duration::from_secs(60)),
            "the first wait is the provider's"
        );
        let Next::RetryIn(later) =
            after_failure(&pair_limit, MAX_ATTEMPTS + 3, DEFAULT_BASE, &mut rng)
        else {
            panic!("a recipient held is never given up for it");
        };
        assert!(
            (Duration::from_secs(150)..=Duration::from_secs(300)).contains(&later),
            "a recipient still held waits longer each time, up to the cap: {later:?}"
        );
        assert_eq!(
            after_failure(
                &SendError::PauseSender("401".into()),
                MAX_ATTEMPTS,
                DEFAULT_BASE,
                &mut rng
            ),
            Next::GiveUp
        );
    }
}
