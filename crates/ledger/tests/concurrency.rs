//! Several replicas (separate `Ledger`s on one database) admitting and
//! billing the same pools at once keep every invariant.

use std::sync::Arc;

use credit_ledger::{Admission, Ledger, SpawnRequest};

use crate::harness::{Db, Harness};

async fn replicas(h: &Harness, n: usize) -> Vec<Ledger> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            Ledger::open(&h.url, Arc::new(h.clock.clone()))
                .await
                .unwrap(),
        );
    }
    out
}

fn request(user: &str, key: String, value: i64) -> SpawnRequest {
    SpawnRequest {
        user: user.into(),
        server_name: key.clone(),
        server_key: key,
        user_options: serde_json::json!({}),
        billing_value: value,
        billing_interval: 60,
        promise_secs: 3600,
    }
}

/// 60 spawns of 10 credits race for a project of 50 and two users of 25:
/// exactly 10 may be admitted (each user's spawns see 75 of the 100).
async fn concurrent_spawns_never_promise_more_than_there_is(db: Db) {
    let h = Harness::new(db).await;
    h.project("lab", 50, 0, 600).await;
    h.user("ada", 25, 0, 600, Some("lab")).await;
    h.user("bob", 25, 0, 600, Some("lab")).await;
    let replicas = replicas(&h, 4).await;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let ledger = replicas[i % replicas.len()].clone();
        let user = if i % 2 == 0 { "ada" } else { "bob" };
        tasks.push(tokio::spawn(async move {
            ledger
                .admit(&request(user, format!("s{i}"), 10))
                .await
                .unwrap()
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), Admission::Admitted { .. }) {
            admitted += 1;
        }
    }
    // Conservative promises: any admitted set must be payable in full.
    assert!(
        admitted <= 10,
        "{admitted} spawns promised 10 credits each out of 100"
    );
    assert!(
        admitted >= 7,
        "only {admitted} admitted: promises are too conservative"
    );
    let live = h.ledger.live_servers().await.unwrap();
    assert_eq!(live.len(), admitted);
    // All of them can really be paid when they get ready.
    for s in &live {
        assert_eq!(h.ledger.mark_ready(&s.key, h.now()).await.unwrap(), None);
    }
    h.assert_audit_clean().await;
}

/// Replicas bill, ready, stop and adjust the same pools while the clock runs.
async fn replicas_billing_together_keep_every_invariant(db: Db) {
    let h = Harness::new(db).await;
    h.project("lab", 400, 20, 60).await;
    for user in ["u0", "u1", "u2", "u3"] {
        h.user(user, 200, 10, 60, Some("lab")).await;
    }
    let replicas = replicas(&h, 3).await;
    let mut tasks = Vec::new();
    for (r, ledger) in replicas.iter().enumerate() {
        let ledger = ledger.clone();
        let clock = h.clock.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let user = format!("u{}", (i + r) % 4);
                let key = format!("r{r}-{i}");
                if let Admission::Admitted { .. } = ledger
                    .admit(&request(&user, key.clone(), 15))
                    .await
                    .unwrap()
                {
                    ledger.mark_ready(&key, ledger.now()).await.unwrap();
                }
                ledger.bill().await.unwrap();
                if i % 3 == 0 {
                    for stop in ledger.pending_stops().await.unwrap() {
                        ledger.mark_stopped(&stop.server_key).await.unwrap();
                    }
                }
                if r == 0 {
                    clock.advance_secs(37);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    h.advance(600);
    for ledger in &replicas {
        ledger.bill().await.unwrap();
    }
    h.assert_audit_clean().await;
    // Each (server, period) appears at most once per pool in the journals.
    let mut seen = std::collections::HashSet::new();
    let mut charges = 0;
    for account in ["u0", "u1", "u2", "u3"] {
        for e in h.ledger.user_journal(account, None, 1000).await.unwrap() {
            if let (Some(server), Some(period)) = (&e.server, e.period) {
                assert!(
                    seen.insert(("user", account.to_string(), server.clone(), period)),
                    "charged twice: {e:?}"
                );
                charges += 1;
            }
        }
    }
    for e in h.ledger.project_journal("lab", None, 1000).await.unwrap() {
        if let (Some(user), Some(server), Some(period)) = (&e.user, &e.server, e.period) {
            assert!(
                seen.insert(("project", user.clone(), server.clone(), period)),
                "charged twice: {e:?}"
            );
            charges += 1;
        }
    }
    assert!(
        charges > 20,
        "the replicas did bill ({charges} charge entries)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_spawns_never_promise_more_than_there_is_postgres() {
    concurrent_spawns_never_promise_more_than_there_is(Db::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_spawns_never_promise_more_than_there_is_sqlite() {
    concurrent_spawns_never_promise_more_than_there_is(Db::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_billing_together_keep_every_invariant_postgres() {
    replicas_billing_together_keep_every_invariant(Db::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_billing_together_keep_every_invariant_sqlite() {
    replicas_billing_together_keep_every_invariant(Db::Sqlite).await
}
