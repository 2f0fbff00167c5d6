//! Upserting the operator's config: rule 1 (new pools full), rule 6
//! (changes at once), and how config and admin changes meet.

use credit_ledger::{EntryKind, LedgerError, PoolConfig, PoolPatch, ProjectConfig};
use serde_json::json;

use crate::harness::{Harness, admin};
use crate::on_both;

on_both!(
    new_pools_open_full_with_an_open_entry,
    unchanged_config_writes_nothing,
    config_changes_apply_at_once,
    admin_change_holds_until_config_changes,
    removed_pools_stop_matching_and_come_back_whole,
    bad_config_is_refused_and_changes_nothing,
);

async fn new_pools_open_full_with_an_open_entry(h: Harness) {
    h.project("lab", 500, 10, 600).await;
    h.user("ada", 100, 10, 600, Some("lab")).await;
    let view = h.ledger.user_view("ada").await.unwrap();
    assert_eq!(view.pools.len(), 1);
    let pool = &view.pools[0];
    assert_eq!(
        (
            pool.name.as_str(),
            pool.balance,
            pool.cap,
            pool.next_grant_at
        ),
        ("default", 100, 100, None)
    );
    assert_eq!(pool.project.as_ref().unwrap().balance, 500);
    let journal = h.ledger.user_journal("ada", None, 10).await.unwrap();
    assert_eq!(journal.len(), 1);
    assert_eq!(
        (journal[0].kind, journal[0].delta, journal[0].balance_after),
        (EntryKind::Open, 100, 100)
    );
    let project_journal = h.ledger.project_journal("lab", None, 10).await.unwrap();
    assert_eq!(project_journal[0].kind, EntryKind::Open);
    assert_eq!(h.ledger.project_members("lab").await.unwrap(), ["ada"]);
}

async fn unchanged_config_writes_nothing(h: Harness) {
    h.user("ada", 100, 10, 600, None).await;
    h.start("ada", "", "k1", 30, 3600).await;
    h.ledger.mark_stopped("k1").await.unwrap();
    h.advance(1200);
    for _ in 0..3 {
        h.user("ada", 100, 10, 600, None).await;
    }
    let journal = h.ledger.user_journal("ada", None, 10).await.unwrap();
    assert_eq!(
        journal.len(),
        2,
        "open and charge only: grants stay computed"
    );
    assert_eq!(h.balance("ada").await, 90);
}

async fn config_changes_apply_at_once(h: Harness) {
    h.user("ada", 100, 10, 600, None).await;
    h.user("ada", 60, 10, 600, None).await;
    assert_eq!(h.balance("ada").await, 60, "clamped to the lower cap");
    h.user("ada", 200, 50, 60, None).await;
    let pool = &h.ledger.user_view("ada").await.unwrap().pools[0];
    assert_eq!(
        (pool.balance, pool.cap, pool.next_grant_at),
        (60, 200, Some(h.now() + 60_000))
    );
    h.advance(180);
    assert_eq!(h.balance("ada").await, 200);
    h.assert_audit_clean().await;
}

async fn admin_change_holds_until_config_changes(h: Harness) {
    h.user("ada", 100, 10, 600, None).await;
    let patch = PoolPatch {
        cap: Some(500),
        balance: Some(500),
        ..Default::default()
    };
    h.ledger
        .adjust_user_pool("ada", "default", &patch, &admin("workshop"))
        .await
        .unwrap();
    h.user("ada", 100, 10, 600, None).await;
    let pool = &h.ledger.user_view("ada").await.unwrap().pools[0];
    assert_eq!(
        (pool.balance, pool.cap),
        (500, 500),
        "same config: the admin's change stands"
    );
    h.user("ada", 150, 10, 600, None).await;
    let pool = &h.ledger.user_view("ada").await.unwrap().pools[0];
    assert_eq!(
        (pool.balance, pool.cap),
        (150, 150),
        "the operator changed the config: it wins"
    );
    h.assert_audit_clean().await;
}

async fn removed_pools_stop_matching_and_come_back_whole(h: Harness) {
    let gpu = PoolConfig {
        name: "gpu".into(),
        cap: 50,
        grant_value: 5,
        grant_interval: 600,
        project: None,
        user_options: Some(json!({"gpus": [1, 2]})),
    };
    let cpu = PoolConfig::single(100, 10, 600, None);
    h.ledger
        .upsert_user("ada", &[gpu.clone(), cpu.clone()])
        .await
        .unwrap();
    h.admit_with("ada", "g", "k1", 20, 600, json!({"gpus": 1}))
        .await;
    h.ledger.mark_ready("k1", h.now()).await.unwrap();
    h.ledger
        .upsert_user("ada", std::slice::from_ref(&cpu))
        .await
        .unwrap();
    let view = h.ledger.user_view("ada").await.unwrap();
    assert_eq!(view.pools.len(), 1);
    assert_eq!(
        h.admit_with("ada", "g2", "k2", 20, 600, json!({"gpus": 1}))
            .await,
        credit_ledger::Admission::Admitted {
            pool: "default".into()
        }
    );
    h.ledger.upsert_user("ada", &[gpu, cpu]).await.unwrap();
    let view = h.ledger.user_view("ada").await.unwrap();
    assert_eq!(
        (view.pools[0].name.as_str(), view.pools[0].balance),
        ("gpu", 30)
    );
}

async fn bad_config_is_refused_and_changes_nothing(h: Harness) {
    h.user("ada", 100, 10, 600, None).await;
    let cases: Vec<(Vec<PoolConfig>, &str)> = vec![
        (
            vec![PoolConfig::single(-1, 10, 600, None)],
            "pool \"default\" cap",
        ),
        (
            vec![PoolConfig::single(10, 10, 0, None)],
            "pool \"default\" grant_interval",
        ),
        (
            vec![PoolConfig::single(i64::MAX, 10, 60, None)],
            "pool \"default\" cap",
        ),
        (vec![], "credits_user"),
        (
            vec![
                PoolConfig::single(1, 1, 1, None),
                PoolConfig::single(1, 1, 1, None),
            ],
            "credits_user",
        ),
        (
            vec![PoolConfig {
                user_options: Some(json!("gpu")),
                ..PoolConfig::single(1, 1, 1, None)
            }],
            "pool \"default\" user_options",
        ),
    ];
    for (pools, field) in cases {
        match h.ledger.upsert_user("ada", &pools).await.unwrap_err() {
            LedgerError::Invalid { field: got, .. } => assert_eq!(got, field),
            other => panic!("{pools:?}: {other}"),
        }
    }
    let err = h
        .ledger
        .upsert_user(
            "ada",
            &[PoolConfig::single(5, 1, 60, Some("nowhere".into()))],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::UnknownProject(_)), "{err}");
    let err = h
        .ledger
        .upsert_project(&ProjectConfig {
            name: "".into(),
            cap: 1,
            grant_value: 1,
            grant_interval: 1,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::Invalid { .. }), "{err}");
    let pool = &h.ledger.user_view("ada").await.unwrap().pools[0];
    assert_eq!(
        (pool.balance, pool.cap, pool.project.is_none()),
        (100, 100, true)
    );
}
