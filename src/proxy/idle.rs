//! A body wrapper that fails when no data moves for a while, so that a client or upstream that
//! stalls mid-body cannot hold a connection (and its buffers) forever.

use bytes::Buf;
use hyper::body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The error type of bodies Porter relays.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What an idle body fails with.
#[derive(Debug, thiserror::Error)]
#[error("no body data for {0:?}")]
pub(crate) struct Idle(Duration);

pin_project! {
    /// `inner`, failing once `period` passes without a frame.
    pub(crate) struct IdleTimeout<B> {
        #[pin]
        inner: B,
        // Made on the first wait only (most small bodies never wait), and boxed so that the
        // body stays `Unpin`, as hyper's client requires.
        sleep: Option<Pin<Box<Sleep>>>,
        period: Duration,
    }
}

impl<B> IdleTimeout<B> {
    pub(crate) fn new(inner: B, period: Duration) -> Self {
        IdleTimeout {
            inner,
            sleep: None,
            period,
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body,
    B::Data: Buf,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(sleep) = this.sleep.as_mut() {
                    sleep.as_mut().reset(Instant::now() + *this.period);
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let period = *this.period;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(period)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Idle(period).into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::BodyExt;

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_fails_and_a_moving_one_does_not() {
        let (tx, rx) =
            tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(1);
        let body = http_body_util::StreamBody::new(tokio_stream_from(rx));
        let mut body = IdleTimeout::new(body, Duration::from_secs(10));
        tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(9)).await;
                tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
                    .await
                    .unwrap();
            }
            // Then stall, keeping the sender (and so the body) open.
            std::future::pending::<()>().await;
            drop(tx);
        });
        for _ in 0..3 {
            assert!(
                body.frame().await.unwrap().is_ok(),
                "9 s between frames is within the period"
            );
        }
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.is::<Idle>(), "{err}");
    }

    fn tokio_stream_from<T>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
