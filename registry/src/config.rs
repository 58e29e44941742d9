//! Configuration of the embedded schema registry.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::compatibility::CompatibilityLevel;

/// `[registry]` section: where the registry listens and where it stores schemas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Address to listen on (`0` as port picks a free one).
    pub listen: SocketAddr,
    /// Compacted topic holding every schema and config change (Confluent's default name).
    pub topic: String,
    /// Compatibility level until `PUT /config` sets one (Confluent's default: BACKWARD).
    pub default_compatibility: CompatibilityLevel,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            topic: "_schemas".into(),
            default_compatibility: CompatibilityLevel::Backward,
        }
    }
}
