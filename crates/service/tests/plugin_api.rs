//! What the hub plugin calls: config, admission, ready and stopped notices.

use std::time::Duration;

use axum::http::Method;
use serde_json::{Value, json};

use crate::harness::{ADA, ADMIN, START, Service, eventually};

fn iso(at: i64) -> String {
    credit_ledger::clock::iso8601(at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_counts_promises_and_refuses_with_a_message() {
    let s = Service::new().await;
    s.put_user("ada", 30, 1, 3600, None).await;
    let first = s.admit("ada", "", "k1", 20, 60).await;
    assert_eq!(first, json!({"admitted": true, "pool": "default"}));
    // The same start asked again gets the same answer and promises nothing more.
    assert_eq!(s.admit("ada", "", "k1", 20, 60).await, first);

    let refused = s.admit("ada", "second", "k2", 20, 60).await;
    assert_eq!(refused["admitted"], false, "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains("20"), "{message}");
    assert_eq!(refused["required"], 20);
    assert_eq!(refused["billing_interval"], 60);
    assert_eq!(refused["promised"], 20);
    assert_eq!(refused["pool"]["name"], "default");
    assert_eq!(refused["pool"]["balance"], 30);
    // Full: no grant to wait for.
    assert!(refused["next_grant_at"].is_null());

    // A spawn that fails before it is ready costs nothing and frees its promise.
    let ended = s
        .plugin(Method::POST, "internal/v1/spawns/k1/stopped", Value::Null)
        .await
        .ok();
    assert_eq!(ended, json!({"ended": true}));
    assert_eq!(s.balance("ada").await, 30);
    let again = s.admit("ada", "second", "k3", 20, 60).await;
    assert_eq!(again["admitted"], true, "{again}");
    // A spawn with nothing to pay is always admitted.
    let free = s.admit("ada", "free", "k4", 0, 60).await;
    assert_eq!(free["admitted"], true, "{free}");
    // A user without credits can't spawn: 404 with a message.
    let reply = s
        .plugin(
            Method::POST,
            "internal/v1/spawns",
            json!({"user": "nobody", "server_key": "k9", "billing_value": 1, "billing_interval": 60}),
        )
        .await;
    reply.error(404);

    let metrics = s.get("metrics", ADMIN).await.text();
    assert!(
        metrics.contains(r#"credits_admissions_total{outcome="refused"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"credits_admissions_total{outcome="admitted"} 4"#),
        "{metrics}"
    );
    s.assert_audit_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_spawns_never_promise_more_than_there_is() {
    let s = Service::new().await;
    s.put_user("ada", 35, 1, 3600, None).await;
    let answers = futures::future::join_all((0..12).map(|i| {
        let s = &s;
        async move {
            s.admit("ada", &format!("s{i}"), &format!("k{i}"), 10, 60)
                .await
        }
    }))
    .await;
    let admitted = answers.iter().filter(|a| a["admitted"] == true).count();
    assert_eq!(admitted, 3, "{answers:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_are_chosen_by_user_options() {
    let s = Service::new().await;
    s.put_projects(&[("lab", 100, 1, 60)]).await;
    let pools = json!({"pools": [
        {"name": "gpu", "cap": 50, "grant_value": 1, "grant_interval": 60,
         "user_options": {"profile": ["gpu-small", "gpu-large"]}},
        {"name": "cpu", "cap": 20, "grant_value": 1, "grant_interval": 60,
         "user_options": {"profile": "cpu-.*"}, "project": "lab"},
    ]});
    let view = s
        .plugin(Method::PUT, "internal/v1/users/ada", pools)
        .await
        .ok();
    assert_eq!(view["pools"][0]["name"], "gpu");
    assert_eq!(
        view["pools"][0]["user_options"],
        json!({"profile": ["gpu-small", "gpu-large"]})
    );
    assert_eq!(view["pools"][1]["project"]["name"], "lab");
    let spawn = |key: &str, profile: Value| {
        json!({"user": "ada", "server_name": key, "server_key": key,
               "user_options": {"profile": profile}, "billing_value": 5, "billing_interval": 60})
    };
    let admit = |body: Value| async {
        s.plugin(Method::POST, "internal/v1/spawns", body)
            .await
            .ok()
    };
    assert_eq!(admit(spawn("a", json!("gpu-large"))).await["pool"], "gpu");
    assert_eq!(admit(spawn("b", json!(["gpu-small"]))).await["pool"], "gpu");
    assert_eq!(admit(spawn("c", json!("cpu-4"))).await["pool"], "cpu");
    let refused = admit(spawn("d", json!("tpu"))).await;
    assert_eq!(refused["admitted"], false);
    assert!(refused["pool"].is_null(), "{refused}");
    assert!(!refused["message"].as_str().unwrap().is_empty());

    // The plugin reads a user's credits with the secret.
    let view = s
        .plugin(Method::GET, "internal/v1/users/ada", Value::Null)
        .await
        .ok();
    assert_eq!(view["servers"].as_array().unwrap().len(), 3);
    s.plugin(Method::GET, "internal/v1/users/nobody", Value::Null)
        .await
        .error(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_from_the_plugin_is_refused_whole() {
    let s = Service::new().await;
    s.put_projects(&[("lab", 100, 1, 60)]).await;
    s.put_user("ada", 30, 1, 60, Some("lab")).await;
    let before = s.view("ada").await;
    let pool = |extra: Value| {
        let mut p = json!({"name": "default", "cap": 30, "grant_value": 1, "grant_interval": 60});
        p.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({"pools": [p]})
    };
    for (body, status) in [
        (pool(json!({"cap": -1})), 400),
        (pool(json!({"cap": 1.5})), 400),
        (pool(json!({"grant_interval": 0})), 400),
        (pool(json!({"project": "nope"})), 404),
        (pool(json!({"bogus": 1})), 400),
        (pool(json!({"user_options": {"profile": "(unclosed"}})), 200),
        (json!({"pools": []}), 400),
        (json!([]), 400),
        (
            json!({"pools": [{"name": "a", "cap": 1, "grant_value": 1, "grant_interval": 1},
                          {"name": "a", "cap": 1, "grant_value": 1, "grant_interval": 1}]}),
            400,
        ),
    ] {
        let reply = s
            .plugin(Method::PUT, "internal/v1/users/ada", body.clone())
            .await;
        if status == 200 {
            // Not a regex: read as a glob, as the design says.
            reply.ok();
            s.put_user("ada", 30, 1, 60, Some("lab")).await;
            continue;
        }
        reply.error(status);
    }
    for body in [
        json!([{"name": "lab", "cap": -1, "grant_value": 1, "grant_interval": 60}]),
        json!([{"name": "", "cap": 1, "grant_value": 1, "grant_interval": 60}]),
        json!([{"name": "x", "cap": 1, "grant_value": 1}]),
        json!({"name": "x"}),
    ] {
        s.plugin(Method::PUT, "internal/v1/projects", body)
            .await
            .error(400);
    }
    assert_eq!(s.view("ada").await, before);
    assert_eq!(s.project("lab").await.0["cap"], 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_notices_start_billing_at_the_given_time() {
    let s = Service::new().await;
    s.put_user("ada", 100, 1, 3600, None).await;
    s.admit("ada", "", "k1", 5, 60).await;
    s.advance(10);
    let reply = s
        .plugin(
            Method::POST,
            "internal/v1/spawns/k1/ready",
            json!({"ready_at": iso(START + 5_000)}),
        )
        .await
        .ok();
    assert_eq!(reply, json!({"stop": null}));
    let view = s.view("ada").await;
    assert_eq!(view["servers"][0]["next_charge_at"], iso(START + 65_000));
    assert_eq!(view["pools"][0]["balance"], 95);
    // Said twice: charged once.
    s.plugin(Method::POST, "internal/v1/spawns/k1/ready", Value::Null)
        .await
        .ok();
    assert_eq!(s.balance("ada").await, 95);

    for body in [
        json!({"ready_at": "yesterday"}),
        json!({"ready_at": 5}),
        json!({"bogus": 1}),
    ] {
        s.plugin(Method::POST, "internal/v1/spawns/k1/ready", body)
            .await
            .error(400);
    }
    s.plugin(Method::POST, "internal/v1/spawns/nope/ready", Value::Null)
        .await
        .error(404);
    // A stop notice for an unknown start is harmless.
    let reply = s
        .plugin(Method::POST, "internal/v1/spawns/nope/stopped", Value::Null)
        .await
        .ok();
    assert_eq!(reply, json!({"ended": false}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_cant_pay_its_first_period_is_stopped_at_ready() {
    let s = Service::new().await;
    s.put_user("ada", 10, 1, 3600, None).await;
    assert_eq!(s.admit("ada", "", "k1", 10, 60).await["admitted"], true);
    s.hub.add_server("ada", "", true, json!({}));
    // An admin empties the pool while the server starts.
    s.patch("api/v1/users/ada/pools/default", ADMIN, r#"{"balance": 0}"#)
        .await
        .ok();
    let reply = s.ready("k1").await;
    let reason = reply["stop"]["reason"].as_str().unwrap();
    assert!(reason.contains("credits ran out"), "{reason}");
    eventually("the hub stops it", Duration::from_secs(5), || async {
        s.view("ada").await["stopped"].as_array().unwrap().len() == 1
    })
    .await;
    assert_eq!(s.hub.deletes(), [("ada".to_string(), String::new())]);
    assert_eq!(s.balance("ada").await, 0);
    s.assert_audit_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_notice_ends_a_running_server() {
    let mut s = Service::new().await;
    s.put_user("ada", 100, 1, 3600, None).await;
    s.start_server("ada", "", "k1", 5, 60).await;
    s.advance(30);
    let reply = s
        .plugin(Method::POST, "internal/v1/spawns/k1/stopped", Value::Null)
        .await
        .ok();
    assert_eq!(reply, json!({"ended": true}));
    let me = s.get("api/v1/me", ADA).await.ok();
    assert_eq!(me["servers"], json!([]));
    // Stopped by its user, not for lack of credits.
    assert_eq!(me["stopped"], json!([]));
    let reply = s
        .plugin(Method::POST, "internal/v1/spawns/k1/stopped", Value::Null)
        .await
        .ok();
    assert_eq!(reply, json!({"ended": false}));
    s.advance(600);
    s.round().await;
    assert_eq!(s.balance("ada").await, 95);
    assert!(s.hub.deletes().is_empty());
    s.assert_audit_clean().await;
}
