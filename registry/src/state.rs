//! The registry's state, derived only from the `_schemas` log.
//!
//! Log records use Confluent Schema Registry's own `_schemas` format (JSON keys and values),
//! so the log reads the same way Confluent's does. Folding the records in offset order
//! gives the same ids and versions on every instance and after every restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use apache_avro::Schema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::compatibility::CompatibilityLevel;
use crate::error::RegistryError;

/// Key of a `_schemas` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "keytype", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LogKey {
    /// One version of a subject.
    Schema {
        subject: String,
        version: u32,
        magic: u8,
    },
    /// Compatibility level, of one subject or (subject `null`) the registry.
    Config { subject: Option<String>, magic: u8 },
    /// Record types this registry does not use (NOOP, MODE, DELETE_SUBJECT...).
    #[serde(other)]
    Other,
}

/// Value of a [`LogKey::Schema`] record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaValue {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_type: Option<String>,
    pub schema: String,
    #[serde(default)]
    pub deleted: bool,
}

/// Value of a [`LogKey::Config`] record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigValue {
    pub compatibility_level: CompatibilityLevel,
}

/// A schema known by id.
#[derive(Debug)]
pub struct StoredSchema {
    pub id: u32,
    /// The text as first registered.
    pub schema: String,
    pub parsed: Schema,
}

#[derive(Debug, Clone, Copy)]
struct SubjectVersion {
    id: u32,
    deleted: bool,
}

/// What registering a schema under a subject means, decided against the current state.
#[derive(Debug, PartialEq, Eq)]
pub enum Registration {
    /// The subject already has this schema.
    Existing { id: u32 },
    /// Append this record.
    New { key: LogKey, value: SchemaValue },
}

/// Which version of a subject a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSpec {
    Latest,
    Number(u32),
}

impl VersionSpec {
    /// Confluent accepts `latest`, `-1` or a number from 1 to 2^31-1.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        match text {
            "latest" | "-1" => Ok(VersionSpec::Latest),
            _ => match text.parse::<u32>() {
                Ok(n) if (1..=i32::MAX as u32).contains(&n) => Ok(VersionSpec::Number(n)),
                _ => Err(RegistryError::InvalidVersion(text.to_owned())),
            },
        }
    }
}

/// Everything the registry knows.
#[derive(Debug, Default)]
pub struct State {
    schemas: BTreeMap<u32, Arc<StoredSchema>>,
    ids_by_canonical: HashMap<String, u32>,
    subjects: BTreeMap<String, BTreeMap<u32, SubjectVersion>>,
    global_level: Option<CompatibilityLevel>,
    subject_levels: HashMap<String, CompatibilityLevel>,
}

/// Parse an Avro schema and give its identity: the JSON with object keys sorted and no
/// white space, so formatting never makes two equal schemas look different.
pub fn parse_schema(text: &str) -> Result<(Schema, String), RegistryError> {
    let json: Value = serde_json::from_str(text)
        .map_err(|e| RegistryError::InvalidSchema(format!("not JSON: {e}")))?;
    let parsed = Schema::parse(&json).map_err(|e| RegistryError::InvalidSchema(e.to_string()))?;
    let mut canonical = String::with_capacity(text.len());
    write_sorted(&json, &mut canonical);
    Ok((parsed, canonical))
}

fn write_sorted(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, &Value> = map.iter().collect();
            out.push('{');
            for (i, (k, v)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_sorted(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

impl State {
    /// Fold one log record in. Unknown or malformed records are reported and skipped by
    /// the caller; they never stop the log from being read.
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        let key: LogKey = serde_json::from_slice(key).map_err(|e| format!("bad key: {e}"))?;
        match (key, value) {
            (
                LogKey::Schema {
                    subject, version, ..
                },
                None,
            ) => {
                if let Some(versions) = self.subjects.get_mut(&subject) {
                    versions.remove(&version);
                }
            }
            (LogKey::Schema { .. }, Some(value)) => {
                let value: SchemaValue =
                    serde_json::from_slice(value).map_err(|e| format!("bad schema value: {e}"))?;
                if !self.schemas.contains_key(&value.id) {
                    let (parsed, canonical) =
                        parse_schema(&value.schema).map_err(|e| e.to_string())?;
                    self.ids_by_canonical.entry(canonical).or_insert(value.id);
                    self.schemas.insert(
                        value.id,
                        Arc::new(StoredSchema {
                            id: value.id,
                            schema: value.schema,
                            parsed,
                        }),
                    );
                }
                self.subjects.entry(value.subject).or_default().insert(
                    value.version,
                    SubjectVersion {
                        id: value.id,
                        deleted: value.deleted,
                    },
                );
            }
            (LogKey::Config { subject, .. }, value) => {
                let level = value
                    .map(serde_json::from_slice::<ConfigValue>)
                    .transpose()
                    .map_err(|e| format!("bad config value: {e}"))?
                    .map(|c| c.compatibility_level);
                match (subject, level) {
                    (None, level) => self.global_level = level,
                    (Some(s), Some(level)) => {
                        self.subject_levels.insert(s, level);
                    }
                    (Some(s), None) => {
                        self.subject_levels.remove(&s);
                    }
                }
            }
            (LogKey::Other, _) => {}
        }
        Ok(())
    }

    fn live_versions(&self, subject: &str) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.subjects
            .get(subject)
            .into_iter()
            .flat_map(|v| v.iter())
            .filter(|(_, sv)| !sv.deleted)
            .map(|(version, sv)| (*version, sv.id))
    }

    /// Subjects with at least one live version.
    pub fn subjects(&self) -> Vec<String> {
        self.subjects
            .keys()
            .filter(|s| self.live_versions(s).next().is_some())
            .cloned()
            .collect()
    }

    /// Live versions of `subject`, oldest first.
    pub fn versions(&self, subject: &str) -> Result<Vec<u32>, RegistryError> {
        let versions: Vec<u32> = self.live_versions(subject).map(|(v, _)| v).collect();
        if versions.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        Ok(versions)
    }

    /// One version of `subject`.
    pub fn version(
        &self,
        subject: &str,
        spec: VersionSpec,
    ) -> Result<(u32, Arc<StoredSchema>), RegistryError> {
        let versions = self.versions(subject)?;
        let version = match spec {
            VersionSpec::Latest => *versions.last().expect("versions() is never empty"),
            VersionSpec::Number(n) if versions.contains(&n) => n,
            VersionSpec::Number(n) => return Err(RegistryError::VersionNotFound(n)),
        };
        let id = self.subjects[subject][&version].id;
        Ok((version, self.schemas[&id].clone()))
    }

    /// A schema by global id.
    pub fn schema(&self, id: u32) -> Result<Arc<StoredSchema>, RegistryError> {
        self.schemas
            .get(&id)
            .cloned()
            .ok_or(RegistryError::SchemaNotFound)
    }

    /// Every (subject, version) that uses schema `id`.
    pub fn usages(&self, id: u32) -> Vec<(String, u32)> {
        self.subjects
            .keys()
            .flat_map(|s| {
                self.live_versions(s)
                    .filter(move |(_, vid)| *vid == id)
                    .map(move |(v, _)| (s.clone(), v))
            })
            .collect()
    }

    /// The version of `subject` holding exactly this schema.
    pub fn lookup(
        &self,
        subject: &str,
        schema: &str,
    ) -> Result<(u32, Arc<StoredSchema>), RegistryError> {
        self.versions(subject)?;
        let (_, canonical) = parse_schema(schema)?;
        let id = self
            .ids_by_canonical
            .get(&canonical)
            .ok_or(RegistryError::SchemaNotFound)?;
        let (version, _) = self
            .live_versions(subject)
            .find(|(_, vid)| vid == id)
            .ok_or(RegistryError::SchemaNotFound)?;
        Ok((version, self.schemas[id].clone()))
    }

    /// The registry-wide level, if one was set.
    pub fn global_level(&self) -> Option<CompatibilityLevel> {
        self.global_level
    }

    /// `subject`'s own level, if one was set.
    pub fn subject_level(&self, subject: &str) -> Option<CompatibilityLevel> {
        self.subject_levels.get(subject).copied()
    }

    /// The level that applies to `subject`.
    pub fn effective_level(
        &self,
        subject: &str,
        default: CompatibilityLevel,
    ) -> CompatibilityLevel {
        self.subject_level(subject)
            .or(self.global_level)
            .unwrap_or(default)
    }

    /// Check `schema` against `subject`'s live versions at `level` (all of them, or only
    /// `only`). Returns the reasons it is incompatible.
    pub fn check(
        &self,
        subject: &str,
        candidate: &Schema,
        level: CompatibilityLevel,
        only: Option<u32>,
    ) -> Result<(), Vec<String>> {
        let existing: Vec<&Schema> = self
            .live_versions(subject)
            .filter(|(v, _)| only.is_none_or(|o| o == *v))
            .map(|(_, id)| &self.schemas[&id].parsed)
            .collect();
        level.check(candidate, &existing)
    }

    /// Decide what registering `schema` under `subject` takes.
    pub fn plan_registration(
        &self,
        subject: &str,
        schema: &str,
        default_level: CompatibilityLevel,
    ) -> Result<Registration, RegistryError> {
        let (parsed, canonical) = parse_schema(schema)?;
        let existing_id = self.ids_by_canonical.get(&canonical).copied();
        if let Some(id) = existing_id {
            if self.live_versions(subject).any(|(_, vid)| vid == id) {
                return Ok(Registration::Existing { id });
            }
        }
        let level = self.effective_level(subject, default_level);
        self.check(subject, &parsed, level, None)
            .map_err(|reasons| RegistryError::Incompatible(subject.to_owned(), reasons))?;
        let id =
            existing_id.unwrap_or_else(|| self.schemas.keys().next_back().map_or(1, |max| max + 1));
        // Versions keep counting after deletions, as Confluent's do.
        let version = self
            .subjects
            .get(subject)
            .and_then(|v| v.keys().next_back())
            .map_or(1, |max| max + 1);
        Ok(Registration::New {
            key: LogKey::Schema {
                subject: subject.to_owned(),
                version,
                magic: 1,
            },
            value: SchemaValue {
                subject: subject.to_owned(),
                version,
                id,
                schema_type: None,
                schema: schema.to_owned(),
                deleted: false,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#;
    const V2: &str = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"int","default":0}]}"#;
    const BAD: &str = r#"{"type":"record","name":"R","fields":[{"name":"c","type":"int"}]}"#;

    fn register(state: &mut State, subject: &str, schema: &str) -> u32 {
        match state
            .plan_registration(subject, schema, CompatibilityLevel::Backward)
            .expect("compatible")
        {
            Registration::Existing { id } => id,
            Registration::New { key, value } => {
                let id = value.id;
                state
                    .apply(
                        &serde_json::to_vec(&key).expect("key"),
                        Some(&serde_json::to_vec(&value).expect("value")),
                    )
                    .expect("applies");
                id
            }
        }
    }

    #[test]
    fn ids_are_global_versions_per_subject_and_registration_is_idempotent() {
        let mut state = State::default();
        assert_eq!(register(&mut state, "a-value", V1), 1);
        assert_eq!(register(&mut state, "a-value", V2), 2);
        // Same schema, reformatted: same id, no new version.
        let reformatted = V1.replace(',', " , ");
        assert_eq!(register(&mut state, "a-value", &reformatted), 1);
        assert_eq!(state.versions("a-value").expect("exists"), vec![1, 2]);
        // Same schema under another subject reuses the id, starts at version 1.
        assert_eq!(register(&mut state, "b-value", V2), 2);
        assert_eq!(state.versions("b-value").expect("exists"), vec![1]);
        assert_eq!(
            state.usages(2),
            vec![("a-value".into(), 2), ("b-value".into(), 1)]
        );
    }

    #[test]
    fn incompatible_schema_is_refused_with_reasons() {
        let mut state = State::default();
        register(&mut state, "a-value", V1);
        let err = state
            .plan_registration("a-value", BAD, CompatibilityLevel::Backward)
            .expect_err("incompatible");
        assert!(
            matches!(err, RegistryError::Incompatible(_, ref r) if !r.is_empty()),
            "{err:?}"
        );
        // Under NONE the same change is accepted.
        assert!(state
            .plan_registration("a-value", BAD, CompatibilityLevel::None)
            .is_ok());
    }

    #[test]
    fn confluent_log_records_are_understood() {
        let mut state = State::default();
        // Records exactly as Confluent Schema Registry writes them.
        state
            .apply(
                br#"{"keytype":"SCHEMA","subject":"x-value","version":1,"magic":1}"#,
                Some(format!(r#"{{"subject":"x-value","version":1,"id":21,"schema":{},"deleted":false}}"#, serde_json::to_string(V1).expect("str")).as_bytes()),
            )
            .expect("schema record");
        state
            .apply(
                br#"{"keytype":"CONFIG","subject":null,"magic":0}"#,
                Some(br#"{"compatibilityLevel":"FULL"}"#),
            )
            .expect("config record");
        state
            .apply(br#"{"keytype":"NOOP","magic":0}"#, None)
            .expect("ignored");
        assert_eq!(state.schema(21).expect("known").schema, V1);
        assert_eq!(state.global_level(), Some(CompatibilityLevel::Full));
        // A tombstone removes the version.
        state
            .apply(
                br#"{"keytype":"SCHEMA","subject":"x-value","version":1,"magic":1}"#,
                None,
            )
            .expect("tombstone");
        assert!(matches!(
            state.versions("x-value"),
            Err(RegistryError::SubjectNotFound(_))
        ));
    }

    #[test]
    fn version_specs() {
        assert_eq!(
            VersionSpec::parse("latest").expect("ok"),
            VersionSpec::Latest
        );
        assert_eq!(VersionSpec::parse("-1").expect("ok"), VersionSpec::Latest);
        assert_eq!(VersionSpec::parse("3").expect("ok"), VersionSpec::Number(3));
        assert!(VersionSpec::parse("0").is_err());
        assert!(VersionSpec::parse("x").is_err());
    }
}
