//! A request's access-log line: what is known of it when it comes ([`Started`]), and a
//! response body that counts what it sends and records the line when it is done or dropped
//! (a client that goes away mid-body is logged too, with the bytes it got).

use super::body::Body;
use super::idle::BoxError;
use super::{route, Conn};
use crate::access_log::{AccessLog, Entry};
use bytes::Buf;
use http::header::{CONTENT_LENGTH, REFERER, USER_AGENT};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

/// How long the upstream took to answer with its head, set on a relayed response.
#[derive(Clone, Copy)]
pub(crate) struct UpstreamTime(pub(crate) Duration);

/// What is known of a request when it comes in.
pub(crate) struct Started {
    at: Instant,
    entry: Entry,
}

impl Started {
    /// The facts of `req` on `conn`, taken before it is handled.
    pub(crate) fn of<B>(req: &Request<B>, conn: &Conn) -> Box<Self> {
        let header = |name| {
            req.headers()
                .get(name)
                .and_then(|v: &http::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        Box::new(Started {
            at: Instant::now(),
            entry: Entry {
                time: SystemTime::now(),
                client: conn.peer,
                site: route::request_host(req).map_or("-".to_owned(), |h| h.into_owned()),
                method: req.method().clone(),
                target: req
                    .uri()
                    .path_and_query()
                    .map_or("/".to_owned(), |p| p.as_str().to_owned()),
                version: req.version(),
                status: 0,
                bytes_in: match header(CONTENT_LENGTH) {
                    Some(length) => length.parse().ok(),
                    None if req.headers().contains_key(http::header::TRANSFER_ENCODING) => None,
                    None => Some(0),
                },
                bytes_out: 0,
                duration: Duration::ZERO,
                upstream: None,
                tls: conn.tls,
                referer: header(REFERER),
                user_agent: header(USER_AGENT),
            },
        })
    }

    /// `response`, recording its line in `log` once its body is sent.
    pub(crate) fn log_when_sent(
        self: Box<Self>,
        response: Response<Body>,
        log: Arc<AccessLog>,
    ) -> Response<Body> {
        let mut started = self;
        started.entry.status = response.status().as_u16();
        started.entry.upstream = response.extensions().get::<UpstreamTime>().map(|t| t.0);
        response.map(|inner| {
            Logged {
                inner,
                line: Some((started, log)),
            }
            .boxed()
        })
    }
}

pin_project! {
    /// `inner`, counting its data, with the line recorded when it is dropped.
    struct Logged {
        #[pin]
        inner: Body,
        line: Option<(Box<Started>, Arc<AccessLog>)>,
    }

    impl PinnedDrop for Logged {
        fn drop(this: Pin<&mut Self>) {
            if let Some((started, log)) = this.project().line.take() {
                let Started { at, mut entry } = *started;
                entry.duration = at.elapsed();
                log.record(entry);
            }
        }
    }
}

impl hyper::body::Body for Logged {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = this.inner.poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some((started, _))) = (&frame, this.line.as_mut()) {
            if let Some(data) = frame.data_ref() {
                started.entry.bytes_out += data.remaining() as u64;
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
