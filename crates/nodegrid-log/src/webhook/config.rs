//! Configuration of one webhook target (LOGGING.md §2.3, §5.2), built with
//! [`WebhookConfig::builder`]. Validation happens in [`WebhookConfigBuilder::build`], so a
//! [`WebhookConfig`] is always valid.

use std::path::PathBuf;
use std::time::Duration;

use super::backoff::RetryBackoff;
use super::proxy::Proxy;
use crate::error::ConfigError;

/// Default in-memory queue capacity (entries); also the disk-queue file limit.
pub const DEFAULT_QUEUE_SIZE: usize = 100_000;
/// Default bound of the disk queue in bytes (1 GiB).
pub const DEFAULT_QUEUE_DIR_MAX_BYTES: u64 = 1 << 30;
/// Default entries per request.
pub const DEFAULT_BATCH_SIZE: usize = 1;
/// Default and fallback sleep between attempts.
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(3);
/// Largest allowed retry interval.
pub const MAX_RETRY_INTERVAL: Duration = Duration::from_secs(60);
/// Default deadline of one HTTP request.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Smallest allowed HTTP deadline (never zero, LOGGING.md §9.9).
pub const MIN_HTTP_TIMEOUT: Duration = Duration::from_secs(1);
/// Default longest wait of a partial batch (the reference's 1 s tick / flush gap).
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Default poll interval of the client certificate files.
pub const DEFAULT_CERT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);
/// Default scan interval / retry wait of the disk queue replay loop.
pub const DEFAULT_REPLAY_INTERVAL: Duration = Duration::from_secs(3);

/// Which proxy a target uses (LOGGING.md §2.3, §2.3.6).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum ProxySetting {
    /// `HTTP_PROXY` / `HTTPS_PROXY` with `NO_PROXY` (the default).
    #[default]
    Environment,
    /// No proxy, whatever the environment says.
    Direct,
    /// This proxy, for every request.
    Url(Proxy),
}

/// What `Debug` shows in place of a secret.
const REDACTED: &str = "<redacted>";

/// `url` with any `user:password@` part replaced, for error texts and debug output.
pub(crate) fn redact_userinfo(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => format!("{}{REDACTED}@{}", &url[..start], &url[start + at + 1..]),
        None => url.to_string(),
    }
}

/// Validated configuration of one webhook target. `Debug` never shows the auth token.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    pub(crate) key: String,
    pub(crate) endpoint: http::Uri,
    pub(crate) endpoint_text: String,
    pub(crate) auth_token: String,
    pub(crate) client_cert: Option<PathBuf>,
    pub(crate) client_key: Option<PathBuf>,
    pub(crate) ca_cert: Option<PathBuf>,
    pub(crate) proxy: ProxySetting,
    pub(crate) queue_size: usize,
    pub(crate) batch_size: usize,
    pub(crate) queue_dir: Option<PathBuf>,
    pub(crate) queue_dir_max_bytes: u64,
    pub(crate) max_retry: u32,
    pub(crate) retry_interval: Duration,
    pub(crate) retry_backoff: RetryBackoff,
    pub(crate) http_timeout: Duration,
    pub(crate) flush_interval: Duration,
    pub(crate) cert_reload_interval: Duration,
    pub(crate) replay_interval: Duration,
    pub(crate) ndjson_content_type: bool,
    pub(crate) comment: String,
}

impl WebhookConfig {
    /// Starts a builder for target `key` (the config target name; `_` for the default
    /// target) posting to `endpoint`.
    pub fn builder(key: impl Into<String>, endpoint: impl Into<String>) -> WebhookConfigBuilder {
        WebhookConfigBuilder {
            key: key.into(),
            endpoint: endpoint.into(),
            auth_token: String::new(),
            client_cert: None,
            client_key: None,
            ca_cert: None,
            proxy: None,
            no_proxy: false,
            queue_size: DEFAULT_QUEUE_SIZE,
            batch_size: DEFAULT_BATCH_SIZE,
            queue_dir: None,
            queue_dir_max_bytes: DEFAULT_QUEUE_DIR_MAX_BYTES,
            max_retry: 0,
            retry_interval: DEFAULT_RETRY_INTERVAL,
            retry_backoff: RetryBackoff::Fixed,
            http_timeout: DEFAULT_HTTP_TIMEOUT,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            cert_reload_interval: DEFAULT_CERT_RELOAD_INTERVAL,
            replay_interval: DEFAULT_REPLAY_INTERVAL,
            ndjson_content_type: true,
            comment: String::new(),
            key_prefix: String::new(),
        }
    }

    /// The config target name (`_` for the default target).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint_text
    }

    /// Whether a client certificate (mTLS) is configured.
    pub fn has_client_cert(&self) -> bool {
        self.client_cert.is_some()
    }

    /// Queue capacity.
    pub fn queue_size(&self) -> usize {
        self.queue_size
    }

    /// Entries per request.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Disk queue directory, if any.
    pub fn queue_dir(&self) -> Option<&std::path::Path> {
        self.queue_dir.as_deref()
    }

    /// Largest size of the disk queue, bytes.
    pub fn queue_dir_max_bytes(&self) -> u64 {
        self.queue_dir_max_bytes
    }

    /// Retries after the first attempt (0 = forever).
    pub fn max_retry(&self) -> u32 {
        self.max_retry
    }

    /// Sleep between attempts.
    pub fn retry_interval(&self) -> Duration {
        self.retry_interval
    }

    /// Deadline of one request.
    pub fn http_timeout(&self) -> Duration {
        self.http_timeout
    }

    /// A view of the configuration with the auth token redacted.
    pub fn redacted(&self) -> String {
        format!(
            "endpoint={} auth_token={} client_cert={} client_key={} batch_size={} queue_size={} queue_dir={} max_retry={} retry_interval={:?} http_timeout={:?}",
            self.endpoint_text,
            if self.auth_token.is_empty() { "" } else { "*redacted*" },
            self.client_cert.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            self.client_key.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            self.batch_size,
            self.queue_size,
            self.queue_dir.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            self.max_retry,
            self.retry_interval,
            self.http_timeout,
        )
    }
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("key", &self.key)
            .field("endpoint", &self.endpoint_text)
            .field("auth_token", &secret(&self.auth_token))
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .field("ca_cert", &self.ca_cert)
            .field("proxy", &self.proxy)
            .field("queue_size", &self.queue_size)
            .field("batch_size", &self.batch_size)
            .field("queue_dir", &self.queue_dir)
            .field("queue_dir_max_bytes", &self.queue_dir_max_bytes)
            .field("max_retry", &self.max_retry)
            .field("retry_interval", &self.retry_interval)
            .field("retry_backoff", &self.retry_backoff)
            .field("http_timeout", &self.http_timeout)
            .field("flush_interval", &self.flush_interval)
            .field("cert_reload_interval", &self.cert_reload_interval)
            .field("replay_interval", &self.replay_interval)
            .field("ndjson_content_type", &self.ndjson_content_type)
            .field("comment", &self.comment)
            .finish()
    }
}

/// How `Debug` shows a secret: whether it is set, never its value.
fn secret(s: &str) -> &'static str {
    if s.is_empty() {
        ""
    } else {
        REDACTED
    }
}

/// Builder of a [`WebhookConfig`]. Setters take values as given; [`build`](Self::build)
/// validates all of them and names the offending key. `Debug` never shows the auth token.
#[derive(Clone)]
pub struct WebhookConfigBuilder {
    key: String,
    endpoint: String,
    auth_token: String,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    ca_cert: Option<PathBuf>,
    proxy: Option<String>,
    no_proxy: bool,
    queue_size: usize,
    batch_size: usize,
    queue_dir: Option<PathBuf>,
    queue_dir_max_bytes: u64,
    max_retry: u32,
    retry_interval: Duration,
    retry_backoff: RetryBackoff,
    http_timeout: Duration,
    flush_interval: Duration,
    cert_reload_interval: Duration,
    replay_interval: Duration,
    ndjson_content_type: bool,
    comment: String,
    key_prefix: String,
}

impl std::fmt::Debug for WebhookConfigBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfigBuilder")
            .field("key", &self.key)
            .field("endpoint", &redact_userinfo(&self.endpoint))
            .field("auth_token", &secret(&self.auth_token))
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .field("proxy", &self.proxy.as_deref().map(redact_userinfo))
            .finish_non_exhaustive()
    }
}

impl WebhookConfigBuilder {
    /// `Authorization` header value, sent verbatim (include the scheme, e.g. `Bearer x`).
    pub fn auth_token(mut self, token: impl Into<String>) -> Self {
        self.auth_token = token.into();
        self
    }

    /// PEM client certificate chain and key files for mTLS (both or neither).
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_cert = Some(cert.into());
        self.client_key = Some(key.into());
        self
    }

    pub(crate) fn client_cert_opt(mut self, cert: Option<PathBuf>, key: Option<PathBuf>) -> Self {
        self.client_cert = cert;
        self.client_key = key;
        self
    }

    /// Extra PEM CA file trusted for `https` endpoints (in addition to the system roots).
    pub fn ca_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_cert = Some(path.into());
        self
    }

    /// Sends every request through this HTTP proxy, `http://[user:password@]host[:port]`
    /// (LOGGING.md's `proxy` key): `http://` endpoints in absolute form, `https://` endpoints
    /// through a `CONNECT` tunnel. Without it the standard `HTTP_PROXY` / `HTTPS_PROXY` /
    /// `NO_PROXY` environment variables apply (not for loopback endpoints).
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = Some(url.into());
        self.no_proxy = false;
        self
    }

    /// Never uses a proxy, whatever the environment says.
    pub fn no_proxy(mut self) -> Self {
        self.proxy = None;
        self.no_proxy = true;
        self
    }

    /// In-memory queue capacity (entries) and disk-queue file limit; > 0.
    pub fn queue_size(mut self, n: usize) -> Self {
        self.queue_size = n;
        self
    }

    /// Entries per request; > 0.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }

    /// Enables the store-and-forward disk queue in this directory.
    pub fn queue_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.queue_dir = Some(dir.into());
        self
    }

    /// Bound of the disk queue in bytes (default 1 GiB); > 0. A batch that would take the
    /// directory over it is not written: it is retried like a failed send, counted in
    /// `disk_queue_full` and reported once (LOGGING.md §2.4 asks for a bound in bytes as well
    /// as in files).
    pub fn queue_dir_max_bytes(mut self, bytes: u64) -> Self {
        self.queue_dir_max_bytes = bytes;
        self
    }

    /// Retries of one batch after the first attempt; 0 = retry forever.
    pub fn max_retry(mut self, n: u32) -> Self {
        self.max_retry = n;
        self
    }

    /// Fixed sleep between attempts; ≤ 1 min; zero means the default 3 s.
    pub fn retry_interval(mut self, d: Duration) -> Self {
        self.retry_interval = d;
        self
    }

    /// How the wait between attempts grows (default fixed).
    pub fn retry_backoff(mut self, b: RetryBackoff) -> Self {
        self.retry_backoff = b;
        self
    }

    /// Deadline of one HTTP request; ≥ 1 s.
    pub fn http_timeout(mut self, d: Duration) -> Self {
        self.http_timeout = d;
        self
    }

    /// Longest time a partial batch waits before it is sent (default 1 s); > 0.
    pub fn flush_interval(mut self, d: Duration) -> Self {
        self.flush_interval = d;
        self
    }

    /// Poll interval of the client certificate files (default 10 s); > 0.
    pub fn cert_reload_interval(mut self, d: Duration) -> Self {
        self.cert_reload_interval = d;
        self
    }

    /// Scan interval and retry wait of the disk-queue replay loop (default 3 s); > 0.
    pub fn replay_interval(mut self, d: Duration) -> Self {
        self.replay_interval = d;
        self
    }

    /// Whether `Content-Type: application/x-ndjson` is sent for batch_size > 1 (default on;
    /// turn off for receivers that insist on no header, as the reference sends).
    pub fn ndjson_content_type(mut self, on: bool) -> Self {
        self.ndjson_content_type = on;
        self
    }

    /// Free text.
    pub fn comment(mut self, c: impl Into<String>) -> Self {
        self.comment = c.into();
        self
    }

    /// Names keys in errors as `<prefix><KEY>[_<name>]` environment variables.
    pub(crate) fn env_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    fn key_name(&self, key: &str) -> String {
        if self.key_prefix.is_empty() {
            if self.key == "_" {
                key.to_string()
            } else {
                format!("{key} (target {})", self.key)
            }
        } else if self.key == "_" {
            format!("{}{}", self.key_prefix, key.to_ascii_uppercase())
        } else {
            format!(
                "{}{}_{}",
                self.key_prefix,
                key.to_ascii_uppercase(),
                self.key
            )
        }
    }

    /// Validates and returns the configuration.
    pub fn build(self) -> Result<WebhookConfig, ConfigError> {
        let err = |k: &str, r: String| ConfigError::new(self.key_name(k), r);
        if self.key.is_empty() {
            return Err(ConfigError::new("name", "target name is empty"));
        }
        // Error texts never echo a `user:password@` part of the URL.
        let shown = redact_userinfo(&self.endpoint);
        let endpoint: http::Uri = self
            .endpoint
            .parse()
            .map_err(|e| err("endpoint", format!("`{shown}` is not a URL: {e}")))?;
        match endpoint.scheme_str() {
            Some("http") | Some("https") => {}
            _ => {
                return Err(err(
                    "endpoint",
                    format!("`{shown}` must be an http:// or https:// URL"),
                ))
            }
        }
        if endpoint.host().map(str::is_empty).unwrap_or(true) {
            return Err(err("endpoint", format!("`{shown}` has no host")));
        }
        if endpoint
            .authority()
            .is_some_and(|a| a.as_str().contains('@'))
        {
            return Err(err(
                "endpoint",
                format!(
                    "`{shown}`: credentials in the URL are not supported; use auth_token (sent \
                     as the Authorization header)"
                ),
            ));
        }
        match (&self.client_cert, &self.client_key) {
            (Some(_), None) => {
                return Err(err(
                    "client_key",
                    "client_cert is set but client_key is not (both or neither)".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(err(
                    "client_cert",
                    "client_key is set but client_cert is not (both or neither)".into(),
                ))
            }
            _ => {}
        }
        let proxy = match (&self.proxy, self.no_proxy) {
            (Some(url), _) => ProxySetting::Url(Proxy::parse(url).map_err(|e| err("proxy", e))?),
            (None, true) => ProxySetting::Direct,
            (None, false) => ProxySetting::Environment,
        };
        if self.queue_size == 0 {
            return Err(err("queue_size", "must be > 0".into()));
        }
        if self.batch_size == 0 {
            return Err(err("batch_size", "must be > 0".into()));
        }
        if self.queue_dir_max_bytes == 0 {
            return Err(err("queue_dir_max_bytes", "must be > 0".into()));
        }
        let retry_interval = if self.retry_interval.is_zero() {
            DEFAULT_RETRY_INTERVAL
        } else {
            self.retry_interval
        };
        if retry_interval > MAX_RETRY_INTERVAL {
            return Err(err(
                "retry_interval",
                format!("{retry_interval:?} is more than the maximum of 1m"),
            ));
        }
        if self.http_timeout < MIN_HTTP_TIMEOUT {
            return Err(err(
                "http_timeout",
                format!("{:?} is less than the minimum of 1s", self.http_timeout),
            ));
        }
        if self.flush_interval.is_zero() {
            return Err(err("flush_interval", "must be > 0".into()));
        }
        if self.cert_reload_interval.is_zero() {
            return Err(err("cert_reload_interval", "must be > 0".into()));
        }
        if self.replay_interval.is_zero() {
            return Err(err("replay_interval", "must be > 0".into()));
        }
        Ok(WebhookConfig {
            endpoint_text: self.endpoint.clone(),
            key: self.key,
            endpoint,
            auth_token: self.auth_token,
            client_cert: self.client_cert,
            client_key: self.client_key,
            ca_cert: self.ca_cert,
            proxy,
            queue_size: self.queue_size,
            batch_size: self.batch_size,
            queue_dir: self.queue_dir,
            queue_dir_max_bytes: self.queue_dir_max_bytes,
            max_retry: self.max_retry,
            retry_interval,
            retry_backoff: self.retry_backoff,
            http_timeout: self.http_timeout,
            flush_interval: self.flush_interval,
            cert_reload_interval: self.cert_reload_interval,
            replay_interval: self.replay_interval,
            ndjson_content_type: self.ndjson_content_type,
            comment: self.comment,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_spec() {
        let c = WebhookConfig::builder("_", "http://127.0.0.1:1/x")
            .build()
            .expect("valid");
        assert_eq!(c.queue_size(), 100_000);
        assert_eq!(c.batch_size(), 1);
        assert_eq!(c.max_retry(), 0);
        assert_eq!(c.retry_interval(), Duration::from_secs(3));
        assert_eq!(c.http_timeout(), Duration::from_secs(5));
    }

    #[test]
    fn errors_name_the_key() {
        let e = WebhookConfig::builder("_", "ftp://x")
            .build()
            .expect_err("bad scheme");
        assert_eq!(e.key, "endpoint");
        let e = WebhookConfig::builder("s", "http://x")
            .batch_size(0)
            .build()
            .expect_err("zero batch");
        assert_eq!(e.key, "batch_size (target s)");
        let e = WebhookConfig::builder("s", "http://x")
            .env_prefix("NODEGRID_AUDIT_WEBHOOK_")
            .http_timeout(Duration::from_millis(10))
            .build()
            .expect_err("short timeout");
        assert_eq!(e.key, "NODEGRID_AUDIT_WEBHOOK_HTTP_TIMEOUT_s");
        let e = WebhookConfig::builder("_", "http://x")
            .retry_interval(Duration::from_secs(61))
            .build()
            .expect_err("long retry");
        assert_eq!(e.key, "retry_interval");
        let e = WebhookConfig::builder("_", "http://x")
            .client_cert_opt(Some("c".into()), None)
            .build()
            .expect_err("cert without key");
        assert_eq!(e.key, "client_key");
    }

    #[test]
    fn userinfo_is_refused_and_never_echoed() {
        assert_eq!(
            redact_userinfo("https://u:p4ss@h:1/x?q"),
            "https://<redacted>@h:1/x?q"
        );
        assert_eq!(redact_userinfo("http://h/a@b"), "http://h/a@b");
        assert_eq!(redact_userinfo("no url"), "no url");
        let e = WebhookConfig::builder("_", "https://user:p4ss@h/")
            .build()
            .expect_err("userinfo");
        assert_eq!(e.key, "endpoint");
        assert!(!format!("{e} {e:?}").contains("p4ss"), "{e}");
        let e = WebhookConfig::builder("_", "ftp://user:p4ss@h/")
            .build()
            .expect_err("scheme");
        assert!(!format!("{e} {e:?}").contains("p4ss"), "{e}");
    }

    #[test]
    fn redacted_hides_token() {
        let c = WebhookConfig::builder("_", "http://x")
            .auth_token("Bearer secret")
            .build()
            .expect("valid");
        assert!(!c.redacted().contains("secret"));
    }
}
