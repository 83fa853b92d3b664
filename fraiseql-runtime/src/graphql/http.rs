//! GraphQL over HTTP: `POST` (`application/json`, or `application/graphql` with the
//! query as the body) and `GET` (`?query=…&variables=…`, queries only), answered as
//! `application/graphql-response+json` when the client accepts it (with 400 for a
//! request that could not run), else `application/json`. An `Idempotency-Key` header
//! makes the request's mutations idempotent (see [`super::IdempotencyKey`]).

use std::sync::Arc;

use async_graphql::dynamic::Schema;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::runtime::Runtime;

struct Endpoint {
    rt: Runtime,
    schema: Schema,
    max_body: usize,
}

pub(crate) fn router(rt: &Runtime) -> crate::Result<Router> {
    let schema = rt.graphql_schema()?;
    let cfg = &rt.config().graphql;
    let state = Arc::new(Endpoint { rt: rt.clone(), schema, max_body: cfg.max_body_bytes });
    Ok(Router::new().route(&cfg.path, get(on_get).post(on_post)).with_state(state))
}

/// A response whose request never ran: `{"errors": [{"message": …}]}`.
fn refused(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "errors": [{ "message": message }] });
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn wants_graphql_response(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/graphql-response+json"))
}

async fn run(ep: &Endpoint, headers: &HeaderMap, mut req: async_graphql::Request) -> Response {
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
    let query = req.query.clone();
    let mut resp = ep.rt.scope(ep.schema.execute(req)).await;
    super::add_error_paths(&query, &mut resp);
    // Under the newer media type, a request that could not run (no data at all) is a 400.
    let status = if graphql_response && resp.data == async_graphql::Value::Null && !resp.errors.is_empty() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let ct = if graphql_response { "application/graphql-response+json; charset=utf-8" } else { "application/json" };
    match serde_json::to_string(&resp) {
        Ok(body) => (status, [(header::CONTENT_TYPE, ct)], body).into_response(),
        Err(e) => refused(StatusCode::INTERNAL_SERVER_ERROR, &format!("the response could not be encoded: {e}")),
    }
}

async fn on_get(State(ep): State<Arc<Endpoint>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let q = q.unwrap_or_default();
    if q.len() > ep.max_body {
        return refused(StatusCode::URI_TOO_LONG, &format!("the request is larger than {} bytes", ep.max_body));
    }
    let req = match async_graphql::http::parse_query_string(&q) {
        Ok(r) => r,
        Err(e) => return refused(StatusCode::BAD_REQUEST, &format!("cannot read the request: {e}")),
    };
    // GET must not change anything: mutations go by POST.
    if let Ok(doc) = async_graphql::parser::parse_query(&req.query) {
        let wanted = req.operation_name.as_deref();
        let is_mutation = doc.operations.iter().any(|(name, op)| {
            (wanted.is_none() || name.map(|n| n.as_str()) == wanted)
                && op.node.ty == async_graphql::parser::types::OperationType::Mutation
        });
        if is_mutation {
            let mut r = refused(StatusCode::METHOD_NOT_ALLOWED, "mutations are sent with POST");
            r.headers_mut().insert(header::ALLOW, "POST".parse().unwrap());
            return r;
        }
    }
    run(&ep, &headers, req).await
}

async fn on_post(State(ep): State<Arc<Endpoint>>, method: Method, headers: HeaderMap, body: Body) -> Response {
    debug_assert_eq!(method, Method::POST);
    let bytes: Bytes = match axum::body::to_bytes(body, ep.max_body).await {
        Ok(b) => b,
        Err(_) => {
            return refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the request body is larger than {} bytes", ep.max_body),
            )
        }
    };
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let req = if ct.starts_with("application/graphql") && !ct.starts_with("application/graphql-response") {
        match std::str::from_utf8(&bytes) {
            Ok(q) => async_graphql::Request::new(q),
            Err(_) => return refused(StatusCode::BAD_REQUEST, "the query is not UTF-8"),
        }
    } else if ct.starts_with("application/json") {
        match serde_json::from_slice::<async_graphql::Request>(&bytes) {
            Ok(r) => r,
            Err(e) => return refused(StatusCode::BAD_REQUEST, &format!("the body is not a GraphQL request (JSON with `query`, optional `variables` and `operationName`): {e}")),
        }
    } else {
        return refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("content type `{ct}` is not understood; send application/json"),
        );
    };
    run(&ep, &headers, req).await
}
