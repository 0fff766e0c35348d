//! From what the user wrote to what runs: the [`logical`] plan (built by the DataFrame API
//! and SQL), Spark's [`analysis`] rules for streaming queries, and the [`physical`] plan
//! (stateless Polars steps and the stateful operators) that each micro-batch executes.

pub mod analysis;
pub mod explain;
pub mod logical;
pub mod physical;

pub use logical::LogicalPlan;
pub use physical::PhysicalPlan;
