//! `#[compensate("step_name", retries = N, timeout = "30s")]`

use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};

use crate::common::args::{self, Arg, Errors};
use crate::common::func::{self, Func, Param};
use crate::common::{self as c};
use crate::saga_step::{invoke_fn, opt, param_defs, state_role};

const M: &str = "compensate";
const KEYS: &[&str] = &["retries", "timeout", "crate"];

/// What one `#[compensate]` declares: the undo of one step.
pub(crate) struct Definition {
    pub func: Func,
    /// The step this compensates.
    pub step: String,
    pub step_span: Span,
    pub retries: Option<u32>,
    pub timeout_ms: Option<u64>,
    pub krate: Option<syn::Path>,
    pub ctx_ty: syn::Type,
    pub params: Vec<Param>,
}

#[derive(Default)]
struct Configuration {
    step: Option<(syn::LitStr, Span)>,
    retries: Option<(u32, Span)>,
    timeout: Option<(u64, Span)>,
    krate: Option<(syn::Path, Span)>,
}

impl Configuration {
    fn apply(&mut self, arg: Arg) -> syn::Result<()> {
        match arg {
            Arg::Positional(e) => args::positional_once(&mut self.step, M, "step name", e),
            Arg::Named { key, value } => match key.to_string().as_str() {
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
    let step = match &cfg.step {
        Some((lit, _)) => errs.check(args::check_name(M, "step name", lit)),
        None => {
            errs.push(syn::Error::new(
                Span::call_site(),
                "`#[compensate]` expects the name of the step it undoes: `#[compensate(\"create_order\")]`",
            ));
            None
        }
    };
    func::check_common(M, &func, &mut errs);
    if let Some(b) = func.semi.as_ref().filter(|_| func.body.is_none()) {
        errs.push(syn::Error::new_spanned(b, "`#[compensate]` expects a function with a body"));
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
    match func::result_inner(M, &func) {
        Ok(syn::Type::Tuple(t)) if t.elems.is_empty() => {}
        Ok(other) => {
            errs.push(syn::Error::new_spanned(other, "`#[compensate]` functions must return `fraiseql::Result<()>`"))
        }
        Err(_) => errs.push(syn::Error::new_spanned(
            match &func.sig.output {
                syn::ReturnType::Type(_, t) => t.to_token_stream(),
                syn::ReturnType::Default => func.sig.ident.to_token_stream(),
            },
            "`#[compensate]` functions must return `fraiseql::Result<()>`",
        )),
    }
    let best = func.to_tokens_best_effort();
    if let Err(e) = errs.finish() {
        return Err((e, best));
    }
    Ok(Definition {
        step_span: cfg.step.as_ref().map(|s| s.1).unwrap_or_else(Span::call_site),
        step: step.unwrap(),
        retries: cfg.retries.map(|r| r.0),
        timeout_ms: cfg.timeout.map(|t| t.0),
        krate: cfg.krate.map(|k| k.0),
        ctx_ty: ctx.unwrap().ty,
        params,
        func,
    })
}

impl ToTokens for Definition {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let k = c::krate(self.krate.as_ref());
        let user_fn = self.func.to_tokens_best_effort();
        let guard = c::duplicate_guard("COMPENSATE", &self.step, self.step_span);
        let unit: syn::Type = syn::parse_quote!(());
        let invoke = invoke_fn(&k, &self.func.sig.ident, &self.ctx_ty, &self.params, &unit);
        let step = &self.step;
        let function = self.func.sig.ident.to_string();
        let retries = opt(self.retries);
        let timeout_ms = opt(self.timeout_ms);
        let params = param_defs(&k, &self.params);
        let ctx_ty = &self.ctx_ty;
        let location = c::location(&k, self.func.sig.ident.span());
        let state_info = state_role(&k, ctx_ty, quote!(::INFO));
        tokens.extend(quote! {
            #user_fn
            #guard
            const _: () = {
                #invoke
                #[#k::__private::linkme::distributed_slice(#k::__private::FRAISEQL_COMPENSATIONS)]
                #[linkme(crate = #k::__private::linkme)]
                static REGISTRATION: #k::__private::CompensateDef = #k::__private::CompensateDef {
                    step: #step,
                    function: #function,
                    retries: #retries,
                    timeout_ms: #timeout_ms,
                    params: #params,
                    state: #state_info,
                    invoke,
                    location: #location,
                };
            };
        });
    }
}
