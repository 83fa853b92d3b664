//! GraphQL over HTTP (the GraphQL-over-HTTP spec): `POST` with `application/json` (a JSON
//! object with `query`, optional `variables`, `operationName`, `extensions`) or
//! `application/graphql` (the document as the body), and `GET` with the same as URL
//! parameters (queries only). The answer is `application/graphql-response+json` when the
//! client accepts it, else `application/json`.
//!
//! Status codes: under `application/json` every GraphQL response is 200; under
//! `application/graphql-response+json` a request that did not run (it does not parse, is
//! invalid, names no operation) is 400, while field errors (a compensated saga) are 200.
//! A request that did not run has no `data` key. Requests that are not GraphQL requests
//! at all (no or another content type, a JSON array, a body too large, another method)
//! are refused with a JSON `errors` body that says what was expected.
//!
//! An `Idempotency-Key` header makes the request's mutations idempotent (see
//! [`super::IdempotencyKey`]).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{Map, Value};

use super::Built;
use crate::runtime::Runtime;

struct Endpoint {
    rt: Runtime,
    built: Arc<Built>,
    max_body: usize,
}

pub(crate) fn router(rt: &Runtime) -> crate::Result<Router> {
    let built = rt.graphql_built()?;
    let cfg = &rt.config().graphql;
    let state = Arc::new(Endpoint { rt: rt.clone(), built, max_body: cfg.max_body_bytes });
    Ok(Router::new().route(&cfg.path, get(on_get).post(on_post).fallback(on_other_method)).with_state(state))
}

/// A response whose request never ran: `{"errors": [{"message": …}]}`.
fn refused(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": "BAD_REQUEST" } }] });
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn on_other_method(method: Method) -> Response {
    let mut r = refused(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("method {method} is not served here: send GraphQL requests with GET or POST"),
    );
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
    r
}

fn wants_graphql_response(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/graphql-response+json"))
}

/// Run a request; `read_only` (GET) refuses mutations.
async fn run(ep: &Endpoint, headers: &HeaderMap, mut req: async_graphql::Request, read_only: bool) -> Response {
    let graphql_response = wants_graphql_response(headers);
    if let Some(v) = headers.get("idempotency-key") {
        match v.to_str() {
            Ok(k) if !k.is_empty() && k.len() <= 200 && k.bytes().all(|b| b.is_ascii_graphic()) => {
                req = req.data(super::IdempotencyKey(k.to_string()));
            }
            _ => {
                return refused(
                    StatusCode::BAD_REQUEST,
                    "the Idempotency-Key header must be 1 to 200 visible ASCII characters",
                )
            }
        }
    }
    let operation = req.operation_name.clone();
    let started = std::time::Instant::now();
    let ct = if graphql_response { "application/graphql-response+json; charset=utf-8" } else { "application/json" };
    // A persisted query is resolved once (its hash checked, its counters counted), then
    // the compiled path answers if it can, else the executor.
    let done = match ep.built.persisted.resolve(&mut req) {
        Err(refusal) => super::execute::refused(refusal),
        Ok(()) => {
            let mut learn = None;
            if !req.query.is_empty() {
                let op = req.operation_name.as_deref();
                match ep.built.plans.serve(&ep.rt, &req.query, op, &req.variables).await {
                    super::compiled::Served::Body(body) => {
                        crate::telemetry::graphql_request(operation.as_deref(), 200, "ok", started.elapsed());
                        return (StatusCode::OK, [(header::CONTENT_TYPE, ct)], body).into_response();
                    }
                    super::compiled::Served::Unknown => learn = Some((req.query.clone(), req.operation_name.clone())),
                    super::compiled::Served::Fallback => {}
                }
            }
            let done = super::execute::execute_resolved(&ep.rt, &ep.built, req, read_only).await;
            if let Some((query, op)) = learn {
                if done.ran && done.response.errors.is_empty() {
                    ep.built.plans.learn(&query, op.as_deref());
                }
            }
            done
        }
    };
    let status = match done.status {
        Some(s) => StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_REQUEST),
        None if graphql_response && !done.ran => StatusCode::BAD_REQUEST,
        None => StatusCode::OK,
    };
    let outcome = match (done.ran, done.response.errors.is_empty()) {
        (false, _) => "request_error",
        (true, true) => "ok",
        (true, false) => "field_error",
    };
    crate::telemetry::graphql_request(operation.as_deref(), status.as_u16(), outcome, started.elapsed());
    let mut r = match body(&done.response, done.ran) {
        Ok(body) => (status, [(header::CONTENT_TYPE, ct)], body).into_response(),
        Err(e) => refused(StatusCode::INTERNAL_SERVER_ERROR, &format!("the response could not be encoded: {e}")),
    };
    if status == StatusCode::METHOD_NOT_ALLOWED {
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    r
}

/// The response as JSON: `data` only when the operation ran (the spec: a request error
/// has no `data` entry).
fn body(resp: &async_graphql::Response, ran: bool) -> serde_json::Result<String> {
    #[derive(serde::Serialize)]
    struct Body<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<&'a async_graphql::Value>,
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        errors: &'a [async_graphql::ServerError],
        #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        extensions: &'a std::collections::BTreeMap<String, async_graphql::Value>,
    }
    serde_json::to_string(&Body { data: ran.then_some(&resp.data), errors: &resp.errors, extensions: &resp.extensions })
}

/// A request from its parts (`query`, `operationName`, `variables`, `extensions`), as
/// JSON values; `from` names where they were read, for messages.
fn request_of(mut parts: Map<String, Value>, from: &str) -> Result<async_graphql::Request, String> {
    let persisted = parts.get("extensions").and_then(|x| x.get("persistedQuery")).is_some();
    let query = match parts.remove("query") {
        Some(Value::String(q)) => q,
        // A persisted query's hash stands for the document.
        None | Some(Value::Null) if persisted => String::new(),
        Some(_) => return Err(format!("`query` in the {from} must be a string")),
        None => return Err(format!("the {from} has no `query`")),
    };
    let mut req = async_graphql::Request::new(query);
    match parts.remove("operationName") {
        Some(Value::String(n)) => req = req.operation_name(n),
        Some(Value::Null) | None => {}
        Some(_) => return Err(format!("`operationName` in the {from} must be a string")),
    }
    match parts.remove("variables") {
        Some(v @ Value::Object(_)) => req = req.variables(async_graphql::Variables::from_json(v)),
        Some(Value::Null) | None => {}
        Some(_) => return Err(format!("`variables` in the {from} must be a JSON object")),
    }
    match parts.remove("extensions") {
        Some(Value::Object(x)) => {
            for (k, v) in x {
                let v = async_graphql::Value::from_json(v).map_err(|e| format!("`extensions.{k}`: {e}"))?;
                req.extensions.insert(k, v);
            }
        }
        Some(Value::Null) | None => {}
        Some(_) => return Err(format!("`extensions` in the {from} must be a JSON object")),
    }
    Ok(req)
}

async fn on_get(State(ep): State<Arc<Endpoint>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let q = q.unwrap_or_default();
    if q.len() > ep.max_body {
        return refused(StatusCode::URI_TOO_LONG, &format!("the request is larger than {} bytes", ep.max_body));
    }
    let pairs: Vec<(String, String)> = match serde_urlencoded::from_str(&q) {
        Ok(p) => p,
        Err(e) => return refused(StatusCode::BAD_REQUEST, &format!("the URL parameters cannot be read: {e}")),
    };
    let mut parts = Map::new();
    for (k, v) in pairs {
        // `variables` and `extensions` are JSON in a parameter; the rest are strings.
        let value = match k.as_str() {
            "variables" | "extensions" => match serde_json::from_str(&v) {
                Ok(v) => v,
                Err(e) => return refused(StatusCode::BAD_REQUEST, &format!("URL parameter `{k}` is not JSON: {e}")),
            },
            _ => Value::String(v),
        };
        parts.insert(k, value);
    }
    let req = match request_of(parts, "URL parameters") {
        Ok(r) => r,
        Err(m) => return refused(StatusCode::BAD_REQUEST, &m),
    };
    // GET must not change anything: mutations go by POST.
    run(&ep, &headers, req, true).await
}

async fn on_post(State(ep): State<Arc<Endpoint>>, headers: HeaderMap, body: Body) -> Response {
    let bytes: Bytes = match axum::body::to_bytes(body, ep.max_body).await {
        Ok(b) => b,
        Err(_) => {
            return refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the request body is larger than {} bytes", ep.max_body),
            )
        }
    };
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the request has no Content-Type: send application/json (or application/graphql)",
        );
    };
    let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    let req = match essence {
        "application/graphql" => match std::str::from_utf8(&bytes) {
            Ok(q) => async_graphql::Request::new(q),
            Err(_) => return refused(StatusCode::BAD_REQUEST, "the query is not UTF-8"),
        },
        "application/json" => {
            let parts = match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(m)) => m,
                Ok(Value::Array(_)) => {
                    return refused(
                        StatusCode::BAD_REQUEST,
                        "the body is a JSON array; send one request as a JSON object (batches are not served)",
                    )
                }
                Ok(_) => return refused(StatusCode::BAD_REQUEST, "the body must be a JSON object with `query`"),
                Err(e) => {
                    return refused(
                        StatusCode::BAD_REQUEST,
                        &format!("the body is not a GraphQL request (a JSON object with `query`, optional `variables`, `operationName` and `extensions`): {e}"),
                    )
                }
            };
            match request_of(parts, "body") {
                Ok(r) => r,
                Err(m) => return refused(StatusCode::BAD_REQUEST, &format!("the body is not a GraphQL request: {m}")),
            }
        }
        other => {
            return refused(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!("content type `{other}` is not understood; send application/json (or application/graphql)"),
            )
        }
    };
    run(&ep, &headers, req, false).await
}
