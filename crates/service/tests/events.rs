//! Server-Sent Events: a user's credits on every change, and the plugin's
//! round notices.

use std::time::Duration;

use axum::body::Body;
use axum::http::Method;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::harness::{ADA, ADMIN, BOB, SECRET, Service};

/// An open event stream.
struct Stream {
    body: Body,
    buffer: String,
}

impl Stream {
    async fn open(s: &Service, path: &str, headers: &[(&str, &str)]) -> Self {
        let response = s
            .send(Service::request(Method::GET, path, headers, Body::empty()))
            .await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            body: response.into_body(),
            buffer: String::new(),
        }
    }

    /// The data of the next event within `wait`, skipping comments.
    async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                if !data.is_empty() {
                    let text = data.join("\n");
                    return Some(
                        serde_json::from_str(&text)
                            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {text}")),
                    );
                }
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame()).await;
            match frame {
                Err(_) => return None,
                Ok(None) => panic!("the stream ended"),
                Ok(Some(frame)) => {
                    if let Ok(data) = frame.unwrap().into_data() {
                        self.buffer.push_str(std::str::from_utf8(&data).unwrap());
                    }
                }
            }
        }
    }

    async fn next(&mut self) -> Value {
        self.next_within(Duration::from_secs(5))
            .await
            .expect("an event within 5 s")
    }
}

fn auth(token: &str) -> String {
    format!("token {token}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn my_events_start_with_my_view_and_follow_every_change() {
    let mut s = Service::new().await;
    s.put_user("ada", 50, 1, 3600, None).await;
    s.put_user("bob", 50, 1, 3600, None).await;
    let ada_auth = auth(ADA);
    let mut ada = Stream::open(&s, "api/v1/me/events", &[("authorization", &ada_auth)]).await;
    let first = ada.next().await;
    assert_eq!(first, s.get("api/v1/me", ADA).await.ok());
    assert_eq!(first["name"], "ada");

    // An admin's change reaches the stream at once.
    s.patch(
        "api/v1/users/ada/pools/default",
        ADMIN,
        r#"{"balance": 20, "reason": "test"}"#,
    )
    .await
    .ok();
    let update = ada.next().await;
    assert_eq!(update["pools"][0]["balance"], 20);
    assert_eq!(update, s.get("api/v1/me", ADA).await.ok());

    // Changes to bob don't reach ada's stream.
    s.patch("api/v1/users/bob/pools/default", ADMIN, r#"{"balance": 1}"#)
        .await
        .ok();
    assert_eq!(ada.next_within(Duration::from_millis(200)).await, None);

    // A spawn, its first charge, and a round's charge are sent too.
    s.start_server("ada", "", "k1", 5, 60).await;
    let mut last = ada.next().await;
    while let Some(next) = ada.next_within(Duration::from_millis(200)).await {
        last = next;
    }
    assert_eq!(last["pools"][0]["balance"], 15);
    assert_eq!(last["servers"][0]["state"], "running");
    s.advance(60);
    s.round().await;
    let charged = ada.next().await;
    assert_eq!(charged["pools"][0]["balance"], 10);

    // The query-string token works for EventSource, which can't set headers.
    let mut again = Stream::open(&s, "api/v1/me/events?token=bob-token", &[]).await;
    assert_eq!(again.next().await["name"], "bob");
    let metrics = s.get("metrics", ADMIN).await.text();
    assert!(metrics.contains("credits_event_streams 2"), "{metrics}");
    drop(again);
    drop(ada);
    let metrics = s.get("metrics", ADMIN).await.text();
    assert!(metrics.contains("credits_event_streams 0"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admins_stream_is_their_own() {
    let s = Service::new().await;
    s.put_user("root", 5, 1, 3600, None).await;
    s.put_user("bob", 5, 1, 3600, None).await;
    let admin = auth(ADMIN);
    let mut stream = Stream::open(&s, "api/v1/me/events", &[("authorization", &admin)]).await;
    assert_eq!(stream.next().await["name"], "root");
    let bob = auth(BOB);
    let mut stream = Stream::open(&s, "api/v1/me/events", &[("authorization", &bob)]).await;
    assert_eq!(stream.next().await["name"], "bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_hears_of_every_round() {
    let mut s = Service::new().await;
    s.put_user("ada", 10, 1, 3600, None).await;
    s.start_server("ada", "", "k1", 10, 60).await;
    let mut rounds = Stream::open(
        &s,
        "internal/v1/rounds",
        &[("x-credits-plugin-secret", SECRET)],
    )
    .await;
    s.advance(60);
    s.round().await;
    let notice = rounds.next().await;
    assert!(notice["duration_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(notice["periods_charged"], 0);
    assert_eq!(notice["credits_charged"], 0);
    let stopped = &notice["stopped"][0];
    assert_eq!(stopped["user"], "ada");
    assert_eq!(stopped["server"], "");
    assert!(
        stopped["reason"]
            .as_str()
            .unwrap()
            .contains("credits ran out")
    );
    s.round().await;
    let notice = rounds.next().await;
    assert_eq!(notice["stopped"], json!([]));
}
