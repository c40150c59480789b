//! Node addresses: `host:port` or `https://host:port`, with IPv6 hosts in brackets.

use std::fmt;
use std::net::IpAddr;

use crate::error::ClientError;

/// Longest address text kept in an error message.
const MAX_ECHO: usize = 200;

/// A parsed node address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Address {
    /// Host name or IP address, without IPv6 brackets.
    pub(crate) host: String,
    /// TCP port, never 0.
    pub(crate) port: u16,
}

impl Address {
    /// Parses `host:port` or `https://host:port` (a trailing `/` is allowed).
    pub(crate) fn parse(addr: &str) -> Result<Self, ClientError> {
        let err = |reason| ClientError::InvalidAddress {
            addr: addr.chars().take(MAX_ECHO).collect(),
            reason,
        };
        let trimmed = addr.trim();
        let rest = match trimmed.split_once("://") {
            Some(("https", rest)) => rest,
            Some((_, _)) => {
                return Err(err(
                    "only https:// is supported (every connection uses TLS)",
                ));
            }
            None => trimmed,
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(err("expected host:port without path, query or user"));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| err("missing ] after IPv6 address"))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| err("missing :port"))?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(err("invalid IPv6 address in brackets"));
            }
            (host, port)
        } else {
            let (host, port) = rest.rsplit_once(':').ok_or_else(|| err("missing :port"))?;
            if host.contains(':') {
                return Err(err("put an IPv6 address in brackets: [::1]:port"));
            }
            (host, port)
        };
        if host.is_empty() {
            return Err(err("missing host"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| err("port must be a number from 1 to 65535"))?;
        if port == 0 {
            return Err(err("port must be a number from 1 to 65535"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }

    /// The TLS server name to send: the host, or `localhost` when the host is an IP
    /// address. The pinned verifier ignores the name (the certificate itself is pinned),
    /// so this only fills the SNI extension sensibly.
    pub(crate) fn server_name(&self) -> String {
        if self.host.parse::<IpAddr>().is_ok() {
            "localhost".to_owned()
        } else {
            self.host.clone()
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_good_addresses() {
        let a = Address::parse("localhost:7000").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("localhost", 7000));
        assert_eq!(a.server_name(), "localhost");
        let a = Address::parse("https://node.example:443/").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("node.example", 443));
        assert_eq!(a.server_name(), "node.example");
        let a = Address::parse("127.0.0.1:1").unwrap();
        assert_eq!(a.server_name(), "localhost");
        let a = Address::parse("[::1]:8443").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", 8443));
        assert_eq!(a.to_string(), "[::1]:8443");
        assert_eq!(a.server_name(), "localhost");
    }

    #[test]
    fn rejects_bad_addresses_with_a_reason() {
        for (bad, reason) in [
            ("localhost", "missing :port"),
            ("http://localhost:80", "only https://"),
            ("localhost:0", "port must be"),
            ("localhost:99999", "port must be"),
            ("localhost:x", "port must be"),
            (":7000", "missing host"),
            ("::1:7000", "brackets"),
            ("[::1]", "missing :port"),
            ("[nope]:1", "invalid IPv6"),
            ("host:1/path", "without path"),
            ("", "missing :port"),
        ] {
            let err = Address::parse(bad).unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(err, ClientError::InvalidAddress { .. }),
                "{bad}: {text}"
            );
            assert!(text.contains(reason), "{bad}: {text}");
        }
    }
}
