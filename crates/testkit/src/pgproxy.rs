//! [`PgFaultProxy`]: a loopback proxy in front of a PostgreSQL server that injects the
//! faults a migration must survive: a `COMMIT` that reaches the server and commits but
//! whose answer never comes back (the connection drops), a connection cut after some
//! bytes or at a given statement (an index build, a switch's rename), a link that goes
//! silent (a stall), a statement held while the server restarts.
//!
//! It reads the frontend protocol (startup message, then typed messages) to recognise a
//! simple-query `COMMIT` sent on a connection that carried `COPY` data. Connect through it
//! with `sslmode=disable` (it does not speak TLS).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A fault to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgFault {
    /// Forward everything.
    None,
    /// On the `n`-th `COMMIT` (1-based, counted over connections that sent `COPY` data):
    /// forward it, let the server answer, swallow the answer and close the client's
    /// connection. The transaction IS committed; the client hears nothing.
    LoseCommitAck {
        /// Which COMMIT.
        nth: u64,
    },
    /// Close every new connection's client side after this many client bytes.
    CutAfterBytes(u64),
    /// After this many client bytes on a connection, stop forwarding in both directions
    /// but keep the sockets open: a link that went silent (what keepalives and timeouts
    /// are for).
    StallAfterBytes(u64),
    /// The first statement (a simple query or a parse, on any connection) whose text
    /// contains `pattern` (ASCII case-insensitive) cuts its connection: before it reaches
    /// the server (`forward: false`), or once it runs (`forward: true`: the server runs it,
    /// at its `Execute` for a parsed statement, and what the client sends in the next
    /// 500 ms, but every answer from then on is lost; an open transaction is rolled back
    /// when the connection closes, an autocommit statement commits). Fires once.
    CutOnQuery {
        /// Text the statement contains, e.g. `CREATE INDEX`, `RENAME TO`.
        pattern: &'static str,
        /// Whether the statement reaches the server.
        forward: bool,
    },
    /// The first statement whose text contains `pattern` is held: from then on nothing is
    /// forwarded on its connection either way, until the server closes its side (a
    /// restart, a terminated backend), which closes the client's. Fires once; for
    /// injecting a server restart at a precise moment ([`PgFaultProxy::fired`] says when).
    StallOnQuery {
        /// Text the statement contains.
        pattern: &'static str,
    },
    /// The first connection whose `COPY` data passes this many bytes is cut (both ways,
    /// the data never completes): a load's connection lost mid-COPY. Fires once.
    CutMidCopy {
        /// `COPY` data bytes (message bodies) forwarded before the cut.
        after: u64,
    },
    /// On the first connection that sends a statement containing `pattern`, the next
    /// simple-query `COMMIT` is forwarded and commits, and its answer is lost (the
    /// connection closes): a switch that committed without the client hearing it. Fires
    /// once.
    LoseCommitAfter {
        /// Text of a statement of the transaction.
        pattern: &'static str,
    },
}

/// The SQL text of a simple query (`Q`) or parse (`P`) message, upper-cased.
fn statement_text(kind: u8, msg: &[u8]) -> Option<String> {
    let body = msg.get(5..)?;
    let text = match kind {
        b'Q' => body,
        // statement name, then the query
        b'P' => &body[body.iter().position(|&b| b == 0)? + 1..],
        _ => return None,
    };
    Some(String::from_utf8_lossy(text).to_ascii_uppercase())
}

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct PgFaultProxy {
    port: u16,
    task: tokio::task::JoinHandle<()>,
    fault: watch::Sender<PgFault>,
    commits: Arc<AtomicU64>,
    fired: Arc<AtomicU64>,
}

impl Drop for PgFaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    fault: watch::Receiver<PgFault>,
    commits: Arc<AtomicU64>,
    fired: Arc<AtomicU64>,
}

impl PgFaultProxy {
    /// Listen on `127.0.0.1:<free port>` and forward to `127.0.0.1:upstream`.
    ///
    /// # Errors
    /// The listening socket cannot be bound.
    pub async fn start(upstream: u16, fault: PgFault) -> std::io::Result<PgFaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (tx, rx) = watch::channel(fault);
        let commits = Arc::new(AtomicU64::new(0));
        let fired = Arc::new(AtomicU64::new(0));
        let (c2, f2) = (commits.clone(), fired.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let shared = Shared {
                    fault: rx.clone(),
                    commits: c2.clone(),
                    fired: f2.clone(),
                };
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        // Messages are forwarded one by one: Nagle's algorithm would hold
                        // each small one for the peer's delayed ACK.
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        let _ = relay(client, server, shared).await;
                    }
                });
            }
        });
        Ok(PgFaultProxy {
            port,
            task,
            fault: tx,
            commits,
            fired,
        })
    }

    /// [`PgFaultProxy::start`] in front of the server of `url` (a `postgres://` URL of a
    /// server on 127.0.0.1): connect through it with [`PgFaultProxy::url_for`].
    ///
    /// # Errors
    /// `url` names no port, or the listening socket cannot be bound.
    pub async fn in_front_of(url: &str, fault: PgFault) -> std::io::Result<PgFaultProxy> {
        let authority = url.split_once("//").map_or(url, |(_, r)| r);
        let authority = authority.split(['/', '?']).next().unwrap_or_default();
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let port = host
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("no port in the server's URL (host `{host}`)"),
                )
            })?;
        Self::start(port, fault).await
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `url` (a `postgres://` URL of the upstream server) through the proxy: its port
    /// replaced, `sslmode=disable` added.
    pub fn url_for(&self, url: &str) -> String {
        let (head, tail) = url.split_at(url.rfind(':').map_or(url.len(), |i| i + 1));
        let rest = tail.find(['/', '?']).map_or("", |i| &tail[i..]);
        let sep = if rest.contains('?') { '&' } else { '?' };
        format!("{head}{}{rest}{sep}sslmode=disable", self.port)
    }

    /// Change the fault for what follows.
    pub fn set_fault(&self, fault: PgFault) {
        let _ = self.fault.send(fault);
    }

    /// `COMMIT`s seen after `COPY` data so far.
    pub fn commits_after_copy(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }

    /// How many times the fault fired.
    pub fn fired(&self) -> u64 {
        self.fired.load(Ordering::SeqCst)
    }
}

/// Read one frontend message: the untyped startup-phase ones (`typed = false`) or a typed
/// one. Returns its bytes and its type (0 for untyped).
async fn read_message(r: &mut OwnedReadHalf, typed: bool) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = vec![0u8; if typed { 5 } else { 4 }];
    r.read_exact(&mut head).await?;
    let (kind, len_at) = if typed { (head[0], 1) } else { (0, 0) };
    let len = u32::from_be_bytes(head[len_at..len_at + 4].try_into().expect("4 bytes")) as usize;
    let body_len = len.saturating_sub(4);
    let mut msg = head;
    let start = msg.len();
    msg.resize(start + body_len, 0);
    r.read_exact(&mut msg[start..]).await?;
    Ok((kind, msg))
}

async fn relay(client: TcpStream, server: TcpStream, shared: Shared) -> std::io::Result<()> {
    let (mut cr, cw) = client.into_split();
    let (sr, mut sw) = server.into_split();
    let (swallow_tx, swallow_rx) = watch::channel(false);
    let down = tokio::spawn(server_to_client(sr, cw, swallow_rx));
    let fault = *shared.fault.borrow();
    let mut sent: u64 = 0;
    let mut typed = false;
    let mut copied = false;
    let mut armed = false;
    let mut copy_bytes: u64 = 0;
    let mut cut_at_execute = false;
    loop {
        let (kind, msg) = match read_message(&mut cr, typed).await {
            Ok(m) => m,
            Err(_) => break,
        };
        if !typed {
            // SSLRequest / GSSENCRequest are followed by another untyped message.
            let code = msg
                .get(4..8)
                .map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")));
            typed = !matches!(code, Some(80_877_103 | 80_877_104));
        }
        sent += msg.len() as u64;
        if let PgFault::CutAfterBytes(n) = fault
            && sent > n
        {
            shared.fired.fetch_add(1, Ordering::SeqCst);
            break;
        }
        if let PgFault::StallAfterBytes(n) = fault
            && sent > n
        {
            shared.fired.fetch_add(1, Ordering::SeqCst);
            let _ = swallow_tx.send(true);
            // Hold both sockets open, forwarding nothing, until the client gives up.
            let mut sink = vec![0u8; 64 * 1024];
            while matches!(cr.read(&mut sink).await, Ok(n) if n > 0) {}
            break;
        }
        let current = *shared.fault.borrow();
        if kind == b'd' {
            copied = true;
            copy_bytes += msg.len() as u64 - 5;
            if let PgFault::CutMidCopy { after } = current
                && copy_bytes > after
                && shared
                    .fired
                    .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                break;
            }
        }
        if let PgFault::LoseCommitAfter { pattern } = current
            && statement_text(kind, &msg).is_some_and(|t| t.contains(&pattern.to_ascii_uppercase()))
        {
            armed = true;
        }
        let matched = matches!(current, PgFault::CutOnQuery { pattern, .. } | PgFault::StallOnQuery { pattern }
            if statement_text(kind, &msg).is_some_and(|t| t.contains(&pattern.to_ascii_uppercase())))
            && shared
                .fired
                .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok();
        // A forwarded statement is cut once it executes: at once for a simple query, at
        // its `Execute` for a parsed one (its parse and describe are answered normally).
        let execute_now = match current {
            PgFault::CutOnQuery { forward: true, .. } if matched && kind == b'P' => {
                cut_at_execute = true;
                false
            }
            PgFault::CutOnQuery { forward: true, .. } => {
                matched || (cut_at_execute && kind == b'E')
            }
            _ => false,
        };
        if execute_now {
            let _ = swallow_tx.send(true);
            sw.write_all(&msg).await?;
            // What follows (sync, more statements) reaches the server too, unanswered.
            let until = tokio::time::Instant::now() + Duration::from_millis(500);
            while let Ok(Ok((_, m))) =
                tokio::time::timeout_at(until, read_message(&mut cr, true)).await
            {
                sw.write_all(&m).await?;
            }
            tokio::time::sleep_until(until).await;
            break;
        }
        if matched && matches!(current, PgFault::CutOnQuery { forward: false, .. }) {
            break;
        }
        if matched && matches!(current, PgFault::StallOnQuery { .. }) {
            let _ = swallow_tx.send(true);
            // Until the server closes its side (which closes the client's) or the client
            // gives up.
            let mut sink = vec![0u8; 64 * 1024];
            let mut down = down;
            tokio::select! {
                _ = &mut down => {}
                _ = async { while matches!(cr.read(&mut sink).await, Ok(n) if n > 0) {} } => {}
            }
            return Ok(());
        }
        let is_commit = kind == b'Q'
            && copied
            && String::from_utf8_lossy(&msg[5..])
                .trim_start()
                .to_ascii_uppercase()
                .starts_with("COMMIT");
        let is_plain_commit = kind == b'Q'
            && statement_text(kind, &msg).is_some_and(|t| t.trim_start().starts_with("COMMIT"));
        if armed
            && is_plain_commit
            && shared
                .fired
                .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            let _ = swallow_tx.send(true);
            sw.write_all(&msg).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            down.abort();
            return Ok(());
        }
        if is_commit {
            copied = false;
            let n = shared.commits.fetch_add(1, Ordering::SeqCst) + 1;
            let current = *shared.fault.borrow();
            if let PgFault::LoseCommitAck { nth } = current
                && n == nth
            {
                shared.fired.fetch_add(1, Ordering::SeqCst);
                // Swallow what the server answers from now on, forward the COMMIT, let
                // the server commit and answer, then cut the client off.
                let _ = swallow_tx.send(true);
                sw.write_all(&msg).await?;
                tokio::time::sleep(Duration::from_millis(500)).await;
                down.abort();
                return Ok(());
            }
        }
        sw.write_all(&msg).await?;
    }
    down.abort();
    Ok(())
}

async fn server_to_client(
    mut sr: OwnedReadHalf,
    mut cw: OwnedWriteHalf,
    swallow: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = sr.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        if *swallow.borrow() {
            continue;
        }
        cw.write_all(&buf[..n]).await?;
    }
}
