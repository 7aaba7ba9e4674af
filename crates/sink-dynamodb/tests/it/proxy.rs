//! A fault-injecting HTTP/1.1 proxy between the SDK and dynalite (loopback only).
//!
//! `BatchWriteItem` calls are numbered from 1; the schedule says what happens to each.
//! Other operations pass through untouched.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What happens to one `BatchWriteItem` call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// 400 `ProvisionedThroughputExceededException`, not forwarded.
    Throughput,
    /// 400 `ThrottlingException`, not forwarded.
    Throttling,
    /// 500 `InternalServerError`, not forwarded.
    ServerError,
    /// The last fraction of the requests is not forwarded and comes back in
    /// `UnprocessedItems`.
    UnprocessedTail(f64),
    /// Forwarded after this many milliseconds (so calls overlap and in-flight counts show;
    /// past the client's attempt timeout, the call still reaches the table but its answer
    /// is never read).
    Slow(u64),
    /// On this many calls in 1,000 (drawn from the call's number, so a run is
    /// reproducible), one of these faults.
    Random(u64, &'static [Fault]),
}

/// SplitMix64: a well-mixed number from the call's number.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The fault `f` resolves to on call `n` (a [`Fault::Random`] draws).
fn resolve(f: Fault, n: usize) -> Option<Fault> {
    match f {
        Fault::Random(per_mille, kinds) => {
            let x = mix(n as u64);
            (x % 1000 < per_mille).then(|| kinds[((x >> 32) % kinds.len() as u64) as usize])
        }
        f => Some(f),
    }
}

/// A running proxy.
pub struct FaultProxy {
    pub port: u16,
    calls: Arc<AtomicUsize>,
    in_flight: Arc<InFlight>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Proxy to `127.0.0.1:upstream`; `schedule[n]` applies to BatchWriteItem call `n`;
    /// `always` applies to every call not in the schedule.
    pub async fn start(
        upstream: u16,
        schedule: HashMap<usize, Fault>,
        always: Option<Fault>,
    ) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let calls = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(InFlight::default());
        let schedule = Arc::new(schedule);
        let (c, f) = (calls.clone(), in_flight.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let (calls, schedule, flight) = (c.clone(), schedule.clone(), f.clone());
                tokio::spawn(async move {
                    let _ = serve(client, upstream, &calls, &flight, &schedule, always).await;
                });
            }
        });
        FaultProxy {
            port,
            calls,
            in_flight,
            task,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// BatchWriteItem calls seen.
    pub fn batch_calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Faults injected so far.
    pub fn injected(&self) -> usize {
        self.in_flight.injected.load(Ordering::SeqCst)
    }

    /// Most BatchWriteItem calls that were in the proxy at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.in_flight.max.load(Ordering::SeqCst)
    }
}

/// BatchWriteItem calls between request read and response written, and faults injected.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    max: AtomicUsize,
    /// Faults injected (not counted in flight; here because every connection shares it).
    injected: AtomicUsize,
}

struct Message {
    head: String,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// Replace the body, fixing Content-Length (and x-amz-crc32 if present).
    fn set_body(&mut self, body: Vec<u8>) {
        let crc = crc32(&body);
        let mut lines: Vec<String> = Vec::new();
        for l in self.head.split("\r\n") {
            let lower = l.to_ascii_lowercase();
            if lower.starts_with("content-length:") {
                lines.push(format!("Content-Length: {}", body.len()));
            } else if lower.starts_with("x-amz-crc32:") {
                lines.push(format!("x-amz-crc32: {crc}"));
            } else {
                lines.push(l.to_owned());
            }
        }
        self.head = lines.join("\r\n");
        self.body = body;
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = self.head.clone().into_bytes();
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

async fn read_message(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<Message>> {
    loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..pos]).into_owned();
            let mut m = Message {
                head,
                body: Vec::new(),
            };
            let len: usize = m
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let start = pos + 4;
            while buf.len() < start + len {
                let mut chunk = [0u8; 16384];
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(None);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            m.body = buf[start..start + len].to_vec();
            buf.drain(..start + len);
            return Ok(Some(m));
        }
        let mut chunk = [0u8; 16384];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn error_response(status: &str, kind: &str, message: &str) -> Vec<u8> {
    let body = format!(r#"{{"__type":"{kind}","message":"{message}"}}"#);
    format!(
        "HTTP/1.1 {status}\r\nx-amzn-RequestId: FAULTPROXY\r\nx-amz-crc32: {}\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n{body}",
        crc32(body.as_bytes()),
        body.len()
    )
    .into_bytes()
}

async fn serve(
    mut client: TcpStream,
    upstream: u16,
    calls: &AtomicUsize,
    flight: &InFlight,
    schedule: &HashMap<usize, Fault>,
    always: Option<Fault>,
) -> std::io::Result<()> {
    let mut up = TcpStream::connect(("127.0.0.1", upstream)).await?;
    let (mut cbuf, mut ubuf) = (Vec::new(), Vec::new());
    while let Some(mut req) = read_message(&mut client, &mut cbuf).await? {
        let is_batch = req
            .header("x-amz-target")
            .is_some_and(|t| t.ends_with("BatchWriteItem"));
        let fault = if is_batch {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            let now = flight.now.fetch_add(1, Ordering::SeqCst) + 1;
            flight.max.fetch_max(now, Ordering::SeqCst);
            schedule
                .get(&n)
                .copied()
                .or(always)
                .and_then(|f| resolve(f, n))
        } else {
            None
        };
        // Counted out when this request's answer has been written (or on error).
        struct Out<'a>(&'a InFlight, bool);
        impl Drop for Out<'_> {
            fn drop(&mut self) {
                if self.1 {
                    self.0.now.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
        let _out = Out(flight, is_batch);
        if fault.is_some() {
            flight.injected.fetch_add(1, Ordering::SeqCst);
        }
        let mut tail: Option<(String, Vec<serde_json::Value>)> = None;
        match fault {
            Some(Fault::Throughput) => {
                client
                    .write_all(&error_response(
                        "400 Bad Request",
                        "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                        "The level of configured provisioned throughput for the table was exceeded (injected)",
                    ))
                    .await?;
                continue;
            }
            Some(Fault::Throttling) => {
                client
                    .write_all(&error_response(
                        "400 Bad Request",
                        "com.amazon.coral.availability#ThrottlingException",
                        "Rate exceeded (injected)",
                    ))
                    .await?;
                continue;
            }
            Some(Fault::ServerError) => {
                client
                    .write_all(&error_response(
                        "500 Internal Server Error",
                        "com.amazonaws.dynamodb.v20120810#InternalServerError",
                        "Internal server error (injected)",
                    ))
                    .await?;
                continue;
            }
            Some(Fault::UnprocessedTail(frac)) => {
                let mut body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
                let items = body["RequestItems"].as_object_mut().unwrap();
                let (table, reqs) = items.iter_mut().next().unwrap();
                let reqs = reqs.as_array_mut().unwrap();
                let keep =
                    reqs.len() - ((reqs.len() as f64 * frac).round() as usize).min(reqs.len() - 1);
                let cut: Vec<_> = reqs.drain(keep..).collect();
                tail = Some((table.clone(), cut));
                req.set_body(serde_json::to_vec(&body).unwrap());
            }
            Some(Fault::Slow(ms)) => tokio::time::sleep(std::time::Duration::from_millis(ms)).await,
            Some(Fault::Random(..)) | None => {}
        }
        up.write_all(&req.bytes()).await?;
        let Some(mut resp) = read_message(&mut up, &mut ubuf).await? else {
            return Ok(());
        };
        if let Some((table, cut)) = tail {
            let body = serde_json::json!({"UnprocessedItems": {table: cut}});
            resp.set_body(serde_json::to_vec(&body).unwrap());
        }
        client.write_all(&resp.bytes()).await?;
    }
    Ok(())
}

/// CRC-32 (IEEE), as in the `x-amz-crc32` header.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn crc32_matches_dynalite() {
    // dynalite answered `{"TableNames":[]}` with x-amz-crc32: 1315925753.
    assert_eq!(crc32(br#"{"TableNames":[]}"#), 1_315_925_753);
}
