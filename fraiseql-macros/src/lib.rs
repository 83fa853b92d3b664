//! Attribute macros of FraiseQL. Use them through the `fraiseql` crate
//! (`use fraiseql::prelude::*;`), not directly: generated code reaches the runtime
//! through `::fraiseql::__private` (or `crate = path` when the dependency is renamed).

#![warn(missing_docs)]

mod common;
mod compensate;
// The runtime's own file, so that an attribute accepts exactly what the runtime does.
// Not every rule there is checked at compile time (stream names, subject matching, …),
// and its items are public for the runtime's users, not this crate's.
#[allow(dead_code, unreachable_pub)]
#[path = "../../fraiseql-runtime/src/grammar.rs"]
mod grammar;
mod object;
mod query;
mod saga;
mod saga_step;
mod subscribe;

use proc_macro::TokenStream;
use quote::ToTokens;

/// Declares a saga on a bodiless async fn; the macro writes the body, which runs the
/// listed steps in order, each in its own transaction, compensating on failure.
///
/// ```text
/// #[saga(steps = ["create_order", "charge"], state = OrderSaga)]
/// async fn place_order(customer_id: i64, total_cents: i64) -> fraiseql::Result<Receipt>;
/// ```
///
/// Keys: `steps` (required), `state` (a `Default + Serialize + DeserializeOwned` type
/// shared by the steps), `result` (the step whose value is returned; the last by
/// default), `name` (registered name; the fn's name by default), `recovery`
/// (`"compensate"` or `"forward"`), `crate` (path of a renamed `fraiseql` dependency).
///
/// Written without the macro, the body is:
///
/// ```text
/// async fn place_order(customer_id: i64, total_cents: i64) -> fraiseql::Result<Receipt> {
///     let mut input = Input::with_capacity(2);
///     input_arg(&mut input, "customer_id", &customer_id)?;
///     input_arg(&mut input, "total_cents", &total_cents)?;
///     run_saga::<Receipt>("place_order", input).await
/// }
/// // plus one `SagaDef` registered in the `FRAISEQL_SAGAS` distributed slice
/// ```
#[proc_macro_attribute]
pub fn saga(attr: TokenStream, item: TokenStream) -> TokenStream {
    emit(saga::parse(attr.into(), item.into()))
}

/// Declares one step of a saga: `ctx: &mut SagaContext<State>` first, then parameters
/// injected by name from the saga's inputs, then from its state.
///
/// ```text
/// #[saga_step("charge", database = "payments", retries = 5, timeout = "10s")]
/// async fn charge(ctx: &mut SagaContext<OrderSaga>, total_cents: i64) -> fraiseql::Result<i64> {
///     let id: (i64,) = ctx.fetch_one("INSERT INTO payment (amount) VALUES ($1) RETURNING id", (total_cents,)).await?;
///     Ok(id.0)
/// }
/// ```
///
/// `timeout` is read as the configuration reads durations (`humantime`: `"250ms"`,
/// `"10 seconds"`, `"1m 30s"`). Each parameter must be `Deserialize` and the result
/// `Serialize` (the roles `fraiseql::roles::StepParam` and `StepResult`); one that is not
/// is reported on its type.
///
/// Written without the macro: the fn as is, plus a `StepDef` in the `FRAISEQL_STEPS`
/// slice whose `invoke` deserialises each parameter from the saga's inputs or state,
/// calls the fn with a context over the step's transaction, and serialises its result.
#[proc_macro_attribute]
pub fn saga_step(attr: TokenStream, item: TokenStream) -> TokenStream {
    emit(saga_step::parse(attr.into(), item.into()))
}

/// Declares the compensation (undo) of a step; runs in its own transaction on the
/// step's database when a later step fails.
///
/// ```text
/// #[compensate("charge")]
/// async fn refund(ctx: &mut SagaContext<OrderSaga>) -> fraiseql::Result<()> { Ok(()) }
/// ```
#[proc_macro_attribute]
pub fn compensate(attr: TokenStream, item: TokenStream) -> TokenStream {
    emit(compensate::parse(attr.into(), item.into()))
}

fn emit<D: ToTokens>(r: Result<D, (syn::Error, proc_macro2::TokenStream)>) -> TokenStream {
    match r {
        Ok(def) => def.into_token_stream().into(),
        Err((err, best_effort)) => common::compile_error_with(err, best_effort).into(),
    }
}

/// Declares an event handler: `async fn(event: Event<T>, ctx: &EventContext) -> Result<R>`.
/// `T` is any `DeserializeOwned` (or omitted: JSON); a payload that does not deserialise
/// into it is a dead letter with the reason, never a crash or a loop. `R` other than `()`
/// answers requests (`fraiseql::request`).
///
/// ```text
/// #[subscribe("fraiseql.order.>", durable = "order-projection", max_deliver = 5)]
/// async fn project(event: Event<OrderEvent>, ctx: &EventContext) -> fraiseql::Result<()> { … }
/// ```
///
/// Keys: `durable` (a JetStream durable consumer: ack after success, redelivery with
/// backoff on error, a dead letter after `max_deliver`), `queue` (a queue group of a core
/// subscription: each event to one member), `max_deliver`, `concurrency` (handlers at
/// once), `crate`. Without the macro: the fn as is, plus a `SubscriptionDef` in the
/// `FRAISEQL_SUBSCRIPTIONS` slice whose `invoke` decodes the event and calls the fn.
#[proc_macro_attribute]
pub fn subscribe(attr: TokenStream, item: TokenStream) -> TokenStream {
    emit(subscribe::parse(attr.into(), item.into()))
}

/// Declares a query. Bodiless, it reads a view (FraiseQL's convention: filter columns
/// plus a JSON `data` column) and the macro writes its body; with a body, it is a custom
/// resolver registered as written.
///
/// ```text
/// #[query(sql_source = "v_order", database = "primary")]
/// async fn order(id: String) -> fraiseql::Result<Option<Order>>;
///
/// #[query(sql_source = "v_order", order_by = "created_at desc", limit = 100)]
/// async fn orders(customer_id: Option<String>, limit: Option<i64>, offset: Option<i64>, order_by: Option<String>)
///     -> fraiseql::Result<Vec<Order>>;
/// ```
///
/// Arguments are equality filters on the same-named columns, bound, never spliced
/// (`Option<_>`: only when given); `limit`, `offset` and `order_by` (`"column [asc|desc],
/// …"`, columns of the view only) page and order. `Result<Option<T>>` is at most one row,
/// `Result<Vec<T>>` many, `Result<T>` exactly one. Keys: `sql_source`, `database`
/// (default `primary`), `data_column` (default `data`), `order_by` and `limit` (defaults
/// for the caller), `name` (what it is served as), `crate`.
///
/// Without the macro: a body building a `ViewCall` and calling `run_view`, plus a
/// `QueryDef` in the `FRAISEQL_QUERIES` slice whose `resolve` calls the fn from JSON.
#[proc_macro_attribute]
pub fn query(attr: TokenStream, item: TokenStream) -> TokenStream {
    emit(query::parse(attr.into(), item.into()))
}

/// Describes a struct to the GraphQL schema: an object type whose fields are named as
/// serde names them in JSON (`rename`, `rename_all` and `skip` are followed), so the
/// schema, a view's `data` and the Rust type agree. Field types without a description
/// are served as the `JSON` scalar. `#[fraiseql(name = "…")]` renames the type.
#[proc_macro_derive(Object, attributes(fraiseql))]
pub fn derive_object(input: TokenStream) -> TokenStream {
    object::derive(input.into()).into()
}
