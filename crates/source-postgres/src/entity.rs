//! What to extract: [`Entity`] (a table or a query, its key, filters), [`Filter`] and [`Key`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{PgSourceError, Result};

/// Where an entity's rows come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relation {
    /// A table (or view), optionally schema-qualified.
    Table {
        /// Schema, `None` for the search_path.
        schema: Option<String>,
        /// Table name.
        table: String,
    },
    /// A `SELECT` whose rows are read as `SELECT * FROM (query) AS r`.
    Query(String),
}

/// One thing to extract: a table or a query, keyset-paged by a unique, non-null key column.
///
/// # Examples
/// ```
/// use etl_source_postgres::{Entity, Filter};
/// let sales = Entity::table("sales", "vendas", "id_venda")
///     .schema("public")
///     .filter("data_venda >= '2024-01-01'".parse::<Filter>().unwrap())
///     .since("data_atualizacao", "2026-01-01 00:00:00")
///     .split_every(50_000);
/// assert_eq!(sales.name, "sales");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    /// Stable name: the unit name (or its prefix when split into key ranges).
    pub name: String,
    /// The table or query.
    pub relation: Relation,
    /// The key column: unique and not null; pages are ordered by it.
    pub key: String,
    /// Columns to read, in order; `None` for all.
    pub columns: Option<Vec<String>>,
    /// Conditions every row must meet (bound as parameters).
    pub filters: Vec<Filter>,
    /// Incremental extraction: only rows whose `column > value`.
    pub since: Option<(String, String)>,
    /// Split an integer key into units of this many key values (resumable per unit).
    pub split_every: Option<u64>,
}

impl Entity {
    /// A table entity.
    pub fn table(
        name: impl Into<String>,
        table: impl Into<String>,
        key: impl Into<String>,
    ) -> Self {
        Entity {
            name: name.into(),
            relation: Relation::Table {
                schema: None,
                table: table.into(),
            },
            key: key.into(),
            columns: None,
            filters: Vec::new(),
            since: None,
            split_every: None,
        }
    }

    /// A query entity; `key` must be a column of its output.
    pub fn query(name: impl Into<String>, sql: impl Into<String>, key: impl Into<String>) -> Self {
        Entity {
            name: name.into(),
            relation: Relation::Query(sql.into()),
            key: key.into(),
            columns: None,
            filters: Vec::new(),
            since: None,
            split_every: None,
        }
    }

    /// Set the schema of a table entity (no effect on a query entity).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        if let Relation::Table { schema: s, .. } = &mut self.relation {
            *s = Some(schema.into());
        }
        self
    }

    /// Read only these columns, in this order.
    pub fn columns<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.columns = Some(columns.into_iter().map(Into::into).collect());
        self
    }

    /// Add a filter.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filters.push(filter);
        self
    }

    /// Only rows with `column > value` (incremental extraction from a checkpoint).
    pub fn since(mut self, column: impl Into<String>, value: impl Into<String>) -> Self {
        self.since = Some((column.into(), value.into()));
        self
    }

    /// Split an integer key into units of `n` key values.
    pub fn split_every(mut self, n: u64) -> Self {
        self.split_every = Some(n.max(1));
        self
    }

    /// Only the rows whose key is `> after` (when given) and `<= upto` (when given): a
    /// window of rows in key order as [`PgSource::key_window`](crate::PgSource::key_window)
    /// resolves it. The bounds are filters on the key, so [`Entity::following`] carries
    /// them to child rows.
    ///
    /// ```
    /// use etl_source_postgres::{Entity, Key};
    /// let w = Entity::table("buyers", "compradores", "id_comprador")
    ///     .key_range(Some(Key::Int(100)), Some(Key::Int(250)));
    /// assert_eq!(w.filters.len(), 2);
    /// ```
    pub fn key_range(mut self, after: Option<Key>, upto: Option<Key>) -> Self {
        for (op, k) in [(Op::Gt, after), (Op::Le, upto)] {
            if let Some(k) = k {
                self.filters
                    .push(Filter::new(self.key.clone(), op, k.to_string()));
            }
        }
        self
    }

    /// Child rows follow their parent: this table entity keeps only the rows whose parent
    /// row (`parent`'s table, joined on `fk` = `parent`'s key) meets `parent`'s filters and
    /// `since` (sale lines of the sales extracted). The parent's columns those name are
    /// read as `parent_<column>` next to the child's; without filters or `since` on the
    /// parent, or when either is not a table, the entity is unchanged.
    ///
    /// ```
    /// use etl_source_postgres::{Entity, Filter};
    /// let sales = Entity::table("sales", "vendas", "id_venda")
    ///     .filter("data_venda >= '2025-01-01'".parse::<Filter>().unwrap());
    /// let lines = Entity::table("lines", "linhas_venda", "id_linha").following(&sales, "id_venda");
    /// assert_eq!(lines.filters[0].column, "parent_data_venda");
    /// ```
    pub fn following(self, parent: &Entity, fk: &str) -> Self {
        let (
            Relation::Table {
                schema: cs,
                table: ct,
            },
            Relation::Table {
                schema: ps,
                table: pt,
            },
        ) = (&self.relation, &parent.relation)
        else {
            return self;
        };
        let mut columns: Vec<&str> = parent.filters.iter().map(|f| f.column.as_str()).collect();
        columns.extend(parent.since.as_ref().map(|s| s.0.as_str()));
        columns.sort_unstable();
        columns.dedup();
        if columns.is_empty() {
            return self;
        }
        let q = crate::types::quote_ident;
        let name = |schema: &Option<String>, t: &str| match schema {
            Some(s) => format!("{}.{}", q(s), q(t)),
            None => q(t),
        };
        let extra: Vec<String> = (columns.iter())
            .map(|c| format!("p.{} AS {}", q(c), q(&format!("parent_{c}"))))
            .collect();
        let sql = format!(
            "SELECT c.*, {} FROM {} c JOIN {} p ON p.{} = c.{}",
            extra.join(", "),
            name(cs, ct),
            name(ps, pt),
            q(&parent.key),
            q(fk)
        );
        let mut e = Entity::query(self.name, sql, self.key);
        (e.columns, e.split_every) = (self.columns, self.split_every);
        e.filters = self.filters;
        for f in &parent.filters {
            let column = format!("parent_{}", f.column);
            e.filters.push(Filter::new(column, f.op, f.value.clone()));
        }
        e.since = (parent.since.as_ref()).map(|(c, v)| (format!("parent_{c}"), v.clone()));
        e
    }
}

/// A comparison operator of a [`Filter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Op {
    /// The SQL operator.
    pub fn sql(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "<>",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// `column OP value`: the value is bound as a text parameter and cast server-side to the
/// column's type, so it is never pasted into SQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// Column name.
    pub column: String,
    /// Operator.
    pub op: Op,
    /// The value, as PostgreSQL would read it from text (`2024-01-01`, `42`, `CONFIRMADO`).
    pub value: String,
}

impl Filter {
    /// A filter.
    pub fn new(column: impl Into<String>, op: Op, value: impl Into<String>) -> Self {
        Filter {
            column: column.into(),
            op,
            value: value.into(),
        }
    }
}

impl FromStr for Filter {
    type Err = PgSourceError;

    /// Parse `column OP value`, the value optionally in single quotes (`''` for a quote).
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| PgSourceError::Filter {
            filter: s.to_owned(),
            reason: reason.to_owned(),
        };
        let t = s.trim();
        let end = t
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .ok_or_else(|| bad("no operator"))?;
        let column = &t[..end];
        if column.is_empty() {
            return Err(bad("no column name"));
        }
        let rest = t[end..].trim_start();
        let (op, rest) = [
            ("<>", Op::Ne),
            ("!=", Op::Ne),
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("=", Op::Eq),
            ("<", Op::Lt),
            (">", Op::Gt),
        ]
        .iter()
        .find_map(|(p, op)| rest.strip_prefix(p).map(|r| (*op, r)))
        .ok_or_else(|| bad("no operator after the column name"))?;
        let rest = rest.trim();
        let value = if let Some(inner) = rest.strip_prefix('\'') {
            let inner = inner
                .strip_suffix('\'')
                .ok_or_else(|| bad("unterminated quote"))?;
            if inner.replace("''", "").contains('\'') {
                return Err(bad("a quote inside the value must be doubled"));
            }
            inner.replace("''", "'")
        } else {
            if rest.is_empty() || rest.contains(char::is_whitespace) {
                return Err(bad("the value must be one word or quoted"));
            }
            rest.to_owned()
        };
        Ok(Filter {
            column: column.to_owned(),
            op,
            value,
        })
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} '{}'",
            self.column,
            self.op.sql(),
            self.value.replace('\'', "''")
        )
    }
}

/// A key value: where a keyset page starts, and where an interrupted extract resumes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Key {
    /// An integer key.
    Int(i64),
    /// Any other key, as text.
    Text(String),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Int(v) => write!(f, "{v}"),
            Key::Text(v) => f.write_str(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_never_keep_sql() {
        let f: Filter = "created_date >= '2024-01-01'".parse().unwrap();
        assert_eq!(f, Filter::new("created_date", Op::Ge, "2024-01-01"));
        let f: Filter = "status<>CANCELADO".parse().unwrap();
        assert_eq!(f, Filter::new("status", Op::Ne, "CANCELADO"));
        let f: Filter = "nome = 'O''Brien'".parse().unwrap();
        assert_eq!(f.value, "O'Brien");
        assert!("x = 1 or 1=1".parse::<Filter>().is_err());
        assert!("x = '1' or '1'='1'".parse::<Filter>().is_err());
        assert!("x; drop table y".parse::<Filter>().is_err());
    }
}
