//! The one place where arrow-rs and Polars meet: zero-copy conversion through the Arrow C
//! Data Interface, column by column.
//!
//! Event time is `Timestamp(Microsecond, "UTC")` on the arrow side (as in Spark) and a
//! time-zone-naive `Datetime(Microseconds)` inside Polars, read as UTC: conversion strips
//! and restores a UTC tag (`+00:00`; metadata only, the values are not touched), at the
//! top level and inside structs and lists. Arrow timestamps are instants whatever their
//! zone, so a timestamp read with another zone (e.g. `America/New_York` from a foreign
//! Parquet file) comes in as the same UTC instant.

use std::sync::Arc;

use arrow::array::{make_array, Array, ArrayRef, LargeListArray, ListArray, RecordBatch, StructArray};
use arrow::datatypes::{DataType as ArrowDataType, Field as ArrowField, Schema as ArrowSchema, SchemaRef as ArrowSchemaRef};
use polars::prelude::{Column, CompatLevel, DataFrame, PlSmallStr, Series};

use crate::{Result, SluiceError};

/// The time-zone tag of exported timestamps: a fixed UTC offset, which every arrow-rs
/// kernel and writer understands without the `chrono-tz` database.
pub const UTC_TAG: &str = "+00:00";

/// `dt` with `f` applied to every timestamp type in it (top level, struct fields, list
/// items).
fn map_timestamps(dt: &ArrowDataType, f: &dyn Fn(&ArrowDataType) -> ArrowDataType) -> ArrowDataType {
    let field = |x: &ArrowField| Arc::new(x.clone().with_data_type(map_timestamps(x.data_type(), f)));
    match dt {
        ArrowDataType::Timestamp(..) => f(dt),
        ArrowDataType::Struct(fields) => ArrowDataType::Struct(fields.iter().map(|x| field(x)).collect()),
        ArrowDataType::List(item) => ArrowDataType::List(field(item)),
        ArrowDataType::LargeList(item) => ArrowDataType::LargeList(field(item)),
        other => other.clone(),
    }
}

/// Drops the time-zone tag from timestamps (top level, in structs and lists): Polars
/// holds event time naive, read as UTC.
fn strip_utc(dt: &ArrowDataType) -> ArrowDataType {
    map_timestamps(dt, &|t| match t {
        ArrowDataType::Timestamp(unit, Some(_)) => ArrowDataType::Timestamp(*unit, None),
        other => other.clone(),
    })
}

/// Tags time-zone-naive timestamps as UTC, recursively through structs and lists.
pub fn tag_utc(dt: &ArrowDataType) -> ArrowDataType {
    map_timestamps(dt, &|t| match t {
        ArrowDataType::Timestamp(unit, None) => ArrowDataType::Timestamp(*unit, Some(UTC_TAG.into())),
        other => other.clone(),
    })
}

fn retag(array: &ArrayRef, to: &ArrowDataType) -> Result<ArrayRef> {
    if array.data_type() == to {
        return Ok(array.clone());
    }
    if let (Some(s), ArrowDataType::Struct(fields)) =
        (array.as_any().downcast_ref::<StructArray>(), to)
    {
        let cols = s
            .columns()
            .iter()
            .zip(fields.iter())
            .map(|(c, f)| retag(c, f.data_type()))
            .collect::<Result<Vec<_>>>()?;
        return Ok(Arc::new(StructArray::try_new(fields.clone(), cols, s.nulls().cloned())?));
    }
    if let (Some(l), ArrowDataType::List(item)) = (array.as_any().downcast_ref::<ListArray>(), to) {
        let values = retag(l.values(), item.data_type())?;
        return Ok(Arc::new(ListArray::try_new(item.clone(), l.offsets().clone(), values, l.nulls().cloned())?));
    }
    if let (Some(l), ArrowDataType::LargeList(item)) = (array.as_any().downcast_ref::<LargeListArray>(), to) {
        let values = retag(l.values(), item.data_type())?;
        return Ok(Arc::new(LargeListArray::try_new(item.clone(), l.offsets().clone(), values, l.nulls().cloned())?));
    }
    let data = array.to_data().into_builder().data_type(to.clone()).build()?;
    Ok(make_array(data))
}

/// Converts one arrow-rs array into a Polars series named `name`, without copying
/// numeric, boolean and timestamp buffers.
///
/// # Errors
/// [`SluiceError::Polars`] / [`SluiceError::Arrow`] for types Polars does not support.
pub fn array_to_series(name: &str, array: &ArrayRef) -> Result<Series> {
    let array = retag(array, &strip_utc(array.data_type()))?;
    let (ffi_array, ffi_schema) = arrow::ffi::to_ffi(&array.to_data())?;
    // SAFETY: arrow-rs and polars-arrow implement the same Arrow C Data Interface structs
    // (`#[repr(C)]`, identical layout); ownership of the buffers moves with the struct and
    // the release callback frees them.
    let (pa_array, pa_schema) = unsafe {
        (
            std::mem::transmute::<arrow::ffi::FFI_ArrowArray, polars_arrow::ffi::ArrowArray>(ffi_array),
            std::mem::transmute::<arrow::ffi::FFI_ArrowSchema, polars_arrow::ffi::ArrowSchema>(ffi_schema),
        )
    };
    let field = unsafe { polars_arrow::ffi::import_field_from_c(&pa_schema) }?;
    let imported = unsafe { polars_arrow::ffi::import_array_from_c(pa_array, field.dtype().clone()) }?;
    Ok(Series::from_arrow_chunks(PlSmallStr::from(name), vec![imported])?)
}

/// Converts a record batch into a Polars data frame (same column names and order).
pub fn record_batch_to_df(batch: &RecordBatch) -> Result<DataFrame> {
    let cols = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, a)| array_to_series(f.name(), a).map(Column::from))
        .collect::<Result<Vec<_>>>()?;
    Ok(DataFrame::new(batch.num_rows(), cols)?)
}

/// Converts and concatenates record batches; `schema` gives the columns when there are none.
pub fn record_batches_to_df(batches: &[RecordBatch], schema: &ArrowSchemaRef) -> Result<DataFrame> {
    let mut out: Option<DataFrame> = None;
    for b in batches {
        let df = record_batch_to_df(b)?;
        match &mut out {
            None => out = Some(df),
            Some(acc) => {
                acc.vstack_mut_owned(df)?;
            }
        }
    }
    match out {
        Some(mut df) => {
            df.rechunk_mut_par();
            Ok(df)
        }
        None => record_batch_to_df(&RecordBatch::new_empty(schema.clone())),
    }
}

/// Converts a Polars series into an arrow-rs array (strings come out as `Utf8View`);
/// naive timestamps are tagged UTC.
pub fn series_to_array(series: &Series) -> Result<(ArrowField, ArrayRef)> {
    let s = series.rechunk();
    let pa_field = s.field().to_arrow(CompatLevel::newest());
    let pa_array = if s.is_empty() && s.chunks().is_empty() {
        polars_arrow::array::new_empty_array(pa_field.dtype().clone())
    } else {
        s.to_arrow(0, CompatLevel::newest())
    };
    let c_array = polars_arrow::ffi::export_array_to_c(pa_array);
    let c_schema = polars_arrow::ffi::export_field_to_c(&pa_field);
    // SAFETY: see `array_to_series`: same C structs on both sides.
    let (ffi_array, ffi_schema) = unsafe {
        (
            std::mem::transmute::<polars_arrow::ffi::ArrowArray, arrow::ffi::FFI_ArrowArray>(c_array),
            std::mem::transmute::<polars_arrow::ffi::ArrowSchema, arrow::ffi::FFI_ArrowSchema>(c_schema),
        )
    };
    let data = unsafe { arrow::ffi::from_ffi(ffi_array, &ffi_schema) }?;
    let array = make_array(data);
    let field = ArrowField::try_from(&ffi_schema)?;
    let tagged = tag_utc(field.data_type());
    let array = retag(&array, &tagged)?;
    Ok((field.with_data_type(tagged), array))
}

/// Converts a Polars data frame into one record batch.
pub fn df_to_record_batch(df: &DataFrame) -> Result<RecordBatch> {
    let mut fields = Vec::with_capacity(df.width());
    let mut arrays = Vec::with_capacity(df.width());
    for c in df.columns() {
        let (f, a) = series_to_array(c.as_materialized_series())?;
        fields.push(f);
        arrays.push(a);
    }
    let schema = Arc::new(ArrowSchema::new(fields));
    RecordBatch::try_new_with_options(
        schema,
        arrays,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(df.height())),
    )
    .map_err(SluiceError::from)
}

/// The Polars schema a record batch of `schema` converts to.
pub fn arrow_schema_to_polars(schema: &ArrowSchema) -> Result<polars::prelude::Schema> {
    let empty = RecordBatch::new_empty(Arc::new(schema.clone()));
    Ok(record_batch_to_df(&empty)?.schema().as_ref().clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};

    #[test]
    fn roundtrip_keeps_values_and_utc() {
        let schema = Arc::new(ArrowSchema::new(vec![
            ArrowField::new("s", ArrowDataType::Utf8, true),
            ArrowField::new("n", ArrowDataType::Int64, true),
            ArrowField::new(
                "t",
                ArrowDataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("a"), None])),
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(TimestampMicrosecondArray::from(vec![Some(5), None]).with_timezone("UTC")),
            ],
        )
        .unwrap();
        let df = record_batch_to_df(&batch).unwrap();
        assert_eq!(df.height(), 2);
        assert_eq!(
            df.column("t").unwrap().dtype(),
            &polars::prelude::DataType::Datetime(polars::prelude::TimeUnit::Microseconds, None)
        );
        let back = df_to_record_batch(&df).unwrap();
        assert_eq!(back.num_rows(), 2);
        let t = back.column(2).as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap();
        assert_eq!(t.value(0), 5);
        assert!(t.is_null(1));
        assert_eq!(
            back.schema().field(2).data_type(),
            &ArrowDataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some(UTC_TAG.into()))
        );
    }
}
