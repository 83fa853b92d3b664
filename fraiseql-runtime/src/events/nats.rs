//! The production bus: NATS JetStream through async-nats.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_nats::HeaderMap;
use futures_util::StreamExt;
use serde_json::Value;
use tracing::{info, warn};

use super::envelope::Event;
use crate::config::{EventsConfig, StreamRetention, StreamStorage};
use crate::error::{Error, Result};

pub(crate) struct NatsBus {
    pub(crate) client: async_nats::Client,
    js: jetstream::Context,
    stream: String,
    publish_timeout: Duration,
}

fn nats_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Bus(format!("{what}: {e}"))
}

/// The server list as errors and logs may show it: no password, no token.
fn shown(urls: &[&str]) -> String {
    let one = |u: &str| match (u.find("://"), u.rfind('@')) {
        (Some(s), Some(at)) if at > s => match u[s + 3..at].find(':') {
            Some(c) => format!("{}:***{}", &u[..s + 3 + c], &u[at..]),
            None => format!("{}***{}", &u[..s + 3], &u[at..]),
        },
        _ => u.to_string(),
    };
    urls.iter().map(|u| one(u)).collect::<Vec<_>>().join(",")
}

impl NatsBus {
    pub(crate) async fn connect(cfg: &EventsConfig, url: &str) -> Result<NatsBus> {
        let urls: Vec<&str> = url.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        let url = &shown(&urls);
        // The first connection is retried until `connect_timeout` while the server is not
        // reachable yet; a refusal (credentials, TLS) ends start at once, with the reason.
        // Once connected, the client reconnects forever: the outbox holds what cannot be
        // published meanwhile.
        let deadline = tokio::time::Instant::now() + cfg.connect_timeout;
        let client = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let attempt = tokio::time::timeout(left, Self::options(cfg).await?.connect(urls.as_slice())).await;
            let e = match attempt {
                Ok(Ok(client)) => break client,
                Ok(Err(e)) => e,
                Err(_) => {
                    return Err(Error::Config(format!(
                        "events.url: no NATS server answered at {url} within {:?}",
                        cfg.connect_timeout
                    )));
                }
            };
            use async_nats::ConnectErrorKind as K;
            let fatal = matches!(e.kind(), K::Authentication | K::AuthorizationViolation | K::Tls | K::ServerParse);
            if fatal || tokio::time::Instant::now() + Duration::from_millis(250) >= deadline {
                let hint = match e.kind() {
                    K::Authentication | K::AuthorizationViolation => {
                        " (check events.token, events.user/password, events.nkey or events.credentials_file)"
                    }
                    K::Tls => " (check events.tls_required, events.tls_ca_file and the server's certificate)",
                    _ => "",
                };
                return Err(Error::Config(format!("events.url: cannot connect to NATS at {url}: {e}{hint}")));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let js = jetstream::new(client.clone());
        js.query_account().await.map_err(|e| {
            Error::Config(format!("the NATS server at {url} has no JetStream (start it with `-js`, NATS ≥ 2.10): {e}"))
        })?;
        let bus = NatsBus { client, js, stream: cfg.stream.clone(), publish_timeout: cfg.publish_timeout };
        bus.ensure_stream(cfg).await?;
        Ok(bus)
    }

    async fn options(cfg: &EventsConfig) -> Result<async_nats::ConnectOptions> {
        let mut opts = async_nats::ConnectOptions::new()
            .name("fraiseql")
            .connection_timeout(cfg.connect_timeout)
            .max_reconnects(None)
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => info!("connected to NATS"),
                    async_nats::Event::Disconnected => {
                        warn!("disconnected from NATS; reconnecting (the outbox keeps events meanwhile)")
                    }
                    other => warn!(event = %other, "NATS connection"),
                }
            });
        if let Some(path) = &cfg.credentials_file {
            opts = opts
                .credentials_file(path)
                .await
                .map_err(|e| Error::Config(format!("events.credentials_file `{}`: {e}", path.display())))?;
        }
        if let Some(token) = &cfg.token {
            opts = opts.token(token.clone());
        }
        if let (Some(user), Some(password)) = (&cfg.user, &cfg.password) {
            opts = opts.user_and_password(user.clone(), password.clone());
        }
        if let Some(seed) = &cfg.nkey {
            opts = opts.nkey(seed.clone());
        }
        if cfg.tls_required {
            opts = opts.require_tls(true);
        }
        if let Some(ca) = &cfg.tls_ca_file {
            opts = opts.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&cfg.tls_client_cert, &cfg.tls_client_key) {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
        Ok(opts)
    }

    /// Create the stream, or bring an existing one to the configured subjects and limits.
    async fn ensure_stream(&self, cfg: &EventsConfig) -> Result<()> {
        let config = stream::Config {
            name: cfg.stream.clone(),
            subjects: cfg.subjects.clone(),
            duplicate_window: cfg.duplicate_window,
            max_age: cfg.max_age.unwrap_or_default(),
            num_replicas: cfg.replicas,
            retention: match cfg.retention {
                StreamRetention::Limits => stream::RetentionPolicy::Limits,
                StreamRetention::Interest => stream::RetentionPolicy::Interest,
            },
            storage: match cfg.storage {
                StreamStorage::File => stream::StorageType::File,
                StreamStorage::Memory => stream::StorageType::Memory,
            },
            ..Default::default()
        };
        match self.js.get_stream(&cfg.stream).await {
            Ok(mut existing) => {
                let info = existing.info().await.map_err(|e| nats_err("reading the stream", e))?;
                let c = &info.config;
                if c.storage != config.storage {
                    return Err(Error::Config(format!(
                        "stream `{}` exists with storage {:?} but events.storage says {:?}; storage cannot change in place \
                         (delete the stream, or set events.storage to match)",
                        cfg.stream, c.storage, config.storage
                    )));
                }
                let differs = c.subjects != config.subjects
                    || c.duplicate_window != config.duplicate_window
                    || c.max_age != config.max_age
                    || c.num_replicas != config.num_replicas
                    || c.retention != config.retention;
                if differs {
                    self.js.update_stream(&config).await.map_err(|e| {
                        Error::Config(format!(
                            "stream `{}` exists with another configuration (subjects {:?}, retention {:?}, replicas {}) and the server \
                             refused to update it to events.* (subjects {:?}, retention {:?}, replicas {}): {e}",
                            cfg.stream, c.subjects, c.retention, c.num_replicas, config.subjects, config.retention, config.num_replicas
                        ))
                    })?;
                    info!(stream = %cfg.stream, subjects = ?config.subjects, "updated the stream to the configuration");
                }
            }
            Err(_) => {
                self.js.create_stream(config).await.map_err(|e| {
                    Error::Config(format!("cannot create stream `{}` for subjects {:?}: {e}", cfg.stream, cfg.subjects))
                })?;
            }
        }
        Ok(())
    }

    /// A durable pull consumer on the stream, created or updated to `filter`.
    pub(crate) async fn durable_consumer(
        &self,
        name: &str,
        filter: &str,
        ack_wait: Duration,
    ) -> Result<consumer::PullConsumer> {
        let stream = self.js.get_stream(&self.stream).await.map_err(|e| nats_err("durable consumer", e))?;
        let config = consumer::pull::Config {
            durable_name: Some(name.to_string()),
            filter_subject: filter.to_string(),
            ack_policy: consumer::AckPolicy::Explicit,
            // Redelivery and the delivery budget are decided per message (nak with a delay,
            // term after the budget), so that the dead letter is recorded with its reason.
            ack_wait,
            ..Default::default()
        };
        stream.get_or_create_consumer(name, config).await.map_err(|e| {
            Error::Config(format!("durable consumer `{name}` on `{filter}` (stream `{}`): {e}", self.stream))
        })
    }

    /// Publish and wait for the server's ack. `Nats-Msg-Id` makes a repeat a no-op.
    pub(crate) async fn publish(&self, subject: &str, id: &str, event_type: &str, payload: Vec<u8>) -> Result<()> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        headers.insert("Fraiseql-Type", event_type);
        let ack = async {
            let fut = self
                .js
                .publish_with_headers(subject.to_string(), headers, payload.into())
                .await
                .map_err(|e| nats_err("publish", e))?;
            fut.await.map_err(|e| nats_err("publish ack", e))
        };
        tokio::time::timeout(self.publish_timeout, ack)
            .await
            .map_err(|_| Error::Bus(format!("publish to `{subject}`: no ack within {:?}", self.publish_timeout)))??;
        Ok(())
    }

    /// Fire and forget (core NATS): no ack, no stream guarantee.
    pub(crate) async fn publish_core(&self, subject: &str, id: &str, event_type: &str, payload: Vec<u8>) -> Result<()> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        headers.insert("Fraiseql-Type", event_type);
        self.client
            .publish_with_headers(subject.to_string(), headers, payload.into())
            .await
            .map_err(|e| nats_err("publish", e))
    }

    /// An ordered consumer over `filter` from `since` (a stream start time), and the
    /// stream's name.
    pub(crate) async fn ordered_consumer(
        &self,
        filter: &str,
        since: Option<time::OffsetDateTime>,
    ) -> Result<(consumer::Consumer<consumer::pull::OrderedConfig>, String)> {
        let stream = self.js.get_stream(&self.stream).await.map_err(|e| nats_err("history", e))?;
        let deliver_policy = match since {
            Some(start_time) => consumer::DeliverPolicy::ByStartTime { start_time },
            None => consumer::DeliverPolicy::All,
        };
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: filter.to_string(),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| nats_err("history consumer", e))?;
        Ok((consumer, self.stream.clone()))
    }

    /// Past events on `filter` from `since` (a stream start time), in order, up to now.
    pub(crate) async fn history(&self, filter: &str, since: Option<time::OffsetDateTime>) -> Result<Vec<Event<Value>>> {
        let (consumer, _) = self.ordered_consumer(filter, since).await?;
        let mut pending = consumer.cached_info().num_pending;
        let mut out = Vec::with_capacity(pending as usize);
        if pending == 0 {
            return Ok(out);
        }
        let mut messages = consumer.messages().await.map_err(|e| nats_err("history", e))?;
        // Bounded: a server that keeps the stream busy must not keep us here forever.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60) + Duration::from_millis(pending / 10);
        while pending > 0 {
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Bus(format!(
                    "history of `{filter}`: not caught up before the deadline ({pending} events to go)"
                )));
            }
            let msg = match tokio::time::timeout(Duration::from_secs(10), messages.next()).await {
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(e))) => return Err(nats_err("history", e)),
                Ok(None) => break,
                Err(_) => {
                    return Err(Error::Bus(format!(
                        "history of `{filter}`: the server stopped delivering with {pending} events to go"
                    )))
                }
            };
            let info = msg.info().map_err(|e| nats_err("history", e))?;
            pending = info.pending;
            let seq = info.stream_sequence;
            let headers = msg.headers.as_ref();
            let id = headers.and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.as_str().to_string());
            let ty = headers.and_then(|h| h.get("Fraiseql-Type")).map(|v| v.as_str().to_string());
            out.push(Event::from_message(msg.subject.as_str(), &msg.payload, id.as_deref(), ty.as_deref(), || {
                format!("{}:{seq}", self.stream)
            }));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_lists_are_shown_without_secrets() {
        assert_eq!(
            super::shown(&["nats://app:pw@a:4222", "nats://tok3n@b:4222", "nats://c:4222"]),
            "nats://app:***@a:4222,nats://***@b:4222,nats://c:4222"
        );
    }
}
