//! Who is calling: bearer tokens from `herald api-key create`, checked against the stored digest
//! in constant time; the abilities each route needs; and each key's request rate.
//!
//! The middleware identifies the caller and applies its rate limit once per request; handlers
//! then ask for the ability they need with an [`Authorized`] argument, which runs before the body
//! is read, so a key without the ability learns nothing about its request's validity.

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::domain::auth::Ability;
use crate::domain::ids::{ApiKeyId, WorkspaceId};
use crate::service::api_keys::{self, Admission};
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
    let (mut remaining, mut daily, mut refused) = (0, None, None);
    match api_keys::admit(&state.db, &key, per_minute, state.clock.now()).await {
        Ok(Admission::Admitted {
            daily: quota,
            minute_remaining,
        }) => {
            daily = quota;
            remaining = u32::try_from(minute_remaining).unwrap_or(u32::MAX);
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
}
