//! The Prometheus metrics: one [`Registry`] of hpgate's own (no global one).
//!
//! The request path only touches atomics: every request counter is created
//! up front for its bounded label set (status class x method x protocol)
//! and kept in an array, and the duration histogram is a set of atomic
//! buckets. The WebSocket relay and the app connection pool get handles
//! to counters made up front for every label value (an index, no look-up).
//! Process states, the affinity table, certificates and uptime are read at
//! scrape time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Known methods; anything else counts as "other" (a bounded label set).
const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "other",
];
const PROTOCOLS: [&str; 4] = ["HTTP/1.0", "HTTP/1.1", "HTTP/2", "other"];
/// Upper bounds of the duration buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];
/// Process states as /status and the `hpgate_app_processes` gauge name them.
pub const STATES: [&str; 4] = ["starting", "ready", "down", "stopped"];
/// `webSocketCompression` values, as the `mode` label names them.
const WS_MODES: [&str; 3] = ["passthrough", "disable", "offload"];
/// A WebSocket's two directions; the relay's index 0 is client to app.
const WS_DIRECTIONS: [&str; 2] = ["client_to_app", "app_to_client"];
/// Offload: a message's size on the app's side and on the client's side.
const WS_STAGES: [&str; 2] = ["uncompressed", "compressed"];
/// Why a connect to an app process failed ([`Metrics::app_connect_error`]).
pub const CONNECT_CAUSES: [&str; 5] = ["refused", "timeout", "reset", "handshake", "other"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    class: &'static str,
    method: &'static str,
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabel {
    pub cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusCause {
    pub status: u16,
    pub cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WsLabels {
    mode: &'static str,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OffloadLabels {
    direction: &'static str,
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabel {
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabel {
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// Every metric hpgate exports, shared by the proxy, the supervisor and the
/// admin listener.
pub struct Metrics {
    registry: Registry,
    requests: RequestCounters,
    duration: AtomicHistogram,
    pub connections: Gauge,
    websockets: Arc<WsMetrics>,
    processes: Family<StateLabel, Gauge>,
    /// Process starts (every attempt).
    pub starts: Counter,
    /// Process exits and failed starts, by cause.
    pub exits: Family<CauseLabel, Counter>,
    /// 502/503/504 answers hpgate made itself, by `ProxyError::kind()`.
    pub unavailable: Family<StatusCause, Counter>,
    /// Recycles that switched traffic to new processes.
    pub recycles: Counter,
    /// Slots that entered the rapid-fail lock-out.
    pub lockouts: Counter,
    /// Request bodies forwarded to the app (HTTP; WebSockets count apart).
    pub request_bytes: Counter,
    /// Response bodies sent to clients (the app's and hpgate's own pages).
    pub response_bytes: Counter,
    /// Failed connects to app processes, one per cause in CONNECT_CAUSES.
    connect_errors: [Counter; CONNECT_CAUSES.len()],
    affinity: Gauge,
    /// notAfter of every certificate served, by its name.
    cert_expiry: Family<NameLabel, Gauge>,
    uptime: Gauge<f64, AtomicU64>,
    started: Instant,
    /// Scrape-time values are written under it, so two scrapes at once
    /// cannot interleave a certificate family's clear and refill.
    scrape: Mutex<()>,
}

/// What the admin listener reads at scrape time.
#[derive(Default)]
pub struct Snapshot {
    /// Process slots per state (STATES).
    pub states: Vec<(&'static str, i64)>,
    /// Sessions in the Socket.IO affinity table.
    pub affinity: usize,
    /// Every certificate served: its name and notAfter (Unix seconds).
    pub certificates: Vec<(String, i64)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("hpgate");
        let requests = RequestCounters::default();
        registry.register(
            "requests",
            "Responses by status class, method and client protocol",
            requests.clone(),
        );
        let websockets = Arc::new(WsMetrics::new(&mut registry));
        let connect_errors = Family::<CauseLabel, Counter>::default();
        registry.register(
            "app_connect_errors",
            "Failed connects to app processes, by cause (timeout: no answer within the connect limit)",
            connect_errors.clone(),
        );
        let m = Metrics {
            registry,
            requests,
            duration: AtomicHistogram::default(),
            connections: Gauge::default(),
            websockets,
            processes: Family::default(),
            starts: Counter::default(),
            exits: Family::default(),
            unavailable: Family::default(),
            recycles: Counter::default(),
            lockouts: Counter::default(),
            request_bytes: Counter::default(),
            response_bytes: Counter::default(),
            connect_errors: CONNECT_CAUSES
                .map(|cause| connect_errors.get_or_create(&CauseLabel { cause }).clone()),
            affinity: Gauge::default(),
            cert_expiry: Family::default(),
            uptime: Gauge::default(),
            started: Instant::now(),
            scrape: Mutex::new(()),
        };
        m.register_rest()
    }

    fn register_rest(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register_with_unit(
            "request_duration",
            "Time from request head to response head",
            Unit::Seconds,
            self.duration.clone(),
        );
        r.register_with_unit(
            "request_body",
            "HTTP request body bytes received from clients",
            Unit::Bytes,
            self.request_bytes.clone(),
        );
        r.register_with_unit(
            "response_body",
            "HTTP response body bytes sent to clients (the app's and hpgate's own pages)",
            Unit::Bytes,
            self.response_bytes.clone(),
        );
        r.register(
            "open_connections",
            "Open client connections",
            self.connections.clone(),
        );
        r.register(
            "app_processes",
            "App process slots by state",
            self.processes.clone(),
        );
        r.register("process_starts", "App process starts", self.starts.clone());
        r.register(
            "process_exits",
            "App process exits and failed starts by cause",
            self.exits.clone(),
        );
        r.register(
            "unavailable_responses",
            "502, 503 and 504 answers hpgate made itself, by cause",
            self.unavailable.clone(),
        );
        r.register(
            "recycles",
            "Recycles that switched traffic to new processes",
            self.recycles.clone(),
        );
        r.register(
            "rapid_fail_lockouts",
            "App process slots that entered the rapid-fail lock-out",
            self.lockouts.clone(),
        );
        r.register(
            "affinity_sessions",
            "Socket.IO sessions in the affinity table",
            self.affinity.clone(),
        );
        r.register_with_unit(
            "tls_certificate_expiry_timestamp",
            "notAfter of each certificate served (Unix time), by its first DNS name",
            Unit::Seconds,
            self.cert_expiry.clone(),
        );
        // A gauge of 1 rather than an OpenMetrics info: promtool and the
        // Prometheus text format know gauges only.
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        r.register("build_info", "hpgate's version", build);
        r.register_with_unit(
            "uptime",
            "Time since hpgate started",
            Unit::Seconds,
            self.uptime.clone(),
        );
        self
    }

    /// Counts one response (the hot path: an index and two atomic adds).
    pub fn request(
        &self,
        status: u16,
        method: &http::Method,
        proto: http::Version,
        took: Duration,
    ) {
        let class = match status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            _ => 4,
        };
        let method = METHODS
            .iter()
            .position(|m| *m == method.as_str())
            .unwrap_or(METHODS.len() - 1);
        let proto = match proto {
            http::Version::HTTP_10 => 0,
            http::Version::HTTP_11 => 1,
            http::Version::HTTP_2 => 2,
            _ => 3,
        };
        let i = (class * METHODS.len() + method) * PROTOCOLS.len() + proto;
        if let Some(c) = self.requests.cells.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.duration.observe(took);
    }

    /// Counts a 502/503/504 hpgate answered itself.
    pub fn unavailable(&self, status: u16, cause: &'static str) {
        if matches!(status, 502..=504) {
            self.unavailable
                .get_or_create(&StatusCause { status, cause })
                .inc();
        }
    }

    /// Counts a failed connect to an app process; `cause` is one of
    /// CONNECT_CAUSES (anything else counts as "other").
    pub fn app_connect_error(&self, cause: &str) {
        let last = CONNECT_CAUSES.len() - 1;
        let i = CONNECT_CAUSES.iter().position(|c| *c == cause);
        self.connect_errors[i.unwrap_or(last)].inc();
    }

    /// The relay's handle to the WebSocket counters of `mode`.
    pub fn websocket(&self, mode: crate::config::Compression) -> WsStats {
        use crate::config::Compression;
        let mode = match mode {
            Compression::Passthrough => 0,
            Compression::Disable => 1,
            Compression::Offload => 2,
        };
        WsStats {
            m: self.websockets.clone(),
            mode,
        }
    }

    /// The exposition, with the values read at scrape time filled in.
    pub fn render(&self, now: &Snapshot) -> String {
        let _one_at_a_time = self.scrape.lock();
        for (state, n) in &now.states {
            self.processes.get_or_create(&StateLabel { state }).set(*n);
        }
        self.affinity.set(now.affinity as i64);
        // Certificates come and go with reloads: the family is rebuilt. Two
        // certificates of one name (RSA and ECDSA) show the sooner expiry.
        self.cert_expiry.clear();
        for (name, not_after) in &now.certificates {
            let g = self
                .cert_expiry
                .get_or_create(&NameLabel { name: name.clone() });
            let seen = g.get();
            if seen == 0 || *not_after < seen {
                g.set(*not_after);
            }
        }
        self.uptime.set(self.started.elapsed().as_secs_f64());
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The WebSocket counters, made up front for every (mode, direction) so
/// the relay adds to them by index.
struct WsMetrics {
    /// Open WebSockets per mode.
    open: [Gauge; WS_MODES.len()],
    /// [mode][direction]
    messages: [[Counter; 2]; WS_MODES.len()],
    bytes: [[Counter; 2]; WS_MODES.len()],
    /// [direction][stage]
    offload: [[Counter; 2]; 2],
}

impl WsMetrics {
    fn new(r: &mut Registry) -> WsMetrics {
        let open = Family::<ModeLabel, Gauge>::default();
        let messages = Family::<WsLabels, Counter>::default();
        let bytes = Family::<WsLabels, Counter>::default();
        let offload = Family::<OffloadLabels, Counter>::default();
        let by_mode = |f: &Family<WsLabels, Counter>| {
            WS_MODES.map(|mode| {
                WS_DIRECTIONS
                    .map(|direction| f.get_or_create(&WsLabels { mode, direction }).clone())
            })
        };
        let m = WsMetrics {
            open: WS_MODES.map(|mode| open.get_or_create(&ModeLabel { mode }).clone()),
            messages: by_mode(&messages),
            bytes: by_mode(&bytes),
            offload: WS_DIRECTIONS.map(|direction| {
                WS_STAGES.map(|stage| {
                    offload
                        .get_or_create(&OffloadLabels { direction, stage })
                        .clone()
                })
            }),
        };
        r.register(
            "open_websockets",
            "Open WebSockets by webSocketCompression mode",
            open,
        );
        r.register(
            "websocket_messages",
            "WebSocket data messages relayed (messages, not frames: counted at a message's final frame), by mode and direction",
            messages,
        );
        r.register_with_unit(
            "websocket_payload",
            "Payload bytes of WebSocket data frames as the sender sent them (compressed if it compressed), by mode and direction",
            Unit::Bytes,
            bytes,
        );
        r.register_with_unit(
            "websocket_offload",
            "Offload: message bytes on the app's side (uncompressed) and on the client's side (compressed; small messages go as they are), by direction",
            Unit::Bytes,
            offload,
        );
        m
    }
}

/// One WebSocket's handle to its mode's counters (the relay's hot path:
/// atomic adds at fixed indexes). Direction 0 is client to app.
#[derive(Clone)]
pub struct WsStats {
    m: Arc<WsMetrics>,
    mode: usize,
}

impl WsStats {
    /// Counters no registry exports (the relay's unit tests).
    pub fn detached() -> WsStats {
        WsStats {
            m: Arc::new(WsMetrics::new(&mut Registry::default())),
            mode: 0,
        }
    }

    /// Payload bytes and messages counted so far in `direction` (tests and
    /// the fuzz targets).
    pub fn counted(&self, direction: usize) -> (u64, u64) {
        let d = direction.min(1);
        (
            self.m.bytes[self.mode][d].get(),
            self.m.messages[self.mode][d].get(),
        )
    }

    /// Data frames passed: `bytes` of payload, `messages` ended by them.
    pub fn data_frames(&self, direction: usize, bytes: u64, messages: u64) {
        let d = direction.min(1);
        if bytes > 0 {
            self.m.bytes[self.mode][d].inc_by(bytes);
        }
        if messages > 0 {
            self.m.messages[self.mode][d].inc_by(messages);
        }
    }

    /// Offload re-framed a message: its size uncompressed and as sent to
    /// or received from the client.
    pub fn offload(&self, direction: usize, uncompressed: u64, compressed: u64) {
        let [u, c] = &self.m.offload[direction.min(1)];
        u.inc_by(uncompressed);
        c.inc_by(compressed);
    }

    /// Counts the WebSocket as open until the guard drops.
    pub fn opened(&self) -> OpenWebSocket {
        let g = self.m.open[self.mode].clone();
        g.inc();
        OpenWebSocket(g)
    }
}

/// One open WebSocket in `hpgate_open_websockets`; dropped when it ends.
pub struct OpenWebSocket(Gauge);

impl Drop for OpenWebSocket {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One atomic counter per (status class, method, protocol); only the
/// combinations seen so far are exported.
#[derive(Clone, Debug)]
struct RequestCounters {
    cells: std::sync::Arc<Vec<AtomicU64>>,
}

impl Default for RequestCounters {
    fn default() -> Self {
        let n = CLASSES.len() * METHODS.len() * PROTOCOLS.len();
        RequestCounters {
            cells: std::sync::Arc::new((0..n).map(|_| AtomicU64::new(0)).collect()),
        }
    }
}

impl TypedMetric for RequestCounters {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for RequestCounters {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut cells = self.cells.iter();
        for class in CLASSES {
            for method in METHODS {
                for protocol in PROTOCOLS {
                    let n = cells.next().map_or(0, |c| c.load(Ordering::Relaxed));
                    if n == 0 {
                        continue;
                    }
                    let labels = RequestLabels {
                        class,
                        method,
                        protocol,
                    };
                    encoder
                        .encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
                }
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// A histogram of atomic buckets: observing takes no lock (the crate's own
/// histogram takes a mutex per observation).
#[derive(Clone, Debug, Default)]
struct AtomicHistogram {
    inner: std::sync::Arc<HistogramInner>,
}

#[derive(Debug, Default)]
struct HistogramInner {
    /// One count per bucket in BUCKETS, then +Inf.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl AtomicHistogram {
    fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        let h = &self.inner;
        h.buckets[i].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        h.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let h = &self.inner;
        let buckets: Vec<(f64, u64)> = BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(h.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        // The count is the buckets' total, so the exposition is consistent
        // even while requests are being counted.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The OpenMetrics exposition in the Prometheus text format (0.0.4): a
/// counter's HELP and TYPE name its `_total` series, and the UNIT and EOF
/// lines go.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (*p, rest)));
        match meta.and_then(|(p, rest)| {
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{p}{name}_total {tail}"))
        }) {
            Some(renamed) => out += &renamed,
            None => out += line,
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every request lands in its own bounded cell; unknown methods are "other".
    #[test]
    fn requests_are_counted_by_class_method_and_protocol() {
        let m = Metrics::new();
        let ms = Duration::from_millis(3);
        m.request(200, &http::Method::GET, http::Version::HTTP_11, ms);
        m.request(200, &http::Method::GET, http::Version::HTTP_11, ms);
        let odd = http::Method::from_bytes(b"BREW").expect("method");
        m.request(503, &odd, http::Version::HTTP_2, ms);
        let text = m.render(&Snapshot::default());
        assert!(text
            .contains(r#"hpgate_requests_total{class="2xx",method="GET",protocol="HTTP/1.1"} 2"#));
        assert!(text
            .contains(r#"hpgate_requests_total{class="5xx",method="other",protocol="HTTP/2"} 1"#));
        assert!(text.contains("hpgate_request_duration_seconds_count 3"));
        assert!(text.contains(r#"hpgate_request_duration_seconds_bucket{le="0.001"} 0"#));
        assert!(text.contains(r#"hpgate_request_duration_seconds_bucket{le="0.005"} 3"#));
    }

    /// The relay's handle adds to its mode's cells; the open gauge follows
    /// the guard.
    #[test]
    fn websocket_counters_by_mode_and_direction() {
        let m = Metrics::new();
        let ws = m.websocket(crate::config::Compression::Offload);
        let open = ws.opened();
        ws.data_frames(0, 10, 0);
        ws.data_frames(0, 5, 1);
        ws.data_frames(1, 7, 1);
        ws.offload(1, 100, 20);
        let text = m.render(&Snapshot::default());
        let has = |s: &str| assert!(text.contains(s), "{s} in\n{text}");
        has(r#"hpgate_websocket_messages_total{mode="offload",direction="client_to_app"} 1"#);
        has(r#"hpgate_websocket_payload_bytes_total{mode="offload",direction="client_to_app"} 15"#);
        has(r#"hpgate_websocket_messages_total{mode="offload",direction="app_to_client"} 1"#);
        has(r#"hpgate_websocket_messages_total{mode="passthrough",direction="client_to_app"} 0"#);
        has(
            r#"hpgate_websocket_offload_bytes_total{direction="app_to_client",stage="uncompressed"} 100"#,
        );
        has(
            r#"hpgate_websocket_offload_bytes_total{direction="app_to_client",stage="compressed"} 20"#,
        );
        has(r#"hpgate_open_websockets{mode="offload"} 1"#);
        drop(open);
        let text = m.render(&Snapshot::default());
        assert!(text.contains(r#"hpgate_open_websockets{mode="offload"} 0"#));
    }

    /// One series per name, the sooner notAfter; certificates no longer
    /// served disappear.
    #[test]
    fn certificate_expiry_per_name() {
        let m = Metrics::new();
        let certs = vec![
            ("a.test".to_string(), 2_000_000_000),
            ("a.test".to_string(), 1_900_000_000),
            ("b.test".to_string(), 1_800_000_000),
        ];
        let text = m.render(&Snapshot {
            certificates: certs,
            ..Snapshot::default()
        });
        let series = "hpgate_tls_certificate_expiry_timestamp_seconds";
        assert!(
            text.contains(&format!("{series}{{name=\"a.test\"}} 1900000000")),
            "{text}"
        );
        assert!(text.contains(&format!("{series}{{name=\"b.test\"}} 1800000000")));
        let text = m.render(&Snapshot {
            certificates: vec![("b.test".to_string(), 1_850_000_000)],
            ..Snapshot::default()
        });
        assert!(!text.contains("a.test"), "{text}");
        assert!(text.contains(&format!("{series}{{name=\"b.test\"}} 1850000000")));
    }

    #[test]
    fn prometheus_text_names_counters_by_their_series() {
        let om = "# HELP x_requests Requests.\n# TYPE x_requests counter\nx_requests_total 1\n# HELP up_seconds Up.\n# TYPE up_seconds gauge\n# UNIT up_seconds seconds\nup_seconds 2.0\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP x_requests_total Requests.\n# TYPE x_requests_total counter\nx_requests_total 1\n# HELP up_seconds Up.\n# TYPE up_seconds gauge\nup_seconds 2.0\n"
        );
    }
}
