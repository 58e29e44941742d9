//! Guided setup, the control plane a tenant is configured through (seeds 003/004):
//! sessions with typed states ([`session`]), the validation tools behind one trait
//! ([`tools`]), the service that runs them, autoconfigures the tenant and rolls it back
//! ([`service`]), where sessions and tenants are kept ([`store`], on Kafka in [`kafka`]),
//! and its HTTP routes ([`http`], mounted by the edge). See `docs/setup.md`.
//!
//! Layering: `http` → `service` → (`tools`, `store`) → `session`. Domain code returns
//! [`SetupError`]; only `http` maps it to status codes.

pub mod attachments;
pub mod chat;
pub mod config;
pub mod conversation;
pub mod error;
pub mod http;
pub mod kafka;
pub mod service;
pub mod session;
pub mod store;
pub mod tools;

pub use config::SetupConfig;
pub use error::SetupError;
pub use service::SetupService;
pub use session::{Session, SessionState, Step, StepStatus};
pub use tools::{Tool, ToolName};
