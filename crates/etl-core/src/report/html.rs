//! `report.html`: the run report as one self-contained page for a person.
//!
//! Rendered from the same [`RunReport`] that becomes `report.json`, plus a few reject examples
//! read back from `rejects.csv` ([`reject_examples`]). Inline CSS and SVG only: no script, no
//! link, no image, no font, nothing fetched; a Content-Security-Policy of `default-src 'none'`
//! makes the browser refuse anything else, so the page opens the same offline, from a ticket
//! attachment or a CI artifact. Every string from the data is escaped. Tables are capped (the
//! slowest [`MAX_UNITS`] units, [`MAX_ROWS`] rows elsewhere) with a note of what was left out:
//! `report.json` keeps everything.
//!
//! Sections: status, totals and reconciliation, the steps as a timeline, throughput per unit,
//! rejects (by reason, filtered by reason, examples), gates and checks with their figures,
//! unmatched values (every `unmatched…` key of the report's figures and step details), other
//! figures, files.

use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{RunReport, RunStatus, UnitReport};
use crate::migration::{StepKind, StepReport};

/// Units shown in the throughput chart and the units table (the slowest first).
pub const MAX_UNITS: usize = 50;
/// Rows shown in the other tables (findings, figures, unmatched values, steps).
pub const MAX_ROWS: usize = 200;
/// Characters shown of a reject's raw record or reason, of a message, of a step's details.
const MAX_TEXT: usize = 300;

/// One rejected record shown as an example (a line of `rejects.csv`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectExample {
    /// Unit of the record.
    pub unit: String,
    /// Record number in the unit.
    pub record: String,
    /// Column at fault (empty: the whole record).
    pub column: String,
    /// Why it was rejected.
    pub reason: String,
    /// The raw record.
    pub raw: String,
}

/// Up to `per_column` examples for each column at fault (the record itself counting as one
/// "column"), at most `max` in all, from the first 100 000 records of `rejects.csv` at
/// `path` (`unit,record,column,reason,raw`). `rejects.csv` has no reject kind, so examples are
/// grouped by the column at fault; a missing file gives none.
///
/// # Errors
/// The file exists but cannot be read.
pub fn reject_examples(
    path: &Path,
    per_column: usize,
    max: usize,
) -> std::io::Result<Vec<RejectExample>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut reader = std::io::BufReader::new(file);
    let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
    let mut out = Vec::new();
    let mut fields = Vec::new();
    for n in 0..=100_000 {
        if out.len() >= max || !read_csv_record(&mut reader, &mut fields)? {
            break;
        }
        if n == 0 || fields.len() < 5 {
            continue; // the header, or a line this reader does not understand
        }
        let k = seen.entry(fields[2].clone()).or_default();
        if *k < per_column {
            *k += 1;
            let f = |i: usize| fields[i].clone();
            let (unit, record, column, reason) = (f(0), f(1), f(2), f(3));
            out.push(RejectExample {
                unit,
                record,
                column,
                reason,
                raw: fields[4..].join(","),
            });
        }
    }
    Ok(out)
}

/// One RFC 4180 record (quoted fields may hold commas, quotes and line breaks) into
/// `fields`; `false` at the end of the input.
fn read_csv_record(
    r: &mut impl std::io::BufRead,
    fields: &mut Vec<String>,
) -> std::io::Result<bool> {
    fields.clear();
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(false);
    }
    let (mut field, mut quoted, mut at_start) = (String::new(), false, true);
    loop {
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (false, '"') if at_start => (quoted, at_start) = (true, false),
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                (true, '"') => quoted = false,
                (false, ',') => {
                    fields.push(std::mem::take(&mut field));
                    at_start = true;
                }
                (false, '\n' | '\r') => {}
                (_, c) => {
                    field.push(c);
                    at_start = false;
                }
            }
        }
        if !quoted {
            break;
        }
        line.clear();
        if r.read_line(&mut line)? == 0 {
            break; // an unterminated quote at the end: keep what there is
        }
    }
    fields.push(field);
    Ok(true)
}

/// The page for `report`, with `examples` of rejected records (from [`reject_examples`]).
pub fn render_html(report: &RunReport, examples: &[RejectExample]) -> String {
    let mut h = String::with_capacity(32 * 1024);
    let title = format!("{} · run {}", report.migration, report.run_id);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style></head>\n<body>\n",
        esc(&title)
    );
    status(&mut h, report);
    totals(&mut h, report);
    timeline(&mut h, report);
    throughput(&mut h, report);
    rejects(&mut h, report, examples);
    gates(&mut h, report);
    unmatched(&mut h, report);
    figures(&mut h, report);
    if !report.files.is_empty() {
        h.push_str("<section id=\"files\"><h2>Files</h2><ul>");
        for f in &report.files {
            let _ = write!(h, "<li><code>{}</code></li>", esc(f));
        }
        h.push_str("</ul></section>\n");
    }
    let _ = write!(
        h,
        "<footer>ferry · written {} · everything, uncapped, is in <code>report.json</code></footer>\n</body></html>\n",
        esc(&report.finished_at.to_rfc3339())
    );
    h
}

const CSS: &str = "
:root{--ok:#1b7f3b;--fail:#b3261e;--warn:#a15c00;--muted:#667;--line:#dde;--bar:#3b6fb6}
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d1d24;max-width:1180px;margin:0 auto;padding:16px 20px 40px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}
h3{font-size:14px;margin:16px 0 6px}
.banner{border-radius:8px;padding:14px 18px;color:#fff;margin-bottom:12px}
.banner .state{font-size:26px;font-weight:700;letter-spacing:.02em}
.banner.succeeded{background:var(--ok)}.banner.failed{background:var(--fail)}
.banner.dry_run{background:#4a5a70}.banner.rolled_back{background:var(--warn)}
.banner .error{margin-top:6px;font-family:ui-monospace,monospace;white-space:pre-wrap;word-break:break-word}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:8px 0}
dl.meta dt{color:var(--muted)}dl.meta dd{margin:0;word-break:break-all}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0}
.card{border:1px solid var(--line);border-radius:8px;padding:8px 14px;min-width:120px}
.card .v{font-size:22px;font-weight:650;font-variant-numeric:tabular-nums}.card .k{color:var(--muted)}
.recon{font-size:15px;font-variant-numeric:tabular-nums;margin:6px 0}
.ok{color:var(--ok);font-weight:650}.fail{color:var(--fail);font-weight:650}.warn{color:var(--warn);font-weight:650}
.muted{color:var(--muted)}
table{border-collapse:collapse;width:100%;margin:4px 0 8px}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid var(--line);vertical-align:top}
table.kv{width:auto;min-width:50%}
th{background:#f3f4f8;font-weight:600}tr:nth-child(even) td{background:#fafafd}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td code,td.t{font-family:ui-monospace,monospace;font-size:12.5px;word-break:break-all;white-space:pre-wrap}
.note{color:var(--muted);font-style:italic;margin:2px 0 8px}
svg{display:block;max-width:100%;height:auto;font:12px system-ui,sans-serif}
details pre{background:#f6f6fa;padding:6px;overflow:auto;max-height:300px;font-size:12px;white-space:pre-wrap;word-break:break-all}
footer{margin-top:30px;color:var(--muted);font-size:12px}
";

/// `s` as HTML text or attribute value.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// `s` cut to `n` characters (with `…`), escaped.
fn esc_cut(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", esc(&s[..i])),
        None => esc(s),
    }
}

/// `1234567` as `1,234,567`.
fn num(n: u64) -> String {
    let s = n.to_string();
    let mut o = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            o.push(',');
        }
        o.push(c);
    }
    o
}

/// Seconds for a person: `0.08 s`, `12.3 s`, `4 m 05 s`, `1 h 02 m`.
fn secs(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "–".into();
    }
    let whole = s.round() as u64;
    match s {
        s if s < 10.0 => format!("{s:.2} s"),
        s if s < 120.0 => format!("{s:.1} s"),
        _ if whole < 7200 => format!("{} m {:02} s", whole / 60, whole % 60),
        _ => format!("{} h {:02} m", whole / 3600, whole % 3600 / 60),
    }
}

fn rate(r: f64) -> String {
    if r >= 100.0 {
        num(r.round() as u64)
    } else {
        format!("{r:.1}")
    }
}

/// The name serde gives a unit enum (`completed`, `error`).
fn serde_name(v: impl serde::Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Open an `<svg>` of `width` × `height` user units, scaled down to fit the page.
fn svg_open(h: &mut String, id: &str, width: f64, height: f64, label: &str) {
    let _ = write!(
        h,
        "<svg id=\"{id}\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" role=\"img\" aria-label=\"{}\">",
        esc(label)
    );
}

/// The note under a capped table: `n` more `what` in `report.json`.
fn more_note(h: &mut String, n: usize, what: &str) {
    if n > 0 {
        let _ = write!(
            h,
            "<p class=\"note\">{} more {what} in report.json.</p>",
            num(n as u64)
        );
    }
}

fn unit_rate(u: &UnitReport) -> f64 {
    if u.duration_s > 0.0 {
        u.read as f64 / u.duration_s
    } else {
        0.0
    }
}

fn status(h: &mut String, r: &RunReport) {
    let label = match r.status {
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "FAILED",
        RunStatus::DryRun => "dry run: nothing written",
        RunStatus::RolledBack => "rolled back",
    };
    let _ = write!(
        h,
        "<header><h1>{} <span class=\"muted\">run {}</span></h1>\n\
         <div class=\"banner {}\" id=\"status\"><div class=\"state\">{}</div>",
        esc(&r.migration),
        esc(&r.run_id),
        r.status.as_str(),
        esc(label)
    );
    if let Some(e) = &r.error {
        let _ = write!(h, "<div class=\"error\">{}</div>", esc_cut(e, 4 * MAX_TEXT));
    }
    h.push_str("</div>\n<dl class=\"meta\">");
    let mut row = |k: &str, v: &str| {
        let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    };
    if let Some(a) = &r.action {
        row("action", a);
    }
    if let Some(s) = &r.run_state {
        row("run state", s);
    }
    if let Some(t) = &r.target {
        row("target", t);
    }
    if let Some(j) = &r.journal {
        row("journal", j);
    }
    row("started", &r.started_at.to_rfc3339());
    row("finished", &r.finished_at.to_rfc3339());
    row(
        "duration",
        &format!("{} ({} rows/s)", secs(r.duration_s), rate(r.rows_per_s)),
    );
    h.push_str("</dl></header>\n");
}

fn totals(h: &mut String, r: &RunReport) {
    let t = &r.totals;
    h.push_str("<section id=\"totals\"><h2>Totals and reconciliation</h2><div class=\"cards\">");
    for (k, v) in [
        ("read", t.read),
        ("loaded", t.loaded),
        ("rejected", t.rejected),
        ("filtered", t.filtered),
    ] {
        let _ = write!(
            h,
            "<div class=\"card\"><div class=\"v\" id=\"total-{k}\">{}</div><div class=\"k\">{k}</div></div>",
            num(v)
        );
    }
    let _ = write!(
        h,
        "<div class=\"card\"><div class=\"v\">{}</div><div class=\"k\">units</div></div></div>",
        num(r.units.len() as u64)
    );
    let ok = t.reconciles();
    let _ = writeln!(
        h,
        "<p class=\"recon\" id=\"reconciliation\">read {} = loaded {} + rejected {} + filtered {} \
         <span class=\"{}\">{}</span></p></section>",
        t.read,
        t.loaded,
        t.rejected,
        t.filtered,
        if ok { "ok" } else { "fail" },
        if ok {
            "✓ reconciles"
        } else {
            "✗ does not reconcile"
        }
    );
}

fn outcome_color(s: &StepReport) -> &'static str {
    match s.outcome.as_str() {
        "ran" => "#1b7f3b",
        "failed" => "#b3261e",
        "rolled_back" => "#a15c00",
        "would_run" => "#4a5a70",
        _ => "#9aa3b5", // done in an earlier invocation (skipped now)
    }
}

fn timeline(h: &mut String, r: &RunReport) {
    if r.steps.is_empty() {
        return;
    }
    let steps = &r.steps[..r.steps.len().min(MAX_ROWS)];
    h.push_str("<section id=\"steps\"><h2>Steps</h2>\n");
    let timed: Vec<(&StepReport, DateTime<Utc>, f64)> = (steps.iter())
        .filter_map(|s| {
            let start = s.started_at?;
            let d = s.seconds.or_else(|| {
                s.finished_at
                    .map(|f| (f - start).num_milliseconds() as f64 / 1e3)
            })?;
            Some((s, start, d.max(0.0)))
        })
        .collect();
    if !timed.is_empty() {
        let t0 = timed.iter().map(|t| t.1).min().unwrap_or(r.started_at);
        let end = (timed.iter())
            .map(|(_, s, d)| (*s - t0).num_milliseconds() as f64 / 1e3 + d)
            .fold(0.0_f64, f64::max)
            .max(1e-3);
        let (label_w, bar_w, row_h) = (190.0, 760.0, 22.0);
        let height = 24.0 + row_h * steps.len() as f64;
        svg_open(
            h,
            "timeline",
            label_w + bar_w + 10.0,
            height,
            "steps on a time axis",
        );
        for i in 0..=4 {
            let x = label_w + bar_w * i as f64 / 4.0;
            let _ = write!(
                h,
                "<line x1=\"{x:.1}\" y1=\"14\" x2=\"{x:.1}\" y2=\"{height}\" stroke=\"#dde\"/>\
                 <text x=\"{x:.1}\" y=\"11\" text-anchor=\"{}\" fill=\"#667\">{}</text>",
                match i {
                    0 => "start",
                    4 => "end",
                    _ => "middle",
                },
                esc(&secs(end * i as f64 / 4.0))
            );
        }
        for (i, s) in steps.iter().enumerate() {
            let y = 20.0 + row_h * i as f64;
            let _ = write!(
                h,
                "<text x=\"0\" y=\"{:.1}\">{} {}</text>",
                y + 13.0,
                s.position,
                esc_cut(&s.name, 24)
            );
            match timed.iter().find(|t| std::ptr::eq(t.0, s)) {
                Some((_, start, d)) => {
                    let x = label_w + bar_w * ((*start - t0).num_milliseconds() as f64 / 1e3) / end;
                    let w = (bar_w * d / end).max(2.0);
                    let _ = write!(
                        h,
                        "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" rx=\"2\" fill=\"{}\">\
                         <title>{}: {} ({})</title></rect>",
                        y + 2.0,
                        row_h - 6.0,
                        outcome_color(s),
                        esc(&s.name),
                        esc(&s.outcome),
                        esc(&secs(*d))
                    );
                    let label = format!("{} · {}", secs(*d), s.outcome);
                    let (tx, anchor) = if x + w + 150.0 < label_w + bar_w {
                        (x + w + 4.0, "start")
                    } else {
                        (x - 4.0, "end")
                    };
                    let _ = write!(
                        h,
                        "<text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" fill=\"#445\">{}</text>",
                        y + 13.0,
                        esc(&label)
                    );
                }
                None => {
                    let _ = write!(
                        h,
                        "<text x=\"{label_w}\" y=\"{:.1}\" fill=\"#889\">{}</text>",
                        y + 13.0,
                        esc(&s.outcome)
                    );
                }
            }
        }
        h.push_str("</svg>\n<p class=\"note\">Bars: when each step last ran, on one axis from the first start; green ran now, grey done earlier, red failed, amber rolled back.</p>\n");
    }
    h.push_str(
        "<table><thead><tr><th class=\"n\">#</th><th>step</th><th>kind</th><th>outcome</th>\
         <th>state</th><th class=\"n\">attempts</th><th class=\"n\">time</th><th>message</th></tr></thead><tbody>",
    );
    for s in steps {
        let cls = match s.outcome.as_str() {
            "failed" => "fail",
            "rolled_back" => "warn",
            _ => "",
        };
        let _ = write!(
            h,
            "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td class=\"{cls}\">{}</td><td>{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td>",
            s.position,
            esc(&s.name),
            esc(s.kind.as_str()),
            esc(&s.outcome),
            s.state.as_str(),
            s.attempts,
            s.seconds.map(secs).unwrap_or_default(),
        );
        if let Some(e) = &s.error {
            let _ = write!(
                h,
                "<span class=\"fail\">{}</span>",
                esc_cut(e, 4 * MAX_TEXT)
            );
        } else {
            h.push_str(&esc_cut(&s.message, MAX_TEXT));
        }
        let empty = s.details.is_null() || s.details.as_object().is_some_and(|o| o.is_empty());
        if !empty {
            let text = serde_json::to_string_pretty(&s.details).unwrap_or_default();
            let _ = write!(
                h,
                "<details><summary>details</summary><pre>{}</pre></details>",
                esc_cut(&text, 10 * MAX_TEXT)
            );
        }
        h.push_str("</td></tr>");
    }
    h.push_str("</tbody></table>");
    more_note(h, r.steps.len() - steps.len(), "steps");
    h.push_str("</section>\n");
}

fn throughput(h: &mut String, r: &RunReport) {
    if r.units.is_empty() {
        return;
    }
    let mut units: Vec<&UnitReport> = r.units.iter().collect();
    units.sort_by(|a, b| b.duration_s.total_cmp(&a.duration_s));
    units.truncate(MAX_UNITS);
    h.push_str("<section id=\"units\"><h2>Throughput per unit</h2>\n");
    if r.units.len() > units.len() {
        let _ = write!(
            h,
            "<p class=\"note\">The {} slowest of {} units (by duration); all of them are in report.json.</p>",
            units.len(),
            num(r.units.len() as u64)
        );
    }
    let max = units.iter().map(|u| unit_rate(u)).fold(0.0_f64, f64::max);
    let (label_w, bar_w, row_h) = (230.0, 600.0, 20.0);
    let height = 6.0 + row_h * units.len() as f64;
    let width = label_w + bar_w + 130.0;
    svg_open(
        h,
        "throughput",
        width,
        height,
        "records read per second, per unit",
    );
    for (i, u) in units.iter().enumerate() {
        let y = 3.0 + row_h * i as f64;
        let v = unit_rate(u);
        let w = if max > 0.0 {
            (bar_w * v / max).max(1.0)
        } else {
            1.0
        };
        let fill = if u.error.is_some() {
            "#b3261e"
        } else {
            "#3b6fb6"
        };
        let _ = write!(
            h,
            "<text x=\"0\" y=\"{:.1}\">{}</text>\
             <rect x=\"{label_w}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" rx=\"2\" fill=\"{fill}\">\
             <title>{}: {} rows in {}</title></rect>\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#445\">{} rows/s</text>",
            y + 13.0,
            esc_cut(&u.name, 32),
            y + 2.0,
            row_h - 5.0,
            esc(&u.name),
            num(u.read),
            esc(&secs(u.duration_s)),
            label_w + w + 4.0,
            y + 13.0,
            rate(v)
        );
    }
    h.push_str("</svg>\n<table><thead><tr><th>unit</th><th>status</th><th class=\"n\">read</th>\
        <th class=\"n\">loaded</th><th class=\"n\">rejected</th><th class=\"n\">filtered</th>\
        <th class=\"n\">time</th><th class=\"n\">rows/s</th><th class=\"n\">retries</th><th>error</th></tr></thead><tbody>");
    for u in &units {
        let st = serde_name(u.status);
        let _ = write!(
            h,
            "<tr><td class=\"t\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"fail\">{}</td></tr>",
            esc(&u.name),
            esc(&st),
            num(u.read),
            num(u.loaded),
            num(u.rejected),
            num(u.filtered),
            secs(u.duration_s),
            rate(unit_rate(u)),
            u.retries,
            u.error
                .as_deref()
                .map(|e| esc_cut(e, MAX_TEXT))
                .unwrap_or_default()
        );
    }
    h.push_str("</tbody></table></section>\n");
}

fn counts_table(h: &mut String, title: &str, counts: &crate::batch::Counts, read: u64) {
    if counts.is_empty() {
        return;
    }
    let mut rows: Vec<(&String, &u64)> = counts.iter().collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let _ = write!(
        h,
        "<h3>{}</h3><table><thead><tr><th>reason</th><th class=\"n\">records</th>\
         <th class=\"n\">of read</th></tr></thead><tbody>",
        esc(title)
    );
    for (k, v) in rows.iter().take(MAX_ROWS) {
        let pct = if read > 0 {
            format!("{:.3}%", **v as f64 * 100.0 / read as f64)
        } else {
            String::new()
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{pct}</td></tr>",
            esc(k),
            num(**v)
        );
    }
    h.push_str("</tbody></table>");
    more_note(h, rows.len().saturating_sub(MAX_ROWS), "reasons");
}

fn rejects(h: &mut String, r: &RunReport, examples: &[RejectExample]) {
    let t = &r.totals;
    if t.rejected_by_reason.is_empty() && t.filtered_by_reason.is_empty() && examples.is_empty() {
        return;
    }
    h.push_str("<section id=\"rejects\"><h2>Rejects</h2>");
    counts_table(h, "Rejected by reason", &t.rejected_by_reason, t.read);
    counts_table(h, "Filtered by reason", &t.filtered_by_reason, t.read);
    if !examples.is_empty() {
        h.push_str(
            "<h3>Examples</h3><p class=\"note\">A few per column at fault, from rejects.csv \
             (which has every rejected record).</p><table><thead><tr><th>unit</th>\
             <th class=\"n\">record</th><th>column</th><th>reason</th><th>raw record</th></tr></thead><tbody>",
        );
        for e in examples {
            let _ = write!(
                h,
                "<tr><td class=\"t\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                esc(&e.unit),
                esc(&e.record),
                esc(&e.column),
                esc_cut(&e.reason, MAX_TEXT),
                esc_cut(&e.raw, MAX_TEXT)
            );
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("</section>\n");
}

fn gates(h: &mut String, r: &RunReport) {
    let gate_steps: Vec<&StepReport> = (r.steps.iter())
        .filter(|s| s.kind == StepKind::Gate)
        .collect();
    if r.validation.is_empty() && gate_steps.is_empty() {
        return;
    }
    h.push_str("<section id=\"gates\"><h2>Gates and checks</h2>");
    if !r.validation.is_empty() {
        let passed = r.validation.iter().filter(|f| f.passed).count();
        let _ = write!(
            h,
            "<p>{passed} of {} checks passed.</p><table><thead><tr><th>check</th><th>result</th>\
             <th>severity</th><th>figures</th></tr></thead><tbody>",
            r.validation.len()
        );
        for f in r.validation.iter().take(MAX_ROWS) {
            let (cls, mark) = match (f.passed, f.vetoes()) {
                (true, _) => ("ok", "✓ pass"),
                (false, true) => ("fail", "✗ FAIL"),
                (false, false) => ("warn", "! warn"),
            };
            let sev = serde_name(f.severity);
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"{cls}\">{mark}</td><td>{}</td><td>{}</td></tr>",
                esc(&f.check),
                esc(&sev),
                esc_cut(&f.message, 2 * MAX_TEXT)
            );
        }
        h.push_str("</tbody></table>");
        more_note(h, r.validation.len().saturating_sub(MAX_ROWS), "checks");
    }
    for s in gate_steps {
        let mut rows = Vec::new();
        flatten(&s.details, String::new(), &mut rows, &|_| true);
        let _ = write!(
            h,
            "<h3>Gate step <code>{}</code>: {}</h3>",
            esc(&s.name),
            esc_cut(s.error.as_deref().unwrap_or(&s.message), MAX_TEXT)
        );
        kv_table(h, &rows);
    }
    h.push_str("</section>\n");
}

/// `path.key`, or `key` at the top.
fn join_path(path: &str, key: &str) -> String {
    match path {
        "" => key.to_owned(),
        p => format!("{p}.{key}"),
    }
}

/// The scalars under `v` as `(path, value)`; arrays of scalars joined, other arrays as JSON
/// (counted when long); paths for which `keep` is false are left out.
fn flatten(v: &Value, path: String, out: &mut Vec<(String, String)>, keep: &dyn Fn(&str) -> bool) {
    if !keep(&path) {
        return;
    }
    match v {
        Value::Null => {}
        Value::Object(m) => {
            for (k, x) in m {
                let p = join_path(&path, k);
                flatten(x, p, out, keep);
            }
        }
        Value::Array(a) if a.is_empty() || a.iter().any(|x| x.is_object() || x.is_array()) => {
            let text = v.to_string();
            match text.chars().count() <= MAX_TEXT {
                true => out.push((path, text)),
                false => out.push((path, format!("[{} items]", a.len()))),
            }
        }
        Value::Array(a) => {
            let s: Vec<String> = a.iter().map(scalar).collect();
            out.push((path, s.join(", ")));
        }
        x => out.push((path, scalar(x))),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{}", (f * 1e6).round() / 1e6),
            _ => n.to_string(),
        },
        x => x.to_string(),
    }
}

fn kv_table(h: &mut String, rows: &[(String, String)]) {
    if rows.is_empty() {
        return;
    }
    h.push_str("<table class=\"kv\"><tbody>");
    for (k, v) in rows.iter().take(MAX_ROWS) {
        let _ = write!(
            h,
            "<tr><td class=\"t\">{}</td><td>{}</td></tr>",
            esc(k),
            esc_cut(v, MAX_TEXT)
        );
    }
    h.push_str("</tbody></table>");
    more_note(h, rows.len().saturating_sub(MAX_ROWS), "figures");
}

fn is_unmatched(key: &str) -> bool {
    key.to_ascii_lowercase().contains("unmatched")
}

/// Every `unmatched…` key under `v`: `(path, value)`.
fn find_unmatched<'a>(v: &'a Value, path: String, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = join_path(&path, k);
                if is_unmatched(k) {
                    out.push((p, x));
                } else {
                    find_unmatched(x, p, out);
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate().take(MAX_ROWS) {
                find_unmatched(x, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn unmatched(h: &mut String, r: &RunReport) {
    let extra = Value::Object(r.extra.clone());
    let mut found: Vec<(String, &Value)> = Vec::new();
    find_unmatched(&extra, String::new(), &mut found);
    for s in &r.steps {
        find_unmatched(&s.details, format!("step {}", s.name), &mut found);
    }
    let t = &r.totals;
    let counted: Vec<(String, String)> = (t.filtered_by_reason.iter())
        .map(|(k, v)| (format!("filtered: {k}"), num(*v)))
        .chain(
            t.counters
                .iter()
                .map(|(k, v)| (format!("counter: {k}"), num(*v))),
        )
        .filter(|(k, _)| is_unmatched(k))
        .collect();
    if found.is_empty() && counted.is_empty() {
        return;
    }
    h.push_str("<section id=\"unmatched\"><h2>Unmatched values</h2>");
    let mut figures = counted;
    let mut lists = Vec::new();
    for (path, v) in found {
        match v {
            Value::Array(a) if !a.is_empty() => lists.push((path, a)),
            Value::Object(_) => flatten(v, path, &mut figures, &|_| true),
            Value::Array(_) | Value::Null => figures.push((path, "none".into())),
            x => figures.push((path, scalar(x))),
        }
    }
    kv_table(h, &figures);
    for (path, a) in lists {
        let _ = write!(
            h,
            "<h3><code>{}</code> ({} listed)</h3>",
            esc(&path),
            num(a.len() as u64)
        );
        let mut cols: Vec<&String> = Vec::new();
        for x in a.iter().take(MAX_UNITS) {
            for k in x.as_object().into_iter().flat_map(|o| o.keys()) {
                if !cols.contains(&k) && cols.len() < 8 {
                    cols.push(k);
                }
            }
        }
        // The names (text) before the figures (numbers).
        let numeric = |c: &String| {
            a.iter()
                .find_map(|x| x.get(c.as_str()))
                .is_some_and(Value::is_number)
        };
        cols.sort_by_key(|c| numeric(c));
        h.push_str("<table>");
        if !cols.is_empty() {
            h.push_str("<thead><tr>");
            for c in &cols {
                let _ = write!(h, "<th>{}</th>", esc(c));
            }
            h.push_str("</tr></thead>");
        }
        h.push_str("<tbody>");
        for x in a.iter().take(MAX_UNITS) {
            h.push_str("<tr>");
            match x.as_object() {
                Some(o) if !cols.is_empty() => {
                    for c in &cols {
                        let v = o.get(*c).map(scalar).unwrap_or_default();
                        let _ = write!(h, "<td class=\"t\">{}</td>", esc_cut(&v, MAX_TEXT));
                    }
                }
                _ => {
                    let _ = write!(h, "<td class=\"t\">{}</td>", esc_cut(&scalar(x), MAX_TEXT));
                }
            }
            h.push_str("</tr>");
        }
        h.push_str("</tbody></table>");
        more_note(h, a.len().saturating_sub(MAX_UNITS), "values");
    }
    h.push_str("</section>\n");
}

fn figures(h: &mut String, r: &RunReport) {
    let mut rows = Vec::new();
    let extra = Value::Object(r.extra.clone());
    flatten(&extra, String::new(), &mut rows, &|p: &str| {
        !p.rsplit('.').next().is_some_and(is_unmatched)
    });
    if !r.totals.counters.is_empty() {
        for (k, v) in &r.totals.counters {
            if !is_unmatched(k) {
                rows.push((format!("counter: {k}"), num(*v)));
            }
        }
    }
    if rows.is_empty() {
        return;
    }
    h.push_str("<section id=\"figures\"><h2>Figures</h2>");
    kv_table(h, &rows);
    h.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::StepState;
    use crate::{Finding, UnitStatus};

    fn report() -> RunReport {
        let started = "2026-01-02T03:04:05Z".parse().unwrap();
        let mut r = RunReport::new("demo", "run-1", RunStatus::Failed, &[], started);
        let mut unit = UnitReport {
            name: "a.csv".into(),
            read: 1_234_567,
            loaded: 1_234_000,
            rejected: 500,
            filtered: 67,
            status: UnitStatus::Completed,
            duration_s: 2.5,
            rejected_by_reason: [("bad_integer".to_owned(), 500)].into_iter().collect(),
            filtered_by_reason: [("unmatched species".to_owned(), 67)].into_iter().collect(),
            counters: [("species_unmatched".to_owned(), 67)].into_iter().collect(),
            error: None,
            retries: 1,
        };
        let mut units = vec![unit.clone()];
        for i in 0..120 {
            unit.name = format!("part_{i:03}.csv");
            unit.duration_s = i as f64 / 10.0;
            units.push(unit.clone());
        }
        r.set_units(units);
        r.error = Some("gate <b>min_rows</b> failed".into());
        r.validation = vec![
            Finding::pass("counts_reconcile", "read = loaded + rejected + filtered"),
            Finding::fail("min_rows", "3 rows staged, minimum 10"),
        ];
        r.extra.insert(
            "species_mapping".into(),
            serde_json::json!({
                "match_rate": 0.98,
                "unmatched_taxa": 2,
                "unmatched_by_taxon": [{"taxon": "<script>alert(1)</script>", "rows": 60}, {"taxon": "Xus", "rows": 7}],
            }),
        );
        r.files = vec!["report.json".into(), "report.html".into()];
        let step = |position, name: &str, kind, outcome: &str, at: Option<f64>| StepReport {
            position,
            name: name.into(),
            kind,
            state: StepState::Done,
            outcome: outcome.into(),
            attempts: 1,
            started_at: at.map(|s| started + chrono::Duration::milliseconds((s * 1e3) as i64)),
            finished_at: None,
            seconds: at.map(|_| 1.5),
            message: format!("{name} ok"),
            error: None,
            details: serde_json::json!({"rows": 3, "minimum": 10}),
            peak_rss_mib: None,
        };
        r.steps = vec![
            step(1, "load", StepKind::Load, "ran", Some(0.0)),
            step(2, "gate <i>", StepKind::Gate, "failed", Some(2.0)),
            step(3, "cleanup", StepKind::Cleanup, "skipped", None),
        ];
        r.steps[1].error = Some("3 rows staged, minimum 10".into());
        r
    }

    fn example(raw: &str) -> RejectExample {
        RejectExample {
            unit: "a.csv".into(),
            record: "7".into(),
            column: "population".into(),
            reason: "not an integer".into(),
            raw: raw.into(),
        }
    }

    #[test]
    fn the_page_is_self_contained_and_shows_the_totals_and_sections() {
        let r = report();
        let html = render_html(&r, &[example("1,x,<script>alert('x')</script>")]);
        for bad in [
            "http://", "https://", "<link", "<script", "src=", "<img", "@import", "url(",
        ] {
            assert!(!html.contains(bad), "{bad} in the page");
        }
        assert!(html.contains("default-src 'none'"));
        let read = r.totals.read;
        assert_eq!(read, 121 * 1_234_567);
        assert!(html.contains(&format!(
            "<div class=\"v\" id=\"total-read\">{}</div>",
            num(read)
        )));
        assert!(html.contains(&format!(
            "read {read} = loaded {} + rejected {} + filtered {} <span class=\"ok\">✓ reconciles</span>",
            r.totals.loaded, r.totals.rejected, r.totals.filtered
        )));
        for id in [
            "status",
            "totals",
            "steps",
            "timeline",
            "units",
            "throughput",
            "rejects",
        ] {
            assert!(html.contains(&format!("id=\"{id}\"")), "section {id}");
        }
        for id in ["gates", "unmatched", "figures", "files"] {
            assert!(html.contains(&format!("id=\"{id}\"")), "section {id}");
        }
        // Two timed steps are bars; the gate's figures are shown.
        assert_eq!(html.matches("<rect").count(), 2 + MAX_UNITS);
        assert!(html.contains("Gate step <code>gate &lt;i&gt;</code>: 3 rows staged, minimum 10"));
        assert!(html.contains("<td class=\"t\">minimum</td><td>10</td>"));
        assert!(html.contains("✗ FAIL") && html.contains("✓ pass"));
        assert!(html.contains("bad_integer") && html.contains("unmatched species"));
        assert!(html.contains("species_mapping.unmatched_by_taxon"));
        assert!(html.contains("<td class=\"t\">Xus</td>"));
        assert!(
            html.contains("<th>taxon</th><th>rows</th>"),
            "names before figures"
        );
        // Capped: the 50 slowest units and a note.
        assert_eq!(html.matches("<tr><td class=\"t\">part_").count(), MAX_UNITS);
        assert!(html.contains("part_119.csv") && !html.contains(">part_000.csv<"));
        assert!(html.contains("The 50 slowest of 121 units"));
    }

    #[test]
    fn data_is_escaped_everywhere() {
        let mut r = report();
        r.migration = "m<script>x</script>".into();
        r.units[0].name = "<svg onload=alert(1)>".into();
        let html = render_html(&r, &[example("<script>alert('x')</script>\"'&")]);
        assert!(!html.contains("<script"));
        assert!(!html.contains("<svg onload"));
        assert!(!html.contains("<b>min_rows"));
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&#39;&amp;"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("gate &lt;b&gt;min_rows&lt;/b&gt; failed"));
    }

    #[test]
    fn a_run_that_does_not_reconcile_says_so() {
        let mut r = report();
        r.totals.loaded -= 1;
        let html = render_html(&r, &[]);
        assert!(html.contains("<span class=\"fail\">✗ does not reconcile</span>"));
        let empty = RunReport::new("e", "r", RunStatus::DryRun, &[], Utc::now());
        let html = render_html(&empty, &[]);
        assert!(html.contains("read 0 = loaded 0 + rejected 0 + filtered 0"));
        assert!(html.contains("dry run: nothing written"));
    }

    #[test]
    fn examples_come_from_rejects_csv_a_few_per_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rejects.csv");
        let mut text = String::from(crate::reject::REJECTS_CSV_HEADER);
        for i in 0..10 {
            text.push_str(&format!(
                "u.csv,{i},pop,\"bad \"\"{i}\"\"\",\"{i},x,\n2nd line\"\n"
            ));
        }
        text.push_str("u.csv,99,,field count,\"a,b\"\n");
        std::fs::write(&path, text).unwrap();
        let ex = reject_examples(&path, 3, 50).unwrap();
        assert_eq!(ex.len(), 4);
        assert_eq!(ex[0].reason, "bad \"0\"");
        assert_eq!(ex[0].raw, "0,x,\n2nd line");
        assert_eq!(ex[3].record, "99");
        assert_eq!(ex[3].column, "");
        assert_eq!(ex[3].raw, "a,b");
        assert!(
            reject_examples(&dir.path().join("none.csv"), 3, 50)
                .unwrap()
                .is_empty()
        );
        assert_eq!(reject_examples(&path, 5, 2).unwrap().len(), 2);
    }

    #[test]
    fn a_large_run_stays_a_small_page() {
        let mut r = report();
        let mut units = r.units.clone();
        for i in 0..20_000 {
            let mut u = units[0].clone();
            u.name = format!("many_{i}.csv");
            u.rejected_by_reason.insert(format!("reason_{i}"), 1);
            units.push(u);
        }
        r.set_units(units);
        let taxa: Vec<Value> = (0..5_000)
            .map(|i| serde_json::json!({"taxon": format!("t{i}"), "rows": 1}))
            .collect();
        r.extra.insert("unmatched_all".into(), Value::Array(taxa));
        let html = render_html(&r, &[]);
        assert!(html.len() < 400_000, "{} bytes", html.len());
        assert!(html.contains("The 50 slowest of 20,121 units"));
        assert!(html.contains("19,801 more reasons in report.json"));
        assert!(html.contains("4,950 more values in report.json"));
    }

    #[test]
    fn numbers_and_durations_read_well() {
        assert_eq!(num(0), "0");
        assert_eq!(num(999), "999");
        assert_eq!(num(1000), "1,000");
        assert_eq!(num(1_234_567), "1,234,567");
        assert_eq!(secs(0.084), "0.08 s");
        assert_eq!(secs(12.34), "12.3 s");
        assert_eq!(secs(245.0), "4 m 05 s");
        assert_eq!(secs(3725.0), "62 m 05 s");
        assert_eq!(secs(7325.0), "2 h 02 m");
    }
}
