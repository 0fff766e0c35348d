//! Kinesis offsets: [`ShardPosition`] (where a shard stands), [`KinesisSourceOffset`]
//! (the JSON logged in `offsets/N`, one position per shard) and [`split_limit`]
//! (`maxRecordsPerTrigger` shared across shards).
//!
//! # What an offset means
//! A position is the end of what the source has read of a shard, so a batch reads the
//! records *after* its start position up to and including its end position:
//!
//! | JSON value | position | the next read starts |
//! |---|---|---|
//! | `"49590338271490256608559692538361571095921575989136588898"` | the last record read has this sequence number | `AFTER_SEQUENCE_NUMBER` it |
//! | `"TRIM_HORIZON"` | nothing read yet | at the oldest record (`TRIM_HORIZON`) |
//! | `"AT_TIMESTAMP:1442016000000"` | nothing read yet | at the first record that arrived at or after this time (epoch ms; `AT_TIMESTAMP`) |
//! | `"SHARD_END"` | a closed shard read to its end | nowhere: its child shards take over |
//!
//! Sequence numbers are decimal strings of up to 129 digits (Kinesis' own bound), so
//! they are kept as text and compared by value ([`compare_sequence_numbers`]).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;
use sluice_engine::{Result, SluiceError};

/// Where the source stands in one shard; see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ShardPosition {
    /// Nothing read yet; reading starts at the oldest record.
    TrimHorizon,
    /// Nothing read yet; reading starts at the first record that arrived at or after
    /// this time, in ms since the epoch.
    AtTimestamp(i64),
    /// Every record up to and including this sequence number was read.
    After(String),
    /// A closed shard read to its end.
    ShardEnd,
}

impl ShardPosition {
    /// Parses the JSON string form (see the module docs).
    ///
    /// # Errors
    /// A message naming the value when it is none of the forms.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        match s {
            "TRIM_HORIZON" => Ok(Self::TrimHorizon),
            "SHARD_END" => Ok(Self::ShardEnd),
            _ => {
                if let Some(ms) = s.strip_prefix("AT_TIMESTAMP:") {
                    let ms = ms.parse::<i64>().map_err(|_| format!("{s:?}: AT_TIMESTAMP needs epoch milliseconds"))?;
                    return Ok(Self::AtTimestamp(ms));
                }
                if is_sequence_number(s) {
                    Ok(Self::After(s.to_string()))
                } else {
                    Err(format!(
                        "{s:?} is not a sequence number, TRIM_HORIZON, AT_TIMESTAMP:<epoch ms> or SHARD_END"
                    ))
                }
            }
        }
    }

    /// Whether anything of the shard has been read.
    pub fn is_started(&self) -> bool {
        matches!(self, Self::After(_) | Self::ShardEnd)
    }
}

impl fmt::Display for ShardPosition {
    /// The JSON string form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TrimHorizon => f.write_str("TRIM_HORIZON"),
            Self::AtTimestamp(ms) => write!(f, "AT_TIMESTAMP:{ms}"),
            Self::After(seq) => f.write_str(seq),
            Self::ShardEnd => f.write_str("SHARD_END"),
        }
    }
}

/// Whether `s` is a Kinesis sequence number: decimal digits, `0` or without a leading
/// zero, at most 129 of them (the API's pattern `0|([1-9]\d{0,128})`).
pub fn is_sequence_number(s: &str) -> bool {
    !s.is_empty() && s.len() <= 129 && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
}

/// Compares two sequence numbers by value (both must pass [`is_sequence_number`]: no
/// leading zeros, so the longer one is the larger).
pub fn compare_sequence_numbers(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// The source's offset: one [`ShardPosition`] per shard of one stream. Its JSON, logged
/// in `offsets/N`, is `{"<stream>":{"shardId-000000000000":"4959...","shardId-...":"SHARD_END"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KinesisSourceOffset {
    /// The stream's name.
    pub stream: String,
    /// Position per shard id.
    pub shards: BTreeMap<String, ShardPosition>,
}

impl KinesisSourceOffset {
    /// An offset of `stream` with `shards`.
    pub fn new(stream: impl Into<String>, shards: BTreeMap<String, ShardPosition>) -> Self {
        Self { stream: stream.into(), shards }
    }

    /// The JSON form, shards in id order.
    pub fn to_json(&self) -> Value {
        let shards: serde_json::Map<String, Value> =
            self.shards.iter().map(|(id, p)| (id.clone(), Value::String(p.to_string()))).collect();
        let mut out = serde_json::Map::new();
        out.insert(self.stream.clone(), Value::Object(shards));
        Value::Object(out)
    }

    /// Parses the JSON form, which must name `stream` only.
    ///
    /// # Errors
    /// A message saying what is wrong.
    pub fn from_json(v: &Value, stream: &str) -> std::result::Result<Self, String> {
        let obj = v.as_object().ok_or_else(|| format!("expected {{\"{stream}\":{{\"shardId-...\":\"...\"}}}}, got {v}"))?;
        if obj.len() != 1 || !obj.contains_key(stream) {
            let names: Vec<&String> = obj.keys().collect();
            return Err(format!("the offset names stream(s) {names:?}, but this source reads stream {stream:?}"));
        }
        let shards = obj[stream].as_object().ok_or_else(|| format!("stream {stream:?}: expected an object of shard positions"))?;
        let mut out = BTreeMap::new();
        for (id, p) in shards {
            let text = p.as_str().ok_or_else(|| format!("shard {id}: position {p} is not a string"))?;
            out.insert(id.clone(), ShardPosition::parse(text).map_err(|m| format!("shard {id}: {m}"))?);
        }
        Ok(Self { stream: stream.to_string(), shards: out })
    }

    pub(crate) fn parse(v: &Value, stream: &str, source: &str) -> Result<Self> {
        Self::from_json(v, stream)
            .map_err(|m| SluiceError::Source { name: source.into(), message: format!("bad offset: {m}") })
    }
}

/// Shares `limit` records among shards as evenly as their data allows (max-min fair):
/// `wanted` is what each shard could give (records available, or `u64::MAX` when not
/// yet known); the result is each shard's share, summing to at most `limit`. A shard that
/// can give less than an even share gives what it has and the rest is shared among the
/// others; the remainder of an uneven split goes to the shards first in id order.
pub fn split_limit(limit: u64, wanted: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let mut share: BTreeMap<String, u64> = wanted.keys().map(|k| (k.clone(), 0)).collect();
    let mut left = limit;
    let mut open: Vec<&String> = wanted.iter().filter(|(_, w)| **w > 0).map(|(k, _)| k).collect();
    while left > 0 && !open.is_empty() {
        let n = open.len() as u64;
        let (each, extra) = (left / n, left % n);
        let mut next = Vec::new();
        for (i, id) in open.iter().enumerate() {
            let even = each + u64::from((i as u64) < extra);
            let have = share[*id];
            let give = even.min(wanted[*id] - have);
            share.insert((*id).clone(), have + give);
            left -= give;
            if have + give < wanted[*id] {
                next.push(*id);
            }
        }
        // Every round gives at least one record (each open shard wants more than it
        // has), so this ends.
        open = next;
    }
    share
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_compare() {
        for s in ["TRIM_HORIZON", "SHARD_END", "AT_TIMESTAMP:1442016000000", "0", "49590338271490256608559692538361571095921575989136588898"] {
            assert_eq!(ShardPosition::parse(s).unwrap().to_string(), s);
        }
        for bad in ["", "LATEST", "012", "12a", "AT_TIMESTAMP:x", &"9".repeat(130)] {
            assert!(ShardPosition::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(compare_sequence_numbers("9", "10"), Ordering::Less);
        assert_eq!(compare_sequence_numbers("4959", "4958"), Ordering::Greater);
        assert_eq!(compare_sequence_numbers("77", "77"), Ordering::Equal);
        assert!(ShardPosition::After("1".into()).is_started() && !ShardPosition::TrimHorizon.is_started());
    }

    #[test]
    fn offset_json_names_the_stream_and_its_shards() {
        let o = KinesisSourceOffset::new(
            "wiki",
            BTreeMap::from([
                ("shardId-000000000000".to_string(), ShardPosition::ShardEnd),
                ("shardId-000000000001".to_string(), ShardPosition::After("4959".into())),
                ("shardId-000000000002".to_string(), ShardPosition::TrimHorizon),
            ]),
        );
        let v = o.to_json();
        assert_eq!(
            v,
            serde_json::json!({"wiki": {"shardId-000000000000": "SHARD_END", "shardId-000000000001": "4959", "shardId-000000000002": "TRIM_HORIZON"}})
        );
        assert_eq!(KinesisSourceOffset::from_json(&v, "wiki").unwrap(), o);
        assert!(KinesisSourceOffset::from_json(&v, "other").unwrap_err().contains("\"other\""));
        assert!(KinesisSourceOffset::from_json(&serde_json::json!({"wiki": {"s": 4}}), "wiki").is_err());
        assert!(KinesisSourceOffset::from_json(&serde_json::json!([1]), "wiki").is_err());
    }

    #[test]
    fn the_limit_is_shared_max_min_fair() {
        let w = |pairs: &[(&str, u64)]| pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>();
        // Even split, remainder to the first shards.
        assert_eq!(split_limit(10, &w(&[("a", u64::MAX), ("b", u64::MAX), ("c", u64::MAX)])), w(&[("a", 4), ("b", 3), ("c", 3)]));
        // A shard with little data gives what it has; the others share the rest.
        assert_eq!(split_limit(10, &w(&[("a", 1), ("b", u64::MAX), ("c", u64::MAX)])), w(&[("a", 1), ("b", 5), ("c", 4)]));
        // Less data than the limit: everything.
        assert_eq!(split_limit(100, &w(&[("a", 3), ("b", 0), ("c", 7)])), w(&[("a", 3), ("b", 0), ("c", 7)]));
        // A limit below the shard count.
        assert_eq!(split_limit(2, &w(&[("a", 5), ("b", 5), ("c", 5)])), w(&[("a", 1), ("b", 1), ("c", 0)]));
        assert_eq!(split_limit(5, &BTreeMap::new()), BTreeMap::new());
    }
}
