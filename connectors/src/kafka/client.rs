//! The Kafka client options, parsed once for the source and the sink: the bootstrap
//! servers, the `kafka.*` passthrough to librdkafka, and the librdkafka parameters Spark
//! rejects.

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;
use sluice_engine::{Options, Result, SluiceError};

/// The `kafka.`-prefixed options of a Kafka source or sink (Spark's `kafka.*`), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaClientOptions {
    /// `kafka.bootstrap.servers` (required): `host:port,...`.
    pub bootstrap_servers: String,
    /// The other `kafka.`-prefixed options, without the prefix and lower-cased, handed to
    /// librdkafka as they are.
    pub params: BTreeMap<String, String>,
}

impl KafkaClientOptions {
    /// Reads every `kafka.*` option of `options` for `who` (e.g. "the Kafka source"),
    /// failing on the `rejected` librdkafka parameters (name without `kafka.`, why).
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`]: "option 'kafka.bootstrap.servers' must be
    /// specified for `who`", or "Kafka option 'kafka.`param`' is not supported: `why`".
    pub fn new(options: &Options, who: &str, rejected: &[(&str, &str)]) -> Result<Self> {
        let mut params = options.prefixed("kafka.");
        let bootstrap_servers = params.remove("bootstrap.servers").filter(|s| !s.trim().is_empty()).ok_or_else(|| {
            SluiceError::InvalidArgument(format!("option 'kafka.bootstrap.servers' must be specified for {who}"))
        })?;
        for (param, why) in rejected {
            if params.contains_key(*param) {
                return Err(SluiceError::InvalidArgument(format!(
                    "Kafka option 'kafka.{param}' is not supported: {why}"
                )));
            }
        }
        Ok(Self { bootstrap_servers, params })
    }

    /// A librdkafka configuration: the bootstrap servers, then `defaults`, then the
    /// user's `kafka.*` parameters (which override the defaults).
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.params {
            c.set(k, v);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_options_are_read_once_and_rejected_ones_fail() {
        let o = Options::from_pairs([("KAFKA.Bootstrap.Servers", "h:1"), ("kafka.linger.ms", "5"), ("topic", "t")]);
        let c = KafkaClientOptions::new(&o, "the Kafka sink", &[("key.serializer", "no")]).unwrap();
        assert_eq!(c.bootstrap_servers, "h:1");
        assert_eq!(c.params, BTreeMap::from([("linger.ms".to_string(), "5".to_string())]));
        assert_eq!(o.unread(), ["topic"], "every kafka.* option is read");
        let config = c.client_config(&[("linger.ms", "100"), ("acks", "all")]);
        assert_eq!(config.get("linger.ms"), Some("5"), "the user's parameters win");
        assert_eq!(config.get("acks"), Some("all"));
        let e = KafkaClientOptions::new(&Options::from_pairs([("topic", "t")]), "the Kafka sink", &[]).unwrap_err();
        assert!(e.to_string().contains("'kafka.bootstrap.servers' must be specified for the Kafka sink"), "{e}");
        let o = o.with("kafka.key.serializer", "x");
        let e = KafkaClientOptions::new(&o, "the Kafka sink", &[("key.serializer", "no")]).unwrap_err();
        assert!(e.to_string().contains("'kafka.key.serializer' is not supported: no"), "{e}");
    }
}
