//! [`LatencyProxy`]: a loopback TCP proxy adding a fixed delay to every response, to
//! measure clients against a server that is local but should behave as a remote one
//! (DynamoDB's network round trip, Bubble's API latency).
//!
//! It works on HTTP/1.1 connections whose requests are not pipelined (what the AWS SDK
//! and reqwest send): the first bytes the server sends after bytes from the client are
//! held for the delay, the rest of the response passes at once. So every request/response
//! exchange on a connection takes `delay` longer, and concurrent connections are delayed
//! independently, like a network with that round-trip time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct LatencyProxy {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LatencyProxy {
    /// Listen on `127.0.0.1:<free port>` and forward to `127.0.0.1:upstream`, holding each
    /// response for `delay`.
    pub async fn start(upstream: u16, delay: Duration) -> std::io::Result<LatencyProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        let _ = relay(client, server, delay).await;
                    }
                });
            }
        });
        Ok(LatencyProxy { port, task })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

async fn relay(client: TcpStream, server: TcpStream, delay: Duration) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let asked = Arc::new(AtomicBool::new(false));
    let flag = asked.clone();
    let up = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = cr.read(&mut buf).await?;
            if n == 0 {
                sw.shutdown().await?;
                return Ok::<(), std::io::Error>(());
            }
            flag.store(true, Ordering::SeqCst);
            sw.write_all(&buf[..n]).await?;
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = sr.read(&mut buf).await?;
            if n == 0 {
                cw.shutdown().await?;
                return Ok::<(), std::io::Error>(());
            }
            if asked.swap(false, Ordering::SeqCst) {
                tokio::time::sleep(delay).await;
            }
            cw.write_all(&buf[..n]).await?;
        }
    };
    let (a, b) = tokio::join!(up, down);
    a.and(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_exchange_is_delayed_once() {
        // An echo server: answers each message at once.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 16];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    return;
                }
                s.write_all(&buf[..n]).await.unwrap();
            }
        });
        let p = LatencyProxy::start(upstream, Duration::from_millis(50))
            .await
            .unwrap();
        let mut c = TcpStream::connect(("127.0.0.1", p.port())).await.unwrap();
        let t = std::time::Instant::now();
        for i in 0..3u8 {
            c.write_all(&[i; 4]).await.unwrap();
            let mut got = [0u8; 4];
            c.read_exact(&mut got).await.unwrap();
            assert_eq!(got, [i; 4]);
        }
        let ms = t.elapsed().as_millis();
        assert!(ms >= 150, "three exchanges, each held 50 ms: {ms} ms");
    }
}
