//! What a node tells every webhook about itself (LOGGING.md §2.3.1).

/// Process-wide values sent with every request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// Server version (`x-minio-version`).
    pub version: String,
    /// Deployment id (`x-minio-deployment-id`).
    pub deployment_id: String,
    /// `User-Agent`.
    pub user_agent: String,
}
