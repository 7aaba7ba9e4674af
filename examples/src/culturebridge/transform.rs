//! Mapping of typed Bubble things to target rows, the migration's own rules: field, role
//! and status maps, JSON and list fields, decimals, deterministic UUIDv5 ids, references
//! (through [`MapState`]), one e-mail per user, one profile per user, the password rules.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use etl_core::{Counts, Fate};
use etl_sink_postgres::idmap::IdMap;
use etl_source_bubble::TypeSchema;
use etl_source_bubble::mapping::{
    MapState, RejectLog, Row, RowMap, code, email, json_text, max_chars, reject,
};
use uuid::Uuid;

use super::schema::{columns, table_of};

/// The ids of the migration: UUIDv5 of `"<type>:<_id>"` in the namespace
/// `uuid5(NAMESPACE_URL, "https://ferry.invalid/culturebridge")`, mapped in `bubble_id_map`.
pub fn id_map() -> IdMap {
    IdMap::new(
        "https://ferry.invalid/culturebridge",
        "bubble_id_map",
        "bubble",
    )
}

/// The new id of a Bubble thing, the same on every run.
pub fn new_id(bubble_type: &str, bubble_id: &str) -> Uuid {
    id_map().id(bubble_type, bubble_id)
}

/// What the mappings of one run share: references and rejects ([`MapState`]), who keeps
/// each e-mail, which users have a profile.
pub struct Ctx {
    /// Accepted and rejected ids, the reject log, the high-water mark.
    pub state: Arc<MapState>,
    /// Lower-cased e-mail -> the Bubble id that keeps it (earliest `Created Date`, or the
    /// user already in the database).
    pub email_owner: Mutex<HashMap<String, String>>,
    profiles: Mutex<HashSet<(String, String)>>,
}

impl Ctx {
    /// A context writing rejects to `log`.
    pub fn new(log: RejectLog) -> Self {
        Ctx {
            state: Arc::new(MapState::new(log)),
            email_owner: Mutex::default(),
            profiles: Mutex::default(),
        }
    }
}

/// The mapping of `spec`'s type into its target table (filtered when not migrated).
pub fn mapping(spec: Arc<TypeSchema>, ctx: Arc<Ctx>) -> RowMap {
    let (ty, state) = (spec.bubble_type.clone(), ctx.state.clone());
    RowMap::new(spec, state, columns(table_of(&ty)), move |row, counts| {
        map_row(&ctx, &ty, row, counts)
    })
    .keep_raw(&["password_hash"])
}

/// A text that must be there, of at most `max` characters.
fn required(v: Option<&str>, max: usize, column: &str) -> Result<String, Fate> {
    match v.map(str::trim).filter(|t| !t.is_empty()) {
        None => Err(rej(column, "missing_value", format!("{column} is empty"))),
        Some(_) => Ok(max_chars(v, max, column)?.expect("present")),
    }
}

fn rej(column: &str, kind: &str, reason: String) -> Fate {
    reject(column, kind, reason)
}

/// Role map (the seed's `config.py`); unknown codes are errors.
pub const ROLES: &[(&str, &str)] = &[
    ("seeker", "client"),
    ("client", "client"),
    ("coach", "coach"),
    ("administrator", "admin"),
    ("admin", "admin"),
];
/// Booking status map.
pub const BOOKING_STATUSES: &[(&str, &str)] = &[
    ("pending", "pending"),
    ("confirmed", "confirmed"),
    ("complete", "completed"),
    ("completed", "completed"),
    ("canceled", "cancelled"),
    ("cancelled", "cancelled"),
];
/// Payment status map.
pub const PAYMENT_STATUSES: &[(&str, &str)] = &[
    ("pending", "pending"),
    ("success", "succeeded"),
    ("succeeded", "succeeded"),
    ("failed", "failed"),
    ("refund", "refunded"),
    ("refunded", "refunded"),
];

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

/// The target row of one thing of `ty` (a migrated type), or its reject.
fn map_row(
    ctx: &Ctx,
    ty: &str,
    row: &Row<'_>,
    counts: &mut Counts,
) -> Result<Vec<Option<String>>, Fate> {
    let (id, hash) = (row.id(), row.raw("password_hash"));
    let created = row.ts("created_date").ok_or_else(|| {
        rej(
            "created_date",
            "missing_date",
            "Created Date is empty".into(),
        )
    })?;
    let modified = row.ts("modified_date").unwrap_or_else(|| created.clone());
    let s = |v: &str| Some(v.to_owned());
    let me = new_id(ty, id).to_string();
    Ok(match ty {
        "user" => {
            let email = email(row.text("email"), "email")?;
            if let Some(owner) = ctx.email_owner.lock().expect("lock").get(&email)
                && owner != id
            {
                return Err(rej(
                    "email",
                    "duplicate_email",
                    format!("email `{email}` is already used by user `{owner}`"),
                ));
            }
            let role = code(row.text("type"), "role", ROLES)?;
            if hash.is_none() {
                *counts.entry("password_reset_required".into()).or_default() += 1;
            }
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
            ctx.state.parent("user", "user", user)?;
            let user = user.expect("checked");
            let first = max_chars(row.text("first_name"), 100, "first_name")?;
            let last = max_chars(row.text("last_name"), 100, "last_name")?;
            let photo = max_chars(row.file_url("photo").as_deref(), 500, "photo")?;
            let mut v = vec![
                s(&me),
                Some(new_id("user", user).to_string()),
                first,
                last,
                photo,
            ];
            if ty == "client_profile" {
                v.push(max_chars(row.text("phone_number"), 20, "phone_number")?);
                v.push(max_chars(row.text("time_zone"), 50, "time_zone")?);
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
                v.push(max_chars(
                    row.file_url("video_url").as_deref(),
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
            let key = (ty.to_owned(), user.to_owned());
            if !ctx.profiles.lock().expect("lock").insert(key) {
                return Err(rej(
                    "user",
                    "duplicate_profile",
                    format!("user `{user}` already has a {ty}"),
                ));
            }
            v.push(Some(created));
            v.push(Some(modified));
            v
        }
        "booking" => {
            let client = row.text("client");
            ctx.state.parent("user", "client", client)?;
            let coach = row.text("coach");
            ctx.state.parent("user", "coach", coach)?;
            let when = row.ts("session_date").ok_or_else(|| {
                rej(
                    "session_date",
                    "missing_date",
                    "session_date is empty".into(),
                )
            })?;
            let d = row
                .int("duration")
                .ok_or_else(|| rej("duration", "missing_duration", "duration is empty".into()))?;
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
                    BOOKING_STATUSES,
                )?),
                None,
                max_chars(row.text("meeting_url"), 500, "meeting_url")?,
                row.text("session_notes").map(str::to_owned),
                Some(created),
                Some(modified),
            ]
        }
        "payment" => {
            let booking = row.text("booking");
            ctx.state.parent("booking", "booking", booking)?;
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
                    PAYMENT_STATUSES,
                )?),
                max_chars(row.text("stripe_session"), 255, "stripe_session")?,
                max_chars(row.text("stripe_intent"), 255, "stripe_intent")?,
                Some(created),
                Some(modified),
            ]
        }
        "post" => {
            let author = row.text("author");
            ctx.state.parent("user", "author", author)?;
            vec![
                s(&me),
                Some(new_id("user", author.expect("checked")).to_string()),
                Some(required(row.text("title"), 255, "title")?),
                row.text("body").map(str::to_owned),
                Some(created),
                Some(modified),
            ]
        }
        "comment" => {
            let (post, author) = (row.text("post"), row.text("author"));
            ctx.state.parent("post", "post", post)?;
            ctx.state.parent("user", "author", author)?;
            vec![
                s(&me),
                Some(new_id("post", post.expect("checked")).to_string()),
                Some(new_id("user", author.expect("checked")).to_string()),
                Some(required(row.text("body"), usize::MAX, "body")?),
                Some(created),
                Some(modified),
            ]
        }
        "resource" => vec![
            s(&me),
            Some(required(row.text("title"), 255, "title")?),
            max_chars(row.text("url"), 500, "url")?,
            row.list("tags"),
            Some(created),
            Some(modified),
        ],
        other => unreachable!("type `{other}` is not migrated"),
    })
}
