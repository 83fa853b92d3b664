//! The console's HTML: one layout (header, navigation, live counters), a page per view.
//! maud escapes every value spliced in; the only unescaped text is our own CSS and
//! script below.

use maud::{html, Markup, PreEscaped, DOCTYPE};
use time::macros::format_description;

use super::handlers::Counters;
use super::params::format_ms;
use crate::events::subscriptions::{ConsumerInfo, DeadEvent};
use crate::events::{DeadLetter, OutboxBacklog};
use crate::registry::SagaDef;
use crate::saga::inspect::{ListFilter, SagaDetail, SagaSummary, StepRecord};
use crate::status::{Phase, SagaStatus, StepStatus};

/// Which section a page belongs to (highlighted in the navigation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Nav {
    Sagas,
    Outbox,
    DeadEvents,
    Consumers,
}

/// The outcome of a change, shown once on the page the change redirected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Notice {
    /// A failed saga's compensations ran again; its status now.
    Retried(SagaStatus),
    /// This saga is a fork of the one with this id.
    Forked(String),
    /// Dead letters put back in the outbox.
    LettersRetried(u32),
    /// Dead events run through their handlers again.
    EventsRetried { handled: u32, still_dead: u32 },
}

/// What every page needs.
pub(super) struct Page {
    pub(super) base: String,
    /// The CSRF token for this browser's forms.
    pub(super) token: String,
    /// The nonce that lets our one inline script run (Content-Security-Policy).
    pub(super) script_nonce: String,
    pub(super) counters: Counters,
    pub(super) nav: Nav,
}

const CSS: &str = r#"
:root{--bg:#f5f6f8;--card:#fff;--ink:#1b2130;--muted:#667085;--line:#e3e6eb;--brand:#d6336c;
--ok:#0f7b53;--okbg:#e6f5ee;--warn:#a5520a;--warnbg:#fdf1e3;--bad:#b42318;--badbg:#fdeceb;
--info:#1d5fc9;--infobg:#e9f1fe;--gray:#4a5567;--graybg:#eef0f3}
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;background:var(--bg);color:var(--ink)}
a{color:var(--info)}
header.top{background:#181d2a;color:#fff;padding:0 28px;display:flex;align-items:center;gap:36px;height:54px}
.brand{font-weight:700;font-size:16px;white-space:nowrap}.brand span{color:#f783ac;font-weight:500;margin-left:4px}
nav{display:flex;gap:22px;height:100%}
nav a{color:#b8c0d0;text-decoration:none;display:flex;align-items:center;border-bottom:2px solid transparent;padding-top:2px}
nav a:hover{color:#fff}nav a.on{color:#fff;border-bottom-color:#f783ac}
.counters{display:flex;gap:10px;padding:14px 28px;background:#fff;border-bottom:1px solid var(--line);flex-wrap:wrap}
.counter{display:block;min-width:122px;padding:7px 12px;border:1px solid var(--line);border-radius:9px;text-decoration:none;color:inherit}
.counter:hover{border-color:#c3c9d3}
.counter b{display:block;font-size:20px;font-weight:650;line-height:1.3}
.counter small{color:var(--muted);font-size:12px}
.counter.alert{border-color:#f3b4ad;background:var(--badbg)}.counter.alert b{color:var(--bad)}
main{padding:22px 28px 56px;max-width:1320px}
h1{font-size:21px;margin:2px 0 16px;display:flex;align-items:center;gap:12px;flex-wrap:wrap}
h2{font-size:15px;margin:0 0 12px}
.crumbs{font-size:13px;color:var(--muted);margin-bottom:6px}.crumbs a{color:var(--muted)}
.card{background:var(--card);border:1px solid var(--line);border-radius:11px;padding:16px 18px;margin-bottom:18px}
.card.flush{padding:0;overflow-x:auto}.card.flush h2{padding:16px 18px 0}
table{width:100%;border-collapse:collapse}
th{text-align:left;font-weight:600;color:var(--muted);font-size:11.5px;text-transform:uppercase;letter-spacing:.05em;padding:9px 12px;border-bottom:1px solid var(--line);background:#fafbfc}
td{padding:10px 12px;border-bottom:1px solid var(--line);vertical-align:top}
tbody tr:last-child td{border-bottom:0}
table#dead-events tbody tr:last-child td,table#dead-letters tbody tr:last-child td{border-bottom:1px solid var(--line)}
table#dead-events tbody:last-child tr:last-child td,table#dead-letters tbody:last-child tr:last-child td{border-bottom:0}
tr.main td{border-bottom:0}tr.detail td{padding-top:0}
.reason{background:var(--badbg);color:#7a1b12;border:1px solid #f6cdc8;border-radius:7px;padding:7px 10px;font-size:12.5px;white-space:pre-wrap;overflow-wrap:anywhere}
details{margin-top:8px}details summary{cursor:pointer;color:var(--muted);font-size:12.5px}details pre{margin-top:6px}
tbody tr:hover{background:#fafbfd}
td.num,th.num{text-align:right}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.muted{color:var(--muted)}.small{font-size:12.5px}.nowrap{white-space:nowrap}
td a.name{color:var(--ink);text-decoration:none;font-weight:650}td a.name:hover{text-decoration:underline}
.clip{max-width:300px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.badge{display:inline-block;padding:1px 9px;border-radius:999px;font-size:12px;font-weight:600;white-space:nowrap;line-height:1.6}
.b-completed,.b-committed,.b-ok{background:var(--okbg);color:var(--ok)}
.b-running,.b-retrying{background:var(--infobg);color:var(--info)}
.b-compensating,.b-compensated,.b-fenced,.b-lag{background:var(--warnbg);color:var(--warn)}
.b-failed,.b-stuck,.b-aborted{background:var(--badbg);color:var(--bad)}
.b-pending{background:var(--graybg);color:var(--gray)}
form{margin:0}
form.filters{display:flex;gap:12px;align-items:flex-end;flex-wrap:wrap}
label{display:flex;flex-direction:column;gap:4px;font-size:12px;color:var(--muted);font-weight:500}
input,select{font:inherit;padding:6px 9px;border:1px solid #cdd3dc;border-radius:7px;background:#fff;color:var(--ink);min-height:34px}
button,.button{font:inherit;font-weight:600;padding:6px 14px;min-height:34px;border-radius:7px;border:1px solid #181d2a;background:#181d2a;color:#fff;cursor:pointer;text-decoration:none;display:inline-flex;align-items:center}
button:hover{background:#2c3447}
.button.secondary,button.secondary{background:#fff;color:var(--ink);border-color:#cdd3dc}
button.small{padding:2px 10px;min-height:28px;font-size:12.5px}
.chips{display:flex;gap:6px;flex-wrap:wrap;margin:14px 0 0}
.chips a{padding:3px 11px;border:1px solid var(--line);border-radius:999px;text-decoration:none;color:var(--gray);font-size:12.5px;background:#fff}
.chips a.on{background:#181d2a;color:#fff;border-color:#181d2a}
.chips span{color:var(--muted);font-size:12.5px;padding:3px 4px 3px 10px}
.notice{padding:11px 15px;border-radius:9px;background:var(--okbg);color:#0b5a40;border:1px solid #a9dcc5;margin-bottom:18px}
.attention{border-color:#f3b4ad;background:#fffafa}
.attention h2{color:var(--bad)}
.actions{display:flex;gap:14px;align-items:flex-end;flex-wrap:wrap}
.choices{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:18px;margin-top:6px}
.choices>div{border:1px solid var(--line);border-radius:9px;padding:12px 14px;background:#fff}
h3{font-size:14px;margin:0 0 2px}.choices p{margin:0 0 10px}
pre{background:#121826;color:#e4e8f0;padding:12px 14px;border-radius:9px;overflow:auto;font-size:12.5px;margin:0;max-height:360px}
pre.json{white-space:pre-wrap;overflow-wrap:anywhere}
pre.err{background:var(--badbg);color:#7a1b12;white-space:pre-wrap;margin-top:8px;border:1px solid #f6cdc8}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:18px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:7px 22px;margin:0}
dt{color:var(--muted)}dd{margin:0;min-width:0;overflow-wrap:anywhere}
.empty{padding:26px 18px;color:var(--muted);text-align:center}
.pager{display:flex;gap:10px;justify-content:space-between;align-items:center;padding:12px 18px;border-top:1px solid var(--line);background:#fafbfc}
ol.timeline{list-style:none;margin:0;padding:4px 0 0}
ol.timeline li{position:relative;padding:0 0 20px 34px}
ol.timeline li:before{content:"";position:absolute;left:10px;top:20px;bottom:-2px;width:2px;background:var(--line)}
ol.timeline li:last-child{padding-bottom:2px}ol.timeline li:last-child:before{display:none}
.dot{position:absolute;left:3px;top:3px;width:16px;height:16px;border-radius:50%;border:3px solid #fff;box-shadow:0 0 0 1px #d0d5dd}
.d-committed{background:var(--ok)}.d-failed,.d-aborted{background:var(--bad)}.d-retrying{background:var(--info)}
.d-pending{background:#d5dae1}.d-fenced{background:var(--warn)}
li.compensation .dot{border-radius:4px}
.step-head{display:flex;gap:10px;align-items:center;flex-wrap:wrap}
.step-name{font-weight:650}
.phase{font-size:10.5px;text-transform:uppercase;letter-spacing:.06em;color:var(--warn);border:1px solid #f1c79c;border-radius:5px;padding:0 6px;font-weight:600}
.meta{color:var(--muted);font-size:12.5px}
.bar{height:6px;background:var(--graybg);border-radius:3px;position:relative;margin:9px 0 0;max-width:560px}
.bar i{position:absolute;top:0;bottom:0;background:var(--ok);border-radius:3px;min-width:4px}
li.compensation .bar i{background:var(--warn)}
li.not-run .step-name{color:var(--muted)}
"#;

/// Polls the counters every 5 s; the page reads the same without it.
const SCRIPT: &str = r#"(()=>{const u=document.body.dataset.counters;const tick=()=>fetch(u,{credentials:"same-origin",cache:"no-store"}).then(r=>r.ok?r.json():null).then(c=>{if(!c)return;for(const[k,v]of Object.entries(c)){const e=document.querySelector('[data-counter="'+k+'"]');if(!e)continue;e.querySelector("b").textContent=v===null?"?":v;if(e.hasAttribute("data-alert"))e.classList.toggle("alert",v>0)}}).catch(()=>{});setInterval(tick,5000)})();"#;

fn layout(page: &Page, title: &str, body: Markup) -> Markup {
    let base = &page.base;
    let c = &page.counters;
    let counters: [(&str, &str, Option<u64>, String, bool); 8] = [
        ("running", "Running", c.running, format!("{base}/sagas?status=running"), false),
        ("compensating", "Compensating", c.compensating, format!("{base}/sagas?status=compensating"), false),
        ("failed", "Failed", c.failed, format!("{base}/sagas?status=failed"), true),
        ("stuck", "Stuck", c.stuck, format!("{base}/sagas?status=stuck"), true),
        ("outbox_pending", "Outbox pending", c.outbox_pending, format!("{base}/outbox"), false),
        ("dead_letters", "Dead letters", c.dead_letters, format!("{base}/outbox"), true),
        ("dead_events", "Dead events", c.dead_events, format!("{base}/dead-events"), true),
        ("consumer_lag", "Consumer lag", c.consumer_lag, format!("{base}/consumers"), false),
    ];
    let nav = [
        (Nav::Sagas, "Sagas", "/sagas"),
        (Nav::Outbox, "Outbox", "/outbox"),
        (Nav::DeadEvents, "Dead events", "/dead-events"),
        (Nav::Consumers, "Consumers", "/consumers"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · FraiseQL console" }
                style { (PreEscaped(CSS)) }
            }
            body data-counters=(format!("{base}/counters.json")) {
                header.top {
                    div.brand { "FraiseQL" span { "console" } }
                    nav {
                        @for (which, label, path) in nav {
                            a.on[page.nav == which] href=(format!("{base}{path}")) { (label) }
                        }
                    }
                }
                div.counters {
                    @for (key, label, value, href, alerting) in &counters {
                        a.counter.alert[*alerting && value.unwrap_or(0) > 0] href=(href) data-counter=(key) data-alert[*alerting] {
                            b { (value.map_or("?".to_string(), |v| v.to_string())) }
                            small { (label) }
                        }
                    }
                }
                main { (body) }
                script nonce=(page.script_nonce) { (PreEscaped(SCRIPT)) }
            }
        }
    }
}

/// A page for a request that could not be served: what was wrong, and the way back.
pub(super) fn problem(base: &str, title: &str, message: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · FraiseQL console" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header.top { div.brand { "FraiseQL" span { "console" } } }
                main {
                    div.card.attention {
                        h1 { (title) }
                        p #problem { (message) }
                        p { a href=(format!("{base}/sagas")) { "Back to the sagas" } }
                    }
                }
            }
        }
    }
}

fn time(ms: i64) -> String {
    format_ms(ms, format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"))
}

/// "3 min ago", for a glance; the exact time is beside it or in its title.
fn ago(now: i64, ms: i64) -> String {
    let s = (now - ms).max(0) / 1000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

fn duration(ms: i64) -> String {
    match ms {
        ..=999 => format!("{ms} ms"),
        1000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

fn when(now: i64, ms: i64) -> Markup {
    html! { span.nowrap title=(format!("{} UTC", time(ms))) { (time(ms)) } br; span.muted.small { (ago(now, ms)) } }
}

fn hidden_token(page: &Page) -> Markup {
    html! { input type="hidden" name=(super::csrf::FIELD) value=(page.token); }
}

fn url(base: &str, path: &str, pairs: &[(&str, String)]) -> String {
    let pairs: Vec<&(&str, String)> = pairs.iter().filter(|(_, v)| !v.is_empty()).collect();
    if pairs.is_empty() {
        return format!("{base}{path}");
    }
    format!("{base}{path}?{}", serde_urlencoded::to_string(pairs).unwrap_or_default())
}

/// An id short enough for a table: UUIDv7s of one moment share their first digits (the
/// time), so the end is kept too.
fn short(id: &str) -> String {
    match (id.get(..8), id.len().checked_sub(4).and_then(|n| id.get(n..))) {
        (Some(head), Some(tail)) if id.len() > 16 => format!("{head}…{tail}"),
        _ => id.to_string(),
    }
}

fn notice(n: &Option<Notice>, base: &str) -> Markup {
    html! {
        @if let Some(n) = n {
            div.notice #notice {
                @match n {
                    Notice::Retried(status) => { "Retried: the compensations ran again, and the saga is now " b { (status) } "." }
                    Notice::Forked(of) => {
                        "This saga is a fork of saga " a.mono href=(format!("{base}/sagas/{of}")) { (short(of)) } ": "
                        "the same input, its state before the step it starts from, run from there on."
                    }
                    Notice::LettersRetried(n) => { (n) " dead letter(s) put back in the outbox and published again." }
                    Notice::EventsRetried { handled, still_dead } => {
                        (handled) " event(s) handled and removed from the dead events; " (still_dead) " failed again and stay."
                    }
                }
            }
        }
    }
}

/// The saga list and the filters that made it.
pub(super) struct SagaList<'a> {
    pub(super) filter: &'a ListFilter,
    pub(super) limit: u32,
    pub(super) rows: &'a [SagaSummary],
    /// Whether an older page exists.
    pub(super) more: bool,
    /// The registered sagas' names.
    pub(super) names: &'a [&'a str],
    pub(super) now: i64,
}

pub(super) fn sagas(page: &Page, v: &SagaList<'_>) -> Markup {
    let base = &page.base;
    let f = v.filter;
    let name = f.name.clone().unwrap_or_default();
    let from = f.started_from.map(super::params::input_time).unwrap_or_default();
    let to = f.started_before.map(super::params::input_time).unwrap_or_default();
    let limit = if v.limit == 25 { String::new() } else { v.limit.to_string() };
    // The filters as they are, with some changed: for the chips and the pager.
    let link = |status: Option<SagaStatus>, from: &str, after: Option<&str>| {
        url(
            base,
            "/sagas",
            &[
                ("name", name.clone()),
                ("status", status.map(|s| s.as_str().to_string()).unwrap_or_default()),
                ("from", from.to_string()),
                ("to", to.clone()),
                ("after", after.unwrap_or("").to_string()),
                ("limit", limit.clone()),
            ],
        )
    };
    let mut names: Vec<&str> = v.names.to_vec();
    if !name.is_empty() && !names.contains(&name.as_str()) {
        names.push(&name);
    }
    let body = html! {
        h1 { "Sagas" }
        div.card {
            form.filters method="get" action=(format!("{base}/sagas")) {
                label { "Saga"
                    select name="name" {
                        option value="" { "Any" }
                        @for n in &names { option value=(n) selected[*n == name] { (n) } }
                    }
                }
                label { "Status"
                    select name="status" {
                        option value="" { "Any" }
                        @for s in SagaStatus::ALL { option value=(s.as_str()) selected[f.status == Some(*s)] { (s) } }
                    }
                }
                label { "Started from (UTC)" input type="datetime-local" name="from" value=(from); }
                label { "Started before (UTC)" input type="datetime-local" name="to" value=(to); }
                label { "Per page"
                    select name="limit" {
                        @for n in [25u32, 50, 100, 250] { option value=(n) selected[v.limit == n] { (n) } }
                    }
                }
                button type="submit" { "Filter" }
                a.button.secondary href=(format!("{base}/sagas")) { "Clear" }
            }
            div.chips {
                a.on[f.status.is_none()] href=(link(None, &from, None)) { "All" }
                @for s in SagaStatus::ALL {
                    a.on[f.status == Some(*s)] href=(link(Some(*s), &from, None)) { (s) }
                }
                span { "Started:" }
                a href=(link(f.status, "1h", None)) { "last hour" }
                a href=(link(f.status, "24h", None)) { "last day" }
                a href=(link(f.status, "7d", None)) { "last week" }
            }
        }
        div.card.flush {
            @if v.rows.is_empty() {
                div.empty { "No saga matches these filters." }
            } @else {
                table #sagas {
                    thead { tr { th { "Started (UTC)" } th { "Saga" } th { "Status" } th { "Id" } th { "Failed step" } th { "Error" } th { "Updated" } } }
                    tbody {
                        @for s in v.rows {
                            tr data-saga-id=(s.id) data-status=(s.status.as_str()) {
                                td { (when(v.now, s.created_at)) }
                                td { a.name href=(format!("{base}/sagas/{}", s.id)) { (s.name) } }
                                td { span class=(format!("badge b-{}", s.status)) { (s.status) } }
                                td.mono.nowrap { a href=(format!("{base}/sagas/{}", s.id)) title=(s.id) { (short(&s.id)) } }
                                td { @if let Some(step) = &s.failed_step { span.mono { (step) } } @else { span.muted { "—" } } }
                                td.small { @if let Some(e) = &s.error { div.clip title=(e) { (e) } } }
                                td.small.muted { (ago(v.now, s.updated_at)) }
                            }
                        }
                    }
                }
            }
            @if f.after_id.is_some() || v.more {
                div.pager {
                    span {
                        @if f.after_id.is_some() { a.button.secondary href=(link(f.status, &from, None)) { "← Newest" } }
                    }
                    span {
                        @if v.more {
                            @if let Some(last) = v.rows.last() {
                                a.button.secondary #older href=(link(f.status, &from, Some(&last.id))) { "Older →" }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(page, "Sagas", body)
}

/// One saga and what an operator may do with it.
pub(super) struct SagaView<'a> {
    pub(super) detail: &'a SagaDetail,
    /// Its definition, when this process has it registered (for forking).
    pub(super) def: Option<&'static SagaDef>,
    pub(super) notice: Option<Notice>,
    pub(super) now: i64,
}

/// The records in the order they ran: the steps forward, then the compensations
/// backward.
fn in_run_order(steps: &[StepRecord]) -> Vec<&StepRecord> {
    let mut forward: Vec<&StepRecord> = steps.iter().filter(|s| s.phase == Phase::Step).collect();
    forward.sort_by_key(|s| s.index);
    let mut backward: Vec<&StepRecord> = steps.iter().filter(|s| s.phase == Phase::Compensation).collect();
    backward.sort_by_key(|s| std::cmp::Reverse(s.index));
    forward.extend(backward);
    forward
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

pub(super) fn saga(page: &Page, v: &SagaView<'_>) -> Markup {
    let base = &page.base;
    let d = v.detail;
    let s = &d.summary;
    let records = in_run_order(&d.steps);
    // The timeline's scale: from the saga's start to the last thing that happened.
    let t0 = records.iter().filter_map(|r| r.started_at).chain([s.created_at]).min().unwrap_or(s.created_at);
    let t1 = records.iter().filter_map(|r| r.finished_at).chain([s.updated_at]).max().unwrap_or(s.updated_at);
    let span = (t1 - t0).max(1) as f64;
    let waiting = matches!(s.status, SagaStatus::Failed | SagaStatus::Stuck);
    let fork_steps: Vec<&str> = d.steps.iter().filter(|r| r.phase == Phase::Step).map(|r| r.step.as_str()).collect();
    let body = html! {
        div.crumbs { a href=(format!("{base}/sagas")) { "Sagas" } " / " a href=(url(base, "/sagas", &[("name", s.name.clone())])) { (s.name) } }
        h1 { (s.name) span #status class=(format!("badge b-{}", s.status)) { (s.status) } }
        (notice(&v.notice, base))
        @if waiting {
            div.card.attention #needs-operator {
                h2 { "This saga waits for an operator" }
                p.small {
                    @if s.status == SagaStatus::Failed {
                        "A compensation spent its retry budget: the saga is half undone. Once the cause is fixed, either undo the rest or finish it."
                    } @else {
                        "Its code changed under it (a step renamed or removed, an input that no longer reads). Once the code fits again, undo it or finish it."
                    }
                }
                div.choices {
                    div {
                        h3 { "Undo" }
                        p.small.muted { "Run the compensations that have not committed again." }
                        form method="post" action=(format!("{base}/sagas/{}/retry", s.id)) {
                            (hidden_token(page))
                            button #retry type="submit" { "Retry compensations" }
                        }
                    }
                    @if v.def.is_some() && !fork_steps.is_empty() {
                        div {
                            h3 { "Finish" }
                            p.small.muted { "A new saga with this one's input and its state before the step, running from that step on; the steps before it are not run again." }
                            form.actions method="post" action=(format!("{base}/sagas/{}/fork", s.id)) {
                                (hidden_token(page))
                                label { "From step"
                                    select name="step" #fork-step {
                                        @for step in &fork_steps { option value=(step) selected[s.failed_step.as_deref() == Some(*step)] { (step) } }
                                    }
                                }
                                button.secondary #fork type="submit" { "Run again from here" }
                            }
                        }
                    }
                }
            }
        }
        div.card {
            h2 { "Summary" }
            dl.facts {
                dt { "Id" } dd.mono { (s.id) }
                dt { "Started" } dd { (time(s.created_at)) " UTC " span.muted.small { "(" (ago(v.now, s.created_at)) ")" } }
                dt { "Updated" } dd { (time(s.updated_at)) " UTC " span.muted.small { "(" (ago(v.now, s.updated_at)) ")" } }
                @if let Some(step) = &s.failed_step { dt { "Failed step" } dd.mono { (step) } }
                @if let Some(k) = &s.idempotency_key { dt { "Idempotency key" } dd.mono { (k) } }
                @if let Some(o) = &s.owner { dt { "Owner" } dd.mono.small { (o) } }
            }
            @if let Some(e) = &s.error { pre.err #saga-error { (e) } }
        }
        div.card {
            h2 { "Timeline" }
            ol.timeline #timeline {
                @for r in &records {
                    @let not_run = r.status == StepStatus::Pending && r.attempts == 0;
                    li.compensation[r.phase == Phase::Compensation].not-run[not_run] data-step=(r.step) data-phase=(r.phase.as_str()) data-status=(r.status.as_str()) {
                        span class=(format!("dot d-{}", r.status)) {}
                        div.step-head {
                            span.step-name { (r.step) }
                            @if r.phase == Phase::Compensation { span.phase { "compensation" } }
                            span class=(format!("badge b-{}", r.status)) { @if not_run { "not run" } @else { (r.status) } }
                            span.meta {
                                "on " (r.database)
                                @if r.attempts > 0 { " · " (r.attempts) @if r.attempts == 1 { " attempt" } @else { " attempts" } }
                                @if let Some(ms) = r.duration_ms() { " · took " (duration(ms)) }
                                @if let Some(at) = r.started_at { " · at +" (duration(at - t0)) }
                            }
                        }
                        @if let (Some(a), Some(b)) = (r.started_at, r.finished_at) {
                            div.bar title=(format!("{} → {}", time(a), time(b))) {
                                i style=(format!("left:{:.2}%;width:{:.2}%", (a - t0) as f64 / span * 100.0, ((b - a) as f64 / span * 100.0).max(0.6))) {}
                            }
                        }
                        @if let Some(e) = &r.error { pre.err { (e) } }
                    }
                }
            }
        }
        div.grid {
            div.card { h2 { "Input" } pre.json #input { (pretty(&d.input)) } }
            div.card { h2 { "State" } pre.json #state { (pretty(&d.state)) } }
            @if let Some(r) = &d.result { div.card { h2 { "Result" } pre.json #result { (pretty(r)) } } }
        }
    };
    layout(page, &format!("{} {}", s.name, short(&s.id)), body)
}

/// The outbox: backlogs and dead letters.
pub(super) struct OutboxView<'a> {
    pub(super) backlog: &'a [OutboxBacklog],
    pub(super) dead: &'a [DeadLetter],
    pub(super) notice: Option<Notice>,
    pub(super) now: i64,
}

pub(super) fn outbox(page: &Page, v: &OutboxView<'_>) -> Markup {
    let base = &page.base;
    let body = html! {
        h1 { "Outbox" }
        (notice(&v.notice, base))
        div.card.flush {
            h2 { "Backlog by database" }
            table #backlog {
                thead { tr { th { "Database" } th.num { "Pending" } th.num { "Dead letters" } th { "Relay lag" } th { "Oldest pending" } } }
                tbody {
                    @for b in v.backlog {
                        tr {
                            td { b { (b.database) } }
                            td.num { (b.pending) }
                            td.num { @if b.dead > 0 { span.badge.b-failed { (b.dead) } } @else { "0" } }
                            td { @if b.pending == 0 { span.badge.b-ok { "caught up" } } @else { span.badge.b-lag { (duration(b.lag.as_millis() as i64)) } } }
                            td { @if let Some(t) = b.oldest_pending_at { (when(v.now, t)) } @else { span.muted { "—" } } }
                        }
                    }
                }
            }
        }
        div.card.flush {
            h2 { "Dead letters" }
            @if v.dead.is_empty() {
                div.empty { "No dead letters: every event a step committed was published." }
            } @else {
                div style="padding:0 18px 12px" {
                    form method="post" action=(format!("{base}/outbox/retry")) {
                        (hidden_token(page))
                        button.secondary #retry-all-letters type="submit" { "Retry all " (v.dead.len()) }
                    }
                }
                table #dead-letters {
                    thead { tr { th { "Written" } th { "Subject" } th { "Event" } th { "Database" } th { "Saga" } th.num { "Attempts" } th {} } }
                    @for d in v.dead {
                        tbody data-event-id=(d.id) {
                            tr.main {
                                td { (when(v.now, d.created_at)) }
                                td.mono { (d.subject) }
                                td.mono.small { (d.id) }
                                td { (d.database) }
                                td.mono.small { @if let Some(id) = &d.saga_id { a href=(format!("{base}/sagas/{id}")) title=(id) { (short(id)) } } @else { span.muted { "—" } } }
                                td.num { (d.attempts) }
                                td.num {
                                    form method="post" action=(format!("{base}/outbox/retry")) {
                                        (hidden_token(page))
                                        input type="hidden" name="id" value=(d.id);
                                        button.small type="submit" { "Retry" }
                                    }
                                }
                            }
                            tr.detail {
                                td colspan="7" {
                                    @if let Some(e) = &d.last_error { div.reason { (e) } } @else { span.muted.small { "no error recorded" } }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(page, "Outbox", body)
}

/// Events handlers could not process.
pub(super) struct DeadEventsView<'a> {
    pub(super) dead: &'a [DeadEvent],
    pub(super) consumer: Option<&'a str>,
    pub(super) notice: Option<Notice>,
    pub(super) now: i64,
}

pub(super) fn dead_events(page: &Page, v: &DeadEventsView<'_>) -> Markup {
    let base = &page.base;
    let body = html! {
        h1 { "Dead events" @if let Some(c) = v.consumer { span.badge.b-pending { (c) } } }
        (notice(&v.notice, base))
        div.card.flush {
            @if v.dead.is_empty() {
                div.empty { "No dead events: every handler has processed what it was given." }
            } @else {
                div style="padding:14px 18px" {
                    form method="post" action=(format!("{base}/dead-events/retry")) {
                        (hidden_token(page))
                        @if let Some(c) = v.consumer { input type="hidden" name="consumer" value=(c); }
                        button.secondary #retry-all-events type="submit" { "Retry all " (v.dead.len()) }
                    }
                }
                table #dead-events {
                    thead { tr { th { "Dead since" } th { "Consumer" } th { "Subject" } th { "Event" } th.num { "Deliveries" } th {} } }
                    @for d in v.dead {
                        // One body per event: its row, then the reason and payload beneath.
                        tbody data-event-id=(d.event_id) {
                            tr.main {
                                td { (when(v.now, d.created_at)) }
                                td.nowrap { a.name href=(url(base, "/dead-events", &[("consumer", d.consumer.clone())])) { (d.consumer) } }
                                td.mono { (d.subject) }
                                td.mono.small title=(d.event_id) { (d.event_id) }
                                td.num { (d.attempts) }
                                td.num {
                                    form method="post" action=(format!("{base}/dead-events/retry")) {
                                        (hidden_token(page))
                                        input type="hidden" name="consumer" value=(d.consumer);
                                        input type="hidden" name="event" value=(d.event_id);
                                        button.small type="submit" { "Retry" }
                                    }
                                }
                            }
                            tr.detail {
                                td colspan="6" {
                                    div.reason { (d.reason) }
                                    details { summary { "Payload" } pre.json { (pretty(&d.event)) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(page, "Dead events", body)
}

pub(super) fn consumers(page: &Page, list: &[ConsumerInfo]) -> Markup {
    let body = html! {
        h1 { "Consumers" }
        div.card.flush {
            @if list.is_empty() {
                div.empty { "This runtime has no durable consumers." }
            } @else {
                table #consumers {
                    thead { tr { th { "Durable name" } th { "Subject" } th { "Handler" } th { "Inbox database" } th { "Lag" } } }
                    tbody {
                        @for c in list {
                            tr data-consumer=(c.name) {
                                td { b { (c.name) } }
                                td.mono { (c.subject) }
                                td.mono { (c.function) }
                                td { @if let Some(db) = &c.database { (db) } @else { span.muted { "— (at least once)" } } }
                                td {
                                    @match c.pending {
                                        Some(0) => span.badge.b-ok { "caught up" },
                                        Some(n) => span.badge.b-lag { (n) " waiting" },
                                        None => span.muted { "not started" },
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(page, "Consumers", body)
}
