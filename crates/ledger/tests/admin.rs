//! Rules 6 and 7 through admin changes: validation all-or-nothing, clamps,
//! project moves, journal entries with actor and reason.

use credit_ledger::{Actor, EntryKind, LedgerError, PoolPatch, ProjectPatch};

use crate::harness::{Harness, admin};
use crate::on_both;

on_both!(
    balance_above_cap_is_refused_and_changes_nothing,
    lowering_cap_clamps_and_journals,
    balance_and_cap_together,
    project_moves_take_effect_at_once,
    out_of_range_values_are_refused,
    unknown_names_are_errors,
    journal_pages_newest_first,
);

async fn balance_above_cap_is_refused_and_changes_nothing(h: Harness) {
    h.user("ada", 100, 10, 600, None).await;
    let patch = PoolPatch {
        balance: Some(150),
        grant_value: Some(1),
        ..Default::default()
    };
    let err = h
        .ledger
        .adjust_user_pool("ada", "default", &patch, &admin("x"))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "balance 150 is above the cap 100");
    let pool = &h.ledger.user_view("ada").await.unwrap().pools[0];
    assert_eq!((pool.balance, pool.grant_value), (100, 10));
    assert_eq!(
        h.ledger.user_journal("ada", None, 10).await.unwrap().len(),
        1
    );
}

async fn lowering_cap_clamps_and_journals(h: Harness) {
    h.user("ada", 100, 10, 600, None).await;
    let pool = h
        .ledger
        .adjust_user_pool(
            "ada",
            "default",
            &PoolPatch {
                cap: Some(40),
                ..Default::default()
            },
            &admin("budget cut"),
        )
        .await
        .unwrap();
    assert_eq!((pool.balance, pool.cap, pool.next_grant_at), (40, 40, None));
    let journal = h.ledger.user_journal("ada", None, 10).await.unwrap();
    let kinds: Vec<_> = journal.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [EntryKind::Adjust, EntryKind::Clamp, EntryKind::Open]
    );
    assert_eq!(journal[1].delta, -60);
    assert_eq!(journal[0].actor.as_deref(), Some("admin"));
    assert_eq!(journal[0].reason.as_deref(), Some("budget cut"));
    // Raising the cap again does not refill: grants do.
    let pool = h
        .ledger
        .adjust_user_pool(
            "ada",
            "default",
            &PoolPatch {
                cap: Some(100),
                ..Default::default()
            },
            &admin("restore"),
        )
        .await
        .unwrap();
    assert_eq!(pool.balance, 40);
    assert_eq!(pool.next_grant_at, Some(h.now() + 600_000));
    h.assert_audit_clean().await;
}

async fn balance_and_cap_together(h: Harness) {
    h.project("lab", 100, 0, 600).await;
    let view = h
        .ledger
        .adjust_project(
            "lab",
            &ProjectPatch {
                balance: Some(0),
                cap: Some(10),
                grant_value: Some(3),
                grant_interval: Some(60),
            },
            &Actor {
                name: "ops".into(),
                reason: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (
            view.balance,
            view.cap,
            view.grant_value,
            view.grant_interval
        ),
        (0, 10, 3, 60)
    );
    let journal = h.ledger.project_journal("lab", None, 10).await.unwrap();
    assert_eq!(journal[0].kind, EntryKind::Adjust);
    assert_eq!(journal[0].delta, -100, "one entry, no separate clamp");
    h.advance(240);
    assert_eq!(
        h.project_balance("lab").await,
        10,
        "4 grants of 3, capped at 10"
    );
    h.assert_audit_clean().await;
}

async fn project_moves_take_effect_at_once(h: Harness) {
    h.project("lab", 100, 0, 600).await;
    h.user("ada", 100, 0, 600, None).await;
    h.start("ada", "", "k1", 10, 60).await;
    let pool = h
        .ledger
        .adjust_user_pool(
            "ada",
            "default",
            &PoolPatch {
                project: Some(Some("lab".into())),
                ..Default::default()
            },
            &admin("joined"),
        )
        .await
        .unwrap();
    assert_eq!(pool.project.unwrap().name, "lab");
    h.advance(60);
    h.ledger.bill().await.unwrap();
    assert_eq!(
        (h.project_balance("lab").await, h.balance("ada").await),
        (90, 90)
    );
    h.ledger
        .adjust_user_pool(
            "ada",
            "default",
            &PoolPatch {
                project: Some(None),
                ..Default::default()
            },
            &admin("left"),
        )
        .await
        .unwrap();
    h.advance(60);
    h.ledger.bill().await.unwrap();
    assert_eq!(
        (h.project_balance("lab").await, h.balance("ada").await),
        (90, 80)
    );
    h.assert_audit_clean().await;
}

async fn out_of_range_values_are_refused(h: Harness) {
    h.user("ada", 100, 10, 600, None).await;
    let max = credit_ledger::limits::VALUE_MAX;
    let bad = [
        PoolPatch {
            balance: Some(-1),
            ..Default::default()
        },
        PoolPatch {
            cap: Some(-1),
            ..Default::default()
        },
        PoolPatch {
            cap: Some(max + 1),
            ..Default::default()
        },
        PoolPatch {
            cap: Some(i64::MAX),
            ..Default::default()
        },
        PoolPatch {
            grant_value: Some(i64::MIN),
            ..Default::default()
        },
        PoolPatch {
            grant_interval: Some(0),
            ..Default::default()
        },
        PoolPatch {
            balance: Some(5),
            cap: Some(4),
            ..Default::default()
        },
        PoolPatch::default(),
    ];
    for patch in bad {
        let err = h
            .ledger
            .adjust_user_pool("ada", "default", &patch, &admin("x"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                LedgerError::Invalid { .. } | LedgerError::AboveCap { .. }
            ),
            "{patch:?}: {err}"
        );
    }
    let long_reason = Actor {
        name: "admin".into(),
        reason: Some("x".repeat(5000)),
    };
    let ok_patch = PoolPatch {
        balance: Some(1),
        ..Default::default()
    };
    assert!(
        h.ledger
            .adjust_user_pool("ada", "default", &ok_patch, &long_reason)
            .await
            .is_err()
    );
    assert_eq!(h.balance("ada").await, 100);
    // The extremes that are valid work, and billing still adds up.
    let pool = h
        .ledger
        .adjust_user_pool(
            "ada",
            "default",
            &PoolPatch {
                cap: Some(max),
                balance: Some(max),
                ..Default::default()
            },
            &admin("max"),
        )
        .await
        .unwrap();
    assert_eq!(pool.balance, max);
    h.start("ada", "", "k1", max, 1).await;
    assert_eq!(h.balance("ada").await, 0);
    h.assert_audit_clean().await;
}

async fn unknown_names_are_errors(h: Harness) {
    h.user("ada", 100, 10, 600, None).await;
    let patch = PoolPatch {
        balance: Some(1),
        ..Default::default()
    };
    let err = h
        .ledger
        .adjust_user_pool("bob", "default", &patch, &admin("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::UnknownUser(_)), "{err}");
    let err = h
        .ledger
        .adjust_user_pool("ada", "gpu", &patch, &admin("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::UnknownPool { .. }), "{err}");
    let to_nowhere = PoolPatch {
        project: Some(Some("nowhere".into())),
        balance: Some(1),
        ..Default::default()
    };
    let err = h
        .ledger
        .adjust_user_pool("ada", "default", &to_nowhere, &admin("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::UnknownProject(_)), "{err}");
    let err = h
        .ledger
        .adjust_project(
            "nowhere",
            &ProjectPatch {
                cap: Some(1),
                ..Default::default()
            },
            &admin("x"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::UnknownProject(_)), "{err}");
    assert_eq!(h.balance("ada").await, 100, "nothing changed");
}

async fn journal_pages_newest_first(h: Harness) {
    h.user("ada", 1000, 0, 600, None).await;
    for i in 0..25 {
        let patch = PoolPatch {
            balance: Some(1000 - i),
            ..Default::default()
        };
        h.ledger
            .adjust_user_pool("ada", "default", &patch, &admin(&format!("step {i}")))
            .await
            .unwrap();
    }
    let first = h.ledger.user_journal("ada", None, 10).await.unwrap();
    assert_eq!(first.len(), 10);
    assert_eq!(first[0].reason.as_deref(), Some("step 24"));
    let second = h
        .ledger
        .user_journal("ada", Some(first[9].id), 10)
        .await
        .unwrap();
    assert_eq!(second[0].reason.as_deref(), Some("step 14"));
    let last = h
        .ledger
        .user_journal("ada", Some(second[9].id), 10)
        .await
        .unwrap();
    assert_eq!(last.len(), 6, "5 adjustments and the opening entry");
    assert_eq!(last[5].kind, EntryKind::Open);
    assert!(h.ledger.user_journal("ada", None, 0).await.is_err());
    assert!(h.ledger.user_journal("ada", None, 1001).await.is_err());
}
