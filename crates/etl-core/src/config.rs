//! Configuration files (TOML or JSON) with `${ENV_VAR}` substitution, and secrets that
//! never reach logs or reports.

use std::fmt;
use std::path::Path;

use crate::{Error, Result};

/// Replace `${NAME}` (and `${NAME:-default}`) in TOML text with environment variables.
///
/// Values are written so that they cannot change the file's structure (see
/// [`substitute_with`]).
///
/// # Errors
/// A variable that is not set and has no default is an error naming it, so a config
/// never silently carries an empty password.
pub fn substitute_env(text: &str) -> Result<String> {
    substitute_with(text, |name| std::env::var(name).ok())
}

/// [`substitute_env`] with a custom lookup (for tests).
///
/// Where a `${…}` stands decides how its value is written:
/// * inside a basic string `"…"` or `"""…"""`: escaped as TOML (`"` → `\"`, `\` → `\\`,
///   control characters as `\uXXXX`), so a password with quotes, backslashes or line
///   breaks reads back exactly;
/// * inside a literal string (`'…'` or three quotes, which have no escapes): as is, and a
///   value that would end the string (a `'`, a line break in `'…'`, a control character)
///   is an error naming the variable;
/// * outside strings: as is when the value is a plain token (`5432`, `true`, `1.5`,
///   `2024-01-01`), otherwise as a quoted, escaped string;
/// * in a comment: not substituted.
///
/// # Errors
/// An unset variable without default, an unterminated `${` (the error gives its line,
/// not the text after it), a value that cannot go in a literal string. No error message
/// holds a substituted value.
pub fn substitute_with(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String> {
    Ok(substitute_in(text, Format::Toml, &lookup)?.text)
}

/// The syntax a config file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Toml,
    Json,
}

/// Where a `${…}` stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Bare,
    Comment,
    /// `"…"` (TOML and JSON) or `"""…"""`.
    Basic {
        multi: bool,
    },
    /// `'…'` or `'''…'''` (TOML).
    Literal {
        multi: bool,
    },
}

/// Substituted text and the values put in (to keep them out of error messages).
struct Substituted {
    text: String,
    values: Vec<String>,
}

/// Append `v` to `out` as the inside of a TOML basic / JSON string.
fn push_escaped(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
}

/// A value that can stand outside quotes as itself (a number, a boolean, a date).
fn is_plain_token(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-' | b'_' | b':'))
}

fn substitute_in(
    text: &str,
    format: Format,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Substituted> {
    let mut out = String::with_capacity(text.len());
    let mut values = Vec::new();
    let mut place = Place::Bare;
    let mut line = 1usize;
    let mut i = 0;
    let toml = format == Format::Toml;
    while i < text.len() {
        let rest = &text[i..];
        // `${…}`, anywhere but in a comment.
        if rest.starts_with("${") && place != Place::Comment {
            let Some(end) = rest[2..].find('}') else {
                return Err(Error::Config(format!(
                    "line {line}: `${{` without a closing `}}`"
                )));
            };
            let expr = &rest[2..2 + end];
            if expr.contains('\n') {
                return Err(Error::Config(format!(
                    "line {line}: `${{` without a closing `}}` on the same line"
                )));
            }
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            let Some(v) = lookup(name).or(default.map(str::to_owned)) else {
                return Err(Error::Config(format!(
                    "environment variable `{name}` is not set (used on line {line} of the config); set it or give a default with `${{{name}:-value}}`"
                )));
            };
            match place {
                Place::Basic { .. } => push_escaped(&mut out, &v),
                Place::Literal { multi } => {
                    let bad = v.contains(if multi { "'''" } else { "'" })
                        || v.chars()
                            .any(|c| c.is_control() && c != '\t' && !(multi && c == '\n'));
                    if bad {
                        return Err(Error::Config(format!(
                            "line {line}: the value of `{name}` cannot go in a literal string ('…'): it holds a quote, a line break or a control character; write \"${{{name}}}\" (a basic string) instead"
                        )));
                    }
                    out.push_str(&v);
                }
                Place::Bare | Place::Comment => {
                    if is_plain_token(&v) {
                        out.push_str(&v);
                    } else {
                        out.push('"');
                        push_escaped(&mut out, &v);
                        out.push('"');
                    }
                }
            }
            if !v.is_empty() {
                values.push(v);
            }
            i += 2 + end + 1;
            continue;
        }
        let c = rest.chars().next().expect("not at the end");
        let mut step = c.len_utf8();
        place = match place {
            Place::Bare => match c {
                '#' if toml => Place::Comment,
                '"' if toml && rest.starts_with("\"\"\"") => {
                    step = 3;
                    Place::Basic { multi: true }
                }
                '"' => Place::Basic { multi: false },
                '\'' if toml && rest.starts_with("'''") => {
                    step = 3;
                    Place::Literal { multi: true }
                }
                '\'' if toml => Place::Literal { multi: false },
                _ => Place::Bare,
            },
            Place::Comment if c == '\n' => Place::Bare,
            Place::Comment => Place::Comment,
            Place::Basic { multi } => match c {
                '\\' => {
                    // An escape: the next character is part of it.
                    step += rest[1..].chars().next().map_or(0, char::len_utf8);
                    place
                }
                '"' if !multi => Place::Bare,
                '"' if rest.starts_with("\"\"\"") => {
                    step = 3;
                    Place::Bare
                }
                '\n' if !multi => Place::Bare,
                _ => place,
            },
            Place::Literal { multi } => match c {
                '\'' if !multi => Place::Bare,
                '\'' if rest.starts_with("'''") => {
                    step = 3;
                    Place::Bare
                }
                '\n' if !multi => Place::Bare,
                _ => place,
            },
        };
        line += rest[..step].matches('\n').count();
        out.push_str(&rest[..step]);
        i += step;
    }
    Ok(Substituted { text: out, values })
}

/// `message` with every substituted value (of 4 characters or more) masked.
fn redact_values(message: &str, values: &[String]) -> String {
    let mut m = message.to_owned();
    let mut values: Vec<&String> = values.iter().filter(|v| v.chars().count() >= 4).collect();
    // Longest first, so a value containing another is masked whole.
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for v in values {
        m = m.replace(v.as_str(), "***");
    }
    m
}

/// `message` with the contents of every `"…"` masked (serde quotes the values it
/// refuses: `invalid type: string "hunter2", expected u16`).
fn mask_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' if inside => {
                out.push_str("***\"");
                inside = false;
            }
            '"' => {
                out.push('"');
                inside = true;
            }
            // An escaped character inside quotes (`\"`, `\\`) is part of the value.
            '\\' if inside => {
                chars.next();
            }
            c if !inside => out.push(c),
            _ => {}
        }
    }
    if inside {
        out.push_str("***");
    }
    out
}

/// The key on `line` (1-based) of `text`, if that line is `key = …`.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let (key, _) = l.split_once('=')?;
    let key = key.trim();
    (!key.is_empty() && key.len() <= 100 && !key.contains(['"', '\'', '#', '{', '$']))
        .then(|| key.to_owned())
}

/// Read a config file (`.toml` or `.json`), substitute `${VAR}` from `lookup`, parse it;
/// the values substituted come back too.
fn load_config_text(
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(serde_json::Value, Vec<String>)> {
    let raw = std::fs::read_to_string(path).map_err(|e| Error::io(path.display(), e))?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let format = if is_json { Format::Json } else { Format::Toml };
    let sub = substitute_in(&raw, format, lookup)
        .map_err(|e| Error::Config(format!("{}: {}", path.display(), config_message(e))))?;
    let located = |line: usize, what: &str, message: &str| {
        let key = key_on_line(&raw, line).map_or(String::new(), |k| format!(" (key `{k}`)"));
        Error::Config(redact_values(
            &format!(
                "{}: invalid {what} on line {line}{key}: {message}",
                path.display()
            ),
            &sub.values,
        ))
    };
    let value = if is_json {
        // serde_json's messages give a line and column, never the text.
        serde_json::from_str(&sub.text).map_err(|e| {
            let message = e.to_string();
            let message = message.split(" at line ").next().unwrap_or_default();
            located(e.line(), "JSON", message)
        })?
    } else {
        // toml's `Display` quotes the offending line: only its message and line are kept.
        let v: toml::Value = toml::from_str(&sub.text).map_err(|e| {
            let line = e.span().map_or(0, |s| {
                sub.text[..s.start.min(sub.text.len())]
                    .matches('\n')
                    .count()
                    + 1
            });
            located(line, "TOML", e.message().trim())
        })?;
        serde_json::to_value(v).map_err(|e| {
            Error::Config(format!(
                "{}: {}",
                path.display(),
                mask_quoted(&e.to_string())
            ))
        })?
    };
    Ok((value, sub.values))
}

/// The text of a config error (without the `configuration error:` prefix).
fn config_message(e: Error) -> String {
    match e {
        Error::Config(m) => m,
        other => other.to_string(),
    }
}

/// Read a config file (`.toml` or `.json`) into a JSON value, substituting `${ENV}` (as
/// [`substitute_with`] describes; in JSON only inside strings and as bare tokens).
///
/// # Errors
/// The file cannot be read; a substitution fails; the file does not parse (the error
/// gives the line and its key, never the line's text or a substituted value).
pub fn load_config_value(path: &Path) -> Result<serde_json::Value> {
    Ok(load_config_text(path, &env_var)?.0)
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Read and deserialize a config file (`.toml` or `.json`) with `${ENV}` substitution.
///
/// # Errors
/// As [`load_config_value`]; a value of the wrong type (the error names the field and
/// shows no value).
pub fn load_config<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    load_config_with(path, &env_var)
}

/// [`load_config`] with the variables looked up in `lookup`.
fn load_config_with<T: serde::de::DeserializeOwned>(
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<T> {
    let (v, values) = load_config_text(path, lookup)?;
    serde_json::from_value(v).map_err(|e| {
        Error::Config(redact_values(
            &format!("{}: {}", path.display(), mask_quoted(&e.to_string())),
            &values,
        ))
    })
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

    const NASTY: &str = "p\"w\\d\nx'y\t\u{7f}}{$";

    fn nasty(n: &str) -> Option<String> {
        match n {
            "PW" => Some(NASTY.to_owned()),
            "PORT" => Some("5432".to_owned()),
            "WORDS" => Some("two words".to_owned()),
            _ => None,
        }
    }

    fn toml_of(text: &str) -> toml::Table {
        toml::from_str(&substitute_in(text, Format::Toml, &nasty).unwrap().text).unwrap()
    }

    #[test]
    fn values_with_quotes_backslashes_and_line_breaks_read_back_exactly() {
        let t = toml_of("a = \"${PW}\"\nb = \"\"\"x${PW}\"\"\"\nc = \"\\\"${PW}\"\n");
        assert_eq!(t["a"].as_str(), Some(NASTY));
        assert_eq!(t["b"].as_str(), Some(format!("x{NASTY}").as_str()));
        assert_eq!(t["c"].as_str(), Some(format!("\"{NASTY}").as_str()));
        // Outside strings: a plain token as itself, anything else as a string.
        let t = toml_of("port = ${PORT}\nw = ${WORDS}\npw = ${PW}\n");
        assert_eq!(t["port"].as_integer(), Some(5432));
        assert_eq!(t["w"].as_str(), Some("two words"));
        assert_eq!(t["pw"].as_str(), Some(NASTY));
        // JSON.
        let sub = substitute_in(
            "{\"pw\": \"${PW}\", \"port\": ${PORT}, \"h\": \"#${PORT}\"}",
            Format::Json,
            &nasty,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&sub.text).unwrap();
        assert_eq!(v["pw"].as_str(), Some(NASTY));
        assert_eq!(v["port"].as_i64(), Some(5432));
        assert_eq!(v["h"].as_str(), Some("#5432"));
        // A literal string takes a value that fits; comments are left alone.
        let t = toml_of("a = '${PORT}' # ${UNSET}\nb = '''\n${WORDS}'''\n");
        assert_eq!(t["a"].as_str(), Some("5432"));
        assert_eq!(t["b"].as_str(), Some("two words"));
    }

    #[test]
    fn substitution_errors_name_the_variable_and_line_never_the_value_or_the_rest() {
        let err = |text: &str| {
            substitute_in(text, Format::Toml, &nasty)
                .err()
                .unwrap()
                .to_string()
        };
        let e = err("a = 1\nb = '${PW}'\n");
        assert!(
            e.contains("line 2: the value of `PW` cannot go in a literal string"),
            "{e}"
        );
        assert!(!e.contains("w\\d"), "{e}");
        let e = err("a = \"${PW}\"\nb = \"${HOST\npassword = \"hunter2\"\n");
        assert!(e.contains("line 2: `${` without a closing `}`"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = err("a = \"${HOST\nb = \"hunter2}\"\n");
        assert!(
            e.ends_with("line 1: `${` without a closing `}` on the same line"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
        let e = err("\n\nx = \"${NOPE}\"\n");
        assert!(e.contains("`NOPE` is not set (used on line 3"), "{e}");
    }

    #[test]
    fn parse_and_type_errors_show_no_secret_and_no_file_text() {
        let dir = tempfile::tempdir().unwrap();
        let look = |n: &str| (n == "FERRY_CFG_TEST_PW").then(|| "hunter2-\"\\-secret".to_owned());
        let value = |p: &Path| load_config_text(p, &look).map(|(v, _)| v);
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        // A syntax error on the line after the password; a comment holds text too.
        let p = write(
            "a.toml",
            "password = \"${FERRY_CFG_TEST_PW}\"\nport = = 5 # comment-text\n",
        );
        let e = value(&p).unwrap_err().to_string();
        assert!(e.contains("invalid TOML on line 2 (key `port`)"), "{e}");
        assert!(!e.contains("hunter2") && !e.contains("comment-text"), "{e}");
        // The password where a number belongs: a type error, the value masked.
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Cfg {
            port: u16,
        }
        let p = write("b.toml", "port = \"${FERRY_CFG_TEST_PW}\"\n");
        let e = load_config_with::<Cfg>(&p, &look).unwrap_err().to_string();
        assert!(
            e.ends_with("b.toml: invalid type: string \"***\", expected u16"),
            "{e}"
        );
        // Bare, the password becomes a string; a JSON syntax error gives the line.
        let p = write("c.json", "{\"port\": ${FERRY_CFG_TEST_PW},\n \"x\": }\n");
        let e = value(&p).unwrap_err().to_string();
        assert!(e.contains("invalid JSON on line 2"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let p = write("d.toml", "password = \"${FERRY_CFG_TEST_PW}\"\n");
        let v = value(&p).unwrap();
        assert_eq!(v["password"], "hunter2-\"\\-secret");
        assert_eq!(
            mask_quoted("invalid type: string \"x\", expected u16"),
            "invalid type: string \"***\", expected u16"
        );
        assert_eq!(mask_quoted(r#"a "p\"w\\" b "c"#), r#"a "***" b "***"#);
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
