//! Avro values on Kafka through a Confluent-compatible schema registry.
//!
//! [`SchemaRegistry`] registers the bundled schema of each topic under the topic's value
//! subject (Confluent's TopicNameStrategy), so any Confluent client can read our topics,
//! and fetches writer schemas by id for decoding. [`TopicCodec`] is what producers and
//! consumers hold: encoding is synchronous (the writer id is known after registration),
//! decoding fetches an unknown writer schema once, then reuses it.
//!
//! Registry calls use `schema_registry_converter`; the bytes are made by
//! `funnelhub_schemas::codec`.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use apache_avro::Schema;
use funnelhub_schemas::codec::{encode, split_frame};
use funnelhub_schemas::{AvroRecord, Catalog, Decoder, RecordSchema, SchemaSet};
use schema_registry_converter::async_impl::schema_registry::{
    get_schema_by_id, post_schema, SrSettings,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};

use crate::{Error, SchemaRegistryConfig};

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not in the wire format, or the body does not decode with its writer schema.
    #[error("undecodable record: {0}")]
    Undecodable(String),
    /// The registry does not know the schema id in the record's header.
    #[error("unknown schema id {0}")]
    UnknownSchema(u32),
    /// The registry could not be asked; retry later.
    #[error("schema registry unavailable: {0}")]
    Registry(String),
}

impl DecodeError {
    /// Only registry outages are worth retrying; bad bytes stay bad (dead-letter them).
    pub fn is_retryable(&self) -> bool {
        matches!(self, DecodeError::Registry(_))
    }
}

/// A client of one schema registry, with a cache of writer schemas by id.
#[derive(Clone)]
pub struct SchemaRegistry {
    settings: Arc<SrSettings>,
    /// Writer schemas by id. Leaked on purpose: a process sees a handful of schema ids and
    /// keeps them for its lifetime, and decoders borrow them for `'static`.
    writers: Arc<RwLock<HashMap<u32, &'static Schema>>>,
}

impl std::fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistry").finish_non_exhaustive()
    }
}

impl SchemaRegistry {
    /// A client for the registry at `config.url`.
    pub fn new(config: &SchemaRegistryConfig) -> Result<Self, Error> {
        let settings = SrSettings::new_builder(config.url.clone())
            .no_proxy()
            .set_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Registry(e.to_string()))?;
        Ok(SchemaRegistry {
            settings: Arc::new(settings),
            writers: Arc::default(),
        })
    }

    /// Register `schema` under `subject` (idempotent: an identical schema gets its
    /// existing id). Fails if the registry refuses it as incompatible.
    pub async fn register(&self, subject: &str, schema: &RecordSchema) -> Result<u32, Error> {
        let supplied = SuppliedSchema::new(
            Some(schema.full_name.clone()),
            SchemaType::Avro,
            schema.json.clone(),
        );
        let registered = post_schema(&self.settings, subject.to_owned(), supplied)
            .await
            .map_err(|e| {
                let text = format!("registering {subject}: {}", describe(&e));
                if text.contains("status 409") || text.contains("status 422") {
                    Error::SchemaRejected(text)
                } else {
                    Error::Registry(text)
                }
            })?;
        Ok(registered.id)
    }

    /// Register the value schema of every catalog topic; returns (topic, schema id).
    pub async fn register_catalog(&self, catalog: &Catalog) -> Result<Vec<(String, u32)>, Error> {
        let mut ids = Vec::new();
        for (topic, name) in catalog.topics() {
            let schema = SchemaSet::bundled()
                .get(topic.spec().value_schema)
                .expect("catalog schemas are bundled (checked by funnelhub-schemas tests)");
            ids.push((
                name.clone(),
                self.register(&catalog.value_subject(topic), schema).await?,
            ));
        }
        Ok(ids)
    }

    /// The writer schema with `id`, from cache or from the registry.
    pub async fn writer_schema(&self, id: u32) -> Result<&'static Schema, DecodeError> {
        if let Some(schema) = self.writers.read().expect("not poisoned").get(&id) {
            return Ok(schema);
        }
        let registered = get_schema_by_id(id, &self.settings)
            .await
            .map_err(|e| classify(id, &e))?;
        let schema = Schema::parse_str(&registered.schema)
            .map_err(|e| DecodeError::Undecodable(format!("schema {id} does not parse: {e}")))?;
        let mut writers = self.writers.write().expect("not poisoned");
        Ok(*writers
            .entry(id)
            .or_insert_with(|| Box::leak(Box::new(schema))))
    }
}

fn describe(e: &SRCError) -> String {
    match &e.cause {
        Some(cause) => format!("{}: {cause}", e.error),
        None => e.error.clone(),
    }
}

/// 40403 is Confluent's "schema not found"; anything else is an outage to retry.
fn classify(id: u32, e: &SRCError) -> DecodeError {
    let text = describe(e);
    if text.contains("40403") || text.contains("status 404") {
        DecodeError::UnknownSchema(id)
    } else {
        DecodeError::Registry(text)
    }
}

/// Encoder and decoder of one topic's values of type `T`.
pub struct TopicCodec<T> {
    registry: SchemaRegistry,
    topic: String,
    schema_id: u32,
    decoders: RwLock<HashMap<u32, Arc<Decoder<T>>>>,
    _record: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for TopicCodec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicCodec")
            .field("topic", &self.topic)
            .field("schema_id", &self.schema_id)
            .finish_non_exhaustive()
    }
}

impl<T: AvroRecord> TopicCodec<T> {
    /// Register `T`'s schema for `topic`'s values and build the codec.
    pub async fn register(registry: &SchemaRegistry, topic: &str) -> Result<Self, Error> {
        let schema_id = registry
            .register(&format!("{topic}-value"), T::record_schema())
            .await?;
        Ok(TopicCodec {
            registry: registry.clone(),
            topic: topic.to_owned(),
            schema_id,
            decoders: RwLock::default(),
            _record: PhantomData,
        })
    }

    /// The codec of `typed`'s topic in `catalog`, of exactly its value type.
    pub async fn of(
        registry: &SchemaRegistry,
        catalog: &funnelhub_schemas::Catalog,
        typed: funnelhub_schemas::Typed<T>,
    ) -> Result<Self, Error> {
        Self::register(registry, &catalog.name(typed.topic)).await
    }

    /// The topic whose values this codec reads and writes.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The registry id of the schema this codec writes.
    pub fn schema_id(&self) -> u32 {
        self.schema_id
    }

    /// Encode in the Confluent wire format.
    pub fn encode(&self, record: &T) -> Result<Vec<u8>, Error> {
        encode(self.schema_id, record).map_err(Error::from)
    }

    /// Decode a framed record written with any schema the registry knows.
    pub async fn decode(&self, bytes: &[u8]) -> Result<T, DecodeError> {
        let (id, body) = split_frame(bytes).map_err(|e| DecodeError::Undecodable(e.to_string()))?;
        let cached = self
            .decoders
            .read()
            .expect("not poisoned")
            .get(&id)
            .cloned();
        let decoder = match cached {
            Some(decoder) => decoder,
            None => {
                let writer = self.registry.writer_schema(id).await?;
                let decoder = Arc::new(
                    Decoder::<T>::for_writer(writer)
                        .map_err(|e| DecodeError::Undecodable(e.to_string()))?,
                );
                self.decoders
                    .write()
                    .expect("not poisoned")
                    .insert(id, decoder.clone());
                decoder
            }
        };
        decoder
            .decode(body)
            .map_err(|e| DecodeError::Undecodable(e.to_string()))
    }
}
