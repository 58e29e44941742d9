//! Confluent's compatibility levels, checked with `apache-avro`'s schema resolution rules.

use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use apache_avro::Schema;
use serde::{Deserialize, Serialize};

/// A subject's or the registry's compatibility level, spelled as Confluent spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompatibilityLevel {
    None,
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl CompatibilityLevel {
    /// Parse Confluent's spelling (case-insensitive, as Confluent accepts it).
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(text.to_ascii_uppercase())).ok()
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::FullTransitive
        )
    }

    /// Can a schema registered with this level be read/written alongside `existing`
    /// (oldest first)? Returns the reasons it cannot.
    pub fn check(self, candidate: &Schema, existing: &[&Schema]) -> Result<(), Vec<String>> {
        let against: &[&Schema] = match (self.transitive(), existing.last()) {
            (_, None) => &[],
            (true, Some(_)) => existing,
            (false, Some(_)) => &existing[existing.len() - 1..],
        };
        let (backward, forward) = match self {
            CompatibilityLevel::None => (false, false),
            CompatibilityLevel::Backward | CompatibilityLevel::BackwardTransitive => (true, false),
            CompatibilityLevel::Forward | CompatibilityLevel::ForwardTransitive => (false, true),
            CompatibilityLevel::Full | CompatibilityLevel::FullTransitive => (true, true),
        };
        let mut reasons = Vec::new();
        for old in against {
            if backward {
                if let Some(reason) = can_read(old, candidate) {
                    reasons.push(format!(
                        "new schema cannot read data written with an earlier one: {reason}"
                    ));
                }
            }
            if forward {
                if let Some(reason) = can_read(candidate, old) {
                    reasons.push(format!(
                        "an earlier schema cannot read data written with the new one: {reason}"
                    ));
                }
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }
}

/// `None` if `reader` reads everything `writer` can write.
fn can_read(writer: &Schema, reader: &Schema) -> Option<String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => None,
        Ok(Compatibility::Partial) => Some(
            "some values (enum symbols or union branches) have no counterpart in the reader".into(),
        ),
        Err(e) => Some(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &str) -> Schema {
        Schema::parse_str(&format!(
            r#"{{"type":"record","name":"R","fields":[{fields}]}}"#
        ))
        .expect("valid")
    }

    #[test]
    fn backward_allows_new_field_with_default_and_refuses_without() {
        let v1 = record(r#"{"name":"a","type":"string"}"#);
        let with_default =
            record(r#"{"name":"a","type":"string"},{"name":"b","type":"int","default":0}"#);
        let without = record(r#"{"name":"a","type":"string"},{"name":"b","type":"int"}"#);
        assert!(CompatibilityLevel::Backward
            .check(&with_default, &[&v1])
            .is_ok());
        let reasons = CompatibilityLevel::Backward
            .check(&without, &[&v1])
            .expect_err("incompatible");
        assert!(reasons[0].contains('b'), "{reasons:?}");
        assert!(CompatibilityLevel::None.check(&without, &[&v1]).is_ok());
    }

    #[test]
    fn forward_and_transitive_levels() {
        let v1 = record(r#"{"name":"a","type":"string"}"#);
        let v2 = record(r#"{"name":"a","type":"string"},{"name":"b","type":"int","default":0}"#);
        let v3 = record(r#"{"name":"b","type":"int","default":0}"#);
        // Dropping `a` (no default in v1) breaks forward compatibility with v1 and v2.
        assert!(CompatibilityLevel::Forward.check(&v3, &[&v1, &v2]).is_err());
        // v3 reads v2's data (b has a default) but is checked against v1 only if transitive.
        assert!(CompatibilityLevel::Backward.check(&v3, &[&v1, &v2]).is_ok());
        assert!(CompatibilityLevel::BackwardTransitive
            .check(&v3, &[&v1, &v2])
            .is_ok());
        assert_eq!(
            CompatibilityLevel::parse("full_transitive"),
            Some(CompatibilityLevel::FullTransitive)
        );
        assert_eq!(CompatibilityLevel::parse("sideways"), None);
    }
}
