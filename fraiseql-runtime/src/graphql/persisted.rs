//! Automatic persisted queries, the protocol Apollo clients speak: a request may carry
//! `extensions.persistedQuery = { version: 1, sha256Hash }`. With the document, its hash
//! is checked and the document remembered; without it, the remembered document is used,
//! and an unknown hash is answered `PersistedQueryNotFound`
//! (`extensions.code = PERSISTED_QUERY_NOT_FOUND`), upon which the client sends the hash
//! with the document. The store is bounded (`graphql.persisted_queries`), oldest first out.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_graphql::{Request, Value};
use sha2::{Digest, Sha256};

/// Remembered documents by the hex SHA-256 of their text.
pub(crate) struct Store {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    documents: HashMap<String, Arc<str>>,
    order: VecDeque<String>,
}

/// Why a persisted-query request cannot run.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The hash is not known: the client retries with the document.
    NotFound,
    /// `graphql.persisted_queries = 0`.
    NotSupported,
    /// Anything else wrong: a message for the client.
    Bad(String),
}

impl Store {
    pub(crate) fn new(capacity: usize) -> Store {
        Store { capacity, inner: Mutex::default() }
    }

    /// Give `request` its document when it names one by hash; `Ok` when it can run.
    pub(crate) fn resolve(&self, request: &mut Request) -> Result<(), Refusal> {
        let Some(pq) = request.extensions.get("persistedQuery") else { return Ok(()) };
        if self.capacity == 0 {
            return Err(Refusal::NotSupported);
        }
        let Value::Object(pq) = pq else {
            return Err(Refusal::Bad("`extensions.persistedQuery` must be an object".into()));
        };
        match pq.get("version") {
            Some(Value::Number(n)) if n.as_u64() == Some(1) => {}
            _ => return Err(Refusal::Bad("`extensions.persistedQuery.version` must be 1".into())),
        }
        let hash = match pq.get("sha256Hash") {
            Some(Value::String(h)) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                h.to_ascii_lowercase()
            }
            _ => {
                return Err(Refusal::Bad("`extensions.persistedQuery.sha256Hash` must be 64 hexadecimal digits".into()))
            }
        };
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if request.query.is_empty() {
            return match inner.documents.get(&hash) {
                Some(doc) => {
                    request.query = doc.to_string();
                    crate::telemetry::persisted_query("hit");
                    Ok(())
                }
                None => {
                    crate::telemetry::persisted_query("miss");
                    Err(Refusal::NotFound)
                }
            };
        }
        if sha256_hex(&request.query) != hash {
            return Err(Refusal::Bad("`extensions.persistedQuery.sha256Hash` is not the SHA-256 of the query".into()));
        }
        if !inner.documents.contains_key(&hash) {
            crate::telemetry::persisted_query("stored");
            inner.documents.insert(hash.clone(), Arc::from(request.query.as_str()));
            inner.order.push_back(hash);
            while inner.order.len() > self.capacity {
                if let Some(old) = inner.order.pop_front() {
                    inner.documents.remove(&old);
                }
            }
        }
        Ok(())
    }
}

fn sha256_hex(text: &str) -> String {
    use std::fmt::Write;
    Sha256::digest(text.as_bytes()).iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: &str, hash: &str) -> Request {
        let mut r = Request::new(query);
        r.extensions.insert(
            "persistedQuery".into(),
            Value::from_json(serde_json::json!({ "version": 1, "sha256Hash": hash })).unwrap(),
        );
        r
    }

    #[test]
    fn a_hash_is_found_once_its_document_was_sent_and_forgotten_when_the_store_is_full() {
        let store = Store::new(1);
        let (a, b) = ("{ a }", "{ b }");
        let (ha, hb) = (sha256_hex(a), sha256_hex(b));
        assert_eq!(store.resolve(&mut request("", &ha)), Err(Refusal::NotFound));
        store.resolve(&mut request(a, &ha)).unwrap();
        let mut r = request("", &ha.to_uppercase());
        store.resolve(&mut r).unwrap();
        assert_eq!(r.query, a);
        store.resolve(&mut request(b, &hb)).unwrap();
        assert_eq!(store.resolve(&mut request("", &ha)), Err(Refusal::NotFound), "the oldest is forgotten");
        assert!(matches!(store.resolve(&mut request(a, &hb)), Err(Refusal::Bad(m)) if m.contains("not the SHA-256")));
        assert_eq!(Store::new(0).resolve(&mut request(a, &ha)), Err(Refusal::NotSupported));
        assert_eq!(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
