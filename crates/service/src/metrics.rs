//! Prometheus metrics: what an operator watches to know billing runs.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label of an admission's outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// "admitted" or "refused".
    pub outcome: String,
}

/// Every metric the service exports.
pub struct Metrics {
    registry: Registry,
    /// Duration of billing rounds.
    pub round_seconds: Histogram,
    /// Rounds completed.
    pub rounds: Counter,
    /// Periods charged.
    pub periods_charged: Counter,
    /// Credits charged.
    pub credits_charged: Counter,
    /// Servers stopped for lack of credits.
    pub stops: Counter,
    /// Admission decisions.
    pub admissions: Family<Outcome, Counter>,
    /// Admission latency.
    pub admission_seconds: Histogram,
    /// Failed hub API calls.
    pub hub_errors: Counter,
    /// Ready servers the plugin never admitted (not billed).
    pub unbilled_servers: Gauge,
    /// Open event streams.
    pub event_streams: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("credits");
        let round_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let admission_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        let m = Self {
            round_seconds,
            rounds: Counter::default(),
            periods_charged: Counter::default(),
            credits_charged: Counter::default(),
            stops: Counter::default(),
            admissions: Family::default(),
            admission_seconds,
            hub_errors: Counter::default(),
            unbilled_servers: Gauge::default(),
            event_streams: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "round_duration_seconds",
            "Duration of billing rounds",
            m.round_seconds.clone(),
        );
        registry.register("rounds", "Billing rounds completed", m.rounds.clone());
        registry.register(
            "periods_charged",
            "Server periods charged",
            m.periods_charged.clone(),
        );
        registry.register(
            "credits_charged",
            "Credits charged",
            m.credits_charged.clone(),
        );
        registry.register(
            "stops",
            "Servers stopped because their credits ran out",
            m.stops.clone(),
        );
        registry.register(
            "admissions",
            "Spawn admission decisions",
            m.admissions.clone(),
        );
        registry.register(
            "admission_duration_seconds",
            "Admission latency",
            m.admission_seconds.clone(),
        );
        registry.register(
            "hub_api_errors",
            "Failed calls to the hub API",
            m.hub_errors.clone(),
        );
        registry.register(
            "unbilled_servers",
            "Ready servers that were never admitted and are not billed",
            m.unbilled_servers.clone(),
        );
        registry.register(
            "event_streams",
            "Open event streams",
            m.event_streams.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }

    /// Counts one admission decision.
    pub fn admission(&self, admitted: bool, seconds: f64) {
        let outcome = if admitted { "admitted" } else { "refused" };
        self.admissions
            .get_or_create(&Outcome {
                outcome: outcome.into(),
            })
            .inc();
        self.admission_seconds.observe(seconds);
    }
}
