//! The annotated function: parsed whether or not it has a body, and checked for the
//! shapes every FraiseQL macro needs (async, no generics, no receiver, named
//! parameters, a `Result<T>` return type).

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{
    Attribute, Block, FnArg, GenericArgument, Ident, Pat, PathArguments, ReturnType, Signature, Token, Type, Visibility,
};

pub(crate) struct Func {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub sig: Signature,
    pub body: Option<Box<Block>>,
    pub semi: Option<Token![;]>,
}

impl Parse for Func {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let sig: Signature = input.parse()?;
        if input.peek(Token![;]) {
            let semi = input.parse()?;
            return Ok(Func { attrs, vis, sig, body: None, semi: Some(semi) });
        }
        let body: Block = input.parse()?;
        Ok(Func { attrs, vis, sig, body: Some(Box::new(body)), semi: None })
    }
}

impl Func {
    /// The function as the user wrote it; a bodiless one gets a body that never runs
    /// so that, next to a `compile_error!`, the rest of the crate still type-checks.
    pub(crate) fn to_tokens_best_effort(&self) -> TokenStream {
        let Func { attrs, vis, sig, body, .. } = self;
        match body {
            Some(b) => quote!(#(#attrs)* #vis #sig #b),
            None => quote!(#(#attrs)* #[allow(unused_variables)] #vis #sig { ::core::unimplemented!() }),
        }
    }
}

/// A parameter `name: Type`.
pub(crate) struct Param {
    pub name: Ident,
    pub ty: Type,
}

impl Param {
    pub(crate) fn ty_string(&self) -> String {
        type_string(&self.ty)
    }
}

pub(crate) fn type_string(ty: &Type) -> String {
    // `quote` puts spaces between every token; squeeze the ones a reader would not write.
    let s = ty.to_token_stream().to_string();
    s.replace(" < ", "<")
        .replace(" <", "<")
        .replace("< ", "<")
        .replace(" >", ">")
        .replace(" ,", ",")
        .replace(" :: ", "::")
        .replace("& ", "&")
}

pub(crate) fn check_common(m: &str, f: &Func, errs: &mut super::args::Errors) {
    if f.sig.asyncness.is_none() {
        errs.push(syn::Error::new_spanned(f.sig.fn_token, format!("`#[{m}]` expects an async fn")));
    }
    if !f.sig.generics.params.is_empty() || f.sig.generics.where_clause.is_some() {
        errs.push(syn::Error::new_spanned(
            &f.sig.generics,
            format!("`#[{m}]` functions cannot be generic: the runtime calls them through a registration made once per function"),
        ));
    }
    if let Some(c) = &f.sig.constness {
        errs.push(syn::Error::new_spanned(c, format!("`#[{m}]` functions cannot be `const`")));
    }
    if let Some(v) = &f.sig.variadic {
        errs.push(syn::Error::new_spanned(v, format!("`#[{m}]` functions cannot be variadic")));
    }
    for input in &f.sig.inputs {
        if let FnArg::Receiver(r) = input {
            errs.push(syn::Error::new_spanned(
                r,
                format!("`#[{m}]` expects a free function, not a method: remove `self`"),
            ));
        }
    }
}

/// All typed parameters, each required to be a plain `name: Type`.
pub(crate) fn params(m: &str, f: &Func, errs: &mut super::args::Errors) -> Vec<Param> {
    let mut out = Vec::new();
    for input in &f.sig.inputs {
        let FnArg::Typed(pt) = input else { continue };
        match &*pt.pat {
            Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => {
                out.push(Param { name: pi.ident.clone(), ty: (*pt.ty).clone() });
            }
            other => errs.push(syn::Error::new_spanned(
                other,
                format!("`#[{m}]` parameters are matched by name: write `name: Type`, not a pattern"),
            )),
        }
    }
    out
}

/// `-> Result<T>` (any path ending in `Result`, e.g. `fraiseql::Result<T>`): returns `T`.
pub(crate) fn result_inner(m: &str, f: &Func) -> syn::Result<Type> {
    let bad = |span: proc_macro2::Span| {
        syn::Error::new(span, format!("`#[{m}]` functions must return `fraiseql::Result<T>`"))
    };
    let ty = match &f.sig.output {
        ReturnType::Default => return Err(bad(f.sig.paren_token.span.close())),
        ReturnType::Type(_, ty) => ty,
    };
    let Type::Path(tp) = &**ty else { return Err(bad(ty.span())) };
    let Some(last) = tp.path.segments.last() else { return Err(bad(ty.span())) };
    if last.ident != "Result" {
        return Err(bad(ty.span()));
    }
    let PathArguments::AngleBracketed(ab) = &last.arguments else { return Err(bad(ty.span())) };
    let mut types = ab.args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    });
    match (types.next(), types.next()) {
        (Some(t), None) => Ok(t),
        _ => Err(bad(ty.span())),
    }
}

/// Values that cross the saga log must be owned (they are deserialised back).
pub(crate) fn check_owned(m: &str, what: &str, ty: &Type) -> syn::Result<()> {
    check_owned_because(m, what, "it is stored in the saga log as JSON", ty)
}

/// Like [`check_owned`], saying why.
pub(crate) fn check_owned_because(m: &str, what: &str, why: &str, ty: &Type) -> syn::Result<()> {
    fn has_ref(ty: &Type) -> Option<&Type> {
        match ty {
            Type::Reference(_) => Some(ty),
            Type::Path(tp) => tp.path.segments.iter().find_map(|s| match &s.arguments {
                PathArguments::AngleBracketed(ab) => ab.args.iter().find_map(|a| match a {
                    GenericArgument::Type(t) => has_ref(t),
                    GenericArgument::Lifetime(_) => Some(ty),
                    _ => None,
                }),
                _ => None,
            }),
            Type::Tuple(t) => t.elems.iter().find_map(has_ref),
            Type::Array(a) => has_ref(&a.elem),
            Type::Slice(_) | Type::TraitObject(_) | Type::ImplTrait(_) | Type::Ptr(_) | Type::BareFn(_) => Some(ty),
            _ => None,
        }
    }
    match has_ref(ty) {
        Some(t) => Err(syn::Error::new_spanned(
            t,
            format!("`#[{m}]`: {what} must be an owned, sized type ({why}); use e.g. `String` instead of `&str`"),
        )),
        None => Ok(()),
    }
}

/// Where to report a state type that cannot be stored: on `State` of
/// `SagaContext<State>`, or on the context type when it has no parameter.
pub(crate) fn state_span(ctx_ty: &Type) -> proc_macro2::Span {
    if let Type::Path(tp) = ctx_ty {
        if let Some(PathArguments::AngleBracketed(ab)) = tp.path.segments.last().map(|s| &s.arguments) {
            if let Some(GenericArgument::Type(state)) = ab.args.first() {
                return state.span();
            }
        }
    }
    ctx_ty.span()
}

/// Whether a parameter's type names `SagaContext` (however it is taken).
pub(crate) fn mentions_ctx(ty: &Type) -> bool {
    ty.to_token_stream().to_string().contains("SagaContext")
}

/// The saga context parameter: `ctx: &mut SagaContext<State>` first.
pub(crate) struct CtxParam {
    /// `SagaContext<State>` as the user wrote it (without `&mut`).
    pub ty: Type,
}

pub(crate) fn ctx_param(m: &str, f: &Func) -> syn::Result<CtxParam> {
    let is_ctx = |ty: &Type| -> Option<Type> {
        if let Type::Reference(r) = ty {
            if let Type::Path(tp) = &*r.elem {
                if tp.path.segments.last().is_some_and(|s| s.ident == "SagaContext") {
                    return Some((*r.elem).clone());
                }
            }
        }
        None
    };
    let typed: Vec<&syn::PatType> = f
        .sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            FnArg::Typed(pt) => Some(pt),
            _ => None,
        })
        .collect();
    let Some(first) = typed.first() else {
        return Err(syn::Error::new(
            f.sig.paren_token.span.join(),
            format!("`#[{m}]` expects the saga context as the first parameter: `ctx: &mut SagaContext<State>`"),
        ));
    };
    if let Some(ty) = is_ctx(&first.ty) {
        if let Type::Reference(r) = &*first.ty {
            if r.mutability.is_none() {
                return Err(syn::Error::new_spanned(
                    &first.ty,
                    format!("`#[{m}]`: the saga context must be taken as `&mut SagaContext<State>`"),
                ));
            }
        }
        if let Some(later) = typed.iter().skip(1).find(|p| mentions_ctx(&p.ty)) {
            return Err(syn::Error::new_spanned(
                &later.ty,
                format!("`#[{m}]`: only one saga context parameter is allowed"),
            ));
        }
        return Ok(CtxParam { ty });
    }
    if let Some(later) = typed.iter().skip(1).find(|p| mentions_ctx(&p.ty)) {
        return Err(syn::Error::new_spanned(
            &later.ty,
            format!("`#[{m}]`: the saga context must be the first parameter"),
        ));
    }
    if mentions_ctx(&first.ty) {
        return Err(syn::Error::new_spanned(
            &first.ty,
            format!("`#[{m}]`: the saga context must be taken as `&mut SagaContext<State>`"),
        ));
    }
    Err(syn::Error::new_spanned(
        &first.ty,
        format!("`#[{m}]` expects the saga context as the first parameter: `ctx: &mut SagaContext<State>`"),
    ))
}
