//! The proxy's body types, at the bottom of its imports: what Porter answers with ([`Body`]),
//! what the client sends ([`ClientBody`]) and what it sends upstream ([`UpstreamBody`]), which
//! may start with what the WAF has read ([`Replayed`]).

use crate::proxy::upstream::idle::{BoxError, IdleTimeout};
use bytes::Bytes;
use http::header::EXPECT;
use http::{HeaderMap, Request, Version};
use http_body_util::{BodyExt, Either, Empty, Full};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::body::{Frame, SizeHint};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

/// The body of every response Porter sends.
pub(crate) type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// A request body on its way upstream: the client's, bounded by the idle deadline, or none.
pub(crate) type UpstreamBody = Either<Replayed<IdleTimeout<ClientBody>>, Empty<Bytes>>;

/// A request body dropped unread, kept here until the response has been sent.
pub(crate) type Unread = Arc<OnceLock<Incoming>>;

/// How much of an unread request body is read after its response, at most, and for how long,
/// before the stream is reset (HTTP/2) or the connection closed (HTTP/1).
const DRAINED: usize = 1 << 20;
const DRAINING: Duration = Duration::from_secs(2);

/// Lets go of `unread` once its response has been sent: the body is read to its end (and
/// thrown away) in the background, within bounds, so that a client still sending it sees its
/// request end normally. A reset that comes with the response, HTTP/2's NO_ERROR included,
/// makes some clients (curl 7.88) throw the response away. Past the bounds the body is dropped:
/// h2 resets the stream with NO_ERROR, hyper closes the HTTP/1 connection.
pub(crate) fn let_go(unread: Unread) {
    // Still held elsewhere (by a request body the upstream client has not let go of): it is
    // dropped with its last holder.
    let Some(mut body) = Arc::into_inner(unread).and_then(OnceLock::into_inner) else {
        return;
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut read = 0;
        let draining = async {
            while let Some(Ok(frame)) = body.frame().await {
                read += frame.data_ref().map_or(0, Bytes::len);
                if read > DRAINED {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(DRAINING, draining).await;
    });
}

/// The client's request body. One dropped before it was read to its end (Porter answered
/// itself, or the upstream answered without reading it) goes to its [`Unread`], which the
/// response holds until it has been sent, then [`let_go`]. Over HTTP/2, h2 resets a stream whose
/// request body goes while its response is still being sent with CANCEL, and clients then throw
/// the response away (curl: "Stream error in the HTTP/2 framing layer"); over HTTP/1, hyper
/// closes the connection right after the response, and a client still sending then gets a
/// reset that may take the response with it (why servers linger before they close).
pub(crate) struct ClientBody {
    // `None` once dropped into `unread`.
    inner: Option<Source>,
    unread: Option<Unread>,
}

/// Where a request body comes from: hyper (HTTP/1.1, HTTP/2), or another protocol's stream
/// (HTTP/3), boxed so that this room knows nothing of it and HTTP/1.1 and HTTP/2 pay no size.
enum Source {
    Hyper(Incoming),
    Other(OtherBody),
}

/// A request body another protocol than hyper's reads.
pub(crate) type OtherBody =
    Pin<Box<dyn hyper::body::Body<Data = Bytes, Error = BoxError> + Send + Sync>>;

impl ClientBody {
    /// `req` with its body as a [`ClientBody`], and where the body goes if it is dropped
    /// unread (for a request with a body, unless it waits for `100 Continue`: a client told
    /// the final answer instead sends no body).
    pub(crate) fn of(req: Request<Incoming>) -> (Request<ClientBody>, Option<Unread>) {
        let waits = req.version() <= Version::HTTP_11
            && req
                .headers()
                .get(EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let keeps = !waits && !req.body().is_end_stream();
        let unread = keeps.then(Unread::default);
        let req = req.map(|inner| ClientBody {
            inner: Some(Source::Hyper(inner)),
            unread: unread.clone(),
        });
        (req, unread)
    }

    /// A body another protocol reads; it sees to its own end when dropped unread.
    pub(crate) fn other(body: OtherBody) -> ClientBody {
        ClientBody {
            inner: Some(Source::Other(body)),
            unread: None,
        }
    }
}

impl Drop for ClientBody {
    fn drop(&mut self) {
        if let (Some(unread), Some(Source::Hyper(inner))) = (&self.unread, self.inner.take()) {
            if !inner.is_end_stream() {
                // Set once only: this is the one body that goes there.
                let _ = unread.set(inner);
            }
        }
    }
}

impl hyper::body::Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.inner.as_mut() {
            Some(Source::Hyper(inner)) => Pin::new(inner).poll_frame(cx).map_err(Into::into),
            Some(Source::Other(other)) => other.as_mut().poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Some(Source::Hyper(inner)) => inner.is_end_stream(),
            Some(Source::Other(other)) => other.is_end_stream(),
            None => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(Source::Hyper(inner)) => inner.size_hint(),
            Some(Source::Other(other)) => other.size_hint(),
            None => SizeHint::with_exact(0),
        }
    }
}

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
