//! Parquet: the projecting, casting reader (the file source), and the writer and
//! whole-file reader (the file sink).
//!
//! The writer keeps the batch's Arrow schema as is: strings `Utf8View`, event time
//! `Timestamp(Microsecond, "+00:00")` (Parquet `TIMESTAMP(MICROS, isAdjustedToUTC =
//! true)`, Spark's `timestamp`), structs (e.g. a `window {start, end}` column) nested.

use std::io::Write;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::SchemaRef as ArrowSchemaRef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use sluice_engine::{Result, SluiceError};

use super::FileError;
use super::records::BATCH_ROWS;

/// Reads the columns of `schema` from the Parquet file `path` (its bytes `file`), cast to their declared
/// types (strictly: a value that does not fit fails). An empty file has no rows.
///
/// # Errors
/// [`SluiceError::Io`] naming the file when it cannot be opened; `err(message)` (the
/// source's error) naming the file for one that does not decode, lacks a column or holds
/// a type that does not cast.
pub(crate) fn read_projected(
    schema: &ArrowSchemaRef,
    path: &str,
    file: bytes::Bytes,
    err: &dyn Fn(String) -> SluiceError,
) -> Result<Vec<RecordBatch>> {
    if file.is_empty() {
        return Ok(Vec::new());
    }
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| err(format!("{path} is not a readable Parquet file: {e}")))?;
    let file_schema = builder.schema().clone();
    let mut roots = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        match file_schema.index_of(field.name()) {
            Ok(i) => roots.push(i),
            Err(_) => {
                let have: Vec<&str> = file_schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(err(format!(
                    "{path} has no column {:?} (its columns: {})",
                    field.name(),
                    have.join(", ")
                )));
            }
        }
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| err(format!("{path}: {e}")))?;
    let strict = CastOptions { safe: false, ..Default::default() };
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| err(format!("{path}: {e}")))?;
        let mut columns = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            let column = batch
                .column_by_name(field.name())
                .ok_or_else(|| err(format!("{path} has no column {:?}", field.name())))?;
            columns.push(if column.data_type() == field.data_type() {
                column.clone()
            } else {
                cast_with_options(column, field.data_type(), &strict).map_err(|e| {
                    err(format!(
                        "{path}: column {:?} of type {} cannot be read as {}: {e}",
                        field.name(),
                        column.data_type(),
                        field.data_type()
                    ))
                })?
            });
        }
        out.push(
            RecordBatch::try_new_with_options(
                schema.clone(),
                columns,
                &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
            )
            .map_err(|e| err(format!("{path}: {e}")))?,
        );
    }
    Ok(out)
}

/// Writes `batch` as one Parquet file compressed with `compression`.
pub(crate) fn write(out: &mut (impl Write + Send), batch: &RecordBatch, compression: Compression) -> std::result::Result<(), FileError> {
    let props = WriterProperties::builder().set_compression(compression).build();
    let mut w = ArrowWriter::try_new(out, batch.schema(), Some(props)).map_err(FileError::format)?;
    w.write(batch).map_err(FileError::format)?;
    w.close().map_err(FileError::format)?;
    Ok(())
}

/// Reads a whole Parquet file with the schema it was written with.
pub(crate) fn read_all(file: impl parquet::file::reader::ChunkReader + 'static) -> std::result::Result<(ArrowSchemaRef, Vec<RecordBatch>), FileError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(FileError::format)?;
    let schema = builder.schema().clone();
    let reader = builder.build().map_err(FileError::format)?;
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>().map_err(FileError::format)?;
    Ok((schema, batches))
}
