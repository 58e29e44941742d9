//! `funnelhub simulate`: a demo workload for the whole pipeline, and the ground truth to
//! check it against.
//!
//! Several tenants' landing-page visits, purchases and refunds through Hotmart, Kiwify and
//! Stripe webhooks signed the way each gateway signs, and onboarding-portal sessions through
//! the seven events, with failures, duplicates (retries) and out-of-order delivery
//! ([`journeys`]), sent to the edge at a chosen rate ([`driver`]). Every journey knows the
//! facts it must leave behind ([`facts`]): distinct events per type, each session's funnel
//! stage, each conversion's match, ops tickets, what is due to Meta and what Meta receives.
//! [`observe`] reads the same facts back from ClickHouse and the Meta emulator, so checking
//! the pipeline end to end is one comparison (`tests/end_to_end.rs`, `scripts/bench-e2e`).

pub mod driver;
pub mod facts;
pub mod gateways;
pub mod journeys;
pub mod observe;
pub mod probe;

pub use driver::{run, Load, RunReport};
pub use facts::Facts;
pub use journeys::Generator;
pub use observe::{MetaDeliveries, Observer};
