//! Every record type survives encode → decode unchanged (no registry: schema id is fixed).

use funnelhub_schemas::codec::{encode, split_frame};
use funnelhub_schemas::testing::*;
use funnelhub_schemas::{AvroRecord, Decoder};
use proptest::prelude::*;

fn roundtrip<T: AvroRecord + PartialEq + std::fmt::Debug>(record: &T) {
    let bytes = encode(7, record).expect("encodes");
    let (id, body) = split_frame(&bytes).expect("framed");
    assert_eq!(id, 7);
    let decoded: T = Decoder::<T>::bundled().decode(body).expect("decodes");
    assert_eq!(&decoded, record);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn tracking_hits(r in arb_tracking_hit()) { roundtrip(&r) }
    #[test]
    fn order_events(r in arb_order_event()) { roundtrip(&r) }
    #[test]
    fn onboarding_events(r in arb_onboarding_event()) { roundtrip(&r) }
    #[test]
    fn deduped_events(r in arb_deduped_event()) { roundtrip(&r) }
    #[test]
    fn dlq_records(r in arb_dlq_record()) { roundtrip(&r) }
}

#[test]
fn samples_of_every_type() {
    roundtrip(&sample_tracking_hit());
    roundtrip(&sample_order_event());
    roundtrip(&sample_onboarding_event());
    roundtrip(&sample_raw_webhook());
    roundtrip(&sample_ops_ticket());
    let (transition, matched, request, attempt) = sample_derived();
    roundtrip(&transition);
    roundtrip(&matched);
    roundtrip(&request);
    roundtrip(&attempt);
    let (dedupe, funnel) = sample_state_entries();
    roundtrip(&dedupe);
    roundtrip(&funnel);
    for entry in sample_match_entries() {
        roundtrip(&entry);
    }
}

/// A record written by an older schema (before `content_ids` existed) is read with the
/// field's default: the decoder resolves writer → reader schema.
#[test]
fn reads_records_written_with_an_older_compatible_schema() {
    use apache_avro::types::Value;
    use funnelhub_schemas::events::TrackingHit;

    let mut json: serde_json::Value =
        serde_json::from_str(&TrackingHit::record_schema().json).expect("json");
    let fields = json["fields"].as_array_mut().expect("fields");
    fields.retain(|f| f["name"] != "content_ids");
    let old = apache_avro::Schema::parse(&json).expect("old schema parses");
    let old: &'static apache_avro::Schema = Box::leak(Box::new(old));

    let hit = sample_tracking_hit();
    let Value::Record(mut values) = apache_avro::to_value(&hit).expect("value") else {
        panic!("a record")
    };
    values.retain(|(name, _)| name != "content_ids");
    let value = Value::Record(values)
        .resolve(old)
        .expect("fits the old schema");
    let body = apache_avro::writer::datum::GenericDatumWriter::builder(old)
        .build()
        .and_then(|w| w.write_value_to_vec(value))
        .expect("old writer encodes");

    let decoded = Decoder::<TrackingHit>::for_writer(old)
        .expect("compatible")
        .decode(&body)
        .expect("decodes");
    assert_eq!(
        decoded,
        TrackingHit {
            content_ids: vec![],
            ..hit
        }
    );
}
