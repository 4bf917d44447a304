//! A body that holds something until the body is done: an app lease (an app counts a request
//! in flight until its response has been streamed, not just until its headers), the loan of
//! the upstream connection (which may serve another exchange only once this body is read) and
//! the request's concurrency slots, and on a site with several upstreams the one it went to
//! (whose requests under way least-connections counts).

use crate::apps::Lease;
use crate::balance::Picked;
use crate::proxy::phases::gate::Pass;
use crate::proxy::upstream::pool::Loan;
use hyper::body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::task::{Context, Poll};

/// What a body holds and lets go of when it has been read to its end. Dropped without
/// `finish` (the body failed or the client went away), it lets go all the same, but a loaned
/// connection is then not reused.
pub(crate) trait Finish {
    fn finish(self);
}

/// What a relayed response holds: the app's lease, the upstream connection's loan, the
/// request's concurrency slots (site and upstream) and the upstream it was sent to.
pub(crate) struct Holding {
    pub(crate) lease: Option<Lease>,
    pub(crate) loan: Option<Loan>,
    pub(crate) slots: Slots,
    pub(crate) picked: Option<Picked>,
}

/// A request's concurrency slots, held until its response is done.
pub(crate) type Slots = (Option<Pass>, Option<Pass>);

impl Finish for Holding {
    fn finish(self) {
        // The loan goes home to be reused; the lease and the slots are let go.
        let Holding {
            lease,
            loan,
            slots,
            picked,
        } = self;
        if let Some(loan) = loan {
            loan.give_back();
        }
        drop((lease, slots, picked));
    }
}

pin_project! {
    /// `inner`, with `held` finished at its end (or dropped with it).
    pub(crate) struct Held<B, T> {
        #[pin]
        inner: B,
        held: Option<T>,
    }
}

impl<B: Body, T: Finish> Held<B, T> {
    pub(crate) fn new(inner: B, held: T) -> Self {
        let mut held = Some(held);
        if inner.is_end_stream() {
            // Nothing will be read: done already.
            if let Some(held) = held.take() {
                held.finish();
            }
        }
        Held { inner, held }
    }
}

impl<B: Body, T: Finish> Body for Held<B, T> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = this.inner.as_mut().poll_frame(cx);
        // Done at the end, or at the last frame when the body knows its length: the server
        // then stops asking before the end is seen.
        let done = match &frame {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            _ => false,
        };
        if done {
            if let Some(held) = this.held.take() {
                held.finish();
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
