//! `#[saga(steps = ["a", "b"], state = State, result = "a", name = "…", recovery = "forward")]`
//! on a bodiless `async fn`: the macro writes the body, which runs the saga.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;

use crate::common::args::{self, Arg, Errors};
use crate::common::func::{self, Func, Param};
use crate::common::{self as c};
use crate::grammar::RecoveryPolicy;
use crate::saga_step::{opt, param_defs};

const M: &str = "saga";
const KEYS: &[&str] = &["steps", "state", "result", "name", "recovery", "crate"];

/// What one `#[saga]` declares.
pub(crate) struct Definition {
    pub func: Func,
    /// Registered name (the function's name unless `name = "…"`).
    pub name: String,
    pub name_span: Span,
    /// Step names, in order.
    pub steps: Vec<String>,
    /// State type shared by the steps (`()` when there is none).
    pub state: syn::Type,
    /// The step whose value the saga returns (the last one by default).
    pub result_step: Option<String>,
    /// `None` means the configured default.
    pub recovery: Option<RecoveryPolicy>,
    pub krate: Option<syn::Path>,
    pub params: Vec<Param>,
    pub output: syn::Type,
}

#[derive(Default)]
struct Configuration {
    steps: Option<(Vec<syn::LitStr>, Span)>,
    state: Option<(syn::Type, Span)>,
    result: Option<(syn::LitStr, Span)>,
    name: Option<(syn::LitStr, Span)>,
    recovery: Option<(RecoveryPolicy, Span)>,
    krate: Option<(syn::Path, Span)>,
}

impl Configuration {
    fn apply(&mut self, arg: Arg) -> syn::Result<()> {
        let (key, value) = match arg {
            Arg::Positional(e) => {
                return Err(syn::Error::new_spanned(
                    e,
                    "`#[saga]` arguments are `key = value`, e.g. `#[saga(steps = [\"create_order\", \"charge\"])]`",
                ))
            }
            Arg::Named { key, value } => (key, value),
        };
        match key.to_string().as_str() {
            "steps" => {
                let syn::Expr::Array(arr) = &value else {
                    return Err(syn::Error::new_spanned(
                        &value,
                        "`#[saga]`: `steps` must be an array of string literals, e.g. `steps = [\"create_order\", \"charge\"]`",
                    ));
                };
                if arr.elems.is_empty() {
                    return Err(syn::Error::new_spanned(arr, "`#[saga]`: `steps` must name at least one step"));
                }
                let mut lits: Vec<syn::LitStr> = Vec::new();
                let mut errs = Errors::default();
                for e in &arr.elems {
                    if let Some(lit) = errs.check(args::lit_str(M, "each step in `steps`", e)) {
                        if errs.check(args::check_name(M, "step name", &lit)).is_some() {
                            if lits.iter().any(|l| l.value() == lit.value()) {
                                errs.push(syn::Error::new_spanned(
                                    &lit,
                                    format!("`#[saga]`: step `{}` is listed twice in `steps`", lit.value()),
                                ));
                            }
                            lits.push(lit);
                        }
                    }
                }
                errs.finish()?;
                args::set_once(&mut self.steps, M, &key, lits)
            }
            "state" => {
                let ty: syn::Type = match &value {
                    syn::Expr::Path(p) => {
                        syn::Type::Path(syn::TypePath { qself: p.qself.clone(), path: p.path.clone() })
                    }
                    syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => s.parse()?,
                    other => {
                        return Err(syn::Error::new_spanned(
                            other,
                            "`#[saga]`: `state` must be a type, e.g. `state = OrderSaga`",
                        ))
                    }
                };
                args::set_once(&mut self.state, M, &key, ty)
            }
            "result" => {
                let lit = args::lit_str(M, "`result`", &value)?;
                args::set_once(&mut self.result, M, &key, lit)
            }
            "name" => {
                let lit = args::lit_str(M, "`name`", &value)?;
                args::check_name(M, "saga name", &lit)?;
                args::set_once(&mut self.name, M, &key, lit)
            }
            "recovery" => {
                let lit = args::lit_str(M, "`recovery`", &value)?;
                let v = RecoveryPolicy::parse(&lit.value())
                    .map_err(|why| syn::Error::new_spanned(&lit, format!("`#[saga]`: {why}")))?;
                args::set_once(&mut self.recovery, M, &key, v)
            }
            "crate" => {
                let p = c::parse_crate_path(M, &value)?;
                args::set_once(&mut self.krate, M, &key, p)
            }
            _ => Err(args::unknown_key(M, &key, KEYS)),
        }
    }
}

pub(crate) fn parse(attr: TokenStream, item: TokenStream) -> Result<Definition, (syn::Error, TokenStream)> {
    let func: Func = syn::parse2(item.clone()).map_err(|e| (e, item))?;
    let mut errs = Errors::default();
    let mut cfg = Configuration::default();
    // A `steps = …` that was given but rejected is reported where it is, not again as missing.
    let mut steps_given = false;
    args::apply_each(attr, &mut errs, |a| {
        steps_given |= matches!(&a, Arg::Named { key, .. } if key == "steps");
        cfg.apply(a)
    });
    if cfg.steps.is_none() && !steps_given {
        errs.push(syn::Error::new(
            Span::call_site(),
            "`#[saga]` expects its steps: `#[saga(steps = [\"create_order\", \"charge\"])]`",
        ));
    }
    if let (Some((res, _)), Some((steps, _))) = (&cfg.result, &cfg.steps) {
        if !steps.iter().any(|s| s.value() == res.value()) {
            errs.push(syn::Error::new_spanned(
                res,
                format!("`#[saga]`: `result` names step `{}`, which is not in `steps`", res.value()),
            ));
        }
    }
    func::check_common(M, &func, &mut errs);
    if let Some(body) = &func.body {
        errs.push(syn::Error::new(
            body.brace_token.span.join(),
            "`#[saga]` expects a bodiless fn (`async fn f(..) -> fraiseql::Result<T>;`): the macro writes the body, which runs the steps",
        ));
    }
    let params = func::params(M, &func, &mut errs);
    for p in &params {
        errs.check(func::check_owned(M, "saga parameters", &p.ty));
    }
    let output = errs.check(func::result_inner(M, &func));
    let best = func.to_tokens_best_effort();
    if let Err(e) = errs.finish() {
        return Err((e, best));
    }
    let name_span = cfg.name.as_ref().map(|n| n.0.span()).unwrap_or(func.sig.ident.span());
    Ok(Definition {
        name: cfg.name.map(|n| n.0.value()).unwrap_or_else(|| func.sig.ident.to_string()),
        name_span,
        steps: cfg.steps.unwrap().0.iter().map(|s| s.value()).collect(),
        state: cfg.state.map(|s| s.0).unwrap_or_else(|| syn::parse_quote!(())),
        result_step: cfg.result.map(|r| r.0.value()),
        recovery: cfg.recovery.map(|r| r.0),
        krate: cfg.krate.map(|k| k.0),
        params,
        output: output.unwrap(),
        func,
    })
}

impl ToTokens for Definition {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let k = c::krate(self.krate.as_ref());
        let Func { attrs, vis, sig, .. } = &self.func;
        let name = &self.name;
        let function = sig.ident.to_string();
        let inputs = self.params.iter().map(|p| {
            let n = &p.name;
            let s = n.to_string();
            let ty = &p.ty;
            quote_spanned!(ty.span()=> <#ty as #k::__private::SagaInput>::__put(&#n, &mut input, #s)?;)
        });
        let n_inputs = self.params.len();
        let output = &self.output;
        let run = quote_spanned! {output.span()=>
            <#output as #k::__private::SagaOutput>::__from_saga(
                #name,
                #k::__private::run_saga::<#k::__private::Value>(#name, input).await?,
            )
        };
        let steps = &self.steps;
        let result_step = opt(self.result_step.as_deref());
        let recovery = opt(self.recovery.map(|r| {
            let variant = match r {
                RecoveryPolicy::Compensate => quote!(Compensate),
                RecoveryPolicy::Forward => quote!(Forward),
            };
            quote!(#k::__private::RecoveryPolicy::#variant)
        }));
        let state = &self.state;
        let params = param_defs(&k, &self.params);
        let guard = c::duplicate_guard("SAGA", &self.name, self.name_span);
        let checks = self.params.iter().map(|p| {
            let s = p.name.to_string();
            let ty = &p.ty;
            quote_spanned!(ty.span()=> <#ty as #k::__private::SagaInput>::__check(input, #s)?;)
        });
        let location = c::location(&k, sig.ident.span());
        let doc = opt(c::doc(attrs).as_deref());
        let private = quote!(#k::__private);
        let probe = |ty: &syn::Type| c::type_probe(&private, ty);
        let input_types = self.params.iter().map(|p| probe(&p.ty));
        let output_type = probe(output);
        // Spanned on the user's state type: a state that is not (de)serialisable is reported there.
        let state_info = c::respan(&quote!(<#state as #k::__private::SagaState>::INFO), state.span());
        tokens.extend(quote! {
            #(#attrs)*
            #vis #sig {
                let mut input = #k::__private::Input::with_capacity(#n_inputs);
                #(#inputs)*
                #run
            }
            #guard
            const _: () = {
                fn check_input(
                    input: &#k::__private::Map<::std::string::String, #k::__private::Value>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    #(#checks)*
                    ::core::result::Result::Ok(())
                }
                #[#k::__private::linkme::distributed_slice(#k::__private::FRAISEQL_SAGAS)]
                #[linkme(crate = #k::__private::linkme)]
                static REGISTRATION: #k::__private::SagaDef = #k::__private::SagaDef {
                    name: #name,
                    function: #function,
                    steps: &[#(#steps),*],
                    result_step: #result_step,
                    recovery: #recovery,
                    params: #params,
                    state: #state_info,
                    output: #k::__private::TypeInfo::of::<#output>,
                    input_types: &[#(#input_types),*],
                    output_type: #output_type,
                    check_input,
                    doc: #doc,
                    location: #location,
                };
            };
        });
    }
}
