//! `GET /sdk/v1/funnelhub.js`: the browser tracker (`web/tracker/`), embedded in the binary
//! at build time, so the edge that receives the hits also serves the script that sends
//! them (docs/tracker.md).
//!
//! Caching: the answer carries an `ETag` (a digest of the file) and honours
//! `If-None-Match` with 304. The plain URL is cached for 5 minutes, so a new release
//! reaches pages soon; a URL naming the digest (`?v=<etag>`) is immutable for a year.

use std::sync::LazyLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// The built tracker (`npm run build` in `web/tracker`; `scripts/test` checks it is what
/// the source builds).
pub const TRACKER: &[u8] = include_bytes!("../../web/tracker/dist/funnelhub.js");

/// The tracker's version tag: the first 16 hex digits of its SHA-256.
pub static TRACKER_ETAG: LazyLock<String> =
    LazyLock::new(|| hex::encode(Sha256::digest(TRACKER))[..16].to_owned());

/// The tracker, or 304 when the browser holds this version.
pub fn tracker(query: Option<&str>, headers: &HeaderMap) -> Response {
    let etag = format!("\"{}\"", *TRACKER_ETAG);
    let versioned = query
        .and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "v"))
        .is_some_and(|(_, v)| v == TRACKER_ETAG.as_str());
    let cache = if versioned {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=300"
    };
    let mut response = if funnelhub_runtime::api::if_none_match(headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/javascript; charset=utf-8"),
            )],
            TRACKER,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    // Any page may load it with a <script> tag; nothing else about it is cross-origin.
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tracker_is_cached_by_version_and_revalidated_by_etag() {
        let plain = tracker(None, &HeaderMap::new());
        assert_eq!(plain.status(), StatusCode::OK);
        assert_eq!(
            plain.headers()[header::CACHE_CONTROL],
            "public, max-age=300"
        );
        let etag = plain.headers()[header::ETAG].clone();
        let versioned = tracker(Some(&format!("v={}", *TRACKER_ETAG)), &HeaderMap::new());
        assert!(versioned.headers()[header::CACHE_CONTROL]
            .to_str()
            .expect("ascii")
            .contains("immutable"));
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(tracker(None, &headers).status(), StatusCode::NOT_MODIFIED);
        assert!(TRACKER.len() > 1000, "the built tracker is embedded");
    }
}
