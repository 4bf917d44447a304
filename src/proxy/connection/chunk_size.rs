//! A bound on the chunk sizes of HTTP/1 request bodies. hyper takes any chunk size a `u64`
//! holds and never shows it to Porter; a size above `i64::MAX` (no body is that long, and a
//! server that keeps sizes in a signed offset overflows on it) is answered 400, as nginx and
//! HAProxy do. [`ChunkSize`] follows the request framing on the read side of an HTTP/1
//! connection just enough to see each chunk-size line: every request head (for its framing
//! only), then its body (skipped by length, or walked chunk by chunk to its trailers), then
//! the next pipelined request. The read that reaches an absurd size ends before that size's
//! offending digit, and the next one fails with `InvalidData`, inside hyper's body decoder,
//! which makes it a body error exactly as its own chunk-size overflow is.
//!
//! It fails open: whatever it does not follow the way hyper does (a head it does not
//! understand, CONNECT or Upgrade, HTTP/2 prior knowledge, a malformed chunk line) ends the
//! following for the rest of the connection, and bytes pass as they come. It neither copies
//! nor allocates: its state is a few numbers, and body bytes are skipped, not looked at.

use crate::runtime::write_through::write_through;
use pin_project_lite::pin_project;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// The largest chunk size accepted.
const MAX_CHUNK: u64 = i64::MAX as u64;

/// The header fields whose name matters to the framing, in the order of [`Field`]'s kinds.
const NAMES: [&[u8]; 3] = [b"content-length", b"transfer-encoding", b"upgrade"];

/// What a request line's method must be to make a tunnel.
const CONNECT: &[u8] = b"CONNECT";

/// What a request line's version starts with (the minor digit follows).
const HTTP1: &[u8] = b"HTTP/1.";

/// A `Content-Length` value as it is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Digits {
    /// `None` once the value is not a length hyper would take.
    value: Option<u64>,
    /// Whether a digit has come.
    begun: bool,
    /// Whether white space came after the digits: no digit may follow.
    ended: bool,
}

/// The last coding of a `Transfer-Encoding` value as it is read: whether it is `chunked`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct LastCoding {
    /// How many bytes of `chunked` the coding after the last comma matched so far.
    matched: u8,
    /// Whether that coding can no longer be `chunked`.
    spoiled: bool,
    /// Whether white space came after it: anything but a comma spoils it.
    ended: bool,
    /// Whether the value has a byte that is not ASCII (hyper then does not read it as text).
    opaque: bool,
}

/// A header field being read whose value matters to the framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Other,
    ContentLength(Digits),
    TransferEncoding(LastCoding),
}

/// What the `Content-Length` fields of a head declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Declared {
    Nothing,
    Length(u64),
    /// Invalid, or two that differ.
    Invalid,
}

/// Where in the client's bytes the next one is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Before a request line (empty lines are skipped, as hyper does).
    Idle,
    /// In the method, with how many bytes of `CONNECT` it matched (`u8::MAX`: not it).
    Method(u8),
    Target,
    /// In the version, with how many of its bytes came.
    Version(u8),
    /// A line ended with `\r`: `\n` must follow.
    LineFeed,
    /// At the start of a header line, or of the empty line that ends the head.
    LineStart,
    /// `\r` at the start of a line: the head ends at the `\n`.
    HeadEnd,
    /// In a header name, with its length so far and which of [`NAMES`] it still matches.
    Name {
        len: u8,
        candidates: u8,
    },
    Value(Field),
    /// Body bytes left of a request with a length.
    Length(u64),
    /// At the start of a chunk-size line.
    ChunkStart,
    /// In the size's digits, with the size so far.
    ChunkSize(u64),
    /// White space after the size's digits.
    ChunkSpace(u64),
    ChunkExtension(u64),
    /// The size line ended with `\r`: `\n` must follow.
    ChunkLineFeed(u64),
    /// Bytes left of a chunk's data.
    ChunkData(u64),
    DataCr,
    DataLf,
    /// After the last chunk: a trailer line, or the empty line that ends the body.
    Trailers,
    Trailer,
    TrailerLf,
    EndLf,
    /// No longer followed: every byte passes.
    Off,
    /// A chunk size over the bound came: every read fails.
    Refused,
}

impl Step {
    /// Whether the step is in a chunked body, outside its data.
    fn in_chunked_body(self) -> bool {
        matches!(
            self,
            Step::ChunkStart
                | Step::ChunkSize(_)
                | Step::ChunkSpace(_)
                | Step::ChunkExtension(_)
                | Step::ChunkLineFeed(_)
                | Step::DataCr
                | Step::DataLf
                | Step::Trailers
                | Step::Trailer
                | Step::TrailerLf
                | Step::EndLf
        )
    }
}

/// The request framing of one connection's bytes, as far as it is followed.
#[derive(Clone, Copy, Debug)]
struct Framing {
    step: Step,
    /// What the head's `Transfer-Encoding` fields said, the last one winning: chunked or not.
    chunked: Option<bool>,
    length: Declared,
}

impl Framing {
    /// A connection's framing, from its first byte when `followed`, else not at all.
    fn new(followed: bool) -> Self {
        Framing {
            step: if followed { Step::Idle } else { Step::Off },
            chunked: None,
            length: Declared::Nothing,
        }
    }

    /// Follows `bytes`, the next the client sent: `Err(at)` when the byte at `at` took a
    /// chunk size over the bound (or one already had); all bytes after it are refused too.
    fn follow(&mut self, bytes: &[u8]) -> Result<(), usize> {
        let mut at = 0;
        while at < bytes.len() {
            match self.step {
                Step::Off => return Ok(()),
                Step::Refused => return Err(at),
                Step::Length(left) => {
                    let skipped = left.min((bytes.len() - at) as u64);
                    at += skipped as usize;
                    self.step = match left - skipped {
                        0 => Step::Idle,
                        left => Step::Length(left),
                    };
                }
                Step::ChunkData(left) => {
                    let skipped = left.min((bytes.len() - at) as u64);
                    at += skipped as usize;
                    self.step = match left - skipped {
                        0 => Step::DataCr,
                        left => Step::ChunkData(left),
                    };
                }
                _ => {
                    self.step = self.next(bytes[at]);
                    if self.step == Step::Refused {
                        return Err(at);
                    }
                    at += 1;
                }
            }
        }
        Ok(())
    }

    /// The step after `byte`, in a head or at a chunk's edges.
    fn next(&mut self, byte: u8) -> Step {
        if self.step.in_chunked_body() {
            chunked(self.step, byte)
        } else {
            self.in_head(byte)
        }
    }

    /// The step after `byte` in a request head.
    fn in_head(&mut self, byte: u8) -> Step {
        match (self.step, byte) {
            (Step::Idle, b'\r' | b'\n') => Step::Idle,
            (Step::Idle, _) => Step::Method(matched(CONNECT, 0, byte)),
            (Step::Method(m), b' ') if usize::from(m) == CONNECT.len() => Step::Off,
            (Step::Method(_), b' ') => Step::Target,
            (Step::Method(_) | Step::Target, b'\r' | b'\n') => Step::Off,
            (Step::Method(m), _) => Step::Method(matched(CONNECT, m, byte)),
            (Step::Target, b' ') => Step::Version(0),
            (Step::Target, _) => Step::Target,
            (Step::Version(n), _) if usize::from(n) < HTTP1.len() => {
                if matched(HTTP1, n, byte) == n + 1 {
                    Step::Version(n + 1)
                } else {
                    Step::Off
                }
            }
            (Step::Version(n), b'0' | b'1') if usize::from(n) == HTTP1.len() => {
                Step::Version(n + 1)
            }
            (Step::Version(n), b'\r') if usize::from(n) > HTTP1.len() => Step::LineFeed,
            (Step::Version(n), b'\n') if usize::from(n) > HTTP1.len() => Step::LineStart,
            (Step::LineFeed, b'\n') => Step::LineStart,
            (Step::LineStart, b'\r') => Step::HeadEnd,
            (Step::LineStart | Step::HeadEnd, b'\n') => self.framed(),
            // Obsolete line folding (which hyper refuses) and an empty name.
            (Step::LineStart, b' ' | b'\t' | b':') => Step::Off,
            (Step::LineStart, _) => Step::Name {
                len: 1,
                candidates: narrowed(0b111, 0, byte),
            },
            (Step::Name { len, candidates }, b':') => self.field(len, candidates),
            (Step::Name { .. }, b' ' | b'\t' | b'\r' | b'\n') => Step::Off,
            (Step::Name { len, candidates }, _) => Step::Name {
                len: len.saturating_add(1),
                candidates: narrowed(candidates, len, byte),
            },
            (Step::Value(field), b'\r') => {
                self.ended(field);
                Step::LineFeed
            }
            (Step::Value(field), b'\n') => {
                self.ended(field);
                Step::LineStart
            }
            (Step::Value(field), _) => Step::Value(field.with(byte)),
            // Whatever hyper refuses.
            _ => Step::Off,
        }
    }

    /// The value step of the field whose name (of `len` bytes) still matches `candidates`.
    fn field(&self, len: u8, candidates: u8) -> Step {
        let named = (0..NAMES.len())
            .find(|&i| candidates & (1 << i) != 0 && NAMES[i].len() == usize::from(len));
        match named {
            Some(0) => Step::Value(Field::ContentLength(Digits {
                value: Some(0),
                begun: false,
                ended: false,
            })),
            Some(1) => Step::Value(Field::TransferEncoding(LastCoding::default())),
            // Upgrade: what follows the head may be another protocol.
            Some(_) => Step::Off,
            None => Step::Value(Field::Other),
        }
    }

    /// Takes in what the field just read said about the framing.
    fn ended(&mut self, field: Field) {
        match field {
            Field::Other => {}
            Field::ContentLength(digits) => {
                let value = digits.value.filter(|_| digits.begun);
                self.length = match (self.length, value) {
                    (Declared::Nothing, Some(length)) => Declared::Length(length),
                    (Declared::Length(before), Some(length)) if before == length => {
                        Declared::Length(length)
                    }
                    _ => Declared::Invalid,
                };
            }
            Field::TransferEncoding(coding) => {
                self.chunked = Some(
                    !coding.opaque
                        && !coding.spoiled
                        && usize::from(coding.matched) == b"chunked".len(),
                );
            }
        }
    }

    /// The step after a head, by its framing as hyper reads it: a `Transfer-Encoding` wins
    /// over any `Content-Length`, and must end in `chunked`.
    fn framed(&mut self) -> Step {
        let step = match (self.chunked, self.length) {
            (Some(true), _) => Step::ChunkStart,
            (Some(false), _) | (None, Declared::Invalid) => Step::Off,
            (None, Declared::Length(length)) if length > 0 => Step::Length(length),
            (None, _) => Step::Idle,
        };
        self.chunked = None;
        self.length = Declared::Nothing;
        step
    }
}

/// The step after `byte` at a chunk's edges (its size line, the line end after its data) or
/// in the trailers, as hyper's decoder takes them.
fn chunked(step: Step, byte: u8) -> Step {
    match (step, byte) {
        (Step::ChunkStart, _) => hex(byte).map_or(Step::Off, Step::ChunkSize),
        (Step::ChunkSize(size), _) if byte.is_ascii_hexdigit() => size
            .checked_mul(16)
            .zip(hex(byte))
            .and_then(|(size, digit)| size.checked_add(digit))
            .filter(|&size| size <= MAX_CHUNK)
            .map_or(Step::Refused, Step::ChunkSize),
        (Step::ChunkSize(size) | Step::ChunkSpace(size), b' ' | b'\t') => Step::ChunkSpace(size),
        (Step::ChunkSize(size) | Step::ChunkSpace(size) | Step::ChunkExtension(size), b'\r') => {
            Step::ChunkLineFeed(size)
        }
        (Step::ChunkSize(size) | Step::ChunkSpace(size), b';') => Step::ChunkExtension(size),
        (Step::ChunkExtension(_), b'\n') => Step::Off,
        (Step::ChunkExtension(size), _) => Step::ChunkExtension(size),
        (Step::ChunkLineFeed(0), b'\n') => Step::Trailers,
        (Step::ChunkLineFeed(size), b'\n') => Step::ChunkData(size),
        (Step::DataCr, b'\r') => Step::DataLf,
        (Step::DataLf, b'\n') => Step::ChunkStart,
        (Step::Trailers, b'\r') => Step::EndLf,
        (Step::Trailer, b'\r') => Step::TrailerLf,
        (Step::Trailers | Step::Trailer, _) => Step::Trailer,
        (Step::TrailerLf, b'\n') => Step::Trailers,
        (Step::EndLf, b'\n') => Step::Idle,
        // Whatever hyper refuses.
        _ => Step::Off,
    }
}

impl Field {
    /// The field after one more byte of its value.
    fn with(self, byte: u8) -> Field {
        match self {
            Field::Other => Field::Other,
            Field::ContentLength(mut digits) => {
                match byte {
                    b'0'..=b'9' if !digits.ended => {
                        digits.begun = true;
                        digits.value = digits
                            .value
                            .and_then(|v| v.checked_mul(10)?.checked_add(u64::from(byte - b'0')));
                    }
                    b' ' | b'\t' if digits.begun => digits.ended = true,
                    b' ' | b'\t' => {}
                    _ => digits.value = None,
                }
                Field::ContentLength(digits)
            }
            Field::TransferEncoding(mut coding) => {
                match byte {
                    b',' => {
                        coding = LastCoding {
                            opaque: coding.opaque,
                            ..LastCoding::default()
                        }
                    }
                    b' ' | b'\t' => coding.ended |= coding.matched > 0 || coding.spoiled,
                    _ if byte >= 0x80 => coding.opaque = true,
                    _ if coding.ended || coding.spoiled => coding.spoiled = true,
                    _ => {
                        let next = matched(b"chunked", coding.matched, byte.to_ascii_lowercase());
                        if next == coding.matched + 1 {
                            coding.matched = next;
                        } else {
                            coding.spoiled = true;
                        }
                    }
                }
                Field::TransferEncoding(coding)
            }
        }
    }
}

/// How many bytes of `word` are matched once `byte` follows `so_far` matched ones (`u8::MAX`
/// once it cannot be `word`).
fn matched(word: &[u8], so_far: u8, byte: u8) -> u8 {
    if word.get(usize::from(so_far)) == Some(&byte) {
        so_far + 1
    } else {
        u8::MAX
    }
}

/// Which of `candidates` (bits over [`NAMES`]) have `byte` (in any case) at `at`.
fn narrowed(candidates: u8, at: u8, byte: u8) -> u8 {
    let byte = byte.to_ascii_lowercase();
    (0..NAMES.len())
        .filter(|&i| candidates & (1 << i) != 0 && NAMES[i].get(usize::from(at)) == Some(&byte))
        .fold(0, |bits, i| bits | (1 << i))
}

/// The value of a hexadecimal digit.
fn hex(byte: u8) -> Option<u64> {
    char::from(byte).to_digit(16).map(u64::from)
}

/// The error a read gives once a chunk size over the bound came.
fn refused() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "invalid chunk size: over i64::MAX",
    )
}

pin_project! {
    /// `inner`, whose reads fail with `InvalidData` from a chunk size over the bound on.
    pub(crate) struct ChunkSize<IO> {
        #[pin]
        inner: IO,
        framing: Framing,
    }
}

impl<IO> ChunkSize<IO> {
    /// `inner`, its requests' framing followed when `followed` (HTTP/1, or not known yet).
    pub(crate) fn new(inner: IO, followed: bool) -> Self {
        ChunkSize {
            inner,
            framing: Framing::new(followed),
        }
    }
}

impl<IO: AsyncRead> AsyncRead for ChunkSize<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        match this.framing.step {
            Step::Off => return this.inner.poll_read(cx, buf),
            Step::Refused => return Poll::Ready(Err(refused())),
            _ => {}
        }
        let before = buf.filled().len();
        ready!(this.inner.poll_read(cx, buf))?;
        if let Err(at) = this.framing.follow(&buf.filled()[before..]) {
            tracing::debug!("a request's chunk size is over i64::MAX: refused");
            // The bytes before the size's offending digit are read, so that the error comes
            // where hyper reads that digit, in the body.
            buf.set_filled(before + at);
            if at == 0 {
                return Poll::Ready(Err(refused()));
            }
        }
        Poll::Ready(Ok(()))
    }
}

write_through!(impl[IO] ChunkSize<IO>);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Where `message` is refused when read in pieces ending at `cuts`: the index of the byte
    /// that took a chunk size over the bound, or `None`.
    fn refused_at(message: &[u8], cuts: &[usize]) -> Option<usize> {
        let mut framing = Framing::new(true);
        let mut start = 0;
        for end in cuts.iter().copied().chain([message.len()]) {
            if let Err(at) = framing.follow(&message[start..end]) {
                return Some(start + at);
            }
            start = end;
        }
        None
    }

    /// Where `message` is refused, checked to be the same however its bytes arrive: in one
    /// read, in two at every cut, and one byte at a time.
    fn refused_in_any_reads(message: &[u8]) -> Option<usize> {
        let whole = refused_at(message, &[]);
        let text = String::from_utf8_lossy(message);
        for cut in 1..message.len() {
            assert_eq!(refused_at(message, &[cut]), whole, "cut at {cut}: {text:?}");
        }
        let every: Vec<usize> = (1..message.len()).collect();
        assert_eq!(refused_at(message, &every), whole, "byte by byte: {text:?}");
        whole
    }

    const CHUNKED: &str = "POST /up HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n";

    /// A chunked request with a chunk of `size` (hexadecimal), where the digit that takes
    /// it over the bound is, if one does.
    fn absurd(size: &str) -> (String, Option<usize>) {
        let mut value = 0u64;
        let over = size.bytes().position(|digit| {
            let next = value
                .checked_mul(16)
                .and_then(|v| v.checked_add(hex(digit).unwrap()));
            value = next.unwrap_or(u64::MAX);
            next.is_none_or(|v| v > i64::MAX as u64)
        });
        let request = format!("{CHUNKED}{size}\r\nabc\r\n0\r\n\r\n");
        (request, over.map(|digit| CHUNKED.len() + digit))
    }

    #[test]
    fn a_size_over_i64_max_is_refused_at_its_digit_however_the_bytes_arrive() {
        for size in [
            "ffffffffffffffff",
            "8000000000000000",
            "FFFFFFFFFFFFFFFF0",
            "10000000000000000",
            "ffffffffffffffffffffff",
        ] {
            let (request, over) = absurd(size);
            assert!(over.is_some(), "{size}");
            assert_eq!(refused_in_any_reads(request.as_bytes()), over, "{size}");
        }
        // i64::MAX itself is a size (its data never ends here), as are leading zeros.
        for size in ["7fffffffffffffff", "00000000000000000000003"] {
            let (request, over) = absurd(size);
            assert_eq!(over, None, "{size}");
            assert_eq!(refused_in_any_reads(request.as_bytes()), None, "{size}");
        }
    }

    #[test]
    fn framing_is_followed_through_pipelined_requests_to_the_next_chunk_size() {
        let followed = [
            "\r\nGET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
            // A body of known length, which looks like an absurd chunked request.
            "POST /form HTTP/1.1\r\nhost: a.test\r\ncontent-length:  72\r\nContent-Length: 72\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n\r\n0\r\n\r\n",
            // Extensions, white space, upper-case digits, trailers.
            "POST /e HTTP/1.1\r\nTRANSFER-encoding: gzip ,  Chunked \r\n\r\n",
            "3 ;name=value\r\nabc\r\nA\t\r\n0123456789\r\n0;last\r\nX-Sum: 1\r\nY: 2\r\n\r\n",
            // The last Transfer-Encoding line decides, and wins over a length, before or after.
            "PUT /t HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: gzip\r\n",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n2\r\nab\r\n0\r\n\r\n",
            // Bare line feeds end lines, as hyper takes them.
            "POST /lf HTTP/1.0\nContent-Length: 2\n\nok",
            // A request whose method only starts like CONNECT.
            "CONNECTED / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
        ]
        .concat();
        let (bad, over) = absurd("ffffffffffffffff");
        let message = format!("{followed}{bad}");
        assert_eq!(
            refused_in_any_reads(message.as_bytes()),
            over.map(|at| followed.len() + at)
        );
        assert_eq!(refused_in_any_reads(followed.as_bytes()), None);
    }

    #[test]
    fn what_it_does_not_follow_passes_for_the_rest_of_the_connection() {
        let (bad, _) = absurd("ffffffffffffffff");
        for opening in [
            "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n",
            "GET /ws HTTP/1.1\r\nHost: a.test\r\nupgrade: websocket\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET / HTTP/1.2\r\n\r\n",
            "GET /\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a.test\r\n folded\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : a.test\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunkedx\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: ch\u{e9}, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
            // A malformed chunk line: hyper refuses it, and no framing follows.
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3x\r\n",
        ] {
            let message = format!("{opening}{bad}");
            assert_eq!(
                refused_in_any_reads(message.as_bytes()),
                None,
                "{opening:?}"
            );
        }
        let mut framing = Framing::new(false);
        assert_eq!(framing.follow(bad.as_bytes()), Ok(()));
    }

    /// What reads through a [`ChunkSize`] give of `message`, written in pieces of `piece`
    /// bytes: the bytes read, and the error that ended them.
    async fn read_through(message: &[u8], piece: usize, followed: bool) -> (Vec<u8>, io::Error) {
        let (mut client, server) = tokio::io::duplex(64);
        let mut reader = ChunkSize::new(server, followed);
        let message = message.to_vec();
        let writing = tokio::spawn(async move {
            for part in message.chunks(piece) {
                // The reader stops at the error; what it leaves unread may not fit.
                if client.write_all(part).await.is_err() {
                    break;
                }
            }
        });
        let mut got = Vec::new();
        let mut buf = [0u8; 32];
        let error = loop {
            match reader.read(&mut buf).await {
                Ok(0) => break io::Error::from(io::ErrorKind::UnexpectedEof),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break e,
            }
        };
        drop(reader);
        writing.await.unwrap();
        (got, error)
    }

    #[tokio::test]
    async fn reads_end_before_the_offending_digit_and_then_fail() {
        let (bad, over) = absurd("8000000000000000");
        let over = over.unwrap();
        for piece in [1, 7, 1024] {
            let (got, error) = read_through(bad.as_bytes(), piece, true).await;
            assert_eq!(got, &bad.as_bytes()[..over], "pieces of {piece}");
            assert_eq!(
                error.kind(),
                io::ErrorKind::InvalidData,
                "pieces of {piece}"
            );
            // Not followed (HTTP/2): everything passes.
            let (got, error) = read_through(bad.as_bytes(), piece, false).await;
            assert_eq!(got, bad.as_bytes());
            assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        }
    }
}
