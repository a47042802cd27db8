//! Error types of the crate.

/// A configuration error. It always names the key (environment variable or config key) that
/// was wrong; a configuration that produces one is never partially applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid logging configuration: `{key}`: {reason}")]
pub struct ConfigError {
    /// The offending key (e.g. `NODEGRID_AUDIT_WEBHOOK_BATCH_SIZE_splunk` or `batch_size`).
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Errors when starting or changing targets.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad configuration (nothing was applied).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A target could not be started (nothing was applied).
    #[error("target {target}: {reason}")]
    Start {
        /// Target name.
        target: String,
        /// What went wrong.
        reason: String,
    },
    /// A client certificate or key could not be (re)loaded; the previous one stays in use.
    #[error("target {target}: client certificate: {reason}")]
    Certificate {
        /// Target name.
        target: String,
        /// What went wrong.
        reason: String,
    },
    /// No tokio runtime is running on this thread; targets need one for their workers.
    #[error("no tokio runtime: start the logging targets from within a tokio runtime")]
    NoRuntime,
}
