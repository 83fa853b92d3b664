//! `#[query(sql_source = "v_order", database = "primary")]` on a bodiless async fn: the
//! macro writes a body that reads the view, the arguments becoming bound equality
//! filters (`limit`, `offset` and `order_by` by those names). With a body, the fn is a
//! custom resolver, registered as written.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{GenericArgument, PathArguments, Type};

use crate::common::args::{self, Arg, Errors};
use crate::common::func::{self, Func, Param};
use crate::common::{self as c};
use crate::grammar;

const M: &str = "query";
const KEYS: &[&str] = &["sql_source", "database", "data_column", "order_by", "limit", "name", "crate"];

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    One,
    Optional,
    Many,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Filter,
    Limit,
    Offset,
    OrderBy,
    Input,
}

struct QueryParam {
    param: Param,
    /// The column (or argument) name: the parameter's, without `r#`.
    column: String,
    role: Role,
    optional: bool,
    /// `Vec<_>` (or `Option<Vec<_>>`): any of several values.
    list: bool,
}

/// What one `#[query]` declares.
pub(crate) struct Definition {
    func: Func,
    name: String,
    /// `Some` for a view query (bodiless), `None` for a custom resolver.
    view: Option<View>,
    params: Vec<QueryParam>,
    shape: Shape,
    /// `T` of `Option<T>` / `Vec<T>` / `T`.
    item: Type,
    krate: Option<syn::Path>,
}

struct View {
    sql_source: String,
    database: String,
    data_column: String,
    order_by: Option<String>,
    limit: Option<u32>,
}

#[derive(Default)]
struct Configuration {
    /// Given, even if not valid (its error is reported on its own).
    sql_source_given: bool,
    sql_source: Option<(String, Span)>,
    database: Option<(String, Span)>,
    data_column: Option<(String, Span)>,
    order_by: Option<(String, Span)>,
    limit: Option<(u32, Span)>,
    name: Option<(String, Span)>,
    krate: Option<(syn::Path, Span)>,
}

/// `v_order` or `schema.v_order`.
fn check_source(lit: &syn::LitStr) -> syn::Result<String> {
    let v = lit.value();
    grammar::check_sql_source(&v).map_err(|why| {
        syn::Error::new_spanned(lit, format!("`#[query]`: `sql_source = \"{v}\"` is not a view name: {why}"))
    })?;
    Ok(v)
}

fn check_column(what: &str, lit: &syn::LitStr) -> syn::Result<String> {
    let v = lit.value();
    if !grammar::is_sql_identifier(&v) {
        return Err(syn::Error::new_spanned(
            lit,
            format!("`#[query]`: {what} `{v}` is not a column name: use letters, digits and `_` (not first)"),
        ));
    }
    Ok(v)
}

/// `created_at desc, id`: columns with an optional direction (whether they are columns
/// of the view is checked when the runtime starts).
fn check_order_by(lit: &syn::LitStr) -> syn::Result<String> {
    let v = lit.value();
    grammar::parse_order_by(&v)
        .map_err(|why| syn::Error::new_spanned(lit, format!("`#[query]`: `order_by = \"{v}\"`: {why}")))?;
    Ok(v)
}

impl Configuration {
    fn apply(&mut self, arg: Arg) -> syn::Result<()> {
        match arg {
            Arg::Positional(e) => Err(syn::Error::new_spanned(
                e,
                "`#[query]` takes only keys: `#[query(sql_source = \"v_order\", database = \"primary\")]`",
            )),
            Arg::Named { key, value } => match key.to_string().as_str() {
                "sql_source" => {
                    self.sql_source_given = true;
                    let v = check_source(&args::lit_str(M, "`sql_source`", &value)?)?;
                    args::set_once(&mut self.sql_source, M, &key, v)
                }
                "database" => {
                    let lit = args::lit_str(M, "`database`", &value)?;
                    let v = args::check_name(M, "database", &lit)?;
                    args::set_once(&mut self.database, M, &key, v)
                }
                "data_column" => {
                    let v = check_column("`data_column`", &args::lit_str(M, "`data_column`", &value)?)?;
                    args::set_once(&mut self.data_column, M, &key, v)
                }
                "order_by" => {
                    let v = check_order_by(&args::lit_str(M, "`order_by`", &value)?)?;
                    args::set_once(&mut self.order_by, M, &key, v)
                }
                "limit" => {
                    let v = args::lit_u32(M, "`limit`", &value)?;
                    if v == 0 {
                        return Err(syn::Error::new_spanned(value, "`#[query]`: `limit` must be at least 1"));
                    }
                    args::set_once(&mut self.limit, M, &key, v)
                }
                "name" => {
                    let lit = args::lit_str(M, "`name`", &value)?;
                    let v = lit.value();
                    if !grammar::is_graphql_name(&v) {
                        return Err(syn::Error::new_spanned(lit, format!("`#[query]`: `name = \"{v}\"` is not a GraphQL field name (letters, digits, `_`; not `__` first)")));
                    }
                    args::set_once(&mut self.name, M, &key, v)
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

/// The single type argument of `Wrapper<T>` when the last segment is `wrapper`.
fn unwrap(ty: &Type, wrapper: &str) -> Option<Type> {
    let Type::Path(tp) = ty else { return None };
    let last = tp.path.segments.last()?;
    if last.ident != wrapper {
        return None;
    }
    let PathArguments::AngleBracketed(ab) = &last.arguments else { return None };
    let mut it = ab.args.iter().filter_map(|a| if let GenericArgument::Type(t) = a { Some(t.clone()) } else { None });
    match (it.next(), it.next()) {
        (Some(t), None) => Some(t),
        _ => None,
    }
}

pub(crate) fn parse(attr: TokenStream, item: TokenStream) -> Result<Definition, (syn::Error, TokenStream)> {
    let func: Func = syn::parse2(item.clone()).map_err(|e| (e, item))?;
    let mut errs = Errors::default();
    let mut cfg = Configuration::default();
    args::apply_each(attr, &mut errs, |a| cfg.apply(a));
    func::check_common(M, &func, &mut errs);
    let bodiless = func.body.is_none();
    if bodiless && !cfg.sql_source_given {
        errs.push(syn::Error::new(
            func.sig.ident.span(),
            "a bodiless `#[query]` reads a view: add `sql_source = \"v_…\"` (or give the function a body to make it a custom resolver)",
        ));
    }
    if !bodiless {
        for (key, slot) in [
            ("sql_source", cfg.sql_source.as_ref().map(|s| s.1)),
            ("database", cfg.database.as_ref().map(|s| s.1)),
            ("data_column", cfg.data_column.as_ref().map(|s| s.1)),
            ("order_by", cfg.order_by.as_ref().map(|s| s.1)),
            ("limit", cfg.limit.as_ref().map(|s| s.1)),
        ] {
            if let Some(span) = slot {
                errs.push(syn::Error::new(
                    span,
                    format!("`#[query]`: `{key}` is for view queries, which have no body; this one has a body, so it is a custom resolver that reads what it likes"),
                ));
            }
        }
    }
    let mut params = Vec::new();
    for p in func::params(M, &func, &mut errs) {
        let column = p.name.to_string().trim_start_matches("r#").to_string();
        let optional = unwrap(&p.ty, "Option").is_some();
        let list = unwrap(&p.ty, "Vec").or_else(|| unwrap(&p.ty, "Option").and_then(|t| unwrap(&t, "Vec"))).is_some();
        let role = match (bodiless, column.as_str()) {
            (false, _) => Role::Input,
            (true, "limit") => Role::Limit,
            (true, "offset") => Role::Offset,
            (true, "order_by") => Role::OrderBy,
            (true, _) => Role::Filter,
        };
        if !grammar::is_sql_identifier(&column) {
            errs.push(syn::Error::new_spanned(
                &p.name,
                format!("`#[query]`: `{column}` cannot name a column: use ASCII letters, digits and `_`"),
            ));
        }
        // Owned: calls by name (GraphQL, `rt.query`) deserialise the arguments.
        if let Err(e) = func::check_owned_because(
            M,
            "query arguments",
            "calls by name, such as GraphQL's, deserialise them from JSON",
            &p.ty,
        ) {
            errs.push(e);
        }
        params.push(QueryParam { param: p, column, role, optional, list });
    }
    let shape_item = match func::result_inner(M, &func) {
        Ok(inner) => {
            let (shape, item) = if let Some(t) = unwrap(&inner, "Option") {
                (Shape::Optional, t)
            } else if let Some(t) = unwrap(&inner, "Vec") {
                (Shape::Many, t)
            } else {
                (Shape::One, inner)
            };
            match &item {
                Type::Tuple(t) if t.elems.is_empty() => {
                    errs.push(syn::Error::new_spanned(&item, "`#[query]` functions return data: `Result<T>`, `Result<Option<T>>` or `Result<Vec<T>>` of a struct"));
                    None
                }
                Type::Reference(_) | Type::ImplTrait(_) | Type::TraitObject(_) => {
                    errs.push(syn::Error::new_spanned(
                        &item,
                        "`#[query]` functions return owned data (a struct that derives `Deserialize` and `Serialize`)",
                    ));
                    None
                }
                _ => Some((shape, item)),
            }
        }
        Err(e) => {
            errs.push(e);
            None
        }
    };
    let best = func.to_tokens_best_effort();
    if let Err(e) = errs.finish() {
        return Err((e, best));
    }
    let (shape, item) = shape_item.unwrap();
    let view = cfg.sql_source.map(|(sql_source, _)| View {
        sql_source,
        database: cfg.database.map(|d| d.0).unwrap_or_else(|| grammar::DEFAULT_DATABASE.into()),
        data_column: cfg.data_column.map(|d| d.0).unwrap_or_else(|| grammar::DEFAULT_DATA_COLUMN.into()),
        order_by: cfg.order_by.map(|o| o.0),
        limit: cfg.limit.map(|l| l.0),
    });
    Ok(Definition {
        name: cfg.name.map(|n| n.0).unwrap_or_else(|| func.sig.ident.to_string().trim_start_matches("r#").to_string()),
        view,
        params,
        shape,
        item,
        krate: cfg.krate.map(|k| k.0),
        func,
    })
}

impl ToTokens for Definition {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let k = c::krate(self.krate.as_ref());
        let p = quote!(#k::__private);
        let ident = &self.func.sig.ident;
        let function = ident.to_string();
        let name = &self.name;
        let reg = format_ident!("__FRAISEQL_QUERY_{}", function.trim_start_matches("r#"), span = ident.span());
        let item = &self.item;
        let location = c::location(&k, ident.span());
        let doc = match c::doc(&self.func.attrs) {
            Some(d) => quote!(::core::option::Option::Some(#d)),
            None => quote!(::core::option::Option::None),
        };
        let output_type = c::type_probe(&p, item);

        let arg_defs = self.params.iter().map(|q| {
            let column = &q.column;
            let optional = q.optional;
            let list = q.list;
            let ty = &q.param.ty;
            let type_name = q.param.ty_string();
            let (role, kind) = match q.role {
                Role::Filter => (quote!(Filter), quote_spanned!(ty.span()=> <#ty as #p::FilterArg>::KIND)),
                Role::Input => (quote!(Input), quote_spanned!(ty.span()=> <#ty as #p::FilterArg>::KIND)),
                Role::Limit => (quote!(Limit), quote!(#p::ScalarKind::Int)),
                Role::Offset => (quote!(Offset), quote!(#p::ScalarKind::Int)),
                Role::OrderBy => (quote!(OrderBy), quote!(#p::ScalarKind::String)),
            };
            quote! {
                #p::QueryArgDef { name: #column, role: #p::ArgRole::#role, optional: #optional, list: #list, kind: #kind, type_name: #type_name }
            }
        });
        let returns = match self.shape {
            Shape::One => quote!(#p::Returns::One),
            Shape::Optional => quote!(#p::Returns::Optional),
            Shape::Many => quote!(#p::Returns::Many),
        };
        let view = match &self.view {
            Some(v) => {
                let (src, db, data) = (&v.sql_source, &v.database, &v.data_column);
                let order = match &v.order_by {
                    Some(o) => quote!(::core::option::Option::Some(#o)),
                    None => quote!(::core::option::Option::None),
                };
                let limit = match v.limit {
                    Some(l) => {
                        let l = l as u64;
                        quote!(::core::option::Option::Some(#l))
                    }
                    None => quote!(::core::option::Option::None),
                };
                quote!(::core::option::Option::Some(#p::ViewSource { sql_source: #src, database: #db, data_column: #data, order_by: #order, limit: #limit }))
            }
            None => quote!(::core::option::Option::None),
        };

        // The resolver: JSON arguments in, the function called, JSON out.
        let arg_reads = self.params.iter().map(|q| {
            let n = &q.param.name;
            let ty = &q.param.ty;
            let column = &q.column;
            let role = match q.role {
                Role::Filter | Role::Input => quote!(FilterArg),
                Role::Limit | Role::Offset => quote!(PageArg),
                Role::OrderBy => quote!(OrderArg),
            };
            quote_spanned!(ty.span()=> let #n: #ty = <#ty as #p::#role>::__read(#name, &__fraiseql_args, #column)?;)
        });
        let arg_names: Vec<_> = self.params.iter().map(|q| &q.param.name).collect();
        // A view query's rows are read into `T` (`ViewRow`); a resolver's only served (`QueryResult`).
        let role = if self.view.is_some() { quote!(ViewRow) } else { quote!(QueryResult) };
        let shape = match self.shape {
            Shape::One => quote!(__one),
            Shape::Optional => quote!(__optional),
            Shape::Many => quote!(__many),
        };
        let output = quote_spanned!(item.span()=> <#item as #p::#role>::#shape(&__result));

        // The body of a view query.
        let body = self.view.as_ref().map(|_| {
            let filters = self.params.iter().filter(|q| q.role == Role::Filter).map(|q| {
                let n = &q.param.name;
                let ty = &q.param.ty;
                let column = &q.column;
                let value = quote_spanned!(ty.span()=> <#ty as #p::FilterArg>::filter(&#n));
                quote!(if let ::core::option::Option::Some(v) = #value { __call.filters.push((#column, v)); })
            });
            let page = self.params.iter().filter(|q| matches!(q.role, Role::Limit | Role::Offset | Role::OrderBy)).map(|q| {
                let n = &q.param.name;
                let ty = &q.param.ty;
                match q.role {
                    Role::Limit => quote_spanned!(ty.span()=> __call.limit = <#ty as #p::PageArg>::page(&#n);),
                    Role::Offset => quote_spanned!(ty.span()=> __call.offset = <#ty as #p::PageArg>::page(&#n);),
                    _ => quote_spanned!(ty.span()=> __call.order_by = <#ty as #p::OrderArg>::order(&#n);),
                }
            });
            let decode = quote_spanned!(item.span()=> <#item as #p::ViewRow>::__decode(&#reg, __rows)?);
            let result = match self.shape {
                Shape::Many => quote!(::core::result::Result::Ok(#decode)),
                Shape::Optional => quote!(::core::result::Result::Ok(#decode.into_iter().next())),
                Shape::One => quote!(#decode.into_iter().next().ok_or_else(|| #k::Error::NotFound(::std::format!("query `{}`: no row", #name)))),
            };
            quote!({
                let mut __call = #p::ViewCall::default();
                #(#filters)*
                #(#page)*
                let __rows = #p::run_view(&#reg, __call).await?;
                #result
            })
        });
        let user_fn = match &body {
            Some(body) => {
                let func::Func { attrs, vis, sig, .. } = &self.func;
                quote!(#(#attrs)* #vis #sig #body)
            }
            None => self.func.to_tokens_best_effort(),
        };
        tokens.extend(quote! {
            #user_fn

            #[doc(hidden)]
            #[allow(non_upper_case_globals)]
            #[#p::linkme::distributed_slice(#p::FRAISEQL_QUERIES)]
            #[linkme(crate = #p::linkme)]
            static #reg: #p::QueryDef = #p::QueryDef {
                name: #name,
                function: #function,
                view: #view,
                args: &[#(#arg_defs),*],
                returns: #returns,
                output: #p::TypeInfo::of::<#item>,
                output_type: #output_type,
                resolve: {
                    fn resolve(__fraiseql_args: #p::Value) -> #p::BoxFuture<'static, #k::Result<#p::Value>> {
                        ::std::boxed::Box::pin(async move {
                            #(#arg_reads)*
                            let __result = #ident(#(#arg_names),*).await?;
                            #output
                        })
                    }
                    resolve
                },
                doc: #doc,
                location: #location,
            };
        });
    }
}
