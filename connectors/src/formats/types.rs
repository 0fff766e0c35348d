//! The Polars → Arrow *type* mapping of declared schemas: which Arrow type a file source
//! or [`from_json`](super::functions::from_json) decodes for each declared Polars type
//! ([`file_arrow_type`]: scalars everywhere, structs and lists in JSON and Parquet, so
//! that whatever the file sink writes reads back), and the cast the writers use. (Data
//! crosses between Arrow and Polars only in `sluice_engine::interop`; this module maps
//! types, never values.)

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::compute::cast;
use arrow::datatypes::{DataType as ArrowDataType, Field as ArrowField, Fields, TimeUnit as ArrowTimeUnit};
use polars::prelude::{DataType, TimeUnit};
use sluice_engine::{Result, SluiceError};

use super::FileFormat;

/// The Polars scalar types the file sources read.
const SCALARS: &str = "Boolean, Int32, Int64, UInt32, UInt64, Float32, Float64, String, Date, Datetime";

/// The Arrow type decoded for a declared Polars column type (scalars only, as file
/// sources read them). Timestamps are `Timestamp(unit, None)`: naive, read as UTC.
///
/// # Errors
/// [`SluiceError::InvalidArgument`] naming the column for a time-zone-aware `Datetime`
/// or any other type.
pub fn scalar_arrow_type(name: &str, dtype: &DataType) -> Result<ArrowDataType> {
    let unit = |tu: &TimeUnit| match tu {
        TimeUnit::Nanoseconds => ArrowTimeUnit::Nanosecond,
        TimeUnit::Microseconds => ArrowTimeUnit::Microsecond,
        TimeUnit::Milliseconds => ArrowTimeUnit::Millisecond,
    };
    Ok(match dtype {
        DataType::Boolean => ArrowDataType::Boolean,
        DataType::Int32 => ArrowDataType::Int32,
        DataType::Int64 => ArrowDataType::Int64,
        DataType::UInt32 => ArrowDataType::UInt32,
        DataType::UInt64 => ArrowDataType::UInt64,
        DataType::Float32 => ArrowDataType::Float32,
        DataType::Float64 => ArrowDataType::Float64,
        DataType::String => ArrowDataType::Utf8,
        DataType::Date => ArrowDataType::Date32,
        DataType::Datetime(tu, None) => ArrowDataType::Timestamp(unit(tu), None),
        DataType::Datetime(_, Some(tz)) => {
            return Err(SluiceError::InvalidArgument(format!(
                "column {name:?}: declare timestamps as Datetime(unit, None), not with time zone {tz}: \
                 Sluice reads event time as UTC"
            )));
        }
        other => {
            return Err(SluiceError::InvalidArgument(format!(
                "column {name:?}: file sources cannot read type {other} (supported: {SCALARS})"
            )));
        }
    })
}

/// The Arrow type [`from_json`](super::functions::from_json) decodes for a Polars type:
/// [`scalar_arrow_type`], plus lists and structs of those.
///
/// # Errors
/// [`SluiceError::InvalidArgument`] naming the field for any other type.
pub fn nested_arrow_type(name: &str, dtype: &DataType) -> Result<ArrowDataType> {
    Ok(match dtype {
        DataType::List(inner) => {
            ArrowDataType::List(Arc::new(ArrowField::new("item", nested_arrow_type(name, inner)?, true)))
        }
        DataType::Struct(fields) => ArrowDataType::Struct(
            fields
                .iter()
                .map(|f| Ok(ArrowField::new(f.name().as_str(), nested_arrow_type(f.name(), f.dtype())?, true)))
                .collect::<Result<Fields>>()?,
        ),
        other => scalar_arrow_type(name, other).map_err(|_| {
            SluiceError::InvalidArgument(format!(
                "from_json: field {name:?} has type {other}, which from_json cannot read (supported: Boolean, \
                 Int32, Int64, UInt32, UInt64, Float32, Float64, String, Date, Datetime(unit, None), List, Struct)"
            ))
        })?,
    })
}

/// The Arrow type a `kind` file source decodes for a declared Polars column type:
/// [`scalar_arrow_type`] for CSV; for JSON and Parquet also lists and structs of those
/// (e.g. a `window` struct of two `Datetime`s, as the file sink writes it) and, in
/// Parquet, `Duration`.
///
/// # Errors
/// [`SluiceError::InvalidArgument`] naming the column: a nested type in CSV (the CSV
/// sink writes struct fields as `<col>_<field>` columns and lists as text), a
/// time-zone-aware `Datetime`, or another type.
pub fn file_arrow_type(kind: FileFormat, name: &str, dtype: &DataType) -> Result<ArrowDataType> {
    let unsupported = |what: &DataType| {
        SluiceError::InvalidArgument(format!(
            "column {name:?}: {kind} file sources cannot read type {what} (supported: {SCALARS}{})",
            match kind {
                FileFormat::Csv => "; CSV holds no nested types: the csv sink writes struct fields as <column>_<field> \
                                   columns and lists as text, so declare those, or write json or parquet",
                FileFormat::Json => ", and List and Struct of those",
                FileFormat::Parquet => ", Duration, and List and Struct of those",
            }
        ))
    };
    Ok(match (kind, dtype) {
        (FileFormat::Csv, DataType::List(_) | DataType::Struct(_)) => return Err(unsupported(dtype)),
        (_, DataType::List(inner)) => {
            ArrowDataType::List(Arc::new(ArrowField::new("item", file_arrow_type(kind, name, inner)?, true)))
        }
        (_, DataType::Struct(fields)) => ArrowDataType::Struct(
            fields
                .iter()
                .map(|f| Ok(ArrowField::new(f.name().as_str(), file_arrow_type(kind, f.name(), f.dtype())?, true)))
                .collect::<Result<Fields>>()?,
        ),
        (FileFormat::Parquet, DataType::Duration(tu)) => ArrowDataType::Duration(match tu {
            TimeUnit::Nanoseconds => ArrowTimeUnit::Nanosecond,
            TimeUnit::Microseconds => ArrowTimeUnit::Microsecond,
            TimeUnit::Milliseconds => ArrowTimeUnit::Millisecond,
        }),
        (_, DataType::Datetime(_, Some(_))) => scalar_arrow_type(name, dtype)?,
        (_, other) => scalar_arrow_type(name, other).map_err(|_| unsupported(other))?,
    })
}

/// The Arrow type that holds what a `kind` file's `dt` holds and that the file sources
/// decode (the inverse direction of [`file_arrow_type`], for schemas inferred from files
/// or recorded by the sink's manifest): timestamps naive (their values are UTC
/// instants), views and large types as their plain forms, nulls as strings (Spark infers
/// an all-null JSON field as a string), small integers widened; in JSON and CSV, where
/// the sink writes durations as ISO 8601 text (`PT1.5S`), durations as strings. `None`
/// for a type with no such counterpart.
pub(crate) fn readable_arrow_type(kind: FileFormat, dt: &ArrowDataType) -> Option<ArrowDataType> {
    let item = |f: &ArrowField| -> Option<Arc<ArrowField>> {
        Some(Arc::new(ArrowField::new(f.name(), readable_arrow_type(kind, f.data_type())?, true)))
    };
    if matches!(dt, ArrowDataType::Duration(_)) && kind != FileFormat::Parquet {
        return Some(ArrowDataType::Utf8);
    }
    Some(match dt {
        ArrowDataType::Null | ArrowDataType::Utf8View | ArrowDataType::LargeUtf8 => ArrowDataType::Utf8,
        ArrowDataType::Int8 | ArrowDataType::Int16 => ArrowDataType::Int32,
        ArrowDataType::UInt8 | ArrowDataType::UInt16 => ArrowDataType::UInt32,
        ArrowDataType::Float16 => ArrowDataType::Float32,
        ArrowDataType::Date64 => ArrowDataType::Timestamp(ArrowTimeUnit::Millisecond, None),
        ArrowDataType::Timestamp(ArrowTimeUnit::Second, _) => ArrowDataType::Timestamp(ArrowTimeUnit::Millisecond, None),
        ArrowDataType::Timestamp(unit, _) => ArrowDataType::Timestamp(*unit, None),
        ArrowDataType::Duration(ArrowTimeUnit::Second) => ArrowDataType::Duration(ArrowTimeUnit::Millisecond),
        ArrowDataType::Boolean
        | ArrowDataType::Int32
        | ArrowDataType::Int64
        | ArrowDataType::UInt32
        | ArrowDataType::UInt64
        | ArrowDataType::Float32
        | ArrowDataType::Float64
        | ArrowDataType::Utf8
        | ArrowDataType::Date32
        | ArrowDataType::Duration(_) => dt.clone(),
        ArrowDataType::List(f) | ArrowDataType::LargeList(f) | ArrowDataType::ListView(f) | ArrowDataType::LargeListView(f) => {
            ArrowDataType::List(item(f)?)
        }
        ArrowDataType::FixedSizeList(f, _) => ArrowDataType::List(item(f)?),
        ArrowDataType::Struct(fields) => {
            ArrowDataType::Struct(fields.iter().map(|f| item(f)).collect::<Option<Vec<_>>>()?.into())
        }
        _ => return None,
    })
}

/// `array` as type `to` (itself when it already is).
///
/// # Errors
/// A message naming both types when arrow cannot cast.
pub(crate) fn cast_to(array: &ArrayRef, to: &ArrowDataType) -> std::result::Result<ArrayRef, String> {
    if array.data_type() == to {
        return Ok(array.clone());
    }
    cast(array, to).map_err(|e| format!("cannot convert {} to {to}: {e}", array.data_type()))
}
