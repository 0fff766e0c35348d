//! The Polars → Arrow *type* mapping of declared schemas: which Arrow type a file source
//! or [`from_json`](super::functions::from_json) decodes for each declared Polars type,
//! and the cast the writers use. (Data crosses between Arrow and Polars only in
//! `sluice_engine::interop`; this module maps types, never values.)

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::compute::cast;
use arrow::datatypes::{DataType as ArrowDataType, Field as ArrowField, Fields, TimeUnit as ArrowTimeUnit};
use polars::prelude::{DataType, TimeUnit};
use sluice_engine::{Result, SluiceError};

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
