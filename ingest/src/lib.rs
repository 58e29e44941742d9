//! The HTTP edge (`funnelhub edge`): landing-page tracking hits, signed gateway webhooks
//! and onboarding-portal webhooks, validated, normalized, personal data hashed, written to
//! the raw topics as Avro, answered only after the broker acknowledged. Issue #4.
