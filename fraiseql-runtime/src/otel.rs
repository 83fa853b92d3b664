//! One trace from a saga to the handlers of its events, and an OTLP exporter to see it.
//!
//! With the `opentelemetry` feature and a `tracing-opentelemetry` layer in the
//! process's subscriber (yours, or the one [`install`] sets up), every event carries the
//! W3C trace context of the span that published it — a saga step's span for events
//! written to the outbox:
//!
//! - in its envelope, as `traceparent` and `tracestate` (CloudEvents' distributed
//!   tracing extension), so also in the outbox row's payload, in the embedded bus's
//!   table and in history;
//! - in the outbox row's `traceparent` column, so a sweep in another instance sends it
//!   on without reading the payload;
//! - as the NATS headers `traceparent` (and `tracestate`), for other clients.
//!
//! A handler's span takes that context as its parent: the saga, its steps, the events
//! they publish and the handlers that consume them — in this process or another — are
//! one trace. An event from another client with a `traceparent` header joins its trace
//! the same way. Without the feature nothing is captured, and nothing costs.
//!
//! ```no_run
//! # async fn run() -> fraiseql_runtime::Result<()> {
//! // Spans go to the OTLP/HTTP collector of OTEL_EXPORTER_OTLP_ENDPOINT
//! // (default http://localhost:4318); logs go to stderr as before (RUST_LOG).
//! let _otel = fraiseql_runtime::otel::install("orders-service")?;
//! let rt = fraiseql_runtime::Runtime::builder().start().await?;
//! # Ok(()) }
//! ```
//!
//! Dropping the guard [`install`] returns flushes the spans not yet exported.

/// The trace context an event carries: the publishing span's W3C `traceparent`, and its
/// `tracestate` if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TraceContext {
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

/// The context of the current span, if it belongs to an OpenTelemetry trace.
#[cfg(not(feature = "opentelemetry"))]
#[inline]
pub(crate) fn capture() -> TraceContext {
    TraceContext::default()
}

/// Make `span` a child of the span an event's context names (a no-op without the
/// feature, or without a `traceparent`). Call before the span is first entered.
#[cfg(not(feature = "opentelemetry"))]
#[inline]
pub(crate) fn adopt(_span: &tracing::Span, _traceparent: Option<&str>, _tracestate: Option<&str>) {}

#[cfg(feature = "opentelemetry")]
pub use with_otel::*;

#[cfg(feature = "opentelemetry")]
mod with_otel {
    use std::collections::HashMap;

    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
    use opentelemetry_sdk::Resource;
    use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};
    use tracing_subscriber::layer::{Layer as _, SubscriberExt};
    use tracing_subscriber::util::SubscriberInitExt;

    use super::TraceContext;
    use crate::error::{Error, Result};

    pub(crate) fn capture() -> TraceContext {
        let cx = tracing::Span::current().context();
        if !cx.span().span_context().is_valid() {
            return TraceContext::default();
        }
        let mut carrier = HashMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut carrier);
        TraceContext {
            traceparent: carrier.remove("traceparent"),
            tracestate: carrier.remove("tracestate").filter(|s| !s.is_empty()),
        }
    }

    pub(crate) fn adopt(span: &tracing::Span, traceparent: Option<&str>, tracestate: Option<&str>) {
        let Some(traceparent) = traceparent else { return };
        let mut carrier = HashMap::with_capacity(2);
        carrier.insert("traceparent".to_string(), traceparent.to_string());
        if let Some(s) = tracestate {
            carrier.insert("tracestate".to_string(), s.to_string());
        }
        let cx = TraceContextPropagator::new().extract(&carrier);
        // A malformed traceparent extracts as no span: the handler starts its own trace.
        if cx.span().span_context().is_valid() {
            // Fails only without an OpenTelemetry layer, where there is nothing to link.
            let _ = span.set_parent(cx);
        }
    }

    /// Flushes and stops the exporter [`install`] or [`layer`] started when dropped: keep
    /// it alive for as long as the process should export spans.
    #[must_use = "dropping the guard stops exporting spans"]
    #[derive(Debug)]
    pub struct OtelGuard {
        provider: SdkTracerProvider,
    }

    impl OtelGuard {
        /// Export every finished span now (before a planned exit, say).
        pub fn flush(&self) -> Result<()> {
            self.provider.force_flush().map_err(|e| Error::config_from("opentelemetry: flushing spans", e))
        }
    }

    impl Drop for OtelGuard {
        fn drop(&mut self) {
            if let Err(e) = self.provider.shutdown() {
                eprintln!("opentelemetry: exporting the last spans failed: {e}");
            }
        }
    }

    /// A `tracing` layer that exports spans by OTLP/HTTP (protobuf) as `service_name`,
    /// for an application that builds its own subscriber. The endpoint and headers come
    /// from the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT`, default
    /// `http://localhost:4318`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
    /// `OTEL_EXPORTER_OTLP_HEADERS`); spans are batched on a thread of the exporter's own.
    /// Plain HTTP only: run a collector beside the service for TLS to a remote one.
    pub fn layer<S>(service_name: &str) -> Result<(OpenTelemetryLayer<S, SdkTracer>, OtelGuard)>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(|e| Error::config_from("opentelemetry: building the OTLP exporter", e))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name(service_name.to_string()).build())
            .build();
        let tracer = provider.tracer("fraiseql");
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        opentelemetry::global::set_tracer_provider(provider.clone());
        Ok((tracing_opentelemetry::layer().with_tracer(tracer), OtelGuard { provider }))
    }

    /// Install the process's subscriber: logs to stderr filtered by `RUST_LOG` (default
    /// `info`), and every span at `INFO` or above exported by OTLP as `service_name`
    /// (see [`layer`]) whatever `RUST_LOG` says — quieting the logs keeps the traces.
    /// An error if a subscriber is already installed.
    pub fn install(service_name: &str) -> Result<OtelGuard> {
        let (otel, guard) = layer(service_name)?;
        let logs = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        tracing_subscriber::registry()
            .with(otel.with_filter(tracing_subscriber::filter::LevelFilter::INFO))
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(logs))
            .try_init()
            .map_err(|e| Error::config_from("opentelemetry: installing the tracing subscriber", e))?;
        Ok(guard)
    }
}
