//! Conversion matching: which landing-page visit led to each gateway conversion, so the
//! CAPI event of a purchase carries the real visit's `fbc`, `fbp`, IP, user agent, landing
//! URL and campaign.
//!
//! Two stages:
//! - [`route`] re-keys `deduped.events` by tenant into `matching.inputs` (a conversion may
//!   match any visit of its tenant, so a tenant's records must meet on one partition);
//! - [`matcher`] keeps each partition's recent [`visits`], holds every conversion for a
//!   grace period, applies the [`rules`] once and writes one `MatchResult` per conversion
//!   plus the [`dispatch`] requests for Meta.
//!
//! See `docs/matching.md` for the rules, the timing model and how quality is measured.

pub mod dispatch;
pub mod matcher;
pub mod route;
pub mod rules;
pub mod visits;
