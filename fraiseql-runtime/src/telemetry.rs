//! Metrics, through the [`metrics`] facade: the runtime records them wherever it runs,
//! at the cost of a no-op until a recorder is installed. [`crate::Runtime::metrics_router`]
//! (feature `prometheus`, on by default) installs the Prometheus exporter and serves
//! `GET /metrics`; an application with its own recorder gets the same series there.
//!
//! Names follow Prometheus conventions (`_total` counters, `_seconds` histograms, base
//! units). Labels name sagas, steps, consumers, queries and databases — never ids, so
//! the number of series stays that of the code, not of the traffic.
//!
//! | series | labels | what |
//! |---|---|---|
//! | `fraiseql_sagas_started_total` | `saga` | sagas started here |
//! | `fraiseql_sagas_finished_total` | `saga`, `status` | finished: `completed`, `compensated`, `failed`, `stuck` |
//! | `fraiseql_step_duration_seconds` | `saga`, `step`, `phase`, `outcome` | one attempt of a step or compensation (`committed`, `failed`, `unknown`, `conflict`) |
//! | `fraiseql_recovery_claims_total` | | sagas claimed by recovery |
//! | `fraiseql_outbox_pending` | `database` | events committed, not yet published (read at scrape) |
//! | `fraiseql_outbox_dead` | `database` | outbox dead letters (read at scrape) |
//! | `fraiseql_outbox_lag_seconds` | `database` | age of the oldest pending event (read at scrape) |
//! | `fraiseql_events_published_total` | `via` | acknowledged by the bus: `publish` (direct) or `outbox` (relay) |
//! | `fraiseql_events_handled_total` | `consumer`, `outcome` | handler runs: `ok`, `retried`, `dead`, `duplicate` (inbox) |
//! | `fraiseql_handler_duration_seconds` | `consumer` | one handler run |
//! | `fraiseql_consumer_pending` | `consumer` | events a durable consumer has not handled yet: waiting or in flight (read at scrape) |
//! | `fraiseql_query_duration_seconds` | `query` | one view-backed query |
//! | `fraiseql_graphql_requests_total`, `fraiseql_graphql_request_duration_seconds` | `operation`, `status`, `outcome` | GraphQL requests executed: `ok`, `field_error`, `request_error` |
//! | `fraiseql_graphql_persisted_queries_total` | `outcome` | automatic persisted queries: `hit`, `miss`, `stored` |
//! | `fraiseql_graphql_plans_total` | `outcome` | the compiled path: `hit` (served from a plan), `miss` (not compiled yet), `fallback` (the executor answered) |

use std::time::Duration;

use metrics::{counter, gauge, histogram};

use crate::status::{Phase, SagaStatus};

/// Histogram buckets for durations, in seconds: from half a millisecond (a step on a
/// local database) to ten seconds (a step's default timeout is thirty).
pub const DURATION_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

pub(crate) fn saga_started(saga: &'static str) {
    counter!("fraiseql_sagas_started_total", "saga" => saga).increment(1);
}

pub(crate) fn saga_finished(saga: impl Into<metrics::SharedString>, status: SagaStatus) {
    let saga: metrics::SharedString = saga.into();
    counter!("fraiseql_sagas_finished_total", "saga" => saga, "status" => status.as_str()).increment(1);
}

pub(crate) fn step_attempt(
    saga: &'static str,
    step: &'static str,
    phase: Phase,
    outcome: &'static str,
    took: Duration,
) {
    histogram!("fraiseql_step_duration_seconds", "saga" => saga, "step" => step, "phase" => phase.as_str(), "outcome" => outcome)
        .record(took.as_secs_f64());
}

pub(crate) fn recovery_claimed(n: usize) {
    counter!("fraiseql_recovery_claims_total").increment(n as u64);
}

pub(crate) fn events_published(via: &'static str, n: usize) {
    counter!("fraiseql_events_published_total", "via" => via).increment(n as u64);
}

pub(crate) fn event_handled(consumer: &'static str, outcome: &'static str, took: Option<Duration>) {
    counter!("fraiseql_events_handled_total", "consumer" => consumer, "outcome" => outcome).increment(1);
    if let Some(took) = took {
        histogram!("fraiseql_handler_duration_seconds", "consumer" => consumer).record(took.as_secs_f64());
    }
}

pub(crate) fn query_ran(query: &'static str, took: Duration) {
    histogram!("fraiseql_query_duration_seconds", "query" => query).record(took.as_secs_f64());
}

#[cfg(feature = "graphql")]
/// Operation names a client chooses: the first `MAX_OPERATIONS` distinct ones are
/// labels, later ones count as `other`, so a client cannot grow the series unbounded.
const MAX_OPERATIONS: usize = 200;

#[cfg(feature = "graphql")]
pub(crate) fn graphql_request(operation: Option<&str>, status: u16, outcome: &'static str, took: Duration) {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let operation = match operation {
        None | Some("") => "anonymous".to_string(),
        Some(name) if name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
            "other".to_string()
        }
        Some(name) => {
            let mut seen = SEEN.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
            if seen.contains(name) || (seen.len() < MAX_OPERATIONS && seen.insert(name.to_string())) {
                name.to_string()
            } else {
                "other".to_string()
            }
        }
    };
    counter!("fraiseql_graphql_requests_total", "operation" => operation.clone(), "status" => status.to_string(), "outcome" => outcome)
        .increment(1);
    histogram!("fraiseql_graphql_request_duration_seconds", "operation" => operation).record(took.as_secs_f64());
}

#[cfg(feature = "graphql")]
pub(crate) fn persisted_query(outcome: &'static str) {
    counter!("fraiseql_graphql_persisted_queries_total", "outcome" => outcome).increment(1);
}

#[cfg(feature = "graphql")]
pub(crate) fn graphql_plan(outcome: &'static str) {
    counter!("fraiseql_graphql_plans_total", "outcome" => outcome).increment(1);
}

pub(crate) fn outbox_backlog(database: &str, pending: u64, dead: u64, lag: Duration) {
    gauge!("fraiseql_outbox_pending", "database" => database.to_string()).set(pending as f64);
    gauge!("fraiseql_outbox_dead", "database" => database.to_string()).set(dead as f64);
    gauge!("fraiseql_outbox_lag_seconds", "database" => database.to_string()).set(lag.as_secs_f64());
}

pub(crate) fn consumer_pending(consumer: &str, pending: u64) {
    gauge!("fraiseql_consumer_pending", "consumer" => consumer.to_string()).set(pending as f64);
}

/// The help text of every series, given to the recorder once.
pub(crate) fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!("fraiseql_sagas_started_total", "Sagas started by this process.");
    describe_counter!("fraiseql_sagas_finished_total", "Sagas finished by this process, by final status.");
    describe_histogram!(
        "fraiseql_step_duration_seconds",
        Unit::Seconds,
        "One attempt of a saga step or compensation, by outcome."
    );
    describe_counter!("fraiseql_recovery_claims_total", "Sagas of stopped runtimes claimed for recovery.");
    describe_gauge!("fraiseql_outbox_pending", "Events committed to an outbox and not yet published.");
    describe_gauge!("fraiseql_outbox_dead", "Outbox events that could not be published within their budget.");
    describe_gauge!("fraiseql_outbox_lag_seconds", Unit::Seconds, "Age of the oldest event waiting in an outbox.");
    describe_counter!("fraiseql_events_published_total", "Events the bus acknowledged, published directly or relayed.");
    describe_counter!("fraiseql_events_handled_total", "Handler runs by consumer and outcome.");
    describe_histogram!("fraiseql_handler_duration_seconds", Unit::Seconds, "One run of an event handler.");
    describe_gauge!("fraiseql_consumer_pending", "Events a durable consumer has not handled yet.");
    describe_histogram!("fraiseql_query_duration_seconds", Unit::Seconds, "One view-backed query.");
    describe_counter!("fraiseql_graphql_requests_total", "GraphQL requests by operation, HTTP status and outcome.");
    describe_histogram!(
        "fraiseql_graphql_request_duration_seconds",
        Unit::Seconds,
        "One GraphQL request, parsed to answered."
    );
    describe_counter!("fraiseql_graphql_persisted_queries_total", "Automatic persisted queries: hits, misses, stored.");
    describe_counter!(
        "fraiseql_graphql_plans_total",
        "GraphQL requests by compiled plan: served from a plan, not compiled yet, left to the executor."
    );
}

/// The Prometheus exporter, installed once per process (the facade has one recorder).
#[cfg(feature = "prometheus")]
pub(crate) fn prometheus() -> crate::error::Result<&'static metrics_exporter_prometheus::PrometheusHandle> {
    use std::sync::OnceLock;
    static HANDLE: OnceLock<std::result::Result<metrics_exporter_prometheus::PrometheusHandle, String>> =
        OnceLock::new();
    let installed = HANDLE.get_or_init(|| {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets(DURATION_BUCKETS)
            .map_err(|e| e.to_string())?
            .build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).map_err(|_| {
            "another metrics recorder is installed in this process; FraiseQL's series go to it — serve them \
             with its exporter instead of `metrics_router`"
                .to_string()
        })?;
        describe();
        Ok(handle)
    });
    installed.as_ref().map_err(|e| crate::error::Error::config(e.clone()))
}
