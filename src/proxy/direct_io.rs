//! Plain TCP reads and writes on the request path, made with the system
//! call itself rather than through libc's `recv` and `send`.
//!
//! Why: in a process with more than one thread (hpgate always has a few:
//! the supervisor's, tokio's blocking pool), glibc turns `recv`, `send`,
//! `read` and `write` into cancellation points: each call switches the
//! thread's cancel type on and off again around the system call, two
//! atomic read-modify-write instructions on the thread's descriptor. A
//! proxied request makes four such calls; under the proxy-bound load
//! those two helpers were 1.8% of hpgate's CPU, 7% of its user-space part
//! (docs/benchmarks.md, issue 19 step 14). nginx, single-threaded, never
//! pays it. hpgate never cancels threads, so the wrapper buys nothing.
//!
//! `Direct` lends a stream to code that wants `AsyncRead`/`AsyncWrite`
//! (the front, the lean path); `Socket::poll_recv`/`poll_send` say how
//! each kind of stream reads and writes (TLS goes through rustls as
//! before). `split` gives the WebSocket relay two such halves; hyper's
//! reads (`GuardedIo` on the client side, `AppIo` on the app side) use
//! `poll_recv`, and their writes `poll_send` and, as hyper writes a head
//! and a body chunk together, `poll_send_vectored` (`sendmsg`).
//!
//! Readiness stays tokio's: a call that would block, or that moved less
//! than it had room for, clears the readiness it was made on (`try_io`),
//! so the task waits as it would after tokio's own read. Owns those two
//! system calls and nothing else: no other socket option or call is made
//! here.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// How a stream reads and writes for `Direct`: as `AsyncRead` and
/// `AsyncWrite` unless it has cheaper calls of its own.
pub trait Socket: AsyncRead + AsyncWrite + Unpin {
    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(self).poll_read(cx, buf)
    }

    fn poll_send(&mut self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(self).poll_write(cx, bytes)
    }

    fn poll_send_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self).poll_write_vectored(cx, bufs)
    }
}

impl Socket for TcpStream {
    #[cfg(target_os = "linux")]
    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        poll_recv(self, cx, buf)
    }

    #[cfg(target_os = "linux")]
    fn poll_send(&mut self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        poll_send(self, cx, bytes)
    }

    #[cfg(target_os = "linux")]
    fn poll_send_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        linux::poll_send_vectored(self, cx, bufs)
    }
}

/// TLS reads and writes go through rustls, whose own socket calls are
/// tokio's.
impl Socket for tokio_rustls::server::TlsStream<TcpStream> {}

/// A stream lent for its direct reads and writes.
pub struct Direct<'a, S: Socket>(pub &'a mut S);

impl<S: Socket> AsyncRead for Direct<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().0.poll_recv(cx, buf)
    }
}

impl<S: Socket> AsyncWrite for Direct<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().0.poll_send(cx, bytes)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_shutdown(cx)
    }
}

/// A plain TCP stream's halves for the WebSocket relay, each reading or
/// writing directly (the relay's reads and writes are the same four
/// calls per echoed message as a small request's).
pub struct RecvHalf(OwnedReadHalf);
pub struct SendHalf(OwnedWriteHalf);

pub fn split(stream: TcpStream) -> (RecvHalf, SendHalf) {
    let (read, write) = stream.into_split();
    (RecvHalf(read), SendHalf(write))
}

impl AsyncRead for RecvHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        #[cfg(target_os = "linux")]
        return poll_recv(self.0.as_ref(), cx, buf);
        #[cfg(not(target_os = "linux"))]
        return Pin::new(&mut self.get_mut().0).poll_read(cx, buf);
    }
}

impl AsyncWrite for SendHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        #[cfg(target_os = "linux")]
        return poll_send(self.0.as_ref(), cx, bytes);
        #[cfg(not(target_os = "linux"))]
        return Pin::new(&mut self.get_mut().0).poll_write(cx, bytes);
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

#[cfg(target_os = "linux")]
pub use linux::{poll_recv, poll_send};

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod linux {
    use std::io::{self, IoSlice};
    use std::os::fd::AsRawFd;
    use std::task::{ready, Context, Poll};

    use nix::libc;
    use tokio::io::{Interest, ReadBuf};
    use tokio::net::TcpStream;

    /// `recvfrom(2)` into the unfilled part of `buf`, once the socket is
    /// readable.
    pub fn poll_recv(
        s: &TcpStream,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let got = ready!(poll_moved(s, cx, Interest::READABLE, || {
            // SAFETY: the kernel writes at most `room.len()` bytes into
            // `room`, memory `buf` owns and does not read until told how
            // much was filled (below: only what the kernel filled).
            let room = unsafe { buf.unfilled_mut() };
            let n = unsafe {
                libc::syscall(
                    libc::SYS_recvfrom,
                    s.as_raw_fd(),
                    room.as_mut_ptr(),
                    room.len(),
                    0,
                    std::ptr::null_mut::<libc::sockaddr>(),
                    std::ptr::null_mut::<libc::socklen_t>(),
                )
            };
            (n, room.len())
        }))?;
        // SAFETY: the kernel filled the first `got` bytes.
        unsafe { buf.assume_init(got) };
        buf.advance(got);
        Poll::Ready(Ok(()))
    }

    /// `sendto(2)` of `bytes` (no SIGPIPE: a closed peer is an error, as
    /// with std's `send`), once the socket is writable.
    pub fn poll_send(s: &TcpStream, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        poll_moved(s, cx, Interest::WRITABLE, || {
            // SAFETY: the kernel reads at most `bytes.len()` bytes from
            // `bytes`, which stays borrowed for the call.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_sendto,
                    s.as_raw_fd(),
                    bytes.as_ptr(),
                    bytes.len(),
                    libc::MSG_NOSIGNAL,
                    std::ptr::null::<libc::sockaddr>(),
                    0 as libc::socklen_t,
                )
            };
            (n, bytes.len())
        })
    }

    /// `sendmsg(2)` of `bufs` in order, as `writev` would send them but
    /// with no SIGPIPE (hyper writes a head and a body chunk together).
    pub fn poll_send_vectored(
        s: &TcpStream,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // The kernel takes at most IOV_MAX pieces in one call.
        let bufs = &bufs[..bufs.len().min(1024)];
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        poll_moved(s, cx, Interest::WRITABLE, || {
            // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix
            // (std documents it); the kernel reads at most each piece's
            // length from it, and `bufs` stays borrowed for the call. A
            // zeroed `msghdr` is a valid one (no name, no control data).
            let n = unsafe {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
                msg.msg_iovlen = bufs.len() as _;
                libc::syscall(
                    libc::SYS_sendmsg,
                    s.as_raw_fd(),
                    &msg as *const libc::msghdr,
                    libc::MSG_NOSIGNAL,
                )
            };
            (n, total)
        })
    }

    /// Makes `call` (a system call, and the room it had) once the socket
    /// is ready for `interest`, again after a would-block or a signal; the
    /// bytes it moved.
    ///
    /// A write is tried before its readiness is polled: a socket nearly
    /// always has room, `try_io` makes no call when tokio has not seen it
    /// writable, and the poll (the task's budget, the readiness, the wait
    /// list when not ready) costs more than the try (P3: -4.5% of the
    /// instructions per round trip). Only a try that would block polls,
    /// which registers the wake-up. Reads poll first: that poll charges the
    /// task's cooperative budget, which makes a connection whose peer never
    /// stops sending yield to the others (every write follows a read), and
    /// most reads that reach here find nothing left (a try first cost more;
    /// docs/benchmarks.md, step 17).
    fn poll_moved(
        s: &TcpStream,
        cx: &mut Context<'_>,
        interest: Interest,
        mut call: impl FnMut() -> (libc::c_long, usize),
    ) -> Poll<io::Result<usize>> {
        let mut poll_first = interest.is_readable();
        loop {
            if poll_first {
                if interest.is_readable() {
                    ready!(s.poll_read_ready(cx))?;
                } else {
                    ready!(s.poll_write_ready(cx))?;
                }
            }
            poll_first = true;
            let mut moved = 0;
            let done = s.try_io(interest, || {
                let (n, room) = call();
                moved = returned(n)?;
                drained(moved, room)
            });
            match done {
                Err(e) if moved == 0 && retry(&e) => continue,
                Err(e) if moved == 0 => return Poll::Ready(Err(e)),
                // A short call reports would-block (`drained`): it moved.
                _ => return Poll::Ready(Ok(moved)),
            }
        }
    }

    /// A call that moved fewer bytes than it had room for has emptied the
    /// socket's receive buffer (or filled its send buffer): reported as
    /// would-block, so that tokio forgets the readiness and the next call
    /// waits for an event instead of failing with EAGAIN first, as
    /// tokio's own reads and writes do (the count is kept by the caller).
    /// A call that moved nothing (an end of stream, an empty buffer) keeps
    /// the readiness.
    fn drained(n: usize, room: usize) -> io::Result<()> {
        if n > 0 && n < room {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(())
        }
    }

    /// Would block (tokio has cleared the readiness) or was interrupted
    /// by a signal: try again.
    fn retry(e: &io::Error) -> bool {
        matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        )
    }

    /// A system call's result: a count, or the error `errno` holds.
    fn returned(n: libc::c_long) -> io::Result<usize> {
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::BytesMut;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Two ends of one loopback TCP connection (also the relay's tests').
    pub(crate) async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.unwrap(), server.unwrap().0)
    }

    /// `f`'s output, or a failure when it stalls (a wait whose wake-up
    /// was never registered hangs rather than fails without this).
    async fn within<F: std::future::Future>(f: F) -> F::Output {
        let limit = std::time::Duration::from_secs(30);
        tokio::time::timeout(limit, f)
            .await
            .expect("stalled: a wake-up was lost")
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// More than the socket buffers hold: the writer's sends come back
    /// short and then wait for room, the reader's reads fill only parts of
    /// its buffer; every byte arrives once, in order.
    #[tokio::test]
    async fn a_large_transfer_arrives_whole_through_short_writes_and_reads() {
        let (mut a, mut b) = pair().await;
        let sent = pattern(8 << 20);
        let expect = sent.clone();
        let writer = tokio::spawn(async move {
            Direct(&mut a).write_all(&sent).await.unwrap();
            Direct(&mut a).shutdown().await.unwrap();
        });
        let mut got = BytesMut::with_capacity(1000);
        within(async {
            loop {
                if got.capacity() - got.len() < 1000 {
                    got.reserve(7000);
                }
                if Direct(&mut b).read_buf(&mut got).await.unwrap() == 0 {
                    break;
                }
            }
        })
        .await;
        within(writer).await.unwrap();
        assert!(
            got[..] == expect[..],
            "{} bytes of {}",
            got.len(),
            expect.len()
        );
    }

    /// Many pieces sent together arrive as one stream in order, through
    /// short sends (each resumed where the last one stopped).
    #[tokio::test]
    async fn vectored_sends_arrive_in_order_through_short_sends() {
        let (mut a, mut b) = pair().await;
        let whole = pattern(4 << 20);
        let expect = whole.clone();
        let writer = tokio::spawn(async move {
            let mut pieces: Vec<IoSlice<'_>> = whole.chunks(1000 + 7).map(IoSlice::new).collect();
            let mut rest = &mut pieces[..];
            while !rest.is_empty() {
                let n = std::future::poll_fn(|cx| a.poll_send_vectored(cx, rest))
                    .await
                    .unwrap();
                assert!(n > 0);
                IoSlice::advance_slices(&mut rest, n);
            }
            a.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        within(b.read_to_end(&mut got)).await.unwrap();
        within(writer).await.unwrap();
        assert!(got == expect, "{} bytes of {}", got.len(), expect.len());
    }

    /// A closed peer is an error from the write (sent with MSG_NOSIGNAL:
    /// no SIGPIPE even where it is not ignored, as Rust's runtime does).
    #[tokio::test]
    async fn a_write_to_a_closed_peer_is_an_error() {
        let (mut a, b) = pair().await;
        drop(b);
        let mut failed = None;
        for _ in 0..100 {
            if let Err(e) = Direct(&mut a).write_all(&[1u8; 64 * 1024]).await {
                failed = Some(e);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let e = failed.expect("writes to a closed peer kept succeeding");
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{e}"
        );
    }

    /// The relay's halves carry bytes both ways; shutting the write half
    /// down is an end of stream for the peer, and the peer's close one
    /// for the read half.
    #[tokio::test]
    async fn the_relay_halves_carry_bytes_both_ways_and_end_streams() {
        let (a, mut b) = pair().await;
        let (mut read, mut write) = split(a);
        write.write_all(b"ping").await.unwrap();
        let mut four = [0u8; 4];
        b.read_exact(&mut four).await.unwrap();
        assert_eq!(&four, b"ping");
        b.write_all(b"pong").await.unwrap();
        read.read_exact(&mut four).await.unwrap();
        assert_eq!(&four, b"pong");
        write.shutdown().await.unwrap();
        assert_eq!(b.read(&mut four).await.unwrap(), 0);
        drop(b);
        assert_eq!(read.read(&mut four).await.unwrap(), 0);
    }
}
