//! The console's requests: read the parameters (a bad one is a 400 page naming it), ask
//! the runtime, render a page. Changes are `POST`s checked for CSRF, answered with a
//! redirect to the page that shows the outcome (so a reload does not repeat them).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use maud::Markup;
use serde::Serialize;
use tracing::warn;

use super::csrf::{self, Csrf};
use super::pages::{self, Nav, Notice, Page};
use super::params::{self, Params};
use crate::error::Error;
use crate::saga::inspect::ListFilter;
use crate::status::SagaStatus;
use crate::Runtime;

pub(super) struct Shared {
    pub(super) rt: Runtime,
    pub(super) base: String,
    pub(super) csrf: Csrf,
}

type St = State<Arc<Shared>>;

/// Rows a saga page shows unless `limit` says otherwise.
const PAGE: u32 = 25;

/// How long a page waits for one read before it says the runtime did not answer: the
/// console is opened precisely when a database or the event bus is down.
const READ_WAIT: Duration = Duration::from_secs(5);
/// The counters, on every page, wait less; what does not answer shows as "?".
const COUNTER_WAIT: Duration = Duration::from_secs(2);

/// `read`, or a timeout error naming `what` once `wait` has passed.
async fn within<T>(what: &str, wait: Duration, read: impl Future<Output = crate::Result<T>>) -> crate::Result<T> {
    tokio::time::timeout(wait, read)
        .await
        .unwrap_or_else(|_| Err(Error::Timeout(format!("{what}: no answer within {} s", wait.as_secs()))))
}

/// Why a request got no page of its own: each becomes an error page with its status.
pub(super) enum Problem {
    /// A parameter or form field is not acceptable (the message names it).
    BadRequest(String),
    NotFound(String),
    /// A change refused by the CSRF check; nothing was changed.
    Forbidden(csrf::Refusal),
    /// The change does not apply to the thing as it is now.
    Conflict(String),
    /// A page that only takes `POST`.
    PostOnly,
    /// The runtime failed to answer.
    Internal(Error),
}

impl From<Error> for Problem {
    fn from(e: Error) -> Problem {
        match e {
            Error::NotFound(m) => Problem::NotFound(m),
            Error::InvalidArgument(m) => Problem::Conflict(m),
            e => Problem::Internal(e),
        }
    }
}

/// Headers of every HTML answer: no caching (the pages are live state), no framing
/// (buttons must not be clickable through another site's page), scripts only ours.
fn html(status: StatusCode, markup: Markup, script_nonce: &str, cookie: Option<HeaderValue>) -> Response {
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{script_nonce}'; connect-src 'self'; \
         img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    let mut r = (status, markup).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    if let Some(c) = cookie {
        h.insert(header::SET_COOKIE, c);
    }
    r
}

impl Shared {
    /// What every page needs: the CSRF token for this browser (and the cookie to set
    /// if it has none yet), a script nonce, and the counters.
    async fn page(&self, headers: &HeaderMap, nav: Nav) -> (Page, Option<HeaderValue>) {
        let (nonce, cookie) = match csrf::nonce_of(headers) {
            Some(n) => (n, None),
            None => {
                let n = csrf::new_nonce();
                let c = csrf::set_cookie(&n, &self.base);
                (n, Some(c))
            }
        };
        let page = Page {
            base: self.base.clone(),
            token: self.csrf.token(&nonce),
            script_nonce: csrf::new_nonce(),
            counters: read_counters(&self.rt).await,
            nav,
        };
        (page, cookie)
    }

    fn problem(&self, problem: Problem) -> Response {
        let (status, title, message) = match problem {
            Problem::BadRequest(m) => (StatusCode::BAD_REQUEST, "Bad request", m),
            Problem::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m),
            Problem::Forbidden(r) => {
                (StatusCode::FORBIDDEN, "Refused", format!("{}. Nothing was changed.", capitalised(r.message())))
            }
            Problem::Conflict(m) => (StatusCode::CONFLICT, "Not possible now", m),
            Problem::PostOnly => (
                StatusCode::METHOD_NOT_ALLOWED,
                "Use the button",
                "this address changes things: it takes a POST from the buttons on the console's pages".to_string(),
            ),
            Problem::Internal(e) => {
                warn!(error = %e, "console: the runtime could not answer");
                (StatusCode::INTERNAL_SERVER_ERROR, "The runtime could not answer", e.to_string())
            }
        };
        let nonce = csrf::new_nonce();
        let mut r = html(status, pages::problem(&self.base, title, &message), &nonce, None);
        if status == StatusCode::METHOD_NOT_ALLOWED {
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        r
    }

    fn answer(&self, result: Result<Response, Problem>) -> Response {
        result.unwrap_or_else(|p| self.problem(p))
    }

    /// The form of a `POST`, once the CSRF check passed.
    fn form(&self, headers: &HeaderMap, body: &[u8], fields: &[&str]) -> Result<Params, Problem> {
        let mut known = vec![csrf::FIELD];
        known.extend_from_slice(fields);
        let form =
            Params::parse(body, &known).map_err(|e| Problem::BadRequest(e.replace("parameter", "form field")))?;
        self.csrf.check(headers, form.get(csrf::FIELD)).map_err(Problem::Forbidden)?;
        Ok(form)
    }

    fn see_other(&self, path_and_query: &str) -> Response {
        Redirect::to(&format!("{}{path_and_query}", self.base)).into_response()
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

fn query(raw: &Option<String>, known: &[&str]) -> Result<Params, Problem> {
    Params::parse(raw.as_deref().unwrap_or("").as_bytes(), known).map_err(Problem::BadRequest)
}

/// The live counters (also `counters.json`). A part the runtime cannot read now is
/// `None` and shows as "?", so one unreachable database does not take the page down.
#[derive(Debug, Default, Serialize)]
pub(super) struct Counters {
    pub(super) running: Option<u64>,
    pub(super) compensating: Option<u64>,
    pub(super) failed: Option<u64>,
    pub(super) stuck: Option<u64>,
    pub(super) outbox_pending: Option<u64>,
    pub(super) dead_letters: Option<u64>,
    pub(super) dead_events: Option<u64>,
    pub(super) consumer_lag: Option<u64>,
}

async fn read_counters(rt: &Runtime) -> Counters {
    let (sagas, outbox) = (rt.sagas(), rt.outbox());
    let (sagas, backlog, dead, consumers) = tokio::join!(
        within("counting sagas", COUNTER_WAIT, sagas.counts()),
        within("reading the outbox backlog", COUNTER_WAIT, outbox.backlog()),
        within("reading dead events", COUNTER_WAIT, rt.dead_events(None)),
        within("reading the consumers", COUNTER_WAIT, rt.consumers()),
    );
    let mut c = Counters::default();
    match sagas {
        Ok(s) => {
            (c.running, c.compensating, c.failed, c.stuck) =
                (Some(s.running), Some(s.compensating), Some(s.failed), Some(s.stuck))
        }
        Err(e) => warn!(error = %e, "console: cannot count sagas"),
    }
    match backlog {
        Ok(b) => {
            c.outbox_pending = Some(b.iter().map(|x| x.pending).sum());
            c.dead_letters = Some(b.iter().map(|x| x.dead).sum());
        }
        Err(e) => warn!(error = %e, "console: cannot read the outbox backlog"),
    }
    match dead {
        Ok(d) => c.dead_events = Some(d.len() as u64),
        Err(e) => warn!(error = %e, "console: cannot read dead events"),
    }
    match consumers {
        Ok(list) => c.consumer_lag = Some(list.iter().filter_map(|x| x.pending).sum()),
        Err(e) => warn!(error = %e, "console: cannot read the consumers"),
    }
    c
}

/// `/counters.json`: what the page's script polls.
pub(super) async fn counters(State(s): St) -> Response {
    let c = read_counters(&s.rt).await;
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(c)).into_response()
}

pub(super) async fn home(State(s): St) -> Response {
    s.see_other("/sagas")
}

pub(super) async fn not_found(State(s): St, uri: Uri) -> Response {
    s.problem(Problem::NotFound(format!("the console has no page at `{}`", uri.path())))
}

pub(super) async fn post_only(State(s): St) -> Response {
    s.problem(Problem::PostOnly)
}

/// `/sagas`: filtered by name, status and start time, newest first, a page at a time.
pub(super) async fn sagas(State(s): St, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let r = async {
        let q = query(&raw, &["name", "status", "from", "to", "after", "limit"])?;
        let now = now_ms();
        let limit = q.number("limit", 1, 500).map_err(Problem::BadRequest)?.unwrap_or(PAGE);
        let filter = ListFilter {
            status: q.status("status").map_err(Problem::BadRequest)?,
            name: q.get("name").map(String::from),
            started_from: q.time("from", now).map_err(Problem::BadRequest)?,
            started_before: q.time("to", now).map_err(Problem::BadRequest)?,
            after_id: q.saga_id("after").map_err(Problem::BadRequest)?,
            // One more than shown: whether there is a next page.
            limit: Some(limit + 1),
        };
        let mut rows = within("listing sagas", READ_WAIT, s.rt.sagas().list(filter.clone())).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let names: Vec<&str> = s.rt.registry().sagas().map(|d| d.name).collect();
        let view = pages::SagaList { filter: &filter, limit, rows: &rows, more, names: &names, now };
        let (page, cookie) = s.page(&headers, Nav::Sagas).await;
        Ok(html(StatusCode::OK, pages::sagas(&page, &view), &page.script_nonce, cookie))
    };
    s.answer(r.await)
}

/// `/sagas/{id}`: one saga with its input, state and timeline.
pub(super) async fn saga(
    State(s): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let r = async {
        let q = query(&raw, &["done", "of"])?;
        let id = params::saga_id(&id).map_err(Problem::BadRequest)?;
        let detail = within("reading the saga", READ_WAIT, s.rt.sagas().get(&id)).await?;
        let notice = match q.get("done") {
            Some("retried") => Some(Notice::Retried(detail.summary.status)),
            Some("forked") => Some(Notice::Forked(q.saga_id("of").map_err(Problem::BadRequest)?.unwrap_or_default())),
            Some(other) => {
                return Err(Problem::BadRequest(format!(
                    "parameter `done`: `{other}` is not an outcome this page reports"
                )))
            }
            None => None,
        };
        let def = s.rt.registry().saga(&detail.summary.name).ok();
        let (page, cookie) = s.page(&headers, Nav::Sagas).await;
        let view = pages::SagaView { detail: &detail, def, notice, now: now_ms() };
        Ok(html(StatusCode::OK, pages::saga(&page, &view), &page.script_nonce, cookie))
    };
    s.answer(r.await)
}

/// `POST /sagas/{id}/retry`: run a failed (or stuck) saga's compensations again.
pub(super) async fn retry_saga(State(s): St, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    let r = async {
        s.form(&headers, &body, &[])?;
        let id = params::saga_id(&id).map_err(Problem::BadRequest)?;
        let status = s.rt.sagas().get(&id).await?.summary.status;
        if !matches!(status, SagaStatus::Failed | SagaStatus::Stuck) {
            return Err(Problem::Conflict(format!(
                "saga {id} is {status}: only a failed or stuck saga is retried (its compensations run again)"
            )));
        }
        s.rt.sagas().retry(&id).await?;
        Ok(s.see_other(&format!("/sagas/{id}?done=retried")))
    };
    s.answer(r.await)
}

/// `POST /sagas/{id}/fork`: a new saga from this one's input and its state before a step.
pub(super) async fn fork_saga(State(s): St, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    let r = async {
        let form = s.form(&headers, &body, &["step"])?;
        let id = params::saga_id(&id).map_err(Problem::BadRequest)?;
        let step = form
            .get("step")
            .ok_or_else(|| Problem::BadRequest("form field `step`: choose the step to run from".into()))?;
        let name = s.rt.sagas().get(&id).await?.summary.name;
        let def = s.rt.registry().saga(&name).map_err(|_| {
            Problem::Conflict(format!("saga `{name}` is not registered in this process: it cannot be forked here"))
        })?;
        if !def.steps.contains(&step) {
            return Err(Problem::BadRequest(format!(
                "form field `step`: saga `{name}` has no step `{step}` (its steps: {})",
                def.steps.join(", ")
            )));
        }
        let fork = s.rt.sagas().fork(&id, step).await?;
        Ok(s.see_other(&format!("/sagas/{}?done=forked&of={id}", fork.summary.id)))
    };
    s.answer(r.await)
}

/// `/outbox`: each database's backlog, and the dead letters.
pub(super) async fn outbox(State(s): St, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let r = async {
        let q = query(&raw, &["done", "n"])?;
        let notice = match q.get("done") {
            Some("retried") => {
                Some(Notice::LettersRetried(q.number("n", 0, u32::MAX).map_err(Problem::BadRequest)?.unwrap_or(0)))
            }
            Some(other) => {
                return Err(Problem::BadRequest(format!(
                    "parameter `done`: `{other}` is not an outcome this page reports"
                )))
            }
            None => None,
        };
        let outbox = s.rt.outbox();
        let backlog = within("reading the outbox backlog", READ_WAIT, outbox.backlog()).await?;
        let dead = within("reading dead letters", READ_WAIT, outbox.dead_letters()).await?;
        let (page, cookie) = s.page(&headers, Nav::Outbox).await;
        let view = pages::OutboxView { backlog: &backlog, dead: &dead, notice, now: now_ms() };
        Ok(html(StatusCode::OK, pages::outbox(&page, &view), &page.script_nonce, cookie))
    };
    s.answer(r.await)
}

/// `POST /outbox/retry`: one dead letter (`id`) or all of them back in line.
pub(super) async fn retry_dead_letters(State(s): St, headers: HeaderMap, body: Bytes) -> Response {
    let r = async {
        let form = s.form(&headers, &body, &["id"])?;
        let id = form.get("id");
        let n = s.rt.outbox().retry(id).await?;
        if let (Some(id), 0) = (id, n) {
            return Err(Problem::NotFound(format!("no dead letter with id `{id}` (it may have been retried already)")));
        }
        Ok(s.see_other(&format!("/outbox?done=retried&n={n}")))
    };
    s.answer(r.await)
}

/// `/dead-events`: events handlers could not process, optionally one consumer's.
pub(super) async fn dead_events(State(s): St, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let r = async {
        let q = query(&raw, &["consumer", "done", "n", "m"])?;
        let notice = match q.get("done") {
            Some("retried") => Some(Notice::EventsRetried {
                handled: q.number("n", 0, u32::MAX).map_err(Problem::BadRequest)?.unwrap_or(0),
                still_dead: q.number("m", 0, u32::MAX).map_err(Problem::BadRequest)?.unwrap_or(0),
            }),
            Some(other) => {
                return Err(Problem::BadRequest(format!(
                    "parameter `done`: `{other}` is not an outcome this page reports"
                )))
            }
            None => None,
        };
        let consumer = q.get("consumer");
        let dead = within("reading dead events", READ_WAIT, s.rt.dead_events(consumer)).await?;
        let (page, cookie) = s.page(&headers, Nav::DeadEvents).await;
        let view = pages::DeadEventsView { dead: &dead, consumer, notice, now: now_ms() };
        Ok(html(StatusCode::OK, pages::dead_events(&page, &view), &page.script_nonce, cookie))
    };
    s.answer(r.await)
}

/// `POST /dead-events/retry`: run dead events through their handler again: one event
/// (`consumer` and `event`), one consumer's, or all.
pub(super) async fn retry_dead_events(State(s): St, headers: HeaderMap, body: Bytes) -> Response {
    let r = async {
        let form = s.form(&headers, &body, &["consumer", "event"])?;
        let (consumer, event) = (form.get("consumer"), form.get("event"));
        let done = s.rt.retry_dead_events(consumer, event).await?;
        if let (Some(event), 0, 0) = (event, done.processed, done.still_dead) {
            return Err(Problem::NotFound(format!(
                "no dead event with id `{event}` (it may have been retried already)"
            )));
        }
        Ok(s.see_other(&format!("/dead-events?done=retried&n={}&m={}", done.processed, done.still_dead)))
    };
    s.answer(r.await)
}

/// `/consumers`: durable consumers with the events each has not handled yet.
pub(super) async fn consumers(State(s): St, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let r = async {
        query(&raw, &[])?;
        let list = within("reading the consumers", READ_WAIT, s.rt.consumers()).await?;
        let (page, cookie) = s.page(&headers, Nav::Consumers).await;
        Ok(html(StatusCode::OK, pages::consumers(&page, &list), &page.script_nonce, cookie))
    };
    s.answer(r.await)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
