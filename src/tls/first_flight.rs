//! The records of a connection's first flight, judged as they are read, before rustls's
//! `Acceptor` parses them, for what it answers differently from a rustls connection (RFC 8446
//! sections 4 and 5): a first handshake message that is not a ClientHello (the `Acceptor`
//! fails to decode it and says `decode_error`), and a heartbeat record (TLS has none; type 24)
//! read along with the ClientHello (the `Acceptor` leaves it in its buffer, where the handshake
//! only looks once the client sends more, holding the connection until the handshake timeout).
//! Either fails the read with [`Unexpected`], for an `unexpected_message` alert.

use crate::runtime::write_through::write_through;
use pin_project_lite::pin_project;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// The record content type of handshake messages.
const HANDSHAKE: u8 = 22;
/// The record content type of heartbeats (RFC 6520), which Porter never negotiates.
const HEARTBEAT: u8 = 24;
/// The handshake type of a ClientHello.
const CLIENT_HELLO: u8 = 1;
/// The bytes of a record header: type, version, length.
const HEADER: usize = 5;

/// A first flight that must be refused with `unexpected_message`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unexpected {
    #[error("the first handshake message is of type {0}, not a ClientHello")]
    NotClientHello(u8),
    #[error("a heartbeat record came with the ClientHello")]
    Heartbeat,
}

pin_project! {
    /// `inner`, whose reads fail with [`Unexpected`] (an `InvalidData` error) when the records
    /// read break what is judged; writes pass through.
    pub(crate) struct FirstFlight<IO> {
        #[pin]
        inner: IO,
        records: Records,
    }
}

impl<IO> FirstFlight<IO> {
    pub(crate) fn new(inner: IO) -> Self {
        FirstFlight {
            inner,
            records: Records::default(),
        }
    }

    pub(crate) fn into_inner(self) -> IO {
        self.inner
    }
}

/// Where the reading is in the record framing.
#[derive(Default)]
struct Records {
    /// Header bytes of the current record seen, and that header.
    header: [u8; HEADER],
    seen: usize,
    /// Payload bytes of the current record still to come.
    left: usize,
    /// Whether the next payload byte opens the first handshake message.
    first_message: bool,
    /// Whether a record header has been seen whole.
    started: bool,
    /// Set once the bytes are not TLS records: rustls refuses those itself.
    stopped: bool,
}

impl Records {
    /// Follows the records through `bytes`.
    fn follow(&mut self, mut bytes: &[u8]) -> Result<(), Unexpected> {
        while !self.stopped && !bytes.is_empty() {
            if self.left > 0 {
                if std::mem::take(&mut self.first_message) && bytes[0] != CLIENT_HELLO {
                    return Err(Unexpected::NotClientHello(bytes[0]));
                }
                let skipped = self.left.min(bytes.len());
                self.left -= skipped;
                bytes = &bytes[skipped..];
                continue;
            }
            self.header[self.seen] = bytes[0];
            bytes = &bytes[1..];
            if self.seen == 0 {
                // Judged on its type byte alone: the rest of the record may never come.
                match self.header[0] {
                    HEARTBEAT => return Err(Unexpected::Heartbeat),
                    20..=23 => {}
                    _ => {
                        self.stopped = true;
                        continue;
                    }
                }
            }
            self.seen += 1;
            if self.seen == HEADER {
                self.seen = 0;
                self.left = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                self.first_message = !self.started && self.header[0] == HANDSHAKE;
                self.started = true;
            }
        }
        Ok(())
    }
}

impl<IO: AsyncRead> AsyncRead for FirstFlight<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        ready!(this.inner.poll_read(cx, buf))?;
        if let Err(unexpected) = this.records.follow(&buf.filled()[before..]) {
            // What was read is not handed on: the error is all there is.
            buf.set_filled(before);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, unexpected)));
        }
        Poll::Ready(Ok(()))
    }
}

write_through!(impl[IO] FirstFlight<IO>);

#[cfg(test)]
mod tests {
    use super::*;

    /// What following `flight` in pieces of `piece` bytes makes of it.
    fn judged(flight: &[u8], piece: usize) -> Result<(), Unexpected> {
        let mut records = Records::default();
        flight
            .chunks(piece)
            .try_for_each(|chunk| records.follow(chunk))
    }

    #[test]
    fn a_client_hello_passes_and_what_tls_forbids_with_it_does_not_however_split() {
        let hello = [&[22, 3, 1, 0, 6][..], &[1, 0, 0, 2, 3, 3]].concat();
        let ccs = [20, 3, 3, 0, 1, 1];
        let heartbeat = [24, 3, 3, 0, 3, 1, 0, 0];
        let finished = [22, 3, 1, 0, 4, 20, 0, 0, 0];
        for piece in [1, 3, 64] {
            assert!(judged(&hello, piece).is_ok());
            assert!(judged(&[&hello[..], &ccs].concat(), piece).is_ok());
            assert!(matches!(
                judged(&[&hello[..], &heartbeat].concat(), piece),
                Err(Unexpected::Heartbeat)
            ));
            assert!(matches!(
                judged(&finished, piece),
                Err(Unexpected::NotClientHello(20))
            ));
            // Only the first handshake message is judged.
            assert!(judged(&[&hello[..], &finished].concat(), piece).is_ok());
            // Not TLS at all (plain HTTP, say): left to rustls.
            assert!(judged(b"GET / HTTP/1.1\r\n\x18\x18", piece).is_ok());
        }
    }
}
