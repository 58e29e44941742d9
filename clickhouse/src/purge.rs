//! Erasure in ClickHouse (`docs/privacy.md`): find what is tied to one person's identifier
//! hash, delete it from every table, and keep a receipt that does not hold the hash.
//!
//! Tied to a person are: the events whose payload carries the hash (raw and deduped), the
//! sessions of those events, the visits their conversions were matched to, every event
//! of those sessions, and what refers to any of these (transitions, stages, tickets,
//! matches, dispatch requests and attempts, dead letters). Deletes are `ALTER TABLE …
//! DELETE` mutations (18.16 and current servers); the purge waits until ClickHouse has
//! applied them, then counts again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};

/// The person and what the purge found tied to them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    pub tenant_id: String,
    pub hash: String,
    pub sessions: BTreeSet<String>,
    pub events: BTreeSet<String>,
}

/// How a column points at a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Points {
    /// A session id.
    Session,
    /// An event id.
    Event,
    /// An array of event ids.
    Events,
    /// A JSON payload that may carry the hash.
    Payload,
}

/// Every table holding rows of people, with the columns that tie a row to one.
const TABLES: [(&str, &[(&str, Points)]); 10] = [
    (ATTEMPTS, &[("event_ids", Points::Events)]),
    (
        "raw_events",
        &[
            ("session_id", Points::Session),
            ("event_id", Points::Event),
            ("payload", Points::Payload),
        ],
    ),
    (
        "events",
        &[
            ("session_id", Points::Session),
            ("event_id", Points::Event),
            ("payload", Points::Payload),
        ],
    ),
    (
        "event_index",
        &[("session_id", Points::Session), ("event_id", Points::Event)],
    ),
    (
        "funnel_transitions",
        &[
            ("subject_id", Points::Session),
            ("cause_event_id", Points::Event),
        ],
    ),
    ("session_stages", &[("subject_id", Points::Session)]),
    (
        "ops_tickets",
        &[
            ("session_id", Points::Session),
            ("cause_event_id", Points::Event),
        ],
    ),
    (
        "matches",
        &[
            ("matched_session_id", Points::Session),
            ("conversion_id", Points::Event),
            ("matched_event_id", Points::Event),
            ("original_conversion_id", Points::Event),
        ],
    ),
    ("capi_requests", &[("event_id", Points::Event)]),
    ("dlq", &[("event_id", Points::Event)]),
];

/// `dispatch_attempts`: one row per HTTP request to Meta, shared by everyone whose events
/// it carried. Rows holding only the person's events are deleted (with [`TABLES`]); the
/// others lose the person's event ids.
const ATTEMPTS: &str = "dispatch_attempts";

/// A value bound to a `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Bind<'a> {
    Text(&'a str),
    List(Vec<&'a str>),
}

/// `tenant_id = ? AND (…)` for one table, with its binds; `None` if nothing can match.
fn condition<'a>(
    columns: &[(&str, Points)],
    subject: &'a Subject,
) -> Option<(String, Vec<Bind<'a>>)> {
    let sessions: Vec<&str> = subject.sessions.iter().map(String::as_str).collect();
    let events: Vec<&str> = subject.events.iter().map(String::as_str).collect();
    let mut parts = Vec::new();
    let mut binds = vec![Bind::Text(&subject.tenant_id)];
    for (column, points) in columns {
        match points {
            Points::Session if !sessions.is_empty() => {
                parts.push(format!("has(?, {column})"));
                binds.push(Bind::List(sessions.clone()));
            }
            Points::Event if !events.is_empty() => {
                parts.push(format!("has(?, {column})"));
                binds.push(Bind::List(events.clone()));
            }
            Points::Events if !events.is_empty() => {
                parts.push(format!("hasAll(?, {column})"));
                binds.push(Bind::List(events.clone()));
            }
            Points::Payload => {
                parts.push(format!("position({column}, ?) > 0"));
                binds.push(Bind::Text(&subject.hash));
            }
            _ => {}
        }
    }
    (!parts.is_empty()).then(|| (format!("tenant_id = ? AND ({})", parts.join(" OR ")), binds))
}

/// The attempts that carried the person's events among others'.
fn shared_attempts(subject: &Subject) -> Option<(String, Vec<Bind<'_>>)> {
    let events: Vec<&str> = subject.events.iter().map(String::as_str).collect();
    (!events.is_empty()).then(|| {
        (
            "tenant_id = ? AND hasAny(event_ids, ?) AND NOT hasAll(?, event_ids)".to_owned(),
            vec![
                Bind::Text(&subject.tenant_id),
                Bind::List(events.clone()),
                Bind::List(events),
            ],
        )
    })
}

fn query(client: &Client, sql: &str, binds: &[Bind<'_>]) -> clickhouse::query::Query {
    binds
        .iter()
        .fold(client.query(sql), |query, bind| match bind {
            Bind::Text(text) => query.bind(*text),
            Bind::List(list) => query.bind(list),
        })
}

#[derive(Debug, Row, Deserialize)]
struct SessionEvent {
    session_id: String,
    event_id: String,
}

/// Find what is tied to `hash` in `tenant_id`'s rows of `db`.
pub async fn find(
    client: &Client,
    db: &str,
    tenant_id: &str,
    hash: &str,
) -> Result<Subject, clickhouse::error::Error> {
    let mut subject = Subject {
        tenant_id: tenant_id.to_owned(),
        hash: hash.to_owned(),
        ..Subject::default()
    };
    let add = |rows: Vec<SessionEvent>, subject: &mut Subject| {
        for row in rows {
            if !row.session_id.is_empty() {
                subject.sessions.insert(row.session_id);
            }
            if !row.event_id.is_empty() {
                subject.events.insert(row.event_id);
            }
        }
    };
    // 1. The events carrying the hash.
    for table in ["raw_events", "events"] {
        let sql = format!(
            "SELECT DISTINCT session_id, event_id FROM {db}.{table} \
             WHERE tenant_id = ? AND position(payload, ?) > 0"
        );
        let rows = query(client, &sql, &[Bind::Text(tenant_id), Bind::Text(hash)])
            .fetch_all()
            .await?;
        add(rows, &mut subject);
    }
    if subject.events.is_empty() {
        return Ok(subject);
    }
    // 2. The visits their conversions were matched to, and their reversals.
    let events: Vec<&str> = subject.events.iter().map(String::as_str).collect();
    let sql = format!(
        "SELECT matched_session_id AS session_id, conversion_id AS event_id FROM {db}.matches \
         WHERE tenant_id = ? AND (has(?, conversion_id) OR has(?, original_conversion_id))"
    );
    let rows = query(
        client,
        &sql,
        &[
            Bind::Text(tenant_id),
            Bind::List(events.clone()),
            Bind::List(events),
        ],
    )
    .fetch_all()
    .await?;
    add(rows, &mut subject);
    // 3. Every event of those sessions.
    if !subject.sessions.is_empty() {
        let sessions: Vec<&str> = subject.sessions.iter().map(String::as_str).collect();
        let mut found = Vec::new();
        for table in ["raw_events", "events"] {
            let sql = format!(
                "SELECT DISTINCT session_id, event_id FROM {db}.{table} \
                 WHERE tenant_id = ? AND has(?, session_id)"
            );
            found.extend(
                query(
                    client,
                    &sql,
                    &[Bind::Text(tenant_id), Bind::List(sessions.clone())],
                )
                .fetch_all::<SessionEvent>()
                .await?,
            );
        }
        add(found, &mut subject);
    }
    Ok(subject)
}

/// Rows tied to `subject` per table (every copy, merged or not).
pub async fn count(
    client: &Client,
    db: &str,
    subject: &Subject,
) -> Result<BTreeMap<String, u64>, clickhouse::error::Error> {
    let mut counts = BTreeMap::new();
    for (table, columns) in TABLES {
        let Some((condition, binds)) = condition(columns, subject) else {
            continue;
        };
        let sql = format!("SELECT count() FROM {db}.{table} WHERE {condition}");
        let rows: u64 = query(client, &sql, &binds).fetch_one().await?;
        counts.insert(table.to_owned(), rows);
    }
    if let Some((condition, binds)) = shared_attempts(subject) {
        let sql = format!("SELECT count() FROM {db}.{ATTEMPTS} WHERE {condition}");
        let rows: u64 = query(client, &sql, &binds).fetch_one().await?;
        *counts.entry(ATTEMPTS.to_owned()).or_default() += rows;
    }
    Ok(counts)
}

/// Delete the rows tied to `subject` from every table `counted` found rows in (a table
/// with none gets no mutation: mutations rewrite parts, so a purge that matched nothing
/// costs ClickHouse nothing) and wait until ClickHouse has applied the deletes (at most
/// `wait`).
pub async fn delete(
    client: &Client,
    db: &str,
    subject: &Subject,
    counted: &BTreeMap<String, u64>,
    wait: Duration,
) -> Result<(), clickhouse::error::Error> {
    let has_rows = |table: &str| counted.get(table).is_some_and(|rows| *rows > 0);
    let mut tables = Vec::new();
    for (table, columns) in TABLES {
        if !has_rows(table) {
            continue;
        }
        let Some((condition, binds)) = condition(columns, subject) else {
            continue;
        };
        let sql = format!("ALTER TABLE {db}.{table} DELETE WHERE {condition}");
        query(client, &sql, &binds).execute().await?;
        tables.push(table);
    }
    if let Some((condition, mut binds)) = shared_attempts(subject).filter(|_| has_rows(ATTEMPTS)) {
        let sql = format!(
            "ALTER TABLE {db}.{ATTEMPTS} UPDATE event_ids = arrayFilter(x -> NOT has(?, x), event_ids) \
             WHERE {condition}"
        );
        binds.insert(
            0,
            Bind::List(subject.events.iter().map(String::as_str).collect()),
        );
        query(client, &sql, &binds).execute().await?;
        if !tables.contains(&ATTEMPTS) {
            tables.push(ATTEMPTS);
        }
    }
    // Nothing issued, nothing to wait for.
    if tables.is_empty() {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let running: u64 = client
            .query(
                "SELECT count() FROM system.mutations \
                 WHERE database = ? AND has(?, table) AND is_done = 0",
            )
            .bind(db)
            .bind(&tables)
            .fetch_one()
            .await?;
        if running == 0 || tokio::time::Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `purge_receipts`: what one purge did, without the identifier or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct ReceiptRow {
    pub tenant_id: String,
    pub purge_id: String,
    pub identifier_kind: String,
    /// [`funnelhub_schemas::privacy::receipt_digest`] of the hash: whoever holds the
    /// identifier can find its receipt; the hash itself is found nowhere.
    pub identifier_digest: String,
    pub requested_at: u32,
    pub requested_at_ms: i64,
    pub completed_at_ms: i64,
    pub sessions: u32,
    pub events: u32,
    pub tables: Vec<String>,
    pub rows: Vec<u64>,
    /// Rows found again after the deletes (0 unless a sink wrote while purging).
    pub left: u64,
}

/// Store a receipt (`client` is bound to the database, as the sink's is).
pub async fn record(client: &Client, receipt: &ReceiptRow) -> Result<(), clickhouse::error::Error> {
    let mut insert = client.insert::<ReceiptRow>("purge_receipts").await?;
    insert.write(receipt).await?;
    insert.end().await
}

/// Tables that hold nothing of buyers (tenants' setup actions and chat messages, secrets
/// and personal data masked; kept webhooks, personal values redacted at the edge): no
/// purge.
pub const NOT_PERSONAL: [&str; 3] = ["setup_action_logs", "setup_messages", "raw_webhooks"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_matches_by_each_column_that_points_at_the_person() {
        let subject = Subject {
            tenant_id: "acme".into(),
            hash: "h".into(),
            sessions: ["s1".to_string()].into(),
            events: ["e1".to_string(), "e2".to_string()].into(),
        };
        let (sql, binds) = condition(TABLES[1].1, &subject).expect("raw_events");
        assert_eq!(
            sql,
            "tenant_id = ? AND (has(?, session_id) OR has(?, event_id) OR position(payload, ?) > 0)"
        );
        assert_eq!(
            binds,
            [
                Bind::Text("acme"),
                Bind::List(vec!["s1"]),
                Bind::List(vec!["e1", "e2"]),
                Bind::Text("h"),
            ]
        );
        let attempts = TABLES.iter().find(|t| t.0 == ATTEMPTS).expect("attempts");
        assert_eq!(
            condition(attempts.1, &subject).expect("condition").0,
            "tenant_id = ? AND (hasAll(?, event_ids))",
            "attempts of the person alone are deleted, the others redacted"
        );
        assert!(shared_attempts(&subject).is_some());
        // Nothing found: only the payload can still match; tables without one are skipped.
        let nothing = Subject {
            tenant_id: "acme".into(),
            hash: "h".into(),
            ..Subject::default()
        };
        assert_eq!(
            condition(TABLES[2].1, &nothing).expect("events").0,
            "tenant_id = ? AND (position(payload, ?) > 0)"
        );
        assert!(condition(attempts.1, &nothing).is_none());
    }

    #[test]
    fn every_table_with_rows_of_people_is_purged() {
        let purged: BTreeSet<&str> = TABLES.iter().map(|t| t.0).collect();
        for (table, _) in crate::retention::AGED_BY {
            assert!(
                purged.contains(table) || NOT_PERSONAL.contains(&table),
                "{table}"
            );
        }
        assert!(purged.contains("event_index"));
    }
}
