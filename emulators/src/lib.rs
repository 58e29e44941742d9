//! Emulators of the external APIs funnelhub calls (Meta's Graph API, the gateways' APIs,
//! an OpenAI-compatible Chat Completions API, an OTLP collector), which are unreachable
//! from tests and local runs. Each enforces the provider's documented rules (so a request the emulator
//! accepts is one the provider would accept) and can inject the provider's faults. The
//! production code under test is unchanged: only its base URL points here.

pub mod chat_completions;
pub mod gateways;
pub mod meta_graph;
pub mod otlp;

pub use chat_completions::{ChatCompletionsEmulator, Scripted};
pub use gateways::{GatewayAccounts, GatewayEmulator, HotmartCredential, KiwifyCredential};
pub use meta_graph::{Counts, Faults, MetaGraphEmulator, ReceivedEvent, Snapshot};
pub use otlp::{OtlpCollector, ReceivedSpan};
