//! A request body read from an HTTP/3 stream, held to its `Content-Length`: h3 does not check
//! it, and a body longer or shorter than its length would reach an HTTP/1.1 upstream framed by
//! that length (request smuggling). Its end is known at once for a request that has none, so
//! that a GET goes upstream without a body, as it does from HTTP/1.1 and HTTP/2.

use crate::proxy::upstream::idle::BoxError;
use bytes::{Buf as _, Bytes};
use h3::error::Code;
use h3::server::RequestStream;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

/// The receiving half of a request stream.
pub(super) type Recv = RequestStream<h3_quinn::RecvStream, Bytes>;

/// What Porter refuses in an HTTP/3 request body.
#[derive(Debug, thiserror::Error)]
pub(super) enum Unframed {
    #[error("an HTTP/3 request body longer than its Content-Length")]
    Longer,
    #[error("an HTTP/3 request body shorter than its Content-Length")]
    Shorter,
}

/// The body of an HTTP/3 request.
pub(super) struct RequestBody {
    stream: Recv,
    /// What `Content-Length` said, if it said anything.
    declared: Option<u64>,
    /// Bytes read from the stream so far.
    read: u64,
    state: State,
    /// Whether a read is under way (h3-quinn holds the stream in it: telling the client to
    /// stop sending then panics in h3-quinn).
    reading: bool,
    /// A frame read while looking whether the body had ended already.
    early: Option<Result<Frame<Bytes>, BoxError>>,
}

#[derive(PartialEq, Eq)]
enum State {
    Data,
    Trailers,
    Done,
}

impl RequestBody {
    /// The body on `stream` of a request whose `Content-Length` is `declared`. What has come
    /// with the request's head is looked at once: a request without a body (its stream ended
    /// with its head, as nearly always in one packet) is known to have none.
    pub(super) fn new(stream: Recv, declared: Option<u64>) -> RequestBody {
        let mut body = RequestBody {
            stream,
            declared,
            read: 0,
            state: State::Data,
            reading: false,
            early: None,
        };
        if let Poll::Ready(Some(frame)) = body.poll_stream(&mut Context::from_waker(Waker::noop()))
        {
            body.early = Some(frame);
        }
        body
    }

    /// Waits until the body's end or its first frame is known. A client may send a request's
    /// head and the end of its stream in two packets: a GET forwarded before the end came
    /// would go upstream with a body of unknown length, and its stream be left half read.
    pub(super) async fn settled(&mut self) {
        if self.early.is_some() || self.state == State::Done {
            return;
        }
        let frame = std::future::poll_fn(|cx| self.poll_stream(cx)).await;
        self.early = frame;
    }

    /// Whether the client broke the request off before it could be answered (its stream reset
    /// with its head, as a client resetting streams as fast as it opens them does).
    pub(super) fn broken_off(&self) -> bool {
        matches!(self.early, Some(Err(_)))
    }

    fn poll_stream(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            match self.state {
                State::Data => match ready!(self.poll_data(cx)) {
                    Ok(Some(data)) => {
                        self.read += data.len() as u64;
                        if self.declared.is_some_and(|declared| self.read > declared) {
                            return Poll::Ready(Some(Err(self.refuse(Unframed::Longer))));
                        }
                        if !data.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                    }
                    // The data has ended, by the stream's end or by trailers.
                    Ok(None) => {
                        if self.declared.is_some_and(|declared| self.read < declared) {
                            return Poll::Ready(Some(Err(self.refuse(Unframed::Shorter))));
                        }
                        self.state = State::Trailers;
                    }
                    Err(e) => {
                        self.state = State::Done;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                },
                State::Trailers => {
                    let polled = self.stream.poll_recv_trailers(cx);
                    self.reading = polled.is_pending();
                    let trailers = ready!(polled);
                    self.state = State::Done;
                    return Poll::Ready(match trailers {
                        Ok(Some(trailers)) => Some(Ok(Frame::trailers(trailers))),
                        Ok(None) => None,
                        Err(e) => Some(Err(e.into())),
                    });
                }
                State::Done => return Poll::Ready(None),
            }
        }
    }

    /// The next data, `reading` kept up to date.
    fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, h3::error::StreamError>> {
        let polled = self.stream.poll_recv_data(cx);
        self.reading = polled.is_pending();
        let data = ready!(polled)?;
        Poll::Ready(Ok(
            data.map(|mut chunk| chunk.copy_to_bytes(chunk.remaining()))
        ))
    }

    /// Ends the body with `why`, telling the client to stop sending it (RFC 9114 section
    /// 4.1.2: a malformed message).
    fn refuse(&mut self, why: Unframed) -> BoxError {
        self.state = State::Done;
        self.stream.stop_sending(Code::H3_MESSAGE_ERROR);
        why.into()
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.early.take() {
            Some(frame) => Poll::Ready(Some(frame)),
            None => self.poll_stream(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.early.is_none() && self.state == State::Done
    }

    fn size_hint(&self) -> SizeHint {
        let early = match &self.early {
            Some(Ok(frame)) => frame.data_ref().map_or(0, |d| d.len() as u64),
            _ => 0,
        };
        match self.declared {
            Some(declared) => SizeHint::with_exact(declared.saturating_sub(self.read) + early),
            None => SizeHint::new(),
        }
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        // Answered without the rest of its body: the client stops sending it and keeps the
        // response (RFC 9114 section 4.1). With a read under way, quinn says so itself when
        // the stream goes, with code 0.
        if self.state != State::Done && !self.reading {
            self.stream.stop_sending(Code::H3_NO_ERROR);
        }
    }
}
