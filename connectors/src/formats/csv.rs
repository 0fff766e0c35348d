//! CSV: decoding with Spark's parse modes (the file source), and the writer and
//! whole-file reader (the file sink).
//!
//! Reading follows Spark's defaults: `"` quotes, `\\` escapes, an optional header line,
//! a one-character delimiter (options `header`, `sep`). Writing flattens struct columns
//! into `<col>_<field>` columns (recursively) and writes other nested columns (lists) as
//! their text form (`[1, 2]`), with a header line.

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, StringArray, StructArray, new_null_array};
use arrow::compute::{CastOptions, can_cast_types, cast_with_options};
use arrow::datatypes::{DataType as ArrowDataType, Field as ArrowField, Schema as ArrowSchema, SchemaRef as ArrowSchemaRef};
use arrow::error::ArrowError;
use sluice_engine::Result;

use super::records::{BATCH_ROWS, Decoded, Piece, RecordDecoding, UTF8_BOM, bisect, null_row, trim_eol};
use super::types::cast_to;
use super::{FileError, WRITE_TIMESTAMP_FORMAT};

/// The CSV reader's options (Spark's `header` and `sep`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvOptions {
    /// Whether the file starts with a header line to skip (default false).
    pub header: bool,
    /// The field delimiter, one ASCII character (default `,`).
    pub delimiter: u8,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self { header: false, delimiter: b',' }
    }
}

/// Spark's CSV quote and escape characters (options `quote`, `escape`).
const CSV_QUOTE: u8 = b'"';
const CSV_ESCAPE: u8 = b'\\';

fn csv_builder(opts: &CsvOptions, schema: ArrowSchemaRef, batch_size: usize) -> arrow::csv::ReaderBuilder {
    arrow::csv::ReaderBuilder::new(schema)
        .with_header(false)
        .with_delimiter(opts.delimiter)
        .with_quote(CSV_QUOTE)
        .with_escape(CSV_ESCAPE)
        .with_batch_size(batch_size)
}

/// Decodes CSV text with arrow-csv; any error fails it all.
fn csv_read(builder: arrow::csv::ReaderBuilder, text: &[u8]) -> std::result::Result<Vec<RecordBatch>, ArrowError> {
    builder.build(std::io::Cursor::new(text))?.collect()
}

/// The data schema with every column as a string (to find which fields do not convert).
fn string_schema(schema: &ArrowSchemaRef) -> ArrowSchemaRef {
    Arc::new(ArrowSchema::new(
        schema.fields().iter().map(|f| ArrowField::new(f.name(), ArrowDataType::Utf8, true)).collect::<Vec<_>>(),
    ))
}

/// Where the data starts: after the header line when there is one.
fn csv_body_start(opts: &CsvOptions, bytes: &[u8]) -> usize {
    if !opts.header {
        return 0;
    }
    let mut pos = 0;
    while pos < bytes.len() && (bytes[pos] == b'\n' || bytes[pos] == b'\r') {
        pos += 1;
    }
    csv_record_end(opts, bytes, pos)
}

/// The end (exclusive, after its line break) of the CSV record starting at `start`: the
/// first line break outside a quoted field. A quote opens a quoted field only at the start
/// of a field; inside one, the escape character and a doubled quote escape the next quote.
fn csv_record_end(opts: &CsvOptions, bytes: &[u8], start: usize) -> usize {
    let mut i = start;
    let mut field_start = true;
    let mut quoted = false;
    while i < bytes.len() {
        let b = bytes[i];
        if quoted {
            if b == CSV_ESCAPE {
                i += 2;
                continue;
            }
            if b == CSV_QUOTE {
                if bytes.get(i + 1) == Some(&CSV_QUOTE) {
                    i += 2;
                    continue;
                }
                quoted = false;
            }
            i += 1;
            continue;
        }
        if b == b'\n' {
            return i + 1;
        }
        if field_start && b == CSV_QUOTE {
            quoted = true;
            field_start = false;
        } else {
            field_start = b == opts.delimiter;
        }
        i += 1;
    }
    bytes.len()
}

/// A CSV record: its 1-based first line and byte range (line break included).
#[derive(Debug, Clone, Copy)]
struct CsvRecord {
    line: usize,
    start: usize,
    end: usize,
}

/// The records of `bytes[start..]`, without empty lines (which CSV readers skip).
fn csv_records(opts: &CsvOptions, bytes: &[u8], start: usize) -> Vec<CsvRecord> {
    let mut records = Vec::new();
    let mut line = 1 + bytes[..start].iter().filter(|b| **b == b'\n').count();
    let mut pos = start;
    while pos < bytes.len() {
        let end = csv_record_end(opts, bytes, pos);
        if !trim_eol(&bytes[pos..end]).is_empty() {
            records.push(CsvRecord { line, start: pos, end });
        }
        line += bytes[pos..end].iter().filter(|b| **b == b'\n').count();
        pos = end;
    }
    records
}

/// Decodes records that must yield exactly one row each.
fn csv_read_records(
    opts: &CsvOptions,
    schema: &ArrowSchemaRef,
    bytes: &[u8],
    records: &[CsvRecord],
) -> std::result::Result<Vec<RecordBatch>, ArrowError> {
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return Ok(Vec::new());
    };
    let batches = csv_read(csv_builder(opts, schema.clone(), BATCH_ROWS), &bytes[first.start..last.end])?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows != records.len() {
        return Err(ArrowError::CsvError(format!("expected {} records, found {rows}", records.len())));
    }
    Ok(batches)
}

/// Decodes the CSV file `path` (its `bytes`) as `how` says.
///
/// # Errors
/// [`sluice_engine::SluiceError::MalformedRecord`] naming the file and the 1-based line
/// of the first malformed record in FAILFAST mode.
pub(crate) fn decode(opts: &CsvOptions, how: &RecordDecoding<'_>, path: &str, bytes: &[u8]) -> Result<Decoded> {
    let track = how.keep_corrupt;
    let schema = how.schema;
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    let start = csv_body_start(opts, bytes);
    let mut out = Decoded::default();
    if let Ok(batches) = csv_read(csv_builder(opts, schema.clone(), BATCH_ROWS), &bytes[start..]) {
        for b in batches {
            out.push_good(b, track);
        }
        return Ok(out);
    }
    // Slow path: isolate the malformed records.
    let records = csv_records(opts, bytes, start);
    let decode = |part: &[CsvRecord]| csv_read_records(opts, schema, bytes, part);
    for chunk in records.chunks(BATCH_ROWS) {
        bisect(chunk, &decode, &mut |piece| match piece {
            Piece::Good(batches) => {
                batches.into_iter().for_each(|b| out.push_good(b, track));
                Ok(())
            }
            Piece::Bad(record, e) => {
                let raw = trim_eol(&bytes[record.start..record.end]);
                let (row, message) = csv_partial_row(opts, schema, raw, &e);
                how.malformed(&mut out, path, record.line, message, raw, || row)
            }
        })?;
    }
    Ok(out)
}

/// For a malformed CSV record: the row Spark keeps in PERMISSIVE mode (fields that convert,
/// nulls elsewhere; missing trailing fields null; fields beyond the schema's columns
/// dropped) and a message naming what failed.
fn csv_partial_row(opts: &CsvOptions, schema: &ArrowSchemaRef, raw: &[u8], error: &ArrowError) -> (RecordBatch, String) {
    let n = schema.fields().len();
    let strings = string_schema(schema);
    let one_row = |batches: Vec<RecordBatch>| batches.into_iter().find(|b| b.num_rows() == 1);
    let exact = csv_read(csv_builder(opts, strings.clone(), 1), raw).ok().and_then(one_row);
    let (batch, problem) = match exact {
        Some(b) => (b, None),
        None => match csv_read(csv_builder(opts, strings, 1).with_truncated_rows(true), raw).ok().and_then(one_row) {
            Some(b) => (b, Some(format!("the record has fewer fields than the {n} columns of the schema"))),
            None => {
                // More fields than columns: read them all (the delimiters bound their
                // number) and keep the first n, as Spark does.
                let upper = 1 + raw.iter().filter(|b| **b == opts.delimiter).count();
                let wide = (upper > n)
                    .then(|| {
                        let fields: Vec<ArrowField> =
                            (0..upper).map(|i| ArrowField::new(format!("c{i}"), ArrowDataType::Utf8, true)).collect();
                        let builder = csv_builder(opts, Arc::new(ArrowSchema::new(fields)), 1).with_truncated_rows(true);
                        csv_read(builder, raw).ok().and_then(one_row)
                    })
                    .flatten();
                match wide {
                    Some(b) => {
                        let columns = b.columns()[..n].to_vec();
                        let kept = RecordBatch::try_new(string_schema(schema), columns).unwrap_or_else(|_| null_row(schema));
                        (kept, Some(format!("the record has more fields than the {n} columns of the schema")))
                    }
                    None => return (null_row(schema), error.to_string()),
                }
            }
        },
    };
    let mut problems: Vec<String> = problem.into_iter().collect();
    let safe = CastOptions { safe: true, ..Default::default() };
    let mut columns = Vec::with_capacity(n);
    for (field, text) in schema.fields().iter().zip(batch.columns()) {
        let converted = cast_with_options(text, field.data_type(), &safe)
            .unwrap_or_else(|_| new_null_array(field.data_type(), text.len()));
        if converted.null_count() > text.null_count() {
            let value = text.as_any().downcast_ref::<StringArray>().map(|s| s.value(0).to_string()).unwrap_or_default();
            problems.push(format!("column {:?}: {value:?} is not a valid {}", field.name(), field.data_type()));
        }
        columns.push(converted);
    }
    let row =
        RecordBatch::try_new_with_options(schema.clone(), columns, &RecordBatchOptions::new().with_row_count(Some(1)))
            .unwrap_or_else(|_| null_row(schema));
    let message = if problems.is_empty() { error.to_string() } else { problems.join("; ") };
    (row, message)
}


// ---------------------------------------------------------------------------------------
// Writing and reading back (the file sink)

/// Adds the CSV columns of one top-level or nested column: structs flattened into
/// `<name>_<field>`, lists and other nested types as their text form.
fn flatten(
    name: &str,
    field: &ArrowField,
    array: &ArrayRef,
    out_fields: &mut Vec<ArrowField>,
    out_arrays: &mut Vec<ArrayRef>,
) -> std::result::Result<(), String> {
    if let (ArrowDataType::Struct(children), Some(s)) = (field.data_type(), array.as_any().downcast_ref::<StructArray>())
    {
        for (child, column) in children.iter().zip(s.columns()) {
            // A null struct makes its fields null in the flat columns.
            let column = match s.nulls() {
                Some(nulls) if nulls.null_count() > 0 => {
                    let merged = arrow::buffer::NullBuffer::union(Some(nulls), column.nulls());
                    let data = column.to_data().into_builder().nulls(merged).build().map_err(|e| e.to_string())?;
                    arrow::array::make_array(data)
                }
                _ => column.clone(),
            };
            flatten(&format!("{name}_{}", child.name()), child, &column, out_fields, out_arrays)?;
        }
        return Ok(());
    }
    let target = match field.data_type() {
        dt if dt.is_nested() => {
            if !can_cast_types(dt, &ArrowDataType::Utf8) {
                return Err(format!("column {name:?} of type {dt} cannot be written as CSV; use json or parquet"));
            }
            ArrowDataType::Utf8
        }
        dt => dt.clone(),
    };
    out_arrays.push(cast_to(array, &target).map_err(|e| format!("column {name:?}: {e}"))?);
    out_fields.push(ArrowField::new(name, target, true));
    Ok(())
}

/// `batch` with its columns as CSV writes them: structs flattened into `<col>_<field>`
/// columns, other nested columns as text.
///
/// # Errors
/// A message naming the column that cannot be written, or two flattened columns with the
/// same name.
pub(crate) fn flatten_batch(batch: &RecordBatch) -> std::result::Result<RecordBatch, String> {
    let schema = batch.schema();
    let mut fields = Vec::new();
    let mut arrays = Vec::new();
    for (f, a) in schema.fields().iter().zip(batch.columns()) {
        flatten(f.name(), f, a, &mut fields, &mut arrays)?;
    }
    let mut seen = HashSet::new();
    for f in &fields {
        if !seen.insert(f.name().as_str()) {
            return Err(format!("flattening struct columns for CSV gives two columns named {:?}; rename one", f.name()));
        }
    }
    RecordBatch::try_new_with_options(
        Arc::new(ArrowSchema::new(fields)),
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .map_err(|e| e.to_string())
}

/// Writes a [`flatten_batch`]ed batch as CSV with a header line; timestamps as RFC 3339
/// UTC strings, nulls as empty fields.
pub(crate) fn write(out: &mut impl Write, batch: &RecordBatch) -> std::result::Result<(), FileError> {
    let mut w = arrow::csv::WriterBuilder::new()
        .with_header(true)
        .with_timestamp_tz_format(WRITE_TIMESTAMP_FORMAT.to_string())
        .with_timestamp_format(WRITE_TIMESTAMP_FORMAT.to_string())
        .build(out);
    w.write(batch).map_err(FileError::format)
}

/// Reads a whole CSV file with a header line, with `schema` or the schema inferred from
/// `probe` (a second reader of the same file).
pub(crate) fn read_all<R: BufRead>(
    input: R,
    schema: Option<ArrowSchemaRef>,
    probe: impl FnOnce() -> std::io::Result<R>,
) -> std::result::Result<(ArrowSchemaRef, Vec<RecordBatch>), FileError> {
    let schema = match schema {
        Some(s) => s,
        None => {
            let (s, _) = arrow::csv::reader::Format::default()
                .with_header(true)
                .infer_schema(&mut probe().map_err(FileError::Io)?, None)
                .map_err(FileError::format)?;
            Arc::new(s)
        }
    };
    let reader =
        arrow::csv::ReaderBuilder::new(schema.clone()).with_header(true).build(input).map_err(FileError::format)?;
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>().map_err(FileError::format)?;
    Ok((schema, batches))
}
