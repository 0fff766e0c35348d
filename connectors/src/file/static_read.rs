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

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use arrow::datatypes::{DataType as ArrowDataType, Field as ArrowField, Schema as ArrowSchema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use polars::prelude::{DataFrame, SchemaRef};
use sluice_engine::interop::{arrow_schema_to_polars, record_batches_to_df};
use sluice_engine::{Options, Result, SluiceError};

use super::listing::list;
use super::options::FileSourceConfig;
use super::source::{conform, is_sink_output, read_file};
use crate::formats::FileFormat;
use crate::formats::manifest::read_all;
use crate::storage::Dir;
use crate::formats::types::readable_arrow_type;

/// Reads the `kind` file or directory `path` (local, or `s3://bucket/key` with the
/// reader's `s3.*` options) once (see the module docs).
///
/// # Errors
/// [`SluiceError::Io`] naming a missing path or an unreadable file;
/// [`SluiceError::InvalidArgument`] for a bad option or schema, or when no schema is
/// given and there is no data file to infer one from; the decoders' errors.
pub(crate) fn read_static(kind: FileFormat, path: &Path, schema: Option<SchemaRef>, options: &Options) -> Result<DataFrame> {
    let given = Dir::open(&path.to_string_lossy(), options)?;
    let (dir, files) = if given.is_file()? {
        let object = given.root().clone();
        let parent: object_store::path::Path = {
            let parts: Vec<_> = object.parts().collect();
            parts[..parts.len().saturating_sub(1)].iter().cloned().collect()
        };
        (given.at(parent), vec![given.url_of(&object)])
    } else {
        if let Some(local) = given.local_dir() {
            std::fs::metadata(&local).map_err(|source| SluiceError::Io { path: local.display().to_string(), source })?;
        }
        let files: Vec<String> = list(&given)?.into_iter().map(|f| f.path).collect();
        (given.clone(), files)
    };
    let sink_output = is_sink_output(&dir)?;
    let schema = match schema {
        Some(s) => s,
        None => infer_schema(kind, given.url(), &dir, &files, sink_output, options)?,
    };
    let cfg = FileSourceConfig::new(kind, Path::new(dir.url()), Some(schema), options)?;
    let batches = files.iter().map(|f| read_file(&cfg, f, sink_output)).collect::<Result<Vec<_>>>()?;
    conform(record_batches_to_df(&batches, &cfg.out_schema)?, &cfg.schema)
}

/// The schema of `files` (see the module docs), as Polars types the decoders read.
fn infer_schema(
    kind: FileFormat,
    path: &str,
    dir: &Dir,
    files: &[String],
    sink_output: bool,
    options: &Options,
) -> Result<SchemaRef> {
    let Some(first) = files.first() else {
        return Err(SluiceError::InvalidArgument(format!(
            "cannot infer a schema for {}: it holds no {kind} data files{}; give one with .schema(..)",
            path,
            if sink_output { " listed by its _sluice_metadata manifest" } else { "" }
        )));
    };
    let manifest = if sink_output { manifest_schema(dir, files)? } else { None };
    let arrow = match (manifest, kind) {
        (Some(s), _) => s,
        (None, FileFormat::Parquet) => parquet_schema(first, dir.read_url(first)?)?,
        (None, FileFormat::Json) => json_schema(dir, files)?,
        (None, FileFormat::Csv) => csv_schema(first, dir.read_url(first)?, options, sink_output)?,
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
fn manifest_schema(dir: &Dir, files: &[String]) -> Result<Option<ArrowSchema>> {
    for entry in read_all(dir)? {
        for f in &entry.files {
            let full = dir.url_of(&dir.child(&f.path)?);
            if !files.contains(&full) {
                continue;
            }
            let schema = f.arrow_schema().map_err(|e| {
                SluiceError::InvalidArgument(format!(
                    "the manifest schema of {full} does not decode ({e}); give a schema with .schema(..)"
                ))
            })?;
            if let Some(s) = schema {
                // A partitioned output's columns come after the file's, typed as written.
                let partitions = f.partition_fields().map_err(|e| {
                    SluiceError::InvalidArgument(format!(
                        "the manifest partitions of {full} do not decode ({e}); give a schema with .schema(..)"
                    ))
                })?;
                let fields: Vec<_> = s.fields().iter().chain(partitions.iter()).cloned().collect();
                return Ok(Some(ArrowSchema::new(fields)));
            }
        }
    }
    Ok(None)
}

fn parquet_schema(path: &str, file: Bytes) -> Result<ArrowSchema> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| SluiceError::InvalidArgument(format!("{path} is not a readable Parquet file: {e}")))?;
    Ok(builder.schema().as_ref().clone())
}

/// arrow-json's inference over every file, merged (Spark's JSON schema inference: a
/// field's types across records widen, absent fields are nullable).
fn json_schema(dir: &Dir, files: &[String]) -> Result<ArrowSchema> {
    let mut schemas = Vec::with_capacity(files.len());
    for f in files {
        let bytes = dir.read_url(f)?;
        let mut reader = std::io::Cursor::new(bytes.as_ref());
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
fn csv_schema(path: &str, file: Bytes, options: &Options, sink_output: bool) -> Result<ArrowSchema> {
    let header = options.bool("header")?.unwrap_or(sink_output);
    let infer = options.bool("inferSchema")?.unwrap_or(false);
    let delimiter = match options.get("sep").or_else(|| options.get("delimiter")) {
        Some("\\t") => b'\t',
        Some(d) if d.len() == 1 => d.as_bytes()[0],
        // The source's option check names a bad one.
        _ => b',',
    };
    let mut file = std::io::Cursor::new(file.as_ref());
    let format = arrow::csv::reader::Format::default()
        .with_header(header)
        .with_delimiter(delimiter)
        .with_quote(b'"')
        .with_escape(b'\\');
    let (inferred, _) = format.infer_schema(&mut file, if infer { None } else { Some(1) }).map_err(|e| {
        SluiceError::InvalidArgument(format!("cannot read the CSV columns of {path}: {e}"))
    })?;
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
