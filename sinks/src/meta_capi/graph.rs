//! The Graph API client: one `POST /{version}/{pixel_id}/events` and what its answer
//! means for the events in it.
//!
//! Classification follows Meta's error-handling guide (`shared/reference/integrations.md`):
//! timeouts, 5xx, `is_transient` and the throttling/temporary codes are retried; token,
//! permission and capability codes fail the whole request for good; code 100 (invalid
//! parameter) names the bad event in `error_user_msg` (`$['data'][3]...`) when Meta can.
//! The access token travels in the query string as Meta documents; it never appears in an
//! error or a log (errors are stripped of their URL).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Retry with backoff: temporary (1, 2), throttling (4, 17, 32, 341, 613, 80004), temporary
/// block (368).
const RETRYABLE_CODES: &[i64] = &[1, 2, 4, 17, 32, 341, 368, 613, 80004];

/// Meta accepted the request.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub http_status: u16,
    pub events_received: Option<i32>,
    pub fbtrace_id: Option<String>,
}

/// What a failed request means for its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Try the same events again later.
    Retryable,
    /// The request can never succeed for this pixel (token, permission, pixel).
    Refused,
    /// Event `index` is invalid; the others may be sent without it.
    InvalidEvent(usize),
    /// The request is invalid and Meta did not say which event.
    InvalidRequest,
}

/// Meta refused the request, or it did not get an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub kind: FailureKind,
    pub http_status: Option<u16>,
    pub code: Option<i32>,
    pub subcode: Option<i32>,
    pub message: String,
    pub fbtrace_id: Option<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(status) = self.http_status {
            write!(f, " (HTTP {status}")?;
            if let Some(code) = self.code {
                write!(f, ", code {code}")?;
            }
            if let Some(subcode) = self.subcode {
                write!(f, ", subcode {subcode}")?;
            }
            if let Some(trace) = &self.fbtrace_id {
                write!(f, ", fbtrace_id {trace}")?;
            }
            write!(f, ")")?;
        }
        Ok(())
    }
}

/// A Graph API client for one base URL and version.
#[derive(Debug, Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    base: String,
    version: String,
}

#[derive(Debug, Deserialize)]
struct SuccessBody {
    events_received: Option<i32>,
    fbtrace_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: GraphError,
}

#[derive(Debug, Deserialize)]
struct GraphError {
    #[serde(default)]
    message: String,
    code: Option<i32>,
    error_subcode: Option<i32>,
    #[serde(default)]
    is_transient: bool,
    error_user_msg: Option<String>,
    fbtrace_id: Option<String>,
}

impl GraphClient {
    /// A client of `base` (`https://graph.facebook.com`) and `version` (`v25.0`).
    pub fn new(base: &str, version: &str, timeout: Duration) -> Result<GraphClient, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("funnelhub/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(GraphClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
            version: version.to_owned(),
        })
    }

    /// Post `body` (`{"data": [...]}`, JSON) to the pixel's events edge.
    pub async fn send_events(
        &self,
        pixel_id: &str,
        token: &SecretString,
        body: Vec<u8>,
    ) -> Result<Accepted, Failure> {
        let url = format!("{}/{}/{}/events", self.base, self.version, pixel_id);
        let response = self
            .http
            .post(url)
            .query(&[("access_token", token.expose_secret())])
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(e) => {
                return Err(Failure {
                    kind: FailureKind::Retryable,
                    http_status: None,
                    code: None,
                    subcode: None,
                    message: if e.is_timeout() {
                        "no answer within the timeout".into()
                    } else {
                        format!("transport: {}", e.without_url())
                    },
                    fbtrace_id: None,
                })
            }
        };
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| Failure {
            kind: FailureKind::Retryable,
            http_status: Some(status),
            code: None,
            subcode: None,
            message: format!("reading the answer: {}", e.without_url()),
            fbtrace_id: None,
        })?;
        classify(status, &bytes)
    }
}

/// What an answer means.
pub fn classify(status: u16, body: &[u8]) -> Result<Accepted, Failure> {
    if (200..300).contains(&status) {
        let parsed: Option<SuccessBody> = serde_json::from_slice(body).ok();
        return Ok(Accepted {
            http_status: status,
            events_received: parsed.as_ref().and_then(|b| b.events_received),
            fbtrace_id: parsed.and_then(|b| b.fbtrace_id),
        });
    }
    let Ok(ErrorBody { error }) = serde_json::from_slice::<ErrorBody>(body) else {
        return Err(Failure {
            kind: if status >= 500 || status == 429 {
                FailureKind::Retryable
            } else {
                FailureKind::InvalidRequest
            },
            http_status: Some(status),
            code: None,
            subcode: None,
            message: format!(
                "unreadable error answer: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ),
            fbtrace_id: None,
        });
    };
    let code = error.code.unwrap_or(0);
    let kind = if status >= 500
        || status == 429
        || error.is_transient
        || RETRYABLE_CODES.contains(&i64::from(code))
    {
        FailureKind::Retryable
    } else if code == 100 && error.error_subcode != Some(33) {
        match error.error_user_msg.as_deref().and_then(event_index) {
            Some(index) => FailureKind::InvalidEvent(index),
            None => FailureKind::InvalidRequest,
        }
    } else if matches!(code, 3 | 10 | 100 | 102 | 190 | 200..=299) {
        FailureKind::Refused
    } else {
        FailureKind::InvalidRequest
    };
    let message = match error.error_user_msg {
        Some(user) if !user.is_empty() => format!("{}: {user}", error.message),
        _ => error.message,
    };
    Err(Failure {
        kind,
        http_status: Some(status),
        code: error.code,
        subcode: error.error_subcode,
        message,
        fbtrace_id: error.fbtrace_id,
    })
}

/// The `N` of `$['data'][N]` in Meta's parameter error message.
fn event_index(message: &str) -> Option<usize> {
    const MARK: &str = "['data'][";
    let rest = &message[message.find(MARK)? + MARK.len()..];
    rest[..rest.find(']')?].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(status: u16, body: &str) -> FailureKind {
        classify(status, body.as_bytes())
            .expect_err("a failure")
            .kind
    }

    #[test]
    fn metas_answers_are_classified() {
        let ok = classify(
            200,
            br#"{"events_received":3,"messages":[],"fbtrace_id":"AbC"}"#,
        )
        .expect("accepted");
        assert_eq!(ok.events_received, Some(3));
        assert_eq!(ok.fbtrace_id.as_deref(), Some("AbC"));

        // Meta's real answer to a missing field names the event.
        let invalid = r#"{"error":{"message":"Invalid parameter","type":"OAuthException","code":100,"error_subcode":2804019,"is_transient":false,"error_user_title":"Server-side API parameter error","error_user_msg":"The parameter $['data'][7]['event_time'] is required.","fbtrace_id":"AaHY"}}"#;
        assert_eq!(kind(400, invalid), FailureKind::InvalidEvent(7));
        let failure = classify(400, invalid.as_bytes()).expect_err("failure");
        assert_eq!(
            (failure.code, failure.subcode),
            (Some(100), Some(2_804_019))
        );
        assert!(failure.to_string().contains("$['data'][7]"), "{failure}");
        assert!(failure.to_string().contains("fbtrace_id AaHY"), "{failure}");

        assert_eq!(
            kind(
                400,
                r#"{"error":{"message":"Invalid parameter","code":100}}"#
            ),
            FailureKind::InvalidRequest
        );
        for refused in [
            r#"{"error":{"message":"Invalid OAuth access token","code":190}}"#,
            r#"{"error":{"message":"Unsupported post request","code":100,"error_subcode":33}}"#,
            r#"{"error":{"message":"Permissions error","code":200}}"#,
            r#"{"error":{"message":"Application does not have permission","code":10}}"#,
        ] {
            assert_eq!(kind(400, refused), FailureKind::Refused, "{refused}");
        }
        for retryable in [
            (
                500,
                r#"{"error":{"message":"An unknown error has occurred.","code":1}}"#,
            ),
            (503, "<html>bad gateway</html>"),
            (
                400,
                r#"{"error":{"message":"User request limit reached","code":17}}"#,
            ),
            (400, r#"{"error":{"message":"rate","code":80004}}"#),
            (
                400,
                r#"{"error":{"message":"x","code":999,"is_transient":true}}"#,
            ),
        ] {
            assert_eq!(
                kind(retryable.0, retryable.1),
                FailureKind::Retryable,
                "{retryable:?}"
            );
        }
        assert_eq!(kind(400, "not json"), FailureKind::InvalidRequest);
    }

    #[test]
    fn the_event_index_is_read_from_the_message() {
        assert_eq!(
            event_index("The parameter $['data'][12]['user_data'] is bad"),
            Some(12)
        );
        assert_eq!(event_index("The parameter data is required"), None);
    }
}
