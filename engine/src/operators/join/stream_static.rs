//! The stream-static join (Spark's stream-static join): every micro-batch joined with a
//! static Polars frame, inner or left outer with the stream on the left. Stateless.

use polars::prelude::*;

use super::StreamJoinType;
use crate::Result;

/// The per-batch lazy join of a stream with a static frame (inner or left outer, the
/// stream on the left; Spark's null keys never match).
pub fn static_join(stream: LazyFrame, right: &DataFrame, left_on: &[Expr], right_on: &[Expr], how: StreamJoinType) -> Result<LazyFrame> {
    let polars_how = match how {
        StreamJoinType::Inner => polars::prelude::JoinType::Inner,
        StreamJoinType::LeftOuter => polars::prelude::JoinType::Left,
        other => {
            return Err(crate::SluiceError::analysis(format!(
                "a stream-static join supports Inner and LeftOuter with the stream on the left, not {other}: \
                 a static side cannot be outer-joined because the stream never ends"
            )))
        }
    };
    Ok(stream.join(
        right.clone().lazy(),
        left_on.to_vec(),
        right_on.to_vec(),
        JoinArgs::new(polars_how).with_coalesce(JoinCoalesce::KeepColumns),
    ))
}
