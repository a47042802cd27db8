//! Opening byte streams to peers: the [`Dialer`] trait (TCP by default, TLS for `https://`
//! hosts; tests plug in simulated networks), the [`Target`] a host string names, and the
//! [`IoHalves`] a connected stream is split into.

use super::tls::TlsConfig;
use crate::error::ConfigError;
use futures::future::BoxFuture;
use std::io;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// The read half of a byte stream.
pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a byte stream.
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// A connected byte stream split into halves, so the session's reader and writer run
/// independently (for TCP without any lock between them).
pub struct IoHalves {
    /// Read half.
    pub read: BoxRead,
    /// Write half.
    pub write: BoxWrite,
}

impl std::fmt::Debug for IoHalves {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IoHalves")
    }
}

impl IoHalves {
    /// Splits a TCP stream (lock-free halves) and turns on `TCP_NODELAY`.
    pub fn from_tcp(s: TcpStream) -> IoHalves {
        let _ = s.set_nodelay(true);
        let (r, w) = s.into_split();
        IoHalves {
            read: Box::new(r),
            write: Box::new(w),
        }
    }

    /// Splits any bidirectional stream.
    pub fn from_io<T: AsyncRead + AsyncWrite + Send + Unpin + 'static>(io: T) -> IoHalves {
        let (r, w) = tokio::io::split(io);
        IoHalves {
            read: Box::new(r),
            write: Box::new(w),
        }
    }
}

/// Where to dial: derived from a host string (`http://host:port` or `https://host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host string exactly as configured.
    pub host_string: String,
    /// `host:port`, used to connect and as the HTTP `Host` header.
    pub authority: String,
    /// The host part alone (TLS server name).
    pub hostname: String,
    /// Whether to use TLS (`https://`).
    pub tls: bool,
}

impl Target {
    /// Parses a host string. Accepts `http://`, `https://`, `ws://` and `wss://`; the port
    /// defaults to 80 / 443. Nothing may follow `host:port` (see [`Target::try_parse`] for
    /// the reason a string is refused).
    pub fn parse(host_string: &str) -> Option<Target> {
        Target::try_parse(host_string).ok()
    }

    /// Parses a host string, or says what is wrong with it and what to write instead:
    /// [`ConfigError::InvalidHost`] for a string that is not `scheme://host[:port]`,
    /// [`ConfigError::HostPath`] for one with anything after `host:port` (a path, even a
    /// lone trailing `/`, a query or a fragment).
    ///
    /// ```
    /// use nodegrid::transport::Target;
    /// let t = Target::try_parse("http://10.0.0.1").unwrap();
    /// assert_eq!(t.authority, "10.0.0.1:80");
    /// assert_eq!(
    ///     Target::try_parse("http://10.0.0.1:9000/").unwrap_err().to_string(),
    ///     r#"host string "http://10.0.0.1:9000/" ends with '/': write "http://10.0.0.1:9000""#
    /// );
    /// ```
    pub fn try_parse(host_string: &str) -> Result<Target, ConfigError> {
        let invalid = || ConfigError::InvalidHost(host_string.to_string());
        let (scheme, tls) = ["http://", "https://", "ws://", "wss://"]
            .into_iter()
            .zip([false, true, false, true])
            .find(|(p, _)| host_string.starts_with(p))
            .ok_or_else(invalid)?;
        let rest = &host_string[scheme.len()..];
        let (authority, after) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
        if authority.is_empty() || authority.contains(['@', ' ']) {
            return Err(invalid());
        }
        let (hostname, port) = if let Some(stripped) = authority.strip_prefix('[') {
            // [v6]:port
            let end = stripped.find(']').ok_or_else(invalid)?;
            let host = &stripped[..end];
            let after = &stripped[end + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(invalid()),
            };
            (host.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        if hostname.is_empty() {
            return Err(invalid());
        }
        let port: u16 = match port {
            Some(p) => p.parse().map_err(|_| invalid())?,
            None if tls => 443,
            None => 80,
        };
        if !after.is_empty() {
            return Err(ConfigError::HostPath {
                host: host_string.to_string(),
                rest: after.to_string(),
                expected: format!("{scheme}{authority}"),
            });
        }
        let authority = if hostname.contains(':') {
            format!("[{hostname}]:{port}")
        } else {
            format!("{hostname}:{port}")
        };
        Ok(Target {
            host_string: host_string.to_string(),
            authority,
            hostname,
            tls,
        })
    }

    /// The address this target names, for comparing host strings: `host:port` with the
    /// default port filled in and the host name in lower case (`http://A` and `http://a:80`
    /// both give `a:80`).
    pub fn address(&self) -> String {
        self.authority.to_ascii_lowercase()
    }
}

/// Opens byte streams to peers. The default is [`TcpDialer`]; tests plug in simulated networks.
pub trait Dialer: Send + Sync + 'static {
    /// Connects to `target` (TCP connect and, if required, TLS). The HTTP upgrade is done by
    /// the caller on the returned stream.
    fn dial(&self, target: &Target) -> BoxFuture<'static, io::Result<IoHalves>>;
}

/// Dials over TCP, with TLS for `https://` targets when a TLS configuration is given.
#[derive(Clone, Default)]
pub struct TcpDialer {
    tls: Option<TlsConfig>,
}

impl TcpDialer {
    /// A dialer with optional TLS.
    pub fn new(tls: Option<TlsConfig>) -> Self {
        TcpDialer { tls }
    }
}

impl Dialer for TcpDialer {
    fn dial(&self, target: &Target) -> BoxFuture<'static, io::Result<IoHalves>> {
        let target = target.clone();
        let tls = self.tls.clone();
        Box::pin(async move {
            let s = TcpStream::connect(&target.authority).await?;
            let _ = s.set_nodelay(true);
            if !target.tls {
                return Ok(IoHalves::from_tcp(s));
            }
            let tls = tls.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "https:// host but no TLS configuration",
                )
            })?;
            tls.connect(&target.hostname, s)
                .await
                .map(IoHalves::from_io)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_targets() {
        let t = Target::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.hostname.as_str(), t.tls),
            ("127.0.0.1:9000", "127.0.0.1", false)
        );
        let t = Target::parse("https://minio-1.example.com").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.tls),
            ("minio-1.example.com:443", true)
        );
        let t = Target::parse("http://[::1]:9000").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.hostname.as_str()),
            ("[::1]:9000", "::1")
        );
        for bad in [
            "",
            "ftp://x:1",
            "http://",
            "http://:80",
            "http://x:notaport",
            "http://a@b:1",
            "10.0.0.1:9000",
            "http://[::1",
            "http://[::1]x",
        ] {
            assert_eq!(
                Target::try_parse(bad),
                Err(ConfigError::InvalidHost(bad.to_string())),
                "{bad:?}"
            );
            assert!(Target::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn anything_after_the_port_is_refused_with_the_string_to_write() {
        for (bad, rest, expected) in [
            ("http://a:1/", "/", "http://a:1"),
            ("http://a/", "/", "http://a"),
            (
                "https://a:9000/minio/grid/v1",
                "/minio/grid/v1",
                "https://a:9000",
            ),
            ("http://[::1]:9000/", "/", "http://[::1]:9000"),
            ("http://a:1?x=1", "?x=1", "http://a:1"),
            ("http://a:1#f", "#f", "http://a:1"),
        ] {
            assert_eq!(
                Target::try_parse(bad),
                Err(ConfigError::HostPath {
                    host: bad.into(),
                    rest: rest.into(),
                    expected: expected.into(),
                }),
                "{bad}"
            );
        }
        assert_eq!(
            Target::try_parse("http://a:1/").unwrap_err().to_string(),
            r#"host string "http://a:1/" ends with '/': write "http://a:1""#
        );
        assert_eq!(
            Target::try_parse("https://a:9000/minio/grid/v1")
                .unwrap_err()
                .to_string(),
            r#"host string "https://a:9000/minio/grid/v1" has "/minio/grid/v1" after host:port: write "https://a:9000" (the route path is set with ManagerBuilder::route)"#
        );
    }

    #[test]
    fn addresses_fill_in_default_ports_and_ignore_case() {
        let addr = |h: &str| Target::parse(h).unwrap().address();
        assert_eq!(addr("http://a"), "a:80");
        assert_eq!(addr("http://A:80"), "a:80");
        assert_eq!(addr("https://a"), "a:443");
        assert_eq!(addr("wss://a:443"), "a:443");
        assert_eq!(addr("http://[::1]"), "[::1]:80");
        assert_ne!(addr("http://a:81"), addr("http://a"));
    }
}
