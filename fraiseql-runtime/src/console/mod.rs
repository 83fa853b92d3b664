//! The saga console: a small web app for operators, served by the runtime beside
//! GraphQL. A layer over [`Runtime`]'s public face, like `prometheus.rs`: it reads what
//! `rt.sagas()`, `rt.outbox()`, `rt.dead_events()` and `rt.consumers()` say, and its
//! buttons call their retries.
//!
//! Nothing is served unless the application mounts [`Runtime::console_router`]; it has
//! no authentication of its own, so the application puts its own in front (an axum
//! layer on the returned router). Pages are server-rendered HTML (maud escapes every
//! value) readable without JavaScript; a few lines of script refresh the counters.
//! Every change is a `POST` form that carries a CSRF token (see `csrf.rs`) and is
//! refused from another site.

mod csrf;
mod handlers;
mod pages;
mod params;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::error::{Error, Result};
use crate::Runtime;

/// The saga console's options; [`Runtime::console_router`] uses the defaults.
///
/// ```no_run
/// # async fn serve(rt: fraiseql_runtime::Runtime) -> fraiseql_runtime::Result<()> {
/// use fraiseql_runtime::console::Console;
/// // Under /ops, with a secret shared by every instance behind the load balancer, so a
/// // form served by one instance may be posted to another.
/// let secret = std::env::var("CONSOLE_SECRET").unwrap_or_default();
/// let router = Console::new(&rt).path("/ops")?.csrf_secret(secret.as_bytes())?.router();
/// # let _ = router; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Console {
    rt: Runtime,
    path: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("Console").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Console {
    /// The console of `rt` at `/console`, with a random CSRF secret of this process.
    pub fn new(rt: &Runtime) -> Console {
        Console { rt: rt.clone(), path: "/console".to_string(), secret: csrf::random_secret() }
    }

    /// Serve the console under `path` (default `/console`): an absolute path of URL-safe
    /// segments, without a trailing slash.
    pub fn path(mut self, path: &str) -> Result<Console> {
        let ok = path.len() > 1
            && path.starts_with('/')
            && !path.ends_with('/')
            && path[1..]
                .split('/')
                .all(|seg| !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b)));
        if !ok {
            return Err(Error::InvalidArgument(format!(
                "console path `{path}`: expected an absolute path like `/console` (letters, digits, `-_.~`, no trailing `/`)"
            )));
        }
        self.path = path.to_string();
        Ok(self)
    }

    /// Sign CSRF tokens with this secret (at least 32 bytes) instead of a random one of
    /// this process: needed when several instances serve the console behind one
    /// address, and keeps forms valid across restarts.
    pub fn csrf_secret(mut self, secret: &[u8]) -> Result<Console> {
        if secret.len() < 32 {
            return Err(Error::InvalidArgument(format!(
                "console CSRF secret: {} bytes is too short to sign with; give at least 32",
                secret.len()
            )));
        }
        self.secret = secret.to_vec();
        Ok(self)
    }

    /// The router: pages under the path, forms posted back to it.
    pub fn router(self) -> Router {
        let base = self.path.clone();
        let state = Arc::new(handlers::Shared { rt: self.rt, base: self.path, csrf: csrf::Csrf::new(&self.secret) });
        let at = |p: &str| format!("{base}{p}");
        Router::new()
            .route(&base, get(handlers::home))
            .route(&at("/"), get(handlers::home))
            .route(&at("/sagas"), get(handlers::sagas))
            .route(&at("/sagas/{id}"), get(handlers::saga))
            .route(&at("/sagas/{id}/retry"), post(handlers::retry_saga).fallback(handlers::post_only))
            .route(&at("/sagas/{id}/fork"), post(handlers::fork_saga).fallback(handlers::post_only))
            .route(&at("/outbox"), get(handlers::outbox))
            .route(&at("/outbox/retry"), post(handlers::retry_dead_letters).fallback(handlers::post_only))
            .route(&at("/dead-events"), get(handlers::dead_events))
            .route(&at("/dead-events/retry"), post(handlers::retry_dead_events).fallback(handlers::post_only))
            .route(&at("/consumers"), get(handlers::consumers))
            .route(&at("/counters.json"), get(handlers::counters))
            .route(&at("/{*rest}"), get(handlers::not_found).post(handlers::not_found))
            .with_state(state)
    }
}

impl Runtime {
    /// The saga console at `/console` (feature `console`, on by default): sagas by name,
    /// status and time with paging, each saga's timeline of steps and compensations,
    /// retries of failed sagas, outbox dead letters and dead events with retry,
    /// consumers with their lag, and live counters. Mount it beside your own routes,
    /// behind your own authentication:
    ///
    /// ```no_run
    /// # async fn serve(rt: fraiseql_runtime::Runtime) -> fraiseql_runtime::Result<()> {
    /// # async fn operators_only(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response { next.run(req).await }
    /// let console = rt.console_router()?.layer(axum::middleware::from_fn(operators_only));
    /// let app = rt.graphql_router()?.merge(console);
    /// # let _ = app; Ok(()) }
    /// ```
    ///
    /// Nothing is served unless this router is mounted. See [`Console`] for another path
    /// or a CSRF secret shared between instances.
    pub fn console_router(&self) -> Result<Router> {
        Ok(Console::new(self).router())
    }
}
