//! The Data API client: one page with self rate limiting and retries, keyset paging of a
//! `Created Date` window, and the split of a type into disjoint windows.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use etl_core::Secret;
use etl_core::retry::Backoff;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::error::{BubbleError, Result};
use crate::schema::{CREATED_DATE, ID, format_datetime, parse_datetime};

/// The most things the Data API returns per request.
pub const MAX_PAGE_SIZE: u32 = 100;

/// How to reach and pace a Bubble app.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BubbleConfig {
    /// Base URL ending in `/api/1.1` (`https://app.bubbleapps.io/api/1.1`, or
    /// `.../version-test/api/1.1` for the dev database).
    pub base_url: String,
    /// Admin API token (`Authorization: Bearer`).
    pub api_key: Secret,
    /// Requests per minute this client never exceeds, over all its concurrent pagers
    /// (Bubble's default plan limit is about 1,000); it paces at [`PACE_HEADROOM`] below
    /// this so that arrival jitter never crosses the server's limit.
    pub requests_per_minute: u32,
    /// Retries of one page after a 429, 503, other 5xx or connection error.
    pub max_retries: u32,
    /// First backoff delay (doubled per retry, with full jitter) when no `Retry-After` is sent.
    #[serde(with = "millis")]
    pub backoff_base: Duration,
    /// Longest backoff delay.
    #[serde(with = "millis")]
    pub backoff_max: Duration,
    /// Things per page (at most 100).
    pub page_size: u32,
    /// Timeout of one request.
    #[serde(with = "millis")]
    pub timeout: Duration,
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

impl Default for BubbleConfig {
    fn default() -> Self {
        BubbleConfig {
            base_url: String::new(),
            api_key: Secret::new(""),
            requests_per_minute: 1000,
            max_retries: 6,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            page_size: MAX_PAGE_SIZE,
            timeout: Duration::from_secs(60),
        }
    }
}

impl BubbleConfig {
    /// A config with defaults for `base_url` and `api_key`.
    pub fn new(base_url: impl Into<String>, api_key: Secret) -> Self {
        BubbleConfig {
            base_url: base_url.into(),
            api_key,
            ..Self::default()
        }
    }
}

/// A constraint of the Data API (`{"key":..,"constraint_type":..,"value":..}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Constraint {
    /// Field key.
    pub key: String,
    /// `equals`, `greater than`, `less than`, ...
    pub constraint_type: String,
    /// Compared value.
    #[serde(skip_serializing_if = "Value::is_null", default)]
    pub value: Value,
}

impl Constraint {
    /// `key` greater than `t` (strict).
    pub fn after(key: &str, t: DateTime<Utc>) -> Self {
        Constraint {
            key: key.to_owned(),
            constraint_type: "greater than".to_owned(),
            value: Value::String(format_datetime(t)),
        }
    }
    /// `key` less than `t` (strict).
    pub fn before(key: &str, t: DateTime<Utc>) -> Self {
        Constraint {
            key: key.to_owned(),
            constraint_type: "less than".to_owned(),
            value: Value::String(format_datetime(t)),
        }
    }
}

/// A half-open span of `Created Date`, `[start, end)`, plus constraints every page carries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Inclusive start; `None` = from the first thing.
    pub start: Option<DateTime<Utc>>,
    /// Exclusive end; `None` = to the last thing (including ones created during the run).
    pub end: Option<DateTime<Utc>>,
    /// Extra constraints (e.g. `Modified Date greater than` for incremental runs).
    #[serde(default)]
    pub constraints: Vec<Constraint>,
}

/// One answer of a list request.
#[derive(Debug, Clone, Deserialize)]
pub struct Page {
    /// Offset of the first result.
    #[serde(default)]
    pub cursor: u64,
    /// The things.
    pub results: Vec<Map<String, Value>>,
    /// Things in this answer.
    #[serde(default)]
    pub count: u64,
    /// Things the app says remain after this page (not trusted for stopping).
    #[serde(default)]
    pub remaining: u64,
}

/// The app's description of its types, `GET /meta` of the Data API: each type with its
/// fields (display name, generated id, type such as `text`, `number`, `list.text`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AppMeta {
    /// Types by name.
    #[serde(default)]
    pub types: std::collections::HashMap<String, MetaType>,
}

/// One type of [`AppMeta`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MetaType {
    /// Its display name.
    #[serde(default)]
    pub display: String,
    /// Its fields.
    #[serde(default)]
    pub fields: Vec<MetaField>,
}

/// One field of a [`MetaType`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MetaField {
    /// The display name (the key in display-name mode).
    #[serde(default)]
    pub display: String,
    /// The generated id (the key in generated-id mode).
    #[serde(default)]
    pub id: String,
    /// The Bubble type: `text`, `number`, `boolean`, `date`, `list.text`, a type name...
    #[serde(rename = "type", default)]
    pub kind: String,
}

#[derive(Deserialize)]
struct Envelope<T> {
    response: T,
}

/// A list request.
#[derive(Debug, Clone, Default)]
pub struct PageQuery {
    /// Offset.
    pub cursor: u64,
    /// Page size (at most 100).
    pub limit: u32,
    /// Constraints.
    pub constraints: Vec<Constraint>,
    /// Sort field (`Created Date`).
    pub sort_field: Option<String>,
    /// Descending order.
    pub descending: bool,
    /// Tie-breaks (`_id`).
    pub additional_sort_fields: Vec<(String, bool)>,
}

impl PageQuery {
    fn describe(&self) -> String {
        let c: Vec<String> = self
            .constraints
            .iter()
            .map(|c| format!("{} {} {}", c.key, c.constraint_type, c.value))
            .collect();
        format!("cursor {}, constraints [{}]", self.cursor, c.join(", "))
    }
}

/// Counters of a client, for reports and benches.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// HTTP requests sent.
    pub requests: AtomicU64,
    /// Requests retried.
    pub retries: AtomicU64,
    /// 429/503 answers received.
    pub throttled: AtomicU64,
    /// Things received (before de-duplication).
    pub things: AtomicU64,
}

/// Spaces requests evenly: never more than `per_minute` in any minute, over all tasks.
///
/// The server counts requests when they *arrive*, and the time between sending and arriving
/// varies (scheduling, connection reuse, the network): paced at exactly the limit, a
/// request delayed at the start of a minute lets one too many arrive inside it (seen: one
/// 429 in 1,662 requests). So the spacing keeps [`PACE_HEADROOM`] in hand.
#[derive(Debug)]
struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

/// Fraction of the rate limit the client leaves unused to absorb arrival jitter (1 %: 0.6 s
/// a minute).
pub const PACE_HEADROOM: f64 = 0.01;

impl Pacer {
    fn new(per_minute: u32) -> Self {
        let per_minute = f64::from(per_minute.max(1)) * (1.0 - PACE_HEADROOM);
        Pacer {
            interval: Duration::from_secs_f64(60.0 / per_minute),
            next: Mutex::new(Instant::now()),
        }
    }

    async fn acquire(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// The server asked everyone to wait: no request before `until`.
    async fn pause_until(&self, until: Instant) {
        let mut next = self.next.lock().await;
        if *next < until {
            *next = until;
        }
    }
}

/// A Bubble Data API client. Cheap to share (`Arc`); its rate limit covers every task using it.
#[derive(Debug)]
pub struct BubbleClient {
    http: reqwest::Client,
    config: BubbleConfig,
    pacer: Pacer,
    stats: ClientStats,
}

enum Attempt {
    Done(Value),
    Retry {
        why: String,
        retry_after: Option<Duration>,
    },
}

impl BubbleClient {
    /// A client for `config`.
    ///
    /// # Errors
    /// An empty base URL, a page size above 100, or an HTTP client that cannot be built.
    pub fn new(config: BubbleConfig) -> Result<Self> {
        if config.base_url.is_empty() {
            return Err(BubbleError::Config(
                "base_url is empty: set BUBBLE_API_URL to the app's `.../api/1.1`".into(),
            ));
        }
        if config.page_size == 0 || config.page_size > MAX_PAGE_SIZE {
            return Err(BubbleError::Config(format!(
                "page_size {} is outside 1..=100 (the Data API's limit)",
                config.page_size
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .pool_max_idle_per_host(64)
            .build()
            .map_err(BubbleError::Client)?;
        Ok(BubbleClient {
            http,
            pacer: Pacer::new(config.requests_per_minute),
            config,
            stats: ClientStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BubbleConfig {
        &self.config
    }

    /// Request counters.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    fn type_url(&self, bubble_type: &str) -> String {
        format!(
            "{}/obj/{}",
            self.config.base_url.trim_end_matches('/'),
            bubble_type
        )
    }

    /// One GET with pacing and retries; `page` names the request in errors.
    async fn get_json(
        &self,
        bubble_type: &str,
        url: reqwest::Url,
        page: u64,
        position: &(dyn Fn() -> String + Sync),
    ) -> Result<Option<Value>> {
        let mut retries = self.policy().retries();
        loop {
            self.pacer.acquire().await;
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let outcome = self.attempt(bubble_type, &url, page).await?;
            let (why, retry_after) = match outcome {
                Some(Attempt::Done(v)) => return Ok(Some(v)),
                None => return Ok(None),
                Some(Attempt::Retry { why, retry_after }) => (why, retry_after),
            };
            // Spread the clients that all got the same hint.
            let hint = retry_after.map(|d| d + Duration::from_millis(fastrand::u64(0..250)));
            let Some(delay) = retries.next_delay(hint) else {
                return Err(BubbleError::RetriesExhausted {
                    bubble_type: bubble_type.to_owned(),
                    page,
                    position: position(),
                    attempts: retries.attempts(),
                    last: why,
                });
            };
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            if hint.is_some() {
                self.pacer.pause_until(Instant::now() + delay).await;
            }
            tracing::warn!(
                bubble_type, page, attempt = retries.attempts(), delay_ms = delay.as_millis() as u64, reason = %why,
                "Bubble request failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// Retries of one request: equal jitter over `backoff_base × 2^n`, capped at
    /// `backoff_max`, `max_retries` of them.
    fn policy(&self) -> Backoff {
        Backoff::new(
            self.config.backoff_base,
            self.config.backoff_max,
            self.config.max_retries,
        )
    }

    /// `Ok(None)` = 404 for a single thing.
    async fn attempt(
        &self,
        bubble_type: &str,
        url: &reqwest::Url,
        page: u64,
    ) -> Result<Option<Attempt>> {
        let resp = self
            .http
            .get(url.clone())
            .bearer_auth(self.config.api_key.expose())
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                return Ok(Some(Attempt::Retry {
                    why: format!("request error: {e}"),
                    retry_after: None,
                }));
            }
        };
        let status = resp.status().as_u16();
        let bare_url = {
            let mut u = url.clone();
            u.set_query(None);
            u.to_string()
        };
        match status {
            200..=299 => match resp.json::<Value>().await {
                Ok(v) => Ok(Some(Attempt::Done(v))),
                Err(e) => Ok(Some(Attempt::Retry {
                    why: format!("cannot read the answer: {e}"),
                    retry_after: None,
                })),
            },
            401 | 403 => Err(BubbleError::Unauthorized {
                bubble_type: bubble_type.to_owned(),
                status,
                url: bare_url,
            }),
            404 => Err(BubbleError::NotFound {
                bubble_type: bubble_type.to_owned(),
                url: bare_url,
            }),
            408 | 429 | 500..=599 => {
                if status == 429 || status == 503 {
                    self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                }
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                let body = resp.text().await.unwrap_or_default();
                Ok(Some(Attempt::Retry {
                    why: format!("HTTP {status}: {}", truncate(&body, 300)),
                    retry_after,
                }))
            }
            _ => {
                let body = resp.text().await.unwrap_or_default();
                Err(BubbleError::Status {
                    bubble_type: bubble_type.to_owned(),
                    page,
                    status,
                    body: truncate(&body, 500).to_owned(),
                })
            }
        }
    }

    /// Fetch one list page (paced, retried).
    ///
    /// # Errors
    /// 401/403 and 404 at once; [`BubbleError::RetriesExhausted`] naming the type and page
    /// when 429/5xx/connection failures outlast the retries.
    pub async fn fetch_page(
        &self,
        bubble_type: &str,
        query: &PageQuery,
        page: u64,
    ) -> Result<Page> {
        let mut url = reqwest::Url::parse(&self.type_url(bubble_type)).map_err(|e| {
            BubbleError::Config(format!("invalid base_url `{}`: {e}", self.config.base_url))
        })?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("cursor", &query.cursor.to_string());
            q.append_pair("limit", &query.limit.min(MAX_PAGE_SIZE).to_string());
            if !query.constraints.is_empty() {
                q.append_pair(
                    "constraints",
                    &serde_json::to_string(&query.constraints).expect("constraints serialize"),
                );
            }
            if let Some(f) = &query.sort_field {
                q.append_pair("sort_field", f);
                q.append_pair(
                    "descending",
                    if query.descending { "true" } else { "false" },
                );
            }
            if !query.additional_sort_fields.is_empty() {
                let a: Vec<Value> = query
                    .additional_sort_fields
                    .iter()
                    .map(|(f, d)| json!({"sort_field": f, "descending": d}))
                    .collect();
                q.append_pair("additional_sort_fields", &Value::Array(a).to_string());
            }
        }
        let v = self
            .get_json(bubble_type, url, page, &|| query.describe())
            .await?
            .ok_or_else(|| BubbleError::NotFound {
                bubble_type: bubble_type.to_owned(),
                url: self.type_url(bubble_type),
            })?;
        let env: Envelope<Page> = serde_json::from_value(v).map_err(|e| BubbleError::Decode {
            bubble_type: bubble_type.to_owned(),
            page,
            detail: format!("not a Data API list answer ({e})"),
        })?;
        self.stats
            .things
            .fetch_add(env.response.results.len() as u64, Ordering::Relaxed);
        Ok(env.response)
    }

    /// `GET /meta`: the app's types and fields; `None` when the app does not serve it (404,
    /// or an answer that is not the Data API's description).
    ///
    /// # Errors
    /// 401/403 at once; [`BubbleError::RetriesExhausted`] when 429/5xx/connection failures
    /// outlast the retries.
    pub async fn meta(&self) -> Result<Option<AppMeta>> {
        let base = self.config.base_url.trim_end_matches('/');
        let url = reqwest::Url::parse(&format!("{base}/meta"))
            .map_err(|e| BubbleError::Config(format!("invalid base_url `{base}`: {e}")))?;
        let v = match self
            .get_json("(meta)", url, 0, &|| "GET /meta".to_owned())
            .await
        {
            Ok(Some(v)) => v,
            Ok(None) | Err(BubbleError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        match serde_json::from_value::<AppMeta>(v) {
            Ok(m) if !m.types.is_empty() => Ok(Some(m)),
            Ok(_) | Err(_) => {
                tracing::warn!(
                    "the app's /meta answer describes no types: the declared schemas are checked against the things only"
                );
                Ok(None)
            }
        }
    }

    /// `GET /obj/{type}/{id}`: one thing, `None` when it does not exist.
    ///
    /// # Errors
    /// As [`BubbleClient::fetch_page`].
    pub async fn get_thing(
        &self,
        bubble_type: &str,
        id: &str,
    ) -> Result<Option<Map<String, Value>>> {
        let url = reqwest::Url::parse(&format!("{}/{id}", self.type_url(bubble_type)))
            .map_err(|e| BubbleError::Config(format!("invalid base_url: {e}")))?;
        let v = match self
            .get_json(bubble_type, url, 1, &|| format!("thing {id}"))
            .await
        {
            Ok(Some(v)) => v,
            Ok(None) | Err(BubbleError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        match v.get("response") {
            Some(Value::Object(m)) => Ok(Some(m.clone())),
            _ => Err(BubbleError::Decode {
                bubble_type: bubble_type.to_owned(),
                page: 1,
                detail: format!("thing {id}: no `response` object"),
            }),
        }
    }

    /// The first (or last) thing by `Created Date` matching `constraints`, and the count.
    async fn edge(
        &self,
        bubble_type: &str,
        constraints: &[Constraint],
        last: bool,
    ) -> Result<(Option<DateTime<Utc>>, u64)> {
        let q = PageQuery {
            cursor: 0,
            limit: 1,
            constraints: constraints.to_vec(),
            sort_field: Some(CREATED_DATE.to_owned()),
            descending: last,
            additional_sort_fields: vec![(ID.to_owned(), last)],
        };
        let p = self.fetch_page(bubble_type, &q, 0).await?;
        let total = p.count + p.remaining;
        let Some(thing) = p.results.first() else {
            return Ok((None, total));
        };
        Ok((Some(created_of(bubble_type, thing)?), total))
    }

    /// Split a type into `n` disjoint `Created Date` windows of equal time span covering
    /// every thing (the first starts at the beginning, the last is open-ended), and the
    /// number of things the app reports.
    ///
    /// # Errors
    /// As [`BubbleClient::fetch_page`].
    pub async fn windows(
        &self,
        bubble_type: &str,
        n: usize,
        constraints: &[Constraint],
    ) -> Result<(Vec<Window>, u64)> {
        let base = Window {
            start: None,
            end: None,
            constraints: constraints.to_vec(),
        };
        let (first, total) = self.edge(bubble_type, constraints, false).await?;
        if n <= 1 {
            return Ok((vec![base], total));
        }
        let (Some(first), (Some(last), _)) =
            (first, self.edge(bubble_type, constraints, true).await?)
        else {
            return Ok((vec![base], total));
        };
        let span = (last - first).num_milliseconds() + 1;
        let n = (n as i64).min(span.max(1)) as usize;
        let mut cuts = Vec::with_capacity(n.saturating_sub(1));
        for i in 1..n as i64 {
            let ms = first.timestamp_millis() + span * i / n as i64;
            cuts.push(DateTime::from_timestamp_millis(ms).expect("in range"));
        }
        let mut out = Vec::with_capacity(n);
        let mut start = None;
        for c in cuts {
            out.push(Window {
                start,
                end: Some(c),
                constraints: constraints.to_vec(),
            });
            start = Some(c);
        }
        out.push(Window {
            start,
            end: None,
            constraints: constraints.to_vec(),
        });
        Ok((out, total))
    }
}

fn created_of(bubble_type: &str, thing: &Map<String, Value>) -> Result<DateTime<Utc>> {
    let id = thing.get(ID).and_then(Value::as_str).unwrap_or("?");
    match thing.get(CREATED_DATE) {
        Some(Value::String(s)) => parse_datetime(s).ok_or_else(|| BubbleError::NoCreatedDate {
            bubble_type: bubble_type.to_owned(),
            id: id.to_owned(),
            detail: format!("`{s}`"),
        }),
        other => Err(BubbleError::NoCreatedDate {
            bubble_type: bubble_type.to_owned(),
            id: id.to_owned(),
            detail: format!("{other:?}"),
        }),
    }
}

/// `Retry-After`: delta seconds or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<f64>() {
        return (s >= 0.0 && s.is_finite()).then(|| Duration::from_secs_f64(s.min(3600.0)));
    }
    let t = DateTime::parse_from_rfc2822(v).ok()?;
    let d = t.with_timezone(&Utc) - Utc::now();
    Some(d.to_std().unwrap_or(Duration::ZERO))
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Keyset paging of one window: sort by `Created Date` then `_id`, seek with
/// `Created Date greater than` (the last date seen, minus 1 ms, so ties at the boundary are
/// asked again), skip ids already returned at the boundary, stop on an empty page.
///
/// The `cursor` offset stays near zero, so the app's offset cap (~50,000) never applies.
/// When more than a page of things share one `Created Date`, the pager walks that tie group
/// with the cursor; this relies on the app honoring the `_id` tie-break (Bubble does).
#[derive(Debug)]
pub struct KeysetPager {
    client: Arc<BubbleClient>,
    bubble_type: String,
    window: Window,
    boundary: Option<DateTime<Utc>>,
    seen: HashSet<String>,
    cursor: u64,
    page: u64,
    done: bool,
    reported_total: Option<u64>,
}

impl KeysetPager {
    /// A pager over `window` of `bubble_type`.
    pub fn new(client: Arc<BubbleClient>, bubble_type: &str, window: Window) -> Self {
        KeysetPager {
            client,
            bubble_type: bubble_type.to_owned(),
            window,
            boundary: None,
            seen: HashSet::new(),
            cursor: 0,
            page: 0,
            done: false,
            reported_total: None,
        }
    }

    /// Pages requested so far.
    pub fn pages(&self) -> u64 {
        self.page
    }

    /// `count + remaining` of the first answer (what the app claims; a hint only).
    pub fn reported_total(&self) -> Option<u64> {
        self.reported_total
    }

    fn query(&self) -> PageQuery {
        let mut constraints = self.window.constraints.clone();
        let lower = self.boundary.or(self.window.start);
        if let Some(b) = lower {
            constraints.push(Constraint::after(
                CREATED_DATE,
                b - chrono::Duration::milliseconds(1),
            ));
        }
        if let Some(e) = self.window.end {
            constraints.push(Constraint::before(CREATED_DATE, e));
        }
        PageQuery {
            cursor: self.cursor,
            limit: self.client.config.page_size,
            constraints,
            sort_field: Some(CREATED_DATE.to_owned()),
            descending: false,
            additional_sort_fields: vec![(ID.to_owned(), false)],
        }
    }

    /// The next things never returned before; `None` when the window is exhausted.
    ///
    /// # Errors
    /// As [`BubbleClient::fetch_page`], and a thing without a valid `Created Date`.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Map<String, Value>>>> {
        while !self.done {
            self.page += 1;
            let page = self
                .client
                .fetch_page(&self.bubble_type, &self.query(), self.page)
                .await?;
            if self.reported_total.is_none() {
                self.reported_total = Some(page.count + page.remaining);
            }
            if page.results.is_empty() {
                self.done = true;
                break;
            }
            let n = page.results.len() as u64;
            let mut dates = Vec::with_capacity(page.results.len());
            for t in &page.results {
                dates.push(created_of(&self.bubble_type, t)?);
            }
            let max = *dates.iter().max().expect("non-empty");
            let mut fresh = Vec::with_capacity(page.results.len());
            let advanced = self.boundary.is_none_or(|b| max > b);
            if advanced {
                let old = std::mem::take(&mut self.seen);
                for (t, d) in page.results.into_iter().zip(dates) {
                    let id = t
                        .get(ID)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    if old.contains(&id) {
                        continue;
                    }
                    if d == max {
                        self.seen.insert(id);
                    }
                    fresh.push(t);
                }
                self.boundary = Some(max);
                self.cursor = 0;
            } else {
                for t in page.results {
                    let id = t
                        .get(ID)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    if self.seen.insert(id) {
                        fresh.push(t);
                    }
                }
                self.cursor += n;
            }
            if !fresh.is_empty() {
                return Ok(Some(fresh));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let mut cfg = BubbleConfig::new("http://127.0.0.1:1/api/1.1", Secret::new("t"));
        cfg.backoff_base = Duration::from_millis(100);
        cfg.backoff_max = Duration::from_millis(1000);
        let c = BubbleClient::new(cfg).unwrap();
        for _ in 0..50 {
            let d1 = c.policy().delay(1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = c.policy().delay(3);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            assert!(c.policy().delay(20) <= Duration::from_millis(1000));
        }
    }

    #[tokio::test]
    async fn pacer_spaces_requests() {
        let p = Pacer::new(6000);
        let t0 = Instant::now();
        for _ in 0..11 {
            p.acquire().await;
        }
        let e = t0.elapsed();
        assert!(
            e >= Duration::from_millis(100) && e < Duration::from_millis(400),
            "{e:?}"
        );
    }
}
