//! Errors with Confluent Schema Registry's HTTP statuses, error codes and body shape
//! (`{"error_code": 40401, "message": "..."}`), which clients branch on.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// Content type of every registry response.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// A request the registry refuses or cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {0} not found.")]
    VersionNotFound(u32),
    #[error("Schema not found")]
    SchemaNotFound,
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectLevelNotConfigured(String),
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{0}\", details: {1:?}")]
    Incompatible(String, Vec<String>),
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    #[error("The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"")]
    InvalidVersion(String),
    #[error("Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive")]
    InvalidCompatibilityLevel,
    #[error("Unrecognized request body: {0}")]
    BadRequest(String),
    #[error("Error in the backend data store - {0}")]
    Store(String),
    #[error("Operation timed out")]
    Timeout,
}

impl RegistryError {
    /// HTTP status and Confluent error code.
    pub fn codes(&self) -> (StatusCode, u32) {
        match self {
            RegistryError::SubjectNotFound(_) => (StatusCode::NOT_FOUND, 40401),
            RegistryError::VersionNotFound(_) => (StatusCode::NOT_FOUND, 40402),
            RegistryError::SchemaNotFound => (StatusCode::NOT_FOUND, 40403),
            RegistryError::SubjectLevelNotConfigured(_) => (StatusCode::NOT_FOUND, 40408),
            RegistryError::Incompatible(..) => (StatusCode::CONFLICT, 409),
            RegistryError::InvalidSchema(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42201),
            RegistryError::InvalidVersion(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42202),
            RegistryError::InvalidCompatibilityLevel => (StatusCode::UNPROCESSABLE_ENTITY, 42203),
            RegistryError::BadRequest(_) => (StatusCode::BAD_REQUEST, 400),
            RegistryError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, 50001),
            RegistryError::Timeout => (StatusCode::INTERNAL_SERVER_ERROR, 50002),
        }
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let (status, code) = self.codes();
        if status.is_server_error() {
            tracing::error!(error = %self, "schema registry request failed");
        }
        let body = serde_json::json!({ "error_code": code, "message": self.to_string() });
        (
            status,
            [(header::CONTENT_TYPE, CONTENT_TYPE)],
            body.to_string(),
        )
            .into_response()
    }
}
