//! Cross-site request forgery protection for the console's forms.
//!
//! Each browser gets a random nonce in an `HttpOnly`, `SameSite=Strict` cookie; each form
//! carries `HMAC-SHA256(secret, nonce)` in a hidden field. A `POST` is accepted only if
//! the field matches the cookie's nonce (compared in constant time), so a page on
//! another site, which can read neither the cookie nor our pages, cannot make a valid
//! one. Independently, a request the browser marks as cross-site (`Sec-Fetch-Site`) or
//! whose `Origin` is not this host is refused before the token is looked at.

use axum::http::{header, HeaderMap, HeaderValue};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The cookie holding this browser's nonce.
pub(super) const COOKIE: &str = "fraiseql_console_csrf";
/// The hidden form field holding the token.
pub(super) const FIELD: &str = "csrf";

/// 32 random bytes (two v4 UUIDs: the operating system's randomness, through `uuid`).
pub(super) fn random_secret() -> Vec<u8> {
    let mut s = uuid::Uuid::new_v4().as_bytes().to_vec();
    s.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    s
}

/// A fresh nonce for a browser without one: 32 hex digits.
pub(super) fn new_nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Why a `POST` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The browser says the request comes from another site.
    CrossSite,
    /// `Origin` names another host than the one the request was sent to.
    ForeignOrigin,
    /// No nonce cookie: cookies are off, or the request was not made from our page.
    NoCookie,
    /// No token field in the form.
    NoToken,
    /// The token does not match the cookie (a forged form, or one signed with another
    /// secret: the server restarted).
    BadToken,
}

impl Refusal {
    /// What the refusal page says.
    pub(super) fn message(self) -> &'static str {
        match self {
            Refusal::CrossSite => "this request came from another site (Sec-Fetch-Site); the console only accepts forms from its own pages",
            Refusal::ForeignOrigin => "this request's Origin is not this console's host; the console only accepts forms from its own pages",
            Refusal::NoCookie => "the console's CSRF cookie is missing: allow cookies for this site, reload the page and try again",
            Refusal::NoToken => "the form carries no CSRF token: use the buttons on the console's pages",
            Refusal::BadToken => "the form's CSRF token is wrong or out of date (the server may have restarted): reload the page and try again",
        }
    }
}

/// Signs and checks tokens with one secret.
pub(super) struct Csrf {
    mac: Hmac<Sha256>,
}

impl Csrf {
    pub(super) fn new(secret: &[u8]) -> Csrf {
        Csrf { mac: Hmac::new_from_slice(secret).expect("HMAC takes a key of any length") }
    }

    fn mac_of(&self, nonce: &str) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(b"fraiseql-console-csrf\0");
        mac.update(nonce.as_bytes());
        mac
    }

    /// The token for forms shown to the browser holding `nonce`.
    pub(super) fn token(&self, nonce: &str) -> String {
        hex(&self.mac_of(nonce).finalize().into_bytes())
    }

    /// Whether a `POST` with these headers and this form token may change anything.
    pub(super) fn check(&self, headers: &HeaderMap, token: Option<&str>) -> Result<(), Refusal> {
        match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
            // `none`: the user's own action (typed, bookmarked); absent: an older browser
            // or a script, which the token still has to satisfy.
            None | Some("same-origin") | Some("none") => {}
            Some(_) => return Err(Refusal::CrossSite),
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
            let origin_host = origin.to_str().ok().and_then(|o| o.split_once("://")).map(|(_, rest)| rest);
            if host.is_empty() || origin_host != Some(host) {
                return Err(Refusal::ForeignOrigin);
            }
        }
        let nonce = nonce_of(headers).ok_or(Refusal::NoCookie)?;
        let token = token.filter(|t| !t.is_empty()).ok_or(Refusal::NoToken)?;
        let bytes = unhex(token).ok_or(Refusal::BadToken)?;
        // `verify_slice` compares in constant time.
        self.mac_of(&nonce).verify_slice(&bytes).map_err(|_| Refusal::BadToken)
    }
}

/// This browser's nonce, if its cookie holds a well-formed one.
pub(super) fn nonce_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `Set-Cookie` value giving a browser its nonce, for the console's paths only.
pub(super) fn set_cookie(nonce: &str, path: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{COOKIE}={nonce}; Path={path}; HttpOnly; SameSite=Strict"))
        .expect("a hex nonce and a checked path are valid header text")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_token_is_accepted_only_with_its_own_cookie_and_from_this_site() {
        let csrf = Csrf::new(&random_secret());
        let nonce = new_nonce();
        let token = csrf.token(&nonce);
        let cookie = format!("other=1; {COOKIE}={nonce}");
        let ok = headers(&[("cookie", &cookie), ("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")]);
        assert_eq!(csrf.check(&ok, Some(&token)), Ok(()));
        assert_eq!(csrf.check(&ok, None), Err(Refusal::NoToken));
        assert_eq!(csrf.check(&ok, Some(&csrf.token(&new_nonce()))), Err(Refusal::BadToken));
        assert_eq!(csrf.check(&ok, Some("zz")), Err(Refusal::BadToken));
        // Another secret (another process) signed it.
        assert_eq!(Csrf::new(&random_secret()).check(&ok, Some(&token)), Err(Refusal::BadToken));
        let no_cookie = headers(&[("host", "127.0.0.1:8080")]);
        assert_eq!(csrf.check(&no_cookie, Some(&token)), Err(Refusal::NoCookie));
        let foreign = headers(&[("cookie", &cookie), ("host", "127.0.0.1:8080"), ("origin", "http://evil.example")]);
        assert_eq!(csrf.check(&foreign, Some(&token)), Err(Refusal::ForeignOrigin));
        let cross = headers(&[("cookie", &cookie), ("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")]);
        assert_eq!(csrf.check(&cross, Some(&token)), Err(Refusal::CrossSite));
    }
}
