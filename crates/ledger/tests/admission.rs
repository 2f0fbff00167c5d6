//! Rules 5 and 9: admission against promised credits, refusal messages and
//! per-system pools.

use credit_ledger::{Admission, LedgerError, PoolConfig};
use serde_json::json;

use crate::harness::Harness;
use crate::on_both;

on_both!(
    refusal_names_required_balance_cap_project_and_next_grant,
    pending_spawns_count_against_what_there_is,
    failed_spawn_releases_its_promise,
    same_key_gets_the_same_answer,
    restart_of_a_server_is_a_new_one,
    per_system_pools_follow_rule_nine,
    bad_requests_change_nothing,
);

fn refused(a: Admission) -> Box<credit_ledger::Refusal> {
    match a {
        Admission::Refused(r) => r,
        Admission::Admitted { pool } => panic!("admitted to {pool}, expected a refusal"),
    }
}

async fn refusal_names_required_balance_cap_project_and_next_grant(h: Harness) {
    h.project("lab", 500, 10, 600).await;
    h.user("ada", 100, 10, 600, Some("lab")).await;
    h.start("ada", "big", "k0", 590, 3600).await;
    let r = refused(h.admit("ada", "", "k1", 20, 600).await);
    assert_eq!(r.required, 20);
    assert_eq!(
        r.message,
        format!(
            "Not enough credits to start this server: it needs 20 credits every 600 seconds, \
             and you have 10 of 100 credits and project \"lab\" has 0 of 500. More credits arrive at {}.",
            credit_ledger::clock::iso8601(h.now() + 600_000)
        )
    );
    let pool = r.pool.unwrap();
    assert_eq!((pool.balance, pool.cap), (10, 100));
    assert_eq!(pool.project.unwrap().balance, 0);
}

async fn pending_spawns_count_against_what_there_is(h: Harness) {
    h.user("ada", 50, 0, 600, None).await;
    assert!(matches!(
        h.admit("ada", "a", "k1", 20, 60).await,
        Admission::Admitted { .. }
    ));
    assert!(matches!(
        h.admit("ada", "b", "k2", 20, 60).await,
        Admission::Admitted { .. }
    ));
    let r = refused(h.admit("ada", "c", "k3", 20, 60).await);
    assert_eq!(r.promised, 40);
    assert!(
        r.message
            .contains("of which 40 are promised to servers still starting"),
        "{}",
        r.message
    );
    // A free spawn is always admitted.
    assert!(matches!(
        h.admit("ada", "d", "k4", 0, 60).await,
        Admission::Admitted { .. }
    ));
}

async fn failed_spawn_releases_its_promise(h: Harness) {
    h.user("ada", 30, 0, 600, None).await;
    assert!(matches!(
        h.admit("ada", "a", "k1", 20, 60).await,
        Admission::Admitted { .. }
    ));
    refused(h.admit("ada", "b", "k2", 20, 60).await);
    assert!(h.ledger.mark_stopped("k1").await.unwrap());
    assert!(matches!(
        h.admit("ada", "b", "k3", 20, 60).await,
        Admission::Admitted { .. }
    ));
    assert_eq!(h.balance("ada").await, 30, "a failed spawn costs nothing");
}

async fn same_key_gets_the_same_answer(h: Harness) {
    h.user("ada", 30, 0, 600, None).await;
    assert!(matches!(
        h.admit("ada", "a", "k1", 20, 60).await,
        Admission::Admitted { .. }
    ));
    assert!(matches!(
        h.admit("ada", "a", "k1", 20, 60).await,
        Admission::Admitted { .. }
    ));
    let err = h
        .ledger
        .admit(&credit_ledger::SpawnRequest {
            user: "ada".into(),
            server_name: "other".into(),
            server_key: "k1".into(),
            user_options: json!({}),
            billing_value: 1,
            billing_interval: 60,
            promise_secs: 60,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::Invalid { .. }), "{err}");
}

async fn restart_of_a_server_is_a_new_one(h: Harness) {
    h.user("ada", 100, 0, 600, None).await;
    h.start("ada", "", "k1", 10, 60).await;
    // The hub lost track of it (say, a hub restart) and the user starts it again.
    h.start("ada", "", "k2", 10, 60).await;
    let view = h.ledger.user_view("ada").await.unwrap();
    assert_eq!(view.servers.len(), 1);
    assert_eq!(view.servers[0].key, "k2");
    h.advance(60);
    assert_eq!(
        h.ledger.bill().await.unwrap().periods_charged,
        1,
        "only the new one is billed"
    );
}

async fn per_system_pools_follow_rule_nine(h: Harness) {
    h.project("gpu-lab", 1000, 0, 600).await;
    let pools = [
        PoolConfig {
            name: "booster".into(),
            cap: 50,
            grant_value: 5,
            grant_interval: 600,
            project: Some("gpu-lab".into()),
            user_options: Some(json!({"system": "booster", "gpus": [1, 2, 4]})),
        },
        PoolConfig {
            name: "cloud".into(),
            cap: 100,
            grant_value: 10,
            grant_interval: 600,
            project: None,
            user_options: Some(json!({"system": "cloud|jsc-cloud"})),
        },
    ];
    h.ledger.upsert_user("ada", &pools).await.unwrap();
    let admit = |key: &'static str, options: serde_json::Value| {
        let h = &h;
        async move { h.admit_with("ada", key, key, 10, 600, options).await }
    };
    let r = refused(admit("a", json!({"system": ["booster"], "gpus": ["2"]})).await);
    assert!(r.pool.is_none(), "\"2\" is a string, not the number 2");
    assert_eq!(
        admit("b", json!({"system": ["booster"], "gpus": [2]})).await,
        Admission::Admitted {
            pool: "booster".into()
        }
    );
    assert_eq!(
        admit("c", json!({"system": "jsc-cloud"})).await,
        Admission::Admitted {
            pool: "cloud".into()
        }
    );
    let r = refused(admit("d", json!({"system": "laptop"})).await);
    assert!(
        r.message
            .starts_with("None of your credit pools (\"booster\", \"cloud\") allows these options"),
        "{}",
        r.message
    );
    assert!(r.pool.is_none());
    // A catch-all pool takes what no pattern matches.
    let mut with_default = pools.to_vec();
    with_default.push(PoolConfig::single(20, 1, 600, None));
    h.ledger.upsert_user("ada", &with_default).await.unwrap();
    assert_eq!(
        admit("e", json!({"system": "laptop"})).await,
        Admission::Admitted {
            pool: "default".into()
        }
    );
    // The project of the booster pool paid for "b"; the user paid for "c".
    h.ledger.mark_ready("b", h.now()).await.unwrap();
    h.ledger.mark_ready("c", h.now()).await.unwrap();
    assert_eq!(h.project_balance("gpu-lab").await, 990);
    let view = h.ledger.user_view("ada").await.unwrap();
    let balances: Vec<_> = view
        .pools
        .iter()
        .map(|p| (p.name.as_str(), p.balance))
        .collect();
    assert_eq!(balances, [("booster", 50), ("cloud", 90), ("default", 20)]);
    h.assert_audit_clean().await;
}

async fn bad_requests_change_nothing(h: Harness) {
    h.user("ada", 30, 0, 600, None).await;
    let base = credit_ledger::SpawnRequest {
        user: "ada".into(),
        server_name: "".into(),
        server_key: "k".into(),
        user_options: json!({}),
        billing_value: 1,
        billing_interval: 60,
        promise_secs: 60,
    };
    let cases = [
        credit_ledger::SpawnRequest {
            billing_value: -1,
            ..base.clone()
        },
        credit_ledger::SpawnRequest {
            billing_value: i64::MAX,
            ..base.clone()
        },
        credit_ledger::SpawnRequest {
            billing_interval: 0,
            ..base.clone()
        },
        credit_ledger::SpawnRequest {
            billing_interval: i64::MIN,
            ..base.clone()
        },
        credit_ledger::SpawnRequest {
            server_key: "".into(),
            ..base.clone()
        },
        credit_ledger::SpawnRequest {
            user: "a\u{0}b".into(),
            ..base.clone()
        },
        credit_ledger::SpawnRequest {
            promise_secs: -5,
            ..base.clone()
        },
    ];
    for req in cases {
        let err = h.ledger.admit(&req).await.unwrap_err();
        assert!(matches!(err, LedgerError::Invalid { .. }), "{req:?}: {err}");
    }
    let err = h
        .ledger
        .admit(&credit_ledger::SpawnRequest {
            user: "nobody".into(),
            ..base.clone()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::UnknownUser(_)), "{err}");
    assert!(h.ledger.live_servers().await.unwrap().is_empty());
    assert_eq!(h.balance("ada").await, 30);
}
