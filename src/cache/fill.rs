//! A response body that streams to its client while the cache keeps a copy: when it ends
//! whole, the response is stored and the requests waiting on it are let go. Beyond the site's
//! largest object, or the budget of all fills under way, it is only streamed. A client that
//! leaves does not end the fill: the rest is read in the background, so the requests waiting
//! on it still get it.

use crate::cache::entry::{Entry, Key};
use crate::cache::policy::Times;
use crate::cache::{Cache, FlightGuard};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// What is kept of a response besides its body.
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) times: Times,
    pub(crate) vary: Vec<(String, Option<Vec<u8>>)>,
    pub(crate) tags: Vec<String>,
}

/// A fill under way.
pub(crate) struct Fill {
    pub(crate) cache: Arc<Cache>,
    pub(crate) key: Key,
    pub(crate) head: Head,
    /// Largest body kept, bytes.
    pub(crate) limit: u64,
    /// The most the site may hold in memory, bytes.
    pub(crate) share: Option<u64>,
    /// The waiters' release (`None` when nobody leads this key).
    pub(crate) guard: Option<FlightGuard>,
}

struct Collect {
    fill: Fill,
    chunks: Vec<Bytes>,
    len: u64,
}

impl Collect {
    /// Takes one chunk; `false` once the body is beyond the limit or the fills' budget (then
    /// nothing is kept).
    fn take(&mut self, chunk: &Bytes) -> bool {
        let n = chunk.len() as u64;
        if self.len + n > self.fill.limit || !self.fill.cache.reserve(n) {
            return false;
        }
        self.len += n;
        self.chunks.push(chunk.clone());
        true
    }

    fn finish(mut self) {
        let mut body = BytesMut::with_capacity(self.len as usize);
        for chunk in self.chunks.drain(..) {
            body.extend_from_slice(&chunk);
        }
        let head = std::mem::replace(&mut self.fill.head, Head::empty());
        self.fill.cache.store(
            &self.fill.key,
            Entry::new(
                (head.status, head.headers),
                body.freeze(),
                head.times,
                head.vary,
                head.tags,
            ),
            self.fill.share,
        );
        // After the store: waiters find the response stored.
        drop(self.fill.guard.take());
    }
}

impl Drop for Collect {
    fn drop(&mut self) {
        self.fill.cache.release(self.len);
    }
}

impl Head {
    fn empty() -> Head {
        Head {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            times: Times {
                request_ms: 0,
                response_ms: 0,
                initial_age: 0,
                lifetime: 0,
            },
            vary: Vec::new(),
            tags: Vec::new(),
        }
    }
}

/// The body of a response being kept.
pub(crate) struct Filling<B: Body<Data = Bytes> + Unpin + Send + 'static> {
    inner: Option<B>,
    collect: Option<Collect>,
}

impl<B: Body<Data = Bytes> + Unpin + Send + 'static> Filling<B> {
    pub(crate) fn new(inner: B, fill: Fill) -> Self {
        Filling {
            inner: Some(inner),
            collect: Some(Collect {
                fill,
                chunks: Vec::new(),
                len: 0,
            }),
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin + Send + 'static> Body for Filling<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = ready!(Pin::new(inner).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let (Some(chunk), Some(collect)) = (frame.data_ref(), this.collect.as_mut()) {
                    if !collect.take(chunk) {
                        this.collect = None;
                    }
                }
            }
            Some(Err(_)) => this.collect = None,
            None => {
                if let Some(collect) = this.collect.take() {
                    collect.finish();
                }
                this.inner = None;
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

impl<B: Body<Data = Bytes> + Unpin + Send + 'static> Drop for Filling<B> {
    /// The rest of the body read in the background, when a fill is under way and the client
    /// left before the end.
    fn drop(&mut self) {
        let (Some(mut inner), Some(mut collect)) = (self.inner.take(), self.collect.take()) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            // The upstream body has its idle time-out: this ends.
            while let Some(frame) = inner.frame().await {
                match frame {
                    Ok(frame) => {
                        if let Some(chunk) = frame.data_ref() {
                            if !collect.take(chunk) {
                                return;
                            }
                        }
                    }
                    Err(_) => return,
                }
            }
            collect.finish();
        });
    }
}
