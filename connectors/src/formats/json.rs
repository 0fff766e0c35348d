//! JSON lines: decoding with Spark's parse modes and Spark's scalar conversions (the
//! file source), and the writer and whole-file reader (the file sink).
//!
//! ```text
//!  bytes ── split into non-blank lines ── prepare (nesting depth, bare NaN / Infinity)
//!        ── chunks of 8,192 lines ── arrow-json, one object per line, SparkJsonDecoders
//!        ──► rows   (a chunk that fails: bisect to its bad lines; PERMISSIVE keeps the
//!                    fields of a bad line that converted, as Spark 3 does)
//! ```
//!
//! # Values as Spark 3.5 reads them (checked with PySpark 3.5.9, see
//! `tests/oracle/extra/json_values`)
//! * **Nesting depth**: a record nested deeper than [`MAX_JSON_DEPTH`] (1,000, Jackson's
//!   `StreamReadConstraints` default, which Spark 3.5 inherits; the record's own object
//!   counts as 1) is malformed as a whole (all fields null in PERMISSIVE mode). It is
//!   checked by a scan of the bytes before decoding, so no input reaches a recursive
//!   step deeper than that: a line of 30,000 nested objects is one malformed record, not
//!   a stack overflow.
//! * **Non-numeric numbers** (`allowNonNumericNumbers`, on by default): the bare tokens
//!   `NaN`, `Infinity`, `+Infinity`, `-Infinity`, `+INF`, `-INF` are numbers (not `INF`,
//!   not `nan`); so are the strings `"NaN"`, `"Infinity"`, `"+Infinity"`, `"+INF"`,
//!   `"-Infinity"`, `"-INF"` in a float column. `1e400` is `Infinity`, `1e-400` is 0.
//!   A bare token in any other column is what Spark makes of it: malformed in an integer
//!   column, the text `"NaN"` (quotes included, Jackson's spelling) in a string column.
//! * **Strings**: a string column takes any JSON value. An object or array is kept as its
//!   compact JSON text (`{"a":1,"b":[true,null]}`), written as Jackson writes it: no
//!   whitespace, floats as Java's `Double.toString` (`1.50` → `1.5`, `1e3` → `1000.0`,
//!   `1e10` → `1.0E10`), integers as written, strings with `"`, `\` and control
//!   characters escaped. A bare number, `true` or `false` is its text (floats spelt as
//!   Java does, so `12.50` → `"12.5"`).
//!
//! Bare non-numeric tokens are rewritten, before arrow-json sees the line, into strings
//! marked with a leading NUL character (`"\u0000NaN"`), which the decoders here read as
//! the number; a genuine string starting with an escaped NUL followed by exactly `NaN`,
//! `Infinity` or `-Infinity` is read the same way.

use std::borrow::Cow;
use std::io::{Seek, Write};
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::timezone::Tz;
use arrow::array::types::{
    ArrowTimestampType, Float32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt32Type, UInt64Type,
};
use arrow::array::{Array, ArrayRef, ArrowPrimitiveType, AsArray, PrimitiveBuilder, RecordBatch, StringBuilder};
use arrow::compute::kernels::cast_utils::string_to_datetime;
use arrow::datatypes::{DataType as ArrowDataType, FieldRef, SchemaRef as ArrowSchemaRef, TimeUnit as ArrowTimeUnit};
use arrow::error::ArrowError;
use arrow::json::reader::{ArrayDecoder, DecoderContext, DecoderFactory, Tape, TapeElement};
use arrow::json::writer::{Encoder, EncoderFactory, EncoderOptions, NullableEncoder};
use sluice_engine::Result;

use super::records::{Decoded, Piece, RecordDecoding, UTF8_BOM, bisect, is_blank, null_row};
use super::{FileError, WRITE_TIMESTAMP_FORMAT};

/// Non-blank JSON lines decoded together on the fast path.
const JSON_CHUNK_LINES: usize = 8192;

/// The deepest nesting of objects and arrays a record may have, the record's own object
/// counting as 1: Jackson's default `maxNestingDepth`, which Spark 3.5 inherits (a record
/// at depth 1,001 is malformed in Spark too).
pub const MAX_JSON_DEPTH: usize = 1000;

/// The leading character of a string that stands for a bare non-numeric token.
const NON_NUMERIC_MARK: char = '\0';

/// The bare tokens Jackson reads as numbers with `allowNonNumericNumbers` (Spark's
/// default), and the canonical name each is rewritten to.
const BARE_NON_NUMERIC: [(&[u8], &str); 6] = [
    (b"NaN", "NaN"),
    (b"Infinity", "Infinity"),
    (b"+Infinity", "Infinity"),
    (b"+INF", "Infinity"),
    (b"-Infinity", "-Infinity"),
    (b"-INF", "-Infinity"),
];

/// Checks one JSON text before it is decoded: fails when it nests deeper than
/// [`MAX_JSON_DEPTH`]; rewrites the bare non-numeric tokens outside strings (see the
/// module docs) into marked strings. Borrowed when there is nothing to rewrite (the
/// usual case: one pass over the bytes, no copy).
///
/// # Errors
/// A message saying the nesting is too deep.
pub(crate) fn prepare(text: &[u8]) -> std::result::Result<Cow<'_, [u8]>, String> {
    if !may_need_preparing(text, true) {
        return Ok(Cow::Borrowed(text));
    }
    prepare_exactly(text)
}

/// [`prepare`] without the quick test: one pass over the bytes outside strings.
fn prepare_exactly(text: &[u8]) -> std::result::Result<Cow<'_, [u8]>, String> {
    let (mut depth, mut bare, mut i) = (0usize, false, 0usize);
    while i < text.len() {
        match text[i] {
            // A string's body is skipped with memchr (SIMD) to its closing quote or next
            // escape: most of a record's bytes are in strings, and only the few bytes
            // outside them can open a level or be a bare token.
            b'"' => {
                i += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', text.get(i..).unwrap_or_default()) {
                        Some(k) if text[i + k] == b'\\' => i += k + 2,
                        Some(k) => {
                            i += k + 1;
                            break;
                        }
                        None => {
                            i = text.len();
                            break;
                        }
                    }
                }
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(format!(
                        "JSON nesting deeper than {MAX_JSON_DEPTH} levels (Spark's and Jackson's limit)"
                    ));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'N' | b'I' | b'+' => bare = true,
            _ => {}
        }
        i += 1;
    }
    if !bare {
        return Ok(Cow::Borrowed(text));
    }
    let mut out = Vec::with_capacity(text.len() + 16);
    let (mut i, mut in_string, mut escaped) = (0, false, false);
    'bytes: while i < text.len() {
        let b = text[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if matches!(b, b'N' | b'I' | b'+' | b'-') {
            for (token, name) in BARE_NON_NUMERIC {
                let end = i + token.len();
                let whole = text[i..].starts_with(token)
                    && text.get(end).is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'.' || *c == b'_'));
                if whole {
                    out.extend_from_slice(b"\"\\u0000");
                    out.extend_from_slice(name.as_bytes());
                    out.push(b'"');
                    i = end;
                    continue 'bytes;
                }
            }
        }
        out.push(b);
        i += 1;
    }
    Ok(Cow::Owned(out))
}

/// Whether [`prepare`] may have work to do on `text`: it is longer than
/// [`MAX_JSON_DEPTH`] bytes (a level takes at least its `{` or `[` byte, so a shorter
/// text cannot nest too deep), or `may_hold_bare` and it holds a byte that can start a
/// bare token (`N`, `I`, `+`). A file's lines pass `may_hold_bare = false` when one memchr
/// scan of the whole file found none of those bytes: most JSON lines files then need
/// nothing per line but a length compare.
fn may_need_preparing(text: &[u8], may_hold_bare: bool) -> bool {
    text.len() > MAX_JSON_DEPTH || (may_hold_bare && memchr::memchr3(b'N', b'I', b'+', text).is_some())
}

/// The number a marked string of [`prepare`] stands for.
fn marked_non_numeric(s: &str) -> Option<&str> {
    s.strip_prefix(NON_NUMERIC_MARK).filter(|t| matches!(*t, "NaN" | "Infinity" | "-Infinity"))
}

fn json_builder(schema: &ArrowSchemaRef, lenient: bool, batch_size: usize) -> arrow::json::ReaderBuilder {
    arrow::json::ReaderBuilder::new(schema.clone())
        .with_coerce_primitive(true)
        .with_ignore_type_conflicts(lenient)
        .with_decoder_factory(Arc::new(SparkJsonDecoders))
        .with_batch_size(batch_size)
}

/// Decodes [`prepare`]d texts that must each hold exactly one JSON object; any error
/// fails them all. Also `from_json`'s decoder.
pub(crate) fn decode_json_lines(
    schema: &ArrowSchemaRef,
    lines: &[&[u8]],
    lenient: bool,
) -> std::result::Result<RecordBatch, ArrowError> {
    let mut decoder = json_builder(schema, lenient, lines.len() + 1).build_decoder()?;
    for line in lines {
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
    let mut chunk: Vec<Line<'_>> = Vec::new();
    let may_hold_bare = memchr::memchr3(b'N', b'I', b'+', bytes).is_some();
    // Lines found by memchr (SIMD), as `split` on b'\n' would cut them.
    let mut start = 0;
    for (i, end) in memchr::memchr_iter(b'\n', bytes).chain(std::iter::once(bytes.len())).enumerate() {
        let raw = &bytes[start..end];
        start = end + 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if is_blank(line) {
            continue;
        }
        let prepared = if may_need_preparing(line, may_hold_bare) { prepare_exactly(line) } else { Ok(Cow::Borrowed(line)) };
        let prepared = match prepared {
            Ok(p) => p,
            Err(message) => {
                // Malformed as a whole, in its place among the rows.
                if !chunk.is_empty() {
                    decode_chunk(how, path, &chunk, &mut out)?;
                    chunk.clear();
                }
                how.malformed(&mut out, path, i + 1, message, line, || null_row(how.schema))?;
                continue;
            }
        };
        chunk.push(Line { number: i + 1, raw: line, prepared });
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

/// A non-blank line of a file: its 1-based number, its bytes, and its [`prepare`]d text.
struct Line<'a> {
    number: usize,
    raw: &'a [u8],
    prepared: Cow<'a, [u8]>,
}

fn decode_chunk(how: &RecordDecoding<'_>, path: &str, lines: &[Line<'_>], out: &mut Decoded) -> Result<()> {
    let schema = how.schema;
    let decode = |part: &[Line<'_>]| {
        let texts: Vec<&[u8]> = part.iter().map(|l| l.prepared.as_ref()).collect();
        decode_json_lines(schema, &texts, false).map(|b| vec![b])
    };
    bisect(lines, &decode, &mut |piece| match piece {
        Piece::Good(batches) => {
            batches.into_iter().for_each(|b| out.push_good(b, how.keep_corrupt));
            Ok(())
        }
        // Spark 3: keep the fields that converted. The raw record is the line as read.
        Piece::Bad(line, e) => how.malformed(out, path, line.number, e.to_string(), line.raw, || {
            decode_json_lines(schema, &[line.prepared.as_ref()], true)
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
        .with_encoder_factory(Arc::new(SparkJsonEncoders))
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
    // The sink's own decoders, so that `"NaN"` and `"Infinity"` read back as floats.
    let reader = json_builder(&schema, false, 8192).build(input).map_err(FileError::format)?;
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>().map_err(FileError::format)?;
    Ok((schema, batches))
}

/// Encoders following Spark's JSON writer where arrow-json differs: a float that is not
/// finite is written as the string `"NaN"`, `"Infinity"` or `"-Infinity"` (Jackson's
/// `QUOTE_NON_NUMERIC_NUMBERS`), not as null. Used by the file sink and `to_json`.
#[derive(Debug)]
pub(crate) struct SparkJsonEncoders;

impl EncoderFactory for SparkJsonEncoders {
    fn make_default_encoder<'a>(
        &self,
        _field: &'a FieldRef,
        array: &'a dyn Array,
        _options: &'a EncoderOptions,
    ) -> std::result::Result<Option<NullableEncoder<'a>>, ArrowError> {
        let encoder: Box<dyn Encoder + 'a> = match array.data_type() {
            ArrowDataType::Float64 => Box::new(FloatEncoder(array.as_primitive::<Float64Type>().values().clone())),
            ArrowDataType::Float32 => Box::new(FloatEncoder(array.as_primitive::<Float32Type>().values().clone())),
            _ => return Ok(None),
        };
        Ok(Some(NullableEncoder::new(encoder, array.nulls().cloned())))
    }
}

struct FloatEncoder<T: arrow::datatypes::ArrowNativeType>(arrow::buffer::ScalarBuffer<T>);

impl<T: arrow::datatypes::ArrowNativeType + Into<f64>> Encoder for FloatEncoder<T> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        let v: f64 = self.0[idx].into();
        match v {
            v if v.is_nan() => out.extend_from_slice(b"\"NaN\""),
            f64::INFINITY => out.extend_from_slice(b"\"Infinity\""),
            f64::NEG_INFINITY => out.extend_from_slice(b"\"-Infinity\""),
            // serde_json spells finite floats as the shortest text that reads back exactly.
            v => {
                let _ = serde_json::to_writer(&mut *out, &v);
            }
        }
    }
}

/// Decoders following Spark's JSON conversions where arrow-json differs, and naming the
/// column in every conversion error:
/// * strings take any JSON value: objects and arrays as their compact JSON text, numbers
///   and booleans as their text (see the module docs);
/// * integers accept only integral JSON numbers (`1.5` is malformed, not truncated);
/// * floats accept numbers, the bare non-numeric tokens, and the strings `NaN`,
///   `Infinity`, `+Infinity`, `+INF`, `-Infinity`, `-INF`;
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
            ArrowDataType::Utf8 | ArrowDataType::LargeUtf8 | ArrowDataType::Utf8View => {
                Box::new(StringDecoder { data_type: dt })
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
            TapeElement::String(i) if non_numeric => {
                let s = tape.get_string(i);
                match marked_non_numeric(s).unwrap_or(s) {
                    "NaN" => "NaN".parse().ok(),
                    "Infinity" | "+Infinity" | "+INF" => "inf".parse().ok(),
                    "-Infinity" | "-INF" => "-inf".parse().ok(),
                    _ => None,
                }
            }
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


/// String columns: any JSON value, as Spark keeps it (see the module docs).
struct StringDecoder {
    data_type: ArrowDataType,
}

impl ArrayDecoder for StringDecoder {
    fn decode(&mut self, tape: &Tape<'_>, pos: &[u32]) -> std::result::Result<ArrayRef, ArrowError> {
        let mut builder = StringBuilder::with_capacity(pos.len(), pos.len() * 16);
        let mut text = String::new();
        for &p in pos {
            match tape.get(p) {
                TapeElement::Null => builder.append_null(),
                TapeElement::String(i) => {
                    let s = tape.get_string(i);
                    match marked_non_numeric(s) {
                        // Jackson writes a non-numeric number quoted.
                        Some(name) => builder.append_value(format!("\"{name}\"")),
                        None => builder.append_value(s),
                    }
                }
                _ => {
                    text.clear();
                    write_compact_json(tape, p, &mut text);
                    builder.append_value(&text);
                }
            }
        }
        let array: ArrayRef = Arc::new(builder.finish());
        if &self.data_type == array.data_type() {
            Ok(array)
        } else {
            arrow::compute::cast(&array, &self.data_type)
        }
    }
}

/// Appends the value at `start` as compact JSON, as Jackson's `copyCurrentStructure`
/// writes it. A loop over the flat tape with a stack of open containers: never recursive,
/// whatever the nesting.
fn write_compact_json(tape: &Tape<'_>, start: u32, out: &mut String) {
    // Per open container: whether it is an object, and how many tokens it holds so far.
    let mut open: Vec<(bool, usize)> = Vec::new();
    let mut p = start;
    loop {
        let element = tape.get(p);
        let closing = matches!(element, TapeElement::EndObject(_) | TapeElement::EndList(_));
        if !closing {
            if let Some((is_object, n)) = open.last_mut() {
                if *is_object && *n % 2 == 1 {
                    out.push(':');
                } else if *n > 0 {
                    out.push(',');
                }
                *n += 1;
            }
        }
        let mut next = p + 1;
        match element {
            TapeElement::StartObject(_) => {
                out.push('{');
                open.push((true, 0));
            }
            TapeElement::StartList(_) => {
                out.push('[');
                open.push((false, 0));
            }
            TapeElement::EndObject(_) => {
                out.push('}');
                open.pop();
            }
            TapeElement::EndList(_) => {
                out.push(']');
                open.pop();
            }
            TapeElement::String(i) => {
                let s = tape.get_string(i);
                match marked_non_numeric(s) {
                    Some(name) => {
                        out.push('"');
                        out.push_str(name);
                        out.push('"');
                    }
                    None => write_json_string(s, out),
                }
            }
            TapeElement::Number(i) => write_java_number(tape.get_string(i), out),
            TapeElement::True => out.push_str("true"),
            TapeElement::False => out.push_str("false"),
            TapeElement::Null => out.push_str("null"),
            // Only in tapes built from Rust values, never from text; the value is not
            // needed for a text column's copy.
            TapeElement::I64(_) | TapeElement::F64(_) => {
                out.push_str("null");
                next = p + 2;
            }
            _ => out.push_str("null"),
        }
        if open.is_empty() {
            return;
        }
        p = next;
    }
}

/// A JSON string literal as Jackson writes it: `"` and `\\` escaped, control characters
/// as `\\n`-style escapes or `\\u00XX`, everything else as is.
fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                use std::fmt::Write as _;
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON number as Jackson copies it: an integer as written, a float (a fraction or an
/// exponent) through `f64` and spelt as Java's `Double.toString` (`1.5`, `1000.0`,
/// `1.0E10`, `1.0E-5`; `"Infinity"` quoted when it overflows).
fn write_java_number(raw: &str, out: &mut String) {
    if !raw.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        out.push_str(if raw == "-0" { "0" } else { raw });
        return;
    }
    match raw.parse::<f64>() {
        Ok(v) => out.push_str(&java_double(v)),
        Err(_) => out.push_str(raw),
    }
}

/// Java's `Double.toString` spelling of `v`, from the shortest digits that read back as
/// `v`: plain decimal with at least one fraction digit for 10^-3 <= |v| < 10^7,
/// otherwise `d.dddE<exp>`; non-finite values quoted as Jackson writes them.
fn java_double(v: f64) -> String {
    if v.is_nan() {
        return "\"NaN\"".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "\"Infinity\"".into() } else { "\"-Infinity\"".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    let abs = v.abs();
    if (1e-3..1e7).contains(&abs) {
        let s = format!("{v}");
        return if s.contains('.') { s } else { format!("{s}.0") };
    }
    let s = format!("{v:e}");
    let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
    let mantissa = if mantissa.contains('.') { mantissa.to_string() } else { format!("{mantissa}.0") };
    format!("{mantissa}E{exponent}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_bounds_depth_and_marks_bare_non_numeric_tokens() {
        let deep = format!("{{\"s\": {}1{}}}", "[".repeat(999), "]".repeat(999));
        assert!(prepare(deep.as_bytes()).is_ok(), "1,000 levels with the record");
        let deeper = format!("{{\"s\": {}1{}}}", "[".repeat(1000), "]".repeat(1000));
        assert!(prepare(deeper.as_bytes()).unwrap_err().contains("deeper than 1000"));
        let quoted = br#"{"s": "[[[[NaN Infinity", "t": "\"{"}"#;
        assert!(matches!(prepare(quoted).unwrap(), Cow::Borrowed(_)), "tokens in strings are left alone");
        // An escaped backslash ends before the closing quote; brackets after it count.
        let escaped = format!(r#"{{"s": "a\\", "t": {}1{}}}"#, "[".repeat(1000), "]".repeat(1000));
        assert!(prepare(escaped.as_bytes()).unwrap_err().contains("deeper than 1000"));
        let escaped_quote = format!(r#"{{"s": "a\" {}"}}"#, "[".repeat(1001));
        assert!(prepare(escaped_quote.as_bytes()).is_ok(), "an escaped quote does not close the string");
        for unterminated in [&br#"{"s": "abc"#[..], br#"{"s": "abc\"#, br#"{"s": "\"#, br#"""#, br"\"] {
            assert!(matches!(prepare(unterminated).unwrap(), Cow::Borrowed(_)), "left to the decoder to reject");
        }
        let after_string = br#"{"s": "x", "v": NaN}"#;
        assert!(matches!(prepare(after_string).unwrap(), Cow::Owned(_)), "a bare token after a string is found");
        let bare = br#"{"a": NaN, "b": [-INF, +Infinity, 1e+5], "c": INF, "d": NaNa}"#;
        let p = prepare(bare).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&p),
            r#"{"a": "\u0000NaN", "b": ["\u0000-Infinity", "\u0000Infinity", 1e+5], "c": INF, "d": NaNa}"#
        );
    }

    #[test]
    fn java_spelling_of_doubles() {
        for (v, s) in [
            (1.5, "1.5"),
            (1000.0, "1000.0"),
            (1e7, "1.0E7"),
            (1e10, "1.0E10"),
            (1.25e-5, "1.25E-5"),
            (0.001, "0.001"),
            (-2.0, "-2.0"),
            (0.0, "0.0"),
        ] {
            assert_eq!(java_double(v), s, "{v}");
        }
    }
}
