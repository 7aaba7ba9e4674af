//! Deterministic CultureBridge fixtures for the Bubble test server: users, client and coach
//! profiles, bookings, payments, posts, comments and resources with realistic bad
//! records. Every thing's expected fate is computed here, by
//! rules stated independently of the migration, so tests can check exact counts.

use std::collections::{BTreeMap, HashMap};

use chrono::DateTime;
use etl_source_bubble::format_datetime;
use etl_source_bubble::test_server::Fixtures;
use serde_json::{Map, Value, json};

use super::schema::{MIGRATED, NOT_MIGRATED, id_keys};

/// What the migration must do with the fixtures, per type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    /// Things per type.
    pub read: BTreeMap<String, u64>,
    /// Things that must be loaded per type.
    pub loaded: BTreeMap<String, u64>,
    /// Things that must be rejected per type.
    pub rejected: BTreeMap<String, u64>,
    /// Things that must be filtered per type (the not-migrated types).
    pub filtered: BTreeMap<String, u64>,
    /// Children rejected because their parent was.
    pub parent_rejected: u64,
}

/// Sizes of a fixture set.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Users.
    pub users: usize,
    /// Bookings per user.
    pub bookings_per_user: usize,
    /// Seed of the generator.
    pub seed: u64,
}

impl Default for Sizes {
    fn default() -> Self {
        Sizes {
            users: 2000,
            bookings_per_user: 3,
            seed: 4,
        }
    }
}

struct Gen {
    rng: fastrand::Rng,
    ms: i64,
}

impl Gen {
    fn thing(&mut self) -> (String, Map<String, Value>) {
        // mostly increasing, with ties (equal Created Date) now and then
        if self.rng.u8(0..10) != 0 {
            self.ms += i64::from(self.rng.u32(1..2000));
        }
        let id = format!(
            "{}x{:018}",
            self.ms,
            self.rng.u64(0..1_000_000_000_000_000_000)
        );
        let created = DateTime::from_timestamp_millis(self.ms).expect("in range");
        let modified =
            DateTime::from_timestamp_millis(self.ms + i64::from(self.rng.u32(0..86_400_000)))
                .expect("in range");
        let mut m = Map::new();
        m.insert("_id".into(), json!(id));
        m.insert("Created Date".into(), json!(format_datetime(created)));
        m.insert("Modified Date".into(), json!(format_datetime(modified)));
        m.insert("Created By".into(), json!("admin_user_culturebridge"));
        (id, m)
    }
}

/// Ok, or rejected (with whether it was because of a rejected parent).
#[derive(Clone, Copy, PartialEq)]
enum Fate {
    Ok,
    Bad,
    ParentRejected,
}

/// A thing and its expected fate.
type Fated = (Map<String, Value>, Fate);

/// Generate fixtures and what the migration must make of them.
pub fn generate(sizes: Sizes) -> (Fixtures, Expected) {
    let mut g = Gen {
        rng: fastrand::Rng::with_seed(sizes.seed),
        ms: 1_640_995_200_000,
    };
    let mut out: BTreeMap<&str, Vec<Fated>> = BTreeMap::new();
    let first = [
        "Ana", "Bo", "Chen", "Dara", "Eli", "Femi", "Gus", "Hana", "Ivo", "June",
    ];
    let last = [
        "Silva", "Okafor", "Kim", "Novak", "Haddad", "Berg", "Rossi", "Tan",
    ];
    // users
    let mut user_ok: HashMap<String, bool> = HashMap::new();
    let mut clients = Vec::new();
    let mut coaches = Vec::new();
    let mut valid_emails: Vec<String> = Vec::new();
    for i in 0..sizes.users {
        let (id, mut m) = g.thing();
        let role = match g.rng.u8(0..20) {
            0..=5 => "seeker",
            6..=9 => "client",
            10..=15 => "coach",
            16 => "administrator",
            _ => "admin",
        };
        let mut fate = Fate::Ok;
        let mut email = format!(
            "{}.{}{i}@example.com",
            first[i % first.len()],
            last[i % last.len()]
        )
        .to_lowercase();
        let mut role_s = role.to_owned();
        if i % 97 == 50 {
            email = format!("user{i}.example.com");
            fate = Fate::Bad;
        } else if i % 89 == 40 {
            role_s = "superuser".into();
            fate = Fate::Bad;
        } else if i % 211 == 100 && !valid_emails.is_empty() {
            email = valid_emails[i % valid_emails.len()].to_uppercase();
            fate = Fate::Bad;
        }
        m.insert("email".into(), json!(email));
        m.insert("type".into(), json!(role_s));
        m.insert("active".into(), json!(g.rng.u8(0..10) != 0));
        m.insert("verified".into(), json!(g.rng.bool()));
        if fate == Fate::Ok {
            valid_emails.push(email.clone());
        }
        user_ok.insert(id.clone(), fate == Fate::Ok);
        match role {
            "seeker" | "client" => clients.push(id.clone()),
            "coach" => coaches.push(id.clone()),
            _ => {}
        }
        out.entry("user").or_default().push((m, fate));
    }
    let parent = |ok: Option<&bool>, own: Fate| match (ok, own) {
        (Some(false), _) => Fate::ParentRejected,
        (None, _) => Fate::Bad,
        (Some(true), f) => f,
    };
    // client profiles (one per client user; a few dangling)
    for (i, u) in clients.iter().enumerate() {
        let (_, mut m) = g.thing();
        let mut own = Fate::Ok;
        let mut user = u.clone();
        if i % 150 == 75 {
            user = format!("1600000000000x{:018}", i);
        }
        m.insert("user".into(), json!(user));
        m.insert("first_name".into(), json!(first[i % first.len()]));
        m.insert("last_name".into(), json!(last[i % last.len()]));
        m.insert(
            "photo".into(),
            json!(format!("//s3.amazonaws.com/culturebridge/p{i}.jpg")),
        );
        let phone = if i % 61 == 30 {
            own = Fate::Bad;
            "+1 (555) 0100-2000-3000 ext 45".to_owned()
        } else {
            format!("+1-555-{:04}", i % 10_000)
        };
        m.insert("phone_number".into(), json!(phone));
        m.insert(
            "time_zone".into(),
            json!(["Europe/Berlin", "America/New_York", "Asia/Tokyo"][i % 3]),
        );
        let quiz = if i % 53 == 20 {
            own = Fate::Bad;
            "{\"goals\": [\"relocation\"".to_owned()
        } else {
            json!({"goals": ["relocation", "career"], "score": i % 10}).to_string()
        };
        m.insert("quiz_responses".into(), json!(quiz));
        m.insert(
            "user_preferences".into(),
            json!({"language": "en", "notifications": i % 2 == 0}),
        );
        let fate = parent(user_ok.get(&user), own);
        out.entry("client_profile").or_default().push((m, fate));
    }
    // coach profiles
    let mut coach_rate: HashMap<String, f64> = HashMap::new();
    for (i, u) in coaches.iter().enumerate() {
        let (_, mut m) = g.thing();
        let mut own = Fate::Ok;
        m.insert("user".into(), json!(u));
        m.insert("first_name".into(), json!(first[(i + 3) % first.len()]));
        m.insert("last_name".into(), json!(last[(i + 5) % last.len()]));
        m.insert(
            "photo".into(),
            json!(format!("//s3.amazonaws.com/culturebridge/c{i}.jpg")),
        );
        m.insert(
            "biography".into(),
            json!(format!(
                "Intercultural coach #{i}, \"moves\", relocations, careers"
            )),
        );
        m.insert(
            "video_url".into(),
            json!(format!("https://video.example.com/{i}")),
        );
        m.insert("expertise_areas".into(), json!(["relocation", "career"]));
        m.insert(
            "languages_spoken".into(),
            [
                json!(["en", "de"]),
                json!(["fr"]),
                json!(["es", "pt", "en"]),
            ][i % 3]
                .clone(),
        );
        m.insert("countries_experience".into(), json!(["DE", "US"]));
        let rate = if i % 31 == 15 {
            own = Fate::Bad;
            if i % 2 == 0 { 900.0 } else { 10.0 }
        } else {
            25.0 + f64::from(g.rng.u32(0..47_500)) / 100.0
        };
        coach_rate.insert(u.clone(), rate);
        m.insert("rate".into(), json!(rate));
        m.insert(
            "currency_code".into(),
            json!(if i % 4 == 0 { "EUR" } else { "USD" }),
        );
        m.insert(
            "availability_data".into(),
            json!({"mon": ["09:00-12:00"], "thu": ["14:00-18:00"]})
                .to_string()
                .into(),
        );
        m.insert(
            "average_rating".into(),
            json!(f64::from(g.rng.u32(0..500)) / 100.0),
        );
        m.insert("session_count".into(), json!(g.rng.u32(0..300)));
        m.insert("verified".into(), json!(i % 3 != 0));
        let fate = parent(user_ok.get(u), own);
        out.entry("coach_profile").or_default().push((m, fate));
    }
    // bookings
    let mut booking_ok: HashMap<String, bool> = HashMap::new();
    let mut payable = Vec::new();
    let n_bookings = if clients.is_empty() || coaches.is_empty() {
        0
    } else {
        sizes.users * sizes.bookings_per_user
    };
    for i in 0..n_bookings {
        let (id, mut m) = g.thing();
        let mut own = Fate::Ok;
        let client = clients[g.rng.usize(0..clients.len())].clone();
        let mut coach = coaches[g.rng.usize(0..coaches.len())].clone();
        if i % 113 == 56 {
            coach = format!("1600000000001x{:018}", i);
        }
        m.insert("client".into(), json!(client));
        m.insert("coach".into(), json!(coach));
        let session =
            DateTime::from_timestamp_millis(g.ms + 86_400_000 * i64::from(g.rng.u32(1..60)))
                .expect("in range");
        let session_s = if i % 101 == 50 {
            own = Fate::Bad;
            "next tuesday".to_owned()
        } else if i % 7 == 3 {
            session.format("%m/%d/%Y %H:%M:%S").to_string()
        } else {
            format_datetime(session)
        };
        m.insert("session_date".into(), json!(session_s));
        let duration = if i % 41 == 20 {
            own = Fate::Bad;
            0
        } else {
            [30, 45, 60, 90][i % 4]
        };
        m.insert("duration".into(), json!(duration));
        let status = if i % 67 == 33 {
            own = Fate::Bad;
            "rescheduled"
        } else {
            [
                "pending",
                "confirmed",
                "complete",
                "completed",
                "canceled",
                "cancelled",
                "confirmed",
            ][i % 7]
        };
        m.insert("booking_status".into(), json!(status));
        m.insert(
            "meeting_url".into(),
            json!(format!("https://meet.example.com/{i}")),
        );
        if i % 5 == 0 {
            m.insert(
                "session_notes".into(),
                json!(format!("notes, with \"quotes\"\nand a second line {i}")),
            );
        }
        let c_ok = user_ok.get(&client).copied();
        let k_ok = user_ok.get(&coach).copied();
        let fate = match (c_ok, k_ok) {
            (None, _) | (_, None) => Fate::Bad,
            (Some(false), _) | (_, Some(false)) => Fate::ParentRejected,
            _ => own,
        };
        booking_ok.insert(id.clone(), fate == Fate::Ok);
        if matches!(status, "confirmed" | "complete" | "completed") {
            payable.push((
                id,
                duration,
                coach_rate.get(&coach).copied().unwrap_or(80.0),
            ));
        }
        out.entry("booking").or_default().push((m, fate));
    }
    // payments
    for (i, (b, duration, rate)) in payable.iter().enumerate() {
        let (_, mut m) = g.thing();
        let mut own = Fate::Ok;
        let mut booking = b.clone();
        if i % 157 == 78 {
            booking = format!("1600000000002x{:018}", i);
        }
        m.insert("booking".into(), json!(booking));
        let amount = if i % 43 == 21 {
            own = Fate::Bad;
            0.0
        } else {
            ((rate * f64::from(*duration) / 60.0) * 100.0)
                .round()
                .max(100.0)
                / 100.0
        };
        m.insert("payment_amount".into(), json!(amount));
        m.insert("currency_code".into(), json!("USD"));
        let status = if i % 71 == 35 {
            own = Fate::Bad;
            "chargeback"
        } else {
            [
                "success",
                "succeeded",
                "pending",
                "failed",
                "refund",
                "refunded",
                "success",
            ][i % 7]
        };
        m.insert("payment_status".into(), json!(status));
        m.insert("stripe_session".into(), json!(format!("cs_test_{i:08}")));
        m.insert("stripe_intent".into(), json!(format!("pi_{i:08}")));
        let fate = parent(booking_ok.get(&booking), own);
        out.entry("payment").or_default().push((m, fate));
    }
    // community: posts by users (some by rejected users, a few dangling or untitled),
    // comments on posts by accepted users (a few without a body), resources
    let n = (sizes.users / 10).max(1);
    let authors: Vec<&String> = clients.iter().chain(coaches.iter()).collect();
    let good: Vec<&String> = authors
        .iter()
        .copied()
        .filter(|a| user_ok.get(*a) == Some(&true))
        .collect();
    let mut post_ok: HashMap<String, bool> = HashMap::new();
    let mut posts = Vec::new();
    for i in 0..n {
        let (id, mut m) = g.thing();
        let author = match (i % 17 == 8, authors.is_empty()) {
            (false, false) => authors[g.rng.usize(0..authors.len())].clone(),
            _ => format!("1600000000003x{i:018}"),
        };
        m.insert("author".into(), json!(author));
        let own = if i % 13 == 6 {
            Fate::Bad
        } else {
            m.insert("title".into(), json!(format!("post {i}")));
            Fate::Ok
        };
        m.insert("body".into(), json!(format!("Some post text {i}")));
        let fate = parent(user_ok.get(&author), own);
        post_ok.insert(id.clone(), fate == Fate::Ok);
        posts.push(id);
        out.entry("post").or_default().push((m, fate));
    }
    for i in 0..n * 2 {
        let (_, mut m) = g.thing();
        let post = posts[g.rng.usize(0..posts.len())].clone();
        m.insert("post".into(), json!(post));
        let author = match good.is_empty() {
            false => good[g.rng.usize(0..good.len())].clone(),
            true => format!("1600000000004x{i:018}"),
        };
        m.insert("author".into(), json!(author));
        let own = if i % 11 == 5 {
            Fate::Bad
        } else {
            m.insert(
                "body".into(),
                json!(format!("A comment, with \"quotes\" {i}")),
            );
            Fate::Ok
        };
        let fate = match parent(post_ok.get(&post), own) {
            Fate::Ok => parent(user_ok.get(&author), Fate::Ok),
            f => f,
        };
        out.entry("comment").or_default().push((m, fate));
    }
    for i in 0..n {
        let (_, mut m) = g.thing();
        let own = if i % 9 == 4 {
            Fate::Bad
        } else {
            m.insert("title".into(), json!(format!("resource {i}")));
            Fate::Ok
        };
        m.insert("url".into(), json!(format!("https://example.com/r/{i}")));
        m.insert("tags".into(), json!(["culture", format!("t{}", i % 4)]));
        out.entry("resource").or_default().push((m, own));
    }
    let mut fixtures = Fixtures::new();
    let mut exp = Expected::default();
    for ty in MIGRATED.iter().chain(NOT_MIGRATED.iter()) {
        let rows = out.remove(ty).unwrap_or_default();
        let key = (*ty).to_owned();
        exp.read.insert(key.clone(), rows.len() as u64);
        let migrated = MIGRATED.contains(ty);
        let ok = rows.iter().filter(|r| r.1 == Fate::Ok).count() as u64;
        let pr = rows.iter().filter(|r| r.1 == Fate::ParentRejected).count() as u64;
        exp.parent_rejected += pr;
        if migrated {
            exp.loaded.insert(key.clone(), ok);
            exp.rejected.insert(key.clone(), rows.len() as u64 - ok);
            exp.filtered.insert(key.clone(), 0);
        } else {
            exp.loaded.insert(key.clone(), 0);
            exp.rejected.insert(key.clone(), 0);
            exp.filtered.insert(key.clone(), rows.len() as u64);
        }
        fixtures.insert(ty, rows.into_iter().map(|r| r.0).collect(), id_keys(ty));
    }
    (fixtures, exp)
}
