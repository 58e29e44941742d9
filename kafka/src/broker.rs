//! What the broker is: one ApiVersions request (Kafka protocol API key 18, version 3) to a
//! bootstrap broker, answered with the API versions it serves and the cluster's finalized
//! features (`metadata.version`, `kraft.version`, …).
//!
//! librdkafka negotiates these versions but does not expose them, so this module speaks
//! the one request itself (KIP-511 request fields, KIP-584 feature tags). It guarantees an
//! answer or an error within the caller's timeout and reads at most [`MAX_RESPONSE`] bytes.
//! It assumes a plaintext listener (the local stack's; a TLS or SASL listener answers with
//! an error here, which callers report and go on).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An ApiVersions answer larger than this is refused (Kafka 4.4's is about 1 KiB).
pub const MAX_RESPONSE: usize = 64 * 1024;

const API_VERSIONS: i16 = 18;
const REQUEST_VERSION: i16 = 3;
/// Fetch: Kafka 4.0 removed versions 0-3 (KIP-896); older brokers still serve them.
pub const FETCH: i16 = 1;
/// ConsumerGroupHeartbeat: the consumer rebalance protocol (KIP-848, Kafka 4.0).
pub const CONSUMER_GROUP_HEARTBEAT: i16 = 68;
/// InitProducerId: transactions and idempotent producers.
pub const INIT_PRODUCER_ID: i16 = 22;

/// Why the broker's versions could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BrokerInfoError {
    #[error("no broker address in {0:?}")]
    NoAddress(String),
    #[error("connecting or talking to {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr} did not answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("{addr} answered ApiVersions with error code {code}")]
    Refused { addr: String, code: i16 },
    #[error("{addr} sent a malformed ApiVersions answer ({what})")]
    Malformed { addr: String, what: &'static str },
}

/// The versions and features one broker reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerApis {
    /// The broker that answered.
    pub addr: String,
    /// API key → (lowest, highest) version served.
    pub apis: BTreeMap<i16, (i16, i16)>,
    /// Feature name → finalized version level, cluster-wide.
    pub features: BTreeMap<String, i16>,
}

impl BrokerApis {
    /// The versions served for `api`, if it is served.
    pub fn versions(&self, api: i16) -> Option<(i16, i16)> {
        self.apis.get(&api).copied()
    }

    /// A KRaft cluster with Kafka 4's protocol floor and the consumer rebalance protocol:
    /// what Apache Kafka 4.x answers (Kafka 3.x still serves Fetch v0-3; non-Kafka
    /// brokers report no `metadata.version`).
    pub fn is_kafka_4(&self) -> bool {
        self.features.contains_key("metadata.version")
            && self.versions(FETCH).is_some_and(|(min, _)| min >= 4)
            && self.versions(CONSUMER_GROUP_HEARTBEAT).is_some()
    }

    /// One line for people: the cluster's metadata version and what it serves.
    pub fn summary(&self) -> String {
        let feature = |name: &str| {
            self.features
                .get(name)
                .map_or("none".to_owned(), |level| level.to_string())
        };
        format!(
            "{} APIs, metadata.version level {}, kraft.version {}, transactions {}, consumer rebalance protocol {}",
            self.apis.len(),
            feature("metadata.version"),
            feature("kraft.version"),
            if self.versions(INIT_PRODUCER_ID).is_some() { "yes" } else { "no" },
            if self.versions(CONSUMER_GROUP_HEARTBEAT).is_some() { "yes" } else { "no" },
        )
    }
}

/// Ask the first broker of `brokers` (a bootstrap list) for its API versions.
pub async fn api_versions(brokers: &str, timeout: Duration) -> Result<BrokerApis, BrokerInfoError> {
    let addr = brokers
        .split(',')
        .map(str::trim)
        .find(|a| !a.is_empty())
        .ok_or_else(|| BrokerInfoError::NoAddress(brokers.to_owned()))?
        .to_owned();
    let exchange = async {
        let mut stream = TcpStream::connect(&addr).await?;
        stream.write_all(&request(1)).await?;
        let size = stream.read_i32().await?;
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size > MAX_RESPONSE {
            return Ok(None);
        }
        let mut body = vec![0; size];
        stream.read_exact(&mut body).await?;
        Ok(Some(body))
    };
    let body = match tokio::time::timeout(timeout, exchange).await {
        Err(_) => return Err(BrokerInfoError::Timeout { addr, timeout }),
        Ok(Err(source)) => return Err(BrokerInfoError::Io { addr, source }),
        Ok(Ok(None)) => {
            return Err(BrokerInfoError::Malformed {
                addr,
                what: "larger than 64 KiB",
            })
        }
        Ok(Ok(Some(body))) => body,
    };
    parse(&body, 1)
        .map_err(|e| match e {
            Parse::Refused(code) => BrokerInfoError::Refused {
                addr: addr.clone(),
                code,
            },
            Parse::Malformed(what) => BrokerInfoError::Malformed {
                addr: addr.clone(),
                what,
            },
        })
        .map(|(apis, features)| BrokerApis {
            addr,
            apis,
            features,
        })
}

/// ApiVersions v3 with request header v2, size-prefixed.
fn request(correlation_id: i32) -> Vec<u8> {
    let client_id = b"funnelhub";
    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(&API_VERSIONS.to_be_bytes());
    body.extend_from_slice(&REQUEST_VERSION.to_be_bytes());
    body.extend_from_slice(&correlation_id.to_be_bytes());
    body.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    body.extend_from_slice(client_id);
    body.push(0); // header tagged fields
    for field in [&b"funnelhub"[..], env!("CARGO_PKG_VERSION").as_bytes()] {
        body.push(field.len() as u8 + 1); // compact string: length + 1, under 127
        body.extend_from_slice(field);
    }
    body.push(0); // body tagged fields
    let mut framed = (body.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&body);
    framed
}

enum Parse {
    Refused(i16),
    Malformed(&'static str),
}

type Parsed = (BTreeMap<i16, (i16, i16)>, BTreeMap<String, i16>);

/// Response header v0 (ApiVersions answers never use the flexible header), body v3.
fn parse(bytes: &[u8], correlation_id: i32) -> Result<Parsed, Parse> {
    let mut r = Reader(bytes);
    if r.i32()? != correlation_id {
        return Err(Parse::Malformed("correlation id"));
    }
    let code = r.i16()?;
    if code != 0 {
        return Err(Parse::Refused(code));
    }
    let mut apis = BTreeMap::new();
    for _ in 0..r.compact_len()? {
        let key = r.i16()?;
        let min = r.i16()?;
        let max = r.i16()?;
        r.skip_tags()?;
        apis.insert(key, (min, max));
    }
    let _throttle_ms = r.i32()?;
    let mut features = BTreeMap::new();
    for _ in 0..r.uvarint()? {
        let tag = r.uvarint()?;
        let size = r.uvarint()? as usize;
        let mut field = Reader(r.take(size)?);
        // Tag 2: FinalizedFeatures [name, max_version_level, min_version_level].
        if tag == 2 {
            for _ in 0..field.compact_len()? {
                let name = field.compact_string()?;
                let max_level = field.i16()?;
                let _min_level = field.i16()?;
                field.skip_tags()?;
                features.insert(name, max_level);
            }
        }
    }
    Ok((apis, features))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Parse> {
        if self.0.len() < n {
            return Err(Parse::Malformed("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn i16(&mut self) -> Result<i16, Parse> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn i32(&mut self) -> Result<i32, Parse> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn uvarint(&mut self) -> Result<u64, Parse> {
        let mut value = 0u64;
        for shift in (0..35).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Parse::Malformed("varint too long"))
    }
    /// A compact array's length (stored as length + 1; 0 means null, read as empty).
    fn compact_len(&mut self) -> Result<usize, Parse> {
        let n = self.uvarint()?.saturating_sub(1) as usize;
        // Every element takes at least one byte: a count past what is left is a lie.
        if n > self.0.len() {
            return Err(Parse::Malformed("array length"));
        }
        Ok(n)
    }
    fn compact_string(&mut self) -> Result<String, Parse> {
        let n = self.compact_len()?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| Parse::Malformed("string"))
    }
    fn skip_tags(&mut self) -> Result<(), Parse> {
        for _ in 0..self.uvarint()? {
            let _tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.take(size)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer as Kafka 4 frames it: two APIs and `metadata.version` finalized at 27.
    fn answer() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.push(3); // two APIs
        for (key, min, max) in [(1i16, 4i16, 18i16), (68, 0, 1)] {
            for v in [key, min, max] {
                b.extend_from_slice(&v.to_be_bytes());
            }
            b.push(0);
        }
        b.extend_from_slice(&0i32.to_be_bytes());
        let mut features = vec![2u8, 17];
        features.extend_from_slice(b"metadata.version");
        features.extend_from_slice(&27i16.to_be_bytes());
        features.extend_from_slice(&1i16.to_be_bytes());
        features.push(0);
        b.push(2); // two tagged fields: an unknown one, then FinalizedFeatures
        b.extend_from_slice(&[9, 2, 0xaa, 0xbb]);
        b.push(2);
        b.push(features.len() as u8);
        b.extend_from_slice(&features);
        b
    }

    #[test]
    fn reads_versions_and_finalized_features_and_skips_unknown_tags() {
        let Ok((apis, features)) = parse(&answer(), 1) else {
            panic!("parses")
        };
        assert_eq!(apis.get(&1), Some(&(4, 18)));
        let info = BrokerApis {
            addr: "b:1".into(),
            apis,
            features,
        };
        assert_eq!(info.features.get("metadata.version"), Some(&27));
        assert!(info.is_kafka_4());
        assert!(info.summary().contains("metadata.version level 27"));
    }

    #[test]
    fn truncated_or_lying_answers_are_malformed_never_a_panic() {
        let whole = answer();
        for cut in 0..whole.len() {
            assert!(parse(&whole[..cut], 1).is_err(), "cut at {cut}");
        }
        let mut lying = whole.clone();
        lying[6] = 0x7f; // 126 APIs in a few bytes
        assert!(matches!(parse(&lying, 1), Err(Parse::Malformed(_))));
        let mut refused = whole;
        refused[4..6].copy_from_slice(&35i16.to_be_bytes());
        assert!(matches!(parse(&refused, 1), Err(Parse::Refused(35))));
    }

    #[test]
    fn the_request_is_framed_with_its_size() {
        let r = request(7);
        assert_eq!(
            i32::from_be_bytes(r[..4].try_into().expect("4 bytes")) as usize,
            r.len() - 4
        );
        assert_eq!(&r[4..6], &18i16.to_be_bytes());
        assert_eq!(&r[6..8], &3i16.to_be_bytes());
    }
}
