//! The `.avsc` files under `schemas/avro/`, made self-contained and parsed once.
//!
//! Shared named types (the envelope, consent, hashed identity...) live in
//! `avro/common/` and are referenced by full name from the top-level schemas, so each
//! definition is written once. A schema registry (and every Confluent client) needs one
//! self-contained document per subject, so [`SchemaSet`] inlines each referenced
//! named type at its first use, in the order an Avro parser visits the document.

use std::collections::{BTreeMap, HashSet};
use std::sync::LazyLock;

use apache_avro::Schema;
use serde_json::Value;

use crate::Error;

/// Every `.avsc` file, by file name. Top-level schemas first, then `common/`.
const FILES: &[(&str, &str)] = &[
    ("TrackingHit", include_str!("../avro/TrackingHit.avsc")),
    ("OrderEvent", include_str!("../avro/OrderEvent.avsc")),
    (
        "OnboardingEvent",
        include_str!("../avro/OnboardingEvent.avsc"),
    ),
    ("RawWebhook", include_str!("../avro/RawWebhook.avsc")),
    ("DedupedEvent", include_str!("../avro/DedupedEvent.avsc")),
    (
        "FunnelTransition",
        include_str!("../avro/FunnelTransition.avsc"),
    ),
    ("OpsTicket", include_str!("../avro/OpsTicket.avsc")),
    ("MatchResult", include_str!("../avro/MatchResult.avsc")),
    (
        "CapiDispatchRequest",
        include_str!("../avro/CapiDispatchRequest.avsc"),
    ),
    (
        "DispatchAttempt",
        include_str!("../avro/DispatchAttempt.avsc"),
    ),
    ("DlqRecord", include_str!("../avro/DlqRecord.avsc")),
    ("DedupeEntry", include_str!("../avro/DedupeEntry.avsc")),
    ("FunnelSession", include_str!("../avro/FunnelSession.avsc")),
    ("MatchEntry", include_str!("../avro/MatchEntry.avsc")),
    ("Suppression", include_str!("../avro/Suppression.avsc")),
    ("TenantRecord", include_str!("../avro/TenantRecord.avsc")),
    ("SetupSession", include_str!("../avro/SetupSession.avsc")),
    (
        "SetupActionLog",
        include_str!("../avro/SetupActionLog.avsc"),
    ),
    ("SetupMessage", include_str!("../avro/SetupMessage.avsc")),
    (
        "common/EventType",
        include_str!("../avro/common/EventType.avsc"),
    ),
    ("common/Source", include_str!("../avro/common/Source.avsc")),
    (
        "common/Gateway",
        include_str!("../avro/common/Gateway.avsc"),
    ),
    (
        "common/Consent",
        include_str!("../avro/common/Consent.avsc"),
    ),
    (
        "common/HashedIdentity",
        include_str!("../avro/common/HashedIdentity.avsc"),
    ),
    (
        "common/Envelope",
        include_str!("../avro/common/Envelope.avsc"),
    ),
    ("common/Utm", include_str!("../avro/common/Utm.avsc")),
    (
        "common/ClickIds",
        include_str!("../avro/common/ClickIds.avsc"),
    ),
    (
        "common/SourcePosition",
        include_str!("../avro/common/SourcePosition.avsc"),
    ),
    ("common/Sealed", include_str!("../avro/common/Sealed.avsc")),
];

/// One self-contained record schema: its JSON (what a registry stores) and the parsed form.
#[derive(Debug)]
pub struct RecordSchema {
    /// Full Avro name, e.g. `io.funnelhub.events.TrackingHit`.
    pub full_name: String,
    /// Self-contained JSON document.
    pub json: String,
    /// Parsed schema.
    pub schema: Schema,
}

/// All top-level record schemas, keyed by full name.
#[derive(Debug)]
pub struct SchemaSet {
    records: BTreeMap<String, RecordSchema>,
}

static SCHEMA_SET: LazyLock<SchemaSet> =
    LazyLock::new(|| SchemaSet::load().expect("the bundled .avsc files are valid"));

impl SchemaSet {
    /// The schemas bundled in this crate (checked by this crate's tests).
    pub fn bundled() -> &'static SchemaSet {
        &SCHEMA_SET
    }

    fn load() -> Result<Self, Error> {
        let mut definitions = BTreeMap::new();
        let mut top_level = Vec::new();
        for (file, text) in FILES {
            let json: Value = serde_json::from_str(text)
                .map_err(|e| Error::Schema(format!("{file}.avsc: {e}")))?;
            let name =
                full_name(&json).ok_or_else(|| Error::Schema(format!("{file}.avsc: no name")))?;
            if !file.starts_with("common/") {
                top_level.push(name.clone());
            }
            definitions.insert(name, json);
        }
        let mut records = BTreeMap::new();
        for name in top_level {
            let mut defined = HashSet::new();
            let inlined = inline(&definitions[&name], &definitions, &mut defined, None);
            let json = serde_json::to_string(&inlined).expect("a JSON value serializes");
            let schema =
                Schema::parse_str(&json).map_err(|e| Error::Schema(format!("{name}: {e}")))?;
            records.insert(
                name.clone(),
                RecordSchema {
                    full_name: name,
                    json,
                    schema,
                },
            );
        }
        Ok(Self { records })
    }

    /// A record schema by full name.
    pub fn get(&self, full_name: &str) -> Option<&RecordSchema> {
        self.records.get(full_name)
    }

    /// Every top-level record schema.
    pub fn iter(&self) -> impl Iterator<Item = &RecordSchema> {
        self.records.values()
    }
}

fn full_name(json: &Value) -> Option<String> {
    let name = json.get("name")?.as_str()?;
    Some(match json.get("namespace").and_then(Value::as_str) {
        Some(ns) if !name.contains('.') => format!("{ns}.{name}"),
        _ => name.to_owned(),
    })
}

/// Replace references to known named types by their definition, the first time each
/// appears in document order; later references stay names, as Avro requires.
fn inline(
    node: &Value,
    definitions: &BTreeMap<String, Value>,
    defined: &mut HashSet<String>,
    namespace: Option<&str>,
) -> Value {
    match node {
        Value::String(reference) => {
            let qualified = match namespace {
                Some(ns) if !reference.contains('.') => format!("{ns}.{reference}"),
                _ => reference.clone(),
            };
            match definitions.get(&qualified) {
                Some(definition) if defined.insert(qualified.clone()) => {
                    inline(definition, definitions, defined, namespace)
                }
                _ => node.clone(),
            }
        }
        Value::Array(branches) => Value::Array(
            branches
                .iter()
                .map(|b| inline(b, definitions, defined, namespace))
                .collect(),
        ),
        Value::Object(object) => {
            let mut out = object.clone();
            let is_named_type = matches!(
                object.get("type").and_then(Value::as_str),
                Some("record" | "enum" | "fixed")
            );
            let own_namespace = if is_named_type {
                let name = full_name(node);
                if let Some(name) = &name {
                    defined.insert(name.clone());
                }
                name.and_then(|n| n.rsplit_once('.').map(|(ns, _)| ns.to_owned()))
            } else {
                None
            };
            let ns = own_namespace.as_deref().or(namespace);
            if let Some(Value::Array(fields)) = object.get("fields") {
                let fields = fields
                    .iter()
                    .map(|field| {
                        let mut field = field.clone();
                        if let Some(t) = field.get("type").cloned() {
                            field["type"] = inline(&t, definitions, defined, ns);
                        }
                        field
                    })
                    .collect();
                out.insert("fields".into(), Value::Array(fields));
            }
            for key in ["items", "values"] {
                if let Some(t) = object.get(key) {
                    out.insert(key.into(), inline(t, definitions, defined, ns));
                }
            }
            if let Some(t @ (Value::Object(_) | Value::Array(_))) = object.get("type") {
                out.insert("type".into(), inline(t, definitions, defined, ns));
            }
            Value::Object(out)
        }
        _ => node.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_top_level_schema_is_self_contained() {
        let set = SchemaSet::bundled();
        assert_eq!(set.iter().count(), 19);
        for record in set.iter() {
            // Parsing alone (no other schemas supplied) proves no dangling reference.
            let reparsed = Schema::parse_str(&record.json).expect(&record.full_name);
            assert_eq!(reparsed.canonical_form(), record.schema.canonical_form());
        }
    }

    #[test]
    fn shared_types_are_defined_once_per_document() {
        let deduped = SchemaSet::bundled()
            .get("io.funnelhub.derived.DedupedEvent")
            .expect("present");
        // The envelope is used by all three union branches but defined only once.
        assert_eq!(deduped.json.matches("\"name\":\"Envelope\"").count(), 1);
        assert!(deduped.json.contains("\"io.funnelhub.common.Envelope\""));
    }
}
