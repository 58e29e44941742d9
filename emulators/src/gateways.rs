//! An emulator of the payment gateways' credential endpoints, as setup's
//! `validate_gateway_credentials` calls them (docs/setup.md has the sources):
//!
//! - Hotmart: `POST /security/oauth/token?grant_type=client_credentials&client_id=&client_secret=`
//!   with `Authorization: Basic <the credential's Basic token>` → `{access_token, token_type,
//!   expires_in, …}`; bad credentials → 401 `{"error":"invalid_client", …}`.
//! - Kiwify: `POST /v1/oauth/token` (form `client_id`, `client_secret`) → `{access_token,
//!   token_type:"Bearer", expires_in}`; then `GET /v1/account-details` with the bearer token
//!   and `x-kiwify-account-id` → the account; bad secret → 401, another account → 403.
//! - Stripe: `GET /v1/account` with `Authorization: Bearer sk_…` → the account; a bad key →
//!   401 `{"error":{"type":"invalid_request_error","message":"Invalid API Key provided: sk_test_****1234"}}`.
//!
//! One server serves all three (each gateway's base URL is configured apart in production).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use funnelhub_runtime::RunningServer;
use serde::Deserialize;
use serde_json::json;

/// A Hotmart developer credential: client id, secret and its Basic token.
#[derive(Debug, Clone)]
pub struct HotmartCredential {
    pub client_id: String,
    pub client_secret: String,
    pub basic: String,
}

/// A Kiwify API key: client id and secret, for one account.
#[derive(Debug, Clone)]
pub struct KiwifyCredential {
    pub client_id: String,
    pub client_secret: String,
    pub account_id: String,
}

/// The credentials the emulated gateways accept.
#[derive(Debug, Clone, Default)]
pub struct GatewayAccounts {
    pub hotmart: Vec<HotmartCredential>,
    pub kiwify: Vec<KiwifyCredential>,
    /// Stripe secret keys (`sk_test_…`) and their account ids.
    pub stripe: Vec<(String, String)>,
}

/// The running emulator.
#[derive(Debug)]
pub struct GatewayEmulator {
    server: RunningServer,
}

impl GatewayEmulator {
    /// Serve on `listen` (port 0: any free port).
    pub async fn start(
        listen: SocketAddr,
        accounts: GatewayAccounts,
    ) -> std::io::Result<GatewayEmulator> {
        let state = Arc::new(Gateways {
            accounts,
            tokens: std::sync::Mutex::default(),
        });
        let router = Router::new()
            .route("/security/oauth/token", post(hotmart_token))
            .route("/v1/oauth/token", post(kiwify_token))
            .route("/v1/account-details", get(kiwify_account))
            .route("/v1/account", get(stripe_account))
            .with_state(state);
        Ok(GatewayEmulator {
            server: funnelhub_runtime::serve(listen, router).await?,
        })
    }

    /// Base URL (`http://127.0.0.1:port`) of every gateway.
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub async fn stop(self) -> std::io::Result<()> {
        self.server.stop().await
    }
}

#[derive(Debug)]
struct Gateways {
    accounts: GatewayAccounts,
    /// Kiwify bearer tokens issued → the client id they were issued to.
    tokens: std::sync::Mutex<HashMap<String, String>>,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

#[derive(Debug, Deserialize)]
struct HotmartQuery {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

async fn hotmart_token(
    State(state): State<Arc<Gateways>>,
    Query(query): Query<HotmartQuery>,
    headers: HeaderMap,
) -> Response {
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "));
    if query.grant_type.as_deref() != Some("client_credentials") {
        let body = json!({"error": "unsupported_grant_type", "error_description": "Unsupported grant type"});
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    let known = state.accounts.hotmart.iter().any(|c| {
        Some(c.client_id.as_str()) == query.client_id.as_deref()
            && Some(c.client_secret.as_str()) == query.client_secret.as_deref()
            && Some(c.basic.as_str()) == basic
    });
    if !known {
        let body =
            json!({"error": "invalid_client", "error_description": "Bad client credentials"});
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    Json(json!({
        "access_token": format!("hotmart-access-{}", rand::random::<u64>()),
        "token_type": "bearer",
        "expires_in": 172_799,
        "scope": "read write",
        "jti": format!("{:x}", rand::random::<u64>()),
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
struct KiwifyForm {
    client_id: Option<String>,
    client_secret: Option<String>,
}

async fn kiwify_token(
    State(state): State<Arc<Gateways>>,
    Form(form): Form<KiwifyForm>,
) -> Response {
    let Some(credential) = state.accounts.kiwify.iter().find(|c| {
        Some(c.client_secret.as_str()) == form.client_secret.as_deref()
            && form.client_id.as_deref().is_none_or(|id| id == c.client_id)
    }) else {
        let body = json!({"error": "invalid_client", "message": "client_secret inválido"});
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    };
    let token = format!("kiwify-access-{}", rand::random::<u64>());
    state
        .tokens
        .lock()
        .expect("tokens lock")
        .insert(token.clone(), credential.client_id.clone());
    Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": 345_600, "scope": "all"}))
        .into_response()
}

async fn kiwify_account(State(state): State<Arc<Gateways>>, headers: HeaderMap) -> Response {
    let client =
        bearer(&headers).and_then(|t| state.tokens.lock().expect("tokens lock").get(t).cloned());
    let Some(client) = client else {
        let body = json!({"message": "Unauthorized"});
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    };
    let account = headers
        .get("x-kiwify-account-id")
        .and_then(|v| v.to_str().ok());
    match state
        .accounts
        .kiwify
        .iter()
        .find(|c| c.client_id == client && Some(c.account_id.as_str()) == account)
    {
        Some(c) => {
            Json(json!({"id": c.account_id, "company_name": "Conta emulada LTDA"})).into_response()
        }
        None => {
            let body = json!({"message": "Forbidden: the API key does not belong to this account"});
            (StatusCode::FORBIDDEN, Json(body)).into_response()
        }
    }
}

async fn stripe_account(State(state): State<Arc<Gateways>>, headers: HeaderMap) -> Response {
    let key = bearer(&headers).unwrap_or_default();
    match state.accounts.stripe.iter().find(|(k, _)| k == key) {
        Some((_, account)) => Json(json!({
            "id": account, "object": "account", "charges_enabled": true, "details_submitted": true
        }))
        .into_response(),
        None => {
            // As Stripe words it: the key's last four characters only.
            let tail = &key[key.len().saturating_sub(4)..];
            let body = json!({"error": {
                "type": "invalid_request_error",
                "message": format!("Invalid API Key provided: sk_****{tail}"),
            }});
            (StatusCode::UNAUTHORIZED, Json(body)).into_response()
        }
    }
}
