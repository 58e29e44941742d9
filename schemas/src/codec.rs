//! Avro in the Confluent wire format, without I/O.
//!
//! A framed record is `0x00` (magic byte), the schema id as a 4-byte big-endian integer,
//! then the Avro binary encoding of the value. The schema id comes from a schema registry
//! (`funnelhub-kafka` does that I/O); this module only turns values into bytes and back.
//!
//! Decoding is done against the *writer's* schema (the one the id names) and resolved to
//! the reader's (this crate's) schema, so records written by an older or newer compatible
//! schema are read correctly.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::control::TenantRecord;
use crate::derived::{
    CapiDispatchRequest, DedupedEvent, DispatchAttempt, DlqRecord, FunnelTransition, MatchResult,
    OpsTicket,
};
use crate::events::{OnboardingEvent, OrderEvent, RawWebhook, TrackingHit};
use crate::privacy::Suppression;
use crate::schema_set::{RecordSchema, SchemaSet};
use crate::setup::{SetupActionLog, SetupMessage, SetupSession};
use crate::state::{DedupeEntry, FunnelSession, MatchEntry};
use crate::Error;

/// The Confluent wire-format magic byte.
pub const MAGIC_BYTE: u8 = 0;
/// Magic byte plus 4-byte schema id.
pub const HEADER_LEN: usize = 5;

/// A Rust type that maps 1:1 to one of the bundled record schemas.
pub trait AvroRecord: Serialize + DeserializeOwned {
    /// Full Avro name of the record schema.
    const FULL_NAME: &'static str;

    /// The bundled schema of this type.
    fn record_schema() -> &'static RecordSchema {
        SchemaSet::bundled()
            .get(Self::FULL_NAME)
            .expect("every AvroRecord has a bundled schema (checked by tests)")
    }
}

macro_rules! avro_records {
    ($($ty:ty => $name:literal),+ $(,)?) => {
        $(impl AvroRecord for $ty {
            const FULL_NAME: &'static str = $name;
        })+
    };
}

avro_records! {
    TrackingHit => "io.funnelhub.events.TrackingHit",
    OrderEvent => "io.funnelhub.events.OrderEvent",
    OnboardingEvent => "io.funnelhub.events.OnboardingEvent",
    RawWebhook => "io.funnelhub.events.RawWebhook",
    DedupedEvent => "io.funnelhub.derived.DedupedEvent",
    FunnelTransition => "io.funnelhub.derived.FunnelTransition",
    OpsTicket => "io.funnelhub.derived.OpsTicket",
    MatchResult => "io.funnelhub.derived.MatchResult",
    CapiDispatchRequest => "io.funnelhub.derived.CapiDispatchRequest",
    DispatchAttempt => "io.funnelhub.derived.DispatchAttempt",
    DlqRecord => "io.funnelhub.derived.DlqRecord",
    DedupeEntry => "io.funnelhub.state.DedupeEntry",
    FunnelSession => "io.funnelhub.state.FunnelSession",
    std::sync::Arc<FunnelSession> => "io.funnelhub.state.FunnelSession",
    MatchEntry => "io.funnelhub.state.MatchEntry",
    Suppression => "io.funnelhub.privacy.Suppression",
    TenantRecord => "io.funnelhub.control.TenantRecord",
    SetupSession => "io.funnelhub.setup.SetupSession",
    SetupActionLog => "io.funnelhub.setup.SetupActionLog",
    SetupMessage => "io.funnelhub.setup.SetupMessage",
}

/// One resolved writer per bundled schema, built once (resolving names is not free).
static WRITERS: LazyLock<BTreeMap<&'static str, GenericDatumWriter<'static>>> =
    LazyLock::new(|| {
        SchemaSet::bundled()
            .iter()
            .map(|record| {
                let writer = GenericDatumWriter::builder(&record.schema)
                    .build()
                    .expect("bundled schemas resolve");
                (record.full_name.as_str(), writer)
            })
            .collect()
    });

/// Encode `record` with its bundled schema, framed with `schema_id`.
pub fn encode<T: AvroRecord>(schema_id: u32, record: &T) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(256);
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&schema_id.to_be_bytes());
    WRITERS[T::FULL_NAME]
        .write_ser(&mut out, record)
        .map_err(|e| Error::Encode(format!("{}: {e}", T::FULL_NAME)))?;
    Ok(out)
}

/// Split a framed record into its schema id and Avro body.
pub fn split_frame(bytes: &[u8]) -> Result<(u32, &[u8]), Error> {
    match bytes {
        [MAGIC_BYTE, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        [] => Err(Error::Frame("empty record".into())),
        [MAGIC_BYTE, ..] => Err(Error::Frame(format!(
            "{} bytes, shorter than the 5-byte header",
            bytes.len()
        ))),
        [other, ..] => Err(Error::Frame(format!(
            "magic byte {other:#04x}, expected 0x00"
        ))),
    }
}

/// Reads bodies written with one writer schema into `T`. Build one per schema id and reuse.
pub struct Decoder<T> {
    reader: GenericDatumReader<'static>,
    /// Writer and reader schemas differ: decode to a value, resolve, then deserialize.
    resolve: bool,
    _record: std::marker::PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Decoder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("resolve", &self.resolve)
            .finish()
    }
}

impl<T: AvroRecord> Decoder<T> {
    /// A decoder for bodies written with `writer` (typically fetched from the registry).
    pub fn for_writer(writer: &'static Schema) -> Result<Self, Error> {
        let reader_schema = &T::record_schema().schema;
        let resolve = writer.canonical_form() != reader_schema.canonical_form();
        let builder = GenericDatumReader::builder(writer);
        let reader = if resolve {
            builder.reader_schema(reader_schema).build()
        } else {
            builder.build()
        }
        .map_err(|e| Error::Decode(format!("{}: {e}", T::FULL_NAME)))?;
        Ok(Self {
            reader,
            resolve,
            _record: std::marker::PhantomData,
        })
    }

    /// A decoder for bodies written with this crate's own schema of `T`.
    pub fn bundled() -> Self {
        Self::for_writer(&T::record_schema().schema).expect("bundled schemas resolve")
    }

    /// Decode an Avro body (without the 5-byte header).
    pub fn decode(&self, mut body: &[u8]) -> Result<T, Error> {
        let err = |e: apache_avro::Error| Error::Decode(format!("{}: {e}", T::FULL_NAME));
        if self.resolve {
            let value = self.reader.read_value(&mut body).map_err(err)?;
            apache_avro::from_value(&value).map_err(err)
        } else {
            self.reader.read_deser(&mut body).map_err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_type_has_a_bundled_schema() {
        for name in [
            TrackingHit::FULL_NAME,
            OrderEvent::FULL_NAME,
            OnboardingEvent::FULL_NAME,
            DedupedEvent::FULL_NAME,
            FunnelTransition::FULL_NAME,
            OpsTicket::FULL_NAME,
            MatchResult::FULL_NAME,
            CapiDispatchRequest::FULL_NAME,
            DispatchAttempt::FULL_NAME,
            DlqRecord::FULL_NAME,
            DedupeEntry::FULL_NAME,
            FunnelSession::FULL_NAME,
            MatchEntry::FULL_NAME,
        ] {
            assert!(SchemaSet::bundled().get(name).is_some(), "{name}");
            assert!(WRITERS.contains_key(name), "{name}");
        }
    }

    #[test]
    fn frame_header_is_magic_byte_and_big_endian_id() {
        let bytes = encode(0x0102_0304, &crate::testing::sample_ops_ticket()).expect("encodes");
        assert_eq!(&bytes[..HEADER_LEN], &[0, 1, 2, 3, 4]);
        let (id, body) = split_frame(&bytes).expect("framed");
        assert_eq!(id, 0x0102_0304);
        assert_eq!(body.len(), bytes.len() - HEADER_LEN);
    }

    #[test]
    fn bad_frames_are_refused_with_a_reason() {
        assert!(matches!(split_frame(&[]), Err(Error::Frame(_))));
        assert!(matches!(split_frame(&[0, 0, 1]), Err(Error::Frame(_))));
        let err = split_frame(&[7, 0, 0, 0, 1, 2]).expect_err("bad magic");
        assert!(err.to_string().contains("0x07"), "{err}");
    }
}
