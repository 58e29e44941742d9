//! The control topic on the real broker: what one process writes, another applies live;
//! a record sealed with a key a process does not hold leaves that tenant as it was; an
//! older revision never replaces a newer one; rotation re-wraps and keeps every tenant
//! readable with the new key alone.

use std::time::Duration;

use funnelhub_kafka::{AckedProducer, TopicCodec};
use funnelhub_schemas::control::TenantRecord;
use funnelhub_schemas::{Catalog, Topic};
use funnelhub_tenants::{record, Keyring, Secret, TenantConfig, TenantDirectory, TenantStore};

const WAIT: Duration = Duration::from_secs(10);

fn shop(token: &str) -> TenantConfig {
    let mut tenant = TenantConfig::new("shop");
    tenant.meta_pixel_id = Some("123".into());
    tenant.meta_access_token = Some(Secret::from(token));
    tenant
}

async fn token_becomes(directory: &TenantDirectory, token: &str) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if directory
            .get("shop")
            .and_then(|t| t.meta_access_token.clone())
            .is_some_and(|t| t.expose() == token)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_every_follower_in_order_and_survive_key_rotation() {
    let (kafka, _server, registry) = funnelhub_registry::test_stack("tenants").await;
    funnelhub_kafka::admin::ensure_topics(
        &kafka,
        &funnelhub_kafka::admin::catalog_requests(&kafka),
    )
    .await
    .expect("topics");
    let k1 = Keyring::generate("k1");
    let k2 = Keyring::generate("k2");
    let keys = Keyring::parse(&k1).expect("k1");
    let follow = |keys: Keyring, seeds: Vec<TenantConfig>| {
        let (kafka, registry) = (kafka.clone(), registry.clone());
        async move {
            TenantDirectory::follow(&kafka, &registry, seeds, keys)
                .await
                .expect("follows")
        }
    };

    // Two processes: the writer, and a service started before any write (with a seed).
    let writer = follow(keys.clone(), Vec::new()).await;
    let service = follow(keys.clone(), vec![shop("seed-token")]).await;
    assert!(service.is_seed_only("shop"));
    let store = TenantStore::connect(&kafka, &registry, keys.clone(), writer.clone())
        .await
        .expect("store");
    assert_eq!(store.put(&shop("token-1"), "test").await.expect("put"), 1);
    assert!(
        token_becomes(&service, "token-1").await,
        "applied live over the seed"
    );
    assert_eq!(store.put(&shop("token-2"), "test").await.expect("put"), 2);
    assert!(token_becomes(&service, "token-2").await);

    // An older revision written late (a slow second writer) is not applied.
    let topic = Catalog::new(&kafka.topic_prefix).name(Topic::Tenants);
    let codec = TopicCodec::<TenantRecord>::register(&registry, &topic)
        .await
        .expect("codec");
    let producer = AckedProducer::new(&kafka, "test", WAIT).expect("producer");
    let stale = record::to_record(&shop("stale-token"), 1, "slow writer", &keys).expect("seals");
    producer
        .send(
            &topic,
            b"shop",
            Some(&codec.encode(&stale).expect("encodes")),
        )
        .await
        .expect("written");
    // A record sealed with a key the service does not hold: logged, not applied.
    let foreign = Keyring::parse(&Keyring::generate("k3")).expect("k3");
    let unreadable =
        record::to_record(&shop("foreign-token"), 3, "other key", &foreign).expect("seals");
    producer
        .send(
            &topic,
            b"shop",
            Some(&codec.encode(&unreadable).expect("encodes")),
        )
        .await
        .expect("written");
    // A marker after both: once it is applied, both were read.
    let mut marker = TenantConfig::new("marker");
    marker.meta_pixel_id = Some("9".into());
    store.put(&marker, "test").await.expect("marker");
    let deadline = tokio::time::Instant::now() + WAIT;
    while service.get("marker").is_none() {
        assert!(tokio::time::Instant::now() < deadline, "marker not applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token = service
        .get("shop")
        .and_then(|t| t.meta_access_token.clone());
    assert_eq!(
        token.map(|t| t.expose().to_owned()).as_deref(),
        Some("token-2")
    );
    assert_eq!(service.record("shop").map(|r| r.revision), Some(2));

    // A new process reads the whole history the same way.
    let late = follow(keys.clone(), Vec::new()).await;
    assert!(token_becomes(&late, "token-2").await);

    // Rotation: with k2 first, every tenant is re-wrapped; k2 alone then reads them all.
    let both = Keyring::parse(&format!("{k2},{k1}")).expect("both");
    let rotating = follow(both.clone(), Vec::new()).await;
    let rotator = TenantStore::connect(&kafka, &registry, both, rotating.clone())
        .await
        .expect("store");
    let rotated = rotator.rotate().await.expect("rotates");
    let mut ids: Vec<&str> = rotated.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["marker", "shop"]);
    assert!(rotated.iter().all(|(_, from)| from == "k1"));
    assert!(
        rotator.rotate().await.expect("again").is_empty(),
        "idempotent"
    );
    let new_only = follow(Keyring::parse(&k2).expect("k2"), Vec::new()).await;
    assert!(
        token_becomes(&new_only, "token-2").await,
        "readable with k2 alone"
    );
    assert_eq!(
        new_only
            .get("marker")
            .and_then(|t| t.meta_pixel_id.clone())
            .as_deref(),
        Some("9")
    );
}
