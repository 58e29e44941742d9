//! The tenant control plane (issue #11): who sends to funnelhub, with which secrets.
//!
//! - [`config`]: a tenant's settings and secrets (`[[tenants]]` in the configuration file
//!   seeds them).
//! - [`sealing`]: envelope encryption of secrets at rest, keys from the environment.
//! - [`record`]: a tenant to and from its record on `control.tenants` (secrets sealed).
//! - [`directory`]: the tenants every service reads, following the control topic live.
//! - [`store`]: writing tenants (`funnelhub tenants`, setup's autoconfigure, key rotation).
//! - [`control`]: the tenants and the suppression list, as one process follows them.
//!
//! See `docs/tenants.md`.

pub mod config;
pub mod control;
pub mod directory;
pub mod record;
pub mod sealing;
pub mod store;

pub use config::{check_secret, KeyScope, Secret, TenantConfig, WeakSecret, MIN_SECRET_CHARS};
pub use control::ControlPlane;
pub use directory::TenantDirectory;
pub use sealing::{Keyring, SealError};
pub use store::{StoreError, TenantStore};
