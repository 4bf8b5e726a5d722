//! The dashboard: server-rendered pages for marketing staff, on the same services as the API.
//!
//! A person signs in with an API token; the browser then holds a session cookie (`HttpOnly`,
//! `SameSite=Strict`) and every form carries the session's CSRF token. A page shows and allows
//! only what the key's abilities allow, in the key's workspace. Templates are handlebars files
//! in `templates/dashboard/`, compiled into the binary (nothing to install, no CDN), and escape
//! HTML by default. The few dynamic parts (live counters, a draft's preview) poll small JSON
//! routes of the dashboard with a script served from the binary.
//!
//! Pages are not part of the API: their routes are registered with `Router::route`, outside the
//! OpenAPI document.
#![allow(clippy::disallowed_methods)]

use std::sync::LazyLock;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use handlebars::Handlebars;
use serde::Serialize;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use super::AppState;
use super::auth::Caller;
use crate::domain::auth::Ability;
use crate::service::{ServiceError, sessions};
use crate::store::StoreError;

mod analytics;
mod automations;
mod campaigns;
mod charts;
mod contacts;
mod drafts;
mod senders;
mod sign_in;
mod webhooks;

/// The cookie that holds a session's secret.
const SESSION_COOKIE: &str = "herald_session";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/assets/dashboard.css", get(stylesheet))
        .route("/assets/dashboard.js", get(script))
        .merge(sign_in::router())
        .merge(campaigns::router())
        .merge(drafts::router())
        .merge(contacts::router())
        .merge(senders::router())
        .merge(automations::router())
        .merge(webhooks::router())
        .merge(analytics::router())
}

/// The first section the session's key may read (the sign-in form when signed out).
async fn home(session: Option<Session>) -> Redirect {
    let Some(session) = session else {
        return Redirect::to("/login");
    };
    let sections = [
        (Ability::CampaignsRead, "/campaigns"),
        (Ability::ContactsRead, "/contacts"),
        (Ability::SendersRead, "/senders"),
        (Ability::WebhooksWrite, "/webhooks"),
        (Ability::AnalyticsRead, "/analytics"),
    ];
    let first = sections
        .iter()
        .find(|(ability, _)| session.may(*ability))
        // None readable: the campaigns page says which ability is missing.
        .map_or("/campaigns", |(_, path)| path);
    Redirect::to(first)
}

/// The compiled templates. Every template is checked by a unit test, so a broken one fails the
/// build's tests, never a page in production.
static VIEWS: LazyLock<Result<Handlebars<'static>, String>> = LazyLock::new(compile_views);

macro_rules! views {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_str!(concat!("../../../templates/dashboard/", $name, ".hbs")))),*]
    };
}

fn compile_views() -> Result<Handlebars<'static>, String> {
    let mut views = Handlebars::new();
    views.set_strict_mode(true);
    views.register_helper("percent", Box::new(percent));
    for (name, source) in views!(
        "layout",
        "sign_in",
        "error",
        "campaigns",
        "campaign",
        "campaign_new",
        "contacts",
        "contact",
        "import",
        "senders",
        "sender",
        "pager",
        "automations",
        "automation",
        "webhooks",
        "webhook",
        "analytics",
    ) {
        views
            .register_template_string(name, source)
            .map_err(|error| format!("template {name}: {error}"))?;
    }
    // Pages wrap themselves in the layout with `{{#> layout}}…{{/layout}}`: a registered
    // template is also a partial.
    Ok(views)
}

/// `{{percent part whole}}`: a share as a whole percentage, 0 when the whole is 0.
fn percent(
    helper: &handlebars::Helper<'_>,
    _: &Handlebars<'_>,
    _: &handlebars::Context,
    _: &mut handlebars::RenderContext<'_, '_>,
    out: &mut dyn handlebars::Output,
) -> handlebars::HelperResult {
    let number = |index| {
        helper
            .param(index)
            .and_then(|param| param.value().as_f64())
            .unwrap_or(0.0)
    };
    let (part, whole) = (number(0), number(1));
    let share = if whole > 0.0 {
        (part * 100.0 / whole).clamp(0.0, 100.0)
    } else {
        0.0
    };
    out.write(&format!("{share:.0}"))?;
    Ok(())
}

/// What the layout around every page shows: the title, the session's navigation and sign-out
/// form, and a note left by the form that led here.
pub struct Frame<'a> {
    session: Option<&'a Session>,
    title: &'a str,
    note: Option<&'a str>,
}

impl<'a> Frame<'a> {
    fn new(session: &'a Session, title: &'a str, note: Option<&'a str>) -> Self {
        Self {
            session: Some(session),
            title,
            note,
        }
    }

    fn signed_out(title: &'a str) -> Self {
        Self {
            session: None,
            title,
            note: None,
        }
    }
}

/// A page rendered inside the layout.
fn render<T: Serialize>(view: &str, frame: Frame<'_>, body: &T) -> Response {
    #[derive(Serialize)]
    struct Context<'a, T> {
        title: &'a str,
        note: Option<&'a str>,
        nav: Option<Nav>,
        csrf: &'a str,
        /// The name of the key the session acts as, shown beside "Sign out".
        key_name: &'a str,
        #[serde(flatten)]
        body: &'a T,
    }
    let session = frame.session;
    let context = Context {
        title: frame.title,
        note: frame.note.filter(|note| !note.is_empty()),
        nav: session.map(Nav::of),
        csrf: session.map_or("", |session| session.csrf.as_str()),
        key_name: session.map_or("", |session| session.key_name.as_str()),
        body,
    };
    let rendered = VIEWS.as_ref().map_err(Clone::clone).and_then(|views| {
        views
            .render(view, &context)
            .map_err(|error| error.to_string())
    });
    match rendered {
        Ok(html) => html_response(StatusCode::OK, html),
        Err(error) => {
            tracing::error!(view, %error, "a dashboard page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render",
            )
                .into_response()
        }
    }
}

fn html_response(status: StatusCode, html: String) -> Response {
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure(headers);
    response
}

/// Headers every page carries: only this origin's scripts and styles run (an injected
/// `<script>` would not, were escaping ever missed), no framing, no sniffing, no caching of
/// pages that show a workspace's data.
fn secure(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

async fn stylesheet() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../../templates/dashboard/assets/dashboard.css"),
    )
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../../templates/dashboard/assets/dashboard.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// What the navigation offers: each section only to a key that may read it.
#[derive(Serialize)]
struct Nav {
    campaigns: bool,
    new_campaign: bool,
    contacts: bool,
    senders: bool,
    automations: bool,
    webhooks: bool,
    analytics: bool,
}

impl Nav {
    fn of(session: &Session) -> Self {
        Self {
            campaigns: session.may(Ability::CampaignsRead),
            new_campaign: session.may(Ability::CampaignsWrite),
            contacts: session.may(Ability::ContactsRead),
            senders: session.may(Ability::SendersRead),
            // Rules are read with `campaigns.read`, as in the API.
            automations: session.may(Ability::CampaignsRead),
            webhooks: session.may(Ability::WebhooksWrite),
            analytics: session.may(Ability::AnalyticsRead),
        }
    }
}

/// A time as a person scans it in a table (UTC; a `datetime` attribute has the instant).
fn short_time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A signed-in person: their key's workspace and abilities, and the session's CSRF token.
pub struct Session {
    caller: Caller,
    csrf: String,
    /// The key's name, shown in the header so a person knows which key they are using.
    key_name: String,
    secret: String,
}

impl Session {
    fn may(&self, ability: Ability) -> bool {
        self.caller.require(ability).is_ok()
    }

    fn require(&self, ability: Ability) -> Result<(), PageError> {
        if self.may(ability) {
            Ok(())
        } else {
            Err(PageError::Forbidden(ability))
        }
    }

    fn workspace(&self) -> crate::domain::ids::WorkspaceId {
        self.caller.workspace
    }
}

/// Pages that serve the signed-out too (the sign-in form): a missing or ended session is `None`.
impl axum::extract::OptionalFromRequestParts<AppState> for Session {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, PageError> {
        match <Self as FromRequestParts<AppState>>::from_request_parts(parts, state).await {
            Ok(session) => Ok(Some(session)),
            Err(PageError::SignedOut) => Ok(None),
            Err(error) => Err(error),
        }
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        let secret = cookie(&parts.headers, SESSION_COOKIE).ok_or(PageError::SignedOut)?;
        let found = sessions::find(&state.db, secret, state.clock.now())
            .await?
            .ok_or(PageError::SignedOut)?;
        Ok(Self {
            caller: Caller::from_key(&found.key),
            csrf: found.csrf_token,
            key_name: found.key.name,
            secret: secret.to_owned(),
        })
    }
}

/// A cookie's value from the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// A form posted by a signed-in person, with the session's CSRF token: a form without it, or
/// with another session's, changes nothing.
pub struct SignedForm<T> {
    session: Session,
    form: T,
}

#[derive(serde::Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

impl<T: DeserializeOwned> FromRequest<AppState> for SignedForm<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, PageError> {
        let (mut parts, body) = request.into_parts();
        let session = Session::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::to_bytes(body, FORM_LIMIT)
            .await
            .map_err(|_| PageError::Invalid("the form is too large".into()))?;
        let token: CsrfField = serde_urlencoded::from_bytes(&bytes)
            .map_err(|_| PageError::Invalid("the form could not be read".into()))?;
        check_csrf(&session, &token.csrf)?;
        let form = serde_urlencoded::from_bytes(&bytes)
            .map_err(|error| PageError::Invalid(format!("the form could not be read: {error}")))?;
        Ok(Self { session, form })
    }
}

/// Forms are small; a CSV upload has its own limit.
const FORM_LIMIT: usize = 1 << 20;

fn check_csrf(session: &Session, presented: &str) -> Result<(), PageError> {
    let matches: bool = session.csrf.as_bytes().ct_eq(presented.as_bytes()).into();
    if matches {
        Ok(())
    } else {
        Err(PageError::CsrfMismatch)
    }
}

/// Why a page cannot be shown or a form was refused, rendered as a page.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// No session (or an ended one): to the sign-in page.
    #[error("signed out")]
    SignedOut,
    #[error("your key lacks the '{}' ability", .0.as_str())]
    Forbidden(Ability),
    #[error(
        "this form has expired or did not come from this dashboard; reload the page and try again"
    )]
    CsrfMismatch,
    #[error("not found in this workspace")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
    #[error("something went wrong on the server (it is logged); please try again")]
    Internal(#[source] anyhow::Error),
}

impl From<ServiceError> for PageError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Validation(errors) => Self::Invalid(errors.to_string()),
            ServiceError::Store(error) => error.into(),
        }
    }
}

impl From<StoreError> for PageError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::NotFound,
            StoreError::Duplicate(what) => Self::Invalid(format!("{what} already exists")),
            StoreError::InUse => Self::Invalid("campaigns or messages still refer to it".into()),
            StoreError::InvalidTransition { current } => {
                Self::Invalid(format!("not allowed while the campaign is {current}"))
            }
            other => Self::Internal(other.into()),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::SignedOut => return Redirect::to("/login").into_response(),
            Self::Forbidden(_) | Self::CsrfMismatch => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "a dashboard page failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        #[derive(Serialize)]
        struct Body {
            message: String,
        }
        let mut response = render(
            "error",
            Frame::signed_out("Not possible"),
            &Body {
                message: self.to_string(),
            },
        );
        *response.status_mut() = status;
        response
    }
}

/// An option of a `<select>` or a radio button.
#[derive(Serialize)]
struct Choice {
    value: String,
    label: String,
    selected: bool,
}

impl Choice {
    fn of(value: impl ToString, label: impl ToString, selected: bool) -> Self {
        Self {
            value: value.to_string(),
            label: label.to_string(),
            selected,
        }
    }
}

/// An id from a page's path: one that cannot exist is not found, as one of another workspace is.
fn parse_id<T: std::str::FromStr>(text: &str) -> Result<T, PageError> {
    text.parse().map_err(|_| PageError::NotFound)
}

/// The note a form leaves for the page it leads to (`?note=`).
#[derive(serde::Deserialize)]
struct NoteQuery {
    note: Option<String>,
}

/// A redirect after a form, with a note for the next page (`?note=`), so that reloading the
/// page does not post the form again.
fn see_other(path: &str, note: Option<&str>) -> Response {
    let location = match note {
        Some(note) => {
            let query: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("note", note)
                .finish();
            format!("{path}?{query}")
        }
        None => path.to_owned(),
    };
    Redirect::to(&location).into_response()
}

/// Links to the pages around a list's page.
#[derive(Serialize)]
struct Pager {
    page: u32,
    pages: i64,
    total: i64,
    previous: Option<String>,
    next: Option<String>,
}

impl Pager {
    /// `base` is the list's URL with its filters, ending in `?` or a parameter.
    fn new(base: &str, page: crate::store::Page, total: i64) -> Self {
        let per_page = i64::from(page.per_page.max(1));
        let pages = ((total + per_page - 1) / per_page).max(1);
        let join = if base.ends_with('?') { "" } else { "&" };
        let link = |to: u32| format!("{base}{join}page={to}");
        Self {
            page: page.page,
            pages,
            total,
            previous: (page.page > 1).then(|| link(page.page - 1)),
            next: (i64::from(page.page) < pages).then(|| link(page.page + 1)),
        }
    }
}

/// JSON for the pages' scripts, never cached.
fn live_json<T: Serialize>(body: &T) -> Response {
    let mut response = axum::Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_view_compiles() {
        if let Err(error) = VIEWS.as_ref() {
            panic!("{error}");
        }
    }

    #[test]
    fn cookies_are_read_by_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; herald_session=abc ; b=2"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "herald"), None);
        headers.insert(header::COOKIE, HeaderValue::from_static("herald_session="));
        assert_eq!(cookie(&headers, SESSION_COOKIE), None);
    }
}
