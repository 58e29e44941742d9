//! Meta's Graph API, the parts funnelhub uses: the Conversions API endpoint
//! `POST /{version}/{pixel_id}/events` and the pixel node `GET /{version}/{pixel_id}`.
//!
//! Rules enforced (facts in `shared/reference/integrations.md`, Meta's "Server Event
//! Parameters" and "Customer Information Parameters" pages):
//! - the access token (query `access_token`, or a body parameter) must be the pixel's:
//!   unknown token → code 190; a token of another pixel → code 100 subcode 33;
//! - `data` holds 1 to 1,000 events; one invalid event rejects the whole request, and the
//!   error names it (`The parameter $['data'][3]['event_time'] ...`, code 100 subcode
//!   2804019, as Meta answers);
//! - each event: `event_name`, `event_time` in Unix **seconds** no older than 7 days (the
//!   emulator also refuses more than an hour ahead, which catches milliseconds),
//!   `action_source` from Meta's list; `website` events need `event_source_url` and
//!   `user_data.client_user_agent`; `user_data` has at least one customer-information key;
//!   the hashed keys (`em`, `ph`, `fn`, `ln`, `ct`, `st`, `zp`, `country`, `ge`, `db`) are
//!   lowercase SHA-256 hex, a string or an array of them; `fbc`/`fbp` have Meta's format;
//!   `client_ip_address` is an IP; `Purchase` needs `custom_data.value` and a 3-letter
//!   `custom_data.currency`.
//!
//! Accepted events are kept with Meta's deduplication rule: the first event of a
//! (`pixel`, `event_name`, `event_id`) wins, later ones only count as duplicates.
//!
//! Faults ([`Faults`]): retryable errors (5xx and throttling codes) answered before
//! anything is processed, slow answers given after the events were processed (so the
//! client times out on a request Meta did take, as happens for real), every token
//! refused, and chosen events refused as invalid.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use funnelhub_runtime::RunningServer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Most events Meta accepts in one request.
pub const MAX_EVENTS_PER_REQUEST: usize = 1000;
/// Oldest `event_time` Meta accepts (website events).
pub const MAX_EVENT_AGE_SECS: i64 = 7 * 24 * 3600;
/// The emulator's own strictness: an `event_time` this far ahead is refused.
pub const MAX_EVENT_SKEW_SECS: i64 = 3600;

const ACTION_SOURCES: &[&str] = &[
    "website",
    "app",
    "email",
    "phone_call",
    "chat",
    "physical_store",
    "system_generated",
    "business_messaging",
    "other",
];
const HASHED_KEYS: &[&str] = &[
    "em", "ph", "fn", "ln", "ct", "st", "zp", "country", "ge", "db",
];
const RAW_KEYS: &[&str] = &[
    "external_id",
    "client_ip_address",
    "client_user_agent",
    "fbc",
    "fbp",
    "subscription_id",
    "fb_login_id",
    "lead_id",
];

/// Faults to inject. The default injects none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Share of requests (0..=1) answered with a retryable error before any processing:
    /// HTTP 500 code 1, 503 code 2, or a throttling code (4, 17, 613, 80004).
    pub retryable_rate: f64,
    /// Share of requests processed normally but answered only after `slow_ms`.
    pub slow_rate: f64,
    pub slow_ms: u64,
    /// Refuse every token (code 190), as after a token is revoked.
    pub invalid_token: bool,
    /// Events refused as invalid (a bad hash), by `event_id`: the request naming one is
    /// rejected whole.
    pub reject_event_ids: Vec<String>,
    /// Seed of the fault dice, so a run can be repeated.
    pub seed: u64,
}

/// One deduplicated event as the emulator kept it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceivedEvent {
    pub pixel_id: String,
    pub event_name: String,
    pub event_id: Option<String>,
    /// How many times it was received (1 = never duplicated).
    pub times_received: u32,
    pub test_event_code: Option<String>,
    /// The event as first received.
    pub event: Value,
}

/// What the emulator saw so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// HTTP requests to the events endpoint, whatever their answer.
    pub requests: u64,
    /// Requests answered with an error (validation, token or injected fault).
    pub rejected_requests: u64,
    /// Requests that got an injected retryable error.
    pub injected_faults: u64,
    /// Events accepted, duplicates included (the sum of `events_received` answers).
    pub events_received: u64,
    /// Accepted events after deduplication by (pixel, event_name, event_id).
    pub events: Vec<ReceivedEvent>,
}

/// Progress counters (see [`Snapshot`] for their meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub events_received: u64,
    pub distinct_events: usize,
}

impl Snapshot {
    /// Deduplicated events of one pixel.
    pub fn of_pixel<'a>(&'a self, pixel_id: &'a str) -> impl Iterator<Item = &'a ReceivedEvent> {
        self.events.iter().filter(move |e| e.pixel_id == pixel_id)
    }
}

#[derive(Debug)]
struct Ledger {
    faults: Faults,
    dice: StdRng,
    requests: u64,
    rejected_requests: u64,
    injected_faults: u64,
    events_received: u64,
    /// (pixel, event_name, event_id or a unique number) → index in `events`.
    seen: HashMap<(String, String, String), usize>,
    events: Vec<ReceivedEvent>,
}

#[derive(Debug)]
struct Emulator {
    /// pixel id → the access token allowed to use it.
    pixels: BTreeMap<String, String>,
    ledger: Mutex<Ledger>,
}

/// A running emulator.
#[derive(Debug)]
pub struct MetaGraphEmulator {
    server: RunningServer,
    state: Arc<Emulator>,
}

impl MetaGraphEmulator {
    /// Serve on `listen` (port 0: any free port). `pixels` maps each pixel id to the only
    /// access token allowed to send to it.
    pub async fn start(
        listen: SocketAddr,
        pixels: BTreeMap<String, String>,
        faults: Faults,
    ) -> std::io::Result<MetaGraphEmulator> {
        let state = Arc::new(Emulator {
            pixels,
            ledger: Mutex::new(Ledger {
                dice: StdRng::seed_from_u64(faults.seed),
                faults,
                requests: 0,
                rejected_requests: 0,
                injected_faults: 0,
                events_received: 0,
                seen: HashMap::new(),
                events: Vec::new(),
            }),
        });
        let router = Router::new()
            .route("/{version}/{pixel_id}/events", post(events))
            .route("/{version}/{pixel_id}", get(pixel))
            .route("/_emulator/events", get(snapshot))
            .route("/_emulator/faults", post(set_faults))
            .with_state(state.clone());
        let server = funnelhub_runtime::serve(listen, router).await?;
        Ok(MetaGraphEmulator { server, state })
    }

    /// Base URL, to configure as the Graph API URL.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Replace the faults (and reseed the dice).
    pub fn set_faults(&self, faults: Faults) {
        self.state.set_faults(faults);
    }

    /// What was received so far (copies every event: see [`MetaGraphEmulator::counts`]).
    pub fn snapshot(&self) -> Snapshot {
        self.state.snapshot()
    }

    /// Cheap progress: requests, events received (duplicates included), distinct events.
    pub fn counts(&self) -> Counts {
        let ledger = self.state.ledger();
        Counts {
            requests: ledger.requests,
            events_received: ledger.events_received,
            distinct_events: ledger.events.len(),
        }
    }

    /// Stop serving.
    pub async fn stop(self) -> std::io::Result<()> {
        self.server.stop().await
    }
}

impl Emulator {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().expect("not poisoned")
    }

    fn set_faults(&self, faults: Faults) {
        let mut ledger = self.ledger();
        ledger.dice = StdRng::seed_from_u64(faults.seed);
        ledger.faults = faults;
    }

    fn snapshot(&self) -> Snapshot {
        let ledger = self.ledger();
        Snapshot {
            requests: ledger.requests,
            rejected_requests: ledger.rejected_requests,
            injected_faults: ledger.injected_faults,
            events_received: ledger.events_received,
            events: ledger.events.clone(),
        }
    }

    /// The token's right to use the pixel.
    fn authorize(&self, pixel_id: &str, token: Option<&str>) -> Result<(), GraphError> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(GraphError::token(
                "An active access token must be used to query information about the current user.",
            ));
        };
        if self.ledger().faults.invalid_token || !self.pixels.values().any(|t| t == token) {
            return Err(GraphError::token(
                "Invalid OAuth access token - Cannot parse access token",
            ));
        }
        if self.pixels.get(pixel_id).map(String::as_str) != Some(token) {
            return Err(GraphError::no_object(pixel_id));
        }
        Ok(())
    }
}

/// A Graph API error answer: `{"error": {...}}`.
#[derive(Debug)]
struct GraphError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    code: i64,
    subcode: Option<i64>,
    transient: bool,
    user_title: Option<&'static str>,
    user_msg: Option<String>,
}

impl GraphError {
    fn token(message: &str) -> GraphError {
        GraphError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "OAuthException",
            code: 190,
            subcode: None,
            transient: false,
            user_title: None,
            user_msg: None,
        }
    }

    fn no_object(pixel_id: &str) -> GraphError {
        GraphError {
            status: StatusCode::BAD_REQUEST,
            message: format!("Unsupported post request. Object with ID '{pixel_id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."),
            kind: "GraphMethodException",
            code: 100,
            subcode: Some(33),
            transient: false,
            user_title: None,
            user_msg: None,
        }
    }

    fn parameter(user_msg: String) -> GraphError {
        GraphError {
            status: StatusCode::BAD_REQUEST,
            message: "Invalid parameter".into(),
            kind: "OAuthException",
            code: 100,
            subcode: Some(2_804_019),
            transient: false,
            user_title: Some("Server-side API parameter error"),
            user_msg: Some(user_msg),
        }
    }

    /// One of the retryable errors Meta documents, picked by `roll`.
    fn retryable(roll: u32) -> GraphError {
        let (status, code, message) = match roll % 6 {
            0 => (
                StatusCode::INTERNAL_SERVER_ERROR,
                1,
                "An unknown error has occurred.",
            ),
            1 => (
                StatusCode::SERVICE_UNAVAILABLE,
                2,
                "Service temporarily unavailable",
            ),
            2 => (
                StatusCode::BAD_REQUEST,
                4,
                "Application request limit reached",
            ),
            3 => (StatusCode::BAD_REQUEST, 17, "User request limit reached"),
            4 => (
                StatusCode::BAD_REQUEST,
                613,
                "Calls to this api have exceeded the rate limit.",
            ),
            _ => (
                StatusCode::BAD_REQUEST,
                80004,
                "There have been too many calls to this ad-account. Wait a bit and try again.",
            ),
        };
        GraphError {
            status,
            message: message.into(),
            kind: "OAuthException",
            code,
            subcode: None,
            transient: true,
            user_title: None,
            user_msg: None,
        }
    }
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        let mut error = json!({
            "message": self.message,
            "type": self.kind,
            "code": self.code,
            "is_transient": self.transient,
            "fbtrace_id": fbtrace_id(),
        });
        if let Some(subcode) = self.subcode {
            error["error_subcode"] = json!(subcode);
        }
        if let Some(title) = self.user_title {
            error["error_user_title"] = json!(title);
        }
        if let Some(msg) = self.user_msg {
            error["error_user_msg"] = json!(msg);
        }
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}

fn fbtrace_id() -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(11)
        .map(char::from)
        .collect()
}

/// The request's parameters, from a JSON body or a form body (Meta's curl example sends
/// `data` form-encoded as a JSON string), plus the query string.
#[derive(Debug, Default)]
struct Params {
    access_token: Option<String>,
    data: Option<Value>,
    test_event_code: Option<String>,
}

fn params(
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Params, GraphError> {
    let mut params = Params {
        access_token: query.get("access_token").cloned(),
        test_event_code: query.get("test_event_code").cloned(),
        data: query.get("data").map(|d| parse_data(d)).transpose()?,
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if body.is_empty() {
        return Ok(params);
    }
    let fields: Map<String, Value> = if content_type.starts_with("application/json") {
        serde_json::from_slice(body).map_err(|e| {
            GraphError::parameter(format!("The request body is not valid JSON: {e}"))
        })?
    } else {
        url::form_urlencoded::parse(body)
            .map(|(k, v)| {
                let v = if k == "data" {
                    parse_data(&v)?
                } else {
                    Value::String(v.into_owned())
                };
                Ok((k.into_owned(), v))
            })
            .collect::<Result<_, GraphError>>()?
    };
    for (key, value) in fields {
        match key.as_str() {
            "access_token" => params.access_token = value.as_str().map(str::to_owned),
            "test_event_code" => params.test_event_code = value.as_str().map(str::to_owned),
            "data" => params.data = Some(value),
            _ => {}
        }
    }
    Ok(params)
}

fn parse_data(text: &str) -> Result<Value, GraphError> {
    serde_json::from_str(text).map_err(|_| {
        GraphError::parameter("The parameter data must be a JSON array of events.".into())
    })
}

async fn events(
    State(state): State<Arc<Emulator>>,
    Path((version, pixel_id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (answer, delay) = handle_events(&state, &version, &pixel_id, &query, &headers, &body);
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    match answer {
        Ok(received) => (
            StatusCode::OK,
            Json(json!({
                "events_received": received,
                "messages": [],
                "fbtrace_id": fbtrace_id(),
            })),
        )
            .into_response(),
        Err(error) => error.into_response(),
    }
}

#[allow(clippy::type_complexity)]
fn handle_events(
    state: &Emulator,
    version: &str,
    pixel_id: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> (Result<usize, GraphError>, Option<Duration>) {
    let fault = {
        let mut ledger = state.ledger();
        ledger.requests += 1;
        let Ledger { faults, dice, .. } = &mut *ledger;
        let retryable = dice.random_bool(faults.retryable_rate.clamp(0.0, 1.0));
        let roll: u32 = dice.random();
        let slow = dice.random_bool(faults.slow_rate.clamp(0.0, 1.0));
        let delay = slow.then(|| Duration::from_millis(faults.slow_ms));
        if retryable {
            ledger.injected_faults += 1;
            ledger.rejected_requests += 1;
        }
        (retryable.then(|| GraphError::retryable(roll)), delay)
    };
    if let (Some(error), _) = fault {
        return (Err(error), None);
    }
    let answer = accept(state, version, pixel_id, query, headers, body);
    if answer.is_err() {
        state.ledger().rejected_requests += 1;
    }
    (answer, fault.1)
}

fn accept(
    state: &Emulator,
    version: &str,
    pixel_id: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<usize, GraphError> {
    check_version(version)?;
    let params = params(query, headers, body)?;
    state.authorize(pixel_id, params.access_token.as_deref())?;
    let Some(Value::Array(data)) = params.data else {
        return Err(GraphError::parameter(
            "The parameter data is required and must be an array.".into(),
        ));
    };
    if data.is_empty() || data.len() > MAX_EVENTS_PER_REQUEST {
        return Err(GraphError::parameter(format!(
            "The parameter $['data'] must hold between 1 and {MAX_EVENTS_PER_REQUEST} events, not {}.",
            data.len()
        )));
    }
    let now = now_secs();
    let rejected = state.ledger().faults.reject_event_ids.clone();
    for (i, event) in data.iter().enumerate() {
        validate_event(event, now).map_err(|(field, problem)| {
            GraphError::parameter(format!("The parameter $['data'][{i}]{field} {problem}"))
        })?;
        if let Some(id) = event.get("event_id").and_then(Value::as_str) {
            if rejected.iter().any(|r| r == id) {
                return Err(GraphError::parameter(format!(
                    "The parameter $['data'][{i}]['user_data']['em'] is not a valid SHA-256 hash."
                )));
            }
        }
    }
    let count = data.len();
    let mut ledger = state.ledger();
    ledger.events_received += count as u64;
    for event in data {
        let event_name = event["event_name"].as_str().unwrap_or_default().to_owned();
        let event_id = event.get("event_id").and_then(|id| match id {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        let dedupe_id = event_id
            .clone()
            .unwrap_or_else(|| format!("#{}", ledger.events.len()));
        let key = (pixel_id.to_owned(), event_name.clone(), dedupe_id);
        match ledger.seen.get(&key) {
            Some(&index) => ledger.events[index].times_received += 1,
            None => {
                let index = ledger.events.len();
                ledger.events.push(ReceivedEvent {
                    pixel_id: pixel_id.to_owned(),
                    event_name,
                    event_id,
                    times_received: 1,
                    test_event_code: params.test_event_code.clone(),
                    event,
                });
                ledger.seen.insert(key, index);
            }
        }
    }
    Ok(count)
}

fn check_version(version: &str) -> Result<(), GraphError> {
    let valid = version
        .strip_prefix('v')
        .and_then(|v| v.split_once('.'))
        .is_some_and(|(major, minor)| {
            !major.is_empty()
                && !minor.is_empty()
                && major
                    .bytes()
                    .chain(minor.bytes())
                    .all(|b| b.is_ascii_digit())
        });
    if valid {
        Ok(())
    } else {
        Err(GraphError {
            status: StatusCode::BAD_REQUEST,
            message: format!("Unknown path components: /{version}"),
            kind: "OAuthException",
            code: 2500,
            subcode: None,
            transient: false,
            user_title: None,
            user_msg: None,
        })
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Why an event is invalid: the JSON path below `$['data'][i]` and the problem.
type Invalid = (String, String);

fn invalid(path: &str, problem: &str) -> Invalid {
    (path.to_owned(), problem.to_owned())
}

fn validate_event(event: &Value, now: i64) -> Result<(), Invalid> {
    let Some(event) = event.as_object() else {
        return Err(invalid("", "must be an object."));
    };
    match event.get("event_name") {
        Some(Value::String(name)) if !name.trim().is_empty() => {}
        _ => return Err(invalid("['event_name']", "is required.")),
    }
    let Some(time) = event.get("event_time") else {
        return Err(invalid("['event_time']", "is required."));
    };
    let Some(time) = time.as_i64() else {
        return Err(invalid(
            "['event_time']",
            "must be an integer (Unix seconds).",
        ));
    };
    if time < now - MAX_EVENT_AGE_SECS {
        return Err(invalid(
            "['event_time']",
            "is too far in the past: events must be sent within 7 days of their occurrence.",
        ));
    }
    if time > now + MAX_EVENT_SKEW_SECS {
        return Err(invalid(
            "['event_time']",
            "is in the future (Unix seconds are expected, not milliseconds).",
        ));
    }
    let action_source = match event.get("action_source") {
        Some(Value::String(s)) if ACTION_SOURCES.contains(&s.as_str()) => s.as_str(),
        Some(_) => {
            return Err(invalid(
                "['action_source']",
                "is not a valid action source.",
            ))
        }
        None => return Err(invalid("['action_source']", "is required.")),
    };
    if let Some(id) = event.get("event_id") {
        if !(id.is_string() || id.is_number()) {
            return Err(invalid("['event_id']", "must be a string."));
        }
    }
    let Some(user_data) = event.get("user_data").and_then(Value::as_object) else {
        return Err(invalid("['user_data']", "is required."));
    };
    validate_user_data(user_data)?;
    if action_source == "website" {
        match event.get("event_source_url").and_then(Value::as_str) {
            Some(u) if url::Url::parse(u).is_ok() => {}
            Some(_) => return Err(invalid("['event_source_url']", "is not a valid URL.")),
            None => {
                return Err(invalid(
                    "['event_source_url']",
                    "is required for website events.",
                ))
            }
        }
        if !user_data.contains_key("client_user_agent") {
            return Err(invalid(
                "['user_data']['client_user_agent']",
                "is required for website events.",
            ));
        }
    }
    let custom_data = match event.get("custom_data") {
        None => None,
        Some(Value::Object(c)) => Some(c),
        Some(_) => return Err(invalid("['custom_data']", "must be an object.")),
    };
    if let Some(custom) = custom_data {
        validate_custom_data(custom)?;
    }
    if event["event_name"] == "Purchase" {
        let custom = custom_data.ok_or_else(|| {
            invalid(
                "['custom_data']",
                "is required for Purchase events (value, currency).",
            )
        })?;
        if !custom.contains_key("value") {
            return Err(invalid(
                "['custom_data']['value']",
                "is required for Purchase events.",
            ));
        }
        if !custom.contains_key("currency") {
            return Err(invalid(
                "['custom_data']['currency']",
                "is required for Purchase events.",
            ));
        }
    }
    Ok(())
}

fn strings(value: &Value) -> Option<Vec<&str>> {
    match value {
        Value::String(s) => Some(vec![s.as_str()]),
        Value::Array(items) => items.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `fb.{subdomain index}.{ms}.{fbclid or random}` (+ an optional appendix segment).
fn is_cookie(s: &str, last_digits: bool) -> bool {
    let parts: Vec<&str> = s.splitn(4, '.').collect();
    let [fb, index, time, rest] = parts[..] else {
        return false;
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let last = rest.split('.').next().unwrap_or("");
    fb == "fb"
        && digits(index)
        && digits(time)
        && !last.is_empty()
        && (!last_digits || digits(last))
}

fn validate_user_data(user_data: &Map<String, Value>) -> Result<(), Invalid> {
    let mut customer_keys = 0;
    for (key, value) in user_data {
        let path = format!("['user_data']['{key}']");
        let Some(values) = strings(value) else {
            return Err((path, "must be a string or an array of strings.".into()));
        };
        if HASHED_KEYS.contains(&key.as_str()) {
            if values.iter().any(|v| !is_sha256(v)) {
                return Err((
                    path,
                    "is not a valid SHA-256 hash (lowercase hex of the normalized value).".into(),
                ));
            }
        } else if !RAW_KEYS.contains(&key.as_str()) {
            continue;
        }
        match key.as_str() {
            "client_ip_address" if values.iter().any(|v| v.parse::<IpAddr>().is_err()) => {
                return Err((path, "is not a valid IP address.".into()))
            }
            "fbc" if values.iter().any(|v| !is_cookie(v, false)) => {
                return Err((
                    path,
                    "is not in the format fb.{subdomain_index}.{creation_time}.{fbclid}.".into(),
                ))
            }
            "fbp" if values.iter().any(|v| !is_cookie(v, true)) => {
                return Err((
                    path,
                    "is not in the format fb.{subdomain_index}.{creation_time}.{random_number}."
                        .into(),
                ))
            }
            _ => {}
        }
        customer_keys += 1;
    }
    if customer_keys == 0 {
        return Err(invalid(
            "['user_data']",
            "must contain at least one customer information parameter.",
        ));
    }
    Ok(())
}

fn validate_custom_data(custom: &Map<String, Value>) -> Result<(), Invalid> {
    if let Some(value) = custom.get("value") {
        if !value.is_number() {
            return Err(invalid("['custom_data']['value']", "must be a number."));
        }
    }
    if let Some(currency) = custom.get("currency") {
        let valid = currency
            .as_str()
            .is_some_and(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()));
        if !valid {
            return Err(invalid(
                "['custom_data']['currency']",
                "must be a three-letter ISO 4217 code.",
            ));
        }
    }
    if let Some(ids) = custom.get("content_ids") {
        if !ids
            .as_array()
            .is_some_and(|a| a.iter().all(|v| v.is_string() || v.is_number()))
        {
            return Err(invalid(
                "['custom_data']['content_ids']",
                "must be an array of strings.",
            ));
        }
    }
    Ok(())
}

async fn pixel(
    State(state): State<Arc<Emulator>>,
    Path((version, pixel_id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let checked = check_version(&version)
        .and_then(|()| state.authorize(&pixel_id, query.get("access_token").map(String::as_str)));
    match checked {
        Ok(()) => Json(json!({ "id": pixel_id, "name": format!("Pixel {pixel_id} (emulated)") }))
            .into_response(),
        Err(error) => error.into_response(),
    }
}

async fn snapshot(State(state): State<Arc<Emulator>>) -> Json<Snapshot> {
    Json(state.snapshot())
}

async fn set_faults(State(state): State<Arc<Emulator>>, Json(faults): Json<Faults>) -> StatusCode {
    state.set_faults(faults);
    StatusCode::NO_CONTENT
}
