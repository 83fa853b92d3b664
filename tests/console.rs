//! The saga console (`rt.console_router()`): over HTTP — nothing served unless mounted,
//! bad filters and ids answered with a page naming them, changes refused without the
//! right CSRF token or from another site, sagas filtered and paged on both backends,
//! dead letters and dead events retried — and in a real browser (headless Chromium over
//! WebDriver) on the orders example, with screenshots in `target/console-screenshots/`.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use common::{Backend, NatsServer, TestDbs, BACKENDS};
use fraiseql::prelude::*;
use fraiseql::testing::{self, Fault};
use fraiseql::SagaStatus;
use serde_json::json;
use tower::ServiceExt;

#[saga(steps = ["console_hold", "console_pay"])]
async fn console_order(cents: i64) -> fraiseql::Result<()>;

#[saga_step("console_hold")]
async fn console_hold(_ctx: &mut SagaContext, cents: i64) -> fraiseql::Result<i64> {
    Ok(cents)
}

#[compensate("console_hold")]
async fn console_release(_ctx: &mut SagaContext) -> fraiseql::Result<()> {
    Ok(())
}

#[saga_step("console_pay")]
async fn console_pay(ctx: &mut SagaContext, cents: i64) -> fraiseql::Result<()> {
    ctx.publish("fraiseql.console.paid", json!({ "cents": cents })).await?;
    Ok(())
}

/// The mail server of the dead-events test: down until the test brings it back.
static MAIL_DOWN: AtomicBool = AtomicBool::new(true);

#[derive(serde::Deserialize)]
struct Mail {
    #[allow(dead_code)]
    to: String,
}

#[subscribe("fraiseql.console.mail", durable = "console-mailer", max_deliver = 2)]
async fn send_mail(_event: Event<Mail>, _ctx: &EventContext) -> fraiseql::Result<()> {
    if MAIL_DOWN.load(Ordering::SeqCst) {
        return Err(Error::msg("mail server unreachable"));
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct Invoice {
    #[allow(dead_code)]
    cents: i64,
}

/// A consumer whose events must be invoices: anything else is a dead event at once.
#[subscribe("fraiseql.console.invoice", durable = "console-invoices")]
async fn book_invoice(_event: Event<Invoice>, _ctx: &EventContext) -> fraiseql::Result<()> {
    Ok(())
}

/// One answer: status, headers, body.
struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> &str {
        self.headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

async fn send(app: &Router, req: Request<Body>) -> Answer {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    Answer { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
}

async fn get(app: &Router, uri: &str) -> Answer {
    send(app, Request::get(uri).header(header::HOST, "console.test").body(Body::empty()).unwrap()).await
}

/// A browser's session with the console: its CSRF cookie and the token its pages carry.
struct Session {
    cookie: String,
    token: String,
}

impl Session {
    /// Open `uri` as a browser without cookies would, and keep what it was given.
    async fn open(app: &Router, uri: &str) -> Session {
        let a = get(app, uri).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let cookie = a.headers.get(header::SET_COOKIE).expect("a first visit gets the CSRF cookie").to_str().unwrap();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
        let cookie = cookie.split(';').next().unwrap().to_string();
        let token =
            between(&a.body, "name=\"csrf\" value=\"", "\"").expect("the page's forms carry a token").to_string();
        Session { cookie, token }
    }

    /// `POST` a form as the console's own page would, with `extra` headers.
    async fn post(&self, app: &Router, uri: &str, form: &str, extra: &[(&str, &str)]) -> Answer {
        let mut req = Request::post(uri)
            .header(header::HOST, "console.test")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        send(app, req.body(Body::from(form.to_string())).unwrap()).await
    }
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    Some(&s[from..from + s[from..].find(end)?])
}

/// The saga ids of a list page, in its order.
fn listed(body: &str) -> Vec<String> {
    body.split("data-saga-id=\"").skip(1).map(|s| s[..s.find('"').unwrap()].to_string()).collect()
}

const SAME_ORIGIN: &[(&str, &str)] = &[("origin", "http://console.test"), ("sec-fetch-site", "same-origin")];

#[tokio::test]
async fn nothing_is_served_unless_the_console_router_is_mounted() {
    let rt = testing::runtime().await.unwrap();
    let app = rt.graphql_router().unwrap().merge(rt.metrics_router().unwrap());
    for uri in ["/console", "/console/sagas", "/console/counters.json"] {
        assert_eq!(get(&app, uri).await.status, StatusCode::NOT_FOUND, "{uri} is not served");
    }
    let app = app.merge(rt.console_router().unwrap());
    let home = get(&app, "/console").await;
    assert_eq!((home.status, home.location()), (StatusCode::SEE_OTHER, "/console/sagas"));
    let page = get(&app, "/console/sagas").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<title>Sagas · FraiseQL console</title>"), "{}", page.body);
    let csp = page.headers.get(header::CONTENT_SECURITY_POLICY).unwrap().to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'nonce-"), "{csp}");
    assert_eq!(page.headers.get(header::X_FRAME_OPTIONS).unwrap(), "DENY");

    // Elsewhere, if asked; a path that is not one is refused with the reason.
    let ops = fraiseql::console::Console::new(&rt).path("/ops/console").unwrap().router();
    assert_eq!(get(&ops, "/ops/console/sagas").await.status, StatusCode::OK);
    assert_eq!(get(&ops, "/console/sagas").await.status, StatusCode::NOT_FOUND);
    let e = fraiseql::console::Console::new(&rt).path("ops/").unwrap_err().to_string();
    assert!(e.contains("console path `ops/`"), "{e}");
    let e = fraiseql::console::Console::new(&rt).csrf_secret(b"short").unwrap_err().to_string();
    assert!(e.contains("at least 32"), "{e}");
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_filters_and_ids_get_a_page_naming_what_was_wrong_and_the_console_keeps_serving() {
    let rt = testing::runtime().await.unwrap();
    rt.scope(console_order(100)).await.unwrap();
    let app = rt.console_router().unwrap();
    let bad = [
        ("/console/sagas?status=done", "parameter `status`: `done` is not a saga status"),
        ("/console/sagas?from=soonish", "parameter `from`: `soonish` is not a time"),
        ("/console/sagas?to=2026-13-45T10%3A00", "parameter `to`: `2026-13-45T10:00` is not a time"),
        ("/console/sagas?limit=0", "parameter `limit`: `0` is not a whole number from 1 to 500"),
        ("/console/sagas?after=page-2", "parameter `after`: `page-2` is not a saga id"),
        ("/console/sagas?colour=red", "unknown parameter `colour`"),
        ("/console/sagas?status=failed&status=stuck", "parameter `status` is given more than once"),
        ("/console/sagas/not-a-uuid", "`not-a-uuid` is not a saga id"),
        ("/console/dead-events?done=exploded", "parameter `done`: `exploded` is not an outcome"),
    ];
    for (uri, message) in bad {
        let a = get(&app, uri).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}: {}", a.body);
        let shown = between(&a.body, "<p id=\"problem\">", "</p>").unwrap_or_else(|| panic!("{}", a.body));
        assert!(shown.contains(message), "{uri}: {shown}");
    }
    let unknown = uuid::Uuid::now_v7();
    let a = get(&app, &format!("/console/sagas/{unknown}")).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.body.contains(&format!("no saga with id `{unknown}`")), "{}", a.body);
    let a = get(&app, "/console/no-such-page").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.body.contains("the console has no page at `/console/no-such-page`"), "{}", a.body);
    let a = get(&app, &format!("/console/sagas/{unknown}/retry")).await;
    assert_eq!(
        (a.status, a.headers.get(header::ALLOW).unwrap().to_str().unwrap()),
        (StatusCode::METHOD_NOT_ALLOWED, "POST")
    );
    // Still serving, and what it serves is escaped: a saga name in a filter is text.
    let a = get(&app, "/console/sagas?name=%3Cscript%3Ealert(1)%3C%2Fscript%3E").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(!a.body.contains("<script>alert(1)") && a.body.contains("&lt;script&gt;alert(1)"), "escaped");
    assert!(a.body.contains("No saga matches these filters."));
    assert_eq!(listed(&get(&app, "/console/sagas").await.body).len(), 1);
    rt.shutdown().await.unwrap();
}

/// A saga left `failed`: its payment and then its compensation fail every attempt.
async fn failed_saga(rt: &Runtime) -> String {
    rt.inject(Fault::fail("console_pay"));
    rt.inject(Fault::fail("console_hold").in_compensation());
    rt.scope(console_order(700)).await.unwrap_err();
    rt.clear_faults();
    let saga = testing::last_saga(rt, "console_order").await.unwrap();
    assert_eq!(saga.summary.status, SagaStatus::Failed);
    saga.summary.id
}

#[tokio::test]
async fn a_post_without_the_right_token_or_from_another_site_is_refused_and_changes_nothing() {
    let rt = testing::runtime().await.unwrap();
    let id = failed_saga(&rt).await;
    let attempts = || async {
        let s = rt.sagas().get(&id).await.unwrap();
        (s.summary.status, s.compensation("console_hold").unwrap().attempts)
    };
    let before = attempts().await;
    let app = rt.console_router().unwrap();
    let page = format!("/console/sagas/{id}");
    let session = Session::open(&app, &page).await;
    let retry = format!("/console/sagas/{id}/retry");
    let cookie = session.cookie.as_str();
    let token = format!("csrf={}", session.token);
    let other = Session::open(&app, &page).await; // another browser's token
    let refusals = [
        ("no token", String::new(), vec![("cookie", cookie)], "form carries no CSRF token"),
        ("a wrong token", "csrf=00ff".into(), vec![("cookie", cookie)], "CSRF token is wrong"),
        ("another browser's token", format!("csrf={}", other.token), vec![("cookie", cookie)], "CSRF token is wrong"),
        ("no cookie", token.clone(), vec![], "CSRF cookie is missing"),
        (
            "from another site",
            token.clone(),
            vec![("cookie", cookie), ("sec-fetch-site", "cross-site")],
            "came from another site",
        ),
        (
            "another origin",
            token.clone(),
            vec![("cookie", cookie), ("origin", "https://evil.test")],
            "Origin is not this console",
        ),
    ];
    for (what, form, headers, message) in refusals {
        let a = session.post(&app, &retry, &form, &headers).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{what}: {}", a.body);
        assert!(a.body.contains(message) && a.body.contains("Nothing was changed."), "{what}: {}", a.body);
        assert_eq!(attempts().await, before, "{what}: nothing changed");
    }
    // The same form from the console's own page: retried, and the page says so.
    let mut headers = SAME_ORIGIN.to_vec();
    headers.push(("cookie", cookie));
    let a = session.post(&app, &retry, &token, &headers).await;
    assert_eq!((a.status, a.location()), (StatusCode::SEE_OTHER, format!("/console/sagas/{id}?done=retried").as_str()));
    assert_eq!(attempts().await.0, SagaStatus::Compensated);
    let shown = get(&app, a.location()).await.body;
    assert!(shown.contains("Retried: the compensations ran again, and the saga is now <b>compensated</b>"), "{shown}");
    // Once more: nothing to retry, and the page says why.
    let a = session.post(&app, &retry, &token, &headers).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert!(a.body.contains("is compensated: only a failed or stuck saga is retried"), "{}", a.body);
    // A fork names a step the saga has, or is refused.
    let a =
        session.post(&app, &format!("/console/sagas/{id}/fork"), &format!("{token}&step=console_ship"), &headers).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("form field `step`: saga `console_order` has no step `console_ship`"), "{}", a.body);
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failed_saga_is_run_again_from_a_step_from_the_console() {
    let rt = testing::runtime().await.unwrap();
    let id = failed_saga(&rt).await;
    let app = rt.console_router().unwrap();
    let session = Session::open(&app, &format!("/console/sagas/{id}")).await;
    let mut headers = SAME_ORIGIN.to_vec();
    headers.push(("cookie", &session.cookie));
    let form = format!("csrf={}&step=console_pay", session.token);
    let a = session.post(&app, &format!("/console/sagas/{id}/fork"), &form, &headers).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let fork = between(a.location(), "/console/sagas/", "?").unwrap().to_string();
    assert_ne!(fork, id);
    assert_eq!(a.location(), format!("/console/sagas/{fork}?done=forked&of={id}"));
    assert_eq!(rt.sagas().get(&fork).await.unwrap().summary.status, SagaStatus::Completed);
    let page = get(&app, a.location()).await.body;
    assert!(page.contains("This saga is a fork of saga"), "{page}");
    assert!(page.contains(r#"data-step="console_pay" data-phase="step" data-status="committed""#), "{page}");
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn sagas_are_filtered_by_name_status_and_time_and_paged_on_both_backends() {
    for backend in BACKENDS {
        let dbs = TestDbs::new(backend, &["primary"]).await;
        let rt = dbs.start(|_| {}).await;
        let mut started = Vec::new();
        for cents in 1..=5 {
            if cents % 2 == 0 {
                // Every attempt (the first and three retries): compensated.
                rt.inject(Fault::fail("console_pay").times(4));
                assert!(rt.scope(console_order(cents)).await.is_err());
            } else {
                rt.scope(console_order(cents)).await.unwrap();
            }
            started.push(testing::last_saga(&rt, "console_order").await.unwrap().summary.id);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        started.reverse(); // newest first
        let app = rt.console_router().unwrap();

        // Two a page, following "Older" to the end: each saga once, newest first.
        let mut seen = Vec::new();
        let mut uri = "/console/sagas?limit=2".to_string();
        for _ in 0..5 {
            let page = get(&app, &uri).await;
            assert_eq!(page.status, StatusCode::OK, "{backend:?} {uri}: {}", page.body);
            seen.extend(listed(&page.body));
            match between(&page.body, "id=\"older\" href=\"", "\"") {
                Some(next) => uri = next.replace("&amp;", "&"),
                None => break,
            }
        }
        assert_eq!(seen, started, "{backend:?}");

        let ids = |q: &'static str| {
            let app = app.clone();
            async move { listed(&get(&app, &format!("/console/sagas?{q}")).await.body) }
        };
        let compensated: Vec<String> = started.iter().skip(1).step_by(2).cloned().collect();
        assert_eq!(ids("status=compensated").await, compensated, "{backend:?}");
        assert_eq!(ids("status=compensated&name=console_order").await, compensated, "{backend:?}");
        assert!(ids("name=another_saga").await.is_empty());
        assert_eq!(ids("from=1h").await, started, "{backend:?}: started in the last hour");
        assert!(ids("from=2999-01-01T00%3A00").await.is_empty(), "{backend:?}");
        assert!(ids("to=2000-01-01").await.is_empty(), "{backend:?}");
        assert_eq!(ids("to=2999-01-01T00%3A00&status=completed&limit=1").await, [started[0].clone()], "{backend:?}");

        let counters = get(&app, "/console/counters.json").await;
        let c: serde_json::Value = serde_json::from_str(&counters.body).unwrap();
        assert_eq!(c["failed"], 0);
        assert_eq!(c["running"], 0);
        assert_eq!(c["dead_events"], 0);
        rt.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_and_dead_events_are_listed_and_retried_from_the_console() {
    common::init_tracing();
    let mut nats = NatsServer::start().await;
    let dbs = TestDbs::new(Backend::Postgres, &["primary"]).await;
    let url = nats.url();
    let rt = dbs
        .start(|c| {
            c.events.url = Some(url);
            c.events.relay_max_attempts = 2;
            c.events.relay_interval = Duration::from_millis(50);
            c.events.publish_timeout = Duration::from_millis(300);
            c.events.redelivery_initial = Duration::from_millis(10);
        })
        .await;
    let app = rt.console_router().unwrap();

    // Dead events: the mailer fails both deliveries while the mail server is down.
    MAIL_DOWN.store(true, Ordering::SeqCst);
    let event_id = rt.publish("fraiseql.console.mail", json!({ "to": "alice" })).await.unwrap();
    for _ in 0..800 {
        if !rt.dead_events(Some("console-mailer")).await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let page = get(&app, "/console/dead-events").await.body;
    assert!(
        page.contains(&format!("data-event-id=\"{event_id}\"")) && page.contains("mail server unreachable"),
        "{page}"
    );
    let session = Session::open(&app, "/console/dead-events").await;
    let mut headers = SAME_ORIGIN.to_vec();
    headers.push(("cookie", &session.cookie));
    let csrf = format!("csrf={}", session.token);
    let consumers = get(&app, "/console/consumers").await.body;
    assert!(consumers.contains("data-consumer=\"console-mailer\""), "{consumers}");
    MAIL_DOWN.store(false, Ordering::SeqCst);
    let a = session
        .post(&app, "/console/dead-events/retry", &format!("{csrf}&consumer=console-mailer&event={event_id}"), &headers)
        .await;
    assert_eq!(
        (a.status, a.location()),
        (StatusCode::SEE_OTHER, "/console/dead-events?done=retried&n=1&m=0"),
        "{}",
        a.body
    );
    assert!(get(&app, a.location()).await.body.contains("1 event(s) handled and removed from the dead events"));
    assert!(rt.dead_events(None).await.unwrap().is_empty());
    let a = session
        .post(&app, "/console/dead-events/retry", &format!("{csrf}&consumer=console-mailer&event={event_id}"), &headers)
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "retried already: {}", a.body);
    // Dead letters: the saga's event cannot be published while the server is down.
    nats.stop();
    rt.scope(console_order(42)).await.unwrap();
    let mut dead = Vec::new();
    for _ in 0..200 {
        rt.outbox().flush().await;
        dead = rt.outbox().dead_letters().await.unwrap();
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dead.len(), 1, "{dead:?}");
    let page = get(&app, "/console/outbox").await.body;
    assert!(
        page.contains(&format!("data-event-id=\"{}\"", dead[0].id)) && page.contains("fraiseql.console.paid"),
        "{page}"
    );
    // The bus is down: the counters still answer, promptly, with what can be read.
    let asked = std::time::Instant::now();
    let counters: serde_json::Value = serde_json::from_str(&get(&app, "/console/counters.json").await.body).unwrap();
    assert!(asked.elapsed() < Duration::from_secs(4), "counters took {:?} while the bus is down", asked.elapsed());
    assert_eq!((&counters["dead_letters"], &counters["consumer_lag"]), (&json!(1), &json!(null)), "{counters}");
    let a = get(&app, "/console/consumers").await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(a.body.contains("reading the consumers: no answer within 5 s"), "{}", a.body);
    nats.restart().await;
    // Retry once the client is connected again (a publish gets its ack).
    for attempt in 0.. {
        match rt.publish("fraiseql.console.ping", json!({})).await {
            Ok(_) => break,
            Err(e) if attempt < 300 => {
                tracing::debug!(error = %e, "not connected yet");
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("the runtime did not reconnect to the restarted server: {e}"),
        }
    }
    let a = session.post(&app, "/console/outbox/retry", &format!("{csrf}&id=no-such-event"), &headers).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
    let a = session.post(&app, "/console/outbox/retry", &format!("{csrf}&id={}", dead[0].id), &headers).await;
    assert_eq!((a.status, a.location()), (StatusCode::SEE_OTHER, "/console/outbox?done=retried&n=1"), "{}", a.body);
    assert!(get(&app, a.location()).await.body.contains("1 dead letter(s) put back in the outbox"));
    for _ in 0..200 {
        if rt.outbox().dead_letters().await.unwrap().is_empty() && rt.outbox().pending().await.unwrap() == 0 {
            break;
        }
        rt.outbox().flush().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rt.outbox().dead_letters().await.unwrap().is_empty());
    assert!(get(&app, "/console/outbox").await.body.contains("No dead letters"));

    rt.shutdown().await.unwrap();
}

mod browser {
    //! The console in headless Chromium, driven over WebDriver, on the orders example.

    use std::io::{BufRead, BufReader};
    use std::panic::AssertUnwindSafe;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    use fantoccini::{Client, ClientBuilder, Locator};
    use futures_util::FutureExt;

    /// `target/<profile>/examples/<name>`, beside this test's binary in `deps/`.
    fn example(name: &str) -> PathBuf {
        let exe = std::env::current_exe().unwrap();
        let path = exe.parent().unwrap().parent().unwrap().join("examples").join(name);
        assert!(
            path.exists(),
            "example `{name}` is not built at {}: run the suite with `scripts/test` (it builds the examples with `--features fraiseql/testing`)",
            path.display()
        );
        path
    }

    /// Where the screenshots go: `<target>/console-screenshots/`.
    fn screenshots() -> PathBuf {
        let exe = std::env::current_exe().unwrap();
        let dir = exe.ancestors().nth(3).unwrap().join("console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A child process killed (and reaped) when the test ends, however it ends.
    struct Reaped(Child);

    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    /// The orders example in its console mode: its story, two orders caught in an
    /// outage, then the console. Returns the process and the console's URL.
    fn start_orders() -> (Reaped, String) {
        let mut child = Command::new(example("orders"))
            .args(["--console", "127.0.0.1:0"])
            .env("RUST_LOG", "error")
            // Retries spent quickly: the outage's compensations give up in milliseconds.
            .env("FRAISEQL_SAGA__BACKOFF_INITIAL", "1ms")
            .env("FRAISEQL_SAGA__BACKOFF_MAX", "5ms")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the orders example");
        let out = BufReader::new(child.stdout.take().unwrap());
        let child = Reaped(child);
        let mut waiting = 0;
        for line in out.lines() {
            let line = line.unwrap();
            if line.starts_with("order 3 waits for an operator") || line.starts_with("order 4 waits for an operator") {
                waiting += 1;
            }
            if let Some(url) = line.strip_prefix("Saga console at ") {
                assert_eq!(
                    waiting, 2,
                    "the orders example did not stage its outage: build the examples with `--features fraiseql/testing` (scripts/test does)"
                );
                return (child, url.to_string());
            }
        }
        panic!("the orders example ended without serving the console");
    }

    /// chromedriver (from Debian's chromium-driver, which `scripts/services` installs) on
    /// a free port.
    async fn start_chromedriver() -> (Reaped, u16) {
        let bin = std::env::var("FRAISEQL_TEST_CHROMEDRIVER").expect(
            "FRAISEQL_TEST_CHROMEDRIVER is not set: run the suite with `scripts/test` (scripts/services installs chromium and chromium-driver)",
        );
        let port = free_port();
        let child = Command::new(&bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let child = Reaped(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return (child, port);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("chromedriver did not listen on port {port}");
    }

    async fn browser(port: u16, profile: &std::path::Path) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1440,1200", format!("--user-data-dir={}", profile.display()),
            ] }),
        );
        let mut builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(caps);
        builder.connect(&format!("http://127.0.0.1:{port}")).await.expect("a WebDriver session in headless Chromium")
    }

    async fn shot(c: &Client, name: &str) {
        let png = c.screenshot().await.unwrap();
        std::fs::write(screenshots().join(name), png).unwrap();
    }

    async fn text(c: &Client, css: &str) -> String {
        c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(css)).await.unwrap().text().await.unwrap()
    }

    async fn rows(c: &Client) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for row in c.find_all(Locator::Css("#sagas tbody tr")).await.unwrap() {
            out.push((
                row.attr("data-saga-id").await.unwrap().unwrap(),
                row.attr("data-status").await.unwrap().unwrap(),
            ));
        }
        out
    }

    /// Until the browser has gone to a URL that contains `part`.
    async fn wait_for_url(c: &Client, part: &str) {
        for _ in 0..200 {
            if c.current_url().await.unwrap().as_str().contains(part) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the browser did not go to a URL with `{part}`: it is at {}", c.current_url().await.unwrap());
    }

    async fn open_first_row(c: &Client) {
        c.find(Locator::Css("#sagas tbody tr td a.name")).await.unwrap().click().await.unwrap();
        c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("#timeline")).await.unwrap();
    }

    /// The dead events and consumers pages of a runtime in this process (the embedded
    /// bus): a payload that is not an invoice is a dead event with the reason; retrying
    /// it through the button fails again, and the page says so.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_operator_reads_a_dead_event_and_retries_it_in_a_browser() {
        use fraiseql::testing;
        let rt = testing::runtime().await.unwrap();
        for cents in [1200, 800] {
            rt.publish("fraiseql.console.invoice", serde_json::json!({ "cents": cents })).await.unwrap();
        }
        let poison =
            rt.publish("fraiseql.console.invoice", serde_json::json!({ "cents": "twelve euros" })).await.unwrap();
        for _ in 0..400 {
            if !rt.dead_events(Some("console-invoices")).await.unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let console = format!("http://{}/console", listener.local_addr().unwrap());
        let app = rt.console_router().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let (_driver, port) = start_chromedriver().await;
        let profile = std::env::temp_dir().join(format!("fraiseql-chromium-{}", uuid::Uuid::new_v4().simple()));
        let c = browser(port, &profile).await;
        let outcome = AssertUnwindSafe(async {
            c.goto(&format!("{console}/dead-events")).await.unwrap();
            assert_eq!(text(&c, "[data-counter=dead_events] b").await, "1");
            let row = c.find(Locator::Css("#dead-events tbody")).await.unwrap();
            assert_eq!(row.attr("data-event-id").await.unwrap().as_deref(), Some(poison.as_str()));
            assert!(row.text().await.unwrap().contains("console-invoices"));
            row.find(Locator::Css("details summary")).await.unwrap().click().await.unwrap();
            assert!(text(&c, "#dead-events details pre").await.contains("twelve euros"));
            assert!(text(&c, "#dead-events .reason").await.contains("does not deserialise into"));
            shot(&c, "09-dead-events.png").await;
            row.find(Locator::Css("button")).await.unwrap().click().await.unwrap();
            let notice = text(&c, "#notice").await;
            assert!(notice.contains("0 event(s) handled") && notice.contains("1 failed again"), "{notice}");
            assert_eq!(c.find_all(Locator::Css("#dead-events tbody")).await.unwrap().len(), 1, "still dead");
            c.goto(&format!("{console}/consumers")).await.unwrap();
            let invoices = text(&c, "tr[data-consumer=console-invoices]").await;
            assert!(invoices.contains("fraiseql.console.invoice") && invoices.contains("caught up"), "{invoices}");
            shot(&c, "10-consumers.png").await;
        })
        .catch_unwind()
        .await;
        // The session ends even when the story failed: killing chromedriver alone would
        // leave the browser running.
        c.close().await.unwrap();
        let _ = std::fs::remove_dir_all(&profile);
        server.abort();
        rt.shutdown().await.unwrap();
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    /// Open the console on the orders example, find the compensated order by filtering
    /// on its status, read its timeline; then settle the two orders the outage left
    /// failed: retry one (it ends compensated) and run the other again from its payment
    /// (the new saga completes).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_operator_finds_the_compensated_order_and_settles_the_failed_ones_in_a_browser() {
        let (mut orders, console) = start_orders();
        let (_driver, port) = start_chromedriver().await;
        let profile = std::env::temp_dir().join(format!("fraiseql-chromium-{}", uuid::Uuid::new_v4().simple()));
        let c = browser(port, &profile).await;
        let outcome = AssertUnwindSafe(async {
            c.goto(&console).await.unwrap();
            assert_eq!(text(&c, "h1").await, "Sagas");
            let all = rows(&c).await;
            let statuses: Vec<&str> = all.iter().map(|(_, s)| s.as_str()).collect();
            assert_eq!(statuses.iter().filter(|s| **s == "failed").count(), 2, "{statuses:?}");
            assert!(statuses.contains(&"completed") && statuses.contains(&"compensated"), "{statuses:?}");
            assert_eq!(text(&c, "[data-counter=failed] b").await, "2");
            shot(&c, "01-sagas.png").await;

            // The compensated order: filter by status with the form.
            c.find(Locator::Css("select[name=status]")).await.unwrap().select_by_value("compensated").await.unwrap();
            c.find(Locator::Css("form.filters button[type=submit]")).await.unwrap().click().await.unwrap();
            wait_for_url(&c, "status=compensated").await;
            let compensated = rows(&c).await;
            assert_eq!(compensated.len(), 1, "{compensated:?}");
            assert_eq!(compensated[0].1, "compensated");
            shot(&c, "02-compensated.png").await;

            // Its timeline: the payment declined, then both compensations, newest step first.
            open_first_row(&c).await;
            assert_eq!(text(&c, "#status").await, "compensated");
            let mut timeline = Vec::new();
            for li in c.find_all(Locator::Css("#timeline li")).await.unwrap() {
                timeline.push(format!(
                    "{} {} {}",
                    li.attr("data-step").await.unwrap().unwrap(),
                    li.attr("data-phase").await.unwrap().unwrap(),
                    li.attr("data-status").await.unwrap().unwrap()
                ));
            }
            assert_eq!(
                timeline,
                [
                    "create_order step committed",
                    "reserve_inventory step committed",
                    "process_payment step failed",
                    "reserve_inventory compensation committed",
                    "create_order compensation committed",
                ]
            );
            assert!(text(&c, "#timeline").await.contains("payment declined"));
            shot(&c, "03-compensated-timeline.png").await;

            // The failed orders, from the counter.
            c.find(Locator::Css("[data-counter=failed]")).await.unwrap().click().await.unwrap();
            wait_for_url(&c, "status=failed").await;
            assert_eq!(rows(&c).await.len(), 2);
            open_first_row(&c).await;
            assert_eq!(text(&c, "#status").await, "failed");
            assert!(text(&c, "#needs-operator").await.contains("This saga waits for an operator"));
            shot(&c, "04-failed.png").await;
            c.find(Locator::Id("retry")).await.unwrap().click().await.unwrap();
            assert!(text(&c, "#notice").await.contains("Retried"));
            assert_eq!(text(&c, "#status").await, "compensated");
            shot(&c, "05-retried.png").await;

            // The other one: run it again from its payment.
            c.goto(&format!("{console}/sagas?status=failed")).await.unwrap();
            let left = rows(&c).await;
            assert_eq!(left.len(), 1, "{left:?}");
            open_first_row(&c).await;
            assert_eq!(
                c.find(Locator::Id("fork-step")).await.unwrap().prop("value").await.unwrap().as_deref(),
                Some("process_payment")
            );
            c.find(Locator::Id("fork")).await.unwrap().click().await.unwrap();
            assert!(text(&c, "#notice").await.contains("This saga is a fork of saga"));
            assert_eq!(text(&c, "#status").await, "completed");
            shot(&c, "06-forked-completed.png").await;

            c.goto(&format!("{console}/sagas")).await.unwrap();
            let end = rows(&c).await;
            assert_eq!(end.iter().filter(|(_, s)| s == "completed").count(), 2, "{end:?}");
            shot(&c, "07-sagas-after.png").await;

            // The counters are live: the page's script puts back what the server counts.
            c.execute("document.querySelector('[data-counter=failed] b').textContent = 'stale'", vec![]).await.unwrap();
            assert_eq!(text(&c, "[data-counter=failed] b").await, "stale");
            let mut live = String::new();
            for _ in 0..100 {
                live = text(&c, "[data-counter=failed] b").await;
                if live != "stale" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(
                live, "1",
                "the counters script polled counters.json (the original of the run-again order is still failed)"
            );
            c.goto(&format!("{console}/outbox")).await.unwrap();
            assert_eq!(text(&c, "h1").await, "Outbox");
            shot(&c, "08-outbox.png").await;
        })
        .catch_unwind()
        .await;
        // The session ends even when the story failed: killing chromedriver alone would
        // leave the browser running.
        c.close().await.unwrap();
        let _ = std::fs::remove_dir_all(&profile);
        // Stop the example as a person would (Ctrl-C): it shuts down cleanly.
        #[allow(unsafe_code)]
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(orders.0.id() as i32, libc::SIGINT);
        }
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
        assert!(orders.0.wait().unwrap().success(), "the orders example stops cleanly on Ctrl-C");
    }
}
