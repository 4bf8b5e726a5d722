//! The generic `http` provider: POSTs each message to `provider_config.url` with the configured
//! headers and `Idempotency-Key: <message id>`. The body is API.md's
//! `{"id", "to", "body", "media_url"}`, or `provider_config.body_template`: a handlebars template
//! whose values are JSON-escaped, so one provider reaches any gateway's JSON shape.

use std::collections::BTreeMap;
use std::time::Duration;

use handlebars::Handlebars;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use serde_json::{Value, json};

use super::{
    Accepted, BoxFuture, Outbound, Provider, ProviderConfigError, ProviderContext, SendError,
    invalid,
};
use crate::domain::provider::ProviderKind;

const BODY: &str = "body";
/// How much of a refusing answer is kept as the message's error.
const ERROR_EXCERPT: usize = 300;

/// The `http` provider module: its headers carry the gateway's credentials, so every header
/// value is a secret; callbacks in Herald's own format.
pub struct HttpModule;

impl super::ProviderModule for HttpModule {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Http
    }

    fn capabilities(&self) -> super::Capabilities {
        super::Capabilities {
            idempotency_keys: true,
            typing_indicator: false,
            templates: false,
            media: true,
            customer_service_window: false,
        }
    }

    fn secrets(&self) -> &'static [&'static str] {
        &["/headers/*"]
    }

    fn build(
        &self,
        config: &Value,
        context: &ProviderContext,
    ) -> Result<std::sync::Arc<dyn Provider>, ProviderConfigError> {
        Ok(std::sync::Arc::new(HttpProvider::from_config(
            config, context,
        )?))
    }
}

pub struct HttpProvider {
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    body_template: Option<Handlebars<'static>>,
    timeout: Duration,
}

/// `provider_config` of an http sender.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpConfig {
    /// Where messages are POSTed.
    url: Option<String>,
    /// Sent with every request; their values are secrets (credentials, most often).
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// A handlebars template of the request body; API.md's JSON when absent.
    body_template: Option<String>,
    timeout_ms: Option<u64>,
}

impl HttpProvider {
    pub fn from_config(
        config: &Value,
        context: &ProviderContext,
    ) -> Result<Self, ProviderConfigError> {
        let config: HttpConfig = super::typed_config(config)?;
        let url = config
            .url
            .ok_or_else(|| invalid("url", "is required: the address messages are POSTed to"))?;
        let url = context
            .url_guard
            .parse(&url)
            .map_err(|refused| invalid("url", refused.to_string()))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let field = format!("headers.{name}");
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(&field, format!("'{name}' is not a header name")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| invalid(&field, "is not a valid header value"))?;
            headers.insert(header, value);
        }
        let body_template = config
            .body_template
            .as_deref()
            .map(compile_body_template)
            .transpose()?;
        let timeout = config
            .timeout_ms
            .map_or(super::DEFAULT_SEND_TIMEOUT, Duration::from_millis)
            .max(Duration::from_millis(1));
        Ok(Self {
            client: context.http.clone(),
            url,
            headers,
            body_template,
            timeout,
        })
    }

    fn body(&self, message: &Outbound<'_>) -> Result<String, SendError> {
        let fields = json!({
            "id": message.id,
            "to": message.to,
            "body": message.body,
            "media_url": message.media_url,
        });
        match &self.body_template {
            None => Ok(fields.to_string()),
            Some(template) => template.render(BODY, &fields).map_err(|error| {
                SendError::Fail(format!("body_template could not be rendered: {error}"))
            }),
        }
    }
}

/// Values land inside JSON strings the template author wrote, so they are escaped as JSON
/// string content: quotes, backslashes and control characters cannot break out.
fn compile_body_template(template: &str) -> Result<Handlebars<'static>, ProviderConfigError> {
    let mut registry = Handlebars::new();
    registry.set_strict_mode(true);
    registry.register_escape_fn(|value| {
        let quoted = Value::String(value.to_owned()).to_string();
        quoted[1..quoted.len() - 1].to_owned()
    });
    registry
        .register_template_string(BODY, template)
        .map_err(|error| invalid("body_template", error.to_string()))?;
    Ok(registry)
}

/// `Retry-After` in seconds (the HTTP-date form is rare from APIs and treated as absent).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

/// What a request that got no answer means. Most such failures pass (a refused connection, a
/// timeout, a reset); but a request that cannot be built, or a TLS handshake that the server's
/// certificate or protocol refuses, fails the same way on every attempt, so it fails the message
/// at once instead of spending its retries.
pub(super) fn request_failed(error: &reqwest::Error) -> SendError {
    let chain = error_chain(error);
    if error.is_builder() {
        return SendError::Fail(format!("the request cannot be built: {chain}"));
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if is_tls_error(cause) {
            return SendError::Fail(format!("TLS failed: {chain}"));
        }
        source = cause.source();
    }
    SendError::retry(format!("request failed: {chain}"))
}

/// Whether `error` is rustls's, itself or inside (nested) I/O errors, which hide what they wrap
/// from `source()`.
fn is_tls_error(error: &(dyn std::error::Error + 'static)) -> bool {
    if error.is::<rustls::Error>() {
        return true;
    }
    match error
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        Some(inner) => is_tls_error(inner),
        None => false,
    }
}

/// An error and its causes, as one line: reqwest's own message rarely says what went wrong.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

impl Provider for HttpProvider {
    fn send_timeout(&self) -> Duration {
        self.timeout
    }

    fn send<'a>(&'a self, message: &'a Outbound<'a>) -> BoxFuture<'a, Result<Accepted, SendError>> {
        Box::pin(async move {
            let body = self.body(message)?;
            let response = self
                .client
                .post(self.url.clone())
                .headers(self.headers.clone())
                .header(CONTENT_TYPE, "application/json")
                .header("Idempotency-Key", message.id.to_string())
                .timeout(self.timeout)
                .body(body)
                .send()
                .await
                .map_err(|error| request_failed(&error))?;
            let status = response.status();
            if status.is_success() {
                let answer: Option<Value> = response.json().await.ok();
                let provider_message_id = answer
                    .as_ref()
                    .and_then(|answer| answer.get("id"))
                    .and_then(|id| match id {
                        Value::String(id) => Some(id.clone()),
                        Value::Number(id) => Some(id.to_string()),
                        _ => None,
                    });
                return Ok(Accepted {
                    provider_message_id,
                });
            }
            let after = retry_after(response.headers());
            let text = response.text().await.unwrap_or_default();
            let excerpt: String = text.chars().take(ERROR_EXCERPT).collect();
            let reason = format!("HTTP {}: {}", status.as_u16(), excerpt.trim());
            if status == StatusCode::TOO_MANY_REQUESTS {
                return Err(SendError::HoldLane { after, reason });
            }
            if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
                return Err(SendError::Retry { after, reason });
            }
            Err(SendError::Fail(reason))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::MessageId;

    fn provider(config: Value) -> Result<HttpProvider, ProviderConfigError> {
        let (events, _) = tokio::sync::mpsc::channel(1);
        HttpProvider::from_config(
            &config,
            &ProviderContext::new(reqwest::Client::new(), events, None)
                .with_url_guard(crate::url_guard::UrlGuard::ALLOW_PRIVATE),
        )
    }

    fn message(id: MessageId) -> Outbound<'static> {
        Outbound {
            id,
            to: "+15551234567",
            body: "Hi",
            media_url: None,
            template: None,
        }
    }

    #[tokio::test]
    async fn a_tls_failure_fails_at_once_and_a_refused_connection_is_retried() {
        // A plain-HTTP server behind an https URL: every handshake fails the same way.
        let plain = wiremock::MockServer::start().await;
        let url = plain.uri().replace("http://", "https://");
        let tls = provider(json!({"url": format!("{url}/send"), "timeout_ms": 2000})).unwrap();
        let id = MessageId::generate();
        let message = message(id);
        match tls.send(&message).await {
            Err(SendError::Fail(reason)) => assert!(reason.contains("TLS"), "{reason}"),
            other => panic!("a TLS failure is not retried: {other:?}"),
        }
        // Nothing listens on port 9 of loopback: the next attempt may find a server.
        let refused = provider(json!({"url": "http://127.0.0.1:9/send"})).unwrap();
        assert!(matches!(
            refused.send(&message).await,
            Err(SendError::Retry { .. })
        ));
    }

    #[test]
    fn the_default_body_is_the_api_wire_format() {
        let http = provider(json!({"url": "http://127.0.0.1:9/send"})).unwrap();
        let id = MessageId::generate();
        let message = Outbound {
            id,
            to: "+15551234567",
            body: "Hi Jane",
            media_url: None,
            template: None,
        };
        let body: Value = serde_json::from_str(&http.body(&message).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"id": id.to_string(), "to": "+15551234567", "body": "Hi Jane", "media_url": null})
        );
    }

    #[test]
    fn body_templates_escape_values_as_json() {
        let http = provider(json!({
            "url": "http://127.0.0.1:9/send",
            "body_template": "{\"number\": \"{{to}}\", \"message\": \"{{body}}\"}"
        }))
        .unwrap();
        let tricky = "He said \"hi\" \\ then\nleft\", \"admin\": true, \"x\": \"";
        let message = Outbound {
            id: MessageId::generate(),
            to: "+15551234567",
            body: tricky,
            media_url: None,
            template: None,
        };
        let body: Value = serde_json::from_str(&http.body(&message).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"number": "+15551234567", "message": tricky}),
            "no key was injected"
        );
    }

    #[test]
    fn bad_settings_are_refused_with_their_field() {
        for (config, field) in [
            (json!({}), "url"),
            (json!({"url": "ftp://x"}), "url"),
            (json!({"url": "http://x", "headers": {"X": 1}}), "headers"),
            (
                json!({"url": "http://x", "headers": {"bad header": "v"}}),
                "headers",
            ),
            (
                json!({"url": "http://x", "body_template": "{{#if}}"}),
                "body_template",
            ),
            (
                json!({"url": "http://x", "timeout_ms": "soon"}),
                "timeout_ms",
            ),
        ] {
            match provider(config.clone()) {
                Err(ProviderConfigError::Invalid { field: got, .. }) => {
                    assert!(got.starts_with(field), "{config}: {got}")
                }
                Err(other) => panic!("{config}: {other:?}"),
                Ok(_) => panic!("{config} was accepted"),
            }
        }
    }

    #[test]
    fn retry_after_reads_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2026 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), None);
    }
}
