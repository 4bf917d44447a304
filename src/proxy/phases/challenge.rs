//! HTTP-01 (RFC 8555 section 8.3): `/.well-known/acme-challenge/TOKEN` on the plain HTTP
//! listener is answered from the challenge answers before routing (from the store when the
//! answers in memory lack the token, see `challenges`).

use crate::proxy::phases::answer::Own;
use crate::served::challenges::{Challenges, Lookup};
use http::Request;

const PREFIX: &str = "/.well-known/acme-challenge/";

/// The token `req` asks for, when it is an HTTP-01 validation request.
pub(crate) fn token<B>(req: &Request<B>) -> Option<&str> {
    let token = req.uri().path().strip_prefix(PREFIX)?;
    (!token.is_empty() && !token.contains('/')).then_some(token)
}

/// The answer to a validation request for `token`, or `None` when Porter holds no challenge
/// for it (the request is then routed like any other).
pub(crate) async fn http01(challenges: &Challenges, token: &str) -> Option<Own> {
    match challenges.http01(token).await {
        Lookup::Found(key_authorization) => Some(Own::Http01(key_authorization)),
        Lookup::Absent => None,
        // The store may hold it but has not answered: the validator may try again.
        Lookup::Unknown => Some(Own::ChallengesLoading),
    }
}
