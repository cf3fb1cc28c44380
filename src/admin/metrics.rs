//! The Prometheus metrics: one [`Registry`] of hpgate's own (no global one).
//!
//! The request path only touches atomics: every request counter is created
//! up front for its bounded label set (status class x method x protocol)
//! and kept in an array, and the duration histogram is a set of atomic
//! buckets. Process states, WebSockets and uptime are read at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};
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
    websockets: Gauge,
    processes: Family<StateLabel, Gauge>,
    /// Process starts (every attempt).
    pub starts: Counter,
    /// Process exits and failed starts, by cause.
    pub exits: Family<CauseLabel, Counter>,
    /// 502/503/504 answers hpgate made itself, by `ProxyError::kind()`.
    pub unavailable: Family<StatusCause, Counter>,
    /// Recycles that switched traffic to new processes.
    pub recycles: Counter,
    uptime: Gauge<f64, AtomicU64>,
    started: Instant,
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
        let m = Metrics {
            registry,
            requests,
            duration: AtomicHistogram::default(),
            connections: Gauge::default(),
            websockets: Gauge::default(),
            processes: Family::default(),
            starts: Counter::default(),
            exits: Family::default(),
            unavailable: Family::default(),
            recycles: Counter::default(),
            uptime: Gauge::default(),
            started: Instant::now(),
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
        r.register(
            "open_connections",
            "Open client connections",
            self.connections.clone(),
        );
        r.register(
            "open_websockets",
            "Open WebSockets",
            self.websockets.clone(),
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

    /// The exposition, with the values read at scrape time filled in.
    pub fn render(&self, websockets: usize, states: &[(&'static str, i64)]) -> String {
        self.websockets.set(websockets as i64);
        for (state, n) in states {
            self.processes.get_or_create(&StateLabel { state }).set(*n);
        }
        self.uptime.set(self.started.elapsed().as_secs_f64());
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
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
        let text = m.render(0, &[]);
        assert!(text
            .contains(r#"hpgate_requests_total{class="2xx",method="GET",protocol="HTTP/1.1"} 2"#));
        assert!(text
            .contains(r#"hpgate_requests_total{class="5xx",method="other",protocol="HTTP/2"} 1"#));
        assert!(text.contains("hpgate_request_duration_seconds_count 3"));
        assert!(text.contains(r#"hpgate_request_duration_seconds_bucket{le="0.001"} 0"#));
        assert!(text.contains(r#"hpgate_request_duration_seconds_bucket{le="0.005"} 3"#));
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
