//! Test and benchmark helpers (feature `testing`): dispatch requests as the matcher writes
//! them.

use std::sync::Arc;

use funnelhub_kafka::stage::{send_all, Output};
use funnelhub_kafka::{client, KafkaConfig, SchemaRegistry, TopicCodec};
use funnelhub_schemas::derived::CapiDispatchRequest;
use funnelhub_schemas::ids::now_ms;
use funnelhub_schemas::testing::sample_derived;
use funnelhub_schemas::{Catalog, Topic};

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
    let name = Catalog::new(&kafka.topic_prefix).name(Topic::CapiRequests);
    let codec = TopicCodec::<CapiDispatchRequest>::register(registry, &name).await?;
    let topic: Arc<str> = Arc::from(codec.topic());
    let mut outputs = Vec::with_capacity(requests.len());
    for r in requests {
        let output = Output {
            topic: topic.clone(),
            key: format!("{}:{}", r.tenant_id, r.event_id).into_bytes(),
            value: codec.encode(r)?,
        };
        outputs.push((output, None));
    }
    let producer = client::producer(kafka, "funnelhub-capi-writer")?;
    send_all(&producer, outputs.into_iter()).await?;
    Ok(())
}
