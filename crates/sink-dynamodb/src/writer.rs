//! [`ItemWriter`]: `BatchWriteItem` in calls of 25, several in flight, with de-duplication,
//! size checks, and retries of throttling and `UnprocessedItems`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{DeleteRequest, PutRequest, WriteRequest};
use etl_core::retry::Backoff;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::error::{DynamoError, Result};
use crate::mapping::{Item, KeySchema, MAX_ITEM_BYTES, item_size};

/// Requests per `BatchWriteItem` call (DynamoDB's limit).
pub const BATCH_WRITE_MAX: usize = 25;

/// How an [`ItemWriter`] writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WriteOptions {
    /// `BatchWriteItem` calls in flight at once, in all: clones of an [`ItemWriter`] (the
    /// units a pipeline loads at the same time) share the limit.
    pub concurrency: usize,
    /// Requests per call, at most 25.
    pub batch_size: usize,
    /// Retries of one call (throttling, 5xx, `UnprocessedItems`) before failing.
    pub max_retries: u32,
    /// First retry delay; doubled per retry when `exponential_backoff`.
    #[serde(with = "millis")]
    pub retry_delay: Duration,
    /// Longest delay between two attempts.
    #[serde(with = "millis")]
    pub max_delay: Duration,
    /// Double the delay at every retry (always with full jitter).
    pub exponential_backoff: bool,
    /// A pause after every call, holding its place among the `concurrency` calls (the
    /// seed's `batchDelay`, against rate limits): at most `concurrency` calls per pause.
    #[serde(with = "millis")]
    pub batch_delay: Duration,
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            concurrency: 16,
            batch_size: BATCH_WRITE_MAX,
            max_retries: 8,
            retry_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(5),
            exponential_backoff: true,
            batch_delay: Duration::ZERO,
        }
    }
}

impl WriteOptions {
    /// The retry policy these options describe.
    pub fn policy(&self) -> Backoff {
        Backoff {
            base: self.retry_delay,
            max: self.max_delay,
            max_retries: self.max_retries,
            exponential: self.exponential_backoff,
        }
    }

    /// The delay before retry number `attempt` (1-based): equal jitter over the
    /// (exponential) ceiling ([`Backoff::delay`]).
    pub fn backoff(&self, attempt: u32) -> Duration {
        self.policy().delay(attempt)
    }
}

/// Counters of an [`ItemWriter`], for `load_report.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteStats {
    /// Items written (puts) or deleted.
    pub items: u64,
    /// `BatchWriteItem` calls made, retries included.
    pub calls: u64,
    /// Calls answered with throttling or a 5xx and retried.
    pub throttled: u64,
    /// Items returned in `UnprocessedItems` and sent again.
    pub unprocessed_retried: u64,
    /// Items dropped because a later item in the same write had the same key (last wins).
    pub deduplicated: u64,
    /// Items refused before sending because they exceed 400 KB.
    pub oversize: u64,
}

impl WriteStats {
    fn add(&mut self, o: &WriteStats) {
        self.items += o.items;
        self.calls += o.calls;
        self.throttled += o.throttled;
        self.unprocessed_retried += o.unprocessed_retried;
        self.deduplicated += o.deduplicated;
        self.oversize += o.oversize;
    }
}

/// An item refused before sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedItem {
    /// Position in the input.
    pub index: usize,
    /// Its key, as text.
    pub key: String,
    /// Why (`item is 512000 bytes, over DynamoDB's 409600-byte limit`).
    pub reason: String,
}

/// What one [`ItemWriter::put_items`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOutcome {
    /// Items written (after de-duplication).
    pub written: u64,
    /// Items replaced by a later item with the same key.
    pub deduplicated: u64,
    /// Items refused (too large, no key).
    pub refused: Vec<RefusedItem>,
}

/// Writes items to one table with `BatchWriteItem`.
///
/// * keys are de-duplicated within one `put_items` call, the last item winning (DynamoDB
///   rejects a whole batch holding one key twice);
/// * items over 400 KB, or without their key attributes, are refused before sending;
/// * calls of 25 requests, at most `concurrency` in flight across all clones of the writer;
/// * `UnprocessedItems`, `ProvisionedThroughputExceededException`, `ThrottlingException`,
///   `RequestLimitExceeded`, 5xx and transport errors are retried with jittered exponential
///   backoff up to `max_retries`, then [`DynamoError::RetriesExhausted`] names the table
///   and the keys not written.
///
/// Puts replace whole items, so writing the same items again is idempotent.
#[derive(Debug, Clone)]
pub struct ItemWriter {
    client: Client,
    table: String,
    keys: KeySchema,
    options: WriteOptions,
    stats: Arc<Mutex<WriteStats>>,
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl ItemWriter {
    /// A writer to `table`, whose key attributes are `keys`.
    pub fn new(
        client: Client,
        table: impl Into<String>,
        keys: KeySchema,
        options: WriteOptions,
    ) -> Self {
        ItemWriter {
            client,
            table: table.into(),
            keys,
            in_flight: Arc::new(tokio::sync::Semaphore::new(options.concurrency.max(1))),
            options,
            stats: Arc::default(),
        }
    }

    /// The table.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The key schema.
    pub fn keys(&self) -> &KeySchema {
        &self.keys
    }

    /// The options.
    pub fn options(&self) -> &WriteOptions {
        &self.options
    }

    /// Counters so far (shared by clones).
    pub fn stats(&self) -> WriteStats {
        self.stats.lock().expect("stats lock").clone()
    }

    /// Put `items`; see the type's docs. Refused items are returned, not errors.
    ///
    /// # Errors
    /// A non-retryable service error, or retries exhausted.
    pub async fn put_items(&self, items: Vec<Item>) -> Result<PutOutcome> {
        let mut outcome = PutOutcome::default();
        let mut slot: HashMap<String, usize> = HashMap::with_capacity(items.len());
        let mut kept: Vec<Option<(String, Item)>> = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let key = self.keys.describe(&item);
            if let Err(e) = self.keys.key_of(&self.table, &item) {
                outcome.refused.push(RefusedItem {
                    index,
                    key,
                    reason: e.to_string(),
                });
                continue;
            }
            let size = item_size(&item);
            if size > MAX_ITEM_BYTES {
                outcome.refused.push(RefusedItem {
                    index,
                    key,
                    reason: format!(
                        "item is {size} bytes, over DynamoDB's {MAX_ITEM_BYTES}-byte (400 KB) item limit"
                    ),
                });
                continue;
            }
            match slot.get(&key) {
                Some(&i) => {
                    kept[i] = None;
                    outcome.deduplicated += 1;
                    slot.insert(key.clone(), kept.len());
                }
                None => {
                    slot.insert(key.clone(), kept.len());
                }
            }
            kept.push(Some((key, item)));
        }
        let requests: Vec<(String, WriteRequest)> = kept
            .into_iter()
            .flatten()
            .map(|(key, item)| {
                let put = PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map_err(|e| DynamoError::Config(format!("put request: {e}")))?;
                Ok((key, WriteRequest::builder().put_request(put).build()))
            })
            .collect::<Result<_>>()?;
        outcome.written = self.send_all(requests).await?;
        let mut stats = self.stats.lock().expect("stats lock");
        stats.deduplicated += outcome.deduplicated;
        stats.oversize += outcome
            .refused
            .iter()
            .filter(|r| r.reason.contains("400 KB"))
            .count() as u64;
        Ok(outcome)
    }

    /// Delete the items with these keys (each a map of the key attributes).
    pub async fn delete_keys(&self, keys: Vec<Item>) -> Result<u64> {
        let mut seen = std::collections::HashSet::new();
        let mut requests = Vec::with_capacity(keys.len());
        for key in keys {
            let text = self.keys.describe(&key);
            if !seen.insert(text.clone()) {
                continue;
            }
            let del = DeleteRequest::builder()
                .set_key(Some(key))
                .build()
                .map_err(|e| DynamoError::Config(format!("delete request: {e}")))?;
            requests.push((text, WriteRequest::builder().delete_request(del).build()));
        }
        self.send_all(requests).await
    }

    async fn send_all(&self, requests: Vec<(String, WriteRequest)>) -> Result<u64> {
        let size = self.options.batch_size.clamp(1, BATCH_WRITE_MAX);
        let mut chunks = Vec::with_capacity(requests.len().div_ceil(size));
        let mut it = requests.into_iter().peekable();
        while it.peek().is_some() {
            chunks.push(it.by_ref().take(size).collect::<Vec<_>>());
        }
        let mut calls = futures::stream::iter(chunks.into_iter().map(|c| self.send_chunk(c)))
            .buffer_unordered(self.options.concurrency.max(1));
        let mut written = 0;
        let mut first_err = None;
        while let Some(r) = calls.next().await {
            match r {
                Ok(n) => written += n,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(written),
        }
    }

    async fn send_chunk(&self, chunk: Vec<(String, WriteRequest)>) -> Result<u64> {
        let total = chunk.len() as u64;
        let mut keys: HashMap<String, ()> = HashMap::new();
        let mut pending: Vec<WriteRequest> = Vec::with_capacity(chunk.len());
        for (k, r) in chunk {
            keys.insert(k, ());
            pending.push(r);
        }
        let mut local = WriteStats::default();
        let mut retries = self.options.policy().retries();
        let result = loop {
            local.calls += 1;
            let sent = {
                // Held for the call only, not while backing off.
                let _permit = self.in_flight.acquire().await.expect("never closed");
                let sent = self
                    .client
                    .batch_write_item()
                    .request_items(self.table.clone(), pending.clone())
                    .send()
                    .await;
                if !self.options.batch_delay.is_zero() {
                    tokio::time::sleep(self.options.batch_delay).await;
                }
                sent
            };
            let last = match sent {
                Ok(out) => {
                    let unprocessed = out
                        .unprocessed_items
                        .and_then(|mut m| m.remove(&self.table))
                        .unwrap_or_default();
                    if unprocessed.is_empty() {
                        break Ok(total);
                    }
                    local.unprocessed_retried += unprocessed.len() as u64;
                    let reason = format!("{} unprocessed items", unprocessed.len());
                    pending = unprocessed;
                    reason
                }
                Err(e) => {
                    let (retryable, message) = classify(&e);
                    if !retryable {
                        break Err(DynamoError::Call {
                            operation: "BatchWriteItem",
                            table: self.table.clone(),
                            message: format!(
                                "{message} (keys in this call: {})",
                                key_list(&self.keys, &pending)
                            ),
                            retryable: false,
                        });
                    }
                    local.throttled += 1;
                    message
                }
            };
            let Some(delay) = retries.next_delay(None) else {
                break Err(DynamoError::RetriesExhausted {
                    table: self.table.clone(),
                    attempts: retries.attempts(),
                    last,
                    pending: pending.len(),
                    keys: key_list(&self.keys, &pending),
                });
            };
            tracing::debug!(table = %self.table, attempt = retries.attempts(), delay_ms = delay.as_millis() as u64, reason = %last, "retrying BatchWriteItem");
            tokio::time::sleep(delay).await;
        };
        if result.is_ok() {
            local.items += total;
        }
        self.stats.lock().expect("stats lock").add(&local);
        result
    }
}

fn key_list(keys: &KeySchema, requests: &[WriteRequest]) -> String {
    let mut shown: Vec<String> = requests
        .iter()
        .take(10)
        .map(|r| {
            if let Some(p) = r.put_request() {
                keys.describe(p.item())
            } else if let Some(d) = r.delete_request() {
                keys.describe(d.key())
            } else {
                "?".to_owned()
            }
        })
        .map(|k| format!("[{k}]"))
        .collect();
    if requests.len() > 10 {
        shown.push(format!("and {} more", requests.len() - 10));
    }
    shown.join(" ")
}

/// Decide whether a failed call is worth retrying, with a message naming the error.
pub fn classify<E>(err: &SdkError<E, HttpResponse>) -> (bool, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(s) => {
            let e = s.err();
            let code = e.code().unwrap_or("unknown");
            let retryable = matches!(
                code,
                "ProvisionedThroughputExceededException"
                    | "ThrottlingException"
                    | "RequestLimitExceeded"
                    | "InternalServerError"
                    | "ServiceUnavailable"
                    | "LimitExceededException"
            ) || s.raw().status().is_server_error();
            (
                retryable,
                format!("{code}: {}", e.message().unwrap_or("no message")),
            )
        }
        SdkError::TimeoutError(_) => (true, "timeout".to_owned()),
        SdkError::DispatchFailure(d) => (true, format!("connection failed: {d:?}")),
        SdkError::ResponseError(r) => (true, format!("unreadable response: {r:?}")),
        other => (false, format!("{other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_a_cap() {
        let o = WriteOptions {
            retry_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..Default::default()
        };
        for _ in 0..50 {
            let d1 = o.backoff(1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = o.backoff(3);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            assert!(o.backoff(30) <= Duration::from_millis(1000));
        }
        let flat = WriteOptions {
            exponential_backoff: false,
            ..o
        };
        assert!(flat.backoff(5) <= Duration::from_millis(100));
    }
}
