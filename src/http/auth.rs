//! Who is calling: bearer tokens from `herald api-key create`, checked against the stored digest
//! in constant time; the abilities each route needs; and each key's request rate.
//!
//! The middleware identifies the caller and applies its rate limit once per request; handlers
//! then ask for the ability they need with an [`Authorized`] argument, which runs before the body
//! is read, so a key without the ability learns nothing about its request's validity.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use super::AppState;
use super::error::ApiError;
use crate::domain::auth::Ability;
use crate::domain::ids::{ApiKeyId, WorkspaceId};
use crate::service::api_keys::{self, Admission};
use crate::store::Dialect;
use crate::store::api_keys::ApiKey;

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub key_id: ApiKeyId,
    pub workspace: WorkspaceId,
    abilities: Arc<[Ability]>,
}

impl Caller {
    /// The caller a key makes (a dashboard session acts as its key).
    pub(crate) fn from_key(key: &ApiKey) -> Self {
        Self {
            key_id: key.id,
            workspace: key.workspace_id,
            abilities: key.abilities.0.clone().into(),
        }
    }

    pub fn require(&self, ability: Ability) -> Result<(), ApiError> {
        if ability.is_granted_by(&self.abilities) {
            Ok(())
        } else {
            Err(ApiError::InsufficientAbility(ability.as_str()))
        }
    }
}

/// An ability a route needs, as a type: `Authorized<can::ContactsWrite>`.
pub trait Needs {
    const ABILITY: Ability;
}

/// The abilities of API.md, one marker type each.
pub mod can {
    use super::{Ability, Needs};

    macro_rules! abilities {
        ($($name:ident),* $(,)?) => {$(
            pub struct $name;
            impl Needs for $name {
                const ABILITY: Ability = Ability::$name;
            }
        )*};
    }

    abilities!(
        ContactsRead,
        ContactsWrite,
        CampaignsRead,
        CampaignsWrite,
        MessagesSend,
        MessagesRead,
        SendersRead,
        SendersWrite,
        AutomationsWrite,
        WebhooksWrite,
        AnalyticsRead,
        All,
    );
}

/// The caller, proven to hold `A`'s ability (else `403 insufficient_ability`).
pub struct Authorized<A> {
    caller: Caller,
    ability: PhantomData<A>,
}

impl<A> Deref for Authorized<A> {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.caller
    }
}

impl<S: Send + Sync, A: Needs> FromRequestParts<S> for Authorized<A> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let caller = parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(ApiError::Unauthenticated)?;
        caller.require(A::ABILITY)?;
        Ok(Self {
            caller,
            ability: PhantomData,
        })
    }
}

type KeyLimiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

struct KeyLimit {
    limiter: KeyLimiter,
}

/// Each API key's request budget: a GCRA limiter (governor) whose burst is a minute's worth, so
/// `X-RateLimit-Remaining` reads as "requests left in the current minute". Kept in memory, per
/// process: a restart forgives a burst, which an API budget can afford (sends are paced in the
/// database instead).
#[derive(Default)]
pub struct ApiLimits {
    keys: Mutex<HashMap<ApiKeyId, Arc<KeyLimit>>>,
}

impl ApiLimits {
    fn for_key(&self, key: ApiKeyId, per_minute: u32) -> Arc<KeyLimit> {
        let mut keys = self
            .keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        keys.entry(key)
            .or_insert_with(|| {
                let rate = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
                Arc::new(KeyLimit {
                    limiter: RateLimiter::direct(Quota::per_minute(rate))
                        .with_middleware::<StateInformationMiddleware>(),
                })
            })
            .clone()
    }
}

/// Middleware for every authenticated route: identifies the caller, spends one request of its
/// budget and reports the budget on the response.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let key = match identify(&state, request.headers()).await {
        Ok(key) => key,
        Err(error) => return error.into_response(),
    };
    let per_minute = key
        .rate_per_minute
        .and_then(|rate| u32::try_from(rate).ok())
        .unwrap_or(state.config.api_rate_per_minute);
    // One process (SQLite) keeps the minute's budget in memory; processes sharing PostgreSQL
    // count it in the database, with the quotas.
    let shared_minute = state.db.dialect() == Dialect::Postgres;
    let (mut remaining, mut refused) = (0, None);
    if !shared_minute {
        let limit = state.api_limits.for_key(key.id, per_minute);
        match limit.limiter.check() {
            Ok(snapshot) => remaining = snapshot.remaining_burst_capacity(),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                refused = Some(ApiError::RateLimited { retry_after });
            }
        }
    }
    let mut daily = None;
    if refused.is_none() {
        let minute_limit = shared_minute.then_some(i64::from(per_minute));
        match api_keys::admit(&state.db, &key, minute_limit, state.clock.now()).await {
            Ok(Admission::Admitted {
                daily: quota,
                minute_remaining,
            }) => {
                daily = quota;
                if let Some(left) = minute_remaining {
                    remaining = u32::try_from(left).unwrap_or(0);
                }
            }
            Ok(Admission::DailyQuotaExceeded { retry_after, quota }) => {
                daily = Some((quota, 0));
                refused = Some(ApiError::DailyQuotaExceeded { retry_after });
            }
            Ok(Admission::MonthlyQuotaExceeded { retry_after }) => {
                refused = Some(ApiError::MonthlyQuotaExceeded { retry_after });
            }
            Ok(Admission::RateLimited { retry_after }) => {
                refused = Some(ApiError::RateLimited { retry_after });
            }
            Err(error) => refused = Some(error.into()),
        }
    }
    let mut response = match refused {
        Some(error) => error.into_response(),
        None => {
            request.extensions_mut().insert(Caller {
                key_id: key.id,
                workspace: key.workspace_id,
                abilities: key.abilities.0.into(),
            });
            next.run(request).await
        }
    };
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(per_minute.max(1)));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    if let Some((quota, left)) = daily {
        headers.insert("x-ratelimit-daily-limit", HeaderValue::from(quota));
        headers.insert("x-ratelimit-daily-remaining", HeaderValue::from(left));
    }
    response
}

async fn identify(state: &AppState, headers: &HeaderMap) -> Result<ApiKey, ApiError> {
    let token = bearer_token(headers).ok_or(ApiError::Unauthenticated)?;
    api_keys::authenticate(&state.db, token, state.clock.now())
        .await?
        .ok_or(ApiError::Unauthenticated)
}

pub(super) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), None);
        for (value, expected) in [
            ("Bearer hrl_abc", Some("hrl_abc")),
            ("bearer   hrl_abc  ", Some("hrl_abc")),
            ("Basic hrl_abc", None),
            ("Bearer ", None),
            ("hrl_abc", None),
        ] {
            headers.insert("authorization", HeaderValue::from_static(value));
            assert_eq!(bearer_token(&headers), expected, "{value:?}");
        }
    }

    #[test]
    fn a_key_spends_its_minute_then_is_refused() {
        let limits = ApiLimits::default();
        let key = ApiKeyId::generate();
        let limit = limits.for_key(key, 3);
        let remaining: Vec<u32> = (0..3)
            .map(|_| limit.limiter.check().unwrap().remaining_burst_capacity())
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        assert!(limit.limiter.check().is_err());
        // Another key has its own budget.
        assert!(
            limits
                .for_key(ApiKeyId::generate(), 3)
                .limiter
                .check()
                .is_ok()
        );
    }
}
