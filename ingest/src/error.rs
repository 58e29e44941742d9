//! The edge's one error type. Every refusal is JSON naming what was wrong:
//! `{"error": "invalid_field", "field": "session_id", "message": "..."}`.
//! Nothing is produced to Kafka for a refused request.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
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
        } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
