//! Rules 2, 3, 4 and 7: grants, period charges, project first, stops,
//! catch-up after downtime, idempotency.

use credit_ledger::{EntryKind, ServerState};

use crate::harness::Harness;
use crate::on_both;

on_both!(
    first_period_is_charged_when_ready,
    each_period_is_charged_once_at_its_start,
    project_pays_first_then_user,
    server_that_cannot_pay_is_stopped_and_period_unpaid,
    stop_is_repeated_until_confirmed,
    grants_refill_lazily_up_to_cap,
    missed_periods_after_downtime_are_charged_in_order,
    free_servers_are_never_charged,
    stopped_servers_are_not_charged,
    ready_twice_and_bill_twice_charge_once,
    promise_expires_when_server_never_gets_ready,
);

async fn first_period_is_charged_when_ready(h: Harness) {
    h.user("ada", 100, 10, 600, None).await;
    h.start("ada", "", "k1", 15, 600).await;
    assert_eq!(h.balance("ada").await, 85);
    let view = h.ledger.user_view("ada").await.unwrap();
    assert_eq!(view.servers.len(), 1);
    assert_eq!(view.servers[0].state, ServerState::Running);
    assert_eq!(view.servers[0].next_charge_at, Some(h.now() + 600_000));
    h.assert_audit_clean().await;
}

async fn each_period_is_charged_once_at_its_start(h: Harness) {
    h.user("ada", 100, 0, 600, None).await;
    h.start("ada", "", "k1", 10, 60).await;
    h.advance(59);
    assert_eq!(h.ledger.bill().await.unwrap().periods_charged, 0);
    assert_eq!(h.balance("ada").await, 90);
    h.advance(1);
    let report = h.ledger.bill().await.unwrap();
    assert_eq!((report.periods_charged, report.credits_charged), (1, 10));
    assert_eq!(h.balance("ada").await, 80);
    let journal = h.ledger.user_journal("ada", None, 100).await.unwrap();
    let charges: Vec<_> = journal
        .iter()
        .filter(|e| e.kind == EntryKind::Charge)
        .collect();
    assert_eq!(charges.len(), 2);
    assert_eq!(charges[0].period, Some(1));
    assert_eq!(charges[0].delta, -10);
    assert_eq!(charges[0].balance_after, 80);
    assert_eq!(charges[0].time, charges[1].time + 60_000);
    h.assert_audit_clean().await;
}

async fn project_pays_first_then_user(h: Harness) {
    h.project("lab", 1000, 0, 600).await;
    h.user("ada", 100, 0, 600, Some("lab")).await;
    h.ledger
        .adjust_project(
            "lab",
            &credit_ledger::ProjectPatch {
                balance: Some(25),
                ..Default::default()
            },
            &crate::harness::admin("test"),
        )
        .await
        .unwrap();
    h.start("ada", "", "k1", 20, 60).await;
    assert_eq!(
        (h.project_balance("lab").await, h.balance("ada").await),
        (5, 100)
    );
    h.advance(60);
    h.ledger.bill().await.unwrap();
    // 5 from the project, 15 from the user.
    assert_eq!(
        (h.project_balance("lab").await, h.balance("ada").await),
        (0, 85)
    );
    let project_journal = h.ledger.project_journal("lab", None, 10).await.unwrap();
    assert_eq!(project_journal[0].delta, -5);
    assert_eq!(project_journal[0].user.as_deref(), Some("ada"));
    h.assert_audit_clean().await;
}

async fn server_that_cannot_pay_is_stopped_and_period_unpaid(h: Harness) {
    h.user("ada", 30, 5, 3600, None).await;
    h.start("ada", "gpu", "k1", 20, 60).await;
    h.advance(60);
    let report = h.ledger.bill().await.unwrap();
    assert_eq!(report.periods_charged, 0);
    assert_eq!(report.new_stops.len(), 1);
    let stop = &report.new_stops[0];
    assert_eq!(
        (stop.user.as_str(), stop.server_name.as_str()),
        ("ada", "gpu")
    );
    assert!(
        stop.reason
            .starts_with("Your server \"gpu\" was stopped at ")
            && stop.reason.contains("needs 20 credits every 60 seconds")
            && stop.reason.contains("you have 10 of 30 credits")
            && stop.reason.contains("More credits arrive at "),
        "{}",
        stop.reason
    );
    assert_eq!(
        h.balance("ada").await,
        10,
        "the unpaid period takes nothing"
    );
    let view = h.ledger.user_view("ada").await.unwrap();
    assert_eq!(view.servers[0].state, ServerState::Stopping);
    assert_eq!(
        view.servers[0].stop_reason.as_deref(),
        Some(stop.reason.as_str())
    );
    // Never billed again, even much later.
    h.advance(7200);
    assert_eq!(h.ledger.bill().await.unwrap().periods_charged, 0);
    h.assert_audit_clean().await;
}

async fn stop_is_repeated_until_confirmed(h: Harness) {
    h.user("ada", 10, 0, 600, None).await;
    h.start("ada", "", "k1", 10, 60).await;
    h.advance(60);
    assert_eq!(h.ledger.bill().await.unwrap().new_stops.len(), 1);
    h.advance(60);
    let again = h.ledger.bill().await.unwrap();
    assert!(again.new_stops.is_empty());
    assert_eq!(
        again.pending_stops.len(),
        1,
        "the hub has not confirmed yet"
    );
    assert!(h.ledger.mark_stopped("k1").await.unwrap());
    assert!(h.ledger.bill().await.unwrap().pending_stops.is_empty());
    let view = h.ledger.user_view("ada").await.unwrap();
    assert!(view.servers.is_empty());
    assert_eq!(view.recent_stops.len(), 1, "the user still sees why");
    assert!(
        !h.ledger.mark_stopped("k1").await.unwrap(),
        "a second stop is a no-op"
    );
}

async fn grants_refill_lazily_up_to_cap(h: Harness) {
    h.user("ada", 100, 10, 60, None).await;
    h.start("ada", "", "k1", 50, 3600).await;
    h.ledger.mark_stopped("k1").await.unwrap();
    assert_eq!(h.balance("ada").await, 50);
    h.advance(59);
    let view = h.ledger.user_view("ada").await.unwrap();
    assert_eq!(view.pools[0].balance, 50);
    assert_eq!(view.pools[0].next_grant_at, Some(h.now() + 1000));
    h.advance(1);
    assert_eq!(h.balance("ada").await, 60);
    h.advance(3600);
    assert_eq!(h.balance("ada").await, 100, "capped");
    assert_eq!(
        h.ledger.user_view("ada").await.unwrap().pools[0].next_grant_at,
        None
    );
    // Nothing was written for the grants: views compute them.
    let journal = h.ledger.user_journal("ada", None, 100).await.unwrap();
    assert!(journal.iter().all(|e| e.kind != EntryKind::Grant));
    // The next charge writes them first, at their own times.
    h.start("ada", "", "k2", 30, 3600).await;
    let journal = h.ledger.user_journal("ada", None, 100).await.unwrap();
    assert_eq!(journal[0].kind, EntryKind::Charge);
    assert_eq!(journal[1].kind, EntryKind::Grant);
    assert_eq!((journal[1].delta, journal[1].balance_after), (50, 100));
    assert_eq!(h.balance("ada").await, 70);
    h.assert_audit_clean().await;
}

async fn missed_periods_after_downtime_are_charged_in_order(h: Harness) {
    // 10 credits every 60 s in, a server costing 20 every 60 s out: it runs
    // the balance down by 10 a minute and stops when a period can't be paid.
    h.user("ada", 100, 10, 60, None).await;
    h.start("ada", "", "k1", 20, 60).await;
    assert_eq!(h.balance("ada").await, 80);
    h.advance(3600);
    let report = h.ledger.bill().await.unwrap();
    // At each period's start a grant lands first (+10), then the charge
    // (-20): 80 -> 70 -> ... -> 0 after period 8; period 9 sees 10.
    assert_eq!(report.periods_charged, 8);
    assert_eq!(report.new_stops.len(), 1);
    let journal = h.ledger.user_journal("ada", None, 1000).await.unwrap();
    let times: Vec<_> = journal.iter().map(|e| e.time).collect();
    let sorted = {
        let mut t = times.clone();
        t.sort_unstable_by(|a, b| b.cmp(a));
        t
    };
    assert_eq!(times, sorted, "journal is in time order");
    assert_eq!(
        h.ledger
            .server("k1")
            .await
            .unwrap()
            .unwrap()
            .periods_charged,
        9
    );
    // The grant at the unpaid period's start is the last entry; grants went
    // on after the stop, up to the cap.
    assert_eq!(
        (journal[0].kind, journal[0].balance_after),
        (EntryKind::Grant, 10)
    );
    assert_eq!(h.balance("ada").await, 100);
    h.assert_audit_clean().await;
}

async fn free_servers_are_never_charged(h: Harness) {
    h.user("ada", 0, 0, 600, None).await;
    h.start("ada", "", "k1", 0, 60).await;
    h.advance(86_400);
    let report = h.ledger.bill().await.unwrap();
    assert_eq!((report.periods_charged, report.new_stops.len()), (0, 0));
    assert_eq!(
        h.ledger.user_view("ada").await.unwrap().servers[0].next_charge_at,
        None
    );
}

async fn stopped_servers_are_not_charged(h: Harness) {
    h.user("ada", 100, 0, 600, None).await;
    h.start("ada", "", "k1", 10, 60).await;
    h.advance(30);
    h.ledger.mark_stopped("k1").await.unwrap();
    h.advance(600);
    assert_eq!(h.ledger.bill().await.unwrap().periods_charged, 0);
    assert_eq!(h.balance("ada").await, 90);
}

async fn ready_twice_and_bill_twice_charge_once(h: Harness) {
    h.user("ada", 100, 0, 600, None).await;
    h.start("ada", "", "k1", 10, 60).await;
    assert_eq!(h.ledger.mark_ready("k1", h.now()).await.unwrap(), None);
    assert_eq!(h.balance("ada").await, 90);
    h.advance(60);
    h.ledger.bill().await.unwrap();
    h.ledger.bill().await.unwrap();
    assert_eq!(h.balance("ada").await, 80);
    let err = h.ledger.mark_ready("nope", h.now()).await.unwrap_err();
    assert!(err.to_string().contains("no admitted server"), "{err}");
    h.assert_audit_clean().await;
}

async fn promise_expires_when_server_never_gets_ready(h: Harness) {
    h.user("ada", 30, 0, 600, None).await;
    assert!(matches!(
        h.admit("ada", "a", "k1", 20, 60).await,
        credit_ledger::Admission::Admitted { .. }
    ));
    assert!(matches!(
        h.admit("ada", "b", "k2", 20, 60).await,
        credit_ledger::Admission::Refused(_)
    ));
    h.advance(601);
    assert_eq!(h.ledger.bill().await.unwrap().promises_expired, 1);
    assert!(matches!(
        h.admit("ada", "b", "k3", 20, 60).await,
        credit_ledger::Admission::Admitted { .. }
    ));
    // A late ready of the expired spawn is still billed (it really runs).
    h.ledger.mark_ready("k1", h.now()).await.unwrap();
    assert_eq!(h.balance("ada").await, 10);
}
