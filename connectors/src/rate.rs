//! The rate source (Spark's `RateStreamProvider`, `format("rate")`): generates rows of
//! (`timestamp`, `value`) at a fixed rate, for tests and benchmarks.
//!
//! ```text
//!  sources/<i>/0          the creation time (ms since the epoch), logged on the first run
//!  offset = whole seconds since the creation time (a JSON number, Spark's LongOffset)
//!  batch (s, e]           values valueAtSecond(s) .. valueAtSecond(e) - 1, spread evenly
//!                         over the batch's seconds: value v has timestamp
//!                         creation + s·1000 ms + round((v - start) · ms per value)
//! ```
//!
//! With `rampUpTime` (seconds) the rate grows linearly to `rowsPerSecond` over that
//! time (Spark's `valueAtSecond`). Rows come partition by partition as Spark's
//! `numPartitions` splits them: partition `p` holds the values `start + p`,
//! `start + p + numPartitions`, ... (with the default of 1 partition, in value order).
//! Batches are replayable: a batch's rows depend only on its offsets and the logged
//! creation time.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{DataType as ArrowDataType, Field as ArrowField, Schema as ArrowSchema, TimeUnit as ArrowTimeUnit};
use polars::prelude::{DataFrame, DataType, Field, Schema, SchemaRef, TimeUnit};
use serde_json::Value;
use sluice_engine::interop::record_batch_to_df;
use sluice_engine::{
    EngineSession, Offset, Options, Result, SluiceError, Source, SourceContext, SourceFormat, SourceProvider,
    SourceProviderRef, StreamingDataFrame,
};

use crate::without_path_or_schema;

/// The options the rate source reads (Spark's names).
const SOURCE_OPTIONS: &[&str] = &["rowsPerSecond", "rampUpTime", "numPartitions"];

/// The schema of rate source batches: `timestamp` Datetime(µs) (UTC), `value` Int64.
pub fn rate_schema() -> Schema {
    Schema::from_iter([
        Field::new("timestamp".into(), DataType::Datetime(TimeUnit::Microseconds, None)),
        Field::new("value".into(), DataType::Int64),
    ])
}

/// The checked options of a rate source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSourceConfig {
    /// `rowsPerSecond` (default 1): rows per second once ramped up.
    pub rows_per_second: i64,
    /// `rampUpTime` in whole seconds (default 0): time to reach `rowsPerSecond`.
    pub ramp_up_time_seconds: i64,
    /// `numPartitions` (default 1): how rows are interleaved within a batch.
    pub num_partitions: i64,
}

/// Parses Spark's time strings as whole seconds (`JavaUtils.timeStringAsSec`): a number
/// with an optional unit `us`, `ms`, `s`, `m`/`min`, `h`, `d` (default seconds).
fn time_string_as_sec(key: &str, v: &str) -> Result<i64> {
    let t = v.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| SluiceError::InvalidArgument(format!("option {key}: {v:?} is not a time such as 5s or 1m")))?;
    let micros_per: i64 = match unit.trim() {
        "us" => 1,
        "ms" => 1_000,
        "" | "s" => 1_000_000,
        "m" | "min" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        other => {
            return Err(SluiceError::InvalidArgument(format!(
                "option {key}: unknown time unit {other:?} in {v:?} (use us, ms, s, m, min, h or d)"
            )));
        }
    };
    n.checked_mul(micros_per)
        .map(|us| us / 1_000_000)
        .ok_or_else(|| SluiceError::InvalidArgument(format!("option {key}: {v:?} is too large")))
}

impl RateSourceConfig {
    /// Checks Spark's options `rowsPerSecond` (positive), `rampUpTime` (a time string,
    /// `>= 0`, e.g. `5s`) and `numPartitions` (positive); names are case-insensitive.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] naming the option.
    pub fn from_options(options: &Options) -> Result<Self> {
        let positive = |key: &str, default: i64| -> Result<i64> {
            match options.positive_u64(key)? {
                None => Ok(default),
                Some(n) => i64::try_from(n)
                    .map_err(|_| SluiceError::InvalidArgument(format!("option {key}: {n} is too large"))),
            }
        };
        let rows_per_second = positive("rowsPerSecond", 1)?;
        let num_partitions = positive("numPartitions", 1)?;
        let ramp_up_time_seconds =
            options.get("rampUpTime").map(|v| time_string_as_sec("rampUpTime", v)).transpose()?.unwrap_or(0);
        if ramp_up_time_seconds < 0 {
            return Err(SluiceError::InvalidArgument("option rampUpTime must not be negative".into()));
        }
        let cfg = Self { rows_per_second, ramp_up_time_seconds, num_partitions };
        if ramp_up_time_seconds > cfg.max_seconds() {
            return Err(SluiceError::InvalidArgument(format!(
                "integer overflow: the max offset with {rows_per_second} rowsPerSecond is {}, but rampUpTime is \
                 {ramp_up_time_seconds} s",
                cfg.max_seconds()
            )));
        }
        Ok(cfg)
    }

    /// The largest offset (seconds) whose value fits an Int64.
    fn max_seconds(&self) -> i64 {
        i64::MAX / self.rows_per_second
    }

    /// The first value of second `seconds` (Spark's `valueAtSecond`): the number of rows
    /// generated in the first `seconds` seconds.
    pub fn value_at_second(&self, seconds: i64) -> i64 {
        let seconds = i128::from(seconds);
        let rps = i128::from(self.rows_per_second);
        let ramp = i128::from(self.ramp_up_time_seconds);
        let speed_delta_per_second = rps / (ramp + 1);
        let ramp_part = |s: i128| {
            if s % 2 == 1 { (s + 1) / 2 * speed_delta_per_second * s } else { s / 2 * speed_delta_per_second * (s + 1) }
        };
        let v = if seconds <= ramp { ramp_part(seconds) } else { ramp_part(ramp) + (seconds - ramp) * rps };
        i64::try_from(v).unwrap_or(i64::MAX)
    }
}

/// The `rate` source format of `read_stream().format("rate")`; `load("")` (no path), no
/// user schema.
#[derive(Debug, Clone, Copy, Default)]
pub struct RateSourceFormat;

impl SourceFormat for RateSourceFormat {
    /// # Errors
    /// [`SluiceError::InvalidArgument`] for a path, a user schema or a bad option.
    fn create(&self, path: &str, schema: Option<SchemaRef>, options: &Options) -> Result<SourceProviderRef> {
        without_path_or_schema(
            "the rate source",
            path,
            schema.as_ref(),
            "load(\"\")",
            "the rate source does not support a user-specified schema",
        )?;
        Ok(Arc::new(RateSourceProvider::new(RateSourceConfig::from_options(options)?)))
    }
    fn known_options(&self) -> &'static [&'static str] {
        SOURCE_OPTIONS
    }
}

/// Typed builder of a rate source, beside `read_stream().format("rate")`; it builds the
/// same options: `RateSource::new(1000).ramp_up_seconds(5).to_df(&session)`.
#[derive(Debug, Clone)]
pub struct RateSource {
    options: Options,
}

impl RateSource {
    /// `rows_per_second` rows per second (at least 1), no ramp-up, one partition.
    pub fn new(rows_per_second: u32) -> Self {
        Self { options: Options::new().with("rowsPerSecond", rows_per_second.max(1)) }
    }
    /// Reaches the rate after `seconds` of linear ramp-up (Spark's `rampUpTime`).
    pub fn ramp_up_seconds(self, seconds: u32) -> Self {
        self.option("rampUpTime", format!("{seconds}s"))
    }
    /// Interleaves rows as Spark's `numPartitions` partitions would (at least 1).
    pub fn num_partitions(self, n: u32) -> Self {
        self.option("numPartitions", n.max(1))
    }
    /// Any option of [`RateSourceConfig::from_options`], by Spark's name.
    pub fn option(mut self, key: &str, value: impl ToString) -> Self {
        self.options.set(key, value);
        self
    }
    /// The typed provider.
    ///
    /// # Errors
    /// As [`RateSourceConfig::from_options`].
    pub fn provider(&self) -> Result<RateSourceProvider> {
        Ok(RateSourceProvider::new(RateSourceConfig::from_options(&self.options)?))
    }
    /// The provider to hand to `Session::stream_from`.
    ///
    /// # Errors
    /// As [`RateSourceConfig::from_options`].
    pub fn build(&self) -> Result<SourceProviderRef> {
        Ok(Arc::new(self.provider()?))
    }
    /// A streaming data frame reading this source in `session`.
    ///
    /// # Errors
    /// As [`RateSourceConfig::from_options`].
    pub fn to_df(&self, session: &EngineSession) -> Result<StreamingDataFrame> {
        Ok(session.stream_from(self.build()?))
    }
}

/// Creates the running rate source (`RateStream`) of each query run, with checked options; built by [`RateSource`] or
/// [`RateSourceFormat`].
#[derive(Debug, Clone)]
pub struct RateSourceProvider {
    cfg: RateSourceConfig,
    schema: SchemaRef,
}

impl RateSourceProvider {
    /// A provider for `cfg`.
    pub fn new(cfg: RateSourceConfig) -> Self {
        Self { cfg, schema: Arc::new(rate_schema()) }
    }
    /// The options.
    pub fn config(&self) -> RateSourceConfig {
        self.cfg
    }
}

impl SourceProvider for RateSourceProvider {
    fn description(&self) -> String {
        format!(
            "RateStreamV2[rowsPerSecond={}, rampUpTimeSeconds={}, numPartitions={}]",
            self.cfg.rows_per_second, self.cfg.ramp_up_time_seconds, self.cfg.num_partitions
        )
    }
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn create(&self) -> Result<Box<dyn Source>> {
        Ok(Box::new(RateStream {
            cfg: self.cfg,
            name: self.description(),
            schema: self.schema.clone(),
            creation_time_ms: None,
            last_time_ms: 0,
            available_now: None,
        }))
    }
}

/// One query run of a rate source.
struct RateStream {
    cfg: RateSourceConfig,
    name: String,
    schema: SchemaRef,
    /// When the query first ran (ms since the epoch), from `sources/<i>/0`.
    creation_time_ms: Option<i64>,
    /// The latest clock reading, never going back.
    last_time_ms: i64,
    /// `Trigger::AvailableNow`: the offset when the run started.
    available_now: Option<i64>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl RateStream {
    fn err(&self, message: String) -> SluiceError {
        SluiceError::Source { name: self.name.clone(), message }
    }

    fn creation_time(&mut self, ctx: SourceContext<'_>) -> Result<i64> {
        if let Some(t) = self.creation_time_ms {
            return Ok(t);
        }
        let log = ctx.checkpoint.log::<Value>(ctx.log_name());
        let t = match log.get(0)? {
            Some(v) => v.as_i64().ok_or_else(|| {
                SluiceError::Checkpoint(sluice_engine::checkpoint::CheckpointError::Corrupt {
                    path: ctx.checkpoint.display_path(&log.path(0)),
                    reason: format!("not the rate source's creation time: {v}"),
                })
            })?,
            None => {
                let now = now_ms();
                log.add(0, &Value::from(now))?;
                now
            }
        };
        self.creation_time_ms = Some(t);
        Ok(t)
    }

    fn seconds(&self, v: Option<&Offset>) -> Result<i64> {
        match v {
            None => Ok(0),
            Some(v) => v.as_i64().filter(|s| *s >= 0).ok_or_else(|| self.err(format!("bad offset {v}"))),
        }
    }

    fn current_seconds(&mut self, creation: i64) -> i64 {
        self.last_time_ms = self.last_time_ms.max(now_ms());
        ((self.last_time_ms - creation) / 1000).max(0)
    }
}

impl Source for RateStream {
    fn description(&self) -> String {
        self.name.clone()
    }
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    /// Reads (or logs) the creation time.
    fn initialize(&mut self, ctx: SourceContext<'_>) -> Result<()> {
        self.creation_time(ctx).map(|_| ())
    }
    fn prepare_for_available_now(&mut self, ctx: SourceContext<'_>) -> Result<()> {
        let creation = self.creation_time(ctx)?;
        self.available_now = Some(self.current_seconds(creation));
        Ok(())
    }
    /// Whole seconds since the creation time (never below `start`).
    fn latest_offset(&mut self, ctx: SourceContext<'_>, start: Option<&Offset>, _all: bool) -> Result<Option<Offset>> {
        let creation = self.creation_time(ctx)?;
        let start = self.seconds(start)?;
        let now = self.current_seconds(creation);
        let end = self.available_now.map_or(now, |a| a.min(now)).max(start);
        Ok(Some(Value::from(end)))
    }
    /// The values of seconds `(start, end]`.
    ///
    /// # Errors
    /// [`SluiceError::Source`] when `end` is before `start` or the value would overflow
    /// an Int64.
    fn get_batch(&mut self, ctx: SourceContext<'_>, start: Option<&Offset>, end: &Offset) -> Result<DataFrame> {
        let creation = self.creation_time(ctx)?;
        let (start_s, end_s) = (self.seconds(start)?, self.seconds(Some(end))?);
        if start_s > end_s {
            return Err(self.err(format!("start second {start_s} is after end second {end_s}")));
        }
        if end_s > self.cfg.max_seconds() {
            return Err(self.err(format!(
                "integer overflow: the max offset with {} rowsPerSecond is {}, but it is {end_s} now",
                self.cfg.rows_per_second,
                self.cfg.max_seconds()
            )));
        }
        // Replays of a restarted query keep the clock at least at the batch's end.
        self.last_time_ms = self.last_time_ms.max(creation.saturating_add(end_s.saturating_mul(1000)));
        let (range_start, range_end) = (self.cfg.value_at_second(start_s), self.cfg.value_at_second(end_s));
        let rows = usize::try_from(range_end - range_start)
            .map_err(|_| self.err(format!("{} rows do not fit in memory", range_end - range_start)))?;
        let local_start_ms = creation + start_s * 1000;
        let ms_per_value = if rows == 0 { 0.0 } else { ((end_s - start_s) * 1000) as f64 / rows as f64 };
        let mut values = Vec::with_capacity(rows);
        let mut micros = Vec::with_capacity(rows);
        for p in 0..self.cfg.num_partitions {
            let mut v = range_start + p;
            while v < range_end {
                // Java's Math.round: half up.
                let relative = ((v - range_start) as f64 * ms_per_value + 0.5).floor() as i64;
                values.push(v);
                micros.push((relative + local_start_ms).saturating_mul(1000));
                v += self.cfg.num_partitions;
            }
        }
        let schema = Arc::new(ArrowSchema::new(vec![
            ArrowField::new("timestamp", ArrowDataType::Timestamp(ArrowTimeUnit::Microsecond, None), false),
            ArrowField::new("value", ArrowDataType::Int64, false),
        ]));
        let columns: Vec<ArrayRef> =
            vec![Arc::new(TimestampMicrosecondArray::from(micros)), Arc::new(Int64Array::from(values))];
        record_batch_to_df(&RecordBatch::try_new(schema, columns)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_engine::checkpoint::Checkpoint;

    fn cfg(pairs: &[(&str, &str)]) -> Result<RateSourceConfig> {
        RateSourceConfig::from_options(&Options::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn value_at_second_ramps_up_like_spark() {
        // Spark's own example: rampUpTime 4 s, 10 rows/s.
        let c = cfg(&[("rowsPerSecond", "10"), ("rampUpTime", "4s")]).unwrap();
        let got: Vec<i64> = (0..=6).map(|s| c.value_at_second(s)).collect();
        assert_eq!(got, [0, 2, 6, 12, 20, 30, 40]);
        let flat = cfg(&[("rowsPerSecond", "7")]).unwrap();
        assert_eq!(flat.value_at_second(3), 21);
    }

    #[test]
    fn options_are_checked() {
        assert!(cfg(&[("rowsPerSecond", "0")]).is_err());
        assert!(cfg(&[("numPartitions", "-1")]).is_err());
        assert!(cfg(&[("rampUpTime", "5 fortnights")]).is_err());
        assert_eq!(cfg(&[("RAMPUPTIME", "2m")]).unwrap().ramp_up_time_seconds, 120);
        assert_eq!(cfg(&[("rampUpTime", "1500ms")]).unwrap().ramp_up_time_seconds, 1);
        assert!(RateSourceFormat.create("x", None, &Options::new()).is_err());
    }

    #[test]
    fn batches_are_deterministic_from_the_logged_creation_time() {
        let ck = Checkpoint::in_memory().unwrap();
        let ctx = SourceContext { checkpoint: &ck, index: 0 };
        ck.log::<Value>("sources/0").add(0, &Value::from(1_000_000i64)).unwrap();
        let src = RateSource::new(4).num_partitions(2).provider().unwrap();
        let mut s = src.create().unwrap();
        s.initialize(ctx).unwrap();
        let df = s.get_batch(ctx, Some(&Value::from(1)), &Value::from(3)).unwrap();
        let values: Vec<i64> = df.column("value").unwrap().i64().unwrap().into_no_null_iter().collect();
        assert_eq!(values, [4, 6, 8, 10, 5, 7, 9, 11], "partition 0's values, then partition 1's");
        let ts: Vec<i64> =
            df.column("timestamp").unwrap().datetime().unwrap().physical().into_no_null_iter().collect();
        // 8 values over 2 s: 250 ms apart, from 1,001,000 ms.
        assert_eq!(ts[0], 1_001_000_000);
        assert_eq!(ts[1], 1_001_500_000);
        assert_eq!(ts[4], 1_001_250_000);
        let again = src.create().unwrap().get_batch(ctx, Some(&Value::from(1)), &Value::from(3)).unwrap();
        assert!(again.equals(&df), "a replay gives the same rows");
        assert_eq!(s.get_batch(ctx, None, &Value::from(0)).unwrap().height(), 0);
        assert!(s.get_batch(ctx, Some(&Value::from(3)), &Value::from(1)).is_err());
    }
}
