//! The raw-socket fault path: a connection whose write side a request can spoil.
//!
//! hyper writes every answer, well formed. A dropped connection (no response byte at all) and a
//! truncated body (a 200 head promising `Content-Length: N`, then fewer than N bytes, then the end
//! of the connection) cannot be expressed as a hyper response, so the socket hyper writes to is a
//! [`FaultyStream`]: the service arms its [`WireFault`] for the answer it is returning, and the
//! stream then really puts those bytes (or none) on the wire and closes the connection with a FIN.
//! Unarmed, it is a plain pass-through, so keep-alive works for every normal answer.
//!
//! The stream is also where a create's answer is known to be written: the service asks it to
//! watch the answer, and once its last body byte is accepted by the socket, the attempt is
//! settled as delivered. A client that closes or dies with data unread makes its end reset the
//! connection; when that reset is read after a delivered answer (and before the client sent
//! anything more, which it does only after reading the answer), the answer is settled unread.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::state::{AnswerFate, Shared};

// Mode 0 (the default) is a plain pass-through.
const DROP: u8 = 1;
const TRUNCATE: u8 = 2;

/// How the next answer on a connection is spoiled; shared by the service (which arms it) and the
/// connection's [`FaultyStream`] (which obeys it).
#[derive(Debug, Default)]
pub(crate) struct WireFault {
    mode: AtomicU8,
    keep_body: AtomicUsize,
    /// The create answer being written, to settle as delivered once written in full.
    watched: Mutex<Option<Watched>>,
}

/// A create's answer on its way to the socket.
#[derive(Debug, Clone, Copy)]
struct Watched {
    attempt: usize,
    body_len: usize,
    cut: Cut,
}

impl WireFault {
    /// Settle create attempt `attempt` as delivered once the next answer (a head, then
    /// `body_len` bytes of body) is written in full.
    pub(crate) fn watch_answer(&self, attempt: usize, body_len: usize) {
        *self.watched.lock().unwrap_or_else(PoisonError::into_inner) = Some(Watched {
            attempt,
            body_len,
            cut: Cut::Head(0),
        });
    }

    /// Follows `written` bytes of the watched answer; returns its attempt once the answer's last
    /// byte is written.
    fn follow(&self, written: &[u8]) -> Option<usize> {
        let mut watched = self.watched.lock().unwrap_or_else(PoisonError::into_inner);
        let w = watched.as_mut()?;
        w.cut.allow(written, w.body_len);
        if w.cut == Cut::Body(0) {
            let attempt = w.attempt;
            *watched = None;
            Some(attempt)
        } else {
            None
        }
    }

    /// Write nothing more: close the connection without a response byte.
    pub(crate) fn arm_drop(&self) {
        self.mode.store(DROP, Ordering::Release);
    }

    /// Write the head in full but only `keep_body` bytes of the body, then close the connection.
    pub(crate) fn arm_truncate(&self, keep_body: usize) {
        self.keep_body.store(keep_body, Ordering::Release);
        self.mode.store(TRUNCATE, Ordering::Release);
    }
}

/// How far a truncated answer has got: still in the head (matching its closing `\r\n\r\n`), or
/// in the body with some bytes still allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// In the head; how many bytes of `\r\n\r\n` were just seen.
    Head(u8),
    /// In the body; how many more bytes may pass.
    Body(usize),
}

impl Cut {
    /// Walks `buf`, and returns how many of its bytes may be written, advancing over them.
    fn allow(&mut self, buf: &[u8], keep_body: usize) -> usize {
        const END: &[u8; 4] = b"\r\n\r\n";
        let mut allowed = 0;
        for &byte in buf {
            match self {
                Cut::Head(matched) => {
                    *matched = if byte == END[usize::from(*matched)] {
                        *matched + 1
                    } else if byte == b'\r' {
                        1
                    } else {
                        0
                    };
                    if *matched == 4 {
                        *self = Cut::Body(keep_body);
                    }
                }
                Cut::Body(0) => break,
                Cut::Body(left) => *left -= 1,
            }
            allowed += 1;
        }
        allowed
    }
}

/// A TCP connection whose writes obey a [`WireFault`].
#[derive(Debug)]
pub(crate) struct FaultyStream {
    inner: TcpStream,
    fault: Arc<WireFault>,
    shared: Arc<Shared>,
    cut: Cut,
    /// Set once the connection was spoiled: every later write fails.
    closed: bool,
    /// The create attempt whose answer was the last thing written in full, until the client
    /// sends more (it has read that answer then).
    delivered: Option<usize>,
}

impl FaultyStream {
    /// Wraps an accepted connection.
    pub(crate) fn new(inner: TcpStream, fault: Arc<WireFault>, shared: Arc<Shared>) -> Self {
        FaultyStream {
            inner,
            fault,
            shared,
            cut: Cut::Head(0),
            closed: false,
            delivered: None,
        }
    }

    /// Sends the FIN (so the client sees an orderly end of stream, not a reset), then fails the
    /// write so hyper abandons the connection.
    fn poll_close(&mut self, cx: &mut Context<'_>, why: &'static str) -> Poll<io::Result<usize>> {
        if !self.closed {
            // An error here means the peer is gone already: the connection is over either way.
            let _ = ready!(Pin::new(&mut self.inner).poll_shutdown(cx));
            self.closed = true;
        }
        Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionAborted, why)))
    }
}

impl AsyncRead for FaultyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let read = ready!(Pin::new(&mut this.inner).poll_read(cx, buf));
        match &read {
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                if let Some(attempt) = this.delivered.take() {
                    this.shared.settle_answer(attempt, AnswerFate::Unread);
                }
            }
            Ok(()) if buf.filled().len() > before => this.delivered = None,
            _ => {}
        }
        Poll::Ready(read)
    }
}

impl AsyncWrite for FaultyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.closed {
            return this.poll_close(cx, "simulated fault: connection closed");
        }
        match this.fault.mode.load(Ordering::Acquire) {
            DROP => this.poll_close(cx, "simulated fault: connection dropped"),
            TRUNCATE => {
                let keep_body = this.fault.keep_body.load(Ordering::Acquire);
                let mut probe = this.cut;
                let allowed = probe.allow(buf, keep_body);
                if allowed == 0 {
                    return this.poll_close(cx, "simulated fault: body truncated");
                }
                let written = ready!(Pin::new(&mut this.inner).poll_write(cx, &buf[..allowed]))?;
                this.cut.allow(&buf[..written], keep_body);
                Poll::Ready(Ok(written))
            }
            _ => {
                let written = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
                if let Some(attempt) = this.fault.follow(&buf[..written]) {
                    this.shared.settle_answer(attempt, AnswerFate::Delivered);
                    this.delivered = Some(attempt);
                }
                Poll::Ready(Ok(written))
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_passes_the_head_and_keeps_part_of_the_body() {
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n0123456789";
        let head = answer.len() - 10;
        let mut cut = Cut::Head(0);
        assert_eq!(cut.allow(answer, 4), head + 4);
        assert_eq!(cut, Cut::Body(0));
        assert_eq!(cut.allow(b"more", 4), 0);
    }

    #[test]
    fn cut_finds_the_end_of_the_head_across_writes() {
        let mut cut = Cut::Head(0);
        assert_eq!(cut.allow(b"HTTP/1.1 200 OK\r\nx: y\r", 3), 22);
        assert_eq!(cut.allow(b"\n\r", 3), 2);
        assert_eq!(cut, Cut::Head(3));
        assert_eq!(cut.allow(b"\nabcdef", 3), 4);
        assert_eq!(cut, Cut::Body(0));
    }

    #[test]
    fn cut_is_not_fooled_by_a_lone_blank_line_prefix() {
        let mut cut = Cut::Head(0);
        // "\r\r\n\r\n": the second '\r' restarts the match.
        assert_eq!(cut.allow(b"\r\r\n\r\nXY", 1), 6);
        assert_eq!(cut, Cut::Body(0));
    }
}
