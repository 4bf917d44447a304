//! An HTTP/1.0 request answered with an `HTTP/1.1` status line, as RFC 9110 section 2.5 asks
//! (a server sends the highest minor version it supports; nginx and HAProxy do). hyper writes
//! the request's version, and reads it to keep HTTP/1.0's rules for the response (no chunked
//! coding, a close unless kept alive), which stay: only the version's one digit is changed, on
//! its way out, in the head of a response [`Answering::http10`] announced.

use pin_project_lite::pin_project;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How an HTTP/1.0 response head starts, as hyper writes it.
const HTTP10: &[u8; 9] = b"HTTP/1.0 ";
/// Where its minor version is.
const MINOR: usize = 7;

/// Whether the next response written on a connection answers an HTTP/1.0 request.
pub(crate) trait Answering {
    /// True once after the service announced such a response: asked at the next write.
    fn http10(&self) -> bool;
}

/// Arms the change when a write starting with `start` is the head of an announced response.
/// hyper writes a head at the start of a write: its buffer holds nothing older once it has
/// read the next request (unless the client stopped reading: the head is then left as it is).
fn arm(minor_in: &mut Option<usize>, answering: &impl Answering, start: &[u8]) {
    if minor_in.is_none() && answering.http10() && start.starts_with(HTTP10) {
        *minor_in = Some(MINOR);
    }
}

/// At most this much of a head is copied to change its digit: the whole head, nearly always.
const HEAD_COPY: usize = 2048;

/// Writes `buf` with the head's minor version (`minor_in` bytes on) as `1`: one write of a
/// copy of its first bytes (on the stack), so the head still goes out in one piece.
fn write_head<IO: AsyncWrite>(
    inner: Pin<&mut IO>,
    minor_in: &mut Option<usize>,
    cx: &mut Context<'_>,
    buf: &[u8],
) -> Poll<io::Result<usize>> {
    let Some(at) = *minor_in else {
        return inner.poll_write(cx, buf);
    };
    if at >= buf.len() {
        let written = ready!(inner.poll_write(cx, buf))?;
        *minor_in = Some(at - written);
        return Poll::Ready(Ok(written));
    }
    let mut copy = [0u8; HEAD_COPY];
    let len = buf.len().min(HEAD_COPY);
    copy[..len].copy_from_slice(&buf[..len]);
    copy[at] = b'1';
    let written = ready!(inner.poll_write(cx, &copy[..len]))?;
    *minor_in = (written <= at).then(|| at - written);
    Poll::Ready(Ok(written))
}

pin_project! {
    /// `inner`, writing the status line of responses to HTTP/1.0 requests as `HTTP/1.1`.
    pub(crate) struct StatusLine<IO, A> {
        #[pin]
        inner: IO,
        answering: A,
        // Bytes until the minor version digit to write as `1`, while a head is being written.
        minor_in: Option<usize>,
    }
}

impl<IO, A> StatusLine<IO, A> {
    pub(crate) fn new(inner: IO, answering: A) -> Self {
        StatusLine {
            inner,
            answering,
            minor_in: None,
        }
    }
}

impl<IO: AsyncRead, A> AsyncRead for StatusLine<IO, A> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite, A: Answering> AsyncWrite for StatusLine<IO, A> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        arm(this.minor_in, this.answering, buf);
        write_head(this.inner, this.minor_in, cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        arm(this.minor_in, this.answering, first);
        match this.minor_in {
            None => this.inner.poll_write_vectored(cx, bufs),
            // The head is written on its own (a short write is a write); it is whole in
            // its one slice, so it still goes out in one piece.
            Some(_) => write_head(this.inner, this.minor_in, cx, first),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    impl Answering for Arc<AtomicBool> {
        fn http10(&self) -> bool {
            self.swap(false, Ordering::Relaxed)
        }
    }

    /// What the peer reads of `writes` written in turn, the first announced as answering an
    /// HTTP/1.0 request when `announced`, through a pipe of `capacity` bytes (short writes).
    async fn written(writes: &[&[u8]], announced: bool, capacity: usize) -> Vec<u8> {
        let (server, mut client) = tokio::io::duplex(capacity);
        let reading = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut line = StatusLine::new(server, Arc::new(AtomicBool::new(announced)));
        for write in writes {
            line.write_all(write).await.unwrap();
        }
        line.shutdown().await.unwrap();
        drop(line);
        reading.await.unwrap()
    }

    #[tokio::test]
    async fn only_an_announced_http10_head_is_changed_and_only_its_version() {
        let head: &[u8] = b"HTTP/1.0 200 OK\r\ncontent-length: 17\r\n\r\n";
        let body: &[u8] = b"HTTP/1.0 200 body";
        for capacity in [1, 4, 1024] {
            let got = written(&[head, body], true, capacity).await;
            assert_eq!(
                got,
                [&b"HTTP/1.1 200 OK\r\ncontent-length: 17\r\n\r\n"[..], body].concat()
            );
            assert_eq!(
                written(&[head, body], false, capacity).await,
                [head, body].concat()
            );
            // The announcement is for the next write only, which must start with the head.
            let older: &[u8] = b"end of an older response";
            assert_eq!(
                written(&[older, head], true, capacity).await,
                [older, head].concat()
            );
        }
    }

    /// Every write it was given, as given.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl AsyncWrite for Writes {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.0.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn the_changed_head_goes_out_in_one_write() {
        let mut line = StatusLine::new(Writes::default(), Arc::new(AtomicBool::new(true)));
        line.write_all(b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(
            line.inner.0,
            [b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec()]
        );
    }
}
