//! The Bubble types of CultureBridge (declared schemas, default keys of the original app)
//! and the PostgreSQL target schema (with a nullable `password_hash` and
//! `password_reset_required`, since the Data API returns no passwords).

use std::collections::{BTreeMap, HashMap};

use etl_source_bubble::{KeyMode, TypeSchema};

use super::transform::declared;

/// Migrated types in dependency order (parents first): the coaching data, then the
/// community data (posts by users, comments on posts, resources).
pub const MIGRATED: [&str; 8] = [
    "user",
    "client_profile",
    "coach_profile",
    "booking",
    "payment",
    "post",
    "comment",
    "resource",
];
/// Types exported but not migrated (counted as filtered): none left; kept so an app's
/// extra types can be exported without a target.
pub const NOT_MIGRATED: [&str; 0] = [];

/// Target table of a type (`""`: not migrated), as `mapping.toml` declares it.
pub fn table_of(bubble_type: &str) -> &'static str {
    let t = declared().get(bubble_type);
    t.and_then(|t| t.table.as_deref()).unwrap_or("")
}

/// The declared schema of `bubble_type` with the original app's keys (from `mapping.toml`),
/// in `mode`, with `overrides` (`column -> key` of the current mode) applied.
pub fn type_schema(
    bubble_type: &str,
    mode: KeyMode,
    overrides: &HashMap<String, String>,
) -> TypeSchema {
    match declared().get(bubble_type) {
        Some(t) => t.schema(mode, overrides),
        None => TypeSchema::new(bubble_type, mode),
    }
}

/// Display-key -> generated-id map of a type (what the test server sends in id mode).
pub fn id_keys(bubble_type: &str) -> HashMap<String, String> {
    type_schema(bubble_type, KeyMode::DisplayNames, &HashMap::new())
        .fields
        .into_iter()
        .map(|f| (f.key, f.id_key))
        .collect()
}

/// Field-key overrides from a JSON file: `{"user": {"email": "Email Address"}, ...}`.
pub type KeyOverrides = BTreeMap<String, HashMap<String, String>>;

/// The target schema (idempotent), the id map, the run log and the staging schema.
pub const DDL: &str = r#"
DO $$ BEGIN
  CREATE TYPE user_role AS ENUM ('client', 'coach', 'admin');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
  CREATE TYPE booking_status AS ENUM ('pending', 'confirmed', 'completed', 'cancelled');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
  CREATE TYPE payment_status AS ENUM ('pending', 'succeeded', 'failed', 'refunded');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

CREATE TABLE IF NOT EXISTS users (
  id uuid PRIMARY KEY,
  email varchar(255) NOT NULL UNIQUE,
  password_hash varchar(255),
  password_reset_required boolean NOT NULL DEFAULT false,
  role user_role NOT NULL,
  is_active boolean NOT NULL DEFAULT true,
  email_verified boolean NOT NULL DEFAULT false,
  created_at timestamp NOT NULL DEFAULT now(),
  updated_at timestamp NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS client_profiles (
  id uuid PRIMARY KEY,
  user_id uuid NOT NULL UNIQUE REFERENCES users(id) ON DELETE CASCADE,
  first_name varchar(100),
  last_name varchar(100),
  photo_url varchar(500),
  phone varchar(20),
  timezone varchar(50),
  quiz_data jsonb NOT NULL,
  preferences jsonb,
  created_at timestamp NOT NULL DEFAULT now(),
  updated_at timestamp NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS coach_profiles (
  id uuid PRIMARY KEY,
  user_id uuid NOT NULL UNIQUE REFERENCES users(id) ON DELETE CASCADE,
  first_name varchar(100),
  last_name varchar(100),
  photo_url varchar(500),
  bio text,
  intro_video_url varchar(500),
  expertise text[],
  languages text[],
  countries text[],
  hourly_rate numeric(10,2),
  currency varchar(3) DEFAULT 'USD',
  availability jsonb,
  rating numeric(3,2) DEFAULT 0,
  total_sessions int DEFAULT 0,
  is_verified boolean DEFAULT false,
  created_at timestamp NOT NULL DEFAULT now(),
  updated_at timestamp NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS coach_profiles_languages ON coach_profiles USING gin (languages);
CREATE TABLE IF NOT EXISTS bookings (
  id uuid PRIMARY KEY,
  client_id uuid NOT NULL REFERENCES users(id),
  coach_id uuid NOT NULL REFERENCES users(id),
  session_datetime timestamp NOT NULL,
  duration_minutes int NOT NULL DEFAULT 60,
  status booking_status NOT NULL DEFAULT 'pending',
  payment_id uuid,
  meeting_link varchar(500),
  notes text,
  created_at timestamp NOT NULL DEFAULT now(),
  updated_at timestamp NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS bookings_client ON bookings (client_id);
CREATE INDEX IF NOT EXISTS bookings_coach ON bookings (coach_id);
CREATE INDEX IF NOT EXISTS bookings_session ON bookings (session_datetime);
CREATE TABLE IF NOT EXISTS payments (
  id uuid PRIMARY KEY,
  booking_id uuid NOT NULL REFERENCES bookings(id),
  amount numeric(10,2) NOT NULL,
  currency varchar(3) DEFAULT 'USD',
  status payment_status NOT NULL DEFAULT 'pending',
  stripe_session_id varchar(255),
  stripe_payment_intent_id varchar(255),
  created_at timestamp NOT NULL DEFAULT now(),
  updated_at timestamp NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS posts (
  id uuid PRIMARY KEY,
  author_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  title varchar(255) NOT NULL,
  body text,
  created_at timestamp NOT NULL DEFAULT now(),
  updated_at timestamp NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS posts_author ON posts (author_id);
CREATE TABLE IF NOT EXISTS comments (
  id uuid PRIMARY KEY,
  post_id uuid NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
  author_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  body text NOT NULL,
  created_at timestamp NOT NULL DEFAULT now(),
  updated_at timestamp NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS comments_post ON comments (post_id);
CREATE TABLE IF NOT EXISTS resources (
  id uuid PRIMARY KEY,
  title varchar(255) NOT NULL,
  url varchar(500),
  tags text[],
  created_at timestamp NOT NULL DEFAULT now(),
  updated_at timestamp NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS bubble_id_map (
  bubble_type text NOT NULL,
  bubble_id text NOT NULL,
  new_id uuid NOT NULL,
  run_id uuid NOT NULL,
  PRIMARY KEY (bubble_type, bubble_id)
);
CREATE TABLE IF NOT EXISTS migration_runs (
  run_id uuid PRIMARY KEY,
  started_at timestamptz NOT NULL,
  finished_at timestamptz,
  since timestamptz,
  high_water_mark timestamptz,
  status text NOT NULL
);
CREATE SCHEMA IF NOT EXISTS cb_staging;
"#;

#[cfg(test)]
mod tests {
    use super::{DDL, MIGRATED, declared};

    #[test]
    fn the_declared_mapping_fits_the_ddl_in_dependency_order() {
        let types: Vec<&str> = declared()
            .types
            .iter()
            .map(|t| t.bubble_type.as_str())
            .collect();
        assert_eq!(types, MIGRATED);
        for def in DDL.split("CREATE TABLE IF NOT EXISTS ").skip(1) {
            let (name, body) = def.split_once(" (").expect("CREATE TABLE name (");
            let body = &body[..body.find("\n);").expect("a table ends with );")];
            let cols = body.lines().filter_map(|l| l.split_whitespace().next());
            let cols: Vec<&str> = cols.filter(|c| *c != "PRIMARY").collect();
            if let Some(t) = declared()
                .types
                .iter()
                .find(|t| t.table.as_deref() == Some(name))
            {
                assert_eq!(t.column_names(), cols, "{name}");
            }
        }
    }
}
