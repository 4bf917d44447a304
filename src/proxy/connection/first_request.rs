//! A connection's opening: a deadline for its first request, and the protocol ALPN chose held
//! to. A client that connects (or completes its TLS handshake, or sends the HTTP/2 preface) and
//! then no request would otherwise hold a connection slot for ever: hyper's header timeout
//! starts only once an HTTP/1 request has begun, telling HTTP/1 from HTTP/2 by the first bytes
//! waits without one, and an HTTP/2 connection without streams has none at all. The protocol is
//! still told by the first bytes (one connection type, so an idle connection costs what it
//! did), but a connection whose ALPN said `h2` and that does not open with the HTTP/2 preface,
//! or said `http/1.1` and opens with it, is closed there (RFC 9113 section 3.4: an invalid
//! preface is a connection error; RFC 7301: the protocol is the one agreed).

use crate::runtime::write_through::write_through;
use pin_project_lite::pin_project;
use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Sleep;

/// What every HTTP/2 connection opens with (RFC 9113 section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol the TLS handshake agreed on, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Agreed {
    /// No ALPN (or plain HTTP): the first bytes tell.
    Nothing,
    /// `h2`: the connection must open with the preface.
    H2,
    /// `http/1.1`: the connection must not open with the preface.
    Http1,
}

impl Agreed {
    /// What the ALPN protocol `alpn` agreed on.
    pub(crate) fn from_alpn(alpn: Option<&[u8]>) -> Self {
        match alpn {
            Some(b"h2") => Agreed::H2,
            Some(b"http/1.1") => Agreed::Http1,
            _ => Agreed::Nothing,
        }
    }
}

/// Whether a connection's first request has come.
pub(crate) trait Requested {
    fn requested(&self) -> bool;
}

pin_project! {
    /// `inner`, whose reads fail with `TimedOut` when no request has come by the deadline, and
    /// with `InvalidData` when the first bytes break what ALPN agreed; once both are past, it
    /// is `inner` alone.
    pub(crate) struct FirstRequest<IO, R> {
        #[pin]
        inner: IO,
        // Boxed and dropped once a request has come (seen when it fires, or at a read after
        // it): a connection pays for it only while it waits.
        deadline: Option<Pin<Box<Sleep>>>,
        requested: R,
        agreed: Agreed,
        // How many bytes of the preface have been seen; `None` once the check is over.
        matched: Option<u8>,
    }
}

impl<IO, R: Requested> FirstRequest<IO, R> {
    /// `inner`, with `within` for its first request (as `requested` tells) and `agreed` to
    /// hold its first bytes to.
    pub(crate) fn new(inner: IO, within: Duration, requested: R, agreed: Agreed) -> Self {
        FirstRequest {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(within))),
            requested,
            agreed,
            matched: (agreed != Agreed::Nothing).then_some(0),
        }
    }
}

/// Follows the preface through `bytes` from `matched` bytes in: the new count, or `None` when
/// the bytes left the preface or completed it, with whether they completed it.
fn follow(matched: u8, bytes: &[u8]) -> (Option<u8>, bool) {
    let mut at = usize::from(matched);
    for &byte in bytes {
        if PREFACE[at] != byte {
            return (None, false);
        }
        at += 1;
        if at == PREFACE.len() {
            return (None, true);
        }
    }
    (Some(at as u8), false)
}

impl<IO: AsyncRead, R: Requested> AsyncRead for FirstRequest<IO, R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if this.deadline.is_some() && this.requested.requested() {
            *this.deadline = None;
        }
        if this.deadline.is_none() && this.matched.is_none() {
            return this.inner.poll_read(cx, buf);
        }
        let before = buf.filled().len();
        match this.inner.poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if let Some(matched) = *this.matched {
                    let (still, preface) = follow(matched, new);
                    *this.matched = still;
                    let broken = match this.agreed {
                        Agreed::H2 => still.is_none() && !preface,
                        Agreed::Http1 => preface,
                        Agreed::Nothing => false,
                    };
                    if broken {
                        // What was read is not handed on: the error is all there is.
                        buf.set_filled(before);
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "the first bytes break the protocol ALPN agreed ({:?})",
                                this.agreed
                            ),
                        )));
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending
                if this
                    .deadline
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready()) =>
            {
                if this.requested.requested() {
                    *this.deadline = None;
                    return Poll::Pending;
                }
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request came in time",
                )))
            }
            other => other,
        }
    }
}

write_through!(impl[IO, R] FirstRequest<IO, R>);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    impl Requested for Arc<AtomicBool> {
        fn requested(&self) -> bool {
            self.load(Ordering::Relaxed)
        }
    }

    fn flag() -> Arc<AtomicBool> {
        Arc::new(AtomicBool::new(false))
    }

    #[tokio::test(start_paused = true)]
    async fn no_request_fails_the_read_and_a_request_disarms_it() {
        let (client, server) = tokio::io::duplex(64);
        let mut silent = FirstRequest::new(server, Duration::from_secs(5), flag(), Agreed::Nothing);
        let mut buf = [0u8; 8];
        let err = silent.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(client);

        // Bytes that make no request (an HTTP/2 preface, say) do not disarm it.
        let (mut client, server) = tokio::io::duplex(64);
        let mut preface_only =
            FirstRequest::new(server, Duration::from_secs(5), flag(), Agreed::Nothing);
        client.write_all(b"PRI").await.unwrap();
        assert_eq!(preface_only.read(&mut buf).await.unwrap(), 3);
        let err = preface_only.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);

        let (mut client, server) = tokio::io::duplex(64);
        let requested = flag();
        let mut talking = FirstRequest::new(
            server,
            Duration::from_secs(5),
            requested.clone(),
            Agreed::Nothing,
        );
        client.write_all(b"G").await.unwrap();
        assert_eq!(talking.read(&mut buf).await.unwrap(), 1);
        requested.store(true, Ordering::Relaxed);
        // Past the deadline, a connection that has made a request waits as long as it needs.
        tokio::time::sleep(Duration::from_secs(60)).await;
        client.write_all(b"ET").await.unwrap();
        assert_eq!(talking.read(&mut buf).await.unwrap(), 2);
    }

    /// Reads what `sent` (written in pieces of `piece` bytes) gives under `agreed`.
    async fn opening(agreed: Agreed, sent: &[u8], piece: usize) -> io::Result<Vec<u8>> {
        let (mut client, server) = tokio::io::duplex(256);
        let mut conn = FirstRequest::new(server, Duration::from_secs(5), flag(), agreed);
        for chunk in sent.chunks(piece) {
            client.write_all(chunk).await.unwrap();
        }
        drop(client);
        let mut got = Vec::new();
        conn.read_to_end(&mut got).await.map(|_| got)
    }

    #[tokio::test]
    async fn the_opening_must_match_what_alpn_agreed_however_it_is_split() {
        let h2 = [&PREFACE[..], b"\x00\x00\x00\x04"].concat();
        let h1 = b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
        for piece in [1, 5, 64] {
            assert!(opening(Agreed::H2, &h2, piece).await.is_ok());
            assert!(opening(Agreed::Nothing, &h2, piece).await.is_ok());
            assert!(opening(Agreed::Http1, h1, piece).await.is_ok());
            assert!(opening(Agreed::Nothing, h1, piece).await.is_ok());
            let wrong = opening(Agreed::H2, h1, piece).await.unwrap_err();
            assert_eq!(wrong.kind(), io::ErrorKind::InvalidData);
            let wrong = opening(Agreed::Http1, &h2, piece).await.unwrap_err();
            assert_eq!(wrong.kind(), io::ErrorKind::InvalidData);
            // A prefix of the preface followed by something else is not one.
            let mut near = PREFACE[..10].to_vec();
            near.extend_from_slice(b"XXXXXXXXXXXXXXXXXXXX");
            assert!(opening(Agreed::H2, &near, piece).await.is_err());
            assert!(opening(Agreed::Http1, &near, piece).await.is_ok());
        }
    }
}
