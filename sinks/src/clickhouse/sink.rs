//! The sink stage: every analysed topic → its table, one `INSERT` per batch of a topic
//! partition (up to `batch_rows`, lingering `linger_ms` to fill it).
//!
//! The stage runner stores a batch's offset only after ClickHouse acknowledged the
//! `INSERT` (`Insert::end`). A failed insert (ClickHouse down, overloaded) is retried with
//! backoff, for as long as it takes, holding the partition: back-pressure, never a drop.
//! An insert that takes longer than `insert_timeout_secs` counts as failed: a connection
//! that stopped answering without closing would otherwise hold its partition forever.
//! Rows ClickHouse refuses for what they hold (it cannot parse them) are not retried: the
//! stage runner inserts the batch again row by row and dead-letters each row refused on
//! its own (`reason=permanent_delivery_failure`).
//! Re-inserting rows after a crash or a replay is harmless: every table replaces rows by
//! their record id. Records that do not decode are dead-lettered (`stage=clickhouse`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clickhouse::{Client, RowOwned, RowWrite};
use funnelhub_kafka::dlq::DeadLetters;
use funnelhub_kafka::stage::{Dependency, Output, PartitionProcessor, ProcessError, Record, Stage};
use funnelhub_kafka::{Suppressions, TopicCodec};
use funnelhub_schemas::derived::{
    CapiDispatchRequest, DedupedEvent, DispatchAttempt, DlqRecord, FunnelTransition, MatchResult,
    OpsTicket,
};
use funnelhub_schemas::events::{EdgeEvent, OnboardingEvent, OrderEvent, TrackingHit};
use funnelhub_schemas::privacy::Tied;
use funnelhub_schemas::{AvroRecord, StageId, Topic};

use super::rows::{
    AttemptRow, CapiRequestRow, DlqRow, EventRow, MatchRow, RawWebhookRow, SessionStageRow,
    SetupActionRow, SetupMessageRow, TicketRow, TransitionRow,
};

/// The topics the sink reads, each with its codec.
#[derive(Debug)]
pub struct Codecs {
    pub tracking: TopicCodec<TrackingHit>,
    pub orders: TopicCodec<OrderEvent>,
    pub onboarding: TopicCodec<OnboardingEvent>,
    pub deduped: TopicCodec<DedupedEvent>,
    pub transitions: TopicCodec<FunnelTransition>,
    pub tickets: TopicCodec<OpsTicket>,
    pub matches: TopicCodec<MatchResult>,
    pub requests: TopicCodec<CapiDispatchRequest>,
    pub attempts: TopicCodec<DispatchAttempt>,
    pub dlq: TopicCodec<DlqRecord>,
    pub setup_actions: TopicCodec<funnelhub_schemas::setup::SetupActionLog>,
    pub raw_webhooks: TopicCodec<funnelhub_schemas::events::RawWebhook>,
    pub setup_messages: TopicCodec<funnelhub_schemas::setup::SetupMessage>,
}

/// The sink.
pub struct ClickHouseSink {
    pub(crate) client: Client,
    pub(crate) codecs: Codecs,
    /// Topic name → which one it is.
    pub(crate) topics: HashMap<String, Topic>,
    pub(crate) dead_letters: DeadLetters,
    pub(crate) linger: Duration,
    /// Longest one `INSERT` may take before it is abandoned and retried.
    pub(crate) insert_timeout: Duration,
    pub(crate) suppressions: Suppressions,
}

impl std::fmt::Debug for ClickHouseSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseSink")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

/// Every topic the sink stores: its inputs in the stage table.
pub const STORED: &[Topic] = StageId::ClickHouse.inputs();

impl Stage for ClickHouseSink {
    type Processor = ClickHousePartition;

    fn name(&self) -> &'static str {
        StageId::ClickHouse.name()
    }

    fn inputs(&self) -> Vec<String> {
        self.topics.keys().cloned().collect()
    }

    fn state(&self) -> Option<&TopicCodec<DlqRecord>> {
        None
    }

    fn linger(&self) -> Option<Duration> {
        Some(self.linger)
    }

    fn dead_letters(&self) -> Option<&DeadLetters> {
        Some(&self.dead_letters)
    }

    fn processor(self: &Arc<Self>, topic: &str, _partition: i32) -> ClickHousePartition {
        ClickHousePartition {
            sink: self.clone(),
            topic: self.topics.get(topic).copied(),
        }
    }
}

/// The sink of one topic partition (no state: the tables are the state).
#[derive(Debug)]
pub struct ClickHousePartition {
    sink: Arc<ClickHouseSink>,
    topic: Option<Topic>,
}

impl PartitionProcessor for ClickHousePartition {
    type State = DlqRecord;

    async fn process(
        &mut self,
        batch: &[Record],
        out: &mut Vec<Output>,
    ) -> Result<(), ProcessError> {
        let sink = &*self.sink;
        let c = &sink.codecs;
        let Some(topic) = self.topic else {
            return Err(ProcessError::Fatal(format!(
                "no table for topic {}",
                batch[0].topic
            )));
        };
        match topic {
            Topic::RawTracking => {
                let rows = sink
                    .rows(batch, &c.tracking, out, |r, hit| {
                        EventRow::raw(&EdgeEvent::TrackingHit(hit), &r.position())
                    })
                    .await?;
                sink.insert("raw_events", &rows).await
            }
            Topic::RawOrders => {
                let rows = sink
                    .rows(batch, &c.orders, out, |r, order| {
                        EventRow::raw(&EdgeEvent::OrderEvent(order), &r.position())
                    })
                    .await?;
                sink.insert("raw_events", &rows).await
            }
            Topic::RawOnboarding => {
                let rows = sink
                    .rows(batch, &c.onboarding, out, |r, e| {
                        EventRow::raw(&EdgeEvent::OnboardingEvent(e), &r.position())
                    })
                    .await?;
                sink.insert("raw_events", &rows).await
            }
            Topic::Deduped => {
                let rows = sink
                    .rows(batch, &c.deduped, out, |_, d| EventRow::of_deduped(&d))
                    .await?;
                sink.insert("events", &rows).await
            }
            Topic::FunnelTransitions => {
                let transitions = sink.rows(batch, &c.transitions, out, |_, t| t).await?;
                let rows: Vec<TransitionRow> = transitions.iter().map(Into::into).collect();
                sink.insert("funnel_transitions", &rows).await?;
                let stages: Vec<SessionStageRow> = transitions.iter().map(Into::into).collect();
                sink.insert("session_stages", &stages).await
            }
            Topic::OpsTickets => {
                let rows = sink
                    .rows(batch, &c.tickets, out, |_, t| TicketRow::from(&t))
                    .await?;
                sink.insert("ops_tickets", &rows).await
            }
            Topic::MatchResults => {
                let rows = sink
                    .rows(batch, &c.matches, out, |_, m| MatchRow::from(&m))
                    .await?;
                sink.insert("matches", &rows).await
            }
            Topic::CapiRequests => {
                let rows = sink
                    .rows(batch, &c.requests, out, |r, q| {
                        CapiRequestRow::of(&q, &r.position())
                    })
                    .await?;
                sink.insert("capi_requests", &rows).await
            }
            Topic::CapiAttempts => {
                let rows = sink
                    .rows(batch, &c.attempts, out, |_, mut a| {
                        // Shared by everyone in the request: keep it, without the purged.
                        sink.suppressions
                            .redact_events(&a.tenant_id, &mut a.event_ids);
                        AttemptRow::from(&a)
                    })
                    .await?;
                sink.insert("dispatch_attempts", &rows).await
            }
            Topic::Dlq => {
                let rows = sink
                    .rows(batch, &c.dlq, out, |_, d| DlqRow::from(&d))
                    .await?;
                sink.insert("dlq", &rows).await
            }
            Topic::SetupActions => {
                let rows = sink
                    .rows(batch, &c.setup_actions, out, |_, a| {
                        SetupActionRow::from(&a)
                    })
                    .await?;
                sink.insert("setup_action_logs", &rows).await
            }
            Topic::RawWebhooks => {
                let rows = sink
                    .rows(batch, &c.raw_webhooks, out, |_, w| RawWebhookRow::from(w))
                    .await?;
                sink.insert("raw_webhooks", &rows).await
            }
            Topic::SetupMessages => {
                let rows = sink
                    .rows(batch, &c.setup_messages, out, |_, m| {
                        SetupMessageRow::from(m)
                    })
                    .await?;
                sink.insert("setup_messages", &rows).await
            }
            other => Err(ProcessError::Fatal(format!("no table for {other:?}"))),
        }
    }
}

impl ClickHouseSink {
    /// Decode `batch` and turn each record into a row; undecodable records become dead
    /// letters in `out` (they must not block the partition), records tied to a purged
    /// person are skipped (a replay never writes them back).
    async fn rows<T: AvroRecord + Tied, R>(
        &self,
        batch: &[Record],
        codec: &TopicCodec<T>,
        out: &mut Vec<Output>,
        row: impl Fn(&Record, T) -> R,
    ) -> Result<Vec<R>, ProcessError> {
        let decoded = self.dead_letters.decode_all(batch, codec).await?;
        let mut rows = Vec::with_capacity(batch.len());
        for (record, decoded) in batch.iter().zip(decoded) {
            match decoded {
                Ok(value) if self.suppressions.skip("clickhouse", &value) => {}
                Ok(value) => rows.push(row(record, value)),
                Err(letter) => out.push(letter),
            }
        }
        Ok(rows)
    }

    /// One `INSERT` of `rows`, acknowledged; any failure is retryable.
    async fn insert<R: RowOwned + RowWrite>(
        &self,
        table: &str,
        rows: &[R],
    ) -> Result<(), ProcessError> {
        if rows.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let insert = async {
            let mut insert = self.client.insert::<R>(table).await?;
            for row in rows {
                insert.write(row).await?;
            }
            insert.end().await
        };
        let failure = match tokio::time::timeout(self.insert_timeout, insert).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some(clickhouse::error::Error::TimedOut),
        };
        match failure {
            None => {
                metrics::counter!("funnelhub_clickhouse_rows_total", "table" => table.to_owned())
                    .increment(rows.len() as u64);
                metrics::histogram!("funnelhub_clickhouse_insert_seconds", "table" => table.to_owned())
                    .record(started.elapsed().as_secs_f64());
                Ok(())
            }
            Some(e) => {
                metrics::counter!("funnelhub_clickhouse_insert_errors_total", "table" => table.to_owned())
                    .increment(1);
                let reason = match &e {
                    clickhouse::error::Error::TimedOut => format!(
                        "insert into {table}: no answer within {} s",
                        self.insert_timeout.as_secs()
                    ),
                    e => format!("insert into {table}: {e}"),
                };
                Err(match refusal(&e) {
                    Refusal::Data => ProcessError::Rejected(reason),
                    Refusal::ForNow => ProcessError::unavailable(Dependency::Sink, reason),
                })
            }
        }
    }
}

/// Why ClickHouse did not take an `INSERT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The rows themselves: the same rows will be refused again.
    Data,
    /// Anything else (down, overloaded, a table missing until migrations run): try again.
    ForNow,
}

/// ClickHouse's error codes for data it cannot take: CANNOT_PARSE_TEXT (6),
/// CANNOT_PARSE_QUOTED_STRING (26), CANNOT_PARSE_INPUT_ASSERTION_FAILED (27),
/// CANNOT_PARSE_DATE (38), CANNOT_PARSE_DATETIME (41), TYPE_MISMATCH (53),
/// ARGUMENT_OUT_OF_BOUND (69), CANNOT_CONVERT_TYPE (70), CANNOT_PARSE_NUMBER (72),
/// INCORRECT_DATA (117), TOO_LARGE_STRING_SIZE (131), SIZES_OF_ARRAYS_DONT_MATCH (190),
/// UNKNOWN_ELEMENT_OF_ENUM (691). Truncated input (32, 33) is left out: a connection cut
/// mid-insert looks the same.
const DATA_ERRORS: [u32; 13] = [6, 26, 27, 38, 41, 53, 69, 70, 72, 117, 131, 190, 691];

fn refusal(e: &clickhouse::error::Error) -> Refusal {
    let clickhouse::error::Error::BadResponse(text) = e else {
        return Refusal::ForNow;
    };
    // "Code: 27, e.displayText() = ..." (18.x) or "Code: 27. DB::Exception: ..." (current).
    let code = text.find("Code: ").and_then(|at| {
        let digits: String = text[at + 6..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse::<u32>().ok()
    });
    match code {
        Some(code) if DATA_ERRORS.contains(&code) => Refusal::Data,
        _ => Refusal::ForNow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clickhouse::error::Error;

    #[test]
    fn only_errors_about_the_rows_themselves_reject_them() {
        // As ClickHouse 18.16 and a current server answer a row they cannot parse.
        let old = "Code: 27, e.displayText() = DB::Exception: Cannot parse input: expected \\t before: abc, e.what() = DB::Exception";
        let current = "Code: 53. DB::Exception: Type mismatch in VALUES section. (TYPE_MISMATCH) (version 24.8.4.13 (official build))";
        assert_eq!(refusal(&Error::BadResponse(old.into())), Refusal::Data);
        assert_eq!(refusal(&Error::BadResponse(current.into())), Refusal::Data);
        for for_now in [
            "Code: 60, e.displayText() = DB::Exception: Table t.events doesn't exist., e.what() = DB::Exception",
            "Code: 33, e.displayText() = DB::Exception: Cannot read all data. Bytes read: 1.",
            "Code: 252. DB::Exception: Too many parts (300). (TOO_MANY_PARTS)",
            "Code: 241. DB::Exception: Memory limit (total) exceeded. (MEMORY_LIMIT_EXCEEDED)",
            "502 Bad Gateway",
        ] {
            assert_eq!(refusal(&Error::BadResponse(for_now.into())), Refusal::ForNow, "{for_now}");
        }
        assert_eq!(refusal(&Error::TimedOut), Refusal::ForNow);
    }
}
