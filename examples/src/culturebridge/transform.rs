//! Mapping of typed Bubble batches to target rows: field, role and status maps, JSON and
//! list fields, decimals, deterministic UUIDv5 ids, parent checks and the password rules.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::sync::{Arc, Mutex};

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use etl_core::{Batch, Fate, Reject, Transform};
use etl_source_bubble::{TypeSchema, TypedTransform};
use uuid::Uuid;

use super::schema::{columns, table_of};

/// Namespace of the UUIDv5 ids (`uuid5(NAMESPACE_URL, "https://ferry.invalid/culturebridge")`).
pub fn namespace() -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, b"https://ferry.invalid/culturebridge")
}

/// The new id of a Bubble thing: UUIDv5 of `"<type>:<_id>"`, the same on every run.
pub fn new_id(bubble_type: &str, bubble_id: &str) -> Uuid {
    Uuid::new_v5(
        &namespace(),
        format!("{bubble_type}:{bubble_id}").as_bytes(),
    )
}

/// `migration_errors_<ts>.csv`: `entity_type,record_id,error_message,timestamp`.
pub struct ErrorLog {
    out: Box<dyn std::io::Write + Send>,
}

impl ErrorLog {
    /// Create the file with its header.
    pub fn create(path: &std::path::Path) -> std::io::Result<Self> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        out.write_all(b"entity_type,record_id,error_message,timestamp\n")?;
        Ok(ErrorLog { out: Box::new(out) })
    }

    /// A log that writes nothing: for mappings whose rejects are not the run's (the
    /// post-load sample check re-maps things the run already logged).
    pub fn discard() -> Self {
        ErrorLog {
            out: Box::new(std::io::sink()),
        }
    }

    fn line(&mut self, entity: &str, id: &str, msg: &str) {
        let mut s = String::new();
        for (i, f) in [entity, id, msg, &chrono::Utc::now().to_rfc3339()]
            .iter()
            .enumerate()
        {
            if i > 0 {
                s.push(',');
            }
            etl_core::reject::write_csv_field(&mut s, f);
        }
        s.push('\n');
        let _ = self.out.write_all(s.as_bytes());
    }

    /// Flush to disk.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// State the transforms of one run share: which Bubble ids were accepted or rejected (for
/// parent checks), e-mail owners, the error log, the high-water mark.
pub struct Ctx {
    accepted: Mutex<HashMap<String, HashSet<String>>>,
    rejected: Mutex<HashMap<String, HashSet<String>>>,
    /// Lower-cased e-mail -> the Bubble id that keeps it (earliest `Created Date`, or the
    /// user already in the database).
    pub email_owner: Mutex<HashMap<String, String>>,
    profiles: Mutex<HashSet<(String, String)>>,
    errors: Mutex<ErrorLog>,
    max_modified: Mutex<Option<i64>>,
}

impl Ctx {
    /// A context writing rejects to `errors`.
    pub fn new(errors: ErrorLog) -> Self {
        Ctx {
            accepted: Mutex::default(),
            rejected: Mutex::default(),
            email_owner: Mutex::default(),
            profiles: Mutex::default(),
            errors: Mutex::new(errors),
            max_modified: Mutex::new(None),
        }
    }

    /// Mark ids as accepted (e.g. loaded by an earlier run).
    pub fn accept_all(&self, bubble_type: &str, ids: impl IntoIterator<Item = String>) {
        self.accepted
            .lock()
            .expect("lock")
            .entry(bubble_type.to_owned())
            .or_default()
            .extend(ids);
    }

    /// Mark as rejected (without logging again) the ids of `bubble_type` that are not
    /// accepted: the parents an earlier invocation of the run rejected.
    pub fn reject_unaccepted(&self, bubble_type: &str, ids: impl IntoIterator<Item = String>) {
        let accepted = self.accepted.lock().expect("lock");
        let ok = accepted.get(bubble_type);
        let mut rejected = self.rejected.lock().expect("lock");
        let set = rejected.entry(bubble_type.to_owned()).or_default();
        set.extend(
            ids.into_iter()
                .filter(|i| !ok.is_some_and(|a| a.contains(i))),
        );
    }

    fn accept(&self, bubble_type: &str, id: &str) {
        self.accepted
            .lock()
            .expect("lock")
            .entry(bubble_type.to_owned())
            .or_default()
            .insert(id.to_owned());
    }

    fn reject(&self, bubble_type: &str, id: &str, reason: &str) {
        self.rejected
            .lock()
            .expect("lock")
            .entry(bubble_type.to_owned())
            .or_default()
            .insert(id.to_owned());
        self.errors
            .lock()
            .expect("lock")
            .line(bubble_type, id, reason);
    }

    /// `Ok` if `parent_id` of `parent_type` was accepted; else the reject (`parent rejected`
    /// or a dangling reference).
    fn parent(&self, parent_type: &str, field: &str, parent_id: Option<&str>) -> Result<(), Fate> {
        let Some(pid) = parent_id else {
            return Err(rej(field, "missing_reference", format!("{field} is empty")));
        };
        if self
            .accepted
            .lock()
            .expect("lock")
            .get(parent_type)
            .is_some_and(|s| s.contains(pid))
        {
            return Ok(());
        }
        if self
            .rejected
            .lock()
            .expect("lock")
            .get(parent_type)
            .is_some_and(|s| s.contains(pid))
        {
            return Err(rej(field, "parent_rejected", "parent rejected".to_owned()));
        }
        Err(rej(
            field,
            "dangling_reference",
            format!("{field} references {parent_type} `{pid}`, which does not exist"),
        ))
    }

    /// Flush the error log.
    pub fn flush(&self) -> std::io::Result<()> {
        self.errors.lock().expect("lock").flush()
    }

    /// The latest `Modified Date` seen (the next incremental run starts there).
    pub fn high_water_mark(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.max_modified
            .lock()
            .expect("lock")
            .and_then(chrono::DateTime::from_timestamp_millis)
    }

    /// Bubble ids rejected for a type.
    pub fn rejected_count(&self, bubble_type: &str) -> usize {
        self.rejected
            .lock()
            .expect("lock")
            .get(bubble_type)
            .map_or(0, HashSet::len)
    }
}

fn rej(column: &str, kind: &str, reason: String) -> Fate {
    Fate::Reject {
        column: Some(column.to_owned()),
        kind: kind.to_owned(),
        reason,
    }
}

/// Typed accessors on one row of a typed batch.
struct Row<'a> {
    b: &'a RecordBatch,
    r: usize,
}

impl Row<'_> {
    fn col(&self, name: &str) -> &ArrayRef {
        self.b
            .column_by_name(name)
            .unwrap_or_else(|| panic!("declared column `{name}`"))
    }
    fn text(&self, name: &str) -> Option<&str> {
        let a = self.col(name).as_string::<i32>();
        (!a.is_null(self.r))
            .then(|| a.value(self.r))
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }
    fn bool(&self, name: &str) -> Option<bool> {
        let a = self.col(name).as_boolean();
        (!a.is_null(self.r)).then(|| a.value(self.r))
    }
    fn int(&self, name: &str) -> Option<i64> {
        let a = self.col(name).as_primitive::<Int64Type>();
        (!a.is_null(self.r)).then(|| a.value(self.r))
    }
    fn dec(&self, name: &str) -> Option<(i128, i8)> {
        let c = self.col(name);
        let DataType::Decimal128(_, s) = c.data_type() else {
            return None;
        };
        let a = c.as_primitive::<Decimal128Type>();
        (!a.is_null(self.r)).then(|| (a.value(self.r), *s))
    }
    fn ts(&self, name: &str) -> Option<String> {
        let a = self.col(name).as_primitive::<TimestampMillisecondType>();
        (!a.is_null(self.r))
            .then(|| a.value(self.r))
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.naive_utc().format("%Y-%m-%d %H:%M:%S%.3f").to_string())
    }
    fn list(&self, name: &str) -> Option<String> {
        let a = self.col(name).as_list::<i32>();
        if a.is_null(self.r) {
            return None;
        }
        let v = a.value(self.r);
        let s = v.as_string::<i32>();
        let items: Vec<&str> = s.iter().flatten().collect();
        Some(serde_json::to_string(&items).expect("strings serialize"))
    }
}

fn max_len(v: Option<&str>, n: usize, col: &str) -> Result<Option<String>, Fate> {
    match v {
        Some(s) if s.chars().count() > n => Err(rej(
            col,
            "too_long",
            format!("{col} is longer than {n} characters"),
        )),
        other => Ok(other.map(str::to_owned)),
    }
}

fn json_text(v: Option<&str>, col: &str) -> Result<Option<String>, Fate> {
    match v {
        None => Ok(None),
        Some(s) => serde_json::from_str::<serde_json::Value>(s)
            .map(|_| Some(s.to_owned()))
            .map_err(|e| rej(col, "bad_json", format!("{col} is not valid JSON ({e})"))),
    }
}

fn url(v: Option<&str>) -> Option<String> {
    v.map(|s| {
        if s.starts_with("//") {
            format!("https:{s}")
        } else {
            s.to_owned()
        }
    })
}

/// `true` when `s` matches `^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}$`.
pub fn email_ok(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let Some((host, tld)) = domain.rsplit_once('.') else {
        return false;
    };
    !local.is_empty()
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._%+-".contains(&b))
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b))
        && tld.len() >= 2
        && tld.bytes().all(|b| b.is_ascii_alphabetic())
}

/// Role map; unknown codes are errors.
pub fn map_role(s: &str) -> Option<&'static str> {
    match s.trim().to_ascii_lowercase().as_str() {
        "seeker" | "client" => Some("client"),
        "coach" => Some("coach"),
        "administrator" | "admin" => Some("admin"),
        _ => None,
    }
}

/// Booking status map.
pub fn map_booking_status(s: &str) -> Option<&'static str> {
    match s.trim().to_ascii_lowercase().as_str() {
        "pending" => Some("pending"),
        "confirmed" => Some("confirmed"),
        "complete" | "completed" => Some("completed"),
        "canceled" | "cancelled" => Some("cancelled"),
        _ => None,
    }
}

/// Payment status map.
pub fn map_payment_status(s: &str) -> Option<&'static str> {
    match s.trim().to_ascii_lowercase().as_str() {
        "pending" => Some("pending"),
        "success" | "succeeded" => Some("succeeded"),
        "failed" => Some("failed"),
        "refund" | "refunded" => Some("refunded"),
        _ => None,
    }
}

fn code(v: Option<&str>, col: &str, map: fn(&str) -> Option<&'static str>) -> Result<String, Fate> {
    let s = v.ok_or_else(|| rej(col, "missing_code", format!("{col} is empty")))?;
    map(s).map(str::to_owned).ok_or_else(|| {
        rej(
            col,
            &format!("unknown_{col}"),
            format!("unknown {col} `{s}`"),
        )
    })
}

fn currency(v: Option<&str>) -> Result<String, Fate> {
    match v {
        None => Ok("USD".to_owned()),
        Some(s) if s.len() == 3 && s.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Ok(s.to_ascii_uppercase())
        }
        Some(s) => Err(rej(
            "currency_code",
            "bad_currency",
            format!("currency `{s}` is not a 3-letter code"),
        )),
    }
}

/// Schema of the mapped batches of a table: `bubble_id` then the target columns, all text.
pub fn target_schema(table: &str) -> SchemaRef {
    let mut f = vec![Field::new("bubble_id", DataType::Utf8, false)];
    f.extend(
        columns(table)
            .iter()
            .map(|c| Field::new(c.name, DataType::Utf8, true)),
    );
    Arc::new(Schema::new(f))
}

/// Raw export batch of one type -> typed -> target rows (or rejects, or filtered when the
/// type is not migrated).
pub struct MapTransform {
    ty: String,
    table: &'static str,
    typed: TypedTransform,
    ctx: Arc<Ctx>,
    name: String,
}

impl MapTransform {
    /// The mapping of `spec.bubble_type`.
    pub fn new(spec: Arc<TypeSchema>, ctx: Arc<Ctx>) -> Self {
        MapTransform {
            ty: spec.bubble_type.clone(),
            table: table_of(&spec.bubble_type),
            name: format!("culturebridge_map[{}]", spec.bubble_type),
            typed: TypedTransform::new(spec),
            ctx,
        }
    }

    fn map_row(
        &self,
        row: &Row<'_>,
        id: &str,
        hash: Option<&str>,
    ) -> Result<Vec<Option<String>>, Fate> {
        let created = row.ts("created_date").ok_or_else(|| {
            rej(
                "created_date",
                "missing_date",
                "Created Date is empty".into(),
            )
        })?;
        let modified = row.ts("modified_date").unwrap_or_else(|| created.clone());
        let s = |v: &str| Some(v.to_owned());
        let me = new_id(&self.ty, id).to_string();
        Ok(match self.ty.as_str() {
            "user" => {
                let email = row
                    .text("email")
                    .ok_or_else(|| rej("email", "missing_email", "email is empty".into()))?
                    .to_ascii_lowercase();
                if !email_ok(&email) {
                    return Err(rej(
                        "email",
                        "bad_email",
                        format!("email `{email}` is not a valid address"),
                    ));
                }
                if let Some(owner) = self.ctx.email_owner.lock().expect("lock").get(&email)
                    && owner != id
                {
                    return Err(rej(
                        "email",
                        "duplicate_email",
                        format!("email `{email}` is already used by user `{owner}`"),
                    ));
                }
                let role = code(row.text("type"), "role", map_role)?;
                vec![
                    s(&me),
                    Some(email),
                    hash.map(str::to_owned),
                    s(if hash.is_some() { "false" } else { "true" }),
                    Some(role),
                    s(if row.bool("active").unwrap_or(true) {
                        "true"
                    } else {
                        "false"
                    }),
                    s(if row.bool("verified").unwrap_or(false) {
                        "true"
                    } else {
                        "false"
                    }),
                    Some(created),
                    Some(modified),
                ]
            }
            "client_profile" | "coach_profile" => {
                let user = row.text("user");
                self.ctx.parent("user", "user", user)?;
                let user = user.expect("checked");
                let first = max_len(row.text("first_name"), 100, "first_name")?;
                let last = max_len(row.text("last_name"), 100, "last_name")?;
                let photo = max_len(url(row.text("photo")).as_deref(), 500, "photo")?;
                let mut v = vec![
                    s(&me),
                    Some(new_id("user", user).to_string()),
                    first,
                    last,
                    photo,
                ];
                if self.ty == "client_profile" {
                    v.push(max_len(row.text("phone_number"), 20, "phone_number")?);
                    v.push(max_len(row.text("time_zone"), 50, "time_zone")?);
                    v.push(Some(
                        json_text(row.text("quiz_responses"), "quiz_responses")?
                            .unwrap_or_else(|| "{}".to_owned()),
                    ));
                    v.push(json_text(row.text("user_preferences"), "user_preferences")?);
                } else {
                    let (rate, scale) = row
                        .dec("rate")
                        .ok_or_else(|| rej("rate", "missing_rate", "rate is empty".into()))?;
                    let p = 10i128.pow(scale as u32);
                    if rate < 25 * p || rate > 500 * p {
                        return Err(rej(
                            "rate",
                            "rate_out_of_range",
                            format!(
                                "hourly rate {} is outside 25-500",
                                etl_core::batch::format_decimal(rate, scale)
                            ),
                        ));
                    }
                    v.push(row.text("biography").map(str::to_owned));
                    v.push(max_len(
                        url(row.text("video_url")).as_deref(),
                        500,
                        "video_url",
                    )?);
                    v.push(row.list("expertise_areas"));
                    v.push(row.list("languages_spoken"));
                    v.push(row.list("countries_experience"));
                    v.push(Some(etl_core::batch::format_decimal(rate, scale)));
                    v.push(Some(currency(row.text("currency_code"))?));
                    v.push(json_text(
                        row.text("availability_data"),
                        "availability_data",
                    )?);
                    let rating = row.dec("average_rating").map_or((0, 2), |r| r);
                    if rating.0 < 0 || rating.0 > 5 * 10i128.pow(rating.1 as u32) {
                        return Err(rej(
                            "average_rating",
                            "rating_out_of_range",
                            "average_rating is outside 0-5".into(),
                        ));
                    }
                    v.push(Some(etl_core::batch::format_decimal(rating.0, rating.1)));
                    let sessions = row.int("session_count").unwrap_or(0);
                    if !(0..=i64::from(i32::MAX)).contains(&sessions) {
                        return Err(rej(
                            "session_count",
                            "out_of_range",
                            format!("session_count {sessions} is out of range"),
                        ));
                    }
                    v.push(Some(sessions.to_string()));
                    v.push(s(if row.bool("verified").unwrap_or(false) {
                        "true"
                    } else {
                        "false"
                    }));
                }
                let key = (self.ty.clone(), user.to_owned());
                if !self.ctx.profiles.lock().expect("lock").insert(key) {
                    return Err(rej(
                        "user",
                        "duplicate_profile",
                        format!("user `{user}` already has a {}", self.ty),
                    ));
                }
                v.push(Some(created));
                v.push(Some(modified));
                v
            }
            "booking" => {
                let client = row.text("client");
                self.ctx.parent("user", "client", client)?;
                let coach = row.text("coach");
                self.ctx.parent("user", "coach", coach)?;
                let when = row.ts("session_date").ok_or_else(|| {
                    rej(
                        "session_date",
                        "missing_date",
                        "session_date is empty".into(),
                    )
                })?;
                let d = row.int("duration").ok_or_else(|| {
                    rej("duration", "missing_duration", "duration is empty".into())
                })?;
                if d <= 0 || d > i64::from(i32::MAX) {
                    return Err(rej(
                        "duration",
                        "bad_duration",
                        format!("duration {d} is not a positive number of minutes"),
                    ));
                }
                vec![
                    s(&me),
                    Some(new_id("user", client.expect("checked")).to_string()),
                    Some(new_id("user", coach.expect("checked")).to_string()),
                    Some(when),
                    Some(d.to_string()),
                    Some(code(
                        row.text("booking_status"),
                        "booking_status",
                        map_booking_status,
                    )?),
                    None,
                    max_len(row.text("meeting_url"), 500, "meeting_url")?,
                    row.text("session_notes").map(str::to_owned),
                    Some(created),
                    Some(modified),
                ]
            }
            "payment" => {
                let booking = row.text("booking");
                self.ctx.parent("booking", "booking", booking)?;
                let (amount, scale) = row.dec("payment_amount").ok_or_else(|| {
                    rej(
                        "payment_amount",
                        "missing_amount",
                        "payment_amount is empty".into(),
                    )
                })?;
                if amount <= 0 {
                    return Err(rej(
                        "payment_amount",
                        "bad_amount",
                        format!(
                            "payment amount {} is not positive",
                            etl_core::batch::format_decimal(amount, scale)
                        ),
                    ));
                }
                vec![
                    s(&me),
                    Some(new_id("booking", booking.expect("checked")).to_string()),
                    Some(etl_core::batch::format_decimal(amount, scale)),
                    Some(currency(row.text("currency_code"))?),
                    Some(code(
                        row.text("payment_status"),
                        "payment_status",
                        map_payment_status,
                    )?),
                    max_len(row.text("stripe_session"), 255, "stripe_session")?,
                    max_len(row.text("stripe_intent"), 255, "stripe_intent")?,
                    Some(created),
                    Some(modified),
                ]
            }
            other => unreachable!("type `{other}` is not migrated"),
        })
    }
}

impl Transform for MapTransform {
    fn name(&self) -> &str {
        &self.name
    }

    fn output_schema(&self, _input: &SchemaRef) -> etl_core::Result<SchemaRef> {
        Ok(target_schema(self.table))
    }

    fn transform(&self, mut batch: Batch) -> etl_core::Result<Batch> {
        if self.table.is_empty() {
            let fates = vec![
                Some(Fate::Filter {
                    reason: format!("{} not migrated (exported only)", self.ty)
                });
                batch.num_rows()
            ];
            batch.apply_fates(&fates)?;
            let empty = RecordBatch::new_empty(target_schema("none"));
            batch.data = empty;
            return Ok(batch);
        }
        // remember the Bubble id (and a password hash) of every record before typing
        let ids = batch
            .data
            .column_by_name("_id")
            .map(|a| a.as_string::<i32>().clone());
        let hashes = batch
            .data
            .column_by_name("password_hash")
            .map(|a| a.as_string::<i32>().clone());
        let mut by_record: HashMap<u64, usize> = HashMap::with_capacity(batch.num_rows());
        for (i, r) in batch.records.iter().enumerate() {
            by_record.insert(*r, i);
        }
        let id_of = |rec: u64| -> String {
            by_record
                .get(&rec)
                .and_then(|&i| {
                    ids.as_ref()
                        .filter(|a| !a.is_null(i))
                        .map(|a| a.value(i).to_owned())
                })
                .unwrap_or_default()
        };
        let hash_of = |rec: u64| -> Option<String> {
            by_record.get(&rec).and_then(|&i| {
                hashes
                    .as_ref()
                    .filter(|a| !a.is_null(i))
                    .map(|a| a.value(i).to_owned())
            })
        };
        let before = batch.rejects.len();
        let typed = self.typed.transform(batch)?;
        for r in &typed.rejects[before..] {
            self.ctx.reject(&self.ty, &id_of(r.record), &r.reason);
        }
        let ncols = columns(self.table).len();
        let mut builders: Vec<StringBuilder> = (0..=ncols).map(|_| StringBuilder::new()).collect();
        let mut kept = Vec::with_capacity(typed.num_rows());
        let mut rejects = typed.rejects.clone();
        let typed_ids = typed.data.column(0).as_string::<i32>();
        let modified = typed
            .data
            .column(2)
            .as_primitive::<TimestampMillisecondType>();
        let mut max_mod = None::<i64>;
        let mut no_password = 0u64;
        let mut counters = typed.counters.clone();
        for row in 0..typed.num_rows() {
            let id = typed_ids.value(row);
            let rec = typed.records[row];
            let hash = hash_of(rec);
            match self.map_row(
                &Row {
                    b: &typed.data,
                    r: row,
                },
                id,
                hash.as_deref(),
            ) {
                Ok(values) => {
                    builders[0].append_value(id);
                    for (b, v) in builders[1..].iter_mut().zip(values) {
                        b.append_option(v);
                    }
                    kept.push(rec);
                    self.ctx.accept(&self.ty, id);
                    if self.ty == "user" && hash.is_none() {
                        no_password += 1;
                    }
                    if !modified.is_null(row) {
                        max_mod = max_mod.max(Some(modified.value(row)));
                    }
                }
                Err(Fate::Reject {
                    column,
                    kind,
                    reason,
                }) => {
                    self.ctx.reject(&self.ty, id, &reason);
                    if kind == "parent_rejected" {
                        *counters.entry("parent_rejected".into()).or_default() += 1;
                    }
                    rejects.push(Reject {
                        unit: typed.unit.clone(),
                        record: rec,
                        column,
                        kind,
                        reason,
                        raw: etl_core::batch::render_row(&typed.data, row),
                    });
                }
                Err(Fate::Filter { .. }) => unreachable!("no filter in mapping"),
            }
        }
        if no_password > 0 {
            *counters
                .entry("password_reset_required".into())
                .or_default() += no_password;
        }
        {
            let mut m = self.ctx.max_modified.lock().expect("lock");
            *m = (*m).max(max_mod);
        }
        let arrays: Vec<ArrayRef> = builders
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        let data = RecordBatch::try_new(target_schema(self.table), arrays)?;
        let mut out = Batch::new(typed.unit.clone(), data, kept);
        out.rejects = rejects;
        out.filtered = typed.filtered;
        out.counters = counters;
        out.consumed = typed.consumed;
        Ok(out)
    }
}
