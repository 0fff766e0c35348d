//! The memory connector, for tests and examples (Spark's `MemoryStream` and memory sink).
//!
//! | file | what lives there |
//! |---|---|
//! | `source.rs` | [`MemoryStream`]: frames added by the program, one offset per `add_data` |
//! | `sink.rs` | [`MemorySink`] writing into a queryable [`MemoryTable`]; [`MemorySinkProvider`] (`format("memory")`, the table named by the query name) and its registry of tables by name, [`MemoryTables`] |

mod sink;
mod source;

pub use sink::{MemorySink, MemorySinkProvider, MemoryTable, MemoryTables};
pub use source::MemoryStream;
