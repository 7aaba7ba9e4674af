//! Small reference lists (species and their synonyms, code tables, `value,id` pairs for a
//! lookup) read whole with this crate's decoder.

use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_schema::{DataType, Field, Schema};

use crate::{CsvError, CsvOptions, Decoder, Header, Result};

/// The first two columns of the CSV file `path` (a header, then one record per line;
/// quoting, `\r\n` and a byte order mark as [`Decoder`] reads them; blank lines and lines
/// starting with `#` skipped)
/// as trimmed text pairs, in file order; other columns are ignored. For a list a run
/// depends on: a record without a first value, or one the decoder rejects (a record with
/// another number of fields than the header), stops the read.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("synonyms.csv");
/// std::fs::write(&path, "synonym,scientific_name\r\n\" Bubo scandiacus \",\"Nyctea, scandiaca\"\r\n\n").unwrap();
/// let pairs = etl_source_csv::read_pairs(&path).unwrap();
/// assert_eq!(pairs, [("Bubo scandiacus".to_owned(), "Nyctea, scandiaca".to_owned())]);
/// ```
///
/// # Errors
/// [`CsvError::Io`], a header of fewer than two columns ([`CsvError::InvalidHeader`]), a
/// bad record ([`CsvError::InvalidReference`]).
pub fn read_pairs(path: &Path) -> Result<Vec<(String, String)>> {
    let unit = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| CsvError::Io {
        path: unit.clone(),
        source,
    })?;
    let opts = CsvOptions::default()
        .with_empty_is_null(false)
        .with_ignore_extra_columns(true);
    let header = Header::parse(&unit, &bytes, &opts, true)?.expect("eof: whole or an error");
    if header.names.len() < 2 {
        return Err(CsvError::InvalidHeader {
            unit,
            reason: format!("two columns expected, found {:?}", header.names),
        });
    }
    let fields = header.names[..2]
        .iter()
        .map(|n| Field::new(n, DataType::Utf8, true));
    let mut decoder = Decoder::builder(Arc::new(Schema::new(fields.collect::<Vec<_>>())))
        .unit(unit.as_str())
        .options(opts)
        .first_line(header.next_line)
        .build(&header.names)?;
    let (mut rest, mut out) = (&bytes[header.len..], Vec::new());
    loop {
        rest = &rest[decoder.decode_eof(rest)?..];
        let Some(batch) = decoder.flush()? else { break };
        if let Some(r) = batch.rejects.first() {
            let reason = r.reason.clone();
            return Err(CsvError::InvalidReference {
                unit,
                line: r.record,
                reason,
            });
        }
        let (a, b) = (
            batch.data.column(0).as_string::<i32>(),
            batch.data.column(1).as_string::<i32>(),
        );
        for (i, line) in batch.records.iter().enumerate() {
            let (a, b) = (a.value(i).trim(), b.value(i).trim());
            if a.starts_with('#') {
                continue;
            } else if a.is_empty() {
                let reason = "the first column is empty".to_owned();
                return Err(CsvError::InvalidReference {
                    unit,
                    line: *line,
                    reason,
                });
            }
            out.push((a.to_owned(), b.to_owned()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_read_with_the_decoder_and_bad_records_stop_the_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.csv");
        std::fs::write(&path, "a,b,c\nx,\"y \"\"q\"\"\",z\n\n# note,,\nw,,\n").unwrap();
        assert_eq!(
            read_pairs(&path).unwrap(),
            [("x".into(), "y \"q\"".into()), ("w".into(), String::new())]
        );
        std::fs::write(&path, "a,b\nx,y\n,y\n").unwrap();
        let e = read_pairs(&path).unwrap_err().to_string();
        assert!(e.ends_with("l.csv:3: the first column is empty"), "{e}");
        std::fs::write(&path, "a\nx\n").unwrap();
        assert!(matches!(
            read_pairs(&path),
            Err(CsvError::InvalidHeader { .. })
        ));
        assert!(matches!(
            read_pairs(&dir.path().join("none")),
            Err(CsvError::Io { .. })
        ));
    }
}
