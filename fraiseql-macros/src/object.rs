//! `#[derive(fraiseql::Object)]`: describes a struct to the GraphQL schema, its fields
//! named as serde names them in JSON (`#[serde(rename)]`, `#[serde(rename_all)]`,
//! `#[serde(skip)]` are followed), so the schema, the view's `data` and the Rust type
//! agree. Options: `#[fraiseql(name = "…", crate = path)]`.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{Attribute, Data, DeriveInput, Expr, Fields, LitStr};

use crate::common::{self as c, doc};
use crate::grammar::{is_graphql_name, RenameRule};

/// `rename = "…"`, `rename_all = "…"`, `skip`… from `#[serde(…)]` attributes.
#[derive(Default)]
struct Serde {
    rename: Option<String>,
    rename_all: Option<(String, Span)>,
    skip: bool,
}

fn serde_attrs(attrs: &[Attribute]) -> syn::Result<Serde> {
    let mut s = Serde::default();
    for a in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        a.parse_nested_meta(|m| {
            if m.path.is_ident("rename") || m.path.is_ident("rename_all") {
                let is_all = m.path.is_ident("rename_all");
                // `rename = "x"` or `rename(serialize = "x", …)`: the serialised name counts.
                if m.input.peek(syn::Token![=]) {
                    let v: LitStr = m.value()?.parse()?;
                    if is_all {
                        s.rename_all = Some((v.value(), v.span()));
                    } else {
                        s.rename = Some(v.value());
                    }
                } else {
                    m.parse_nested_meta(|inner| {
                        let v: LitStr = inner.value()?.parse()?;
                        if inner.path.is_ident("serialize") {
                            if is_all {
                                s.rename_all = Some((v.value(), v.span()));
                            } else {
                                s.rename = Some(v.value());
                            }
                        }
                        Ok(())
                    })?;
                }
            } else if m.path.is_ident("skip") || m.path.is_ident("skip_serializing") {
                s.skip = true;
            } else if m.input.peek(syn::Token![=]) {
                let _: Expr = m.value()?.parse()?;
            } else if m.input.peek(syn::token::Paren) {
                let _content;
                syn::parenthesized!(_content in m.input);
                let _: TokenStream = _content.parse()?;
            }
            Ok(())
        })?;
    }
    Ok(s)
}

/// The JSON name serde gives field `name` under `rename_all = "rule"` (serde's own rule,
/// from the grammar, so the schema and serde cannot disagree).
fn rename_all(rule: &str, name: &str, span: Span) -> syn::Result<String> {
    let r = RenameRule::parse(rule).map_err(|why| syn::Error::new(span, format!("`#[derive(Object)]`: {why}")))?;
    if matches!(r, RenameRule::Kebab | RenameRule::ScreamingKebab) {
        return Err(syn::Error::new(
            span,
            format!("`#[derive(Object)]`: `rename_all = \"{rule}\"` makes names GraphQL does not accept; use camelCase, snake_case, PascalCase, lowercase, UPPERCASE or SCREAMING_SNAKE_CASE"),
        ));
    }
    Ok(r.apply_to_field(name))
}

pub(crate) fn derive(input: TokenStream) -> TokenStream {
    match expand(input) {
        Ok(t) => t,
        Err(e) => e.to_compile_error(),
    }
}

fn expand(input: TokenStream) -> syn::Result<TokenStream> {
    let input: DeriveInput = syn::parse2(input)?;
    let mut name = input.ident.to_string();
    let mut krate: Option<syn::Path> = None;
    for a in input.attrs.iter().filter(|a| a.path().is_ident("fraiseql")) {
        a.parse_nested_meta(|m| {
            if m.path.is_ident("name") {
                let v: LitStr = m.value()?.parse()?;
                if !is_graphql_name(&v.value()) {
                    return Err(syn::Error::new_spanned(
                        &v,
                        "`#[fraiseql(name)]` must be a GraphQL name: letters, digits and `_`, not `__` first",
                    ));
                }
                name = v.value();
            } else if m.path.is_ident("crate") {
                let v: syn::Path = m.value()?.parse()?;
                krate = Some(v);
            } else {
                return Err(
                    m.error("`#[derive(Object)]` knows `#[fraiseql(name = \"…\")]` and `#[fraiseql(crate = path)]`")
                );
            }
            Ok(())
        })?;
    }
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &input.generics,
            "`#[derive(Object)]` describes one concrete type; it cannot be generic",
        ));
    }
    let fields = match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(f) => f.named.iter().collect::<Vec<_>>(),
            _ => {
                return Err(syn::Error::new(input.ident.span(), "`#[derive(Object)]` needs a struct with named fields"))
            }
        },
        _ => {
            return Err(syn::Error::new(
                input.ident.span(),
                "`#[derive(Object)]` needs a struct with named fields (enums and unions are not objects)",
            ))
        }
    };
    let container = serde_attrs(&input.attrs)?;
    let k = c::krate(krate.as_ref());
    let p = quote!(#k::__private);
    let mut descs = Vec::new();
    for f in fields {
        let s = serde_attrs(&f.attrs)?;
        if s.skip {
            continue;
        }
        let ident = f.ident.as_ref().expect("named");
        let rust = ident.to_string().trim_start_matches("r#").to_string();
        let json = match (&s.rename, &container.rename_all) {
            (Some(r), _) => r.clone(),
            (None, Some((rule, span))) => rename_all(rule, &rust, *span)?,
            (None, None) => rust,
        };
        if !is_graphql_name(&json) {
            return Err(syn::Error::new_spanned(
                ident,
                format!("`#[derive(Object)]`: the field's JSON name `{json}` is not a GraphQL name"),
            ));
        }
        let ty = &f.ty;
        let fdoc = match doc(&f.attrs) {
            Some(d) => quote!(::core::option::Option::Some(#d)),
            None => quote!(::core::option::Option::None),
        };
        let probe = c::type_probe(&p, ty);
        descs.push(quote!(#p::FieldDesc { name: #json, doc: #fdoc, ty: #probe }));
    }
    let ident = &input.ident;
    let odoc = match doc(&input.attrs) {
        Some(d) => quote!(::core::option::Option::Some(#d)),
        None => quote!(::core::option::Option::None),
    };
    Ok(quote! {
        impl #k::Describe for #ident {
            fn type_ref() -> #p::TypeRef {
                static DESC: #p::ObjectDesc = #p::ObjectDesc { name: #name, doc: #odoc, fields: &[#(#descs),*] };
                #p::TypeRef::Object(&DESC)
            }
        }
    })
}
