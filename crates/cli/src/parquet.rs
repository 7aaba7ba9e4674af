//! Several Parquet files as one source (each file one unit).

use std::collections::HashMap;
use std::path::PathBuf;

use arrow_schema::SchemaRef;
use etl_core::{BatchStream, Extract, ExtractOptions, Unit};
use etl_parquet::ParquetExtract;

/// Parquet files with one schema; each file is a unit named by its file name.
#[derive(Debug, Clone)]
pub struct ParquetFiles {
    files: Vec<(String, ParquetExtract)>,
    by_name: HashMap<String, usize>,
    schema: SchemaRef,
}

impl ParquetFiles {
    /// The files (their names must be distinct, their schemas equal).
    ///
    /// # Errors
    /// A file cannot be read, no file, or two schemas differ.
    pub fn new(files: Vec<PathBuf>) -> anyhow::Result<Self> {
        let mut out = Vec::new();
        let mut by_name = HashMap::new();
        let mut schema: Option<SchemaRef> = None;
        for f in files {
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let e = ParquetExtract::whole(&name, &f)?;
            match &schema {
                None => schema = Some(e.schema()),
                Some(s) if s.fields() != e.schema().fields() => anyhow::bail!(
                    "{} has another schema than the first file ({:?} vs {:?})",
                    f.display(),
                    e.schema().fields(),
                    s.fields()
                ),
                Some(_) => {}
            }
            if by_name.insert(name.clone(), out.len()).is_some() {
                anyhow::bail!("two Parquet files are named {name}");
            }
            out.push((name, e));
        }
        let schema = schema.ok_or_else(|| anyhow::anyhow!("no Parquet file"))?;
        Ok(ParquetFiles {
            files: out,
            by_name,
            schema,
        })
    }
}

impl Extract for ParquetFiles {
    fn name(&self) -> &str {
        "parquet"
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    async fn units(&self) -> etl_core::Result<Vec<Unit>> {
        let mut units = Vec::new();
        for (_, e) in &self.files {
            units.extend(e.units().await?);
        }
        Ok(units)
    }

    fn open(&self, unit: &Unit, options: ExtractOptions) -> etl_core::Result<BatchStream> {
        let i = self.by_name.get(&unit.name).copied().ok_or_else(|| {
            etl_core::Error::Config(format!("no Parquet file for unit {}", unit.name))
        })?;
        self.files[i].1.open(unit, options)
    }

    async fn fingerprint(&self, unit: &Unit) -> etl_core::Result<Option<String>> {
        match self.by_name.get(&unit.name) {
            Some(&i) => Ok(Some(etl_source_csv::file_fingerprint(
                self.files[i].1.path(),
            )?)),
            None => Ok(None),
        }
    }
}
