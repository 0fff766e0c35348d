//! [`MemoryStream`]: a source fed by the program itself (Spark's `MemoryStream`), for
//! tests and examples. Each `add_data` call is one offset; batches are replayable because
//! the stream keeps every frame it was given.
//!
//! `MemoryStream` keeps Spark's name: it is the handle the program feeds and the
//! provider; the running source of one query run is `MemoryStreamRun`.

use std::sync::{Arc, Mutex};

use polars::prelude::{DataFrame, IntoLazy, SchemaRef, UnionArgs, concat};
use sluice_engine::{EngineSession, Offset, Result, SluiceError, Source, SourceContext, SourceProvider, StreamingDataFrame};

#[derive(Default)]
struct Inner {
    frames: Vec<DataFrame>,
}

/// A stream of data frames added by the program. Offsets are `{"offset": n}`: the number
/// of `add_data` calls included. Clones share the data.
#[derive(Clone)]
pub struct MemoryStream {
    schema: SchemaRef,
    inner: Arc<Mutex<Inner>>,
}

impl MemoryStream {
    /// An empty stream whose frames have `schema`: a `Schema`, as
    /// `read_stream().schema(..)` takes, or a shared `SchemaRef` (e.g. `df.schema().clone()`).
    pub fn new(schema: impl Into<SchemaRef>) -> Self {
        Self { schema: schema.into(), inner: Arc::default() }
    }

    /// Appends one frame (one offset).
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] when the frame's schema differs from the stream's.
    pub fn add_data(&self, df: DataFrame) -> Result<u64> {
        if df.schema().as_ref() != self.schema.as_ref() {
            return Err(SluiceError::InvalidArgument(format!(
                "MemoryStream: frame schema {:?} differs from the stream's {:?}",
                df.schema(),
                self.schema
            )));
        }
        let mut inner = self.inner.lock().expect("memory stream lock");
        inner.frames.push(df);
        Ok(inner.frames.len() as u64)
    }

    /// A streaming data frame reading this stream.
    pub fn to_df(&self, session: &EngineSession) -> StreamingDataFrame {
        session.stream_from(Arc::new(self.clone()))
    }
}

fn offset_of(o: Option<&Offset>) -> Result<usize> {
    match o {
        None => Ok(0),
        Some(v) => v
            .get("offset")
            .and_then(|n| n.as_u64())
            .map(|n| n as usize)
            .ok_or_else(|| SluiceError::Source { name: "MemoryStream".into(), message: format!("bad offset {v}") }),
    }
}

impl SourceProvider for MemoryStream {
    fn description(&self) -> String {
        "MemoryStream".into()
    }
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn create(&self) -> Result<Box<dyn Source>> {
        Ok(Box::new(MemoryStreamRun { stream: self.clone(), available_now: None }))
    }
}

/// One query run of a [`MemoryStream`].
struct MemoryStreamRun {
    stream: MemoryStream,
    available_now: Option<usize>,
}

impl Source for MemoryStreamRun {
    fn description(&self) -> String {
        "MemoryStream".into()
    }
    fn schema(&self) -> SchemaRef {
        self.stream.schema.clone()
    }
    fn prepare_for_available_now(&mut self, _ctx: SourceContext<'_>) -> Result<()> {
        self.available_now = Some(self.stream.inner.lock().expect("memory stream lock").frames.len());
        Ok(())
    }
    fn latest_offset(&mut self, _ctx: SourceContext<'_>, _start: Option<&Offset>, _all: bool) -> Result<Option<Offset>> {
        let n = self.stream.inner.lock().expect("memory stream lock").frames.len();
        let n = self.available_now.map_or(n, |a| a.min(n));
        Ok((n > 0).then(|| serde_json::json!({ "offset": n })))
    }
    fn get_batch(&mut self, _ctx: SourceContext<'_>, start: Option<&Offset>, end: &Offset) -> Result<DataFrame> {
        let (s, e) = (offset_of(start)?, offset_of(Some(end))?);
        let inner = self.stream.inner.lock().expect("memory stream lock");
        if e > inner.frames.len() || s > e {
            return Err(SluiceError::Source {
                name: "MemoryStream".into(),
                message: format!("offsets ({s}, {e}] beyond the {} frames added", inner.frames.len()),
            });
        }
        let frames: Vec<_> = inner.frames[s..e].iter().map(|f| f.clone().lazy()).collect();
        drop(inner);
        if frames.is_empty() {
            return Ok(DataFrame::empty_with_schema(&self.stream.schema));
        }
        Ok(concat(frames, UnionArgs::default())?.collect()?)
    }
}
