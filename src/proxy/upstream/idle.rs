//! A body wrapper that fails when no data moves for a while, or (for request bodies) when data
//! comes slower than a minimum rate, so that a client or upstream that stalls or trickles
//! mid-body cannot hold a connection, its upstream connection and its request slot for ever.
//! The rate counts only the time spent waiting for the sender: a body Porter does not ask for
//! (its upstream reads slowly) is not the sender's fault.

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

/// What a slow body fails with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Slow {
    #[error("no body data for {0:?}")]
    Idle(Duration),
    #[error("body data slower than {0} bytes a second")]
    Rate(u32),
}

/// The span of waiting over which the minimum rate is judged.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// The minimum rate and what has been seen of it in the current window.
#[derive(Default)]
struct Rate {
    /// Bytes a second; 0 for none.
    min: u32,
    bytes: u64,
    waited: Duration,
    waiting_since: Option<Instant>,
}

impl Rate {
    /// Counts a frame of `len` bytes, the wait for it included; false when the window just
    /// judged carried too little.
    fn frame(&mut self, len: usize) -> bool {
        if self.min == 0 {
            return true;
        }
        if let Some(since) = self.waiting_since.take() {
            self.waited += since.elapsed();
        }
        self.bytes += len as u64;
        if self.waited < RATE_WINDOW {
            return true;
        }
        let enough = self.bytes as f64 >= f64::from(self.min) * self.waited.as_secs_f64();
        (self.bytes, self.waited) = (0, Duration::ZERO);
        enough
    }

    fn pending(&mut self) {
        if self.min != 0 && self.waiting_since.is_none() {
            self.waiting_since = Some(Instant::now());
        }
    }
}

pin_project! {
    /// `inner`, failing once `period` passes without a frame.
    pub(crate) struct IdleTimeout<B> {
        #[pin]
        inner: B,
        // Made on the first wait only (most small bodies never wait), and boxed so that the
        // body stays `Unpin`, as hyper's client requires.
        sleep: Option<Pin<Box<Sleep>>>,
        period: Duration,
        rate: Rate,
    }
}

impl<B> IdleTimeout<B> {
    pub(crate) fn new(inner: B, period: Duration) -> Self {
        IdleTimeout {
            inner,
            sleep: None,
            period,
            rate: Rate::default(),
        }
    }

    /// Fails also when data comes slower than `min` bytes a second (0 for no minimum).
    pub(crate) fn with_min_rate(mut self, min: u32) -> Self {
        self.rate.min = min;
        self
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
                let len = match &frame {
                    Some(Ok(f)) => f.data_ref().map_or(0, Buf::remaining),
                    _ => 0,
                };
                if !this.rate.frame(len) {
                    return Poll::Ready(Some(Err(Slow::Rate(this.rate.min).into())));
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                this.rate.pending();
                let period = *this.period;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(period)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Slow::Idle(period).into()))),
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
        assert!(err.is::<Slow>(), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_below_the_minimum_rate_fails_and_time_not_asked_for_is_not_counted() {
        let (tx, rx) =
            tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(16);
        let body = http_body_util::StreamBody::new(tokio_stream_from(rx));
        let mut body = IdleTimeout::new(body, Duration::from_secs(60)).with_min_rate(100);
        // 50 bytes a second for as long as the body is read: the trickle is cut once a
        // window of waiting has passed.
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if tx
                    .send(Ok(Frame::data(Bytes::from(vec![b'x'; 50]))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let mut frames = 0;
        let err = loop {
            match body.frame().await.unwrap() {
                Ok(_) => frames += 1,
                Err(e) => break e,
            }
        };
        assert!(
            matches!(err.downcast_ref::<Slow>(), Some(Slow::Rate(100))),
            "{err}"
        );
        assert!((4..=6).contains(&frames), "{frames}");

        // A fast sender whose body is not asked for during a long pause is not slow.
        let (tx, rx) =
            tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(64);
        let body = http_body_util::StreamBody::new(tokio_stream_from(rx));
        let mut body = IdleTimeout::new(body, Duration::from_secs(60)).with_min_rate(100);
        for _ in 0..20 {
            tx.send(Ok(Frame::data(Bytes::from(vec![b'x'; 1000]))))
                .await
                .unwrap();
        }
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert!(body.frame().await.unwrap().is_ok());
        }
    }

    fn tokio_stream_from<T>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
