//! Hive-style partitions (Spark's `partitionBy`): the file sink writes the rows of each
//! distinct value of the partition columns under `col=value/` directories, without those
//! columns in the files; readers (the sink's reader, the file source, the static reader)
//! put them back from the path, typed as the manifest recorded them (or as the reader's
//! schema says).
//!
//! ```text
//!  <out>/date=2015-09-12/channel=%23en.wikipedia/part-00003-<uuid>.parquet
//!         value as Spark casts it to a string   escaped as Spark's escapePathName
//!  null (or an empty string) ─► __HIVE_DEFAULT_PARTITION__
//! ```
//!
//! Partition columns can be strings, booleans, integers, floats, dates and timestamps
//! (written as `yyyy-MM-dd HH:mm:ss[.fraction]` in UTC), as Spark's.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, RecordBatchOptions, StringArray, UInt32Array};
use arrow::compute::{cast, take};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, TimeUnit};
use sluice_engine::{Result, SluiceError};

/// The directory name of a null or empty partition value (Hive's and Spark's).
pub(crate) const DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// Whether Spark's `escapePathName` escapes `c`.
fn needs_escape(c: char) -> bool {
    matches!(c, '\u{01}'..='\u{1F}' | '"' | '#' | '%' | '\'' | '*' | '/' | ':' | '=' | '?' | '\\' | '\u{7F}' | '{' | '[' | ']' | '^')
}

/// `s` escaped for a path segment as Spark's `escapePathName` does (`%XX`).
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if needs_escape(c) {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// The inverse of [`escape`] (Spark's `unescapePathName`).
pub(crate) fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit() {
            let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            out.push(hex(b[i + 1]) * 16 + hex(b[i + 2]));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a column of type `t` can be a partition column.
fn partitionable(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float32
            | DataType::Float64
            | DataType::Date32
            | DataType::Timestamp(_, _)
    )
}

/// The string of row `i` of `a` as Spark casts a partition value to a string; `None` for
/// null (and for an empty string, which Spark also writes as the default partition).
fn value_string(a: &ArrayRef, i: usize) -> Option<String> {
    if a.is_null(i) {
        return None;
    }
    let s = match a.data_type() {
        DataType::Float32 => format!("{:?}", a.as_primitive::<arrow::datatypes::Float32Type>().value(i)),
        DataType::Float64 => format!("{:?}", a.as_primitive::<arrow::datatypes::Float64Type>().value(i)),
        DataType::Timestamp(unit, _) => {
            let v = cast(a, &DataType::Int64).ok()?.as_primitive::<arrow::datatypes::Int64Type>().value(i);
            let nanos = match unit {
                TimeUnit::Second => i128::from(v) * 1_000_000_000,
                TimeUnit::Millisecond => i128::from(v) * 1_000_000,
                TimeUnit::Microsecond => i128::from(v) * 1_000,
                TimeUnit::Nanosecond => i128::from(v),
            };
            let secs = nanos.div_euclid(1_000_000_000) as i64;
            let sub = nanos.rem_euclid(1_000_000_000) as u32;
            chrono::DateTime::from_timestamp(secs, sub)?.format("%Y-%m-%d %H:%M:%S%.f").to_string()
        }
        _ => {
            let strings = cast(a, &DataType::Utf8).ok()?;
            strings.as_string::<i32>().value(i).to_string()
        }
    };
    (!s.is_empty()).then_some(s)
}

/// One partition of a batch: its directory (`col=value/...`, relative, no trailing `/`)
/// and its rows without the partition columns.
pub(crate) struct Partition {
    pub dir: String,
    pub rows: RecordBatch,
}

/// Splits `batch` by the values of the `columns`, in the order of each value's first
/// row; also returns the partition columns' fields (for the manifest).
///
/// # Errors
/// [`SluiceError::InvalidArgument`] naming a partition column that the batch lacks, that
/// has a type Spark cannot partition by (structs, lists, ...), or when every column would
/// be a partition column.
pub(crate) fn split(batch: &RecordBatch, columns: &[String]) -> Result<(Vec<FieldRef>, Vec<Partition>)> {
    let schema = batch.schema();
    let mut key_idx = Vec::with_capacity(columns.len());
    for c in columns {
        let i = schema.index_of(c).map_err(|_| {
            let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            SluiceError::InvalidArgument(format!("partition column {c:?} is not in the output (its columns: {})", have.join(", ")))
        })?;
        let t = schema.field(i).data_type();
        if !partitionable(t) {
            return Err(SluiceError::InvalidArgument(format!(
                "cannot partition by column {c:?} of type {t}: partition columns must be strings, booleans, numbers, dates or timestamps"
            )));
        }
        key_idx.push(i);
    }
    if key_idx.len() == schema.fields().len() {
        return Err(SluiceError::InvalidArgument(
            "cannot partition by every column of the output: no column would be left for the files".into(),
        ));
    }
    let keep: Vec<usize> = (0..schema.fields().len()).filter(|i| !key_idx.contains(i)).collect();
    let kept_schema = Arc::new(Schema::new(keep.iter().map(|i| schema.field(*i).clone()).collect::<Vec<Field>>()));
    let mut groups: BTreeMap<String, (usize, Vec<u32>)> = BTreeMap::new();
    for row in 0..batch.num_rows() {
        let dir: Vec<String> = key_idx
            .iter()
            .map(|&k| {
                let v = value_string(batch.column(k), row).map_or_else(|| DEFAULT_PARTITION.to_string(), |s| escape(&s));
                format!("{}={v}", escape(schema.field(k).name()))
            })
            .collect();
        let n = groups.len();
        groups.entry(dir.join("/")).or_insert((n, Vec::new())).1.push(row as u32);
    }
    let mut ordered: Vec<(String, (usize, Vec<u32>))> = groups.into_iter().collect();
    ordered.sort_by_key(|(_, (first, _))| *first);
    let mut out = Vec::with_capacity(ordered.len());
    for (dir, (_, rows)) in ordered {
        let idx = UInt32Array::from(rows);
        let cols = keep
            .iter()
            .map(|i| take(batch.column(*i), &idx, None))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| SluiceError::Internal(format!("partitioning a batch: {e}")))?;
        let rows = RecordBatch::try_new_with_options(
            kept_schema.clone(),
            cols,
            &RecordBatchOptions::new().with_row_count(Some(idx.len())),
        )
        .map_err(|e| SluiceError::Internal(format!("partitioning a batch: {e}")))?;
        out.push(Partition { dir, rows });
    }
    let fields = key_idx.iter().map(|i| Arc::new(schema.field(*i).clone())).collect();
    Ok((fields, out))
}

/// The `column=value` directories of a relative file path (`date=2015-09-12/x.json`),
/// unescaped; `None` values are the default partition (null).
pub(crate) fn path_values(rel_path: &str) -> Vec<(String, Option<String>)> {
    let mut segments: Vec<&str> = rel_path.split('/').collect();
    segments.pop(); // the file name
    segments
        .into_iter()
        .filter_map(|s| {
            let (k, v) = s.split_once('=')?;
            let v = (v != DEFAULT_PARTITION).then(|| unescape(v));
            Some((unescape(k), v))
        })
        .collect()
}

/// A column of `rows` copies of the partition value `value` as `field`'s type.
///
/// # Errors
/// [`SluiceError::InvalidArgument`] naming the file (`path`) when the value does not
/// cast to the type.
pub(crate) fn constant_column(field: &Field, value: Option<&str>, rows: usize, path: &str) -> Result<ArrayRef> {
    let strings: ArrayRef = Arc::new(StringArray::from(vec![value; rows]));
    let strict = arrow::compute::CastOptions { safe: false, ..Default::default() };
    // Timestamps are written in UTC: parse them as naive, then tag the field's zone
    // (arrow parses only offset zones without chrono-tz).
    let parse_as = match field.data_type() {
        DataType::Timestamp(unit, Some(_)) => DataType::Timestamp(*unit, None),
        other => other.clone(),
    };
    let parsed = arrow::compute::cast_with_options(&strings, &parse_as, &strict).and_then(|a| {
        if &parse_as == field.data_type() {
            return Ok(a);
        }
        let data = a.to_data().into_builder().data_type(field.data_type().clone()).build()?;
        Ok(arrow::array::make_array(data))
    });
    parsed.map_err(|e| {
        SluiceError::InvalidArgument(format!(
            "{path}: partition value {value:?} of column {:?} is not a {}: {e}",
            field.name(),
            field.data_type()
        ))
    })
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, TimestampMicrosecondArray};

    use super::*;

    #[test]
    fn escaping_is_sparks() {
        assert_eq!(escape("#en.wikipedia"), "%23en.wikipedia");
        assert_eq!(escape("a/b:c=d%"), "a%2Fb%3Ac%3Dd%25");
        assert_eq!(unescape(&escape("x y/#%é")), "x y/#%é");
    }

    #[test]
    fn split_and_read_back() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("channel", DataType::Utf8, true),
            Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
            Field::new("n", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("#en"), None, Some("#en")])),
                Arc::new(TimestampMicrosecondArray::from(vec![0, 1_500_000, 0]).with_timezone("UTC")),
                Arc::new(Int64Array::from(vec![1, 2, 3])),
            ],
        )
        .unwrap();
        let (fields, parts) = split(&batch, &["channel".into(), "t".into()]).unwrap();
        assert_eq!(fields.len(), 2);
        let dirs: Vec<&str> = parts.iter().map(|p| p.dir.as_str()).collect();
        assert_eq!(dirs, ["channel=%23en/t=1970-01-01 00%3A00%3A00", "channel=__HIVE_DEFAULT_PARTITION__/t=1970-01-01 00%3A00%3A01.500"]);
        assert_eq!(parts[0].rows.num_rows(), 2);
        assert_eq!(parts[0].rows.num_columns(), 1);
        let values = path_values(&format!("{}/part-0.json", parts[1].dir));
        assert_eq!(values[0], ("channel".to_string(), None));
        let t = constant_column(&fields[1], values[1].1.as_deref(), 2, "f").unwrap();
        assert_eq!(t.as_primitive::<arrow::datatypes::TimestampMicrosecondType>().value(1), 1_500_000);
        assert!(split(&batch, &["nope".into()]).is_err());
    }
}
