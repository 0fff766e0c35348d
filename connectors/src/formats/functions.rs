//! JSON columns: [`from_json`] parses a String or Binary column of JSON objects into a
//! struct column, [`to_json`] writes a struct column as JSON strings (Spark's
//! `from_json` / `to_json`), both with arrow-json.
//!
//! Typical use with Kafka, whose `value` column is binary:
//!
//! ```no_run
//! # use polars::prelude::*;
//! # use sluice_connectors::from_json;
//! # fn main() -> sluice_engine::Result<()> {
//! let schema = Schema::from_iter([
//!     Field::new("time".into(), DataType::Datetime(TimeUnit::Microseconds, None)),
//!     Field::new("channel".into(), DataType::String),
//! ]);
//! // value -> edit {time, channel}; then select(col("edit").struct_().field_by_name("time"), ...)
//! let edit = from_json(col("value"), &schema)?.alias("edit");
//! # Ok(()) }
//! ```
//!
//! # Why whole columns
//! Both helpers run once per column chunk, not per row: [`from_json`] hands every value of
//! the chunk to one arrow-json decoder (the fast path), and only when that fails decodes
//! the values one by one to find the malformed ones; [`to_json`] encodes rows with one
//! arrow-json encoder into one buffer.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryViewArray, RecordBatch, StringArray, StructArray, UInt32Array,
};
use arrow::compute::{concat_batches, take};
use arrow::datatypes::{
    DataType as ArrowDataType, Field as ArrowField, FieldRef, Schema as ArrowSchema, SchemaRef as ArrowSchemaRef,
};
use arrow::error::ArrowError;
use polars::error::{PolarsError, polars_err};
use polars::prelude::{Column, DataType, Expr, Field, Schema};
use sluice_engine::interop::{array_to_series, series_to_array};
use sluice_engine::{Result, SluiceError};

use super::json::{SparkJsonEncoders, decode_json_lines, prepare};
use super::records::null_row;
use super::types::nested_arrow_type;

/// How [`to_json`] writes timestamps: Spark's default `to_json` format
/// (`yyyy-MM-dd'T'HH:mm:ss.SSSXXX`), in UTC.
const TO_JSON_TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

/// Parses a column of JSON objects into a struct column with the fields of `schema`
/// (Spark's `from_json(col, schema)` in its default PERMISSIVE mode).
///
/// * Input: a `String` or `Binary` (UTF-8 bytes, e.g. Kafka's `value`) column, one JSON
///   object per value.
/// * Output: `Struct` with `schema`'s fields, in order; the column keeps the input's
///   name (use `.alias(..)`). A null input is a null struct. A value that is not one JSON
///   object (malformed, empty, several values) is a struct whose fields are all null; a
///   field whose value does not convert to its type is null while the other fields are
///   kept (Spark 3's partial results). Fields not in the schema are ignored. A value
///   nested deeper than [`MAX_JSON_DEPTH`](crate::formats::json::MAX_JSON_DEPTH) is malformed (all fields null).
/// * Types: `Boolean`, `Int32`, `Int64`, `UInt32`, `UInt64`, `Float32`, `Float64`,
///   `String`, `Date`, `Datetime(unit, None)` (RFC 3339 strings; naive ones read as UTC;
///   integral numbers as seconds since the epoch, as Spark), and `List` / `Struct` of
///   those. Conversions are the file source's JSON ones (`crate::formats::json`): a
///   string field keeps an object or array as its JSON text, floats read `NaN` and
///   `Infinity`, integers reject `1.5`.
///
/// # Errors
/// [`SluiceError::InvalidArgument`] when `schema` is empty or has another type (e.g. a
/// time-zone-aware `Datetime`). At run time the expression fails with a Polars compute
/// error when its input column is neither String nor Binary.
pub fn from_json(expr: Expr, schema: &Schema) -> Result<Expr> {
    if schema.is_empty() {
        return Err(SluiceError::InvalidArgument("from_json needs a schema with at least one field".into()));
    }
    let fields: Vec<ArrowField> = schema
        .iter()
        .map(|(name, dtype)| Ok(ArrowField::new(name.as_str(), nested_arrow_type(name, dtype)?, true)))
        .collect::<Result<_>>()?;
    let arrow_schema: ArrowSchemaRef = Arc::new(ArrowSchema::new(fields));
    let out_dtype = DataType::Struct(schema.iter().map(|(n, d)| Field::new(n.clone(), d.clone())).collect());
    let out_for_type = out_dtype.clone();
    Ok(expr.map(
        move |column: Column| {
            let name = column.name().clone();
            let series = column.as_materialized_series();
            if !matches!(series.dtype(), DataType::String | DataType::Binary) {
                return Err(polars_err!(
                    ComputeError: "from_json expects a String or Binary column, but {} is {}",
                    name, series.dtype()
                ));
            }
            let (_, array) = series_to_array(series).map_err(to_polars)?;
            let parsed = parse_json_column(&array, &arrow_schema).map_err(to_polars)?;
            let out = array_to_series(name.as_str(), &(Arc::new(parsed) as ArrayRef)).map_err(to_polars)?;
            Ok(Column::from(out))
        },
        move |_schema, field| Ok(Field::new(field.name().clone(), out_for_type.clone())),
    ))
}

/// Writes a struct column as one JSON object per row (Spark's `to_json`): a `String`
/// column named like the input; a null struct gives null. Null fields are omitted
/// (Spark's `ignoreNullFields=true`), floats that are not finite as `"NaN"`,
/// `"Infinity"`, `"-Infinity"` (as Spark), timestamps are written as
/// `2015-09-12T00:10:00.000Z` (UTC, milliseconds), nested structs as objects, lists as
/// arrays, binary as hex strings. Build the struct with
/// `polars::prelude::as_struct(vec![col("a"), col("b")])`.
///
/// At run time the expression fails with a Polars compute error when its input is not a
/// struct column.
pub fn to_json(expr: Expr) -> Expr {
    expr.map(
        |column: Column| {
            let name = column.name().clone();
            let series = column.as_materialized_series();
            if !matches!(series.dtype(), DataType::Struct(_)) {
                return Err(polars_err!(
                    ComputeError: "to_json expects a Struct column (as_struct(...)), but {} is {}",
                    name, series.dtype()
                ));
            }
            let (field, array) = series_to_array(series).map_err(to_polars)?;
            let strings = encode_json_rows(&Arc::new(field), array.as_ref()).map_err(to_polars)?;
            let out = array_to_series(name.as_str(), &(Arc::new(strings) as ArrayRef)).map_err(to_polars)?;
            Ok(Column::from(out))
        },
        |_schema, field| Ok(Field::new(field.name().clone(), DataType::String)),
    )
}

fn to_polars(e: SluiceError) -> PolarsError {
    match e {
        SluiceError::Polars(p) => p,
        other => PolarsError::ComputeError(other.to_string().into()),
    }
}

/// The bytes of each value of a String or Binary array (`None` for nulls).
fn values_of(array: &ArrayRef) -> std::result::Result<Vec<Option<&[u8]>>, ArrowError> {
    let n = array.len();
    Ok(match array.data_type() {
        ArrowDataType::Utf8View => {
            let a = array.as_string_view();
            (0..n).map(|i| a.is_valid(i).then(|| a.value(i).as_bytes())).collect()
        }
        ArrowDataType::Utf8 => {
            let a = array.as_string::<i32>();
            (0..n).map(|i| a.is_valid(i).then(|| a.value(i).as_bytes())).collect()
        }
        ArrowDataType::LargeUtf8 => {
            let a = array.as_string::<i64>();
            (0..n).map(|i| a.is_valid(i).then(|| a.value(i).as_bytes())).collect()
        }
        ArrowDataType::BinaryView => {
            let a: &BinaryViewArray = array.as_binary_view();
            (0..n).map(|i| a.is_valid(i).then(|| a.value(i))).collect()
        }
        ArrowDataType::Binary => {
            let a = array.as_binary::<i32>();
            (0..n).map(|i| a.is_valid(i).then(|| a.value(i))).collect()
        }
        ArrowDataType::LargeBinary => {
            let a = array.as_binary::<i64>();
            (0..n).map(|i| a.is_valid(i).then(|| a.value(i))).collect()
        }
        other => return Err(ArrowError::InvalidArgumentError(format!("from_json cannot read a {other} column"))),
    })
}

/// Decodes `values` as one JSON object each into a batch of exactly `values.len()` rows,
/// with the file source's decoders (Spark's conversions); fails if any value is not
/// exactly one JSON object or nests deeper than [`MAX_JSON_DEPTH`](crate::formats::json::MAX_JSON_DEPTH).
fn decode_all(schema: &ArrowSchemaRef, values: &[&[u8]], lenient: bool) -> std::result::Result<RecordBatch, ArrowError> {
    let prepared = values.iter().map(|v| prepare(v).map_err(ArrowError::JsonError)).collect::<std::result::Result<Vec<_>, _>>()?;
    let texts: Vec<&[u8]> = prepared.iter().map(|p| p.as_ref()).collect();
    decode_json_lines(schema, &texts, lenient)
        .map_err(|e| ArrowError::JsonError(format!("a value must hold exactly one JSON object: {e}")))
}

/// Parses a String / Binary array of JSON objects into a struct array with `schema`'s
/// fields (see [`from_json`]).
fn parse_json_column(array: &ArrayRef, schema: &ArrowSchemaRef) -> Result<StructArray> {
    let values = values_of(array)?;
    let present: Vec<&[u8]> = values.iter().flatten().copied().collect();
    let batch = match decode_all(schema, &present, false) {
        Ok(batch) => batch,
        Err(_) => {
            // Slow path: value by value; a malformed value keeps the fields that convert.
            let mut rows = Vec::with_capacity(present.len());
            for value in &present {
                let row = decode_all(schema, &[value], false)
                    .or_else(|_| decode_all(schema, &[value], true))
                    .unwrap_or_else(|_| null_row(schema));
                rows.push(row);
            }
            if rows.is_empty() { RecordBatch::new_empty(schema.clone()) } else { concat_batches(schema, &rows)? }
        }
    };
    let parsed = StructArray::from(batch);
    if present.len() == values.len() {
        return Ok(parsed);
    }
    // Put the parsed rows back in place, with null structs for null inputs.
    let mut next = 0u32;
    let indices: UInt32Array = values
        .iter()
        .map(|v| {
            v.map(|_| {
                next += 1;
                next - 1
            })
        })
        .collect();
    let taken = take(&parsed, &indices, None)?;
    Ok(taken.as_struct().clone())
}

/// Encodes each row of a struct array as one JSON object (null rows give null).
fn encode_json_rows(field: &FieldRef, array: &dyn Array) -> Result<StringArray> {
    let options = arrow::json::writer::EncoderOptions::default()
        .with_explicit_nulls(false)
        .with_timestamp_format(TO_JSON_TIMESTAMP_FORMAT.to_string())
        .with_timestamp_tz_format(TO_JSON_TIMESTAMP_FORMAT.to_string())
        .with_encoder_factory(Arc::new(SparkJsonEncoders));
    let mut encoder = arrow::json::writer::make_encoder(field, array, &options)?;
    let mut buf = Vec::with_capacity(array.len() * 64);
    let mut bounds = Vec::with_capacity(array.len());
    for i in 0..array.len() {
        if array.is_null(i) {
            bounds.push(None);
            continue;
        }
        let start = buf.len();
        encoder.encode(i, &mut buf);
        bounds.push(Some((start, buf.len())));
    }
    let text = std::str::from_utf8(&buf)
        .map_err(|e| SluiceError::Internal(format!("arrow-json wrote invalid UTF-8: {e}")))?;
    Ok(bounds.into_iter().map(|b| b.map(|(s, e)| &text[s..e])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::{IntoLazy, NamedFrom, Series, TimeUnit, as_struct, col, df};

    fn schema() -> Schema {
        Schema::from_iter([
            Field::new("t".into(), DataType::Datetime(TimeUnit::Microseconds, None)),
            Field::new("s".into(), DataType::String),
            Field::new("n".into(), DataType::Int64),
        ])
    }

    #[test]
    fn parses_strings_and_binary_and_keeps_good_fields_of_bad_records() {
        let values = [
            Some(r#"{"t": "2015-09-12T00:46:58.771Z", "s": "a", "n": 1, "extra": true}"#),
            None,
            Some(r#"{"s": "b", "n": "not a number"}"#),
            Some("not json"),
            Some(r#"{"n": 2}{"n": 3}"#),
            Some(""),
        ];
        for binary in [false, true] {
            let s = if binary {
                Series::new("value".into(), values.iter().map(|v| v.map(str::as_bytes)).collect::<Vec<_>>())
            } else {
                Series::new("value".into(), values.to_vec())
            };
            let df = polars::prelude::DataFrame::new(s.len(), vec![s.into()]).unwrap();
            let out = df
                .lazy()
                .select([from_json(col("value"), &schema()).unwrap().alias("v")])
                .select([
                    col("v").is_null().alias("null"),
                    col("v").struct_().field_by_name("t"),
                    col("v").struct_().field_by_name("s"),
                    col("v").struct_().field_by_name("n"),
                ])
                .collect()
                .unwrap();
            let null: Vec<_> = out.column("null").unwrap().bool().unwrap().iter().flatten().collect();
            assert_eq!(null, [false, true, false, false, false, false]);
            let t = out.column("t").unwrap().datetime().unwrap().physical().get(0);
            assert_eq!(t, Some(1_442_018_818_771_000));
            let s: Vec<_> = out.column("s").unwrap().str().unwrap().iter().map(|x| x.map(str::to_string)).collect();
            assert_eq!(s, [Some("a".into()), None, Some("b".into()), None, None, None]);
            let n: Vec<_> = out.column("n").unwrap().i64().unwrap().iter().collect();
            assert_eq!(n, [Some(1), None, None, None, None, None]);
        }
    }

    #[test]
    fn rejects_unsupported_types_and_non_text_columns() {
        let tz = Schema::from_iter([Field::new(
            "t".into(),
            DataType::Datetime(TimeUnit::Microseconds, Some(polars::prelude::TimeZone::UTC)),
        )]);
        assert!(from_json(col("value"), &tz).is_err());
        assert!(from_json(col("value"), &Schema::default()).is_err());
        let df = df!("value" => [1i64, 2]).unwrap();
        let e = df.lazy().select([from_json(col("value"), &schema()).unwrap()]).collect().unwrap_err();
        assert!(e.to_string().contains("String or Binary"), "{e}");
    }

    #[test]
    fn to_json_roundtrips_through_from_json() {
        let df = df!("s" => [Some("x"), None], "n" => [Some(1i64), Some(2)]).unwrap();
        let out = df
            .lazy()
            .select([to_json(as_struct(vec![col("s"), col("n")])).alias("json")])
            .collect()
            .unwrap();
        let json: Vec<_> = out.column("json").unwrap().str().unwrap().iter().flatten().map(str::to_string).collect();
        assert_eq!(json, [r#"{"s":"x","n":1}"#, r#"{"n":2}"#]);
        let schema = Schema::from_iter([Field::new("s".into(), DataType::String), Field::new("n".into(), DataType::Int64)]);
        let back = out
            .lazy()
            .select([from_json(col("json"), &schema).unwrap().alias("v")])
            .select([col("v").struct_().field_by_name("n")])
            .collect()
            .unwrap();
        assert_eq!(back.column("n").unwrap().i64().unwrap().into_no_null_iter().collect::<Vec<_>>(), [1, 2]);
    }
}
