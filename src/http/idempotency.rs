//! `Idempotency-Key` on POST, PUT, PATCH and DELETE: the first response to a key is stored (status
//! and body) for 24 hours per API key and path, and a retry gets it back with
//! `Idempotent-Replay: true` instead of running again.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Duration;
use sha2::{Digest, Sha256};

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use crate::store::idempotency::{self, Claim, Scope, StoredResponse};

/// The largest body Herald reads (a CSV import of some 100,000 contacts fits well inside).
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
const MAX_KEY_LENGTH: usize = 255;
/// How long responses are replayed.
const KEEP_FOR: Duration = Duration::hours(24);
/// How long a running request holds its key; past it, its process is presumed dead.
const LOCK_FOR: Duration = Duration::minutes(2);

/// A key of 1–255 characters from `A–Z a–z 0–9 - _`.
pub fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > MAX_KEY_LENGTH {
        return Err(ApiError::InvalidIdempotencyKey(
            "Idempotency-Key must be 1 to 255 characters long",
        ));
    }
    if !key
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
    {
        return Err(ApiError::InvalidIdempotencyKey(
            "Idempotency-Key may hold only A-Z, a-z, 0-9, '-' and '_'",
        ));
    }
    Ok(())
}

/// Middleware, inside authentication (it keys responses by the caller's API key).
pub async fn replay_or_run(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if !matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        return next.run(request).await;
    }
    let Some(key) = request.headers().get("idempotency-key") else {
        return next.run(request).await;
    };
    let Some(caller) = request.extensions().get::<Caller>().cloned() else {
        return ApiError::Unauthenticated.into_response();
    };
    let key = match key.to_str() {
        Ok(key) => key.to_owned(),
        Err(_) => {
            return ApiError::InvalidIdempotencyKey(
                "Idempotency-Key may hold only A-Z, a-z, 0-9, '-' and '_'",
            )
            .into_response();
        }
    };
    if let Err(error) = check_key(&key) {
        return error.into_response();
    }
    match run_once(&state, &caller, &key, request, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn run_once(
    state: &AppState,
    caller: &Caller,
    key: &str,
    request: Request,
    next: Next,
) -> Result<Response, Response> {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| {
        ApiError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        }
        .into_response()
    })?;
    let path = parts.uri.path().to_owned();
    let scope = Scope {
        api_key: caller.key_id,
        path: &path,
        key,
    };
    let fingerprint = fingerprint(&parts.method, &body);
    let now = state.clock.now();
    let claim = async {
        let mut conn = state.db.write().await?;
        idempotency::claim(conn.conn(), &scope, &fingerprint, now, LOCK_FOR, KEEP_FOR).await
    }
    .await
    .map_err(|error| ApiError::from(error).into_response())?;
    match claim {
        Claim::Started => {}
        Claim::Replay(stored) => return Ok(replay(stored)),
        Claim::InProgress => return Err(ApiError::IdempotencyInProgress.into_response()),
        Claim::Reused => return Err(ApiError::IdempotencyKeyReused.into_response()),
    }

    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    if response.status().is_server_error() {
        // Not the client's doing: a retry with the same key should run again.
        if let Err(error) = release(state, &scope).await {
            tracing::warn!(%error, "cannot release an idempotency key");
        }
        return Ok(response);
    }
    let (mut parts, body) = response.into_parts();
    let body = to_bytes(body, usize::MAX)
        .await
        .map_err(|error| ApiError::Internal(anyhow::anyhow!("reading a response: {error}")))
        .map_err(IntoResponse::into_response)?;
    let stored = StoredResponse {
        status: i64::from(parts.status.as_u16()),
        body: body.to_vec(),
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
    };
    let finished = async {
        let mut conn = state.db.write().await?;
        idempotency::finish(conn.conn(), &scope, &stored).await
    };
    if let Err(error) = finished.await {
        // The response still goes out; the key stays locked until LOCK_FOR passes.
        tracing::warn!(%error, "cannot store an idempotent response");
    }
    parts.headers.remove("idempotent-replay");
    Ok(Response::from_parts(parts, Body::from(body)))
}

async fn release(state: &AppState, scope: &Scope<'_>) -> crate::store::Result<()> {
    let mut conn = state.db.write().await?;
    idempotency::release(conn.conn(), scope).await
}

fn replay(stored: StoredResponse) -> Response {
    let status = u16::try_from(stored.status)
        .ok()
        .and_then(|status| axum::http::StatusCode::from_u16(status).ok())
        .unwrap_or(axum::http::StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    let headers = response.headers_mut();
    if let Some(content_type) = stored
        .content_type
        .and_then(|value| HeaderValue::from_str(&value).ok())
    {
        headers.insert(header::CONTENT_TYPE, content_type);
    }
    headers.insert("idempotent-replay", HeaderValue::from_static("true"));
    response
}

/// Method and body, hashed: what makes two requests "the same" for a key.
fn fingerprint(method: &Method, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_str().as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_for_length_and_alphabet() {
        assert!(check_key("order-42_retry").is_ok());
        assert!(check_key(&"a".repeat(255)).is_ok());
        for bad in ["", "has space", "dot.ted", "ünï", &"a".repeat(256)] {
            assert!(
                matches!(check_key(bad), Err(ApiError::InvalidIdempotencyKey(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn fingerprints_tell_requests_apart() {
        let post = fingerprint(&Method::POST, b"{}");
        assert_eq!(post, fingerprint(&Method::POST, b"{}"));
        assert_ne!(post, fingerprint(&Method::PATCH, b"{}"));
        assert_ne!(post, fingerprint(&Method::POST, b"{ }"));
    }
}
