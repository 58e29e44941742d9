//! The Confluent Schema Registry REST API subset real clients use: register and look up
//! subject versions, schemas by id, latest version, compatibility checks and `/config`.
//!
//! Bodies are read as bytes and parsed as JSON whatever the content type, because clients
//! send `application/vnd.schemaregistry.v1+json`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State as Axum};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::compatibility::CompatibilityLevel;
use crate::error::{RegistryError, CONTENT_TYPE};
use crate::log::SchemaLog;
use crate::state::{parse_schema, ConfigValue, LogKey, Registration, StoredSchema, VersionSpec};

/// What the handlers share.
#[derive(Debug)]
pub struct Registry {
    pub log: SchemaLog,
    /// Level used until `PUT /config` sets one.
    pub default_level: CompatibilityLevel,
}

type Shared = Axum<Arc<Registry>>;
type Params = Query<HashMap<String, String>>;
type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// The registry's routes.
pub fn app(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/", get(|| async { reply(json!({})) }))
        .route("/schemas/types", get(|| async { reply(json!(["AVRO"])) }))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/versions", get(usages_of_id))
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(lookup))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(version))
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(raw_version),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(check_all),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(check_one),
        )
        .route("/config", get(global_config).put(set_global_config))
        .route(
            "/config/{subject}",
            get(subject_config)
                .put(set_subject_config)
                .delete(delete_subject_config),
        )
        .route(
            "/mode",
            get(|| async { reply(json!({"mode": "READWRITE"})) }),
        )
        .with_state(registry)
}

fn reply(body: impl Serialize) -> Response {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        serde_json::to_string(&body).expect("responses serialize"),
    )
        .into_response()
}

fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| RegistryError::BadRequest(e.to_string()))
}

fn parse_id(id: &str) -> Result<u32> {
    id.parse().map_err(|_| RegistryError::SchemaNotFound)
}

/// Body of register, lookup and compatibility requests.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaRequest {
    schema: String,
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Value>,
}

impl SchemaRequest {
    fn parse(body: &Bytes) -> Result<Self> {
        let request: SchemaRequest = parse_body(body)?;
        if request.schema_type.as_deref().is_some_and(|t| t != "AVRO") {
            return Err(RegistryError::InvalidSchema(
                "only AVRO schemas are supported by this registry".into(),
            ));
        }
        if !request.references.is_empty() {
            return Err(RegistryError::InvalidSchema(
                "schema references are not supported by this registry; register self-contained schemas".into(),
            ));
        }
        Ok(request)
    }
}

fn version_body(subject: &str, version: u32, schema: &StoredSchema) -> Response {
    reply(json!({
        "subject": subject,
        "version": version,
        "id": schema.id,
        "schema": schema.schema,
    }))
}

async fn schema_by_id(Axum(r): Shared, Path(id): Path<String>) -> Result<Response> {
    let schema = r.log.state().schema(parse_id(&id)?)?;
    Ok(reply(json!({ "schema": schema.schema })))
}

async fn raw_schema_by_id(Axum(r): Shared, Path(id): Path<String>) -> Result<Response> {
    let schema = r.log.state().schema(parse_id(&id)?)?;
    Ok(reply(
        serde_json::from_str::<Value>(&schema.schema).unwrap_or(Value::Null),
    ))
}

async fn usages_of_id(Axum(r): Shared, Path(id): Path<String>) -> Result<Response> {
    let state = r.log.state();
    let id = parse_id(&id)?;
    state.schema(id)?;
    let usages: Vec<Value> = state
        .usages(id)
        .into_iter()
        .map(|(subject, version)| json!({"subject": subject, "version": version}))
        .collect();
    Ok(reply(usages))
}

async fn subjects(Axum(r): Shared) -> Response {
    reply(r.log.state().subjects())
}

async fn versions(Axum(r): Shared, Path(subject): Path<String>) -> Result<Response> {
    Ok(reply(r.log.state().versions(&subject)?))
}

async fn version(
    Axum(r): Shared,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Response> {
    let (version, schema) = r
        .log
        .state()
        .version(&subject, VersionSpec::parse(&version)?)?;
    Ok(version_body(&subject, version, &schema))
}

async fn raw_version(
    Axum(r): Shared,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Response> {
    let (_, schema) = r
        .log
        .state()
        .version(&subject, VersionSpec::parse(&version)?)?;
    Ok(reply(
        serde_json::from_str::<Value>(&schema.schema).unwrap_or(Value::Null),
    ))
}

async fn lookup(Axum(r): Shared, Path(subject): Path<String>, body: Bytes) -> Result<Response> {
    let request = SchemaRequest::parse(&body)?;
    let (version, schema) = r.log.state().lookup(&subject, &request.schema)?;
    Ok(version_body(&subject, version, &schema))
}

async fn register(Axum(r): Shared, Path(subject): Path<String>, body: Bytes) -> Result<Response> {
    let request = SchemaRequest::parse(&body)?;
    let write = r.log.begin_write().await?;
    let plan = r
        .log
        .state()
        .plan_registration(&subject, &request.schema, r.default_level)?;
    let id = match plan {
        Registration::Existing { id } => id,
        Registration::New { key, value } => {
            r.log.append(&write, &key, Some(&value)).await?;
            tracing::info!(subject = %subject, id = value.id, version = value.version, "registered schema");
            value.id
        }
    };
    Ok(reply(json!({ "id": id })))
}

fn compatibility_reply(
    result: Result<(), Vec<String>>,
    params: &HashMap<String, String>,
) -> Response {
    let verbose = params.get("verbose").is_some_and(|v| v == "true");
    match (result, verbose) {
        (Ok(()), false) => reply(json!({"is_compatible": true})),
        (Ok(()), true) => reply(json!({"is_compatible": true, "messages": []})),
        (Err(_), false) => reply(json!({"is_compatible": false})),
        (Err(reasons), true) => reply(json!({"is_compatible": false, "messages": reasons})),
    }
}

async fn check_one(
    Axum(r): Shared,
    Path((subject, version)): Path<(String, String)>,
    Query(params): Params,
    body: Bytes,
) -> Result<Response> {
    let request = SchemaRequest::parse(&body)?;
    let (candidate, _) = parse_schema(&request.schema)?;
    let state = r.log.state();
    let (version, _) = state.version(&subject, VersionSpec::parse(&version)?)?;
    let level = non_transitive(state.effective_level(&subject, r.default_level));
    Ok(compatibility_reply(
        state.check(&subject, &candidate, level, Some(version)),
        &params,
    ))
}

async fn check_all(
    Axum(r): Shared,
    Path(subject): Path<String>,
    Query(params): Params,
    body: Bytes,
) -> Result<Response> {
    let request = SchemaRequest::parse(&body)?;
    let (candidate, _) = parse_schema(&request.schema)?;
    let state = r.log.state();
    let level = state.effective_level(&subject, r.default_level);
    Ok(compatibility_reply(
        state.check(&subject, &candidate, level, None),
        &params,
    ))
}

/// Checking against one named version uses the level's direction only.
fn non_transitive(level: CompatibilityLevel) -> CompatibilityLevel {
    match level {
        CompatibilityLevel::BackwardTransitive => CompatibilityLevel::Backward,
        CompatibilityLevel::ForwardTransitive => CompatibilityLevel::Forward,
        CompatibilityLevel::FullTransitive => CompatibilityLevel::Full,
        other => other,
    }
}

#[derive(Debug, Deserialize)]
struct ConfigRequest {
    compatibility: String,
}

async fn global_config(Axum(r): Shared) -> Response {
    let level = r.log.state().global_level().unwrap_or(r.default_level);
    reply(json!({ "compatibilityLevel": level }))
}

async fn subject_config(
    Axum(r): Shared,
    Path(subject): Path<String>,
    Query(params): Params,
) -> Result<Response> {
    let state = r.log.state();
    let level = match state.subject_level(&subject) {
        Some(level) => level,
        None if params.get("defaultToGlobal").is_some_and(|v| v == "true") => {
            state.global_level().unwrap_or(r.default_level)
        }
        None => return Err(RegistryError::SubjectLevelNotConfigured(subject)),
    };
    Ok(reply(json!({ "compatibilityLevel": level })))
}

async fn write_config(
    r: &Registry,
    subject: Option<String>,
    level: Option<CompatibilityLevel>,
) -> Result<()> {
    let write = r.log.begin_write().await?;
    let key = LogKey::Config { subject, magic: 0 };
    let value = level.map(|compatibility_level| ConfigValue {
        compatibility_level,
    });
    r.log.append(&write, &key, value.as_ref()).await
}

fn parse_level(body: &Bytes) -> Result<CompatibilityLevel> {
    let request: ConfigRequest = parse_body(body)?;
    CompatibilityLevel::parse(&request.compatibility)
        .ok_or(RegistryError::InvalidCompatibilityLevel)
}

/// `PUT /config` (no subject) and `PUT /config/{subject}`.
async fn set_config(r: &Registry, subject: Option<String>, body: &Bytes) -> Result<Response> {
    let level = parse_level(body)?;
    write_config(r, subject, Some(level)).await?;
    Ok(reply(json!({ "compatibility": level })))
}

async fn set_global_config(Axum(r): Shared, body: Bytes) -> Result<Response> {
    set_config(&r, None, &body).await
}

async fn set_subject_config(
    Axum(r): Shared,
    Path(subject): Path<String>,
    body: Bytes,
) -> Result<Response> {
    set_config(&r, Some(subject), &body).await
}

async fn delete_subject_config(Axum(r): Shared, Path(subject): Path<String>) -> Result<Response> {
    let previous = r
        .log
        .state()
        .subject_level(&subject)
        .ok_or_else(|| RegistryError::SubjectLevelNotConfigured(subject.clone()))?;
    write_config(&r, Some(subject), None).await?;
    Ok(reply(json!({ "compatibilityLevel": previous })))
}
