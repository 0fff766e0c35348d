//! [`KinesisClientOptions`]: the options source and sink share (region, endpoint,
//! credentials, retries), parsed once, and the client they build: the AWS SDK's
//! [`Client`] on a tokio runtime owned by the connector (the trigger loop is
//! synchronous), with an interceptor that counts throttled requests.
//!
//! # Retries
//! Two layers, neither hand-rolled:
//! * the SDK's standard retry strategy retries every transient error (throttling, 5xx,
//!   timeouts, dropped connections) up to `numRetries` times with exponential backoff
//!   from `retryIntervalMs` to `maxRetryIntervalMs`, within its retry-token budget;
//! * throttling that outlasts those attempts (`ProvisionedThroughputExceededException`,
//!   `LimitExceededException`) is retried again by [`backon`] with the same backoff and
//!   no limit on attempts, so that throttling slows a batch down but never fails it.
//!
//! Every throttled attempt, from either layer, is counted ([`ClientCounters`]).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::interceptors::FinalizerInterceptorContextRef;
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::{BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents};
use aws_sdk_kinesis::error::{BoxError, DisplayErrorContext, ProvideErrorMetadata};
use backon::{ExponentialBuilder, Retryable};
use sluice_engine::{Options, Result, SluiceError};

/// Error codes that mean "slow down": a shard's or the account's limit was hit.
const THROTTLING_CODES: &[&str] =
    &["ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException", "KMSThrottlingException"];

/// Whether `code` is a throttling error code.
pub(crate) fn is_throttling_code(code: &str) -> bool {
    THROTTLING_CODES.contains(&code)
}

/// Whether `e` is a throttling error.
pub(crate) fn is_throttling(e: &impl ProvideErrorMetadata) -> bool {
    e.code().is_some_and(is_throttling_code)
}

/// An SDK error with its causes (the SDK's own `Display` says only "service error").
pub(crate) fn describe(e: &(impl std::error::Error + 'static)) -> String {
    DisplayErrorContext(e).to_string()
}

/// The client options of the Kinesis source and sink (names case-insensitive):
///
/// | option | default | |
/// |---|---|---|
/// | `region` | `AWS_REGION`, `~/.aws/config`; `us-east-1` with `endpointUrl` | the stream's region |
/// | `endpointUrl` | the region's endpoint (`AWS_ENDPOINT_URL_KINESIS`, `AWS_ENDPOINT_URL`) | e.g. `http://127.0.0.1:5000` for a local server |
/// | `awsAccessKeyId`, `awsSecretKey`, `awsSessionToken` | the standard chain: environment (`AWS_ACCESS_KEY_ID`, ...), `~/.aws/credentials` and `config` profiles (`AWS_PROFILE`), web identity, ECS and EC2 instance roles | static credentials |
/// | `numRetries` | 3 | the SDK's retries of a transient error (throttling is retried further without limit) |
/// | `retryIntervalMs` | 1000 | first backoff; doubles (with jitter) on each retry |
/// | `maxRetryIntervalMs` | 10000 | longest backoff |
#[derive(Clone)]
pub struct KinesisClientOptions {
    /// `region`.
    pub region: Option<String>,
    /// `endpointUrl`.
    pub endpoint_url: Option<String>,
    /// `awsAccessKeyId`.
    pub access_key_id: Option<String>,
    /// `awsSecretKey` (never printed).
    pub secret_key: Option<String>,
    /// `awsSessionToken` (never printed).
    pub session_token: Option<String>,
    /// `numRetries`.
    pub num_retries: u32,
    /// `retryIntervalMs`.
    pub retry_interval: Duration,
    /// `maxRetryIntervalMs`.
    pub max_retry_interval: Duration,
}

impl fmt::Debug for KinesisClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KinesisClientOptions")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("access_key_id", &self.access_key_id)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "***"))
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .field("num_retries", &self.num_retries)
            .field("retry_interval", &self.retry_interval)
            .field("max_retry_interval", &self.max_retry_interval)
            .finish()
    }
}

/// The client options' names.
pub(crate) const CLIENT_OPTIONS: [&str; 8] = [
    "region",
    "endpointUrl",
    "awsAccessKeyId",
    "awsSecretKey",
    "awsSessionToken",
    "numRetries",
    "retryIntervalMs",
    "maxRetryIntervalMs",
];

impl KinesisClientOptions {
    /// Reads the client options for `who` (e.g. "the Kinesis source").
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] naming the option: a bad number, an access key
    /// without a secret key or the reverse, a session token without keys.
    pub fn new(options: &Options, who: &str) -> Result<Self> {
        let text = |k: &str| options.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let (access_key_id, secret_key, session_token) =
            (text("awsAccessKeyId"), text("awsSecretKey"), text("awsSessionToken"));
        if access_key_id.is_some() != secret_key.is_some() {
            return Err(SluiceError::InvalidArgument(format!(
                "{who} needs both options awsAccessKeyId and awsSecretKey, or neither (then the standard AWS \
                 credential chain is used)"
            )));
        }
        if session_token.is_some() && access_key_id.is_none() {
            return Err(SluiceError::InvalidArgument(format!(
                "option awsSessionToken of {who} needs awsAccessKeyId and awsSecretKey"
            )));
        }
        let retry_interval = Duration::from_millis(options.positive_u64("retryIntervalMs")?.unwrap_or(1000));
        let max_retry_interval = Duration::from_millis(options.positive_u64("maxRetryIntervalMs")?.unwrap_or(10_000));
        if max_retry_interval < retry_interval {
            return Err(SluiceError::InvalidArgument(format!(
                "option maxRetryIntervalMs of {who} ({} ms) is below retryIntervalMs ({} ms)",
                max_retry_interval.as_millis(),
                retry_interval.as_millis()
            )));
        }
        let num_retries = options.parse::<u32>("numRetries", "a non-negative integer")?.unwrap_or(3);
        Ok(Self {
            region: text("region"),
            endpoint_url: text("endpointUrl"),
            access_key_id,
            secret_key,
            session_token,
            num_retries,
            retry_interval,
            max_retry_interval,
        })
    }

    /// The backoff of throttled requests after the SDK's own retries: exponential with
    /// jitter from `retryIntervalMs` to `maxRetryIntervalMs`, no limit on attempts.
    pub(crate) fn throttle_backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.retry_interval)
            .with_max_delay(self.max_retry_interval)
            .with_jitter()
            .without_max_times()
    }
}

/// Counters of one client (shared by every run of a source or sink).
#[derive(Debug, Default)]
pub struct ClientCounters {
    /// Requests answered with a throttling error (each attempt, retries included).
    pub(crate) throttled: AtomicU64,
}

impl ClientCounters {
    /// Requests answered with a throttling error, each attempt counted.
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }
}

/// Counts every attempt that failed with a throttling error, including those the SDK
/// retries by itself.
#[derive(Debug)]
struct ThrottleCounter(Arc<ClientCounters>);

impl Intercept for ThrottleCounter {
    fn name(&self) -> &'static str {
        "SluiceKinesisThrottleCounter"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        use aws_sdk_kinesis::operation as op;
        let Some(Err(e)) = context.output_or_error() else { return Ok(()) };
        let Some(e) = e.as_operation_error() else { return Ok(()) };
        let code = e
            .downcast_ref::<op::get_records::GetRecordsError>()
            .and_then(|e| e.code())
            .or_else(|| e.downcast_ref::<op::get_shard_iterator::GetShardIteratorError>().and_then(|e| e.code()))
            .or_else(|| e.downcast_ref::<op::list_shards::ListShardsError>().and_then(|e| e.code()))
            .or_else(|| e.downcast_ref::<op::put_records::PutRecordsError>().and_then(|e| e.code()));
        if code.is_some_and(is_throttling_code) {
            self.0.throttled.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// A Kinesis client with the tokio runtime that drives it.
pub(crate) struct Connection {
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) client: Client,
    pub(crate) backoff: ExponentialBuilder,
}

impl Connection {
    /// Builds the client of `opts`: the standard AWS configuration chain (region and
    /// credentials from the environment and profiles) overridden by the options.
    ///
    /// # Errors
    /// [`SluiceError::InvalidArgument`] when no region is known; [`SluiceError::Internal`]
    /// when the runtime cannot start.
    pub(crate) fn connect(opts: &KinesisClientOptions, counters: Arc<ClientCounters>, who: &str) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SluiceError::Internal(format!("cannot start the tokio runtime of {who}: {e}")))?;
        let shared = rt.block_on(async {
            let mut loader = aws_config::defaults(BehaviorVersion::latest());
            if let Some(r) = &opts.region {
                loader = loader.region(Region::new(r.clone()));
            }
            if let (Some(id), Some(secret)) = (&opts.access_key_id, &opts.secret_key) {
                loader = loader.credentials_provider(Credentials::new(
                    id.clone(),
                    secret.clone(),
                    opts.session_token.clone(),
                    None,
                    "sluice-options",
                ));
            }
            loader.load().await
        });
        let mut config = aws_sdk_kinesis::config::Builder::from(&shared);
        if shared.region().is_none() {
            if opts.endpoint_url.is_none() {
                return Err(SluiceError::InvalidArgument(format!(
                    "{who} has no AWS region: set the option region, or AWS_REGION, or a region in ~/.aws/config"
                )));
            }
            // A local server (moto, kinesalite) ignores the region, but requests are
            // signed with one.
            config = config.region(Region::new("us-east-1"));
        }
        if let Some(url) = &opts.endpoint_url {
            config = config.endpoint_url(url.clone());
        }
        let config = config
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(opts.num_retries.saturating_add(1))
                    .with_initial_backoff(opts.retry_interval)
                    .with_max_backoff(opts.max_retry_interval),
            )
            .interceptor(ThrottleCounter(counters))
            .build();
        Ok(Self { rt, client: Client::from_conf(config), backoff: opts.throttle_backoff() })
    }
}

/// Runs the request `f` makes, retrying throttling errors that outlast the SDK's own
/// retries with `backoff` (no limit on attempts); other errors are returned.
pub(crate) async fn retry_throttled<T, E, F, Fut>(backoff: ExponentialBuilder, what: &str, f: F) -> std::result::Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, E>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    f.retry(backoff)
        .sleep(tokio::time::sleep)
        .when(is_throttling)
        .notify(|e: &E, wait: Duration| {
            tracing::debug!(request = what, wait_ms = wait.as_millis() as u64, error = %describe(e), "Kinesis throttled; backing off");
        })
        .await
}
