//! Kafka offsets as Spark writes them: [`TopicPartition`], [`KafkaSourceOffset`] (the
//! JSON logged in `offsets/N` and read back on replay) and [`rate_limit`]
//! (`maxOffsetsPerTrigger` split across partitions by lag).

use std::collections::BTreeMap;
use std::fmt;

use rdkafka::{Offset as KafkaOffset, TopicPartitionList};
use serde_json::Value;
use sluice_engine::{Result, SluiceError};

/// A topic and partition number (Kafka's `TopicPartition`; displayed `topic-3`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// The topic name.
    pub topic: String,
    /// The partition number (0-based).
    pub partition: i32,
}

impl TopicPartition {
    /// `topic`, partition `partition`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self { topic: topic.into(), partition }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

pub(crate) fn tp_list(tps: impl IntoIterator<Item = impl std::borrow::Borrow<TopicPartition>>) -> String {
    let names: Vec<String> = tps.into_iter().map(|t| t.borrow().to_string()).collect();
    format!("[{}]", names.join(", "))
}

/// Offsets per topic partition (Spark's `KafkaSourceOffset`): for each partition, the
/// offset of the next record to read. Its JSON, logged in `offsets/N`, is Spark's:
/// `{"topic":{"0":42,"1":7}}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KafkaSourceOffset {
    /// Next offset per partition.
    pub partitions: BTreeMap<TopicPartition, i64>,
}

impl KafkaSourceOffset {
    /// Spark's JSON form, partitions in numeric order.
    pub fn to_json(&self) -> Value {
        let mut topics: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
        for (tp, off) in &self.partitions {
            topics.entry(tp.topic.as_str()).or_default().push((tp.partition, *off));
        }
        let mut out = serde_json::Map::new();
        for (topic, parts) in topics {
            let mut m = serde_json::Map::new();
            for (p, o) in parts {
                m.insert(p.to_string(), Value::from(o));
            }
            out.insert(topic.to_string(), Value::Object(m));
        }
        Value::Object(out)
    }

    /// Parses Spark's JSON form `{"topic":{"0":42}}` (used for offsets and for
    /// `startingOffsets`, where -2 means earliest and -1 latest).
    ///
    /// # Errors
    /// A message saying what is wrong when `v` has another shape.
    pub fn from_json(v: &Value) -> std::result::Result<Self, String> {
        let topics = v.as_object().ok_or_else(|| format!("expected a JSON object {{\"topic\":{{\"0\":23}}}}, got {v}"))?;
        let mut partitions = BTreeMap::new();
        for (topic, parts) in topics {
            let parts = parts
                .as_object()
                .ok_or_else(|| format!("topic {topic:?}: expected an object of partition offsets, got {parts}"))?;
            for (p, off) in parts {
                let partition: i32 =
                    p.parse().map_err(|_| format!("topic {topic:?}: partition {p:?} is not a partition number"))?;
                let off = off.as_i64().ok_or_else(|| format!("{topic}-{partition}: offset {off} is not an integer"))?;
                partitions.insert(TopicPartition::new(topic.clone(), partition), off);
            }
        }
        Ok(Self { partitions })
    }

    pub(crate) fn parse(v: &Value, source: &str) -> Result<Self> {
        Self::from_json(v).map_err(|m| SluiceError::Source { name: source.into(), message: format!("bad offset: {m}") })
    }
}

/// Spark's `rateLimit`: caps the `until` offsets so that at most about `limit` records
/// are read, split across partitions in proportion to their lag (`until - from`). A
/// partition's share is floored, except that a share below one record is rounded up so
/// that small partitions are not starved (the total can then exceed `limit` slightly).
/// Partitions absent from `from` start at `from_new`.
pub fn rate_limit(
    limit: u64,
    from: &BTreeMap<TopicPartition, i64>,
    until: &BTreeMap<TopicPartition, i64>,
    from_new: &BTreeMap<TopicPartition, i64>,
) -> BTreeMap<TopicPartition, i64> {
    let begin_of = |tp: &TopicPartition| from.get(tp).or_else(|| from_new.get(tp)).copied();
    let sizes: BTreeMap<&TopicPartition, i64> = until
        .iter()
        .filter_map(|(tp, end)| begin_of(tp).map(|b| (tp, end - b)).filter(|(_, s)| *s > 0))
        .collect();
    let total: f64 = sizes.values().map(|s| *s as f64).sum();
    if total < 1.0 {
        return until.clone();
    }
    until
        .iter()
        .map(|(tp, end)| {
            let capped = match (sizes.get(tp), begin_of(tp)) {
                (Some(size), Some(begin)) => {
                    let prorate = limit as f64 * (*size as f64 / total);
                    let share = if prorate < 1.0 { prorate.ceil() } else { prorate.floor() } as i64;
                    let off = if share > i64::MAX - begin { i64::MAX } else { begin + share };
                    off.min(*end)
                }
                _ => *end,
            };
            (tp.clone(), capped)
        })
        .collect()
}

/// A partition list with offsets.
pub(crate) fn tp_list_at<'a>(tps: impl IntoIterator<Item = (&'a TopicPartition, i64)>) -> Result<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    for (tp, offset) in tps {
        tpl.add_partition_offset(&tp.topic, tp.partition, KafkaOffset::Offset(offset))
            .map_err(|e| SluiceError::Internal(format!("cannot list {tp} at offset {offset}: {e}")))?;
    }
    Ok(tpl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: i32) -> TopicPartition {
        TopicPartition::new(t, p)
    }

    #[test]
    fn offsets_json_is_sparks() {
        let o = KafkaSourceOffset {
            partitions: BTreeMap::from([(tp("a", 0), 42), (tp("a", 10), 3), (tp("a", 2), 7), (tp("b", 0), 0)]),
        };
        let v = o.to_json();
        assert_eq!(v, serde_json::json!({"a": {"0": 42, "2": 7, "10": 3}, "b": {"0": 0}}));
        assert_eq!(KafkaSourceOffset::from_json(&v).unwrap(), o);
        assert!(KafkaSourceOffset::from_json(&serde_json::json!({"a": {"x": 1}})).is_err());
        assert!(KafkaSourceOffset::from_json(&serde_json::json!({"a": [1]})).is_err());
        assert!(KafkaSourceOffset::from_json(&serde_json::json!(3)).is_err());
    }

    #[test]
    fn rate_limit_splits_by_lag_like_spark() {
        let from = BTreeMap::from([(tp("t", 0), 0), (tp("t", 1), 100), (tp("t", 2), 5)]);
        let until = BTreeMap::from([(tp("t", 0), 10), (tp("t", 1), 120), (tp("t", 2), 75)]);
        // lags 10, 20, 70 of 100: shares 1, 2, 7 of 10.
        let got = rate_limit(10, &from, &until, &BTreeMap::new());
        assert_eq!(got, BTreeMap::from([(tp("t", 0), 1), (tp("t", 1), 102), (tp("t", 2), 12)]));
        // A tiny partition is not starved: its share 0.05 rounds up to 1.
        let from = BTreeMap::from([(tp("t", 0), 0), (tp("t", 1), 0)]);
        let until = BTreeMap::from([(tp("t", 0), 1), (tp("t", 1), 199)]);
        let got = rate_limit(10, &from, &until, &BTreeMap::new());
        assert_eq!(got, BTreeMap::from([(tp("t", 0), 1), (tp("t", 1), 9)]));
        // Under the limit: everything.
        let got = rate_limit(1000, &from, &until, &BTreeMap::new());
        assert_eq!(got, until);
        // A new partition (a grown topic) starts at its earliest offset.
        let from = BTreeMap::from([(tp("t", 0), 50)]);
        let until = BTreeMap::from([(tp("t", 0), 100), (tp("t", 1), 50)]);
        let got = rate_limit(20, &from, &until, &BTreeMap::from([(tp("t", 1), 0)]));
        assert_eq!(got, BTreeMap::from([(tp("t", 0), 60), (tp("t", 1), 10)]));
        // No lag anywhere: unchanged.
        let got = rate_limit(5, &until, &until, &BTreeMap::new());
        assert_eq!(got, until);
    }
}
