//! HTTP-01 (RFC 8555 section 8.3): `/.well-known/acme-challenge/TOKEN` on the plain HTTP
//! listener is answered from the challenge answers in memory before routing.

use super::answer::Own;
use crate::challenges::{Answers, Lookup};
use arc_swap::ArcSwap;
use http::Request;

const PREFIX: &str = "/.well-known/acme-challenge/";

/// The answer to an HTTP-01 validation request, or `None` when the request is not one Porter
/// holds a challenge for (it is then routed like any other).
pub(crate) fn http01<B>(answers: &ArcSwap<Answers>, req: &Request<B>) -> Option<Own> {
    let token = req.uri().path().strip_prefix(PREFIX)?;
    if token.is_empty() || token.contains('/') {
        return None;
    }
    // Loaded only for challenge paths: every other plain-HTTP request skips it.
    match answers.load().http01(token) {
        Lookup::Found(key_authorization) => Some(Own::Http01(key_authorization)),
        Lookup::Absent => None,
        // The store may hold it but has not answered yet: the validator may try again.
        Lookup::Unknown => Some(Own::ChallengesLoading),
    }
}
