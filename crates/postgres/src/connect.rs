//! Connect options with ferry's defaults.
//!
//! [`connect_options`] parses a URL and sets what every ferry connection wants:
//!
//! * statements logged at DEBUG only, and **slow** statements at DEBUG too, above a high
//!   threshold ([`SLOW_STATEMENT_THRESHOLD`]): sqlx's default logs every statement slower
//!   than 1 s at WARN with its SQL text, so an index build would print raw DDL on the
//!   console; long steps are reported through the run's own progress instead;
//! * `application_name = ferry` (visible in `pg_stat_activity`);
//! * server-side TCP keepalives ([`ConnectSettings::default`]).
//!
//! ### Note: keepalives and connect timeout
//! sqlx 0.9's `PgConnectOptions` has **no client-side TCP keepalive** (nor a connect
//! timeout): it sets only `TCP_NODELAY` on its socket (upstream issue launchbadge/sqlx#3540;
//! the pull requests adding `keepalives*` options were not released in 0.9.0). What ferry
//! can set is the **server-side** keepalive (`tcp_keepalives_idle`, `_interval`, `_count`,
//! sent as startup options): the server then notices a ferry process or network path that
//! vanished and ends its session, releasing its locks and its open transaction. A client
//! blocked on a server that vanished is covered by the caller's own timeouts instead: the
//! optional `statement_timeout`, a pool's `acquire_timeout`, and
//! [`ConnectSettings::connect`], which bounds the connection attempt itself.

use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgConnection};

/// Statements slower than this are logged (at DEBUG): an hour.
pub const SLOW_STATEMENT_THRESHOLD: Duration = Duration::from_secs(3600);

/// Parse a PostgreSQL URL into connect options with ferry's defaults and
/// [`ConnectSettings::default`] (see the [module documentation](self)).
///
/// # Errors
/// The URL does not parse (`sqlx::Error::Configuration`).
///
/// # Examples
/// ```
/// let opts = etl_postgres::connect_options("postgres://u:p@localhost:5432/db").unwrap();
/// assert_eq!(opts.get_application_name(), Some("ferry"));
/// assert!(opts.get_options().unwrap().contains("tcp_keepalives_idle=60"));
/// ```
pub fn connect_options(url: &str) -> sqlx::Result<PgConnectOptions> {
    ConnectSettings::default().options(url)
}

/// Optional connection settings on top of ferry's defaults.
///
/// ```
/// use std::time::Duration;
/// use etl_postgres::ConnectSettings;
/// let opts = ConnectSettings {
///     statement_timeout: Some(Duration::from_secs(30)),
///     ..ConnectSettings::default()
/// }
/// .options("postgres://localhost/db")
/// .unwrap();
/// assert!(opts.get_options().unwrap().contains("statement_timeout=30000"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectSettings {
    /// Longest a connection attempt may take in [`ConnectSettings::connect`] (sqlx has no
    /// connect timeout of its own). Default 30 s.
    pub connect_timeout: Duration,
    /// Server-side `statement_timeout` for every statement of the session; `None` (the
    /// default) keeps the server's setting (usually none).
    pub statement_timeout: Option<Duration>,
    /// Server-side TCP keepalive: idle time before the first probe
    /// (`tcp_keepalives_idle`); `None` keeps the server's setting. Default 60 s.
    pub keepalive_idle: Option<Duration>,
    /// Server-side TCP keepalive: time between probes (`tcp_keepalives_interval`).
    /// Default 10 s.
    pub keepalive_interval: Option<Duration>,
    /// Server-side TCP keepalive: unanswered probes before the server drops the session
    /// (`tcp_keepalives_count`). Default 6.
    pub keepalive_count: Option<u32>,
}

impl Default for ConnectSettings {
    fn default() -> Self {
        ConnectSettings {
            connect_timeout: Duration::from_secs(30),
            statement_timeout: None,
            keepalive_idle: Some(Duration::from_secs(60)),
            keepalive_interval: Some(Duration::from_secs(10)),
            keepalive_count: Some(6),
        }
    }
}

impl ConnectSettings {
    /// Parse `url` and apply ferry's defaults and these settings.
    ///
    /// # Errors
    /// The URL does not parse (`sqlx::Error::Configuration`).
    pub fn options(&self, url: &str) -> sqlx::Result<PgConnectOptions> {
        let opts: PgConnectOptions = url.parse()?;
        Ok(self.apply(opts))
    }

    /// Apply ferry's defaults and these settings to existing options.
    pub fn apply(&self, opts: PgConnectOptions) -> PgConnectOptions {
        let mut server: Vec<(&str, String)> = Vec::new();
        if let Some(d) = self.keepalive_idle {
            server.push(("tcp_keepalives_idle", d.as_secs().max(1).to_string()));
        }
        if let Some(d) = self.keepalive_interval {
            server.push(("tcp_keepalives_interval", d.as_secs().max(1).to_string()));
        }
        if let Some(n) = self.keepalive_count {
            server.push(("tcp_keepalives_count", n.to_string()));
        }
        if let Some(d) = self.statement_timeout {
            server.push(("statement_timeout", d.as_millis().max(1).to_string()));
        }
        let opts = opts
            .log_statements(tracing::log::LevelFilter::Debug)
            .log_slow_statements(tracing::log::LevelFilter::Debug, SLOW_STATEMENT_THRESHOLD)
            .application_name("ferry");
        if server.is_empty() {
            opts
        } else {
            opts.options(server)
        }
    }

    /// Connect with `opts`, giving up after [`ConnectSettings::connect_timeout`].
    ///
    /// # Errors
    /// The connection fails, or does not complete in time (`sqlx::Error::PoolTimedOut` is
    /// not used: the error is an `Io` error of kind `TimedOut`).
    pub async fn connect(&self, opts: &PgConnectOptions) -> sqlx::Result<PgConnection> {
        match tokio::time::timeout(self.connect_timeout, opts.connect()).await {
            Ok(r) => r,
            Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "connecting to PostgreSQL took longer than {:?}",
                    self.connect_timeout
                ),
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_settings_reach_the_options() {
        let opts = connect_options("postgres://u@h/db").unwrap();
        let server = opts.get_options().unwrap();
        assert!(server.contains("tcp_keepalives_interval=10"), "{server}");
        assert!(server.contains("tcp_keepalives_count=6"), "{server}");
        assert!(!server.contains("statement_timeout"), "{server}");
        let none = ConnectSettings {
            keepalive_idle: None,
            keepalive_interval: None,
            keepalive_count: None,
            ..ConnectSettings::default()
        };
        assert_eq!(
            none.options("postgres://u@h/db").unwrap().get_options(),
            None
        );
        assert!(connect_options("not a url").is_err());
    }
}
