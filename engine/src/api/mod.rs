//! What users call: the [`EngineSession`], its [`DataStreamReader`] and static
//! [`DataFrameReader`], the
//! [`StreamingDataFrame`] transformations, the [`DataStreamWriter`] that starts a query,
//! the streaming [`functions`] (`window`, `session_window`, `interval`) and the output
//! modes and triggers ([`modes`]).

pub mod dataframe;
pub mod functions;
pub mod modes;
pub mod reader;
pub mod static_reader;
pub mod session;
pub mod writer;

pub use dataframe::{GroupedStreamingDataFrame, StreamingDataFrame};
pub use functions::{
    approx_count_distinct, collect_list, collect_set, count_if, first_value, interval, last_value, max_by, min_by,
    session_window, stddev, stddev_pop, stddev_samp, var_pop, var_samp, variance, window, window_time,
};
pub use modes::{OutputMode, Trigger};
pub use reader::DataStreamReader;
pub use static_reader::DataFrameReader;
pub use session::EngineSession;
pub use writer::{CheckpointLocation, DataStreamWriter};
