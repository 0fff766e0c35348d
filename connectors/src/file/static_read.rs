//! Static reads of files (`session.read()`, Spark's `spark.read`): a file or a directory
//! read once into a Polars frame, with the stream's listing and decoding.
//!
//! ```text
//!  path ── a file, or list(dir): a sink output's manifest-listed files, else the directory's
//!    │
//!    ├─ schema given ───────────────────────────────────────────────┐
//!    └─ none: infer ── sink output: the manifest's Arrow schema      │
//!                    ── Parquet: the first file's footer              ├─► FileSourceConfig ─► read_file
//!                    ── JSON: arrow-json inference over the files     │   (the stream's decoding,
//!                    ── CSV: strings (inferSchema=true: arrow-csv)  ──┘    parse modes, CSV header)
//! ```

use std::fs::File;
use std::io::{BufReader, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType as ArrowDataType, Field as ArrowField, Schema as ArrowSchema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use polars::prelude::{DataFrame, SchemaRef};
use sluice_engine::interop::{arrow_schema_to_polars, record_batches_to_df};
use sluice_engine::{Options, Result, SluiceError};

use super::listing::list;
use super::options::{FileSourceConfig, source_options};
use super::source::{conform, is_sink_output, read_file};
use crate::formats::FileFormat;
use crate::formats::manifest::read_manifest;
use crate::formats::types::readable_arrow_type;

/// The options a static `csv` read reads beyond the stream's: `inferSchema`.
const CSV_STATIC: [&str; 10] = [
    "maxFilesPerTrigger",
    "latestFirst",
    "cleanSource",
    "mode",
    "columnNameOfCorruptRecord",
    "multiLine",
    "header",
    "sep",
    "delimiter",
    "inferSchema",
];

/// The options (Spark's names) a static read of `kind` files reads.
pub(crate) fn static_options(kind: FileFormat) -> &'static [&'static str] {
    match kind {
        FileFormat::Csv => &CSV_STATIC,
        other => source_options(other),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SluiceError + '_ {
    move |source| SluiceError::Io { path: path.display().to_string(), source }
}

/// Reads the `kind` file or directory `path` once (see the module docs).
///
/// # Errors
/// [`SluiceError::Io`] naming a missing path or an unreadable file;
/// [`SluiceError::InvalidArgument`] for a bad option or schema, or when no schema is
/// given and there is no data file to infer one from; the decoders' errors.
pub(crate) fn read_static(kind: FileFormat, path: &Path, schema: Option<SchemaRef>, options: &Options) -> Result<DataFrame> {
    let abs = std::path::absolute(path).map_err(io(path))?;
    let meta = std::fs::metadata(&abs).map_err(io(&abs))?;
    let (dir, files, sink_output) = if meta.is_file() {
        let dir = abs.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
        let sink_output = is_sink_output(&dir);
        (dir, vec![abs.to_string_lossy().into_owned()], sink_output)
    } else {
        let files: Vec<String> = list(&abs)?.into_iter().map(|f| f.path).collect();
        let sink_output = is_sink_output(&abs);
        (abs.clone(), files, sink_output)
    };
    let schema = match schema {
        Some(s) => s,
        None => infer_schema(kind, &abs, &dir, &files, sink_output, options)?,
    };
    let cfg = FileSourceConfig::new(kind, &abs, Some(schema), options)?;
    let batches = files.iter().map(|f| read_file(&cfg, f, sink_output)).collect::<Result<Vec<_>>>()?;
    conform(record_batches_to_df(&batches, &cfg.out_schema)?, &cfg.schema)
}

/// The schema of `files` (see the module docs), as Polars types the decoders read.
fn infer_schema(
    kind: FileFormat,
    path: &Path,
    dir: &Path,
    files: &[String],
    sink_output: bool,
    options: &Options,
) -> Result<SchemaRef> {
    let Some(first) = files.first() else {
        return Err(SluiceError::InvalidArgument(format!(
            "cannot infer a schema for {}: it holds no {kind} data files{}; give one with .schema(..)",
            path.display(),
            if sink_output { " listed by its _sluice_metadata manifest" } else { "" }
        )));
    };
    let manifest = if sink_output { manifest_schema(dir, files)? } else { None };
    let arrow = match (manifest, kind) {
        (Some(s), _) => s,
        (None, FileFormat::Parquet) => parquet_schema(Path::new(first))?,
        (None, FileFormat::Json) => json_schema(files)?,
        (None, FileFormat::Csv) => csv_schema(Path::new(first), options, sink_output)?,
    };
    let mut fields = Vec::with_capacity(arrow.fields().len());
    for f in arrow.fields() {
        let Some(dt) = readable_arrow_type(kind, f.data_type()) else {
            return Err(SluiceError::InvalidArgument(format!(
                "column {:?} of {} has type {}, which Sluice cannot read; give a schema without it (.schema(..))",
                f.name(),
                first,
                f.data_type()
            )));
        };
        fields.push(ArrowField::new(f.name(), dt, true));
    }
    Ok(Arc::new(arrow_schema_to_polars(&ArrowSchema::new(fields))?))
}

/// The Arrow schema a file sink recorded for the first of `files` it lists (every file of
/// a query has the same one); `None` when the manifest records none (other writers).
fn manifest_schema(dir: &Path, files: &[String]) -> Result<Option<ArrowSchema>> {
    for entry in read_manifest(dir)? {
        for f in &entry.files {
            let full = dir.join(&f.path);
            if !files.iter().any(|p| Path::new(p) == full) {
                continue;
            }
            let schema = f.arrow_schema().map_err(|e| {
                SluiceError::InvalidArgument(format!(
                    "the manifest schema of {} does not decode ({e}); give a schema with .schema(..)",
                    full.display()
                ))
            })?;
            if let Some(s) = schema {
                return Ok(Some(s.as_ref().clone()));
            }
        }
    }
    Ok(None)
}

fn parquet_schema(path: &Path) -> Result<ArrowSchema> {
    let file = File::open(path).map_err(io(path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| {
        SluiceError::InvalidArgument(format!("{} is not a readable Parquet file: {e}", path.display()))
    })?;
    Ok(builder.schema().as_ref().clone())
}

/// arrow-json's inference over every file, merged (Spark's JSON schema inference: a
/// field's types across records widen, absent fields are nullable).
fn json_schema(files: &[String]) -> Result<ArrowSchema> {
    let mut schemas = Vec::with_capacity(files.len());
    for f in files {
        let path = Path::new(f);
        let mut reader = BufReader::new(File::open(path).map_err(io(path))?);
        let (schema, _) = arrow::json::reader::infer_json_schema_from_seekable(&mut reader, None).map_err(|e| {
            SluiceError::InvalidArgument(format!(
                "cannot infer a JSON schema from {f}: {e}; give one with .schema(..)"
            ))
        })?;
        schemas.push(schema);
    }
    ArrowSchema::try_merge(schemas).map_err(|e| {
        SluiceError::InvalidArgument(format!("the JSON files have conflicting types ({e}); give a schema with .schema(..)"))
    })
}

/// CSV: the columns of the first line (names from it with `header`, else `_c0`, `_c1`,
/// ...), strings unless `inferSchema=true` (Spark's defaults).
fn csv_schema(path: &Path, options: &Options, sink_output: bool) -> Result<ArrowSchema> {
    let header = options.bool("header")?.unwrap_or(sink_output);
    let infer = options.bool("inferSchema")?.unwrap_or(false);
    let delimiter = match options.get("sep").or_else(|| options.get("delimiter")) {
        Some("\\t") => b'\t',
        Some(d) if d.len() == 1 => d.as_bytes()[0],
        // The source's option check names a bad one.
        _ => b',',
    };
    let mut file = File::open(path).map_err(io(path))?;
    let format = arrow::csv::reader::Format::default()
        .with_header(header)
        .with_delimiter(delimiter)
        .with_quote(b'"')
        .with_escape(b'\\');
    let (inferred, _) = format.infer_schema(&mut file, if infer { None } else { Some(1) }).map_err(|e| {
        SluiceError::InvalidArgument(format!("cannot read the CSV columns of {}: {e}", path.display()))
    })?;
    file.rewind().map_err(io(path))?;
    let fields: Vec<ArrowField> = inferred
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let name = if header { f.name().clone() } else { format!("_c{i}") };
            let dt = if infer { f.data_type().clone() } else { ArrowDataType::Utf8 };
            ArrowField::new(name, dt, true)
        })
        .collect();
    Ok(ArrowSchema::new(fields))
}
