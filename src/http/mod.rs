//! The HTTP API (axum): one module per resource, each exporting `router()`, merged here.
//!
//! Every route is registered through utoipa-axum's `routes!`, which adds the handler and its
//! OpenAPI operation in one step, so the document at `/v1/openapi.json` cannot miss a route
//! (clippy's `disallowed-methods` refuses a bare `.route(…)`).

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Extension};
use axum::http::{HeaderValue, Uri, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tower_http::trace::TraceLayer;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, Required, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::store::Page;

mod analytics;
mod api_keys;
/// Who is calling, what they may do and how fast.
pub mod auth;
mod automations;
mod callbacks;
mod campaigns;
mod contacts;
/// The error envelope and its status codes.
pub mod error;
/// Extractors that report malformed requests in the envelope.
pub mod extract;
mod groups;
mod health;
/// Replaying responses to repeated `Idempotency-Key`s.
pub mod idempotency;
mod messages;
mod metrics;
/// The dashboard's pages.
mod pages;
mod senders;
mod templates;
mod webhooks;

/// The stats of a campaign as the API answers them (the demo prints the same).
pub use campaigns::CampaignStatsBody;

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    pub db: crate::store::Db,
    pub config: Arc<crate::config::Config>,
    pub clock: Arc<dyn crate::clock::Clock>,
    /// Each API key's request budget.
    /// Wakes this process's lanes for work that should not wait (automatic replies).
    pub wakeups: crate::engine::Wakeups,
    /// Commits provider callbacks that arrive together in one transaction.
    pub ingestor: crate::service::callbacks::Ingestor,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald API",
        version = "1.0.0",
        description = "Bulk campaign scheduling and sending. Errors use one envelope: \
                       `{\"error\": {\"code\", \"message\", \"details\"}}`."
    ),
    components(schemas(error::ErrorEnvelope)),
    security(("bearer" = [])),
)]
struct ApiDoc;

pub fn router(state: AppState) -> Router {
    let authenticated = OpenApiRouter::new()
        .merge(senders::router())
        .merge(contacts::router())
        .merge(groups::router())
        .merge(templates::router())
        .merge(campaigns::router())
        .merge(messages::router())
        .merge(automations::router())
        .merge(webhooks::router())
        .merge(analytics::router())
        .merge(api_keys::router())
        // Inner to outer: the caller is known before an idempotency key is looked up.
        .layer(from_fn_with_state(
            state.clone(),
            idempotency::replay_or_run,
        ))
        .layer(from_fn_with_state(state.clone(), auth::authenticate));
    let (router, mut document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::router())
        .merge(callbacks::router())
        .merge(metrics::router())
        .routes(routes!(openapi_document))
        .merge(authenticated)
        .split_for_parts();
    // After the routers have added their paths, which a derive-time modifier would not see.
    Conventions.modify(&mut document);
    let document = match document.to_json() {
        Ok(json) => Arc::new(json),
        Err(error) => Arc::new(format!("{{\"error\": \"{error}\"}}")),
    };
    router
        .merge(pages::router())
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(Extension(OpenApiJson(document)))
        .layer(DefaultBodyLimit::max(idempotency::MAX_BODY_BYTES))
        // Requests are logged by path only: a query string can carry a secret (the token in
        // the callback URL of a platform that signs nothing).
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &axum::extract::Request| {
                tracing::debug_span!(
                    "request",
                    method = %request.method(),
                    path = %request.uri().path(),
                )
            }),
        )
        .with_state(state)
}

/// A page of a list, as every list answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct List<T> {
    data: Vec<T>,
    page: u32,
    per_page: u32,
    /// How many match in all.
    total: i64,
}

impl<T> List<T> {
    pub fn new(data: Vec<T>, page: Page, total: i64) -> Self {
        Self {
            data,
            page: page.page,
            per_page: page.per_page,
            total,
        }
    }

    /// A page of rows, each shown as its API body.
    pub fn of<R: Into<T>>(rows: Vec<R>, page: Page, total: i64) -> Self {
        Self::new(rows.into_iter().map(Into::into).collect(), page, total)
    }
}

#[derive(Clone)]
struct OpenApiJson(Arc<String>);

/// This document
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)))]
async fn openapi_document(Extension(OpenApiJson(json)): Extension<OpenApiJson>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json.as_str().to_owned(),
    )
        .into_response()
}

/// Unknown paths answer with the same envelope as every other error.
async fn unknown_route(uri: Uri) -> error::ApiError {
    tracing::debug!(%uri, "no such route");
    error::ApiError::NotFound
}

async fn wrong_method() -> error::ApiError {
    error::ApiError::MethodNotAllowed
}

/// What API.md says of every route, written into the document once instead of on each
/// handler: bearer auth, the error responses each kind of route can give, and the
/// `Idempotency-Key` header of POST, PUT, PATCH and DELETE.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A token from `herald api-key create`"))
                    .build(),
            ),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, operation, mutates) in [
                ("get", &mut item.get, false),
                ("post", &mut item.post, true),
                ("put", &mut item.put, true),
                ("patch", &mut item.patch, true),
                ("delete", &mut item.delete, true),
            ] {
                if let Some(operation) = operation {
                    // Handler names repeat across resources (`create`, `list`); ids must not.
                    operation.operation_id = Some(operation_id(method, path));
                    document_errors(operation, mutates);
                }
            }
        }
    }
}

/// `post /v1/contacts/{id}/block` → `post_contacts_id_block`.
fn operation_id(method: &str, path: &str) -> String {
    let words: Vec<&str> = path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty() && *word != "v1")
        .collect();
    format!("{method}_{}", words.join("_"))
}

fn document_errors(operation: &mut Operation, mutates: bool) {
    let public = operation.security.is_some();
    let has_path_id = operation
        .parameters
        .iter()
        .flatten()
        .any(|p| p.parameter_in == ParameterIn::Path);
    let has_query = operation
        .parameters
        .iter()
        .flatten()
        .any(|p| p.parameter_in == ParameterIn::Query);
    let has_body = operation.request_body.is_some();

    let mut errors: Vec<(&str, &str)> = vec![(
        "500",
        "An internal error (logged; the response holds no internals)",
    )];
    if !public {
        errors.push((
            "401",
            "`unauthenticated`: missing, unknown or revoked token",
        ));
        errors.push((
            "403",
            "`insufficient_ability`: the key lacks `details.required_ability`",
        ));
        errors.push((
            "429",
            "`rate_limited`: over the key's requests per minute; see `Retry-After`",
        ));
    }
    if has_path_id {
        errors.push(("404", "`not_found`: no such id in the caller's workspace"));
    }
    if has_body || has_query {
        errors.push((
            "422",
            "`validation_failed`: `details.errors` names each field",
        ));
    }
    if has_body {
        errors.push(("413", "`payload_too_large`: the body is over 64 MiB"));
    }
    if has_body || (mutates && !public) {
        errors.push((
            "400",
            "`invalid_json`: the body is not JSON; `invalid_idempotency_key`",
        ));
    }
    if mutates && !public {
        errors.push((
            "409",
            "`invalid_transition`, `duplicate`, `in_use`, `idempotency_in_progress` or `idempotency_key_reused`",
        ));
        operation.parameters.get_or_insert_with(Vec::new).push(
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "Replays the first response to this key for 24 hours (1–255 of A–Z a–z 0–9 - _)",
                ))
                .schema(Some(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::Type::String)
                        .min_length(Some(1))
                        .max_length(Some(255))
                        .pattern(Some("^[A-Za-z0-9_-]+$"))
                        .build(),
                ))
                .build(),
        );
    }
    for (status, description) in errors {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| {
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        Content::new(Some(Ref::from_schema_name("ErrorEnvelope"))),
                    )
                    .build()
                    .into()
            });
    }
}
