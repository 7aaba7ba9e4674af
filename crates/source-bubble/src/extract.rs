//! [`BubbleExtract`]: one Bubble type as an [`etl_core::Extract`], units = `Created Date` windows.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow_schema::SchemaRef;
use chrono::{DateTime, Utc};
use etl_core::{BatchStream, Extract, ExtractOptions, SizeHint, Unit};
use futures::StreamExt;

use crate::client::{BubbleClient, Constraint, KeysetPager, Window};
use crate::drift::{DriftGuard, check_meta};
use crate::error::BubbleError;
use crate::schema::{MODIFIED_DATE, RecordDecoder, TypeSchema};

/// One Bubble type as a source. Units are disjoint `Created Date` windows paged
/// concurrently (run the pipeline with `parallel >= windows`); the client's rate limit
/// covers them all.
///
/// Schema drift fails the extract loudly, naming the type and the field, before the things
/// showing it are decoded (see [`crate::drift`]): the declared schema is checked against the
/// app's `/meta` when the units are listed, and every page against the declared schema.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use etl_source_bubble::{BubbleClient, BubbleConfig, BubbleExtract, FieldKind, FieldSpec, KeyMode, TypeSchema};
/// # fn f() -> Result<(), etl_source_bubble::BubbleError> {
/// let client = Arc::new(BubbleClient::new(BubbleConfig::new(
///     "https://app.bubbleapps.io/api/1.1",
///     etl_core::Secret::new("token"),
/// ))?);
/// let users = TypeSchema::new("user", KeyMode::DisplayNames)
///     .field(FieldSpec::new("email", FieldKind::Text));
/// let extract = BubbleExtract::new(client, users).windows(8);
/// # Ok(()) }
/// ```
pub struct BubbleExtract {
    client: Arc<BubbleClient>,
    spec: Arc<TypeSchema>,
    raw: bool,
    windows: usize,
    constraints: Vec<Constraint>,
    name: String,
    /// The app's `/meta` judged the declared schema when the units were listed.
    meta: Arc<AtomicBool>,
}

impl BubbleExtract {
    /// Typed batches of `spec.bubble_type` in one window.
    pub fn new(client: Arc<BubbleClient>, spec: TypeSchema) -> Self {
        BubbleExtract {
            name: format!("bubble:{}", spec.bubble_type),
            client,
            spec: Arc::new(spec),
            raw: false,
            windows: 1,
            constraints: Vec::new(),
            meta: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Yield raw batches (every column text, as sent): lossless, for exports.
    pub fn raw(mut self, raw: bool) -> Self {
        self.raw = raw;
        self
    }

    /// Page `n` disjoint `Created Date` windows (units) instead of one.
    pub fn windows(mut self, n: usize) -> Self {
        self.windows = n.max(1);
        self
    }

    /// Only things modified after `since` (incremental runs).
    pub fn since(mut self, since: Option<DateTime<Utc>>) -> Self {
        self.constraints.retain(|c| c.key != MODIFIED_DATE);
        if let Some(t) = since {
            self.constraints.push(Constraint::after(MODIFIED_DATE, t));
        }
        self
    }

    /// The declared schema.
    pub fn spec(&self) -> &Arc<TypeSchema> {
        &self.spec
    }
}

impl Extract for BubbleExtract {
    fn name(&self) -> &str {
        &self.name
    }

    fn schema(&self) -> SchemaRef {
        if self.raw {
            self.spec.raw_schema()
        } else {
            self.spec.arrow_schema()
        }
    }

    async fn units(&self) -> etl_core::Result<Vec<Unit>> {
        let t = &self.spec.bubble_type;
        let judged = match self.client.meta().await? {
            Some(m) => check_meta(&self.spec, &m)?,
            None => false,
        };
        self.meta.store(judged, Ordering::Relaxed);
        let (windows, total) = self
            .client
            .windows(t, self.windows, &self.constraints)
            .await?;
        let n = windows.len();
        Ok(windows
            .into_iter()
            .enumerate()
            .map(|(i, w)| Unit {
                name: if n == 1 {
                    t.clone()
                } else {
                    format!("{t}[{}/{n}]", i + 1)
                },
                locator: serde_json::to_string(&w).expect("window serializes"),
                size: Some(SizeHint::Rows(total.div_ceil(n as u64))),
            })
            .collect())
    }

    fn open(&self, unit: &Unit, options: ExtractOptions) -> etl_core::Result<BatchStream> {
        let window: Window = serde_json::from_str(&unit.locator).map_err(|e| {
            BubbleError::Config(format!(
                "unit `{}` has a bad window locator: {e}",
                unit.name
            ))
        })?;
        let pager = KeysetPager::new(self.client.clone(), &self.spec.bubble_type, window);
        let decoder = RecordDecoder::new(self.spec.clone(), unit.name.as_str().into(), self.raw);
        let guard = DriftGuard::new(
            self.client.clone(),
            self.spec.clone(),
            self.meta.load(Ordering::Relaxed),
        );
        let state = (
            (pager, guard),
            decoder,
            0u64,
            false,
            options.batch_size.max(1),
        );
        let stream = futures::stream::try_unfold(
            state,
            |((mut pager, mut guard), mut dec, mut n, mut done, size)| async move {
                while !done && dec.len() < size {
                    match pager.next_page().await? {
                        Some(things) => {
                            guard.check(&things, pager.pages()).await?;
                            for t in &things {
                                n += 1;
                                dec.push_json(n, t);
                            }
                        }
                        None => {
                            done = true;
                            tracing::debug!(pages = pager.pages(), things = n, "window exhausted");
                        }
                    }
                }
                match dec.flush()? {
                    Some(mut b) => {
                        b.consumed = b.read();
                        Ok(Some((b, ((pager, guard), dec, n, done, size))))
                    }
                    None => Ok(None),
                }
            },
        );
        Ok(stream.boxed())
    }
}
