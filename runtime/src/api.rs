//! The JSON answer of every public API (the edge's routes, the read API, setup): one
//! error type, [`ApiError`], whose answer names what was wrong
//! (`{"error": "invalid_field", "field": "session_id", "message": "..."}`), JSON bodies
//! parsed naming the bad field ([`parse_json`]), and the per-route request counters
//! ([`respond`]). Domain crates return their own errors; their HTTP modules map them here.
//! Details of internal failures go to the log, never into an answer.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use metrics::counter;
use serde::de::DeserializeOwned;
use serde_json::json;

/// Why a request was refused or not stored.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A field is missing or invalid (400).
    #[error("{field}: {message}")]
    InvalidField { field: String, message: String },
    /// The body is not JSON (400).
    #[error("body is not valid JSON: {0}")]
    MalformedJson(String),
    /// The body is neither JSON nor text (415).
    #[error("unsupported content type {0}: send application/json or text/plain")]
    UnsupportedMediaType(String),
    /// Authenticity check failed (401). The reason names the check, never the secret.
    #[error("request authenticity check failed: {0}")]
    Unauthorized(&'static str),
    /// Authenticated, but the key's scope does not allow this (403). The reason names the
    /// scope needed.
    #[error("{0}")]
    Forbidden(&'static str),
    /// No such endpoint (404).
    #[error("no such endpoint: {0}")]
    NotFound(String),
    /// No such tenant (404).
    #[error("unknown tenant")]
    UnknownTenant,
    /// No such gateway, or not configured for this tenant (404).
    #[error("unknown or unconfigured gateway {0}")]
    UnknownGateway(String),
    /// The request conflicts with the resource's state (409), e.g. autoconfigure before
    /// every setup step validated.
    #[error("{0}")]
    Conflict(String),
    /// The caller holds as many of a bounded resource as it may (429 + Retry-After): an
    /// event stream, a replay in progress. The message names the bound.
    #[error("{what}")]
    TooManyRequests { what: String, retry_after_secs: u32 },
    /// Body over the limit (413).
    #[error("body larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The broker did not acknowledge in time, or ClickHouse is away (503 + Retry-After):
    /// retry later. `reason` goes to the log only: the answer says what the caller can do.
    #[error("temporarily unavailable, retry later")]
    Unavailable {
        reason: String,
        retry_after_secs: u32,
    },
    /// A bug or an unexpected failure (500; details only in the log).
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// A missing or invalid field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidField {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A required field that is absent or empty.
    pub fn missing(field: &str) -> Self {
        ApiError::field(field, "required")
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidField { .. } | ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::UnknownTenant | ApiError::UnknownGateway(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Short machine-readable reason (response `error` and metrics label).
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::UnknownTenant => "unknown_tenant",
            ApiError::UnknownGateway(_) => "unknown_gateway",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = json!({ "error": self.reason(), "message": self.to_string() });
        match &self {
            ApiError::InvalidField { field, .. } => body["field"] = json!(field),
            ApiError::Internal(detail) => tracing::error!(%detail, "edge request failed"),
            ApiError::Unavailable { reason, .. } => tracing::warn!(%reason, "unavailable"),
            ApiError::Unauthorized(check) => {
                tracing::warn!(check, "webhook authenticity check failed")
            }
            _ => {}
        }
        let mut response = (status, axum::Json(body)).into_response();
        if let ApiError::Unavailable {
            retry_after_secs, ..
        }
        | ApiError::TooManyRequests {
            retry_after_secs, ..
        } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}

/// The key of `Authorization: Bearer <key>`, trimmed; `None` without one.
pub fn bearer_key(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The request's `If-None-Match` names `etag` (quoted, as sent in `ETag`).
pub fn if_none_match(headers: &axum::http::HeaderMap, etag: &str) -> bool {
    headers
        .get(axum::http::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag))
}

/// Parse JSON into `T`. A syntax error is `malformed_json`; a value of the wrong type
/// names its path (`data.purchase.price.value`).
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data if path != "." => {
                ApiError::field(path, inner.to_string())
            }
            _ => ApiError::MalformedJson(inner.to_string()),
        }
    })
}

/// `funnelhub_edge_requests_total{route,status}`: requests answered.
pub const REQUESTS: &str = "funnelhub_edge_requests_total";
/// `funnelhub_edge_rejected_total{route,reason}`: requests refused or not stored.
pub const REJECTED: &str = "funnelhub_edge_rejected_total";

/// Count a request answered on `route` with `status`.
pub fn count_request(route: &'static str, status: u16) {
    counter!(REQUESTS, "route" => route, "status" => status.to_string()).increment(1);
}

/// Count a request refused (or not stored) on `route` for `reason`.
pub fn count_rejected(route: &'static str, reason: &'static str) {
    counter!(REJECTED, "route" => route, "reason" => reason).increment(1);
}

/// The answer of `route`'s handler, counted by route and status (and by reason when
/// refused).
pub fn respond(route: &'static str, result: Result<Response, ApiError>) -> Response {
    let response = match result {
        Ok(response) => response,
        Err(e) => {
            count_rejected(route, e.reason());
            e.into_response()
        }
    };
    count_request(route, response.status().as_u16());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_name_the_field() {
        #[derive(Debug, serde::Deserialize)]
        struct Inner {
            #[allow(dead_code)]
            value: f64,
        }
        #[derive(Debug, serde::Deserialize)]
        struct Outer {
            #[allow(dead_code)]
            price: Inner,
        }
        let err = parse_json::<Outer>(br#"{"price":{"value":"x"}}"#).expect_err("bad type");
        assert!(
            matches!(&err, ApiError::InvalidField { field, .. } if field == "price.value"),
            "{err:?}"
        );
        let err = parse_json::<Outer>(b"{not json").expect_err("syntax");
        assert!(matches!(err, ApiError::MalformedJson(_)), "{err:?}");
    }

    #[tokio::test]
    async fn an_unavailable_answer_carries_no_internal_detail() {
        let error = ApiError::Unavailable {
            reason: "kafka: broker 10.0.0.3:9092 timed out".into(),
            retry_after_secs: 5,
        };
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("retry later"), "{text}");
        assert!(
            !text.contains("10.0.0.3") && !text.contains("kafka"),
            "{text}"
        );
    }
}
