//! The proxy's body types, at the bottom of its imports: what Porter answers with ([`Body`])
//! and what it sends upstream ([`UpstreamBody`]), which may start with what the WAF has read
//! ([`Replayed`]).

use crate::proxy::upstream::idle::{BoxError, IdleTimeout};
use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Either, Empty, Full};
use hyper::body::Incoming;
use hyper::body::{Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The body of every response Porter sends.
pub(crate) type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// A request body on its way upstream: the client's, bounded by the idle deadline, or none.
pub(crate) type UpstreamBody = Either<Replayed<IdleTimeout<Incoming>>, Empty<Bytes>>;

/// A body of `bytes` known in full.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A body whose start has been read already (by the WAF): that start, then the rest as it
/// comes, or the trailers that ended it.
pub(crate) struct Replayed<B> {
    head: Option<Bytes>,
    rest: Option<B>,
    trailers: Option<HeaderMap>,
}

impl<B> Replayed<B> {
    /// `rest` as it comes.
    pub(crate) fn streaming(rest: B) -> Self {
        Replayed {
            head: None,
            rest: Some(rest),
            trailers: None,
        }
    }

    /// `head`, then `rest` (`None`: it ended, with `trailers` if it had them).
    pub(crate) fn read(head: Bytes, rest: Option<B>, trailers: Option<HeaderMap>) -> Self {
        Replayed {
            head: Some(head).filter(|h| !h.is_empty()),
            rest,
            trailers,
        }
    }
}

impl<B> hyper::body::Body for Replayed<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        if let Some(rest) = self.rest.as_mut() {
            return Pin::new(rest).poll_frame(cx);
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none()
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(|rest| rest.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let head = self.head.as_ref().map_or(0, |h| h.len() as u64);
        match &self.rest {
            None => SizeHint::with_exact(head),
            Some(rest) => {
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + head);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + head);
                }
                hint
            }
        }
    }
}
