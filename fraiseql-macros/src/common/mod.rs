//! Pieces shared by every macro: argument parsing, function checks, generated paths.

pub(crate) mod args;
pub(crate) mod func;

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};

/// The doc comment on an item (`///` lines, trimmed, joined by newlines), if any.
pub(crate) fn doc(attrs: &[syn::Attribute]) -> Option<String> {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => Some(s.value().trim().to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    if lines.is_empty() {
        None
    } else {
        Some(lines.join("\n"))
    }
}

/// The path generated code uses to reach the runtime: `::fraiseql` unless the user
/// renamed the dependency and said so with `crate = path`.
pub(crate) fn krate(custom: Option<&syn::Path>) -> TokenStream {
    match custom {
        Some(p) => quote!(#p),
        None => quote!(::fraiseql),
    }
}

pub(crate) fn parse_crate_path(m: &str, expr: &syn::Expr) -> syn::Result<syn::Path> {
    match expr {
        syn::Expr::Path(p) => Ok(p.path.clone()),
        syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => s.parse(),
        other => {
            Err(syn::Error::new_spanned(other, format!("`#[{m}]`: `crate` must be a path, e.g. `crate = my_fraiseql`")))
        }
    }
}

/// `file!()`, `line!()`, `column!()` spanned on the user's function name, so the
/// registration records where the user declared it.
pub(crate) fn location(krate: &TokenStream, span: Span) -> TokenStream {
    quote_spanned! {span=>
        #krate::__private::Location {
            file: ::core::file!(),
            line: ::core::line!(),
            column: ::core::column!(),
            module: ::core::module_path!(),
        }
    }
}

/// A marker item per name, at the module level, so that two registrations of the same
/// name in one module are a compile error ("defined multiple times") on the second.
pub(crate) fn duplicate_guard(kind: &str, name: &str, span: Span) -> TokenStream {
    let sanitized: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let ident = syn::Ident::new(&format!("__FRAISEQL_{kind}_{sanitized}"), span);
    quote_spanned! {span=>
        #[doc(hidden)]
        #[allow(non_upper_case_globals, dead_code)]
        const #ident: () = ();
    }
}

/// The same tokens, every one spanned on `span`: an expression built from them reports
/// its errors there, on the user's token, rather than on the whole attribute (which is
/// where a mix of the user's spans and `Span::call_site()` ends up).
pub(crate) fn respan(tokens: &TokenStream, span: Span) -> TokenStream {
    tokens
        .clone()
        .into_iter()
        .map(|t| match t {
            proc_macro2::TokenTree::Group(g) => {
                let mut group = proc_macro2::Group::new(g.delimiter(), respan(&g.stream(), span));
                group.set_span(span);
                proc_macro2::TokenTree::Group(group)
            }
            mut other => {
                other.set_span(span);
                other
            }
        })
        .collect()
}

/// `fn() -> TypeRef` for `ty`: its description when it has one, else `JSON` (autoref
/// specialisation through `Probe`), spanned on the user's type.
pub(crate) fn type_probe(private: &TokenStream, ty: &syn::Type) -> TokenStream {
    use syn::spanned::Spanned;
    quote_spanned! {ty.span()=> {
        fn ty() -> #private::TypeRef {
            #[allow(unused_imports)]
            use #private::{ViaDescribe as _, ViaJson as _};
            (&#private::Probe::<#ty>::new()).type_ref()
        }
        ty
    }}
}

pub(crate) fn compile_error_with(err: syn::Error, best_effort: TokenStream) -> TokenStream {
    let e = err.to_compile_error();
    quote!(#best_effort #e)
}
