//! The sample check of a migration off Bubble, without its database half: loaded things
//! fetched again from the Data API and mapped by the migration's own mapping
//! ([`fetch_mapped`]), so the caller can compare them column by column with what it
//! loaded; what the comparison found ([`SampleReport`], [`Mismatch`]) as findings.

use std::sync::Arc;

use arrow_array::RecordBatch;
use etl_core::{BoxError, Finding, Transform as _};
use futures::StreamExt as _;

use crate::mapping::RowMap;
use crate::{BubbleClient, RecordDecoder, TypeSchema};

/// Longest value shown in a finding (longer ones are cut, with `…`).
const SHOW_CHARS: usize = 200;

/// One column of one thing in which the loaded row and the API-derived row differ.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mismatch {
    /// Bubble type (`coach_profile`).
    pub bubble_type: String,
    /// Bubble `_id` of the thing.
    pub bubble_id: String,
    /// Target column (`hourly_rate`).
    pub column: String,
    /// The loaded (staged) value as the database prints it (`None`: NULL).
    pub staged: Option<String>,
    /// The value the mapping derives from the API's thing now (`None`: NULL).
    pub api: Option<String>,
}

fn show(v: Option<&str>) -> String {
    match v {
        None => "NULL".to_owned(),
        Some(s) if s.chars().count() > SHOW_CHARS => {
            format!("{}…", s.chars().take(SHOW_CHARS).collect::<String>())
        }
        Some(s) => s.to_owned(),
    }
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {} staged {} vs API-derived {}",
            self.bubble_type,
            self.bubble_id,
            self.column,
            show(self.staged.as_deref()),
            show(self.api.as_deref())
        )
    }
}

/// What a sample check found.
#[derive(Debug, Clone, Default)]
pub struct SampleReport {
    /// Things compared column by column, per type, in dependency order.
    pub compared: Vec<(String, u64)>,
    /// Every column in which a compared thing differs.
    pub mismatches: Vec<Mismatch>,
    /// Sampled things that could not be compared: gone from the API, or their mapping now
    /// rejects them (with the reason).
    pub problems: Vec<String>,
    /// Sampled things whose loaded id is not the one their Bubble id maps to.
    pub bad_ids: Vec<String>,
}

impl SampleReport {
    /// Things compared, in all.
    pub fn total(&self) -> u64 {
        self.compared.iter().map(|c| c.1).sum()
    }

    fn per_type(&self) -> String {
        let v: Vec<String> = self
            .compared
            .iter()
            .map(|(t, n)| format!("{t} {n}"))
            .collect();
        v.join(", ")
    }

    /// `sample_matches_api` (vetoes on any difference or problem) and `ids_deterministic`;
    /// `not_compared` (`(table, column)`: columns no API field feeds) is named in the message.
    pub fn findings(&self, not_compared: &[(&str, &str)]) -> Vec<Finding> {
        let skipped: Vec<String> = not_compared
            .iter()
            .map(|(t, c)| format!("{t}.{c}"))
            .collect();
        let ok = self.mismatches.is_empty() && self.problems.is_empty();
        let message = if ok {
            format!(
                "{} random staged things identical to the API in every column mapped from it ({}; not from the API, not compared: {})",
                self.total(),
                self.per_type(),
                skipped.join(", ")
            )
        } else {
            let mut items: Vec<String> = self.problems.clone();
            items.extend(self.mismatches.iter().map(ToString::to_string));
            format!(
                "{} differences from the API in {} random staged things compared ({}): {}",
                self.mismatches.len() + self.problems.len(),
                self.total(),
                self.per_type(),
                items.join("; ")
            )
        };
        let ids = match self.bad_ids.is_empty() {
            true => "new ids are UUIDv5 of the Bubble _id (every sampled thing)".to_owned(),
            false => format!(
                "staged ids that are not the UUIDv5 of their Bubble _id: {}",
                self.bad_ids.join(", ")
            ),
        };
        vec![
            Finding::check("sample_matches_api", ok, message),
            Finding::check("ids_deterministic", self.bad_ids.is_empty(), ids),
        ]
    }
}

/// Things of `spec`'s type fetched with `GET /obj/<type>/<id>` (`concurrency` at once, under
/// the client's rate limit), decoded as the export decodes them and mapped by `map`: the
/// mapped rows (first column `bubble_id`; `None` when nothing was fetched) and the problems
/// (`<type> <id>: staged, but no longer exists in Bubble`, or `... but the mapping now
/// rejects the API's thing (<column>: <reason>)`) into `problems`.
///
/// # Errors
/// A request that fails after the client's retries, or the mapping's.
pub async fn fetch_mapped(
    client: &BubbleClient,
    spec: Arc<TypeSchema>,
    ids: Vec<String>,
    map: &RowMap,
    concurrency: usize,
    problems: &mut Vec<String>,
) -> Result<Option<RecordBatch>, BoxError> {
    let ty = spec.bubble_type.clone();
    let ty_ref = ty.as_str();
    let fetched: Vec<(String, _)> = futures::stream::iter(ids)
        .map(|b| async move {
            let thing = client.get_thing(ty_ref, &b).await;
            (b, thing)
        })
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let mut dec = RecordDecoder::new(spec.clone(), format!("sample:{ty}").into(), true);
    let mut found = Vec::new();
    for (b, thing) in fetched {
        let thing =
            thing.map_err(|e| format!("cannot fetch {ty} {b} for the sample check: {e}"))?;
        match thing {
            None => problems.push(format!("{ty} {b}: staged, but no longer exists in Bubble")),
            Some(t) => {
                found.push(b);
                dec.push_json(found.len() as u64, &t);
            }
        }
    }
    let Some(raw) = dec.flush()? else {
        return Ok(None);
    };
    let out = map.transform(raw)?;
    for r in &out.rejects {
        let b = usize::try_from(r.record)
            .ok()
            .and_then(|i| found.get(i.wrapping_sub(1)))
            .map_or("?", String::as_str);
        let column = r
            .column
            .as_deref()
            .map(|c| format!("{c}: "))
            .unwrap_or_default();
        problems.push(format!(
            "{ty} {b}: staged, but the mapping now rejects the API's thing ({column}{})",
            r.reason
        ));
    }
    Ok(Some(out.data))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use arrow_array::cast::AsArray;

    use super::*;
    use crate::mapping::{MapState, RejectLog, reject};
    use crate::{FieldKind, FieldSpec, KeyMode};

    #[test]
    fn findings_name_type_id_column_and_values() {
        let mut r = SampleReport {
            compared: vec![("user".into(), 2), ("post".into(), 1)],
            ..Default::default()
        };
        let f = r.findings(&[("users", "password_hash")]);
        assert!(f.iter().all(|f| f.passed), "{f:?}");
        assert!(f[0].message.starts_with("3 random staged things identical"));
        assert!(
            f[0].message
                .contains("user 2, post 1; not from the API, not compared: users.password_hash")
        );
        r.mismatches.push(Mismatch {
            bubble_type: "user".into(),
            bubble_id: "u1".into(),
            column: "email".into(),
            staged: Some("a@b.io".into()),
            api: None,
        });
        r.problems
            .push("post p1: staged, but no longer exists in Bubble".into());
        r.bad_ids.push("user u2 -> x".into());
        let f = r.findings(&[]);
        assert!(f.iter().all(|f| !f.passed && f.vetoes()), "{f:?}");
        assert!(f[0].message.ends_with("post p1: staged, but no longer exists in Bubble; user u1: email staged a@b.io vs API-derived NULL"), "{}", f[0].message);
        assert!(f[1].message.ends_with("user u2 -> x"));
        let long = Mismatch {
            api: Some("x".repeat(300)),
            ..r.mismatches[0].clone()
        };
        assert!(long.to_string().ends_with(&format!("{}…", "x".repeat(200))));
    }

    #[cfg(feature = "test-server")]
    #[tokio::test]
    async fn things_are_fetched_again_and_mapped_or_reported() {
        use crate::BubbleConfig;
        use crate::test_server::{Fixtures, ServerConfig, TestServer};
        let mut fx = Fixtures::default();
        let thing = |id: &str, email: &str| {
            let v = serde_json::json!({"_id": id, "Created Date": "2024-01-01T00:00:00.000Z", "email": email});
            v.as_object().unwrap().clone()
        };
        fx.insert(
            "user",
            vec![thing("u1", "A@B.io"), thing("u2", "")],
            HashMap::new(),
        );
        let server = TestServer::start(fx, ServerConfig::default())
            .await
            .unwrap();
        let mut cfg = BubbleConfig::new(server.base_url(), etl_core::Secret::new(server.token()));
        cfg.requests_per_minute = 1_000_000;
        let client = BubbleClient::new(cfg).unwrap();
        let spec = Arc::new(
            TypeSchema::new("user", KeyMode::DisplayNames)
                .field(FieldSpec::new("email", FieldKind::Text)),
        );
        let state = Arc::new(MapState::new(RejectLog::discard()));
        let map = RowMap::new(spec.clone(), state, &["email"], |r, _| {
            let e = r
                .text("email")
                .ok_or_else(|| reject("email", "missing_email", "email is empty"))?;
            Ok(vec![Some(e.to_ascii_lowercase())])
        });
        let ids = ["u1", "u2", "u3"].map(str::to_owned).to_vec();
        let mut problems = Vec::new();
        let out = fetch_mapped(&client, spec, ids, &map, 2, &mut problems)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(out.num_rows(), 1);
        assert_eq!(out.column(0).as_string::<i32>().value(0), "u1");
        assert_eq!(out.column(1).as_string::<i32>().value(0), "a@b.io");
        assert_eq!(
            problems,
            [
                "user u3: staged, but no longer exists in Bubble",
                "user u2: staged, but the mapping now rejects the API's thing (email: email is empty)"
            ]
        );
    }
}
