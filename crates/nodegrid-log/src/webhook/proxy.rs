//! HTTP proxies for webhook targets (LOGGING.md §2.3 `proxy`, §2.3.6): the per-target `proxy`
//! setting, else the standard environment variables `HTTP_PROXY` / `HTTPS_PROXY` (or their
//! lower-case forms) with `NO_PROXY`.
//!
//! An `http://` endpoint is reached by sending each request to the proxy in absolute form
//! (`POST http://host:port/path`); an `https://` endpoint through a `CONNECT host:port` tunnel,
//! with TLS to the endpoint inside it. The proxy itself is spoken to in plain HTTP
//! (`http://[user:password@]host[:port]`, port 80 by default); credentials are sent as
//! `Proxy-Authorization: Basic`.
//!
//! As with Go's standard library (which the reference uses), a proxy from the environment is
//! not used for `localhost` and loopback addresses, nor for hosts matched by `NO_PROXY`
//! (comma-separated: `*`, host names matching themselves and their subdomains, with or
//! without a leading `.`, IP addresses, CIDR ranges, each optionally with `:port`). An
//! explicit `proxy` setting is used for every endpoint.

use std::net::IpAddr;

use base64::Engine as _;
use http::HeaderValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest response head a proxy may send to a `CONNECT`.
const MAX_CONNECT_RESPONSE: usize = 8 * 1024;

/// A parsed proxy URL.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Proxy {
    host: String,
    port: u16,
    /// `Proxy-Authorization` value (sensitive) when the URL carries credentials.
    auth: Option<HeaderValue>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Proxy {
    /// Parses `http://[user:password@]host[:port]` (a bare `host:port` is taken as `http://`).
    /// Error texts never show the credentials.
    pub(crate) fn parse(text: &str) -> Result<Proxy, String> {
        let text = text.trim();
        let (scheme, rest) = match text.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => ("http".to_string(), text),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let shown = format!(
            "{scheme}://{}{hostport}",
            if userinfo.is_some() {
                "<redacted>@"
            } else {
                ""
            }
        );
        if scheme != "http" {
            return Err(format!(
                "`{shown}`: only http:// proxies are supported (https endpoints are reached \
                 through a CONNECT tunnel of an http:// proxy)"
            ));
        }
        let uri: http::uri::Authority = hostport
            .parse()
            .map_err(|e| format!("`{shown}` is not a proxy URL: {e}"))?;
        let host = uri
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(format!("`{shown}` has no host"));
        }
        let auth = match userinfo {
            None => None,
            Some(u) => {
                let (user, pass) = u.split_once(':').unwrap_or((u, ""));
                let creds = format!("{}:{}", percent_decode(user), percent_decode(pass));
                let mut v = HeaderValue::try_from(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(creds)
                ))
                .map_err(|_| format!("`{shown}`: credentials are not valid"))?;
                v.set_sensitive(true);
                Some(v)
            }
        };
        Ok(Proxy {
            host,
            port: uri.port_u16().unwrap_or(80),
            auth,
        })
    }

    /// The `Proxy-Authorization` value, if the proxy URL carries credentials.
    pub(crate) fn auth(&self) -> Option<&HeaderValue> {
        self.auth.as_ref()
    }

    /// Opens a TCP connection to the proxy.
    pub(crate) async fn connect(&self) -> std::io::Result<TcpStream> {
        TcpStream::connect((self.host.as_str(), self.port)).await
    }

    /// Asks the proxy, on `tcp`, for a tunnel to `host:port` (`CONNECT`); afterwards the
    /// stream carries the endpoint's bytes.
    pub(crate) async fn tunnel(
        &self,
        tcp: &mut TcpStream,
        host: &str,
        port: u16,
    ) -> Result<(), String> {
        let target = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(a) = &self.auth {
            req.push_str("Proxy-Authorization: ");
            req.push_str(a.to_str().unwrap_or_default());
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        tcp.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("proxy: {e}"))?;
        // Byte by byte up to the end of the head: nothing of the tunnel may be consumed.
        let mut head = Vec::with_capacity(256);
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() >= MAX_CONNECT_RESPONSE {
                return Err("proxy: CONNECT response head too long".into());
            }
            let b = tcp
                .read_u8()
                .await
                .map_err(|e| format!("proxy: CONNECT: {e}"))?;
            head.push(b);
        }
        let status_line = String::from_utf8_lossy(&head);
        let status_line = status_line.lines().next().unwrap_or_default();
        let code = status_line.split_whitespace().nth(1).unwrap_or_default();
        if status_line.starts_with("HTTP/1.") && code.starts_with('2') && code.len() == 3 {
            Ok(())
        } else {
            Err(format!("proxy refused CONNECT to {target}: {status_line}"))
        }
    }
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The proxy the environment gives for an endpoint (`https` or not, `host`, `port`), read
/// through `var` (the process environment in production). `Err` names the variable.
pub(crate) fn from_env(
    https: bool,
    host: &str,
    port: u16,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Option<Proxy>, String> {
    let get = |upper: &str| {
        var(upper)
            .map(|v| (upper.to_string(), v))
            .or_else(|| var(&upper.to_ascii_lowercase()).map(|v| (upper.to_ascii_lowercase(), v)))
            .filter(|(_, v)| !v.trim().is_empty())
    };
    let Some((name, value)) = get(if https { "HTTPS_PROXY" } else { "HTTP_PROXY" }) else {
        return Ok(None);
    };
    if is_loopback(host) {
        return Ok(None);
    }
    if let Some((_, no_proxy)) = get("NO_PROXY") {
        if no_proxy_matches(&no_proxy, host, port) {
            return Ok(None);
        }
    }
    Proxy::parse(&value)
        .map(Some)
        .map_err(|e| format!("{name}: {e}"))
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.to_ascii_lowercase().ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether `NO_PROXY` (`list`) exempts `host:port`.
pub(crate) fn no_proxy_matches(list: &str, host: &str, port: u16) -> bool {
    let host = host.to_ascii_lowercase();
    let ip = host.parse::<IpAddr>().ok();
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            let entry = entry.to_ascii_lowercase();
            if entry == "*" {
                return true;
            }
            // An optional port: `host:port`, `[v6]:port`; a bare IPv6 address has no port.
            let (name, want_port) = split_port(&entry);
            if let Some(p) = want_port {
                if p != port {
                    return false;
                }
            }
            let name = name.trim_start_matches('[').trim_end_matches(']');
            if let Some((net, bits)) = name.split_once('/') {
                return match (ip, net.parse::<IpAddr>(), bits.parse::<u8>()) {
                    (Some(ip), Ok(net), Ok(bits)) => in_cidr(ip, net, bits),
                    _ => false,
                };
            }
            if let (Some(ip), Ok(e)) = (ip, name.parse::<IpAddr>()) {
                return ip == e;
            }
            let name = name.trim_start_matches("*.").trim_start_matches('.');
            !name.is_empty() && (host == name || host.ends_with(&format!(".{name}")))
        })
}

fn split_port(entry: &str) -> (&str, Option<u16>) {
    if entry.starts_with('[') {
        if let Some((h, p)) = entry.rsplit_once("]:") {
            return (&entry[..h.len() + 1], p.parse().ok());
        }
        return (entry, None);
    }
    if entry.matches(':').count() == 1 {
        if let Some((h, p)) = entry.split_once(':') {
            if let Ok(p) = p.parse() {
                return (h, Some(p));
            }
        }
    }
    (entry, None)
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn parses_proxy_urls_and_hides_credentials() {
        let p = Proxy::parse("http://us%40er:pa55@proxy.example:3128/").expect("valid");
        assert_eq!((p.host.as_str(), p.port), ("proxy.example", 3128));
        // base64("us@er:pa55")
        assert_eq!(
            p.auth().and_then(|v| v.to_str().ok()),
            Some("Basic dXNAZXI6cGE1NQ==")
        );
        assert!(!format!("{p:?}").contains("pa55"));
        assert!(!format!("{p:?}").contains("dXNAZXI6cGE1NQ"));
        let p = Proxy::parse("10.0.0.1:8080").expect("bare host:port");
        assert_eq!(
            (p.host.as_str(), p.port, p.auth()),
            ("10.0.0.1", 8080, None)
        );
        assert_eq!(Proxy::parse("http://[::1]").expect("v6").port, 80);
        for bad in [
            "https://u:pa55@p:1",
            "socks5://u:pa55@p:1",
            "http://u:pa55@",
            "http://u:pa55@:1",
        ] {
            let e = Proxy::parse(bad).expect_err(bad);
            assert!(!e.contains("pa55"), "{e}");
        }
    }

    #[test]
    fn environment_picks_the_scheme_variable_and_honours_no_proxy() {
        let vars = [
            ("HTTP_PROXY", "http://p1:1"),
            ("https_proxy", "http://p2:2"),
            (
                "NO_PROXY",
                "skip.example, .inner.example,10.1.0.0/16,[::2],only.example:8443",
            ),
        ];
        let get = env(&vars);
        let port_of = |https: bool, host: &str, port: u16| {
            from_env(https, host, port, &get)
                .expect("valid")
                .map(|p| p.port)
        };
        assert_eq!(port_of(false, "logs.example", 80), Some(1));
        assert_eq!(
            port_of(true, "logs.example", 443),
            Some(2),
            "lower-case form"
        );
        assert_eq!(port_of(false, "skip.example", 80), None);
        assert_eq!(port_of(false, "a.skip.example", 80), None, "subdomain");
        assert_eq!(port_of(false, "noskip.example", 80), Some(1));
        assert_eq!(port_of(false, "x.inner.example", 80), None);
        assert_eq!(port_of(false, "10.1.2.3", 80), None, "CIDR");
        assert_eq!(port_of(false, "10.2.0.1", 80), Some(1));
        assert_eq!(port_of(false, "::2", 80), None);
        assert_eq!(port_of(true, "only.example", 8443), None);
        assert_eq!(port_of(true, "only.example", 443), Some(2), "other port");
        assert_eq!(port_of(false, "localhost", 80), None, "loopback");
        assert_eq!(port_of(false, "127.0.0.1", 80), None, "loopback");
        assert_eq!(from_env(false, "h", 80, env(&[])).expect("none"), None);
        assert_eq!(
            from_env(
                false,
                "h",
                80,
                env(&[("HTTP_PROXY", "http://p:1"), ("NO_PROXY", "*")])
            )
            .expect("star"),
            None
        );
        let e = from_env(
            true,
            "h",
            443,
            env(&[("HTTPS_PROXY", "https://u:s3cret@p")]),
        )
        .expect_err("https proxy");
        assert!(e.starts_with("HTTPS_PROXY: "), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
    }
}
