//! The analysts' tables, as versioned migrations applied at start-up
//! ([`crate::server::Server::migrate`]). Never edit an applied migration: add one.
//!
//! Every table is a `ReplacingMergeTree` whose sort key ends with the record's id, with
//! `tenant_id` first: a record written twice (at-least-once delivery, replay) is one row
//! after merges, and exact queries read `FINAL` (or `argMax`). Times are kept twice: a
//! `DateTime` (seconds, for partitions and filters) and the `Int64` milliseconds of the
//! record. The SQL runs on ClickHouse 18.16 (Debian, local) and on current servers: no
//! `DateTime64`, no JSON functions, the `PARTITION BY`/`ORDER BY` engine syntax.
//! See `docs/data-model.md`.

/// One migration: a version, a name and idempotent statements (`{db}` is the database).
#[derive(Debug)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub statements: &'static [&'static str],
}

/// The columns of `raw_events` and `events` (one row type, `rows::EventRow`).
macro_rules! event_columns {
    () => {
        "tenant_id String, event_id String, event_type String, source String,
        occurred_at DateTime, occurred_at_ms Int64, received_at_ms Int64,
        session_id String, gateway String, order_id String, gateway_status String,
        value Nullable(Float64), currency String, product_id String,
        utm_source String, utm_medium String, utm_campaign String,
        fbclid String, consent_ads UInt8, dedupe_key String,
        source_topic String, source_partition Int32, source_offset Int64,
        payload String"
    };
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "tables of every topic",
        statements: &[
            // raw.tracking, raw.orders, raw.onboarding: every accepted record, duplicates
            // included; one row per source position, a dedupe group's copies together.
            concat!(
                "CREATE TABLE IF NOT EXISTS {db}.raw_events (",
                event_columns!(),
                ") ENGINE = ReplacingMergeTree()
        PARTITION BY toYYYYMM(occurred_at)
        ORDER BY (tenant_id, dedupe_key, source_topic, source_partition, source_offset)"
            ),
            // deduped.events: one row per event id (an event's session never changes, so the
            // session in the key only groups a session's events for timelines).
            concat!(
                "CREATE TABLE IF NOT EXISTS {db}.events (",
                event_columns!(),
                ") ENGINE = ReplacingMergeTree()
        PARTITION BY toYYYYMM(occurred_at)
        ORDER BY (tenant_id, session_id, event_id)"
            ),
            // Gateway orders among the deduped events.
            "CREATE VIEW IF NOT EXISTS {db}.conversions AS
         SELECT tenant_id, event_id AS conversion_id, event_type, gateway, order_id,
                gateway_status, value, currency, product_id, session_id, utm_campaign,
                occurred_at, occurred_at_ms
         FROM {db}.events WHERE gateway != ''",
            "CREATE TABLE IF NOT EXISTS {db}.funnel_transitions (
            tenant_id String, transition_id String, funnel String, subject_id String,
            from_stage String, to_stage String, outcome String, cause_event_id String,
            occurred_at DateTime, occurred_at_ms Int64, domain String, utm_campaign String
        ) ENGINE = ReplacingMergeTree()
        PARTITION BY toYYYYMM(occurred_at)
        ORDER BY (tenant_id, funnel, subject_id, transition_id)",
            // The furthest stage of each session: the row with the highest rank wins, in
            // whatever order transitions arrive.
            "CREATE TABLE IF NOT EXISTS {db}.session_stages (
            tenant_id String, funnel String, subject_id String, stage String,
            outcome String, rank UInt16, updated_at DateTime, updated_at_ms Int64,
            domain String, utm_campaign String
        ) ENGINE = ReplacingMergeTree(rank)
        ORDER BY (tenant_id, funnel, subject_id)",
            "CREATE TABLE IF NOT EXISTS {db}.ops_tickets (
            tenant_id String, ticket_id String, session_id String, domain String,
            kind String, subject String, cause_event_id String,
            created_at DateTime, created_at_ms Int64
        ) ENGINE = ReplacingMergeTree()
        PARTITION BY toYYYYMM(created_at)
        ORDER BY (tenant_id, ticket_id)",
            "CREATE TABLE IF NOT EXISTS {db}.matches (
            tenant_id String, match_id String, conversion_id String, order_id String,
            gateway String, conversion_type String, original_conversion_id String,
            matched_event_id String, matched_session_id String, method String,
            score Float64, signals Array(String), decided_at DateTime, decided_at_ms Int64
        ) ENGINE = ReplacingMergeTree()
        PARTITION BY toYYYYMM(decided_at)
        ORDER BY (tenant_id, match_id)",
            "CREATE TABLE IF NOT EXISTS {db}.capi_requests (
            tenant_id String, dispatch_id String, pixel_id String, event_name String,
            event_id String, event_time DateTime, event_time_ms Int64, action_source String,
            value Nullable(Float64), currency String, order_id String, consent_ads UInt8,
            blocked_reason String, match_id String,
            source_topic String, source_partition Int32, source_offset Int64
        ) ENGINE = ReplacingMergeTree()
        PARTITION BY toYYYYMM(event_time)
        ORDER BY (tenant_id, dispatch_id)",
            "CREATE TABLE IF NOT EXISTS {db}.dispatch_attempts (
            tenant_id String, attempt_id String, pixel_id String, request_id String,
            event_ids Array(String), attempt Int32, outcome String,
            http_status Nullable(Int32), fbtrace_id String, events_received Nullable(Int32),
            error_code Nullable(Int32), error_subcode Nullable(Int32), error_message String,
            latency_ms Int64, attempted_at DateTime, attempted_at_ms Int64
        ) ENGINE = ReplacingMergeTree()
        PARTITION BY toYYYYMM(attempted_at)
        ORDER BY (tenant_id, attempt_id)",
            "CREATE TABLE IF NOT EXISTS {db}.dlq (
            tenant_id String, dlq_id String, stage String, reason String, error String,
            event_id String, source_topic String, source_partition Int32,
            source_offset Int64, failed_at DateTime, failed_at_ms Int64
        ) ENGINE = ReplacingMergeTree()
        PARTITION BY toYYYYMM(failed_at)
        ORDER BY (tenant_id, dlq_id)",
        ],
    },
    Migration {
        version: 2,
        name: "event id index",
        statements: &[
            // `events` is sorted by session (timelines); finding one event by id goes through
            // this index: event id → session, then a key lookup in `events`.
            "CREATE TABLE IF NOT EXISTS {db}.event_index (
            tenant_id String, event_id String, session_id String
        ) ENGINE = ReplacingMergeTree()
        ORDER BY (tenant_id, event_id)",
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.event_index_feed TO {db}.event_index AS
         SELECT tenant_id, event_id, session_id FROM {db}.events",
            // Rows written before this migration (idempotent: the index replaces by id).
            "INSERT INTO {db}.event_index SELECT tenant_id, event_id, session_id FROM {db}.events",
        ],
    },
    Migration {
        version: 3,
        name: "purge receipts",
        statements: &[
            // One row per purge by identifier (`purge::ReceiptRow`): never aged out by
            // retention, never holding the identifier or its hash.
            "CREATE TABLE IF NOT EXISTS {db}.purge_receipts (
            tenant_id String, purge_id String, identifier_kind String,
            identifier_digest String, requested_at DateTime, requested_at_ms Int64,
            completed_at_ms Int64, sessions UInt32, events UInt32,
            tables Array(String), rows Array(UInt64), left UInt64
        ) ENGINE = ReplacingMergeTree()
        PARTITION BY toYYYYMM(requested_at)
        ORDER BY (tenant_id, purge_id)",
        ],
    },
    Migration {
        version: 4,
        name: "setup action logs",
        statements: &[
            // One row per setup action (`rows::SetupActionRow`), secrets masked at the edge.
            "CREATE TABLE IF NOT EXISTS {db}.setup_action_logs (
            tenant_id String, session_id String, action_id String, tool String,
            status String, reason String, input String, output String,
            latency_ms UInt32, at DateTime, at_ms Int64
        ) ENGINE = ReplacingMergeTree()
        PARTITION BY toYYYYMM(at)
        ORDER BY (tenant_id, session_id, action_id)",
        ],
    },
    Migration {
        version: 5,
        name: "raw webhooks",
        statements: &[
            // One row per signed gateway delivery that became no event (`rows::RawWebhookRow`),
            // personal values redacted at the edge; the same delivery twice is one row.
            "CREATE TABLE IF NOT EXISTS {db}.raw_webhooks (
            tenant_id String, webhook_id String, gateway String, event_name String,
            gateway_event_id String, order_id String, reason String, field String,
            received_at DateTime, received_at_ms Int64, payload String
        ) ENGINE = ReplacingMergeTree()
        PARTITION BY toYYYYMM(received_at)
        ORDER BY (tenant_id, gateway, event_name, webhook_id)",
        ],
    },
    Migration {
        version: 6,
        name: "setup messages",
        statements: &[
            // One row per setup chat message (`rows::SetupMessageRow`), secrets and personal
            // data masked at the edge.
            "CREATE TABLE IF NOT EXISTS {db}.setup_messages (
            tenant_id String, session_id String, message_id String, seq UInt32,
            role String, language String, text String, actions String, engine String,
            at DateTime, at_ms Int64
        ) ENGINE = ReplacingMergeTree()
        PARTITION BY toYYYYMM(at)
        ORDER BY (tenant_id, session_id, seq, message_id)",
        ],
    },
];
