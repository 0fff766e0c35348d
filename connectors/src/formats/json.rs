//! JSON lines: decoding with Spark's parse modes and Spark's scalar conversions (the
//! file source), and the writer and whole-file reader (the file sink).
//!
//! ```text
//!  bytes ── split into non-blank lines ── chunks of 8,192 lines ── arrow-json, one
//!  object per line, SparkJsonDecoders ──► rows   (a chunk that fails: bisect to its bad
//!  lines; PERMISSIVE keeps the fields of a bad line that converted, as Spark 3 does)
//! ```

use std::io::{Seek, Write};
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::timezone::Tz;
use arrow::array::types::{
    ArrowTimestampType, Float32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt32Type, UInt64Type,
};
use arrow::array::{ArrayRef, ArrowPrimitiveType, PrimitiveBuilder, RecordBatch};
use arrow::compute::kernels::cast_utils::string_to_datetime;
use arrow::datatypes::{DataType as ArrowDataType, FieldRef, SchemaRef as ArrowSchemaRef, TimeUnit as ArrowTimeUnit};
use arrow::error::ArrowError;
use arrow::json::reader::{ArrayDecoder, DecoderContext, DecoderFactory, Tape, TapeElement};
use sluice_engine::Result;

use super::records::{Decoded, Piece, RecordDecoding, UTF8_BOM, bisect, is_blank, null_row};
use super::{FileError, WRITE_TIMESTAMP_FORMAT};

/// Non-blank JSON lines decoded together on the fast path.
const JSON_CHUNK_LINES: usize = 8192;

fn json_builder(schema: &ArrowSchemaRef, lenient: bool, batch_size: usize) -> arrow::json::ReaderBuilder {
    arrow::json::ReaderBuilder::new(schema.clone())
        .with_coerce_primitive(true)
        .with_ignore_type_conflicts(lenient)
        .with_decoder_factory(Arc::new(SparkJsonDecoders))
        .with_batch_size(batch_size)
}

/// Decodes lines that must each hold exactly one JSON object; any error fails them all.
fn decode_json_lines(
    schema: &ArrowSchemaRef,
    lines: &[(usize, &[u8])],
    lenient: bool,
) -> std::result::Result<RecordBatch, ArrowError> {
    let mut decoder = json_builder(schema, lenient, lines.len() + 1).build_decoder()?;
    for (_, line) in lines {
        let before = decoder.len();
        let read = decoder.decode(line)?;
        if read != line.len() || decoder.has_partial_record() || decoder.len() != before + 1 {
            return Err(ArrowError::JsonError(if decoder.has_partial_record() {
                "incomplete JSON value (a record must fit on one line)".into()
            } else {
                "a line must hold exactly one JSON object".into()
            }));
        }
    }
    Ok(decoder.flush()?.unwrap_or_else(|| RecordBatch::new_empty(schema.clone())))
}

/// Decodes the JSON lines file `path` (its `bytes`) as `how` says.
///
/// # Errors
/// [`sluice_engine::SluiceError::MalformedRecord`] naming the file and 1-based line of the
/// first malformed record in FAILFAST mode.
pub(crate) fn decode(how: &RecordDecoding<'_>, path: &str, bytes: &[u8]) -> Result<Decoded> {
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    let mut out = Decoded::default();
    let mut chunk: Vec<(usize, &[u8])> = Vec::new();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if is_blank(line) {
            continue;
        }
        chunk.push((i + 1, line));
        if chunk.len() == JSON_CHUNK_LINES {
            decode_chunk(how, path, &chunk, &mut out)?;
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        decode_chunk(how, path, &chunk, &mut out)?;
    }
    Ok(out)
}

fn decode_chunk(how: &RecordDecoding<'_>, path: &str, lines: &[(usize, &[u8])], out: &mut Decoded) -> Result<()> {
    let schema = how.schema;
    let decode = |part: &[(usize, &[u8])]| decode_json_lines(schema, part, false).map(|b| vec![b]);
    bisect(lines, &decode, &mut |piece| match piece {
        Piece::Good(batches) => {
            batches.into_iter().for_each(|b| out.push_good(b, how.keep_corrupt));
            Ok(())
        }
        // Spark 3: keep the fields that converted.
        Piece::Bad(&(line_no, line), e) => how.malformed(out, path, line_no, e.to_string(), line, || {
            decode_json_lines(schema, &[(line_no, line)], true)
                .ok()
                .filter(|b| b.num_rows() == 1)
                .unwrap_or_else(|| null_row(schema))
        }),
    })
}

/// Writes `batch` as JSON lines: one object per row, structs as nested objects, null
/// fields omitted (Spark's `ignoreNullFields=true`), timestamps as RFC 3339 UTC strings.
pub(crate) fn write(out: &mut impl Write, batch: &RecordBatch) -> std::result::Result<(), FileError> {
    let mut w = arrow::json::WriterBuilder::new()
        .with_timestamp_tz_format(WRITE_TIMESTAMP_FORMAT.to_string())
        .with_timestamp_format(WRITE_TIMESTAMP_FORMAT.to_string())
        .build::<_, arrow::json::writer::LineDelimited>(out);
    w.write(batch).map_err(FileError::format)?;
    w.finish().map_err(FileError::format)
}

/// Reads a whole JSON lines file with `schema`, or the schema inferred from it.
pub(crate) fn read_all<R: std::io::BufRead + Seek>(
    mut input: R,
    schema: Option<ArrowSchemaRef>,
) -> std::result::Result<(ArrowSchemaRef, Vec<RecordBatch>), FileError> {
    let schema = match schema {
        Some(s) => s,
        None => Arc::new(arrow::json::reader::infer_json_schema_from_seekable(&mut input, None).map_err(FileError::format)?.0),
    };
    let reader = arrow::json::ReaderBuilder::new(schema.clone()).build(input).map_err(FileError::format)?;
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>().map_err(FileError::format)?;
    Ok((schema, batches))
}

/// Decoders following Spark's JSON conversions where arrow-json is more lenient, and
/// naming the column in every conversion error:
/// * integers accept only integral JSON numbers (`1.5` is malformed, not truncated);
/// * floats accept numbers and the strings `NaN`, `Infinity`, `-Infinity`, `+INF`, `-INF`;
/// * timestamps accept date-time strings (RFC 3339 and the like, naive ones read as UTC)
///   and integral numbers of **seconds** since the epoch.
#[derive(Debug)]
struct SparkJsonDecoders;

impl DecoderFactory for SparkJsonDecoders {
    fn make_default_decoder(
        &self,
        ctx: &DecoderContext,
        field: &FieldRef,
        is_nullable: bool,
    ) -> std::result::Result<Option<Box<dyn ArrayDecoder>>, ArrowError> {
        let lenient = ctx.ignore_type_conflicts();
        let name = field.name().clone();
        let dt = field.data_type().clone();
        let decoder: Box<dyn ArrayDecoder> = match field.data_type() {
            ArrowDataType::Int32 => Box::new(NumberDecoder::<Int32Type>::new(name, dt, lenient, false)),
            ArrowDataType::Int64 => Box::new(NumberDecoder::<Int64Type>::new(name, dt, lenient, false)),
            ArrowDataType::UInt32 => Box::new(NumberDecoder::<UInt32Type>::new(name, dt, lenient, false)),
            ArrowDataType::UInt64 => Box::new(NumberDecoder::<UInt64Type>::new(name, dt, lenient, false)),
            ArrowDataType::Float32 => Box::new(NumberDecoder::<Float32Type>::new(name, dt, lenient, true)),
            ArrowDataType::Float64 => Box::new(NumberDecoder::<Float64Type>::new(name, dt, lenient, true)),
            ArrowDataType::Timestamp(unit, tz) => {
                let tz: Tz = tz.as_deref().unwrap_or("+00:00").parse()?;
                match unit {
                    ArrowTimeUnit::Second => {
                        Box::new(TimestampDecoder::<TimestampSecondType>::new(name, dt, tz, lenient))
                    }
                    ArrowTimeUnit::Millisecond => {
                        Box::new(TimestampDecoder::<TimestampMillisecondType>::new(name, dt, tz, lenient))
                    }
                    ArrowTimeUnit::Microsecond => {
                        Box::new(TimestampDecoder::<TimestampMicrosecondType>::new(name, dt, tz, lenient))
                    }
                    ArrowTimeUnit::Nanosecond => {
                        Box::new(TimestampDecoder::<TimestampNanosecondType>::new(name, dt, tz, lenient))
                    }
                }
            }
            ArrowDataType::Struct(_) => return Ok(None),
            _ => Box::new(NamedDecoder { name, inner: ctx.make_builtin_decoder(field, is_nullable)? }),
        };
        Ok(Some(decoder))
    }
}

/// A builtin decoder whose errors name the column.
struct NamedDecoder {
    name: String,
    inner: Box<dyn ArrayDecoder>,
}

impl ArrayDecoder for NamedDecoder {
    fn decode(&mut self, tape: &Tape<'_>, pos: &[u32]) -> std::result::Result<ArrayRef, ArrowError> {
        self.inner.decode(tape, pos).map_err(|e| ArrowError::JsonError(format!("column {:?}: {e}", self.name)))
    }
}

/// The JSON text of a scalar tape element, for messages.
fn describe(tape: &Tape<'_>, p: u32) -> String {
    match tape.get(p) {
        TapeElement::String(i) => format!("{:?}", tape.get_string(i)),
        TapeElement::Number(i) => tape.get_string(i).to_string(),
        TapeElement::True => "true".into(),
        TapeElement::False => "false".into(),
        TapeElement::StartObject(_) => "an object".into(),
        TapeElement::StartList(_) => "an array".into(),
        _ => "a value".into(),
    }
}

/// Shared loop of the scalar decoders: `convert` returns `None` for a value that does not
/// convert, which is an error (or null when lenient).
fn decode_scalars<T: ArrowPrimitiveType>(
    name: &str,
    data_type: &ArrowDataType,
    lenient: bool,
    tape: &Tape<'_>,
    pos: &[u32],
    mut convert: impl FnMut(TapeElement, &Tape<'_>) -> Option<T::Native>,
) -> std::result::Result<ArrayRef, ArrowError> {
    let mut builder = PrimitiveBuilder::<T>::with_capacity(pos.len()).with_data_type(data_type.clone());
    for &p in pos {
        let element = tape.get(p);
        if let TapeElement::Null = element {
            builder.append_null();
            continue;
        }
        match convert(element, tape) {
            Some(v) => builder.append_value(v),
            None if lenient => builder.append_null(),
            None => {
                return Err(ArrowError::JsonError(format!(
                    "column {name:?}: {} is not a valid {data_type}",
                    describe(tape, p)
                )));
            }
        }
    }
    Ok(Arc::new(builder.finish()))
}

/// Integers and floats: only JSON numbers that parse as the column's type (an integer
/// column rejects `1.5`); with `non_numeric` (floats), also Spark's `NaN`, `Infinity`,
/// `-Infinity`, `+INF`, `-INF` strings (`allowNonNumericNumbers`, default true).
struct NumberDecoder<T> {
    name: String,
    data_type: ArrowDataType,
    lenient: bool,
    non_numeric: bool,
    _t: std::marker::PhantomData<fn(T) -> T>,
}

impl<T> NumberDecoder<T> {
    fn new(name: String, data_type: ArrowDataType, lenient: bool, non_numeric: bool) -> Self {
        Self { name, data_type, lenient, non_numeric, _t: std::marker::PhantomData }
    }
}

impl<T> ArrayDecoder for NumberDecoder<T>
where
    T: ArrowPrimitiveType,
    T::Native: FromStr,
{
    fn decode(&mut self, tape: &Tape<'_>, pos: &[u32]) -> std::result::Result<ArrayRef, ArrowError> {
        let non_numeric = self.non_numeric;
        decode_scalars::<T>(&self.name, &self.data_type, self.lenient, tape, pos, |e, tape| match e {
            TapeElement::Number(i) => tape.get_string(i).parse::<T::Native>().ok(),
            TapeElement::String(i) if non_numeric => match tape.get_string(i) {
                "NaN" => "NaN".parse().ok(),
                "Infinity" | "+Infinity" | "INF" | "+INF" => "inf".parse().ok(),
                "-Infinity" | "-INF" => "-inf".parse().ok(),
                _ => None,
            },
            _ => None,
        })
    }
}

struct TimestampDecoder<T> {
    name: String,
    data_type: ArrowDataType,
    tz: Tz,
    lenient: bool,
    _t: std::marker::PhantomData<fn(T) -> T>,
}

impl<T> TimestampDecoder<T> {
    fn new(name: String, data_type: ArrowDataType, tz: Tz, lenient: bool) -> Self {
        Self { name, data_type, tz, lenient, _t: std::marker::PhantomData }
    }
}

impl<T: ArrowTimestampType> ArrayDecoder for TimestampDecoder<T> {
    fn decode(&mut self, tape: &Tape<'_>, pos: &[u32]) -> std::result::Result<ArrayRef, ArrowError> {
        let tz = self.tz;
        decode_scalars::<T>(&self.name, &self.data_type, self.lenient, tape, pos, |e, tape| match e {
            TapeElement::String(i) => {
                let dt = string_to_datetime(&tz, tape.get_string(i)).ok()?;
                match T::UNIT {
                    ArrowTimeUnit::Second => Some(dt.timestamp()),
                    ArrowTimeUnit::Millisecond => Some(dt.timestamp_millis()),
                    ArrowTimeUnit::Microsecond => Some(dt.timestamp_micros()),
                    ArrowTimeUnit::Nanosecond => dt.timestamp_nanos_opt(),
                }
            }
            // Spark reads an integral number as seconds since the epoch.
            TapeElement::Number(i) => {
                let secs = tape.get_string(i).parse::<i64>().ok()?;
                let per_second: i64 = match T::UNIT {
                    ArrowTimeUnit::Second => 1,
                    ArrowTimeUnit::Millisecond => 1_000,
                    ArrowTimeUnit::Microsecond => 1_000_000,
                    ArrowTimeUnit::Nanosecond => 1_000_000_000,
                };
                secs.checked_mul(per_second)
            }
            _ => None,
        })
    }
}

