//! Configuration files (TOML or JSON) with `${ENV_VAR}` substitution, and secrets that
//! never reach logs or reports.

use std::fmt;
use std::path::Path;

use crate::{Error, Result};

/// Replace `${NAME}` (and `${NAME:-default}`) with environment variables.
///
/// # Errors
/// A variable that is not set and has no default is an error naming it, so a config
/// never silently carries an empty password.
pub fn substitute_env(text: &str) -> Result<String> {
    substitute_with(text, |name| std::env::var(name).ok())
}

/// [`substitute_env`] with a custom lookup (for tests).
pub fn substitute_with(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| Error::Config(format!("unterminated `${{` in: {}", &rest[start..])))?;
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (expr, None),
        };
        match lookup(name).or(default.map(str::to_owned)) {
            Some(v) => out.push_str(&v),
            None => {
                return Err(Error::Config(format!(
                    "environment variable `{name}` is not set (used as `${{{expr}}}` in the config); set it or give a default with `${{{name}:-value}}`"
                )));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Read a config file (`.toml` or `.json`) into a JSON value, substituting `${ENV}`.
pub fn load_config_value(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path.display(), e))?;
    let text = substitute_env(&text)?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json {
        serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: invalid JSON: {e}", path.display())))
    } else {
        let v: toml::Value = toml::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: invalid TOML: {e}", path.display())))?;
        serde_json::to_value(v).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }
}

/// Read and deserialize a config file (`.toml` or `.json`) with `${ENV}` substitution.
pub fn load_config<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let v = load_config_value(path)?;
    serde_json::from_value(v).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

/// A secret string (a password, a URL with a password, an API key).
///
/// `Debug` and `Display` print a redacted form; [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wrap a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The real value; do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// The value with any password removed (for URLs) or fully masked.
    pub fn redacted(&self) -> String {
        if self.0.contains("://") {
            redact_url(&self.0)
        } else {
            "***".to_owned()
        }
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.redacted())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

/// `postgres://user:pw@host/db?password=x` -> `postgres://user:***@host/db?password=***`.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let auth_start = scheme_end + 3;
        let auth_end = out[auth_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| auth_start + i);
        if let Some(at) = out[auth_start..auth_end].rfind('@') {
            let at = auth_start + at;
            if let Some(colon) = out[auth_start..at].find(':') {
                out.replace_range(auth_start + colon + 1..at, "***");
            }
        }
    }
    // query-string secrets
    for key in ["password=", "sslpassword=", "token=", "api_key="] {
        let mut from = 0;
        while let Some(i) = out[from..].find(key) {
            let start = from + i + key.len();
            let end = out[start..].find('&').map_or(out.len(), |j| start + j);
            out.replace_range(start..end, "***");
            from = start + 3;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_and_names_missing_variables() {
        let look = |n: &str| (n == "DB_PASSWORD").then(|| "s3cret".to_owned());
        assert_eq!(
            substitute_with("pw = \"${DB_PASSWORD}\"", look).unwrap(),
            "pw = \"s3cret\""
        );
        assert_eq!(substitute_with("${NOPE:-x}", look).unwrap(), "x");
        let err = substitute_with("${NOPE}", look).unwrap_err().to_string();
        assert!(err.contains("`NOPE` is not set"), "{err}");
    }

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(
            redact_url("postgres://me:pa%40ss@db:5432/x?sslmode=require&password=p"),
            "postgres://me:***@db:5432/x?sslmode=require&password=***"
        );
        assert_eq!(redact_url("postgres://me@db/x"), "postgres://me@db/x");
        let s = Secret::new("postgres://u:hunter2@h/d");
        assert!(!format!("{s} {s:?}").contains("hunter2"));
    }
}
