//! Configuration from the environment (LOGGING.md §5), with the project's prefix
//! (`NODEGRID_` in place of `MINIO_`).
//!
//! `NODEGRID_<SUBSYS>_<KEY>` configures the default target (`_`),
//! `NODEGRID_<SUBSYS>_<KEY>_<name>` the target `<name>`, for the subsystems
//! `LOGGER_WEBHOOK` and `AUDIT_WEBHOOK`. A target exists when its `ENABLE` variable is set;
//! it runs when that is a true boolean. Unknown keys are rejected. Legacy
//! `NODEGRID_LOGGER_HTTP_ENDPOINT[_name]` / `NODEGRID_AUDIT_LOGGER_HTTP_ENDPOINT[_name]`
//! enable a webhook with only an endpoint (and, unlike the reference, the normal defaults).
//!
//! Extension keys (not in the reference): `CA_CERT` (extra trusted CA file for https
//! endpoints), `FLUSH_INTERVAL` (longest wait of a partial batch, default 1s) and
//! `RETRY_BACKOFF` (`fixed`, the default, or `exponential`).
//!
//! Any error names the variable and aborts the whole configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::console::ConsoleMode;
use crate::error::ConfigError;
use crate::identity::Identity;
use crate::webhook::{RetryBackoff, WebhookConfig};

/// The default environment prefix.
pub const ENV_PREFIX: &str = "NODEGRID";

/// Keys of a webhook subsystem (upper-case, as in the variable names).
const WEBHOOK_KEYS: &[&str] = &[
    "ENABLE",
    "ENDPOINT",
    "AUTH_TOKEN",
    "CLIENT_CERT",
    "CLIENT_KEY",
    "CA_CERT",
    "PROXY",
    "BATCH_SIZE",
    "QUEUE_SIZE",
    "QUEUE_DIR",
    "QUEUE_DIR_MAX_BYTES",
    "MAX_RETRY",
    "RETRY_INTERVAL",
    "RETRY_BACKOFF",
    "HTTP_TIMEOUT",
    "FLUSH_INTERVAL",
    "COMMENT",
];

/// Everything the logging setup needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoggingConfig {
    /// Console presentation.
    pub console_mode: ConsoleMode,
    /// Values sent with every webhook request.
    pub identity: Identity,
    /// Logger (server-log) webhooks.
    pub logger_webhooks: Vec<WebhookConfig>,
    /// Audit webhooks.
    pub audit_webhooks: Vec<WebhookConfig>,
}

impl LoggingConfig {
    /// An empty configuration (console only).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the console mode.
    pub fn console_mode(mut self, mode: ConsoleMode) -> Self {
        self.console_mode = mode;
        self
    }

    /// Sets the identity (version, deployment id, user agent).
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = identity;
        self
    }

    /// Adds a logger webhook.
    pub fn logger_webhook(mut self, cfg: WebhookConfig) -> Self {
        self.logger_webhooks.push(cfg);
        self
    }

    /// Adds an audit webhook.
    pub fn audit_webhook(mut self, cfg: WebhookConfig) -> Self {
        self.audit_webhooks.push(cfg);
        self
    }

    /// Reads the webhook configuration from the process environment with the `NODEGRID`
    /// prefix.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(ENV_PREFIX, std::env::vars())
    }

    /// Reads the webhook configuration from `vars` (name, value) with `prefix`.
    pub fn from_vars<I>(prefix: &str, vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let vars: BTreeMap<String, String> = vars.into_iter().collect();
        let mut cfg = LoggingConfig::new();
        cfg.logger_webhooks =
            parse_subsys(prefix, "LOGGER_WEBHOOK", "LOGGER_HTTP_ENDPOINT", &vars)?;
        cfg.audit_webhooks =
            parse_subsys(prefix, "AUDIT_WEBHOOK", "AUDIT_LOGGER_HTTP_ENDPOINT", &vars)?;
        let kafka = format!("{prefix}_AUDIT_KAFKA_ENABLE");
        for (k, v) in &vars {
            let is_kafka = k == &kafka || k.starts_with(&format!("{kafka}_"));
            if is_kafka && parse_bool(k, v)? {
                return Err(ConfigError::new(
                    k.clone(),
                    "the audit_kafka target is not supported yet",
                ));
            }
        }
        Ok(cfg)
    }
}

/// Parses a boolean in any of the spellings of LOGGING.md §5.1.
pub(crate) fn parse_bool(key: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "t" | "enabled" | "enable" | "yes" => Ok(true),
        "off" | "false" | "0" | "f" | "disabled" | "disable" | "no" => Ok(false),
        _ => Err(ConfigError::new(
            key,
            format!("`{v}` is not a boolean (on/off, true/false, 1/0, enabled/disabled)"),
        )),
    }
}

/// Parses a duration in Go syntax (`500ms`, `3s`, `1m30s`, `1h`); a bare number is seconds.
pub(crate) fn parse_duration(key: &str, v: &str) -> Result<Duration, ConfigError> {
    let bad = || {
        ConfigError::new(
            key,
            format!("`{v}` is not a duration (e.g. 500ms, 3s, 1m30s)"),
        )
    };
    let s = v.trim();
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let num: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let nanos_per = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        let nanos = num * nanos_per;
        if !nanos.is_finite() || !(0.0..=1e18).contains(&nanos) {
            return Err(bad());
        }
        total += Duration::from_nanos(nanos as u64);
    }
    Ok(total)
}

/// Parses a size in bytes: a plain number, or a number with a unit (`KiB`, `MiB`, `GiB`,
/// `KB`, `MB`, `GB`; case-insensitive).
pub(crate) fn parse_size(key: &str, v: &str) -> Result<u64, ConfigError> {
    let bad = || {
        ConfigError::new(
            key,
            format!("`{v}` is not a size in bytes (e.g. 1073741824, 512MiB, 1GiB)"),
        )
    };
    let s = v.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(bad()),
    };
    num.checked_mul(mult).ok_or_else(bad)
}

fn parse_num<T: std::str::FromStr>(key: &str, v: &str, what: &str) -> Result<T, ConfigError> {
    v.trim()
        .parse::<T>()
        .map_err(|_| ConfigError::new(key, format!("`{v}` is not {what}")))
}

/// `(var name, value)` per key, for one target.
type TargetVars = BTreeMap<&'static str, (String, String)>;

fn parse_subsys(
    prefix: &str,
    subsys: &str,
    legacy: &str,
    vars: &BTreeMap<String, String>,
) -> Result<Vec<WebhookConfig>, ConfigError> {
    let head = format!("{prefix}_{subsys}_");
    let mut targets: BTreeMap<String, TargetVars> = BTreeMap::new();
    // Longest keys first so `CLIENT_KEY` is not read as key `CLIENT` + name.
    let mut keys: Vec<&'static str> = WEBHOOK_KEYS.to_vec();
    keys.sort_by_key(|k| std::cmp::Reverse(k.len()));
    for (var, value) in vars {
        let Some(rest) = var.strip_prefix(&head) else {
            continue;
        };
        let mut found = None;
        for k in &keys {
            if rest == *k {
                found = Some((*k, "_".to_string()));
                break;
            }
            if let Some(name) = rest.strip_prefix(k).and_then(|r| r.strip_prefix('_')) {
                if !name.is_empty() {
                    found = Some((*k, name.to_string()));
                    break;
                }
            }
        }
        let Some((key, name)) = found else {
            return Err(ConfigError::new(var.clone(), "unknown configuration key"));
        };
        targets
            .entry(name)
            .or_default()
            .insert(key, (var.clone(), value.clone()));
    }
    let mut out: BTreeMap<String, WebhookConfig> = BTreeMap::new();
    for (name, kv) in &targets {
        let Some((enable_var, enable)) = kv.get("ENABLE") else {
            // Keys without an ENABLE variable do not create a target.
            continue;
        };
        if !parse_bool(enable_var, enable)? {
            continue;
        }
        out.insert(name.clone(), target_from_vars(prefix, subsys, name, kv)?);
    }
    // Legacy endpoint-only variables; such a target is not overridden by the KV config.
    let legacy_head = format!("{prefix}_{legacy}");
    for (var, value) in vars {
        let name = if *var == legacy_head {
            "_".to_string()
        } else if let Some(n) = var
            .strip_prefix(&legacy_head)
            .and_then(|r| r.strip_prefix('_'))
            .filter(|n| !n.is_empty())
        {
            n.to_string()
        } else {
            continue;
        };
        if value.trim().is_empty() {
            continue;
        }
        let c = WebhookConfig::builder(name.clone(), value.trim())
            .env_prefix(format!("{prefix}_{legacy}"))
            .build()
            .map_err(|e| ConfigError::new(var.clone(), e.reason))?;
        out.insert(name, c);
    }
    Ok(out.into_values().collect())
}

fn target_from_vars(
    prefix: &str,
    subsys: &str,
    name: &str,
    kv: &TargetVars,
) -> Result<WebhookConfig, ConfigError> {
    let get = |k: &str| kv.get(k).map(|(var, v)| (var.as_str(), v.trim()));
    let var_of = |k: &str| {
        if name == "_" {
            format!("{prefix}_{subsys}_{k}")
        } else {
            format!("{prefix}_{subsys}_{k}_{name}")
        }
    };
    let endpoint = match get("ENDPOINT") {
        Some((_, v)) if !v.is_empty() => v.to_string(),
        _ => {
            return Err(ConfigError::new(
                var_of("ENDPOINT"),
                "target is enabled but has no endpoint",
            ))
        }
    };
    let mut b = WebhookConfig::builder(name, endpoint).env_prefix(format!("{prefix}_{subsys}_"));
    if let Some((_, v)) = get("AUTH_TOKEN") {
        b = b.auth_token(v);
    }
    let path = |k: &str| {
        get(k)
            .filter(|(_, v)| !v.is_empty())
            .map(|(_, v)| PathBuf::from(v))
    };
    b = b.client_cert_opt(path("CLIENT_CERT"), path("CLIENT_KEY"));
    if let Some(ca) = path("CA_CERT") {
        b = b.ca_cert(ca);
    }
    if let Some((_, v)) = get("PROXY").filter(|(_, v)| !v.is_empty()) {
        b = b.proxy(v);
    }
    if let Some(dir) = path("QUEUE_DIR") {
        b = b.queue_dir(dir);
    }
    if let Some((var, v)) = get("BATCH_SIZE") {
        b = b.batch_size(parse_num(var, v, "a positive integer")?);
    }
    if let Some((var, v)) = get("QUEUE_SIZE") {
        b = b.queue_size(parse_num(var, v, "a positive integer")?);
    }
    if let Some((var, v)) = get("QUEUE_DIR_MAX_BYTES") {
        b = b.queue_dir_max_bytes(parse_size(var, v)?);
    }
    if let Some((var, v)) = get("MAX_RETRY") {
        b = b.max_retry(parse_num(var, v, "an integer ≥ 0")?);
    }
    if let Some((var, v)) = get("RETRY_INTERVAL") {
        b = b.retry_interval(parse_duration(var, v)?);
    }
    if let Some((var, v)) = get("RETRY_BACKOFF") {
        b = b.retry_backoff(match v.to_ascii_lowercase().as_str() {
            "" | "fixed" => RetryBackoff::Fixed,
            "exponential" => RetryBackoff::Exponential,
            _ => {
                return Err(ConfigError::new(
                    var,
                    format!("`{v}` is not a backoff (fixed or exponential)"),
                ))
            }
        });
    }
    if let Some((var, v)) = get("HTTP_TIMEOUT") {
        b = b.http_timeout(parse_duration(var, v)?);
    }
    if let Some((var, v)) = get("FLUSH_INTERVAL") {
        b = b.flush_interval(parse_duration(var, v)?);
    }
    if let Some((_, v)) = get("COMMENT") {
        b = b.comment(v);
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_default_and_named_targets() {
        let c = LoggingConfig::from_vars(
            "NODEGRID",
            vars(&[
                ("NODEGRID_LOGGER_WEBHOOK_ENABLE", "on"),
                ("NODEGRID_LOGGER_WEBHOOK_ENDPOINT", "http://127.0.0.1:9/log"),
                ("NODEGRID_AUDIT_WEBHOOK_ENABLE_splunk", "true"),
                (
                    "NODEGRID_AUDIT_WEBHOOK_ENDPOINT_splunk",
                    "http://127.0.0.1:9/a",
                ),
                ("NODEGRID_AUDIT_WEBHOOK_BATCH_SIZE_splunk", "100"),
                ("NODEGRID_AUDIT_WEBHOOK_RETRY_INTERVAL_splunk", "1m"),
                ("NODEGRID_AUDIT_WEBHOOK_CLIENT_KEY_splunk", "/k.pem"),
                ("NODEGRID_AUDIT_WEBHOOK_CLIENT_CERT_splunk", "/c.pem"),
                ("NODEGRID_AUDIT_WEBHOOK_ENDPOINT_off", "http://x"),
                ("NODEGRID_AUDIT_WEBHOOK_ENABLE_off", "off"),
                ("UNRELATED", "x"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.logger_webhooks.len(), 1);
        assert_eq!(c.logger_webhooks[0].key(), "_");
        assert_eq!(c.audit_webhooks.len(), 1);
        let a = &c.audit_webhooks[0];
        assert_eq!(a.key(), "splunk");
        assert_eq!(a.batch_size(), 100);
        assert_eq!(a.retry_interval(), Duration::from_secs(60));
        assert_eq!(a.queue_size(), 100_000);
        assert_eq!(
            a.client_cert.as_deref(),
            Some(std::path::Path::new("/c.pem"))
        );
    }

    #[test]
    fn errors_name_the_variable_and_apply_nothing() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[
                    ("NODEGRID_AUDIT_WEBHOOK_ENABLE", "on"),
                    ("NODEGRID_AUDIT_WEBHOOK_ENDPOINT", "http://x"),
                    ("NODEGRID_AUDIT_WEBHOOK_BATCH_SIZE", "ten"),
                ],
                "NODEGRID_AUDIT_WEBHOOK_BATCH_SIZE",
            ),
            (
                &[
                    ("NODEGRID_AUDIT_WEBHOOK_ENABLE_s", "on"),
                    ("NODEGRID_AUDIT_WEBHOOK_ENDPOINT_s", "http://x"),
                    ("NODEGRID_AUDIT_WEBHOOK_HTTP_TIMEOUT_s", "10ms"),
                ],
                "NODEGRID_AUDIT_WEBHOOK_HTTP_TIMEOUT_s",
            ),
            (
                &[("NODEGRID_LOGGER_WEBHOOK_ENABLE", "maybe")],
                "NODEGRID_LOGGER_WEBHOOK_ENABLE",
            ),
            (
                &[("NODEGRID_LOGGER_WEBHOOK_ENABLE", "on")],
                "NODEGRID_LOGGER_WEBHOOK_ENDPOINT",
            ),
            (
                &[("NODEGRID_LOGGER_WEBHOOK_BOGUS", "1")],
                "NODEGRID_LOGGER_WEBHOOK_BOGUS",
            ),
            (
                &[
                    ("NODEGRID_LOGGER_WEBHOOK_ENABLE", "on"),
                    ("NODEGRID_LOGGER_WEBHOOK_ENDPOINT", "http://x"),
                    ("NODEGRID_LOGGER_WEBHOOK_CLIENT_CERT", "/c.pem"),
                ],
                "NODEGRID_LOGGER_WEBHOOK_CLIENT_KEY",
            ),
            (
                &[("NODEGRID_LOGGER_HTTP_ENDPOINT_x", "nope://")],
                "NODEGRID_LOGGER_HTTP_ENDPOINT_x",
            ),
        ];
        for (vs, key) in cases {
            let e = LoggingConfig::from_vars("NODEGRID", vars(vs)).expect_err("must fail");
            assert_eq!(e.key, *key, "{e}");
        }
    }

    #[test]
    fn legacy_endpoint_gets_normal_defaults() {
        let c = LoggingConfig::from_vars(
            "NODEGRID",
            vars(&[(
                "NODEGRID_AUDIT_LOGGER_HTTP_ENDPOINT_old",
                "http://127.0.0.1:9/",
            )]),
        )
        .expect("valid");
        assert_eq!(c.audit_webhooks.len(), 1);
        assert_eq!(c.audit_webhooks[0].queue_size(), 100_000);
        assert_eq!(c.audit_webhooks[0].http_timeout(), Duration::from_secs(5));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("k", "1024").ok(), Some(1024));
        assert_eq!(parse_size("k", "512MiB").ok(), Some(512 << 20));
        assert_eq!(parse_size("k", "2 gib").ok(), Some(2 << 30));
        assert_eq!(parse_size("k", "3KB").ok(), Some(3000));
        assert!(parse_size("k", "1TiB").is_err());
        assert!(parse_size("k", "MiB").is_err());
        assert!(parse_size("k", "99999999999999999999GiB").is_err());
        let c = LoggingConfig::from_vars(
            "NODEGRID",
            vars(&[
                ("NODEGRID_AUDIT_WEBHOOK_ENABLE", "on"),
                ("NODEGRID_AUDIT_WEBHOOK_ENDPOINT", "http://127.0.0.1:9/"),
                ("NODEGRID_AUDIT_WEBHOOK_QUEUE_DIR_MAX_BYTES", "64MiB"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.audit_webhooks[0].queue_dir_max_bytes(), 64 << 20);
    }

    #[test]
    fn durations_and_bools() {
        assert_eq!(
            parse_duration("k", "1m30s").ok(),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_duration("k", "500ms").ok(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(parse_duration("k", "7").ok(), Some(Duration::from_secs(7)));
        assert!(parse_duration("k", "1x").is_err());
        assert!(parse_duration("k", "s").is_err());
        for t in ["on", "TRUE", "1", "t", "Enabled"] {
            assert_eq!(parse_bool("k", t).ok(), Some(true), "{t}");
        }
        for f in ["off", "False", "0", "f", "disabled"] {
            assert_eq!(parse_bool("k", f).ok(), Some(false), "{f}");
        }
    }
}
