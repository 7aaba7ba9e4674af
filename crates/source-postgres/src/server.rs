//! A PostgreSQL server as configuration files describe it, field by field (the shape of
//! many migration configs: `{"host": .., "port": 5432, "database": .., "username": ..,
//! "password": "${DB_PASSWORD}", "ssl": true}`), and the connection URL it stands for.

use etl_core::Secret;
use serde::Deserialize;

/// A PostgreSQL server, database and user; deserialized from camelCase keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerConfig {
    /// `postgresql` (or absent); informational.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// Host name or address.
    pub host: String,
    /// Port (5432 when absent).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Database.
    pub database: String,
    /// User.
    pub username: String,
    /// Password (a `${ENV_VAR}` in the file; never printed).
    #[serde(default)]
    pub password: Option<Secret>,
    /// TLS required (`sslmode=require`).
    #[serde(default)]
    pub ssl: bool,
    /// How long connecting may take, in milliseconds (`connectionTimeout`; 30 s when
    /// absent): see [`ServerConfig::connect_timeout`].
    #[serde(default)]
    pub connection_timeout: Option<u64>,
}

fn default_port() -> u16 {
    5432
}

impl ServerConfig {
    /// The connect timeout of `connectionTimeout` (for
    /// [`PgSourceOptions::connect_timeout`](crate::PgSourceOptions::connect_timeout)).
    pub fn connect_timeout(&self) -> Option<std::time::Duration> {
        self.connection_timeout
            .map(std::time::Duration::from_millis)
    }

    /// `postgres://user:password@host:port/database[?sslmode=require]`, the user, password
    /// and database percent-encoded.
    pub fn url(&self) -> String {
        let pw = (self.password.as_ref())
            .map_or_else(String::new, |p| format!(":{}", encode(p.expose())));
        let ssl = if self.ssl { "?sslmode=require" } else { "" };
        let (user, db) = (encode(&self.username), encode(&self.database));
        format!(
            "postgres://{user}{pw}@{}:{}/{db}{ssl}",
            self.host, self.port
        )
    }
}

/// Percent-encoding of everything but the unreserved characters of RFC 3986.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_encodes_user_password_and_database() {
        let c: ServerConfig = serde_json::from_value(serde_json::json!({
            "type": "postgresql", "host": "db", "database": "s9 prod", "username": "me",
            "password": "p@ss:/", "ssl": true
        }))
        .unwrap();
        assert_eq!(
            c.url(),
            "postgres://me:p%40ss%3A%2F@db:5432/s9%20prod?sslmode=require"
        );
        assert!(!format!("{c:?}").contains("p@ss"));
    }
}
