//! A body that holds something (an app lease) until the body is done, so that an app counts a
//! request in flight until its response has been streamed, not just until its headers.

use hyper::body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project! {
    /// `inner`, with `held` dropped when it is.
    pub(crate) struct Held<B, T> {
        #[pin]
        inner: B,
        held: Option<T>,
    }
}

impl<B, T> Held<B, T> {
    pub(crate) fn new(inner: B, held: Option<T>) -> Self {
        Held { inner, held }
    }
}

impl<B: Body, T> Body for Held<B, T> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = this.inner.poll_frame(cx);
        if let Poll::Ready(None) = frame {
            // Done: let go now rather than when the connection drops the body.
            this.held.take();
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
