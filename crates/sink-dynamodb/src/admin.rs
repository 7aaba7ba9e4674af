//! Tables, clients, counts and scans.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType, Select, TableStatus,
};
use etl_core::retry::Backoff;
use futures::StreamExt;

use crate::error::{DynamoError, Result};
use crate::mapping::{Item, KeySchema};
use crate::writer::classify;

/// Retries of one `Scan` page (throttling, 5xx): 8, from 0.2 s up to 6.4 s.
const SCAN_RETRY: Backoff = Backoff {
    base: Duration::from_millis(200),
    max: Duration::from_millis(6400),
    max_retries: 8,
    exponential: true,
};

/// A client with explicit static credentials, a region and an endpoint: for a local
/// server (dynalite) or a test proxy. It never looks for credentials elsewhere, so it
/// never contacts the instance-metadata address.
///
/// `retry: None` keeps the SDK's standard retries; `Some(RetryConfig::disabled())` leaves
/// every retry to the sink.
pub fn static_client(endpoint: &str, region: &str, retry: Option<RetryConfig>) -> Client {
    let mut b = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(Credentials::new(
            "local",
            "local",
            None,
            None,
            "ferry-static",
        ))
        .endpoint_url(endpoint);
    if let Some(r) = retry {
        b = b.retry_config(r);
    }
    Client::from_conf(b.build())
}

/// A client for AWS in `region` with the credentials of the environment:
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` (when set). Like
/// [`static_client`] it looks nowhere else (no profile, no instance metadata).
pub fn env_client(region: &str) -> Client {
    let var = |k: &str| std::env::var(k).ok();
    let (id, secret) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"));
    let creds = Credentials::new(
        id.unwrap_or_default(),
        secret.unwrap_or_default(),
        var("AWS_SESSION_TOKEN"),
        None,
        "environment",
    );
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(creds)
        .build();
    Client::from_conf(conf)
}

/// A table to create: key, and global secondary indexes (all projected, string keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// Table name.
    pub name: String,
    /// Key attributes (string-typed).
    pub keys: KeySchema,
    /// Global secondary indexes: (name, partition attribute, sort attribute).
    pub indexes: Vec<(String, String, Option<String>)>,
}

impl TableSpec {
    /// A table of the single-table design: `PK`/`SK` and `gsis` global secondary indexes
    /// `GSI1`.. keyed `GSI<n>PK`/`GSI<n>SK`.
    pub fn single_table(name: &str, gsis: usize) -> Self {
        let gsi = |i| {
            (
                format!("GSI{i}"),
                format!("GSI{i}PK"),
                Some(format!("GSI{i}SK")),
            )
        };
        TableSpec {
            name: name.to_owned(),
            keys: KeySchema::new("PK", Some("SK")),
            indexes: (1..=gsis).map(gsi).collect(),
        }
    }
}

fn key_elements(keys: &KeySchema) -> Result<Vec<KeySchemaElement>> {
    let mut out = vec![
        KeySchemaElement::builder()
            .attribute_name(&keys.partition)
            .key_type(KeyType::Hash)
            .build()
            .map_err(|e| DynamoError::Config(e.to_string()))?,
    ];
    if let Some(sk) = &keys.sort {
        out.push(
            KeySchemaElement::builder()
                .attribute_name(sk)
                .key_type(KeyType::Range)
                .build()
                .map_err(|e| DynamoError::Config(e.to_string()))?,
        );
    }
    Ok(out)
}

/// Create the table (on-demand billing) unless it exists, then wait until it is ACTIVE.
/// Returns whether it was created.
pub async fn ensure_table(client: &Client, spec: &TableSpec) -> Result<bool> {
    if table_exists(client, &spec.name).await? {
        wait_active(client, &spec.name).await?;
        return Ok(false);
    }
    let mut attrs: Vec<String> = vec![spec.keys.partition.clone()];
    attrs.extend(spec.keys.sort.clone());
    for (_, pk, sk) in &spec.indexes {
        attrs.push(pk.clone());
        attrs.extend(sk.clone());
    }
    attrs.sort();
    attrs.dedup();
    let mut req = client
        .create_table()
        .table_name(&spec.name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_elements(&spec.keys)?));
    for a in attrs {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(a)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| DynamoError::Config(e.to_string()))?,
        );
    }
    for (name, pk, sk) in &spec.indexes {
        req = req.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .set_key_schema(Some(key_elements(&KeySchema::new(pk, sk.as_deref()))?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .map_err(|e| DynamoError::Config(e.to_string()))?,
        );
    }
    match req.send().await {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) => {}
        Err(e) => return Err(call_error("CreateTable", &spec.name, &e)),
    }
    wait_active(client, &spec.name).await?;
    Ok(true)
}

/// Whether the table exists.
pub async fn table_exists(client: &Client, table: &str) -> Result<bool> {
    match client.describe_table().table_name(table).send().await {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(call_error("DescribeTable", table, &e)),
    }
}

/// Poll `DescribeTable` until the table is ACTIVE (at most 5 minutes; on AWS a new table
/// takes seconds to a minute).
pub async fn wait_active(client: &Client, table: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let out = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| call_error("DescribeTable", table, &e))?;
        if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(DynamoError::Call {
                operation: "DescribeTable",
                table: table.to_owned(),
                message: "table not ACTIVE after 5 minutes".into(),
                retryable: true,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The key schema of an existing table.
pub async fn describe_keys(client: &Client, table: &str) -> Result<KeySchema> {
    let out = client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| call_error("DescribeTable", table, &e))?;
    let elems = out.table().map(|t| t.key_schema()).unwrap_or_default();
    let find = |kt: KeyType| {
        elems
            .iter()
            .find(|e| *e.key_type() == kt)
            .map(|e| e.attribute_name().to_owned())
    };
    let partition = find(KeyType::Hash).ok_or_else(|| DynamoError::Call {
        operation: "DescribeTable",
        table: table.to_owned(),
        message: "no partition key in the table description".into(),
        retryable: false,
    })?;
    Ok(KeySchema {
        partition,
        sort: find(KeyType::Range),
    })
}

/// Delete a table (no error if it does not exist).
pub async fn delete_table(client: &Client, table: &str) -> Result<()> {
    match client.delete_table().table_name(table).send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(call_error("DeleteTable", table, &e)),
    }
}

/// An equality filter `attribute = value` (string) for scans.
pub type EqFilter<'a> = Option<(&'a str, &'a str)>;

async fn scan_segment(
    client: &Client,
    table: &str,
    filter: EqFilter<'_>,
    segment: i32,
    segments: i32,
    count_only: bool,
    mut on_page: impl FnMut(Vec<Item>, u64),
) -> Result<()> {
    let mut start: Option<Item> = None;
    loop {
        let mut req = client
            .scan()
            .table_name(table)
            .consistent_read(true)
            .segment(segment)
            .total_segments(segments)
            .set_exclusive_start_key(start.take());
        if count_only {
            req = req.select(Select::Count);
        }
        if let Some((attr, value)) = filter {
            req = req
                .filter_expression("#f = :v")
                .expression_attribute_names("#f", attr)
                .expression_attribute_values(":v", AttributeValue::S(value.to_owned()));
        }
        let out = SCAN_RETRY
            .retry(|_| req.clone().send(), |e| classify(e).0)
            .await
            .map_err(|e| {
                let (retryable, message) = classify(&e);
                DynamoError::Call {
                    operation: "Scan",
                    table: table.to_owned(),
                    message: format!("segment {segment}/{segments}: {message}"),
                    retryable,
                }
            })?;
        let count = out.count().max(0) as u64;
        on_page(out.items.unwrap_or_default(), count);
        match out.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return Ok(()),
        }
    }
}

/// Count items by a paginated, consistent `Scan` with `Select=COUNT` over `segments`
/// parallel segments (not `ItemCount`, which lags by hours on AWS and is 0 on dynalite),
/// optionally only those with `attribute = value`.
pub async fn count_items(
    client: &Client,
    table: &str,
    filter: EqFilter<'_>,
    segments: u32,
) -> Result<u64> {
    let segments = segments.max(1) as i32;
    let counts = futures::stream::iter(0..segments)
        .map(|seg| async move {
            let mut n = 0;
            scan_segment(client, table, filter, seg, segments, true, |_, c| n += c).await?;
            Ok::<u64, DynamoError>(n)
        })
        .buffer_unordered(segments as usize)
        .collect::<Vec<_>>()
        .await;
    counts.into_iter().sum()
}

/// Every item of `table` (with `attribute = value` when filtered), read by a parallel
/// scan; `on_page` is called with each page (from several segments at once, in no order).
pub async fn scan_items(
    client: &Client,
    table: &str,
    filter: EqFilter<'_>,
    segments: u32,
    on_page: impl Fn(Vec<Item>) + Send + Sync,
) -> Result<u64> {
    let segments = segments.max(1) as i32;
    let on_page = &on_page;
    let counts = futures::stream::iter(0..segments)
        .map(|seg| async move {
            let mut n = 0;
            scan_segment(client, table, filter, seg, segments, false, |items, c| {
                n += c;
                on_page(items);
            })
            .await?;
            Ok::<u64, DynamoError>(n)
        })
        .buffer_unordered(segments as usize)
        .collect::<Vec<_>>()
        .await;
    counts.into_iter().sum()
}

/// Read one item by key (consistent read).
pub async fn get_item(client: &Client, table: &str, key: Item) -> Result<Option<Item>> {
    let out = client
        .get_item()
        .table_name(table)
        .set_key(Some(key))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| call_error("GetItem", table, &e))?;
    Ok(out.item)
}

/// [`DynamoError::Call`] for a failed `operation` on `table`, retryable as
/// [`classify`] says.
fn call_error<E>(
    operation: &'static str,
    table: &str,
    err: &SdkError<E, HttpResponse>,
) -> DynamoError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let (retryable, message) = classify(err);
    DynamoError::Call {
        operation,
        table: table.to_owned(),
        message,
        retryable,
    }
}
