//! Time: Spark interval strings ([`interval`]), event time as operators compare it with
//! watermarks ([`event_time`]), the query's watermark ([`watermark`]) and the clock that
//! stamps batches with their processing time ([`clock`]).

pub mod clock;
pub mod event_time;
pub mod interval;
pub mod watermark;

pub use clock::{Clock, ManualClock, SystemClock};
pub use event_time::EventTimeColumn;
pub use interval::{parse_interval_micros, parse_interval_ms};
