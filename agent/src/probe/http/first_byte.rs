//! A stream wrapper that notes when the first byte was written and when the first byte of the
//! answer arrived, so the HTTP probe measures time to first byte rather than time to parsed
//! headers, and can tell a server that spoke before being asked (SSH, SMTP, MySQL).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// When the first byte went out and when the first byte came in.
#[derive(Debug, Default)]
pub(super) struct Timeline {
    pub(super) first_write: OnceLock<Instant>,
    pub(super) first_read: OnceLock<Instant>,
}

impl Timeline {
    /// The peer sent something before we had written a byte.
    pub(super) fn peer_spoke_first(&self) -> bool {
        match (self.first_read.get(), self.first_write.get()) {
            (Some(read), Some(write)) => read < write,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// `inner`, recording the first successful non-empty read and write in a shared [`Timeline`].
#[derive(Debug)]
pub(super) struct FirstByte<T> {
    inner: T,
    timeline: Arc<Timeline>,
}

impl<T> FirstByte<T> {
    pub(super) fn new(inner: T) -> (Self, Arc<Timeline>) {
        let timeline = Arc::new(Timeline::default());
        (Self { inner, timeline: Arc::clone(&timeline) }, timeline)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FirstByte<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            // Only the first set wins; later reads change nothing.
            let _ = this.timeline.first_read.set(Instant::now());
        }
        polled
    }
}

impl<T> FirstByte<T> {
    fn note_write(&self, polled: &Poll<io::Result<usize>>) {
        if matches!(polled, Poll::Ready(Ok(n)) if *n > 0) {
            let _ = self.timeline.first_write.set(Instant::now());
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FirstByte<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.note_write(&polled);
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.note_write(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn notes_the_first_write_and_read_only() {
        let (client, mut server) = tokio::io::duplex(64);
        let (mut wrapped, timeline) = FirstByte::new(client);
        wrapped.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(timeline.first_write.get().is_some());
        assert!(timeline.first_read.get().is_none(), "writing is not receiving");
        server.write_all(b"HTTP/1.1").await.unwrap();
        let mut buf = [0u8; 4];
        wrapped.read_exact(&mut buf).await.unwrap();
        let at = *timeline.first_read.get().unwrap();
        wrapped.read_exact(&mut buf).await.unwrap();
        assert_eq!(timeline.first_read.get(), Some(&at), "later reads leave it alone");
        assert!(!timeline.peer_spoke_first());
    }

    #[tokio::test]
    async fn a_banner_before_the_request_is_the_peer_speaking_first() {
        let (client, mut server) = tokio::io::duplex(64);
        let (mut wrapped, timeline) = FirstByte::new(client);
        server.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await.unwrap();
        let mut buf = [0u8; 3];
        wrapped.read_exact(&mut buf).await.unwrap();
        assert!(timeline.peer_spoke_first());
        wrapped.write_all(b"GET").await.unwrap();
        assert!(timeline.peer_spoke_first(), "still first after we write");
    }
}
