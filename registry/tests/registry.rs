//! The registry against the real broker: Confluent's API shapes, durability across
//! restarts, compatibility enforcement.

use funnelhub_kafka::testing::{kafka_config, unique};
use funnelhub_registry::{start, RegistryConfig};
use funnelhub_runtime::RunningServer;
use reqwest::StatusCode;
use serde_json::{json, Value};

const V1: &str =
    r#"{"type":"record","name":"Hit","namespace":"t","fields":[{"name":"id","type":"string"}]}"#;
const V2: &str = r#"{"type":"record","name":"Hit","namespace":"t","fields":[{"name":"id","type":"string"},{"name":"n","type":"long","default":0}]}"#;
const INCOMPATIBLE: &str = r#"{"type":"record","name":"Hit","namespace":"t","fields":[{"name":"id","type":"string"},{"name":"required","type":"long"}]}"#;
const CT: &str = "application/vnd.schemaregistry.v1+json";

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(registry: &RunningServer) -> Self {
        Client {
            http: reqwest::Client::new(),
            base: registry.url(),
        }
    }
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.header("content-type", CT).body(body.to_string());
        }
        let response = request.send().await.expect("registry answers");
        let status = response.status();
        let content_type = response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert_eq!(content_type, CT, "{path}");
        (status, response.json().await.expect("json body"))
    }
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }
}

fn config(topic: &str) -> RegistryConfig {
    RegistryConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        topic: topic.into(),
        ..RegistryConfig::default()
    }
}

#[tokio::test]
async fn register_evolve_refuse_and_survive_restart() {
    let kafka = kafka_config("registry");
    let topic = unique("_schemas");
    let registry = start(&config(&topic), &kafka)
        .await
        .expect("registry starts");
    let c = Client::new(&registry);
    let subject = "orders-value";

    // Register v1, then the same text again: same id, one version.
    let (status, body) = c
        .post(
            &format!("/subjects/{subject}/versions"),
            json!({"schema": V1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id1 = body["id"].as_u64().expect("id");
    let (_, again) = c
        .post(
            &format!("/subjects/{subject}/versions"),
            json!({"schema": V1, "schemaType": "AVRO"}),
        )
        .await;
    assert_eq!(again["id"].as_u64(), Some(id1));

    // A compatible change (new field with a default) gets a new id and version 2.
    let (status, body) = c
        .post(
            &format!("/subjects/{subject}/versions"),
            json!({"schema": V2}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id2 = body["id"].as_u64().expect("id");
    assert_ne!(id1, id2);

    // An incompatible change is refused with Confluent's status, code and message.
    let (status, body) = c
        .post(
            &format!("/subjects/{subject}/versions"),
            json!({"schema": INCOMPATIBLE}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error_code"], 409);
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("incompatible"),
        "{body}"
    );
    let (status, body) = c
        .post(
            &format!("/compatibility/subjects/{subject}/versions/latest?verbose=true"),
            json!({"schema": INCOMPATIBLE}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["is_compatible"], false);
    assert!(!body["messages"].as_array().expect("messages").is_empty());

    // Invalid schema and unknown things get Confluent's error codes.
    let (status, body) = c
        .post(
            &format!("/subjects/{subject}/versions"),
            json!({"schema": "{\"type\":\"nope\"}"}),
        )
        .await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(42201))
    );
    let (status, body) = c.get("/subjects/nope-value/versions/latest").await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40401))
    );
    let (status, body) = c.get(&format!("/subjects/{subject}/versions/9")).await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40402))
    );
    let (status, body) = c.get("/schemas/ids/987654").await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40403))
    );

    // Config: BACKWARD by default; a subject level can be set and read.
    let (_, body) = c.get("/config").await;
    assert_eq!(body["compatibilityLevel"], "BACKWARD");
    let (status, body) = c
        .put(
            &format!("/config/{subject}"),
            json!({"compatibility": "NONE"}),
        )
        .await;
    assert_eq!(
        (status, body["compatibility"].clone()),
        (StatusCode::OK, json!("NONE"))
    );
    let (status, body) = c.put("/config", json!({"compatibility": "SIDEWAYS"})).await;
    assert_eq!(
        (status, body["error_code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(42203))
    );

    let before = snapshot(&c, subject).await;
    registry.stop().await.expect("stops");

    // A new process on the same topic serves the same subjects, versions and ids.
    let registry = start(&config(&topic), &kafka)
        .await
        .expect("registry restarts");
    let c = Client::new(&registry);
    assert_eq!(snapshot(&c, subject).await, before);
    let (_, body) = c.get(&format!("/schemas/ids/{id1}")).await;
    assert_eq!(body["schema"], V1);
    let (_, body) = c.get(&format!("/config/{subject}")).await;
    assert_eq!(body["compatibilityLevel"], "NONE");
    // New ids continue after the restored ones.
    let (_, body) = c
        .post(
            "/subjects/other-value/versions",
            json!({"schema": INCOMPATIBLE}),
        )
        .await;
    assert_eq!(body["id"].as_u64(), Some(id2 + 1));
    registry.stop().await.expect("stops");
}

async fn snapshot(c: &Client, subject: &str) -> Value {
    let (_, subjects) = c.get("/subjects").await;
    let (_, versions) = c.get(&format!("/subjects/{subject}/versions")).await;
    let (_, latest) = c.get(&format!("/subjects/{subject}/versions/latest")).await;
    let (_, v1) = c.get(&format!("/subjects/{subject}/versions/1")).await;
    let (_, lookup) = c
        .post(&format!("/subjects/{subject}"), json!({"schema": V1}))
        .await;
    json!({"subjects": subjects, "versions": versions, "latest": latest, "v1": v1, "lookup": lookup})
}
