//! `#[subscribe("subject", durable = "name", queue = "group", max_deliver = 5, concurrency = 8)]`
//! on `async fn(event: Event<T>, ctx: &EventContext) -> fraiseql::Result<R>`, or with
//! `database = "name"` (durable only) on `async fn(event: Event<T>, ctx: &mut EventTx)`:
//! the handler runs in a transaction on that database, with the inbox.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, PathArguments, Type};

use crate::common::args::{self, Arg, Errors};
use crate::common::func::{self, Func};
use crate::common::{self as c};
use crate::grammar;
use crate::saga_step::opt;

const M: &str = "subscribe";
const KEYS: &[&str] = &["durable", "database", "queue", "max_deliver", "concurrency", "crate"];

/// What one `#[subscribe]` declares: a handler of the events on a subject pattern.
pub(crate) struct Definition {
    pub func: Func,
    pub subject: String,
    /// Durable JetStream consumer name (ack after success, redelivery, dead letters).
    pub durable: Option<String>,
    /// The database of the handler's transaction (and inbox).
    pub database: Option<String>,
    /// Queue group of a core subscription (load-balanced).
    pub queue: Option<String>,
    pub max_deliver: Option<u32>,
    pub concurrency: Option<u32>,
    pub krate: Option<syn::Path>,
    /// `T` of `Event<T>`; `None` for a bare `Event` (JSON).
    pub data: Option<Type>,
    /// `R` of `Result<R>`: a reply when the event was a request.
    pub output: Type,
}

#[derive(Default)]
struct Configuration {
    subject: Option<(syn::LitStr, Span)>,
    durable: Option<(String, Span)>,
    database: Option<(String, Span)>,
    queue: Option<(String, Span)>,
    max_deliver: Option<(u32, Span)>,
    concurrency: Option<(u32, Span)>,
    krate: Option<(syn::Path, Span)>,
}

fn check_subject(lit: &syn::LitStr) -> syn::Result<String> {
    let v = lit.value();
    grammar::check_subject(&v, grammar::SubjectKind::Subscription).map_err(|why| {
        // The caret already shows the literal; a long one is cut short in the message.
        let shown = match v.char_indices().nth(40) {
            Some((end, _)) => format!("{}…", &v[..end]),
            None => v.clone(),
        };
        syn::Error::new_spanned(lit, format!("`#[subscribe]`: `{shown}` is not a valid subject: {why}"))
    })?;
    Ok(v)
}

impl Configuration {
    fn apply(&mut self, arg: Arg) -> syn::Result<()> {
        match arg {
            Arg::Positional(e) => args::positional_once(&mut self.subject, M, "subject", e),
            Arg::Named { key, value } => match key.to_string().as_str() {
                "durable" => {
                    let lit = args::lit_str(M, "`durable`", &value)?;
                    let v = lit.value();
                    if let Err(why) = grammar::check_durable_name(&v) {
                        return Err(syn::Error::new_spanned(
                            lit,
                            format!("`#[subscribe]`: `durable = \"{v}\"`: {why}"),
                        ));
                    }
                    args::set_once(&mut self.durable, M, &key, v)
                }
                "database" => {
                    let lit = args::lit_str(M, "`database`", &value)?;
                    let v = args::check_name(M, "database", &lit)?;
                    args::set_once(&mut self.database, M, &key, v)
                }
                "queue" => {
                    let lit = args::lit_str(M, "`queue`", &value)?;
                    let v = args::check_name(M, "queue group", &lit)?;
                    args::set_once(&mut self.queue, M, &key, v)
                }
                "max_deliver" => {
                    let v = args::lit_u32(M, "`max_deliver`", &value)?;
                    if v == 0 {
                        return Err(syn::Error::new_spanned(value, "`#[subscribe]`: `max_deliver` must be at least 1"));
                    }
                    args::set_once(&mut self.max_deliver, M, &key, v)
                }
                "concurrency" => {
                    let v = args::lit_u32(M, "`concurrency`", &value)?;
                    if v == 0 {
                        return Err(syn::Error::new_spanned(value, "`#[subscribe]`: `concurrency` must be at least 1"));
                    }
                    args::set_once(&mut self.concurrency, M, &key, v)
                }
                "crate" => {
                    let p = c::parse_crate_path(M, &value)?;
                    args::set_once(&mut self.krate, M, &key, p)
                }
                _ => Err(args::unknown_key(M, &key, KEYS)),
            },
        }
    }
}

/// `Event<T>` → `Some(Some(T))`, bare `Event` → `Some(None)` (JSON), else `None`.
fn event_data(ty: &Type) -> Option<Option<Type>> {
    let Type::Path(tp) = ty else { return None };
    let last = tp.path.segments.last()?;
    if last.ident != "Event" {
        return None;
    }
    match &last.arguments {
        PathArguments::None => Some(None),
        PathArguments::AngleBracketed(ab) => ab.args.iter().find_map(|a| match a {
            GenericArgument::Type(t) => Some(Some(t.clone())),
            _ => None,
        }),
        _ => None,
    }
}

/// The context a handler takes: `&EventContext` or `&mut EventTx`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ContextKind {
    Plain,
    Transaction,
    Other,
}

fn context_kind(ty: &Type) -> ContextKind {
    let Type::Reference(r) = ty else { return ContextKind::Other };
    let Type::Path(tp) = &*r.elem else { return ContextKind::Other };
    match (tp.path.segments.last().map(|s| s.ident.to_string()).as_deref(), r.mutability.is_some()) {
        (Some("EventContext"), false) => ContextKind::Plain,
        (Some("EventTx"), true) => ContextKind::Transaction,
        _ => ContextKind::Other,
    }
}

pub(crate) fn parse(attr: TokenStream, item: TokenStream) -> Result<Definition, (syn::Error, TokenStream)> {
    let func: Func = syn::parse2(item.clone()).map_err(|e| (e, item))?;
    let mut errs = Errors::default();
    let mut cfg = Configuration::default();
    args::apply_each(attr, &mut errs, |a| cfg.apply(a));
    let subject = match &cfg.subject {
        Some((lit, _)) => errs.check(check_subject(lit)),
        None => {
            errs.push(syn::Error::new(
                Span::call_site(),
                "`#[subscribe]` expects a subject first: `#[subscribe(\"fraiseql.order.>\")]`",
            ));
            None
        }
    };
    if let (Some(d), Some(q)) = (&cfg.durable, &cfg.queue) {
        errs.push(syn::Error::new(
            q.1,
            format!("`#[subscribe]`: `queue` is for core subscriptions; a durable consumer (`durable = \"{}\"`) already shares its work between instances", d.0),
        ));
    }
    if let (Some((db, span)), None) = (&cfg.database, &cfg.durable) {
        errs.push(syn::Error::new(
            *span,
            format!("`#[subscribe]`: `database = \"{db}\"` needs a durable consumer (`durable = \"name\"`): the inbox that applies each event once is kept per consumer"),
        ));
    }
    if cfg.durable.is_none() {
        if let Some((_, span)) = &cfg.max_deliver {
            errs.push(syn::Error::new(
                *span,
                "`#[subscribe]`: `max_deliver` needs a durable consumer (`durable = \"name\"`)",
            ));
        }
    }
    func::check_common(M, &func, &mut errs);
    if let Some(b) = func.semi.as_ref().filter(|_| func.body.is_none()) {
        errs.push(syn::Error::new_spanned(b, "`#[subscribe]` expects a function with a body"));
    }
    let typed: Vec<&syn::PatType> =
        func.sig.inputs.iter().filter_map(|a| if let FnArg::Typed(p) = a { Some(p) } else { None }).collect();
    let wanted = if cfg.database.is_some() { "&mut EventTx" } else { "&EventContext" };
    let shape = format!("`#[subscribe]` handlers take `(event: Event<T>, ctx: {wanted})`");
    let data = match typed.first() {
        Some(p) => match event_data(&p.ty) {
            Some(t) => Some(t),
            None => {
                errs.push(syn::Error::new_spanned(&p.ty, format!("{shape}: the first parameter must be `Event<T>`")));
                None
            }
        },
        None => {
            errs.push(syn::Error::new(func.sig.paren_token.span.join(), &shape));
            None
        }
    };
    match (typed.get(1).map(|p| (p, context_kind(&p.ty))), &cfg.database) {
        (Some((_, ContextKind::Plain)), None) | (Some((_, ContextKind::Transaction)), Some(_)) => {}
        (Some((p, ContextKind::Plain)), Some((db, _))) => errs.push(syn::Error::new_spanned(
            &p.ty,
            format!("`#[subscribe]` with `database = \"{db}\"` runs the handler in a transaction on `{db}`: take `ctx: &mut EventTx`"),
        )),
        (Some((p, ContextKind::Transaction)), None) => errs.push(syn::Error::new_spanned(
            &p.ty,
            "`#[subscribe]`: `&mut EventTx` is the context of a handler that runs in a transaction: add `database = \"name\"` (with `durable = \"…\"`)",
        )),
        (Some((p, ContextKind::Other)), _) => errs.push(syn::Error::new_spanned(
            &p.ty,
            format!("{shape}: the second parameter must be `{wanted}`"),
        )),
        (None, _) if !typed.is_empty() => {
            errs.push(syn::Error::new(func.sig.paren_token.span.join(), format!("{shape}: add `ctx: {wanted}`")))
        }
        (None, _) => {}
    }
    if let Some(extra) = typed.get(2) {
        errs.push(syn::Error::new_spanned(extra, format!("{shape}: nothing else")));
    }
    let output = errs.check(func::result_inner(M, &func));
    let best = func.to_tokens_best_effort();
    if let Err(e) = errs.finish() {
        return Err((e, best));
    }
    Ok(Definition {
        subject: subject.unwrap(),
        durable: cfg.durable.map(|d| d.0),
        database: cfg.database.map(|d| d.0),
        queue: cfg.queue.map(|q| q.0),
        max_deliver: cfg.max_deliver.map(|m| m.0),
        concurrency: cfg.concurrency.map(|m| m.0),
        krate: cfg.krate.map(|k| k.0),
        data: data.unwrap(),
        output: output.unwrap(),
        func,
    })
}

impl ToTokens for Definition {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let k = c::krate(self.krate.as_ref());
        let user_fn = self.func.to_tokens_best_effort();
        let ident = &self.func.sig.ident;
        let function = ident.to_string();
        let subject = &self.subject;
        let durable = opt(self.durable.as_deref());
        let queue = opt(self.queue.as_deref());
        let max_deliver = opt(self.max_deliver);
        let concurrency = opt(self.concurrency);
        let data = match &self.data {
            Some(t) => t.to_token_stream(),
            None => quote!(#k::__private::Value),
        };
        let output = &self.output;
        let location = c::location(&k, ident.span());
        let decode = quote_spanned!(self.data.as_ref().map(|d| d.span()).unwrap_or_else(Span::call_site)=> <#data as #k::__private::EventData>::__decode(event));
        let reply = quote_spanned!(output.span()=> <#output as #k::__private::EventReply>::__reply(result));
        let (context, handler) = match &self.database {
            Some(db) => {
                (quote!(&'a mut #k::EventTx), quote!(#k::__private::Handler::InTransaction { database: #db, invoke }))
            }
            None => (quote!(&'a #k::EventContext), quote!(#k::__private::Handler::Plain(invoke))),
        };
        tokens.extend(quote! {
            #user_fn
            const _: () = {
                fn invoke<'a>(
                    event: #k::Event,
                    ctx: #context,
                ) -> #k::__private::BoxFuture<'a, ::core::result::Result<::core::option::Option<#k::__private::Value>, #k::__private::HandlerFailure>> {
                    ::std::boxed::Box::pin(async move {
                        let event = #decode?;
                        let result = #ident(event, ctx).await;
                        #reply
                    })
                }
                #[#k::__private::linkme::distributed_slice(#k::__private::FRAISEQL_SUBSCRIPTIONS)]
                #[linkme(crate = #k::__private::linkme)]
                static REGISTRATION: #k::__private::SubscriptionDef = #k::__private::SubscriptionDef {
                    subject: #subject,
                    function: #function,
                    durable: #durable,
                    queue: #queue,
                    max_deliver: #max_deliver,
                    concurrency: #concurrency,
                    handler: #handler,
                    location: #location,
                };
            };
        });
    }
}
