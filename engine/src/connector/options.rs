//! [`Options`]: the string options of a source or sink, as `read_stream().option(k, v)`
//! and `write_stream().option(k, v)` give them (Spark's `CaseInsensitiveStringMap`).
//!
//! Keys compare case-insensitively (`maxFilesPerTrigger` = `maxfilespertrigger`), values
//! are strings parsed by typed getters whose errors name the option. Every read is
//! recorded, so that after a source or sink is built the engine can tell which options
//! nothing read ([`Options::unread`]) and warn about them at `start()` instead of
//! silently ignoring a misspelt one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use crate::{Result, SluiceError};

/// Case-insensitive string options with typed getters (see the module docs).
///
/// Clones share the record of which options were read.
///
/// ```
/// use sluice_engine::Options;
/// let opts = Options::from_pairs([("maxFilesPerTrigger", "2"), ("Header", "true"), ("sepp", ";")]);
/// assert_eq!(opts.positive_usize("maxfilespertrigger").unwrap(), Some(2));
/// assert_eq!(opts.bool("header").unwrap(), Some(true));
/// assert_eq!(opts.unread(), ["sepp"]);
/// assert!(opts.positive_usize("header").unwrap_err().to_string().contains("option header"));
/// ```
#[derive(Clone, Default)]
pub struct Options {
    /// Lower-case key -> (key as given, value).
    entries: BTreeMap<String, (String, String)>,
    /// Lower-case keys read so far.
    read: Arc<Mutex<BTreeSet<String>>>,
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.entries.values().map(|(k, v)| (k, v))).finish()
    }
}

fn invalid(key: &str, value: &str, what: &str) -> SluiceError {
    SluiceError::InvalidArgument(format!("option {key}: {value:?} is not {what}"))
}

impl Options {
    /// No options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Options from `(key, value)` pairs; a later pair wins over an earlier one with the
    /// same key in another case.
    pub fn from_pairs<K: AsRef<str>, V: ToString>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        let mut o = Options::new();
        for (k, v) in pairs {
            o.set(k.as_ref(), v);
        }
        o
    }

    /// Sets `key` to `value`, replacing any value of the same key in any case.
    pub fn set(&mut self, key: &str, value: impl ToString) {
        self.entries.insert(key.to_ascii_lowercase(), (key.to_string(), value.to_string()));
    }

    /// `self` with `key` set to `value`.
    pub fn with(mut self, key: &str, value: impl ToString) -> Self {
        self.set(key, value);
        self
    }

    /// Removes `key` (any case), returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.entries.remove(&key.to_ascii_lowercase()).map(|(_, v)| v)
    }

    fn mark(&self, lower: &str) {
        self.read.lock().unwrap_or_else(|p| p.into_inner()).insert(lower.to_string());
    }

    /// Records `key` as read without reading it (an option the engine itself consumes,
    /// such as `checkpointLocation`).
    pub fn mark_read(&self, key: &str) {
        self.mark(&key.to_ascii_lowercase());
    }

    /// The raw value of `key` (any case), recorded as read.
    pub fn get(&self, key: &str) -> Option<&str> {
        let lower = key.to_ascii_lowercase();
        self.mark(&lower);
        self.entries.get(&lower).map(|(_, v)| v.as_str())
    }

    /// Whether `key` is set (recorded as read).
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The value of `key`, or an error saying that `who` needs it.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`]: "option `key` must be specified for `who`".
    pub fn require(&self, key: &str, who: &str) -> Result<&str> {
        self.get(key)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| SluiceError::InvalidArgument(format!("option {key} must be specified for {who}")))
    }

    /// `key` parsed with [`FromStr`]; `what` describes the expected value in the error.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] naming the option and value when it does not parse.
    pub fn parse<T: FromStr>(&self, key: &str, what: &str) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.trim().parse::<T>().map(Some).map_err(|_| invalid(key, v, what)),
        }
    }

    /// `key` as `true` / `false` (any case).
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] naming the option for any other value.
    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(Some(true)),
                "false" => Ok(Some(false)),
                _ => Err(invalid(key, v, "true or false")),
            },
        }
    }

    /// `key` as an integer `>= 1`.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] naming the option when it is not a positive integer.
    pub fn positive_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.parse::<usize>(key, "a positive integer")? {
            Some(0) => Err(invalid(key, "0", "a positive integer")),
            other => Ok(other),
        }
    }

    /// `key` as an integer `>= 1`.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] naming the option when it is not a positive integer.
    pub fn positive_u64(&self, key: &str) -> Result<Option<u64>> {
        match self.parse::<u64>(key, "a positive integer")? {
            Some(0) => Err(invalid(key, "0", "a positive integer")),
            other => Ok(other),
        }
    }

    /// `key` as a non-negative integer.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] naming the option when it is not one.
    pub fn u64(&self, key: &str) -> Result<Option<u64>> {
        self.parse::<u64>(key, "a non-negative integer")
    }

    /// `key` as a (possibly negative) integer.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] naming the option when it is not one.
    pub fn i64(&self, key: &str) -> Result<Option<i64>> {
        self.parse::<i64>(key, "an integer")
    }

    /// `key` as a number.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] naming the option when it is not one.
    pub fn f64(&self, key: &str) -> Result<Option<f64>> {
        self.parse::<f64>(key, "a number")
    }

    /// `key` as a Spark interval string (`"10 seconds"`), in ms.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] naming the option when it does not parse.
    pub fn interval_ms(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => crate::time::interval::parse_interval_ms(v)
                .map(Some)
                .map_err(|e| SluiceError::InvalidArgument(format!("option {key}: {e}"))),
        }
    }

    /// Fails when `key` is set: `why` says what to do instead.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`]: "option `key` is not supported: `why`".
    pub fn reject(&self, key: &str, why: &str) -> Result<()> {
        if self.contains(key) {
            return Err(SluiceError::InvalidArgument(format!("option {key} is not supported: {why}")));
        }
        Ok(())
    }

    /// Every option whose key starts with `prefix` (any case), with the prefix removed and
    /// the rest of the key lower-cased (e.g. `prefixed("kafka.")` gives librdkafka's
    /// properties). All of them are recorded as read.
    pub fn prefixed(&self, prefix: &str) -> BTreeMap<String, String> {
        let p = prefix.to_ascii_lowercase();
        let mut out = BTreeMap::new();
        for (lower, (_, v)) in self.entries.range(p.clone()..) {
            let Some(rest) = lower.strip_prefix(&p) else { break };
            if rest.is_empty() {
                continue;
            }
            self.mark(lower);
            out.insert(rest.to_string(), v.clone());
        }
        out
    }

    /// The options as given, `(key, value)`, in key order (nothing recorded as read).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.values().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The number of options.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no option.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The options (keys as given) that nothing has read so far.
    pub fn unread(&self) -> Vec<String> {
        let read = self.read.lock().unwrap_or_else(|p| p.into_inner());
        self.entries.iter().filter(|(lower, _)| !read.contains(*lower)).map(|(_, (k, _))| k.clone()).collect()
    }

    /// A warning for the options nothing read, `None` when every option was read: which
    /// options `who` (e.g. `FileStreamSource[/in]`) ignores, and the options it knows.
    pub fn unread_warning(&self, who: &str, known: &[&str]) -> Option<String> {
        let unread = self.unread();
        if unread.is_empty() {
            return None;
        }
        let mut msg = format!("option(s) {} given to {who} are not used by it (misspelt?)", unread.join(", "));
        if !known.is_empty() {
            msg.push_str(&format!("; its options are: {}", known.join(", ")));
        }
        Some(msg)
    }
}

impl<K: AsRef<str>, V: ToString> FromIterator<(K, V)> for Options {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Options::from_pairs(iter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_case_insensitive_and_reads_are_recorded() {
        let mut o = Options::from_pairs([("kafka.Bootstrap.Servers", "h:1"), ("subscribe", "t"), ("KAFKA.acks", "all")]);
        o.set("Subscribe", "u");
        assert_eq!(o.len(), 3, "Subscribe replaced subscribe");
        assert_eq!(o.unread().len(), 3);
        assert_eq!(o.get("SUBSCRIBE"), Some("u"));
        let kafka = o.prefixed("kafka.");
        assert_eq!(kafka.get("bootstrap.servers").map(String::as_str), Some("h:1"));
        assert_eq!(kafka.get("acks").map(String::as_str), Some("all"));
        assert!(o.unread().is_empty());
        let clone = o.clone().with("extra", 1);
        assert_eq!(clone.unread(), ["extra"], "clones share the read record");
        let w = clone.unread_warning("KafkaSource", &["subscribe"]).unwrap();
        assert!(w.contains("extra") && w.contains("subscribe"), "{w}");
    }

    #[test]
    fn typed_getters_name_the_option() {
        let o = Options::from_pairs([("n", "0"), ("b", "yes"), ("d", "10 seconds"), ("x", "1.5")]);
        assert!(o.positive_usize("n").unwrap_err().to_string().contains("option n: \"0\""));
        assert!(o.bool("b").unwrap_err().to_string().contains("option b"));
        assert_eq!(o.interval_ms("d").unwrap(), Some(10_000));
        assert_eq!(o.f64("x").unwrap(), Some(1.5));
        assert_eq!(o.u64("missing").unwrap(), None);
        assert!(o.require("missing", "the Kafka source").unwrap_err().to_string().contains("the Kafka source"));
        assert!(o.reject("x", "use y").unwrap_err().to_string().contains("use y"));
    }
}
