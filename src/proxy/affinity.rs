//! Socket.IO (Engine.IO) session affinity: every request of a session goes
//! to the process that created it.
//!
//! hpgate learns a session id from the Engine.IO handshake response (the
//! open packet of a polling `GET` without `sid`) and routes later requests
//! carrying `sid=` (polling and the WebSocket upgrade) to that process.
//! Entries expire when unused for the session's ping interval plus ping
//! timeout; the table is bounded. An unknown or stale sid (its process
//! died) is routed anywhere: the app answers "session unknown" and the
//! client reconnects. A WebSocket-only session needs no entry: it lives on
//! one connection.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most this many live sessions are remembered; past it, expired ones
/// are swept and, if still full, new sessions go unpinned (logged).
const MAX_ENTRIES: usize = 100_000;
/// Used when the open packet does not say (Engine.IO's defaults: 25 s + 20 s).
const DEFAULT_TTL: Duration = Duration::from_secs(45);
/// The longest a session stays pinned without a request, whatever the app
/// says: its ping times are numbers the app sends, and an entry must not
/// outlive the process table it points into by years (nor overflow the
/// clock).
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

struct Entry {
    pid: u32,
    ttl: Duration,
    expires: Instant,
}

#[derive(Default)]
pub struct Affinity {
    table: Mutex<HashMap<String, Entry>>,
}

impl Affinity {
    /// The process a session belongs to, refreshing its expiry.
    pub fn lookup(&self, sid: &str) -> Option<u32> {
        let mut t = self.table.lock().ok()?;
        let now = Instant::now();
        match t.get_mut(sid) {
            Some(e) if e.expires > now => {
                e.expires = now + e.ttl;
                Some(e.pid)
            }
            Some(_) => {
                t.remove(sid);
                None
            }
            None => None,
        }
    }

    pub fn learn(&self, sid: String, pid: u32, ttl: Option<Duration>) {
        let Ok(mut t) = self.table.lock() else { return };
        let now = Instant::now();
        if t.len() >= MAX_ENTRIES {
            t.retain(|_, e| e.expires > now);
            if t.len() >= MAX_ENTRIES {
                tracing::warn!("Socket.IO affinity table is full ({MAX_ENTRIES} sessions); new session not pinned");
                return;
            }
        }
        let ttl = ttl.unwrap_or(DEFAULT_TTL).min(MAX_TTL);
        t.insert(
            sid,
            Entry {
                pid,
                ttl,
                expires: now + ttl,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.table.lock().map(|t| t.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The value of query parameter `name`, if present.
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Session id and time to live from an Engine.IO open packet
/// (`0{"sid":"…","pingInterval":25000,"pingTimeout":20000,…}`, possibly
/// length-prefixed by Engine.IO 3).
pub fn parse_open_packet(body: &[u8]) -> Option<(String, Option<Duration>)> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find('{')?;
    let json: serde_json::Value = serde_json::from_str(text[start..].split('\u{1e}').next()?)
        .ok()
        .or_else(|| {
            // Engine.IO 3 may append more packets; take the first object.
            let end = text[start..].find('}')? + start + 1;
            serde_json::from_str(&text[start..end]).ok()
        })?;
    let sid = json.get("sid")?.as_str()?.to_string();
    let ms = |k: &str| json.get(k).and_then(|v| v.as_u64());
    let ttl = match (ms("pingInterval"), ms("pingTimeout")) {
        (Some(i), Some(t)) => Some(Duration::from_millis(i.saturating_add(t)).min(MAX_TTL)),
        _ => None,
    };
    Some((sid, ttl))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_open_packets() {
        let (sid, ttl) = parse_open_packet(br#"0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#).unwrap();
        assert_eq!(sid, "abc");
        assert_eq!(ttl, Some(Duration::from_secs(45)));
        let (sid, _) = parse_open_packet(
            br#"97:0{"sid":"x1","upgrades":[],"pingInterval":25000,"pingTimeout":5000}2:40"#,
        )
        .unwrap();
        assert_eq!(sid, "x1");
        assert!(parse_open_packet(b"not a packet").is_none());
    }

    #[test]
    fn an_apps_huge_ping_times_neither_overflow_nor_pin_a_session_for_ever() {
        let packet = br#"0{"sid":"big","pingInterval":18446744073709551615,"pingTimeout":1}"#;
        let (sid, ttl) = parse_open_packet(packet).unwrap();
        assert_eq!(ttl, Some(MAX_TTL));
        let a = Affinity::default();
        a.learn(sid, 42, ttl);
        a.learn("given".into(), 7, Some(Duration::MAX));
        assert_eq!(a.lookup("big"), Some(42));
        assert_eq!(a.lookup("given"), Some(7));
    }

    #[test]
    fn learns_looks_up_and_expires() {
        let a = Affinity::default();
        a.learn("s1".into(), 42, Some(Duration::from_secs(60)));
        assert_eq!(a.lookup("s1"), Some(42));
        a.learn("s2".into(), 7, Some(Duration::ZERO));
        assert_eq!(a.lookup("s2"), None);
        assert_eq!(a.len(), 1);
        assert_eq!(
            query_param("EIO=4&transport=polling&sid=zz", "sid"),
            Some("zz")
        );
        assert_eq!(query_param("EIO=4", "sid"), None);
    }
}
