//! What operators watch: health and metrics.

use axum::body::Body;
use axum::http::Method;
use serde_json::json;

use crate::harness::{ADMIN, METRICS, Service};

/// The value of a sample line `name value`.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (key, value) = line.rsplit_once(' ')?;
        (key == name).then(|| value.parse().unwrap())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_needs_no_auth() {
    let s = Service::new().await;
    let reply = s.call(Method::GET, "health", &[], Body::empty()).await;
    assert_eq!(reply.ok(), json!({"status": "ok", "database": "ok"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_rounds_and_their_duration() {
    let mut s = Service::new().await;
    s.put_user("ada", 100, 1, 3600, None).await;
    s.start_server("ada", "", "k1", 5, 60).await;
    s.advance(120);
    s.round().await;
    let reply = s.get("metrics", ADMIN).await;
    assert_eq!(reply.status, 200);
    let content_type = reply.headers["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = reply.text();
    assert!(text.contains("# TYPE credits_rounds counter"), "{text}");
    assert_eq!(sample(&text, "credits_rounds_total"), Some(1.0), "{text}");
    assert!(
        text.contains("# TYPE credits_round_duration_seconds histogram"),
        "{text}"
    );
    assert_eq!(
        sample(&text, "credits_round_duration_seconds_count"),
        Some(1.0),
        "{text}"
    );
    assert!(sample(&text, "credits_round_duration_seconds_sum").unwrap() >= 0.0);
    assert_eq!(
        sample(&text, "credits_periods_charged_total"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "credits_credits_charged_total"),
        Some(10.0),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");

    s.round().await;
    let text = s.get("metrics", METRICS).await.text();
    assert_eq!(sample(&text, "credits_rounds_total"), Some(2.0), "{text}");
    assert_eq!(
        sample(&text, "credits_round_duration_seconds_count"),
        Some(2.0),
        "{text}"
    );
}
