//! A deterministic generator of source data: the same options always give the same rows
//! (ids, timestamps and values are functions of the row number), generated inside
//! PostgreSQL so 2,000,000 rows take seconds.
//!
//! Observations are spread over 2024-01 .. 2025-11 (the seed's months; see
//! [`GenOptions::months`]), rising with the row number;
//! one row in 5,000 has a 1970 timestamp (a device with a reset clock) and one in 7,001 a
//! 2099 placeholder, which fall outside every expected month and must land in the DEFAULT
//! partition.

use sqlx::{Connection, PgConnection};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Observations in total (60 % petri, 40 % gasifier).
    pub rows: u64,
    /// Sites.
    pub sites: u32,
    /// Pilot programs.
    pub programs: u32,
    /// Submissions.
    pub submissions: u32,
    /// Months the observations span from 2024-01 (23: to 2025-11, as in the seed).
    pub months: u32,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            rows: 20_000,
            sites: 40,
            programs: 6,
            submissions: 2_000,
            months: 23,
        }
    }
}

/// A deterministic uuid: `prefix` (one hex digit per table) and the row number.
fn uuid_sql(prefix: char, n: &str) -> String {
    format!("('{prefix}0000000-0000-4000-8000-' || lpad(to_hex({n}), 12, '0'))::uuid")
}

/// The creation time of row `g` of `n`: rising with `g` over `months` months from
/// 2024-01-01 (rows are inserted as they are created, so time follows the physical order,
/// as in a real table), with up to an hour of jitter, and the stray 1970 and 2099 rows.
fn created_sql(g: &str, n: u64, salt: u64, months: u32) -> String {
    let start = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).expect("valid date");
    let end = start
        .checked_add_months(chrono::Months::new(months.max(1)))
        .expect("valid date");
    let span = (end - start).num_seconds() - 3600;
    let n = n.max(1);
    format!(
        "CASE WHEN {g} % 5000 = 17 THEN timestamptz '1970-01-01 00:00:00+00' + ({g} % 86400) * interval '1 second'
              WHEN {g} % 7001 = 23 THEN timestamptz '2099-12-31 00:00:00+00'
              ELSE timestamptz '2024-01-01 00:00:00+00'
                   + ((({g}::bigint - 1) * {span} / {n} + ({g}::bigint * 2654435761 + {salt}) % 3600) * interval '1 second') END"
    )
}

/// Counts of what was generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generated {
    /// Petri observations.
    pub petri: u64,
    /// Gasifier observations.
    pub gasifier: u64,
}

/// Fill the (empty) source tables.
pub async fn generate(conn: &mut PgConnection, opts: &GenOptions) -> anyhow::Result<Generated> {
    let petri = opts.rows * 6 / 10;
    let gasifier = opts.rows - petri;
    let site = uuid_sql('1', "g");
    let program = uuid_sql('2', "g");
    let submission = uuid_sql('3', "g");
    let sub_site = uuid_sql('1', &format!("(1 + g % {})", opts.sites));
    let sub_prog = uuid_sql('2', &format!("(1 + g % {})", opts.programs));
    let obs_sub = |salt: u64| uuid_sql('3', &format!("(1 + (g * {salt}) % {})", opts.submissions));
    let obs_site = uuid_sql(
        '1',
        &format!(
            "(1 + (1 + (g * 31) % {}) % {})",
            opts.submissions, opts.sites
        ),
    );
    let obs_prog = uuid_sql(
        '2',
        &format!(
            "(1 + (1 + (g * 31) % {}) % {})",
            opts.submissions, opts.programs
        ),
    );
    let stmts = [
        format!(
            "INSERT INTO sites SELECT {site}, 'Site ' || g, (ARRAY['Greenhouse','Storage','Transport','Production'])[1 + g % 4],
                    timestamptz '2023-06-01 00:00:00+00' + g * interval '1 day'
               FROM generate_series(1, {}) g",
            opts.sites
        ),
        format!(
            "INSERT INTO pilot_programs SELECT {program}, 'Program ' || chr(64 + g), CASE WHEN g % 3 = 0 THEN 'inactive' ELSE 'active' END,
                    date '2024-01-01' + (g - 1) * 30, date '2025-12-31'
               FROM generate_series(1, {}) g",
            opts.programs
        ),
        format!(
            "INSERT INTO submissions SELECT {submission}, {sub_site}, {sub_prog}, 100000 + g,
                    round((10 + g % 25 + (g % 7) / 10.0)::numeric, 2), round((40 + g % 50)::numeric, 2),
                    timestamptz '2024-01-01 00:00:00+00' + (g % 700) * interval '1 day'
               FROM generate_series(1, {}) g",
            opts.submissions
        ),
    ];
    let mut tx = conn.begin().await?;
    for s in stmts {
        sqlx::query(sqlx::AssertSqlSafe(s))
            .execute(&mut *tx)
            .await?;
    }
    // The observations. Fixing the submission/site/program trio from one number keeps
    // them consistent (the site and program of a row are those of a real combination).
    let pid = uuid_sql('a', "g");
    let created = created_sql("g", petri, 11, opts.months);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO petri_observations
         SELECT {pid}, {sub}, {obs_site}, {obs_prog}, 'P' || lpad((g % 100000)::text, 5, '0'),
                CASE WHEN g % 3 = 0 THEN 'Yes' ELSE 'No' END,
                (ARRAY['Daily','Every Other Day','Weekly', NULL])[1 + g % 4],
                (ARRAY['Front-Left','Front-Center','Back-Right','Center'])[1 + g % 4],
                round(((g * 37) % 10000 / 100.0)::numeric, 2), round((5 + (g * 13) % 300 / 10.0)::numeric, 2),
                CASE WHEN g % 4 = 0 THEN 'https://img.example.invalid/petri/' || g || '.jpg' END,
                CASE WHEN g % 9 = 0 THEN 'note ' || g || E' with a tab\tand ''quotes''' END,
                CASE WHEN g % 5 = 0 THEN (ARRAY['white','green','black'])[1 + g % 3] END,
                CASE WHEN g % 6 = 0 THEN 'PL-' || (g % 40) END,
                {created}, {created} + interval '5 minutes'
           FROM generate_series(1, {petri}) g",
        sub = obs_sub(31),
    )))
    .execute(&mut *tx)
    .await?;
    let gid = uuid_sql('b', "g");
    let created = created_sql("g", gasifier, 29, opts.months);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO gasifier_observations
         SELECT {gid}, {sub}, {obs_site}, {obs_prog}, 'G' || lpad((g % 100000)::text, 5, '0'),
                (ARRAY['Geraniol','CLO2','Acetic Acid','Citronella Blend','Essential Oils Blend'])[1 + g % 5],
                round(((g * 53) % 100000 / 1000.0)::numeric, 3), g % 97 = 0,
                (ARRAY['High','Medium','Low'])[1 + g % 3], (ARRAY['Front-Center','Back-Left','Center-Right'])[1 + g % 3],
                round(((g * 17) % 10000 / 100.0)::numeric, 2),
                CASE WHEN g % 4 = 1 THEN 'https://img.example.invalid/gasifier/' || g || '.jpg' END,
                CASE WHEN g % 11 = 0 THEN 'gasifier note ' || g END,
                CASE WHEN g % 2 = 0 THEN round(((g * 7) % 1000 / 10.0)::numeric, 3) END,
                {created}, {created} + interval '3 minutes'
           FROM generate_series(1, {gasifier}) g",
        sub = obs_sub(31),
    )))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    for t in [
        "sites",
        "pilot_programs",
        "submissions",
        "petri_observations",
        "gasifier_observations",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE {t}")))
            .execute(&mut *conn)
            .await?;
    }
    Ok(Generated { petri, gasifier })
}

/// How many generated rows of `n` fall outside 2024-01 .. 2025-11 (the DEFAULT partition).
pub fn strays(n: u64) -> u64 {
    (1..=n).filter(|g| g % 5000 == 17 || g % 7001 == 23).count() as u64
}
