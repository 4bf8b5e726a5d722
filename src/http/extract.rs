//! Extractors that turn every way a request can be malformed into API.md's errors: a body that
//! is not JSON is `400 invalid_json`; JSON of the wrong shape, or a bad query parameter, is
//! `422 validation_failed` naming the field; an id that cannot exist is `404 not_found`.

use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use super::error::ApiError;
use crate::domain::validation::FieldErrors;
use crate::store::Page;

/// A JSON request body. The body is read as JSON whatever its `Content-Type` says, so that
/// `curl -d` works as well as any client library.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses a JSON document, naming the field at fault when it has the wrong shape.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::InvalidJson(
            "the request body is empty; send a JSON object".into(),
        ));
    }
    // Syntax first, so that a body that is not JSON at all is never reported as a bad field.
    let document: serde_json::Value = serde_json::from_slice(bytes).map_err(|error| {
        ApiError::InvalidJson(format!("the request body is not valid JSON: {error}"))
    })?;
    let value = serde_path_to_error::deserialize(document).map_err(|error| {
        let path = error.path().to_string();
        let (field, message) = field_and_message(&path, &without_position(error.inner()));
        ApiError::Validation(FieldErrors::single(field, message))
    })?;
    Ok(value)
}

/// serde_json's messages end with " at line L column C", which means nothing to a client that
/// is told the field instead.
fn without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rsplit_once(" at line ") {
        Some((message, _)) => message.to_owned(),
        None => text,
    }
}

/// serde reports a missing field at its parent's path; the client wants the field itself.
fn field_and_message(path: &str, message: &str) -> (String, String) {
    let parent = if path == "." { "" } else { path };
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        let field = if parent.is_empty() {
            name.to_owned()
        } else {
            format!("{parent}.{name}")
        };
        return (field, "is required".into());
    }
    let field = if parent.is_empty() { "body" } else { parent };
    (field.to_owned(), message.to_owned())
}

/// A JSON array of many small objects as a response body, written into one buffer sized for
/// them. Axum's `Json` starts from 128 bytes and writes through `BytesMut`, piece by piece: for
/// the 4,300 objects (280 KB) of a 90-day activity that was a tenth of the request's CPU.
pub struct JsonRows<T>(pub Vec<T>);

impl<T: serde::Serialize> axum::response::IntoResponse for JsonRows<T> {
    fn into_response(self) -> axum::response::Response {
        // Each object's fields and punctuation; a short guess only costs a reallocation.
        const BYTES_PER_ROW: usize = 80;
        let mut body = Vec::with_capacity(2 + self.0.len() * BYTES_PER_ROW);
        match serde_json::to_writer(&mut body, &self.0) {
            Ok(()) => (
                [(
                    axum::http::header::CONTENT_TYPE,
                    axum::http::HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response(),
            Err(error) => ApiError::Internal(error.into()).into_response(),
        }
    }
}

/// Query-string parameters, decoded with the parameter at fault named.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Query)
            .map_err(|error| {
                let field = error.path().to_string();
                let field = if field == "." { "query".into() } else { field };
                ApiError::validation(&field, error.into_inner().to_string())
            })
    }
}

/// The id in a route such as `/v1/contacts/{id}`. Text that is no id names no row: 404.
pub struct Id<T>(pub T);

impl<S: Send + Sync, T: FromStr> FromRequestParts<S> for Id<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(text) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::NotFound)?;
        text.parse().map(Id).map_err(|_| ApiError::NotFound)
    }
}

/// The two ids in a route such as `/v1/webhooks/{id}/deliveries/{delivery_id}`: 404 unless both
/// are ids.
pub struct Ids<A, B>(pub A, pub B);

impl<S: Send + Sync, A: FromStr, B: FromStr> FromRequestParts<S> for Ids<A, B> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path((first, second)) =
            axum::extract::Path::<(String, String)>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::NotFound)?;
        match (first.parse(), second.parse()) {
            (Ok(first), Ok(second)) => Ok(Ids(first, second)),
            _ => Err(ApiError::NotFound),
        }
    }
}

/// Further than any list is worth paging by number (and `OFFSET` stays a sane size).
const MAX_PAGE: u32 = 1_000_000;

/// `?page=1&per_page=50`, as every list takes it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page number, from 1.
    #[param(minimum = 1, maximum = 1_000_000, default = 1)]
    page: Option<u32>,
    /// Items per page, 1–200.
    #[param(minimum = 1, maximum = 200, default = 50)]
    per_page: Option<u32>,
}

impl PageParams {
    pub fn page(&self) -> Result<Page, ApiError> {
        let mut page = Page::default();
        let mut errors = FieldErrors::new();
        if let Some(number) = self.page {
            if !(1..=MAX_PAGE).contains(&number) {
                errors.add("page", format!("must be 1 to {MAX_PAGE}"));
            }
            page.page = number;
        }
        if let Some(size) = self.per_page {
            if !(1..=Page::MAX_PER_PAGE).contains(&size) {
                errors.add("per_page", format!("must be 1 to {}", Page::MAX_PER_PAGE));
            }
            page.per_page = size;
        }
        errors.into_result().map_err(ApiError::Validation)?;
        Ok(page)
    }
}

/// Tells a field sent as `null` (`Some(None)`) from an absent one (`None`).
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Campaign {
        name: String,
        audience: Audience,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Audience {
        kind: String,
        limits: BTreeMap<String, u32>,
    }

    fn error_of(body: &str) -> ApiError {
        parse_json::<Campaign>(body.as_bytes()).unwrap_err()
    }

    fn field_of(error: ApiError) -> (String, String) {
        match error {
            ApiError::Validation(errors) => {
                let rendered = serde_json::to_value(&errors).unwrap();
                let (field, messages) = rendered.as_object().unwrap().iter().next().unwrap();
                (field.clone(), messages[0].as_str().unwrap().to_owned())
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn malformed_json_is_invalid_json() {
        for body in ["", "  ", "{", "{\"name\": }", "{} trailing", "nope"] {
            assert!(
                matches!(error_of(body), ApiError::InvalidJson(_)),
                "{body:?}"
            );
        }
    }

    #[test]
    fn wrong_shapes_name_the_field() {
        assert_eq!(
            field_of(error_of(r#"{"audience": {"kind": "all", "limits": {}}}"#)),
            ("name".into(), "is required".into())
        );
        assert_eq!(
            field_of(error_of(r#"{"name": "x", "audience": {"kind": "all"}}"#)).0,
            "audience.limits"
        );
        let (field, message) = field_of(error_of(
            r#"{"name": "x", "audience": {"kind": "all", "limits": {"a": -1}}}"#,
        ));
        assert_eq!(field, "audience.limits.a");
        assert!(message.contains("invalid value"), "{message}");
        assert!(!message.contains("line"), "{message}");
        assert_eq!(field_of(error_of("[]")).0, "body");
    }

    #[test]
    fn pages_outside_the_range_are_refused() {
        let params = |page, per_page| PageParams { page, per_page };
        assert_eq!(params(None, None).page().unwrap(), Page::default());
        assert_eq!(params(Some(3), Some(200)).page().unwrap().per_page, 200);
        assert!(params(Some(0), None).page().is_err());
        assert!(params(None, Some(201)).page().is_err());
        assert!(params(None, Some(0)).page().is_err());
    }
}
