//! Copying bytes both ways between two connections, closed when neither side sends anything
//! for a while (a forgotten tunnel must not hold a connection slot for ever).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// How the tunnel ended.
#[derive(Debug)]
pub enum Ended {
    /// Both sides closed; bytes from the client, bytes to the client.
    Closed(u64, u64),
    Idle,
    Failed(io::Error),
}

/// Copy between `a` and `b` until both close, either fails, or `idle` passes with no bytes.
pub async fn copy_with_idle_timeout<A, B>(a: A, b: B, idle: Duration) -> Ended
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut a = Watched {
        inner: a,
        start,
        last: last.clone(),
    };
    let mut b = Watched {
        inner: b,
        start,
        last: last.clone(),
    };
    let watchdog = async {
        loop {
            let last_ms = last.load(Ordering::Relaxed);
            let deadline = start + Duration::from_millis(last_ms) + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    tokio::select! {
        result = tokio::io::copy_bidirectional(&mut a, &mut b) => match result {
            Ok((up, down)) => Ended::Closed(up, down),
            Err(e) => Ended::Failed(e),
        },
        () = watchdog => Ended::Idle,
    }
}

/// A stream that notes the time of its last transfer.
struct Watched<S> {
    inner: S,
    start: Instant,
    last: Arc<AtomicU64>,
}

impl<S> Watched<S> {
    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last.fetch_max(ms, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        result
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
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn an_idle_tunnel_is_closed_and_a_busy_one_is_not() {
        let idle = Duration::from_secs(2);
        let (mut client, a) = tokio::io::duplex(64);
        let (b, mut server) = tokio::io::duplex(64);
        let tunnel = tokio::spawn(copy_with_idle_timeout(a, b, idle));
        // Traffic every 300 ms keeps it open well past the idle time.
        let start = Instant::now();
        while start.elapsed() < idle * 2 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            client.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            server.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
        }
        assert!(!tunnel.is_finished());
        let ended = tokio::time::timeout(Duration::from_secs(30), tunnel)
            .await
            .expect("an idle tunnel is closed")
            .unwrap();
        assert!(matches!(ended, Ended::Idle), "{ended:?}");
    }
}
