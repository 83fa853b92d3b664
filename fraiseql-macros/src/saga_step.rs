//! `#[saga_step("name", database = "…", retries = N, timeout = "30s")]`

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;

use crate::common::args::{self, Arg, Errors};
use crate::common::func::{self, Func, Param};
use crate::common::{self as c};

const M: &str = "saga_step";
const KEYS: &[&str] = &["database", "retries", "timeout", "crate"];

/// What one `#[saga_step]` declares.
pub(crate) struct Definition {
    pub func: Func,
    /// The step's name, as listed in `#[saga(steps = [...])]`.
    pub name: String,
    pub name_span: Span,
    pub database: Option<String>,
    pub retries: Option<u32>,
    pub timeout_ms: Option<u64>,
    pub krate: Option<syn::Path>,
    /// `SagaContext<State>` as written.
    pub ctx_ty: syn::Type,
    /// Parameters after the context, injected by name.
    pub params: Vec<Param>,
    /// `T` of `Result<T>`.
    pub output: syn::Type,
}

#[derive(Default)]
struct Configuration {
    name: Option<(syn::LitStr, Span)>,
    database: Option<(String, Span)>,
    retries: Option<(u32, Span)>,
    timeout: Option<(u64, Span)>,
    krate: Option<(syn::Path, Span)>,
}

impl Configuration {
    fn apply(&mut self, arg: Arg) -> syn::Result<()> {
        match arg {
            Arg::Positional(e) => args::positional_once(&mut self.name, M, "step name", e),
            Arg::Named { key, value } => match key.to_string().as_str() {
                "database" => {
                    let lit = args::lit_str(M, "`database`", &value)?;
                    let v = args::check_name(M, "database", &lit)?;
                    args::set_once(&mut self.database, M, &key, v)
                }
                "retries" => {
                    let v = args::lit_u32(M, "`retries`", &value)?;
                    args::set_once(&mut self.retries, M, &key, v)
                }
                "timeout" => {
                    let v = args::duration_ms(M, &value)?;
                    args::set_once(&mut self.timeout, M, &key, v)
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

pub(crate) fn parse(attr: TokenStream, item: TokenStream) -> Result<Definition, (syn::Error, TokenStream)> {
    let func: Func = syn::parse2(item.clone()).map_err(|e| (e, item))?;
    let mut errs = Errors::default();
    let mut cfg = Configuration::default();
    args::apply_each(attr, &mut errs, |a| cfg.apply(a));
    let name = match &cfg.name {
        Some((lit, _)) => errs.check(args::check_name(M, "step name", lit)),
        None => {
            errs.push(syn::Error::new(
                Span::call_site(),
                "`#[saga_step]` expects the step's name first: `#[saga_step(\"create_order\", database = \"primary\")]`",
            ));
            None
        }
    };
    func::check_common(M, &func, &mut errs);
    if let Some(b) = func.semi.as_ref().filter(|_| func.body.is_none()) {
        errs.push(syn::Error::new_spanned(b, "`#[saga_step]` expects a function with a body"));
    }
    let ctx = errs.check(func::ctx_param(M, &func));
    let mut params = func::params(M, &func, &mut errs);
    if ctx.is_some() && !params.is_empty() {
        params.remove(0);
    } else {
        // A misplaced or mistyped context is already reported; not again as a parameter.
        params.retain(|p| !func::mentions_ctx(&p.ty));
    }
    for p in &params {
        errs.check(func::check_owned(M, "injected parameters", &p.ty));
    }
    let output = errs.check(func::result_inner(M, &func));
    if let Some(o) = &output {
        errs.check(func::check_owned(M, "the step's result", o));
    }
    let best = func.to_tokens_best_effort();
    if let Err(e) = errs.finish() {
        return Err((e, best));
    }
    let (name, ctx, output) = (name.unwrap(), ctx.unwrap(), output.unwrap());
    Ok(Definition {
        name_span: cfg.name.as_ref().map(|n| n.1).unwrap_or_else(Span::call_site),
        name,
        database: cfg.database.map(|d| d.0),
        retries: cfg.retries.map(|r| r.0),
        timeout_ms: cfg.timeout.map(|t| t.0),
        krate: cfg.krate.map(|k| k.0),
        ctx_ty: ctx.ty,
        params,
        output,
        func,
    })
}

impl ToTokens for Definition {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let k = c::krate(self.krate.as_ref());
        let user_fn = self.func.to_tokens_best_effort();
        let guard = c::duplicate_guard("STEP", &self.name, self.name_span);
        let invoke = invoke_fn(&k, &self.func.sig.ident, &self.ctx_ty, &self.params, &self.output);
        let name = &self.name;
        let function = self.func.sig.ident.to_string();
        let database = opt_str(self.database.as_deref());
        let retries = opt(self.retries);
        let timeout_ms = opt(self.timeout_ms);
        let params = param_defs(&k, &self.params);
        let ctx_ty = &self.ctx_ty;
        let output = &self.output;
        let location = c::location(&k, self.func.sig.ident.span());
        let state_info = state_role(&k, ctx_ty, quote!(::INFO));
        tokens.extend(quote! {
            #user_fn
            #guard
            const _: () = {
                #invoke
                #[#k::__private::linkme::distributed_slice(#k::__private::FRAISEQL_STEPS)]
                #[linkme(crate = #k::__private::linkme)]
                static REGISTRATION: #k::__private::StepDef = #k::__private::StepDef {
                    name: #name,
                    function: #function,
                    database: #database,
                    retries: #retries,
                    timeout_ms: #timeout_ms,
                    params: #params,
                    state: #state_info,
                    output: #k::__private::TypeInfo::of::<#output>,
                    invoke,
                    location: #location,
                };
            };
        });
    }
}

/// `<State as SagaState>` for the state of `SagaContext<State>`, every token spanned on
/// the user's `State`: a state that cannot be stored is reported there, once, by the
/// role's message (the same tokens everywhere, so the compiler reports it once).
pub(crate) fn state_role(k: &TokenStream, ctx_ty: &syn::Type, item: TokenStream) -> TokenStream {
    let role = quote!(<<#ctx_ty as #k::__private::ContextType>::State as #k::__private::SagaState>#item);
    c::respan(&role, func::state_span(ctx_ty))
}

pub(crate) fn opt<T: ToTokens>(v: Option<T>) -> TokenStream {
    match v {
        Some(v) => quote!(::core::option::Option::Some(#v)),
        None => quote!(::core::option::Option::None),
    }
}

pub(crate) fn opt_str(v: Option<&str>) -> TokenStream {
    opt(v)
}

pub(crate) fn param_defs(k: &TokenStream, params: &[Param]) -> TokenStream {
    let items = params.iter().map(|p| {
        let name = p.name.to_string();
        let ty = &p.ty;
        let ty_name = p.ty_string();
        quote!(#k::__private::ParamDef { name: #name, type_name: #ty_name, type_id: #k::__private::TypeInfo::of::<#ty> })
    });
    quote!(&[#(#items),*])
}

/// The type-erased entry point the runtime calls: takes the injected arguments out of
/// the invocation, builds the typed context, calls the user's function, and hands the
/// context (state, transaction) back. Conversions are spanned on the user's types, so a
/// type that is not `Deserialize`/`Serialize` is reported on the user's code.
pub(crate) fn invoke_fn(
    k: &TokenStream,
    user_fn: &syn::Ident,
    ctx_ty: &syn::Type,
    params: &[Param],
    output: &syn::Type,
) -> TokenStream {
    let lets = params.iter().map(|p| {
        let name = &p.name;
        let ty = &p.ty;
        let name_str = name.to_string();
        quote_spanned!(ty.span()=> let #name: #ty = <#ty as #k::__private::StepParam>::__inject(invocation, #name_str)?;)
    });
    let names = params.iter().map(|p| &p.name);
    let out = quote_spanned!(output.span()=> <#output as #k::__private::StepResult>::__output(result));
    let enter = state_role(k, ctx_ty, quote!(::__enter));
    let exit = state_role(k, ctx_ty, quote!(::__exit));
    quote! {
        fn invoke(
            invocation: &mut #k::__private::StepInvocation,
        ) -> #k::__private::BoxFuture<'_, #k::Result<#k::__private::Value>> {
            ::std::boxed::Box::pin(async move {
                #(#lets)*
                let mut ctx: #ctx_ty = #enter(invocation)?;
                let result = #user_fn(&mut ctx, #(#names),*).await;
                #exit(ctx, invocation, result.is_ok())?;
                #out
            })
        }
    }
}
