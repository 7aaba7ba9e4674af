//! A Bubble-compatible Data API server on 127.0.0.1, for tests, examples and benches
//! (feature `test-server`).
//!
//! It behaves as the real Data API does where a client can go wrong: offset paging stops at
//! an offset cap while `remaining` stays above zero; things with equal `Created Date` come
//! back in a different order on every request (even when an `_id` tie-break is asked for,
//! unless [`ServerConfig::honor_tie_break`]); keys are display names or generated ids; over
//! the request rate it answers 429 (or a legacy 503) with `Retry-After`; a bad token is 401,
//! an unknown type 404; latency is injected per request; and failures can be injected:
//! the next `n` answers ([`TestServer::fail_next`]), or a fraction of all answers drawn from
//! [`Fault`]s (429/5xx, bodies cut short, bodies that are not JSON, answers slower than the
//! client's timeout: [`ServerConfig::faults`]). `GET /meta` describes the types and their
//! fields as the Data API's `/meta` does, and the schema can drift while the server runs
//! ([`TestServer::drift_after`], [`TestServer::drift_after_type_requests`]: a field
//! renamed, removed, or changing shape).
//!
//! A tiny HTTP/1.1 server on tokio (keep-alive, GET only): no web framework needed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::schema::{CREATED_DATE, ID, KeyMode, MODIFIED_DATE, parse_datetime};

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The API token clients must send as `Authorization: Bearer`.
    pub token: String,
    /// Which keys things are sent with.
    pub key_mode: KeyMode,
    /// Offset past which list requests return nothing (the real API: about 50,000).
    pub offset_cap: usize,
    /// Requests accepted per `rate_window`; more are throttled. `None` = unlimited.
    pub rate_limit: Option<u32>,
    /// The window of `rate_limit` (the real API: one minute).
    pub rate_window: Duration,
    /// `Retry-After` sent with a throttled answer (`None` = no header).
    pub retry_after: Option<Duration>,
    /// Status of a throttled answer: 429, or 503 as legacy apps do.
    pub throttle_status: u16,
    /// Delay before every answer.
    pub latency: Duration,
    /// Order ties by `_id` when asked (otherwise ties are shuffled on every request).
    pub honor_tie_break: bool,
    /// Faults injected into a fraction of the authorized requests.
    pub faults: Faults,
    /// Serve `GET /meta` (the real Data API does; an app can turn it off).
    pub meta: bool,
}

/// Faults injected at a rate: each authorized request draws (from a seeded generator, so a
/// run is reproducible) whether it fails and which of `kinds` it gets.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Fraction of requests that get a fault, `0.0..=1.0`.
    pub rate: f64,
    /// The faults drawn from, uniformly.
    pub kinds: Vec<Fault>,
    /// Seed of the draw.
    pub seed: u64,
}

impl Faults {
    /// `rate` of the requests get one of `kinds`.
    pub fn new(rate: f64, kinds: &[Fault]) -> Self {
        Faults {
            rate,
            kinds: kinds.to_vec(),
            seed: 14,
        }
    }

    /// `rate` of the requests get a transient failure a client must retry: 429, 500, 502,
    /// 503, a body cut short or a body that is not JSON.
    pub fn transient(rate: f64) -> Self {
        Self::new(
            rate,
            &[
                Fault::Status(429),
                Fault::Status(500),
                Fault::Status(502),
                Fault::Status(503),
                Fault::Truncated,
                Fault::Malformed,
            ],
        )
    }
}

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// An error status (429, 500, 502, 503) with the Data API's error body.
    Status(u16),
    /// `200 OK` with the full `Content-Length`, half of the body, then the connection closes.
    Truncated,
    /// `200 OK` with a complete body that is not JSON (a proxy's error page, a cut JSON text).
    Malformed,
    /// The right answer, after this delay (past the client's timeout, it never arrives).
    Slow(Duration),
}

/// A change of a type's schema on the server (what an app developer does in the editor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// The field `from` is sent as `to` (a renamed field, display-name keys).
    Rename {
        /// The old key.
        from: String,
        /// The new key.
        to: String,
    },
    /// The field is no longer sent (deleted, or no longer exposed).
    Remove(String),
    /// The field's values are sent as a list of themselves (text became a list of texts).
    ToList(String),
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            token: "test-token".to_owned(),
            key_mode: KeyMode::DisplayNames,
            offset_cap: 50_000,
            rate_limit: None,
            rate_window: Duration::from_secs(60),
            retry_after: None,
            throttle_status: 429,
            latency: Duration::ZERO,
            honor_tie_break: false,
            faults: Faults::default(),
            meta: true,
        }
    }
}

/// The things a server holds, per type, with display-name keys (`_id`, `Created Date`, ...).
#[derive(Debug, Clone, Default)]
pub struct Fixtures {
    types: BTreeMap<String, Vec<Map<String, Value>>>,
    id_keys: BTreeMap<String, HashMap<String, String>>,
}

impl Fixtures {
    /// No types.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add (or replace) a type with its things and its display-key -> generated-id map
    /// (used in [`KeyMode::GeneratedIds`] mode; keys not in the map are sent unchanged).
    pub fn insert(
        &mut self,
        bubble_type: &str,
        things: Vec<Map<String, Value>>,
        id_keys: HashMap<String, String>,
    ) {
        self.types.insert(bubble_type.to_owned(), things);
        self.id_keys.insert(bubble_type.to_owned(), id_keys);
    }

    /// The things of a type.
    pub fn things(&self, bubble_type: &str) -> &[Map<String, Value>] {
        self.types.get(bubble_type).map_or(&[], Vec::as_slice)
    }

    /// Mutable things of a type (to change data between runs).
    pub fn things_mut(&mut self, bubble_type: &str) -> Option<&mut Vec<Map<String, Value>>> {
        self.types.get_mut(bubble_type)
    }

    /// Type names.
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.types.keys().map(String::as_str)
    }
}

/// Counters of what the server answered.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Requests received.
    pub requests: AtomicU64,
    /// Throttled answers (429 or 503) sent by the rate limit.
    pub throttled: AtomicU64,
    /// Injected failures sent.
    pub injected: AtomicU64,
    /// Answers with things.
    pub ok: AtomicU64,
}

struct TypeData {
    /// Sorted by (created ms, _id).
    things: Vec<Map<String, Value>>,
    created: Vec<i64>,
    by_id: HashMap<String, usize>,
    to_id_key: HashMap<String, String>,
    from_id_key: HashMap<String, String>,
    /// Field keys (display names) with their `/meta` type, from the things.
    fields: BTreeMap<String, &'static str>,
    /// Requests for things of the type so far.
    requests: AtomicU64,
}

/// The `/meta` type of a JSON value.
fn meta_type(v: &Value) -> Option<&'static str> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(s) if parse_datetime(s).is_some() && s.len() >= 10 => "date",
        Value::String(_) => "text",
        Value::Array(_) => "list.text",
        Value::Object(_) => "geographic_address",
    })
}

struct State {
    config: ServerConfig,
    types: HashMap<String, TypeData>,
    recent: Mutex<VecDeque<Instant>>,
    fail: Mutex<(u32, u16)>,
    rng: Mutex<fastrand::Rng>,
    /// Drifts waiting for the request count, and the ones in effect, per type.
    drifts: Mutex<Vec<(DriftAfter, String, Drift)>>,
    stats: ServerStats,
}

/// A running server; stops when dropped.
pub struct TestServer {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn created_ms(t: &Map<String, Value>) -> i64 {
    t.get(CREATED_DATE)
        .and_then(Value::as_str)
        .and_then(parse_datetime)
        .map_or(i64::MIN, |d| d.timestamp_millis())
}

impl TestServer {
    /// Start on `127.0.0.1` with an OS-chosen port.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn start(fixtures: Fixtures, config: ServerConfig) -> std::io::Result<TestServer> {
        let mut types = HashMap::new();
        for (name, mut things) in fixtures.types {
            things.sort_by(|a, b| {
                created_ms(a).cmp(&created_ms(b)).then_with(|| {
                    a.get(ID)
                        .and_then(Value::as_str)
                        .cmp(&b.get(ID).and_then(Value::as_str))
                })
            });
            let created = things.iter().map(created_ms).collect();
            let by_id = things
                .iter()
                .enumerate()
                .filter_map(|(i, t)| {
                    t.get(ID)
                        .and_then(Value::as_str)
                        .map(|id| (id.to_owned(), i))
                })
                .collect();
            let mut fields = BTreeMap::new();
            for t in &things {
                for (k, v) in t {
                    if [ID, CREATED_DATE, MODIFIED_DATE].contains(&k.as_str()) {
                        continue;
                    }
                    if let Some(ty) = meta_type(v) {
                        fields.entry(k.clone()).or_insert(ty);
                    }
                }
            }
            let to_id_key = fixtures.id_keys.get(&name).cloned().unwrap_or_default();
            let from_id_key = to_id_key
                .iter()
                .map(|(k, v)| (v.clone(), k.clone()))
                .collect();
            types.insert(
                name,
                TypeData {
                    things,
                    created,
                    by_id,
                    to_id_key,
                    from_id_key,
                    fields,
                    requests: AtomicU64::new(0),
                },
            );
        }
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            rng: Mutex::new(fastrand::Rng::with_seed(config.faults.seed)),
            drifts: Mutex::new(Vec::new()),
            config,
            types,
            recent: Mutex::new(VecDeque::new()),
            fail: Mutex::new((0, 0)),
            stats: ServerStats::default(),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let _ = serve_conn(sock, st).await;
                });
            }
        });
        Ok(TestServer { addr, state, task })
    }

    /// The base URL clients use: `http://127.0.0.1:PORT/api/1.1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/api/1.1", self.addr)
    }

    /// The dev-database base URL: `http://127.0.0.1:PORT/version-test/api/1.1`.
    pub fn version_test_url(&self) -> String {
        format!("http://{}/version-test/api/1.1", self.addr)
    }

    /// The token the server accepts.
    pub fn token(&self) -> &str {
        &self.state.config.token
    }

    /// Counters.
    pub fn stats(&self) -> &ServerStats {
        &self.state.stats
    }

    /// Throttled answers (429/503) the rate limit sent.
    pub fn throttled(&self) -> u64 {
        self.state.stats.throttled.load(Ordering::Relaxed)
    }

    /// Requests received.
    pub fn requests(&self) -> u64 {
        self.state.stats.requests.load(Ordering::Relaxed)
    }

    /// Answer the next `n` authorized requests with `status` (e.g. 503, 500) instead.
    pub fn fail_next(&self, n: u32, status: u16) {
        *self.state.fail.lock().expect("lock") = (n, status);
    }

    /// Injected failures sent (by [`TestServer::fail_next`] and [`ServerConfig::faults`]).
    pub fn injected(&self) -> u64 {
        self.state.stats.injected.load(Ordering::Relaxed)
    }

    /// From the `requests`-th request on (counted from the server's start; 0 = now), the
    /// things of `bubble_type` (and `/meta`) show `drift`.
    pub fn drift_after(&self, requests: u64, bubble_type: &str, drift: Drift) {
        self.state.drifts.lock().expect("lock").push((
            DriftAfter::Requests(requests),
            bubble_type.to_owned(),
            drift,
        ));
    }

    /// From the `requests`-th request for things of `bubble_type` on (counted from the
    /// server's start), they (and `/meta`) show `drift`: a drift in the middle of paging
    /// the type, whatever the other types' requests.
    pub fn drift_after_type_requests(&self, requests: u64, bubble_type: &str, drift: Drift) {
        self.state.drifts.lock().expect("lock").push((
            DriftAfter::TypeRequests(requests),
            bubble_type.to_owned(),
            drift,
        ));
    }
}

/// When a drift starts.
#[derive(Debug, Clone, Copy)]
enum DriftAfter {
    /// At this request number of the server.
    Requests(u64),
    /// At this request number for things of the type.
    TypeRequests(u64),
}

impl State {
    /// The drifts of `ty` in effect at request number `n`.
    fn drifts_of(&self, ty: &str, n: u64) -> Vec<Drift> {
        let of_type = self
            .types
            .get(ty)
            .map_or(0, |d| d.requests.load(Ordering::Relaxed));
        self.drifts
            .lock()
            .expect("lock")
            .iter()
            .filter(|(after, t, _)| {
                t == ty
                    && match after {
                        DriftAfter::Requests(a) => *a <= n,
                        DriftAfter::TypeRequests(a) => *a <= of_type,
                    }
            })
            .map(|(_, _, d)| d.clone())
            .collect()
    }
}

/// `thing` (display-name keys) as the drifted schema sends it.
fn apply_drifts(thing: &Map<String, Value>, drifts: &[Drift]) -> Map<String, Value> {
    let mut t = thing.clone();
    for d in drifts {
        match d {
            Drift::Rename { from, to } => {
                if let Some(v) = t.remove(from) {
                    t.insert(to.clone(), v);
                }
            }
            Drift::Remove(f) => {
                t.remove(f);
            }
            Drift::ToList(f) => {
                if let Some(v) = t.get_mut(f)
                    && !v.is_null()
                    && !v.is_array()
                {
                    *v = Value::Array(vec![v.take()]);
                }
            }
        }
    }
    t
}

async fn serve_conn(sock: TcpStream, st: Arc<State>) -> std::io::Result<()> {
    sock.set_nodelay(true)?;
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let request_line = line.trim_end().to_owned();
        if request_line.is_empty() {
            continue;
        }
        let mut auth = None;
        let mut content_length = 0usize;
        let mut close = false;
        loop {
            line.clear();
            if r.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let h = line.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let v = v.trim();
                match k.trim().to_ascii_lowercase().as_str() {
                    "authorization" => auth = Some(v.to_owned()),
                    "content-length" => content_length = v.parse().unwrap_or(0),
                    "connection" => close = v.eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
        }
        if content_length > 0 {
            let mut body = vec![0; content_length];
            r.read_exact(&mut body).await?;
        }
        let target = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_owned();
        let (status, extra, body, cut) = handle(&st, &target, auth.as_deref()).await;
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            429 => "Too Many Requests",
            503 => "Service Unavailable",
            _ => "Error",
        };
        let mut head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        w.write_all(head.as_bytes()).await?;
        if cut {
            // Half of the announced body, then the connection closes.
            w.write_all(&body.as_bytes()[..body.len() / 2]).await?;
            w.flush().await?;
            return Ok(());
        }
        w.write_all(body.as_bytes()).await?;
        w.flush().await?;
        if close {
            return Ok(());
        }
    }
}

fn error_body(status: u16, code: &str, message: &str) -> String {
    json!({"statusCode": status, "body": {"status": code, "message": message}}).to_string()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

type Answer = (u16, Vec<(&'static str, String)>, String);

/// The answer, and whether its body is cut short ([`Fault::Truncated`]).
async fn handle(
    st: &State,
    target: &str,
    auth: Option<&str>,
) -> (u16, Vec<(&'static str, String)>, String, bool) {
    let n = st.stats.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let authorized = auth == Some(&format!("Bearer {}", st.config.token));
    let f = &st.config.faults;
    let fault = if authorized && f.rate > 0.0 && !f.kinds.is_empty() {
        let mut rng = st.rng.lock().expect("lock");
        (rng.f64() < f.rate).then(|| f.kinds[rng.usize(..f.kinds.len())])
    } else {
        None
    };
    if fault.is_some() {
        st.stats.injected.fetch_add(1, Ordering::Relaxed);
    }
    match fault {
        Some(Fault::Status(s)) => {
            let code = if s == 429 {
                "TOO_MANY_REQUESTS"
            } else {
                "ERROR"
            };
            return (s, vec![], error_body(s, code, "injected failure"), false);
        }
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        _ => {}
    }
    let (status, extra, mut body) = answer(st, target, auth, n).await;
    let cut = status == 200 && fault == Some(Fault::Truncated);
    if status == 200 && fault == Some(Fault::Malformed) {
        // A JSON text cut short, with a Content-Length that matches it.
        body.truncate(body.len() / 2);
    }
    (status, extra, body, cut)
}

/// `GET /meta`: every type with its fields (display name, generated id, type), drifts
/// applied.
fn meta(st: &State, n: u64) -> String {
    let mut types = Map::new();
    let mut names: Vec<&String> = st.types.keys().collect();
    names.sort();
    for name in names {
        let data = &st.types[name];
        let mut fields = data.fields.clone();
        for d in st.drifts_of(name, n) {
            match d {
                Drift::Rename { from, to } => {
                    if let Some(t) = fields.remove(&from) {
                        fields.insert(to, t);
                    }
                }
                Drift::Remove(f) => {
                    fields.remove(&f);
                }
                Drift::ToList(f) => {
                    if let Some(t) = fields.get_mut(&f) {
                        *t = "list.text";
                    }
                }
            }
        }
        let fields: Vec<Value> = fields
            .iter()
            .map(|(k, t)| {
                let id = data.to_id_key.get(k).cloned().unwrap_or_else(|| k.clone());
                json!({"display": k, "id": id, "type": t})
            })
            .collect();
        types.insert(name.clone(), json!({"display": name, "fields": fields}));
    }
    let get: Vec<&String> = types.keys().collect();
    json!({"get": get, "types": types}).to_string()
}

async fn answer(st: &State, target: &str, auth: Option<&str>, n: u64) -> Answer {
    let arrived = Instant::now();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = path.strip_prefix("/version-test").unwrap_or(path);
    let is_meta = path == "/api/1.1/meta" && st.config.meta;
    let rest = match path.strip_prefix("/api/1.1/obj/") {
        Some(rest) => Some(rest),
        None if is_meta => Some(""),
        None => None,
    };
    let Some(rest) = rest else {
        return (
            404,
            vec![],
            error_body(404, "NOT_FOUND", "unknown endpoint"),
        );
    };
    if auth != Some(&format!("Bearer {}", st.config.token)) {
        return (
            401,
            vec![],
            error_body(401, "UNAUTHORIZED", "invalid or missing API token"),
        );
    }
    if is_meta {
        return (200, vec![], meta(st, n));
    }
    if let Some(limit) = st.config.rate_limit {
        let throttled = {
            let mut recent = st.recent.lock().expect("lock");
            while recent
                .front()
                .is_some_and(|t| arrived.duration_since(*t) >= st.config.rate_window)
            {
                recent.pop_front();
            }
            if recent.len() >= limit as usize {
                true
            } else {
                recent.push_back(arrived);
                false
            }
        };
        if throttled {
            st.stats.throttled.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(st.config.latency).await;
            let mut h = vec![];
            if let Some(ra) = st.config.retry_after {
                h.push(("Retry-After", format!("{}", ra.as_secs_f64())));
            }
            let s = st.config.throttle_status;
            return (
                s,
                h,
                error_body(s, "TOO_MANY_REQUESTS", "rate limit exceeded"),
            );
        }
    }
    {
        let mut f = st.fail.lock().expect("lock");
        if f.0 > 0 {
            f.0 -= 1;
            st.stats.injected.fetch_add(1, Ordering::Relaxed);
            let s = f.1;
            return (s, vec![], error_body(s, "ERROR", "injected failure"));
        }
    }
    tokio::time::sleep(st.config.latency).await;
    let (ty, id) = match rest.split_once('/') {
        Some((t, i)) => (t, Some(percent_decode(i))),
        None => (rest, None),
    };
    let Some(data) = st.types.get(ty) else {
        return (
            404,
            vec![],
            error_body(404, "NOT_FOUND", &format!("type {ty} not found")),
        );
    };
    data.requests.fetch_add(1, Ordering::Relaxed);
    let drifts = st.drifts_of(ty, n);
    let body = match id {
        Some(id) => match data.by_id.get(&id) {
            Some(&i) => json!({"response": render(st, data, &data.things[i], &drifts)}).to_string(),
            None => {
                return (
                    404,
                    vec![],
                    error_body(404, "MISSING_DATA", &format!("no thing {id}")),
                );
            }
        },
        None => match list(st, data, query, &drifts) {
            Ok(b) => b,
            Err(m) => return (400, vec![], error_body(400, "INVALID_DATA", &m)),
        },
    };
    st.stats.ok.fetch_add(1, Ordering::Relaxed);
    (200, vec![], body)
}

fn render(st: &State, data: &TypeData, t: &Map<String, Value>, drifts: &[Drift]) -> Value {
    let drifted;
    let t = if drifts.is_empty() {
        t
    } else {
        drifted = apply_drifts(t, drifts);
        &drifted
    };
    match st.config.key_mode {
        KeyMode::DisplayNames => Value::Object(t.clone()),
        KeyMode::GeneratedIds => Value::Object(
            t.iter()
                .map(|(k, v)| {
                    (
                        data.to_id_key.get(k).cloned().unwrap_or_else(|| k.clone()),
                        v.clone(),
                    )
                })
                .collect(),
        ),
    }
}

#[derive(serde::Deserialize)]
struct Cons {
    key: String,
    constraint_type: String,
    #[serde(default)]
    value: Value,
}

fn cmp_values(a: &Value, b: &Value, dates: bool) -> Option<std::cmp::Ordering> {
    if dates {
        let pa = a.as_str().and_then(parse_datetime)?;
        let pb = b.as_str().and_then(parse_datetime)?;
        return Some(pa.cmp(&pb));
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn matches(t: &Map<String, Value>, c: &Cons) -> bool {
    let v = t.get(&c.key).unwrap_or(&Value::Null);
    let dates = c.key == CREATED_DATE || c.key == MODIFIED_DATE;
    use std::cmp::Ordering::*;
    match c.constraint_type.as_str() {
        "equals" => v == &c.value,
        "not equal" => v != &c.value,
        "is_empty" => v.is_null(),
        "is_not_empty" => !v.is_null(),
        "greater than" => cmp_values(v, &c.value, dates) == Some(Greater),
        "less than" => cmp_values(v, &c.value, dates) == Some(Less),
        _ => false,
    }
}

fn list(st: &State, data: &TypeData, query: &str, drifts: &[Drift]) -> Result<String, String> {
    let mut cursor = 0usize;
    let mut limit = 100usize;
    let mut constraints: Vec<Cons> = Vec::new();
    let mut sort_field: Option<String> = None;
    let mut descending = false;
    let mut tie_break = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match k {
            "cursor" => cursor = v.parse().map_err(|_| format!("bad cursor {v}"))?,
            "limit" => {
                limit = v
                    .parse::<usize>()
                    .map_err(|_| format!("bad limit {v}"))?
                    .min(100)
            }
            "constraints" => {
                constraints =
                    serde_json::from_str(&v).map_err(|e| format!("bad constraints: {e}"))?
            }
            "sort_field" => sort_field = Some(v),
            "descending" => descending = v == "true",
            "additional_sort_fields" => {
                let a: Vec<Value> = serde_json::from_str(&v)
                    .map_err(|e| format!("bad additional_sort_fields: {e}"))?;
                tie_break = a
                    .iter()
                    .any(|x| x.get("sort_field").and_then(Value::as_str) == Some(ID));
            }
            _ => {}
        }
    }
    // keys from the client's mode to display keys
    for c in &mut constraints {
        if let Some(k) = data.from_id_key.get(&c.key) {
            c.key = k.clone();
        }
    }
    if let Some(f) = &sort_field
        && let Some(k) = data.from_id_key.get(f)
    {
        sort_field = Some(k.clone());
    }
    // Created Date range by binary search, other constraints by scan
    let (mut lo, mut hi) = (0usize, data.things.len());
    let mut others = Vec::new();
    for c in constraints {
        let t = (c.key == CREATED_DATE)
            .then(|| c.value.as_str().and_then(parse_datetime))
            .flatten()
            .map(|d| d.timestamp_millis());
        match (t, c.constraint_type.as_str()) {
            (Some(ms), "greater than") => lo = lo.max(data.created.partition_point(|&x| x <= ms)),
            (Some(ms), "less than") => hi = hi.min(data.created.partition_point(|&x| x < ms)),
            _ => others.push(c),
        }
    }
    let mut idx: Vec<usize> = if lo < hi {
        (lo..hi)
            .filter(|&i| others.iter().all(|c| matches(&data.things[i], c)))
            .collect()
    } else {
        Vec::new()
    };
    let by_created = sort_field.as_deref().is_none_or(|f| f == CREATED_DATE);
    if !by_created {
        let f = sort_field.clone().unwrap_or_default();
        idx.sort_by(|&a, &b| {
            let va = data.things[a].get(&f).unwrap_or(&Value::Null);
            let vb = data.things[b].get(&f).unwrap_or(&Value::Null);
            cmp_values(va, vb, f == MODIFIED_DATE).unwrap_or(std::cmp::Ordering::Equal)
        });
    }
    if descending {
        idx.reverse();
    }
    let total = idx.len();
    let end = (cursor + limit).min(st.config.offset_cap).min(total);
    let start = cursor.min(end);
    // unstable order among equal Created Dates: shuffle each tie group touching the page
    let shuffle = by_created && !(tie_break && st.config.honor_tie_break);
    let page: Vec<usize> = if shuffle && start < end {
        let key = |i: usize| data.created[idx[i]];
        let mut a = start;
        while a > 0 && key(a - 1) == key(start) {
            a -= 1;
        }
        let mut b = end;
        while b < total && key(b) == key(end - 1) {
            b += 1;
        }
        let mut span: Vec<usize> = idx[a..b].to_vec();
        let mut g = 0;
        while g < span.len() {
            let mut h = g + 1;
            while h < span.len() && data.created[span[h]] == data.created[span[g]] {
                h += 1;
            }
            fastrand::shuffle(&mut span[g..h]);
            g = h;
        }
        span[start - a..end - a].to_vec()
    } else {
        idx[start..end].to_vec()
    };
    let results: Vec<Value> = page
        .iter()
        .map(|&i| render(st, data, &data.things[i], drifts))
        .collect();
    let count = results.len();
    Ok(json!({"response": {
        "cursor": cursor,
        "results": results,
        "count": count,
        "remaining": total.saturating_sub(cursor + count),
    }})
    .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(percent_decode("a+b%20c%5B%22x%22%5D"), "a b c[\"x\"]");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
