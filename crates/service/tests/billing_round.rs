//! Billing rounds through the service: the plugin admits and reports ready,
//! the clock moves, a round charges; the unpaid are stopped through the hub.

use std::time::Duration;

use serde_json::json;

use crate::harness::{ADA, ADMIN, Db, START, Service, eventually};
use crate::on_both;

on_both!(
    rounds_charge_and_stop_the_unpaid_through_the_hub,
    an_unreachable_hub_does_not_stop_billing_and_stops_are_retried,
);

fn iso(at: i64) -> String {
    credit_ledger::clock::iso8601(at)
}

/// Waits until the service has recorded the stop of `user`'s `server`.
async fn wait_for_recorded_stop(s: &Service, user: &str, server: &str) {
    eventually(
        &format!("the stop of {user}/{server:?} is recorded"),
        Duration::from_secs(10),
        || async {
            let view = s.view(user).await;
            view["stopped"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["name"] == server)
                && !view["servers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x["name"] == server)
        },
    )
    .await;
}

async fn rounds_charge_and_stop_the_unpaid_through_the_hub(db: Db) {
    let mut s = Service::with(db, &[]).await;
    s.put_user("ada", 25, 1, 3600, None).await;
    s.put_user("bob", 100, 1, 3600, None).await;
    s.start_server("ada", "", "ada-1", 10, 60).await;
    s.start_server("bob", "", "bob-1", 1, 60).await;

    // The first period is charged when the server becomes ready.
    let me = s.get("api/v1/me", ADA).await.ok();
    assert_eq!(me["pools"][0]["balance"], 15);
    assert_eq!(
        me["servers"],
        json!([{
            "name": "", "pool": "default", "billing_value": 10, "billing_interval": 60,
            "next_charge_at": iso(START + 60_000), "state": "running",
        }])
    );
    assert_eq!(me["stopped"], json!([]));

    s.advance(60);
    s.round().await;
    assert_eq!(s.balance("ada").await, 5);
    assert_eq!(s.balance("bob").await, 98);
    let journal = s.journal("ada").await;
    let charge = &journal[0];
    assert_eq!(charge["kind"], "charge");
    assert_eq!(charge["delta"], -10);
    assert_eq!(charge["balance_after"], 5);
    assert_eq!(charge["server"], "");
    assert_eq!(charge["period"], 1);
    assert_eq!(charge["time"], iso(START + 60_000));
    assert_eq!(journal[1]["period"], 0);
    assert_eq!(journal[2]["kind"], "open");
    assert!(s.hub.deletes().is_empty());

    // A round between the same two periods charges nothing more.
    s.round().await;
    assert_eq!(s.balance("ada").await, 5);

    // ada can't pay the next period: the hub is asked to stop her server.
    s.advance(60);
    s.round().await;
    wait_for_recorded_stop(&s, "ada", "").await;
    assert_eq!(s.hub.deletes(), [("ada".to_string(), String::new())]);
    assert!(!s.hub.has_server("ada", ""));
    let me = s.get("api/v1/me", ADA).await.ok();
    assert_eq!(me["servers"], json!([]));
    let stopped = &me["stopped"][0];
    let reason = stopped["reason"].as_str().unwrap();
    assert!(reason.contains("credits ran out"), "{reason}");
    assert!(reason.contains("10 credits every 60 seconds"), "{reason}");
    assert_eq!(stopped["stopped_at"], iso(START + 120_000));
    // The unpaid period was not charged; bob's was.
    assert_eq!(me["pools"][0]["balance"], 5);
    assert_eq!(s.balance("bob").await, 97);

    // Later rounds neither charge nor stop it again.
    s.advance(60);
    s.round().await;
    assert_eq!(s.balance("ada").await, 5);
    assert_eq!(s.balance("bob").await, 96);
    assert_eq!(s.hub.deletes().len(), 1);
    s.assert_audit_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_is_recorded_only_after_the_hub_confirms_it() {
    let mut s = Service::new().await;
    s.put_user("ada", 10, 1, 3600, None).await;
    s.start_server("ada", "gpu", "ada-gpu", 10, 60).await;
    // The hub takes a moment to stop servers.
    s.hub.set_stop_delay(Some(Duration::from_millis(300)));
    s.advance(60);
    s.round().await;
    eventually(
        "the hub is asked to stop",
        Duration::from_secs(5),
        || async { !s.hub.deletes().is_empty() },
    )
    .await;
    assert_eq!(s.hub.deletes(), [("ada".to_string(), "gpu".to_string())]);
    // Still stopping as far as the ledger knows: shown with its state.
    let me = s.get("api/v1/me", ADA).await.ok();
    assert_eq!(me["servers"][0]["name"], "gpu");
    assert_eq!(me["servers"][0]["state"], "stopping");
    assert_eq!(me["stopped"], json!([]));
    // A round meanwhile does not ask twice.
    s.round_without_listing().await;
    wait_for_recorded_stop(&s, "ada", "gpu").await;
    assert_eq!(s.hub.deletes().len(), 1);
    assert!(!s.hub.has_server("ada", "gpu"));
    s.assert_audit_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unadmitted_ready_servers_are_listed_and_not_billed() {
    let mut s = Service::new().await;
    for user in ["ada", "dave", "erin"] {
        s.put_user(user, 50, 1, 3600, None).await;
    }
    s.start_server("ada", "", "ada-1", 5, 60).await;
    // Started without admission (before credits were enabled, say).
    s.hub.add_server("carol", "", true, json!({}));
    s.hub.add_server("dave", "big", true, json!({"gpus": 4}));
    s.hub.add_server("zed", "", true, json!({}));
    // Not ready yet: not listed.
    s.hub.add_server("erin", "", false, json!({}));
    s.hub.add_user("frank");
    s.advance(60);
    s.round().await;

    let unbilled = s.get("api/v1/unbilled", ADMIN).await.ok();
    assert_eq!(
        unbilled,
        json!([
            {"user": "carol", "server": ""},
            {"user": "dave", "server": "big"},
            {"user": "zed", "server": ""},
        ])
    );
    // Every page was read: 4 users with ready servers, 2 per page.
    let offsets = s.hub.state().list_offsets.clone();
    assert_eq!(offsets, [0, 2]);
    assert_eq!(s.balance("ada").await, 40);
    assert_eq!(s.balance("dave").await, 50);
    assert_eq!(s.balance("erin").await, 50);
    assert!(
        s.journal("dave")
            .await
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["kind"] != "charge")
    );
    s.get("api/v1/users/carol", ADMIN).await.error(404);
    assert!(
        s.hub.deletes().is_empty(),
        "unadmitted servers are not stopped"
    );
    let metrics = s.get("metrics", ADMIN).await.text();
    assert!(metrics.contains("credits_unbilled_servers 3"), "{metrics}");

    // When they stop, the list empties at the next listing.
    for (user, name) in [("carol", ""), ("dave", "big"), ("zed", "")] {
        s.hub.remove_server(user, name);
    }
    s.round().await;
    assert_eq!(s.get("api/v1/unbilled", ADMIN).await.ok(), json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_the_hub_no_longer_lists_end_at_the_next_full_listing() {
    let mut s = Service::new().await;
    s.put_user("ada", 100, 1, 3600, None).await;
    s.start_server("ada", "", "ada-1", 5, 60).await;
    s.start_server("ada", "other", "ada-2", 1, 60).await;
    s.advance(30);
    // Culled, crashed: gone without the plugin's notice.
    s.hub.remove_server("ada", "");
    s.round_without_listing().await;
    assert_eq!(s.view("ada").await["servers"].as_array().unwrap().len(), 2);
    s.advance(1);
    s.round().await;
    let view = s.view("ada").await;
    let names: Vec<&str> = view["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["other"]);
    // Not a stop for lack of credits, and the hub was not asked.
    assert_eq!(view["stopped"], json!([]));
    assert!(s.hub.deletes().is_empty());
    // It costs nothing more.
    let balance = s.balance("ada").await;
    s.advance(600);
    s.round().await;
    assert_eq!(
        s.balance("ada").await,
        balance - 10,
        "only the other server pays"
    );
    s.assert_audit_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_ready_notice_is_caught_by_the_listing() {
    let mut s = Service::new().await;
    s.put_user("ada", 100, 1, 3600, None).await;
    let admission = s.admit("ada", "", "ada-1", 5, 60).await;
    assert_eq!(admission, json!({"admitted": true, "pool": "default"}));
    s.hub.add_server("ada", "", false, json!({}));
    s.advance(10);
    s.round().await;
    let view = s.view("ada").await;
    assert_eq!(view["servers"][0]["state"], "pending");
    assert_eq!(view["pools"][0]["balance"], 100);
    // Ready in the hub; the plugin's notice got lost.
    s.hub.set_ready("ada", "");
    s.advance(10);
    s.round().await;
    let view = s.view("ada").await;
    assert_eq!(view["servers"][0]["state"], "running");
    assert_eq!(view["pools"][0]["balance"], 95);
    // Billed from when the hub started it.
    assert_eq!(view["servers"][0]["next_charge_at"], iso(START + 60_000));
    assert_eq!(s.get("api/v1/unbilled", ADMIN).await.ok(), json!([]));
}

async fn an_unreachable_hub_does_not_stop_billing_and_stops_are_retried(db: Db) {
    let mut s = Service::with(db, &[]).await;
    s.put_user("ada", 25, 1, 3600, None).await;
    s.put_user("bob", 100, 1, 3600, None).await;
    s.start_server("ada", "", "ada-1", 10, 60).await;
    s.start_server("bob", "", "bob-1", 1, 60).await;
    // Token checks need the hub too: let the admin's identity be cached first.
    s.view("ada").await;
    s.hub.set_down(true);

    s.advance(60);
    s.round().await;
    assert_eq!(s.balance("ada").await, 5);
    assert_eq!(s.balance("bob").await, 98);

    let errors = s.state.metrics.hub_errors.get();
    s.advance(60);
    s.round().await;
    // The stop can't reach the hub: the server stays "stopping".
    eventually("a stop attempt fails", Duration::from_secs(5), || async {
        s.state.metrics.hub_errors.get() >= errors + 2
    })
    .await;
    let view = s.view("ada").await;
    assert_eq!(view["servers"][0]["state"], "stopping");
    assert_eq!(view["stopped"], json!([]));
    assert_eq!(view["pools"][0]["balance"], 5);
    // Rounds go on meanwhile.
    s.advance(60);
    s.round().await;
    assert_eq!(s.balance("bob").await, 96);
    assert!(s.hub.deletes().is_empty());

    s.hub.set_down(false);
    wait_for_recorded_stop(&s, "ada", "").await;
    assert_eq!(s.hub.deletes(), [("ada".to_string(), String::new())]);
    assert_eq!(s.balance("ada").await, 5);
    s.assert_audit_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_answering_500_does_not_stop_billing_and_stops_are_retried() {
    let mut s = Service::new().await;
    s.put_user("ada", 10, 1, 3600, None).await;
    s.put_user("bob", 100, 1, 3600, None).await;
    s.start_server("ada", "lab", "ada-1", 10, 60).await;
    s.start_server("bob", "", "bob-1", 1, 60).await;
    s.hub.add_server("carol", "", true, json!({}));
    s.round().await;
    let unbilled = s.get("api/v1/unbilled", ADMIN).await.ok();
    assert_eq!(unbilled, json!([{"user": "carol", "server": ""}]));

    // The token check needs the hub too, so look before it fails.
    s.hub.set_failing(true);
    s.advance(60);
    s.round().await;
    eventually("a stop attempt", Duration::from_secs(5), || async {
        s.hub.delete_attempts() > 0
    })
    .await;
    // The last listing stands while the hub can't be listed.
    assert_eq!(s.state.unbilled.lock().unwrap().len(), 1);
    s.hub.set_failing(false);
    assert_eq!(s.balance("bob").await, 98);
    assert_eq!(s.balance("ada").await, 0);
    wait_for_recorded_stop(&s, "ada", "lab").await;
    assert_eq!(s.hub.deletes(), [("ada".to_string(), "lab".to_string())]);
    s.assert_audit_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_of_any_spelling_reach_the_hub_intact() {
    let mut s = Service::new().await;
    let user = "jürgen.o'neil+x@example.org";
    let server = "gpu 1 ✓";
    s.put_user(user, 10, 1, 3600, None).await;
    s.start_server(user, server, "k-ü", 10, 60).await;
    s.hub.add_server(user, "", true, json!({}));
    s.round().await;
    // Listed under the same names: the named server is known, the default one is not.
    let unbilled = s.get("api/v1/unbilled", ADMIN).await.ok();
    assert_eq!(unbilled, json!([{"user": user, "server": ""}]));
    s.advance(60);
    s.round().await;
    wait_for_recorded_stop(&s, user, server).await;
    assert_eq!(s.hub.deletes(), [(user.to_string(), server.to_string())]);
    assert!(
        s.hub.has_server(user, ""),
        "only the unpaid server is stopped"
    );
}
