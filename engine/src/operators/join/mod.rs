//! Joins: stream-stream ([`symmetric_hash`]: Spark's `StreamingSymmetricHashJoinExec`,
//! both sides buffered in state) and stream-static ([`stream_static`]: a per-batch Polars
//! join), with the join types both use ([`StreamJoinType`]) and the solver of each side's
//! state watermark from the join condition ([`condition`]).

pub mod condition;
pub mod stream_static;
pub mod symmetric_hash;

pub use condition::state_value_watermark;
pub use stream_static::static_join;
pub use symmetric_hash::{JoinSide, StreamingJoinPlan, StreamingSymmetricHashJoinExec};

use crate::{Result, SluiceError};

/// How rows of the two sides combine (Spark's join types). Named apart from Polars'
/// `JoinType`, which `polars::prelude::*` brings into scope too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum StreamJoinType {
    /// Matching pairs only.
    Inner,
    /// Matching pairs, plus left rows without a match padded with nulls.
    LeftOuter,
    /// Matching pairs, plus right rows without a match padded with nulls.
    RightOuter,
    /// Matching pairs, plus unmatched rows of both sides padded with nulls.
    FullOuter,
    /// Left rows that have a match, each once, left columns only.
    LeftSemi,
}

impl std::str::FromStr for StreamJoinType {
    type Err = SluiceError;
    /// Spark's names: `inner`, `leftOuter`/`left`, `rightOuter`/`right`,
    /// `fullOuter`/`full`/`outer`, `leftSemi`/`semi` (any case).
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().replace('_', "").as_str() {
            "inner" => StreamJoinType::Inner,
            "left" | "leftouter" => StreamJoinType::LeftOuter,
            "right" | "rightouter" => StreamJoinType::RightOuter,
            "full" | "fullouter" | "outer" => StreamJoinType::FullOuter,
            "leftsemi" | "semi" => StreamJoinType::LeftSemi,
            _ => {
                return Err(SluiceError::InvalidArgument(format!(
                    "unknown join type {s:?}: use inner, leftOuter, rightOuter, fullOuter or leftSemi"
                )))
            }
        })
    }
}

impl std::fmt::Display for StreamJoinType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StreamJoinType::Inner => "Inner",
            StreamJoinType::LeftOuter => "LeftOuter",
            StreamJoinType::RightOuter => "RightOuter",
            StreamJoinType::FullOuter => "FullOuter",
            StreamJoinType::LeftSemi => "LeftSemi",
        })
    }
}

