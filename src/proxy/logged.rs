//! What a request leaves behind: its count in the edge thread's metrics, and its access-log
//! line (what is known of it when it comes, [`Started`]). Both are recorded by a response body
//! that counts what it sends, when it is done or dropped (a client that goes away mid-body is
//! counted and logged too, with the bytes it got). That body also holds the request's body when
//! it was left unread, until the response has been sent (see [`Unread`]).

use crate::observe::access_log::{AccessLog, Entry};
use crate::proxy::upstream::body::{let_go, Body, Unread};
use crate::proxy::upstream::idle::BoxError;
use crate::proxy::{Conn, Edge};
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

/// What is known of a request when it comes in, for its access-log line.
pub(crate) struct Started {
    entry: Entry,
}

impl Started {
    /// The facts of `req` on `conn`, taken before it is handled; `host` is the one it names.
    pub(crate) fn of<B>(req: &Request<B>, conn: &Conn, host: Option<&str>) -> Box<Self> {
        let header = |name| {
            req.headers()
                .get(name)
                .and_then(|v: &http::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        Box::new(Started {
            entry: Entry {
                time: SystemTime::now(),
                client: conn.peer,
                site: host.unwrap_or("-").to_owned(),
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
}

/// What is recorded of a request once its response is sent.
pub(crate) struct Finishing {
    /// The edge thread whose counts it goes to.
    edge: Arc<Edge>,
    /// The site it was for (`None`: Porter answered for no site).
    site: Option<Arc<str>>,
    at: Instant,
    status: u16,
    upstream: Option<Duration>,
    /// The access-log line, when there is an access log.
    line: Option<(Box<Started>, Arc<AccessLog>)>,
    /// Where the request's body goes if it is dropped unread.
    unread: Option<Unread>,
}

impl Finishing {
    /// A request of `site` that came `at`.
    pub(crate) fn new(
        edge: Arc<Edge>,
        site: Option<Arc<str>>,
        at: Instant,
        line: Option<(Box<Started>, Arc<AccessLog>)>,
    ) -> Self {
        Finishing {
            edge,
            site,
            at,
            status: 0,
            upstream: None,
            line,
            unread: None,
        }
    }

    /// `response` (which the upstream began to answer in `upstream`, when it was forwarded),
    /// recorded once its body is sent; it holds `unread` until then.
    pub(crate) fn when_sent(
        mut self,
        response: Response<Body>,
        upstream: Option<Duration>,
        unread: Option<Unread>,
    ) -> Response<Body> {
        self.status = response.status().as_u16();
        self.upstream = upstream;
        self.unread = unread;
        response.map(|inner| {
            Logged {
                inner,
                finishing: Some(self),
            }
            .boxed()
        })
    }

    fn record(self) {
        let duration = self.at.elapsed();
        self.edge
            .stats
            .request(self.site.as_ref(), self.status, duration, self.upstream);
        if let Some((started, log)) = self.line {
            let mut entry = started.entry;
            entry.status = self.status;
            entry.upstream = self.upstream;
            entry.duration = duration;
            log.record(entry);
        }
        // The response has been sent (or given up): an unread request body may go now.
        if let Some(unread) = self.unread {
            let_go(unread);
        }
    }
}

pin_project! {
    /// `inner`, counting its data, recorded when it is dropped.
    struct Logged {
        #[pin]
        inner: Body,
        finishing: Option<Finishing>,
    }

    impl PinnedDrop for Logged {
        fn drop(this: Pin<&mut Self>) {
            if let Some(finishing) = this.project().finishing.take() {
                finishing.record();
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
        let line = this.finishing.as_mut().and_then(|f| f.line.as_mut());
        if let (Poll::Ready(Some(Ok(frame))), Some((started, _))) = (&frame, line) {
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
