//! The foundation against the real local stack (`scripts/stack up`): every schema through
//! the running registry and the broker, topic creation, compatibility enforcement on our
//! own schemas, decode-error classification, and Confluent's own client reading our topics.

use std::time::Duration;

use funnelhub_kafka::admin::{catalog_requests, ensure_topics, TopicOutcome};
use funnelhub_kafka::testing::{kafka_config, read_records, unique};
use funnelhub_kafka::{
    client, AckedProducer, DecodeError, Error, KafkaConfig, SchemaRegistry, SchemaRegistryConfig,
    TopicCodec,
};
use funnelhub_registry::RegistryConfig;
use funnelhub_runtime::RunningServer;
use funnelhub_schemas::events::TrackingHit;
use funnelhub_schemas::testing::*;
use funnelhub_schemas::{AvroRecord, Catalog, RecordSchema, Topic};
use rdkafka::consumer::{BaseConsumer, Consumer};

const WAIT: Duration = Duration::from_secs(30);

/// A registry on a free port with its own `_schemas` topic, plus a client for it.
async fn registry(kafka: &KafkaConfig) -> (RunningServer, SchemaRegistry) {
    let running = funnelhub_registry::start(
        &RegistryConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            topic: unique("_schemas"),
            ..RegistryConfig::default()
        },
        kafka,
    )
    .await
    .expect("registry starts");
    let client = SchemaRegistry::new(&SchemaRegistryConfig { url: running.url() }).expect("client");
    (running, client)
}

async fn produce(kafka: &KafkaConfig, topic: &str, key: &str, value: &[u8]) {
    AckedProducer::new(kafka, "test", WAIT)
        .expect("producer")
        .send(topic, key.as_bytes(), Some(value))
        .await
        .expect("broker acknowledged");
}

/// Register, encode, produce, consume, decode with a fresh codec (which must fetch the
/// writer schema from the registry by the id in the record).
async fn roundtrip<T: AvroRecord + PartialEq + std::fmt::Debug>(
    kafka: &KafkaConfig,
    registry: &SchemaRegistry,
    topic: Topic,
    record: T,
) {
    let name = Catalog::new(&kafka.topic_prefix).name(topic);
    let writer = TopicCodec::<T>::register(registry, &name)
        .await
        .expect("registers");
    produce(kafka, &name, "k", &writer.encode(&record).expect("encodes")).await;
    let records = read_records(kafka, &name, 1, WAIT).await;
    let reader = TopicCodec::<T>::register(registry, &name)
        .await
        .expect("same id");
    assert_eq!(reader.schema_id(), writer.schema_id());
    let decoded = reader.decode(&records[0].1).await.expect("decodes");
    assert_eq!(decoded, record, "{}", T::FULL_NAME);
}

/// The tests run against Apache Kafka 4, not a Kafka-protocol look-alike: the broker reports
/// a finalized `metadata.version` (KRaft), serves the consumer rebalance protocol and no
/// longer serves the fetch versions Kafka 4.0 removed.
#[tokio::test]
async fn the_broker_is_apache_kafka_4() {
    let kafka = kafka_config("broker-kind");
    let apis = funnelhub_kafka::broker::api_versions(&kafka.brokers, WAIT)
        .await
        .expect("ApiVersions answered");
    assert!(apis.is_kafka_4(), "{apis:?}");
    let level = apis.features["metadata.version"];
    // metadata.version 4.0-IV3 is level 25; every 4.x release is at or above it.
    assert!(level >= 25, "metadata.version level {level}");
    assert_eq!(
        apis.versions(funnelhub_kafka::broker::FETCH).map(|v| v.0),
        Some(4)
    );
    assert!(apis.features.contains_key("kraft.version"), "{apis:?}");
    // Transactions are served (InitProducerId), which the stage runner may use.
    assert!(apis
        .versions(funnelhub_kafka::broker::INIT_PRODUCER_ID)
        .is_some());
}

#[tokio::test]
async fn every_schema_round_trips_through_the_registry_and_the_broker() {
    let kafka = kafka_config("roundtrip");
    ensure_topics(&kafka, &catalog_requests(&kafka))
        .await
        .expect("topics");
    let (running, registry) = registry(&kafka).await;
    let (transition, matched, request, attempt) = sample_derived();
    let deduped = funnelhub_schemas::derived::DedupedEvent {
        dedupe_key: "k".into(),
        first_seen: funnelhub_schemas::common::SourcePosition {
            topic: "t".into(),
            partition: 1,
            offset: 42,
        },
        deduped_at: 1,
        event: funnelhub_schemas::events::EdgeEvent::OrderEvent(sample_order_event()),
    };
    let dlq = funnelhub_schemas::derived::DlqRecord {
        dlq_id: "d".into(),
        stage: "dedupe".into(),
        reason: funnelhub_schemas::derived::DlqReason::UnknownSchema,
        error: "unknown schema id 99".into(),
        source: None,
        tenant_id: None,
        event_id: None,
        key: Some(b"k".to_vec()),
        value: Some(vec![0, 0, 0, 0, 99, 1]),
        failed_at: 5,
    };
    roundtrip(&kafka, &registry, Topic::RawTracking, sample_tracking_hit()).await;
    roundtrip(&kafka, &registry, Topic::RawOrders, sample_order_event()).await;
    roundtrip(
        &kafka,
        &registry,
        Topic::RawOnboarding,
        sample_onboarding_event(),
    )
    .await;
    roundtrip(&kafka, &registry, Topic::Deduped, deduped).await;
    roundtrip(&kafka, &registry, Topic::FunnelTransitions, transition).await;
    roundtrip(&kafka, &registry, Topic::OpsTickets, sample_ops_ticket()).await;
    roundtrip(&kafka, &registry, Topic::MatchResults, matched).await;
    roundtrip(&kafka, &registry, Topic::CapiRequests, request).await;
    roundtrip(&kafka, &registry, Topic::CapiAttempts, attempt).await;
    roundtrip(&kafka, &registry, Topic::Dlq, dlq).await;
    let (dedupe_state, funnel_state) = sample_state_entries();
    roundtrip(&kafka, &registry, Topic::DedupeState, dedupe_state).await;
    roundtrip(&kafka, &registry, Topic::FunnelState, funnel_state).await;
    roundtrip(
        &kafka,
        &registry,
        Topic::MatchState,
        // The decision: the union's richest branch.
        sample_match_entries().remove(2),
    )
    .await;
    roundtrip(&kafka, &registry, Topic::Suppressions, sample_suppression()).await;
    roundtrip(&kafka, &registry, Topic::Tenants, sample_tenant_record()).await;
    let (session, action) = sample_setup();
    roundtrip(&kafka, &registry, Topic::SetupSessions, session).await;
    roundtrip(&kafka, &registry, Topic::SetupActions, action).await;
    roundtrip(&kafka, &registry, Topic::RawWebhooks, sample_raw_webhook()).await;
    roundtrip(
        &kafka,
        &registry,
        Topic::SetupMessages,
        sample_setup_message(),
    )
    .await;
    running.stop().await.expect("stops");
}

#[tokio::test]
async fn topics_are_created_idempotently_with_the_catalog_partitions() {
    let kafka = kafka_config("topics");
    let requests = catalog_requests(&kafka);
    let first = ensure_topics(&kafka, &requests).await.expect("created");
    assert!(
        first.iter().all(|(_, o)| *o == TopicOutcome::Created),
        "{first:?}"
    );
    let second = ensure_topics(&kafka, &requests).await.expect("idempotent");
    assert_eq!(second.len(), requests.len());
    assert!(
        second
            .iter()
            .all(|(_, o)| *o == TopicOutcome::AlreadyExisted),
        "{second:?}"
    );

    let consumer: BaseConsumer = client::client_config(&kafka, "test")
        .create()
        .expect("client");
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    for request in &requests {
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == request.name)
            .unwrap_or_else(|| panic!("{} exists", request.name));
        assert_eq!(
            topic.partitions().len() as i32,
            request.partitions,
            "{}",
            request.name
        );
    }
}

#[tokio::test]
async fn our_schemas_evolve_only_compatibly() {
    let kafka = kafka_config("evolution");
    let (running, registry) = registry(&kafka).await;
    let subject = "evolution-value";
    let v1 = registry
        .register(subject, TrackingHit::record_schema())
        .await
        .expect("v1");

    let evolve = |field: serde_json::Value| {
        let mut json: serde_json::Value =
            serde_json::from_str(&TrackingHit::record_schema().json).expect("json");
        json["fields"].as_array_mut().expect("fields").push(field);
        let text = json.to_string();
        RecordSchema {
            full_name: TrackingHit::FULL_NAME.into(),
            schema: apache_avro::Schema::parse_str(&text).expect("valid"),
            json: text,
        }
    };
    // A required field without default cannot read old records: refused, not retryable.
    let err = registry
        .register(
            subject,
            &evolve(serde_json::json!({"name": "tenant_plan", "type": "string"})),
        )
        .await
        .expect_err("incompatible");
    assert!(matches!(err, Error::SchemaRejected(_)), "{err}");
    assert!(!err.is_retryable());
    // An optional field with a default can: a new id.
    let v2 = registry
        .register(subject, &evolve(serde_json::json!({"name": "tenant_plan", "type": ["null", "string"], "default": null})))
        .await
        .expect("compatible");
    assert_ne!(v1, v2);
    // Registering the original again is idempotent.
    assert_eq!(
        registry
            .register(subject, TrackingHit::record_schema())
            .await
            .expect("same"),
        v1
    );
    running.stop().await.expect("stops");
}

#[tokio::test]
async fn decode_errors_say_whether_to_retry_or_dead_letter() {
    let kafka = kafka_config("decode");
    let (running, registry) = registry(&kafka).await;
    let codec = TopicCodec::<TrackingHit>::register(&registry, "decode-topic")
        .await
        .expect("registers");

    let unknown = codec
        .decode(&[0, 0, 0x0f, 0x42, 0x40, 2, 3])
        .await
        .expect_err("unknown id");
    assert!(
        matches!(unknown, DecodeError::UnknownSchema(1_000_000)),
        "{unknown}"
    );
    let garbage = codec
        .decode(b"{\"json\":true}")
        .await
        .expect_err("not framed");
    assert!(matches!(garbage, DecodeError::Undecodable(_)), "{garbage}");
    let mut truncated = codec.encode(&sample_tracking_hit()).expect("encodes");
    truncated.truncate(12);
    let truncated = codec.decode(&truncated).await.expect_err("truncated");
    assert!(
        matches!(truncated, DecodeError::Undecodable(_)),
        "{truncated}"
    );
    assert!(!unknown.is_retryable() && !garbage.is_retryable() && !truncated.is_retryable());

    // Registry gone: an id not yet cached cannot be resolved, and that is retryable.
    running.stop().await.expect("stops");
    let other = TopicCodec::<TrackingHit>::register(&registry, "x").await;
    assert!(other.is_err());
    let offline = codec
        .decode(&[0, 0, 0, 0, 77, 0])
        .await
        .expect_err("registry down");
    assert!(offline.is_retryable(), "{offline}");
}

#[tokio::test]
async fn confluent_python_client_reads_our_topics() {
    let python = std::env::var("FUNNELHUB_PYTHON").unwrap_or_else(|_| ".venv/bin/python".into());
    let kafka = kafka_config("confluent");
    ensure_topics(&kafka, &catalog_requests(&kafka))
        .await
        .expect("topics");
    let (running, registry) = registry(&kafka).await;
    let catalog = Catalog::new(&kafka.topic_prefix);
    let topic = catalog.name(Topic::Deduped);
    let codec = TopicCodec::register(&registry, &topic)
        .await
        .expect("registers");
    let events = [
        funnelhub_schemas::events::EdgeEvent::TrackingHit(sample_tracking_hit()),
        funnelhub_schemas::events::EdgeEvent::OrderEvent(sample_order_event()),
        funnelhub_schemas::events::EdgeEvent::OnboardingEvent(sample_onboarding_event()),
    ];
    for (i, event) in events.iter().enumerate() {
        let record = funnelhub_schemas::derived::DedupedEvent {
            dedupe_key: format!("key-{i}"),
            first_seen: funnelhub_schemas::common::SourcePosition {
                topic: "raw".into(),
                partition: 0,
                offset: i as i64,
            },
            deduped_at: 1_790_000_000_000 + i as i64,
            event: event.clone(),
        };
        produce(
            &kafka,
            &topic,
            &format!("key-{i}"),
            &codec.encode(&record).expect("encodes"),
        )
        .await;
    }

    let output = tokio::process::Command::new(&python)
        .args([
            "tests/confluent/read_topic.py",
            "--brokers",
            &kafka.brokers,
            "--registry",
            &running.url(),
        ])
        .args(["--topic", &topic, "--count", "3"])
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {python} (scripts/test installs it): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut values: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
        .collect();
    values.sort_by_key(|v| v["key"].as_str().map(str::to_owned));
    assert_eq!(values.len(), 3);
    let hit = sample_tracking_hit();
    assert_eq!(values[0]["value"]["dedupe_key"], "key-0");
    assert_eq!(values[0]["value"]["deduped_at"], 1_790_000_000_000i64);
    assert_eq!(values[0]["value"]["event"]["session_id"], hit.session_id);
    assert_eq!(
        values[0]["value"]["event"]["envelope"]["event_type"],
        "click"
    );
    assert_eq!(
        values[0]["value"]["event"]["envelope"]["occurred_at"],
        hit.envelope.occurred_at
    );
    assert_eq!(
        values[0]["value"]["event"]["click_ids"]["fbc"],
        "fb.1.1790000000000.IwAR2xYz"
    );
    assert_eq!(
        values[1]["value"]["event"]["order_id"],
        sample_order_event().order_id
    );
    assert_eq!(values[1]["value"]["event"]["amount_minor"], 19_700);
    assert_eq!(values[2]["value"]["event"]["attributes"]["records"], "3");
    running.stop().await.expect("stops");
}
