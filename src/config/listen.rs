//! Listen addresses: where hpgate accepts connections, and which of them
//! speak TLS.
//!
//! Owns the syntax (`HOST:PORT`, `[IPv6]:PORT`, `:PORT`, each optionally
//! prefixed `http://` or `https://`, several separated by commas) and how
//! the list prints. Must not bind anything (`proxy/server.rs` does).

use std::net::SocketAddr;

use serde::{Serialize, Serializer};

use super::spec::SettingValue;

/// One listener: an address and whether it terminates TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub addr: SocketAddr,
    pub tls: bool,
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Plain listeners print bare, as they always have.
        if self.tls {
            write!(f, "https://{}", self.addr)
        } else {
            write!(f, "{}", self.addr)
        }
    }
}

/// Every listener, in the order given; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners(pub Vec<Listen>);

impl Listeners {
    pub fn plain(addr: SocketAddr) -> Listeners {
        Listeners(vec![Listen { addr, tls: false }])
    }

    pub fn iter(&self) -> impl Iterator<Item = &Listen> {
        self.0.iter()
    }

    /// Whether every listener is on a loopback address.
    pub fn all_loopback(&self) -> bool {
        self.0.iter().all(|l| l.addr.ip().is_loopback())
    }

    pub fn any_tls(&self) -> bool {
        self.0.iter().any(|l| l.tls)
    }

    /// Parses a comma-separated list (`--listen` given several times is
    /// joined the same way).
    pub fn parse(raw: &str) -> Result<Listeners, String> {
        let list = raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(parse_one)
            .collect::<Result<Vec<_>, _>>()?;
        if list.is_empty() {
            return Err(format!("\"{raw}\" names no listen address"));
        }
        Ok(Listeners(list))
    }
}

impl std::fmt::Display for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(Listen::to_string).collect();
        f.write_str(&parts.join(", "))
    }
}

impl SettingValue for Listeners {
    fn serialize_value<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_string().serialize(s)
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

fn parse_one(raw: &str) -> Result<Listen, String> {
    let (tls, rest) = if let Some(r) = strip_scheme(raw, "https://") {
        (true, r)
    } else if let Some(r) = strip_scheme(raw, "http://") {
        (false, r)
    } else {
        (false, raw)
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let addr = parse_addr(rest).map_err(|e| {
        if raw.contains("://") && !raw.starts_with("http") {
            format!("\"{raw}\": only http:// and https:// listeners exist")
        } else {
            e
        }
    })?;
    Ok(Listen { addr, tls })
}

fn strip_scheme<'a>(raw: &'a str, scheme: &str) -> Option<&'a str> {
    let head = raw.get(..scheme.len())?;
    head.eq_ignore_ascii_case(scheme)
        .then(|| &raw[scheme.len()..])
}

/// `HOST:PORT`, `[::1]:PORT` or `:PORT` (all IPv4 interfaces).
pub fn parse_addr(raw: &str) -> Result<SocketAddr, String> {
    let s = raw.trim();
    let bad =
        || format!("\"{raw}\" is not a listen address; expected HOST:PORT, [IPv6]:PORT or :PORT");
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| bad())?;
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || host.contains(':') {
        return Err(bad());
    }
    use std::net::ToSocketAddrs;
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve listen host \"{host}\": {e}"))?
        .next()
        .ok_or_else(|| format!("listen host \"{host}\" has no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_schemes() {
        let l = Listeners::parse("http://127.0.0.1:80, https://[::1]:443,:9").unwrap();
        assert_eq!(
            l.0,
            [
                Listen {
                    addr: "127.0.0.1:80".parse().unwrap(),
                    tls: false
                },
                Listen {
                    addr: "[::1]:443".parse().unwrap(),
                    tls: true
                },
                Listen {
                    addr: "0.0.0.0:9".parse().unwrap(),
                    tls: false
                },
            ]
        );
        assert_eq!(l.to_string(), "127.0.0.1:80, https://[::1]:443, 0.0.0.0:9");
        assert!(Listeners::parse("HTTPS://localhost:8443")
            .unwrap()
            .any_tls());
        for bad in ["", " , ", "ftp://x:1", "https://", "x", "1.2.3.4:99999"] {
            assert!(Listeners::parse(bad).is_err(), "{bad}");
        }
    }
}
