//! `GET /metrics` in Prometheus's text format: a layer over [`Runtime`]'s public face,
//! like GraphQL. Counters and histograms accumulate as the runtime works (see
//! [`crate::telemetry`]); gauges that describe the outside — outbox backlogs, consumer
//! lag — are read at each scrape, so they are as fresh as the scrape.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tracing::warn;

use crate::error::Result;
use crate::{telemetry, Runtime};

impl Runtime {
    /// A router serving `GET /metrics` (Prometheus text format). Mount it beside your own
    /// routes: `axum::serve(listener, rt.graphql_router()?.merge(rt.metrics_router()?))`.
    /// It installs the Prometheus exporter as the process's `metrics` recorder; if the
    /// application installed another one first, this is an error and FraiseQL's series
    /// go to that recorder instead.
    pub fn metrics_router(&self) -> Result<Router> {
        telemetry::prometheus()?;
        let rt = self.clone();
        Ok(Router::new().route(
            "/metrics",
            get(move || {
                let rt = rt.clone();
                async move {
                    match rt.render_metrics().await {
                        Ok(text) => {
                            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
                        }
                        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
                    }
                }
            }),
        ))
    }

    /// Every series as Prometheus text, with the outbox and consumer gauges read now —
    /// for serving them with another web framework. Installs the exporter if needed (see
    /// [`Runtime::metrics_router`]).
    pub async fn render_metrics(&self) -> Result<String> {
        let handle = telemetry::prometheus()?;
        // A database or server that cannot answer leaves its gauges as last read; the
        // counters are still served.
        match self.outbox().backlog().await {
            Ok(list) => {
                for b in list {
                    telemetry::outbox_backlog(&b.database, b.pending, b.dead, b.lag);
                }
            }
            Err(e) => warn!(error = %e, "metrics: cannot read the outbox backlog"),
        }
        match self.consumers().await {
            Ok(list) => {
                for c in list {
                    if let Some(pending) = c.pending {
                        telemetry::consumer_pending(&c.name, pending);
                    }
                }
            }
            Err(e) => warn!(error = %e, "metrics: cannot read the consumers' lag"),
        }
        handle.run_upkeep();
        Ok(handle.render())
    }
}
