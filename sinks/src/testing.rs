//! Test and benchmark helpers (feature `testing`): dispatch requests as the matcher writes
//! them.

use std::collections::BTreeMap;
use std::sync::Arc;

use funnelhub_kafka::stage::{send_all, Output};
use funnelhub_kafka::{client, KafkaConfig, SchemaRegistry, TopicCodec};
use funnelhub_schemas::derived::CapiDispatchRequest;
use funnelhub_schemas::ids::now_ms;
use funnelhub_schemas::testing::sample_derived;
use funnelhub_schemas::{AvroRecord, Catalog, Topic};

use crate::meta_capi::MetaAccess;

/// The tests' tenants and their pixels.
pub const TEST_TENANTS: [(&str, &str); 2] = [("acme", "111"), ("beta", "222")];

/// The access token of a test pixel.
pub fn test_token(pixel: &str) -> String {
    format!("EAAB-test-token-of-{pixel}")
}

/// Each test tenant's pixel and token, as the sink is configured.
pub fn test_access() -> BTreeMap<String, MetaAccess> {
    TEST_TENANTS
        .iter()
        .map(|(tenant, pixel)| {
            let access = MetaAccess {
                pixel_id: pixel.to_string(),
                access_token: test_token(pixel).into(),
                test_event_code: None,
            };
            (tenant.to_string(), access)
        })
        .collect()
}

/// Each test pixel and its token, as the emulator knows them.
pub fn test_pixels() -> BTreeMap<String, String> {
    TEST_TENANTS
        .iter()
        .map(|(_, pixel)| (pixel.to_string(), test_token(pixel)))
        .collect()
}

/// Meta's test vector for `john_smith@gmail.com`.
pub const EMAIL_HASH: &str = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f";

/// `n` valid requests of `tenant` for `pixel`, a minute old: purchases, and a page view
/// every third; event ids `{tenant}-{i}`.
pub fn dispatch_requests(tenant: &str, pixel: &str, n: usize) -> Vec<CapiDispatchRequest> {
    let mut template = sample_derived().2;
    template.identity.email_hash = Some(EMAIL_HASH.into());
    (0..n)
        .map(|i| {
            let mut r = template.clone();
            r.tenant_id = tenant.into();
            r.pixel_id = pixel.into();
            r.event_id = format!("{tenant}-{i}");
            r.dispatch_id = format!("d-{tenant}-{i}");
            r.event_time = now_ms() - 60_000;
            if i % 3 == 0 {
                r.event_name = "PageView".into();
                r.value = None;
                r.currency = None;
                r.content_ids.clear();
                r.order_id = None;
            }
            r
        })
        .collect()
}

/// Write `requests` to `capi.requests` as the matcher does (key `tenant:event_id`).
pub async fn write_requests(
    kafka: &KafkaConfig,
    registry: &SchemaRegistry,
    requests: &[CapiDispatchRequest],
) -> Result<(), funnelhub_kafka::Error> {
    let keyed = requests
        .iter()
        .map(|r| (format!("{}:{}", r.tenant_id, r.event_id), r));
    write_records(kafka, registry, Topic::CapiRequests, keyed).await
}

/// Write `records` (key, value) to `topic` of `kafka`'s catalog, acknowledged.
pub async fn write_records<'a, T: AvroRecord + 'a>(
    kafka: &KafkaConfig,
    registry: &SchemaRegistry,
    topic: Topic,
    records: impl IntoIterator<Item = (String, &'a T)>,
) -> Result<(), funnelhub_kafka::Error> {
    let name = Catalog::new(&kafka.topic_prefix).name(topic);
    let codec = TopicCodec::<T>::register(registry, &name).await?;
    let topic: Arc<str> = Arc::from(codec.topic());
    let mut outputs = Vec::new();
    for (key, value) in records {
        let output = Output {
            topic: topic.clone(),
            key: key.into_bytes(),
            value: codec.encode(value)?,
        };
        outputs.push((output, None));
    }
    let producer = client::producer(kafka, "funnelhub-test-writer")?;
    send_all(&producer, outputs.into_iter()).await?;
    Ok(())
}

/// The Graph API emulator on a free port, knowing the test pixels.
pub async fn test_emulator(
    faults: funnelhub_emulators::Faults,
) -> funnelhub_emulators::MetaGraphEmulator {
    funnelhub_emulators::MetaGraphEmulator::start(([127, 0, 0, 1], 0).into(), test_pixels(), faults)
        .await
        .expect("the emulator starts")
}
