//! The proxy's body types, at the bottom of its imports: what Porter answers with ([`Body`])
//! and what it sends upstream ([`UpstreamBody`]).

use super::idle::{BoxError, IdleTimeout};
use bytes::Bytes;
use http_body_util::{BodyExt, Either, Empty, Full};
use hyper::body::Incoming;

/// The body of every response Porter sends.
pub(crate) type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// A request body on its way upstream: the client's, bounded by the idle deadline, or none.
pub(crate) type UpstreamBody = Either<IdleTimeout<Incoming>, Empty<Bytes>>;

/// A body of `bytes` known in full.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}
