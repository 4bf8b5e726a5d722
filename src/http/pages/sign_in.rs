//! Signing in with an API token, and out.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::{Frame, PageError, SESSION_COOKIE, Session, SignedForm, cookie, render};
use crate::domain::auth::random_secret;
use crate::http::AppState;
use crate::service::sessions;

/// The sign-in form's own CSRF cookie: a page elsewhere cannot sign a browser in with the
/// attacker's token (login CSRF), since it cannot read or set this cookie.
const SIGN_IN_COOKIE: &str = "herald_sign_in";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(form).post(sign_in))
        .route("/logout", post(sign_out))
}

#[derive(Serialize)]
struct SignInPage<'a> {
    sign_in_csrf: &'a str,
    problem: Option<&'a str>,
}

async fn form(session: Option<Session>) -> Response {
    if session.is_some() {
        return Redirect::to("/").into_response();
    }
    sign_in_page(StatusCode::OK, None)
}

fn sign_in_page(status: StatusCode, problem: Option<&str>) -> Response {
    let token = random_secret();
    let mut response = render(
        "sign_in",
        Frame::signed_out("Sign in"),
        &SignInPage {
            sign_in_csrf: &token,
            problem,
        },
    );
    *response.status_mut() = status;
    set_cookie(
        &mut response,
        &format!("{SIGN_IN_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600"),
    );
    response
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    sign_in_csrf: String,
}

async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<SignInForm>,
) -> Result<Response, PageError> {
    let expected = cookie(&headers, SIGN_IN_COOKIE).unwrap_or("");
    let fresh =
        !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(form.sign_in_csrf.as_bytes()));
    if !fresh {
        return Ok(sign_in_page(
            StatusCode::FORBIDDEN,
            Some("This sign-in form has expired; please try again."),
        ));
    }
    let Some(opened) = sessions::sign_in(&state.db, &form.token, state.clock.now()).await? else {
        return Ok(sign_in_page(
            StatusCode::UNAUTHORIZED,
            Some("That token is not valid: it may be mistyped, revoked or expired."),
        ));
    };
    let mut response = Redirect::to("/").into_response();
    let max_age = sessions::LIFETIME.num_seconds();
    let secure = if behind_https(&headers) {
        "; Secure"
    } else {
        ""
    };
    set_cookie(
        &mut response,
        &format!(
            "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}",
            opened.secret
        ),
    );
    set_cookie(
        &mut response,
        &format!("{SIGN_IN_COOKIE}=; Path=/login; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(response)
}

async fn sign_out(
    State(state): State<AppState>,
    SignedForm { session, .. }: SignedForm<serde::de::IgnoredAny>,
) -> Result<Response, PageError> {
    sessions::sign_out(&state.db, &session.secret).await?;
    let mut response = Redirect::to("/login").into_response();
    set_cookie(
        &mut response,
        &format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(response)
}

/// Whether the browser reached Herald over HTTPS through a proxy that says so: its session
/// cookie is then `Secure`, never sent over plain HTTP. (Herald itself serves plain HTTP; a
/// forged header only makes the forger's own cookie stricter.)
fn behind_https(headers: &HeaderMap) -> bool {
    let value = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_ascii_lowercase)
    };
    value("x-forwarded-proto").is_some_and(|proto| proto.trim() == "https")
        || value("forwarded").is_some_and(|forwarded| forwarded.contains("proto=https"))
}

fn set_cookie(response: &mut Response, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_secure_behind_an_https_proxy() {
        let mut headers = HeaderMap::new();
        assert!(!behind_https(&headers));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(behind_https(&headers));
        let mut headers = HeaderMap::new();
        headers.insert(
            "forwarded",
            HeaderValue::from_static("for=1.2.3.4;proto=https"),
        );
        assert!(behind_https(&headers));
        headers.insert(
            "forwarded",
            HeaderValue::from_static("for=1.2.3.4;proto=http"),
        );
        assert!(!behind_https(&headers));
    }
}
