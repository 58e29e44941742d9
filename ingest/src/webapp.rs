//! `/app/`: the web app (`web/app/`: the setup wizard, its live status and chat, the ops
//! desk), embedded in the binary at build time, so running the edge needs no Node and
//! no other server. The app is plain ES modules with no build step: the embedded files
//! are `web/app/`'s files byte for byte (a unit test walks the folder and compares).
//!
//! Guarantees: every asset is served with a Content-Security-Policy that allows only this
//! origin (scripts, styles, fonts, connections; images also from `blob:` for screenshots
//! fetched with the key), `nosniff`, no referrer, no framing, and `no-cache` with an `ETag`
//! (a new release is picked up at the next load, an unchanged file answers 304).
//!
//! `GET /api/v1/whoami` tells the app what the key it was given is: an operators' key
//! (`[edge.setup] admin_keys`: any tenant, named per request) or a tenant's API key with
//! its scope. 401 for any other key: the app goes back to its key form.

use std::sync::LazyLock;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;

use crate::EdgeState;
use funnelhub_runtime::api::ApiError;

/// One embedded file of the app.
#[derive(Debug)]
pub struct Asset {
    /// Its path under `web/app/` (and under `/app/`).
    pub path: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$(Asset { path: $path, bytes: include_bytes!(concat!("../../web/app/", $path)) }),*]
    };
}

/// Every file the app is made of.
pub const ASSETS: &[Asset] = assets![
    "index.html",
    "app.css",
    "favicon.svg",
    "src/api.js",
    "src/chat.js",
    "src/desk.js",
    "src/dom.js",
    "src/i18n.js",
    "src/main.js",
    "src/status.js",
    "src/wizard.js",
];

/// Only this origin: no CDN, no font service, no analytics.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' blob:; font-src 'self'; connect-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Each asset's `ETag` (the first 16 hex digits of its SHA-256), in [`ASSETS`]' order.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| format!("\"{}\"", &hex::encode(Sha256::digest(a.bytes))[..16]))
        .collect()
});

/// The app's routes and `whoami`.
pub fn routes() -> Router<Arc<EdgeState>> {
    Router::new()
        .route("/app", get(|| async { Redirect::permanent("/app/") }))
        .route(
            "/app/",
            get(|headers: HeaderMap| async move { serve("index.html", &headers) }),
        )
        .route(
            "/app/{*path}",
            get(|Path(path): Path<String>, headers: HeaderMap| async move {
                serve(&path, &headers)
            }),
        )
        .route("/api/v1/whoami", get(whoami))
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// The asset at `path`, 304 when the browser holds it, 404 when there is none.
fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|a| a.path == path) else {
        return ApiError::NotFound(format!(
            "/app/{}",
            path.chars().take(128).collect::<String>()
        ))
        .into_response();
    };
    let etag = &ETAGS[index];
    let mut response = if funnelhub_runtime::api::if_none_match(headers, etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, content_type(path))],
            ASSETS[index].bytes,
        )
            .into_response()
    };
    let out = response.headers_mut();
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        out.insert(header::ETAG, value);
    }
    out.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    out.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    out.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// `{kind: operator}` or `{kind: tenant, tenant_id, scope}`; 401 for an unknown key.
async fn whoami(State(s): State<Arc<EdgeState>>, headers: HeaderMap) -> Response {
    let result = (|| {
        let key = funnelhub_runtime::api::bearer_key(&headers).ok_or(ApiError::Unauthorized(
            "api key (Authorization: Bearer <key>)",
        ))?;
        if s.setup.is_operator_key(key) {
            return Ok(Json(json!({"kind": "operator"})).into_response());
        }
        let (tenant, scope) = s
            .tenants
            .by_api_key(key)
            .ok_or(ApiError::Unauthorized("api key"))?;
        Ok(Json(json!({
            "kind": "tenant",
            "tenant_id": tenant.id,
            "scope": scope.as_str(),
        }))
        .into_response())
    })();
    funnelhub_runtime::api::respond("whoami", result)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file under `web/app/` that the app is made of (tests, npm's and git's files
    /// aside).
    fn files_of(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("web/app readable") {
            let path = entry.expect("entry").path();
            let relative = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .replace('\\', "/");
            if path.is_dir() {
                if !matches!(relative.as_str(), "node_modules" | "test") {
                    files_of(&path, root, out);
                }
            } else if !matches!(
                relative.as_str(),
                "package.json" | "package-lock.json" | "README.md" | ".gitignore"
            ) {
                out.push(relative);
            }
        }
    }

    #[test]
    fn the_embedded_app_is_web_app_byte_for_byte() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/app");
        let mut files = Vec::new();
        files_of(&root, &root, &mut files);
        files.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
        embedded.sort();
        assert_eq!(
            files, embedded,
            "a file of web/app is not embedded, or gone"
        );
        for asset in ASSETS {
            let on_disk = std::fs::read(root.join(asset.path)).expect("read");
            assert_eq!(on_disk, asset.bytes, "{} differs", asset.path);
        }
    }

    #[test]
    fn assets_carry_the_policy_and_answer_304_when_unchanged() {
        let first = serve("index.html", &HeaderMap::new());
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(
            first.headers()[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
        let etag = first.headers()[header::ETAG].clone();
        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(
            serve("index.html", &again).status(),
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(
            serve("../Cargo.toml", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
    }
}
