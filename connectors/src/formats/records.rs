//! What JSON lines and CSV decoding share: Spark's parse modes ([`ParseMode`]), the rows
//! decoded from one file with the raw text of its malformed records, and [`bisect`],
//! which isolates malformed records.
//!
//! # Why bisection
//! Files are decoded whole first (the fast path); only a run of records that fails is
//! split in halves until its bad records stand alone, so clean input costs one pass and a
//! file with a few bad records a few extra decodes, not one decode per record.

use std::str::FromStr;

use arrow::array::{RecordBatch, RecordBatchOptions, new_null_array};
use arrow::datatypes::SchemaRef as ArrowSchemaRef;
use arrow::error::ArrowError;
use sluice_engine::{Result, SluiceError};

/// The UTF-8 byte-order mark, skipped at the start of JSON and CSV files.
pub(crate) const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Rows per arrow batch when decoding CSV and Parquet.
pub(crate) const BATCH_ROWS: usize = 8192;

/// What to do with a record that cannot be parsed (Spark's option `mode`, JSON and CSV).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParseMode {
    /// `PERMISSIVE` (default): keep the row; fields that could not be read are null and the
    /// raw record goes to the corrupt-record column (option `columnNameOfCorruptRecord`).
    #[default]
    Permissive,
    /// `DROPMALFORMED`: drop the row.
    DropMalformed,
    /// `FAILFAST`: fail the batch with [`SluiceError::MalformedRecord`].
    FailFast,
}

impl ParseMode {
    /// Spark's name of the mode: `PERMISSIVE`, `DROPMALFORMED`, `FAILFAST`.
    pub fn name(self) -> &'static str {
        match self {
            ParseMode::Permissive => "PERMISSIVE",
            ParseMode::DropMalformed => "DROPMALFORMED",
            ParseMode::FailFast => "FAILFAST",
        }
    }
}

impl FromStr for ParseMode {
    type Err = SluiceError;
    /// Parses Spark's mode names, case-insensitively.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] for any other name.
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_uppercase().as_str() {
            "PERMISSIVE" => Ok(ParseMode::Permissive),
            "DROPMALFORMED" => Ok(ParseMode::DropMalformed),
            "FAILFAST" => Ok(ParseMode::FailFast),
            _ => Err(SluiceError::InvalidArgument(format!(
                "option mode: {s:?} is not a parse mode (PERMISSIVE, DROPMALFORMED or FAILFAST)"
            ))),
        }
    }
}

/// How the records of a JSON or CSV file are decoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordDecoding<'a> {
    /// The columns decoded (the corrupt-record column excluded), all nullable.
    pub schema: &'a ArrowSchemaRef,
    /// What to do with malformed records.
    pub mode: ParseMode,
    /// Whether to keep the raw text of malformed records (a corrupt-record column is
    /// configured).
    pub keep_corrupt: bool,
}

impl RecordDecoding<'_> {
    /// Handles one malformed record (`line` is 1-based): fails in FAILFAST mode, drops
    /// it in DROPMALFORMED mode, and in PERMISSIVE mode keeps `row` (the fields that
    /// converted) with its raw text.
    pub fn malformed(
        &self,
        out: &mut Decoded,
        path: &str,
        line: usize,
        message: String,
        raw: &[u8],
        row: impl FnOnce() -> RecordBatch,
    ) -> Result<()> {
        match self.mode {
            ParseMode::FailFast => Err(SluiceError::MalformedRecord { path: path.to_string(), line, message }),
            ParseMode::DropMalformed => Ok(()),
            ParseMode::Permissive => {
                out.push_bad(row(), raw, self.keep_corrupt);
                Ok(())
            }
        }
    }
}

/// Rows decoded from one file: data columns, plus per row the raw text of a malformed
/// record (tracked only with a corrupt-record column).
#[derive(Default)]
pub(crate) struct Decoded {
    pub batches: Vec<RecordBatch>,
    pub corrupt: Vec<Option<String>>,
}

impl Decoded {
    /// Well-formed rows.
    pub fn push_good(&mut self, batch: RecordBatch, track: bool) {
        if track {
            self.corrupt.extend(std::iter::repeat_n(None, batch.num_rows()));
        }
        self.batches.push(batch);
    }
    /// The row kept for a malformed record, and its raw text.
    pub fn push_bad(&mut self, row: RecordBatch, raw: &[u8], track: bool) {
        if track {
            self.corrupt.push(Some(String::from_utf8_lossy(raw).into_owned()));
        }
        self.batches.push(row);
    }
}

/// A one-row batch of nulls.
pub(crate) fn null_row(schema: &ArrowSchemaRef) -> RecordBatch {
    let columns = schema.fields().iter().map(|f| new_null_array(f.data_type(), 1)).collect();
    RecordBatch::try_new_with_options(schema.clone(), columns, &RecordBatchOptions::new().with_row_count(Some(1)))
        .unwrap_or_else(|_| RecordBatch::new_empty(schema.clone()))
}

pub(crate) fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

pub(crate) fn trim_eol(raw: &[u8]) -> &[u8] {
    let mut end = raw.len();
    while end > 0 && (raw[end - 1] == b'\n' || raw[end - 1] == b'\r') {
        end -= 1;
    }
    &raw[..end]
}

/// A result of [`bisect`]: rows decoded from a run of good records, or one bad record.
pub(crate) enum Piece<'a, T> {
    Good(Vec<RecordBatch>),
    Bad(&'a T, ArrowError),
}

/// Decodes `items` with `decode`; a run that fails is split in halves until its bad
/// records are isolated (see the module docs). `visit` sees the pieces in input order
/// (FAILFAST stops at the first).
pub(crate) fn bisect<'a, T>(
    items: &'a [T],
    decode: &impl Fn(&[T]) -> std::result::Result<Vec<RecordBatch>, ArrowError>,
    visit: &mut impl FnMut(Piece<'a, T>) -> Result<()>,
) -> Result<()> {
    match decode(items) {
        Ok(batches) => visit(Piece::Good(batches)),
        Err(e) if items.len() == 1 => visit(Piece::Bad(&items[0], e)),
        Err(_) if items.is_empty() => Ok(()),
        Err(_) => {
            let (left, right) = items.split_at(items.len() / 2);
            bisect(left, decode, visit)?;
            bisect(right, decode, visit)
        }
    }
}
