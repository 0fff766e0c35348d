//! The socket source (Spark's `TextSocketSourceProvider`, `format("socket")`): UTF-8
//! text lines read from a TCP server, for experiments.
//!
//! **Not fault-tolerant**, as in Spark: lines live only in this process's memory
//! between their arrival and the commit of the batch that reads them. After a crash or a
//! restart, lines received but not committed are gone (a replayed batch whose lines are
//! gone is empty, with a warning), and the server is not asked to send anything again.
//! Use it for demos and tests, never for data that matters.
//!
//! ```text
//!  reader thread ── connect host:port ── read_line ──► buffer [(line, received µs)]
//!  offset = number of the last line included (a JSON number, Spark's LongOffset; the
//!           first line of a fresh query is 0; a restarted query numbers new lines after
//!           the checkpoint's last offset)
//!  get_batch (s, e] ── the buffered lines s+1 ..= e;   commit(e) ── drops them
//! ```

use std::io::{BufRead, BufReader};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, RecordBatch, StringViewArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType as ArrowDataType, Field as ArrowField, Schema as ArrowSchema, TimeUnit as ArrowTimeUnit};
use polars::prelude::{DataFrame, DataType, Field, Schema, SchemaRef, TimeUnit};
use serde_json::Value;
use sluice_engine::interop::record_batch_to_df;
use sluice_engine::{
    EngineSession, Offset, Options, Result, SluiceError, Source, SourceContext, SourceFormat, SourceProvider,
    SourceProviderRef, StreamingDataFrame,
};

use crate::without_path_or_schema;

/// The options the socket source reads (Spark's names).
const SOURCE_OPTIONS: &[&str] = &["host", "port", "includeTimestamp"];

/// The schema of socket source batches: `value` String, plus `timestamp` Datetime(µs)
/// (when the line arrived, UTC) with `includeTimestamp`.
pub fn socket_schema(include_timestamp: bool) -> Schema {
    let mut fields = vec![Field::new("value".into(), DataType::String)];
    if include_timestamp {
        fields.push(Field::new("timestamp".into(), DataType::Datetime(TimeUnit::Microseconds, None)));
    }
    Schema::from_iter(fields)
}

/// The `socket` source format of `read_stream().format("socket")`: options `host` and
/// `port` (required), `includeTimestamp` (default false); `load("")`, no user schema.
#[derive(Debug, Clone, Copy, Default)]
pub struct SocketSourceFormat;

impl SourceFormat for SocketSourceFormat {
    /// # Errors
    /// [`SluiceError::InvalidArgument`] for a path, a user schema, a missing `host` or
    /// `port`, or a bad value.
    fn create(&self, path: &str, schema: Option<SchemaRef>, options: &Options) -> Result<SourceProviderRef> {
        without_path_or_schema(
            "the socket source",
            path,
            schema.as_ref(),
            "load(\"\")",
            "the socket source does not support a user-specified schema",
        )?;
        Ok(Arc::new(SocketSourceProvider::from_options(options)?))
    }
    fn known_options(&self) -> &'static [&'static str] {
        SOURCE_OPTIONS
    }
}

/// Typed builder of a socket source, beside `read_stream().format("socket")`; it builds
/// the same options: `SocketSource::new("127.0.0.1", 9999).to_df(&session)`.
#[derive(Debug, Clone)]
pub struct SocketSource {
    options: Options,
}

impl SocketSource {
    /// Lines from `host:port`.
    pub fn new(host: &str, port: u16) -> Self {
        Self { options: Options::new().with("host", host).with("port", port) }
    }
    /// Adds the `timestamp` column: when each line arrived.
    pub fn include_timestamp(mut self, include: bool) -> Self {
        self.options.set("includeTimestamp", include);
        self
    }
    /// The typed provider.
    ///
    /// # Errors
    /// As [`SocketSourceProvider::from_options`].
    pub fn provider(&self) -> Result<SocketSourceProvider> {
        SocketSourceProvider::from_options(&self.options)
    }
    /// The provider to hand to `Session::stream_from`.
    ///
    /// # Errors
    /// As [`SocketSourceProvider::from_options`].
    pub fn build(&self) -> Result<SourceProviderRef> {
        Ok(Arc::new(self.provider()?))
    }
    /// A streaming data frame reading this source in `session`.
    ///
    /// # Errors
    /// As [`SocketSourceProvider::from_options`].
    pub fn to_df(&self, session: &EngineSession) -> Result<StreamingDataFrame> {
        Ok(session.stream_from(self.build()?))
    }
}

/// Creates the running socket source (`SocketStream`) of each query run; each opens its
/// own connection when it starts.
#[derive(Debug, Clone)]
pub struct SocketSourceProvider {
    host: String,
    port: u16,
    include_timestamp: bool,
    schema: SchemaRef,
}

impl SocketSourceProvider {
    /// Checks Spark's options `host` and `port` (required) and `includeTimestamp`
    /// (default false).
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] for a missing `host` or `port`, or a bad value.
    pub fn from_options(options: &Options) -> Result<Self> {
        let host = options
            .get("host")
            .filter(|h| !h.trim().is_empty())
            .ok_or_else(|| SluiceError::InvalidArgument("set a host to read from with option(\"host\", ...)".into()))?;
        let port = options.parse::<u16>("port", "a TCP port number")?.ok_or_else(|| {
            SluiceError::InvalidArgument("set a port to read from with option(\"port\", ...)".into())
        })?;
        let include_timestamp = options.bool("includeTimestamp")?.unwrap_or(false);
        Ok(Self {
            host: host.trim().to_string(),
            port,
            include_timestamp,
            schema: Arc::new(socket_schema(include_timestamp)),
        })
    }
}

impl SourceProvider for SocketSourceProvider {
    fn description(&self) -> String {
        format!("TextSocketV2[host: {}, port: {}]", self.host, self.port)
    }
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn create(&self) -> Result<Box<dyn Source>> {
        Ok(Box::new(SocketStream {
            cfg: self.clone(),
            name: self.description(),
            shared: Arc::default(),
            stream: None,
            base: None,
            trimmed: 0,
            available_now: None,
        }))
    }
}

#[derive(Default)]
struct Received {
    /// Lines not yet committed, oldest first, with their arrival time (µs).
    lines: Vec<(String, i64)>,
    /// Lines received since the connection opened.
    total: u64,
}

/// One query run of a socket source: its connection and the lines received.
struct SocketStream {
    cfg: SocketSourceProvider,
    name: String,
    shared: Arc<Mutex<Received>>,
    /// The connection (shut down when the source is dropped, which ends the reader).
    stream: Option<TcpStream>,
    /// The offset just before the first line of this connection.
    base: Option<i64>,
    /// Lines of this connection dropped by commits.
    trimmed: u64,
    /// `Trigger::AvailableNow`: lines received when the run started.
    available_now: Option<u64>,
}

impl Drop for SocketStream {
    fn drop(&mut self) {
        if let Some(s) = &self.stream {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl SocketStream {
    fn err(&self, message: String) -> SluiceError {
        SluiceError::Source { name: self.name.clone(), message }
    }

    fn received(&self) -> Result<std::sync::MutexGuard<'_, Received>> {
        self.shared.lock().map_err(|_| SluiceError::Internal("socket source buffer lock poisoned".into()))
    }

    fn offset_of(&self, v: Option<&Offset>) -> Result<i64> {
        match v {
            None => Ok(-1),
            Some(v) => v.as_i64().filter(|o| *o >= -1).ok_or_else(|| self.err(format!("bad offset {v}"))),
        }
    }
}

impl Source for SocketStream {
    fn description(&self) -> String {
        self.name.clone()
    }
    fn schema(&self) -> SchemaRef {
        self.cfg.schema.clone()
    }

    /// Connects and starts the reader thread.
    ///
    /// # Errors
    /// [`SluiceError::Source`] naming `host:port` when the connection fails.
    fn initialize(&mut self, _ctx: SourceContext<'_>) -> Result<()> {
        tracing::warn!(source = %self.name, "the socket source is not fault-tolerant: never use it for data that matters");
        let addr = format!("{}:{}", self.cfg.host, self.cfg.port);
        let stream =
            TcpStream::connect((self.cfg.host.as_str(), self.cfg.port)).map_err(|e| self.err(format!("cannot connect to {addr}: {e}")))?;
        let reader = stream.try_clone().map_err(|e| self.err(format!("cannot read from {addr}: {e}")))?;
        let shared = self.shared.clone();
        let name = self.name.clone();
        std::thread::Builder::new()
            .name("sluice-socket-source".into())
            .spawn(move || {
                let mut reader = BufReader::new(reader);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match reader.read_until(b'\n', &mut buf) {
                        Ok(0) => break,
                        Ok(_) => {
                            let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
                            let line = line.strip_suffix(b"\r").unwrap_or(line);
                            let text = String::from_utf8_lossy(line).into_owned();
                            let Ok(mut r) = shared.lock() else { break };
                            r.lines.push((text, now_micros()));
                            r.total += 1;
                        }
                        Err(e) => {
                            tracing::warn!(source = %name, error = %e, "socket source stopped reading");
                            break;
                        }
                    }
                }
            })
            .map_err(|e| self.err(format!("cannot start the reader thread: {e}")))?;
        self.stream = Some(stream);
        Ok(())
    }

    fn prepare_for_available_now(&mut self, _ctx: SourceContext<'_>) -> Result<()> {
        let total = self.received()?.total;
        self.available_now = Some(total);
        Ok(())
    }

    /// The number of the last line received (`Ok(None)` before the first line of a fresh
    /// query).
    fn latest_offset(&mut self, _ctx: SourceContext<'_>, start: Option<&Offset>, _all: bool) -> Result<Option<Offset>> {
        let start_o = self.offset_of(start)?;
        let base = *self.base.get_or_insert(start_o);
        let total = self.received()?.total;
        let total = self.available_now.map_or(total, |a| a.min(total));
        let latest = (base + total as i64).max(start_o);
        if start.is_none() && latest < 0 {
            return Ok(None);
        }
        Ok(Some(Value::from(latest)))
    }

    /// Lines `(start, end]`; empty with a warning when they arrived before a restart.
    fn get_batch(&mut self, _ctx: SourceContext<'_>, start: Option<&Offset>, end: &Offset) -> Result<DataFrame> {
        let (s, e) = (self.offset_of(start)?, self.offset_of(Some(end))?);
        let base = match self.base {
            Some(b) => b,
            None => {
                tracing::warn!(source = %self.name, start = s, end = e,
                    "the socket source cannot replay lines received before a restart; the batch is empty");
                self.base = Some(e);
                e
            }
        };
        let first = s.max(base) - base - self.trimmed as i64; // index in the buffer
        let last = e - base - self.trimmed as i64;
        let (values, micros): (Vec<String>, Vec<i64>) = {
            let r = self.received()?;
            if first < 0 || last < first || last as usize > r.lines.len() {
                if s < base + self.trimmed as i64 {
                    tracing::warn!(source = %self.name, start = s, end = e, "socket lines already dropped; the batch is partial");
                }
                let lo = first.clamp(0, r.lines.len() as i64) as usize;
                let hi = last.clamp(lo as i64, r.lines.len() as i64) as usize;
                r.lines[lo..hi].iter().cloned().unzip()
            } else {
                r.lines[first as usize..last as usize].iter().cloned().unzip()
            }
        };
        let mut fields = vec![ArrowField::new("value", ArrowDataType::Utf8View, false)];
        let mut columns: Vec<ArrayRef> = vec![Arc::new(StringViewArray::from_iter_values(values))];
        if self.cfg.include_timestamp {
            fields.push(ArrowField::new("timestamp", ArrowDataType::Timestamp(ArrowTimeUnit::Microsecond, None), false));
            columns.push(Arc::new(TimestampMicrosecondArray::from(micros)));
        }
        record_batch_to_df(&RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), columns)?)
    }

    /// Drops the lines up to `end`.
    fn commit(&mut self, _ctx: SourceContext<'_>, end: &Offset) -> Result<()> {
        let e = self.offset_of(Some(end))?;
        let Some(base) = self.base else { return Ok(()) };
        let upto = (e - base).max(0) as u64; // lines of this connection now committed
        if upto > self.trimmed {
            let committed = (upto - self.trimmed) as usize;
            let mut r = self.shared.lock().map_err(|_| SluiceError::Internal("socket source buffer lock poisoned".into()))?;
            let n = committed.min(r.lines.len());
            r.lines.drain(..n);
            self.trimmed += n as u64;
        }
        Ok(())
    }

    fn backlog(&self) -> Option<u64> {
        self.shared.lock().ok().map(|r| r.lines.len() as u64)
    }
}
