//! Attribute arguments: `"positional", key = value, …`, parsed into a list that each
//! macro's `Configuration` walks with setters that reject repeats and unknown keys.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Token};

use crate::grammar;

/// One argument of an attribute.
pub(crate) enum Arg {
    /// `"create_order"`
    Positional(Expr),
    /// `database = "primary"`, `state = OrderSaga`, `crate = my_fraiseql`
    Named { key: Ident, value: Expr },
}

impl Parse for Arg {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        // `crate` is a keyword, so it needs its own branch to be accepted as a key.
        if input.peek(Token![crate]) && input.peek2(Token![=]) {
            let kw: Token![crate] = input.parse()?;
            let _: Token![=] = input.parse()?;
            let value: Expr = input.parse()?;
            return Ok(Arg::Named { key: Ident::new("crate", kw.span), value });
        }
        if (input.peek(Ident) || input.peek(Token![type])) && input.peek2(Token![=]) && !input.peek2(Token![==]) {
            let key: Ident = if input.peek(Token![type]) {
                let kw: Token![type] = input.parse()?;
                Ident::new("type", kw.span)
            } else {
                input.parse()?
            };
            let _: Token![=] = input.parse()?;
            let value: Expr = input.parse()?;
            return Ok(Arg::Named { key, value });
        }
        Ok(Arg::Positional(input.parse()?))
    }
}

/// Parse an attribute's arguments and hand each to `apply`; every error is kept, so one
/// compile reports all of them.
pub(crate) fn apply_each(
    tokens: proc_macro2::TokenStream,
    errs: &mut Errors,
    mut apply: impl FnMut(Arg) -> syn::Result<()>,
) {
    match parse_args(tokens) {
        Ok(list) => {
            for a in list {
                let r = apply(a);
                errs.check(r);
            }
        }
        Err(e) => errs.push(e),
    }
}

pub(crate) fn parse_args(tokens: proc_macro2::TokenStream) -> syn::Result<Vec<Arg>> {
    let parser = Punctuated::<Arg, Token![,]>::parse_terminated;
    Ok(syn::parse::Parser::parse2(parser, tokens)?.into_iter().collect())
}

/// The message for a key the macro does not know, listing the ones it does.
pub(crate) fn unknown_key(macro_name: &str, key: &Ident, valid: &[&str]) -> syn::Error {
    let list = valid.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
    syn::Error::new(key.span(), format!("`#[{macro_name}]` has no key `{key}`; valid keys are {list}"))
}

/// Set a value once; a second `key = …` is an error on the repeated key.
pub(crate) fn set_once<T>(slot: &mut Option<(T, Span)>, macro_name: &str, key: &Ident, value: T) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new(key.span(), format!("`#[{macro_name}]`: `{key}` is given more than once")));
    }
    *slot = Some((value, key.span()));
    Ok(())
}

/// The one positional string literal a macro takes (a step name, a subject).
pub(crate) fn positional_once(
    slot: &mut Option<(LitStr, Span)>,
    macro_name: &str,
    what: &str,
    expr: Expr,
) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new_spanned(
            expr,
            format!("`#[{macro_name}]` takes one {what}; further arguments are `key = value`"),
        ));
    }
    let lit = lit_str(macro_name, &format!("the {what}"), &expr)?;
    let span = lit.span();
    *slot = Some((lit, span));
    Ok(())
}

pub(crate) fn lit_str(macro_name: &str, what: &str, expr: &Expr) -> syn::Result<LitStr> {
    match expr {
        Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => Ok(s.clone()),
        other => Err(syn::Error::new_spanned(other, format!("`#[{macro_name}]`: {what} must be a string literal"))),
    }
}

pub(crate) fn lit_u32(macro_name: &str, what: &str, expr: &Expr) -> syn::Result<u32> {
    match expr {
        Expr::Lit(ExprLit { lit: Lit::Int(i), .. }) => i.base10_parse::<u32>().map_err(|_| {
            syn::Error::new_spanned(i, format!("`#[{macro_name}]`: {what} must be a whole number that fits in u32"))
        }),
        other => Err(syn::Error::new_spanned(other, format!("`#[{macro_name}]`: {what} must be an integer literal"))),
    }
}

/// `timeout = "30s"` / `"10 seconds"` / `"1m 30s"` → milliseconds, read as the
/// configuration reads durations (`humantime`).
pub(crate) fn duration_ms(macro_name: &str, expr: &Expr) -> syn::Result<u64> {
    let lit = lit_str(macro_name, "`timeout`", expr)?;
    grammar::parse_duration_ms(&lit.value())
        .map_err(|why| syn::Error::new_spanned(&lit, format!("`#[{macro_name}]`: `timeout`: {why}")))
}

/// Names of steps, sagas and databases end up in logs, SQL rows and CLI output:
/// keep them to a conservative alphabet so they are never ambiguous.
pub(crate) fn check_name(macro_name: &str, what: &str, lit: &LitStr) -> syn::Result<String> {
    let v = lit.value();
    match grammar::check_name(&v) {
        Ok(()) => Ok(v),
        Err(why) => {
            Err(syn::Error::new_spanned(lit, format!("`#[{macro_name}]`: {what} `{v}` is not a valid name; {why}")))
        }
    }
}

/// Collects several errors into one report (every problem at once, not one per build).
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(acc) => acc.combine(e),
            None => self.0 = Some(e),
        }
    }
    pub(crate) fn check<T>(&mut self, r: syn::Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(e);
                None
            }
        }
    }
    pub(crate) fn finish(self) -> syn::Result<()> {
        match self.0 {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
