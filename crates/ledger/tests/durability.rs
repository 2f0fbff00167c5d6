//! Crash and reopen: closing the store mid-scenario, and a transaction
//! abandoned half-way, end in the same state as an uninterrupted run.

use credit_ledger::{JournalEntry, UserView};
use sqlx::Connection;

use crate::harness::{Db, Harness};

/// A scenario of spawns, charges, grants and stops over a few hours; the
/// store is closed and reopened before step `reopen_before` (if any).
async fn scenario(
    h: &mut Harness,
    reopen_before: Option<usize>,
) -> (Vec<UserView>, Vec<Vec<JournalEntry>>) {
    h.project("lab", 100, 10, 300).await;
    h.user("ada", 100, 10, 600, Some("lab")).await;
    h.user("bob", 50, 5, 600, None).await;
    for step in 0..12 {
        if reopen_before == Some(step) {
            h.reopen().await;
        }
        match step {
            0 => h.start("ada", "", "a1", 15, 120).await,
            1 => h.start("bob", "gpu", "b1", 20, 300).await,
            2 | 5 | 8 | 11 => {
                h.ledger.bill().await.unwrap();
            }
            3 => h.advance(3600),
            4 => {
                h.ledger.mark_stopped("b1").await.unwrap();
            }
            6 => h.advance(7200),
            7 => {
                let r = h.admit("bob", "gpu", "b2", 20, 300).await;
                if matches!(r, credit_ledger::Admission::Admitted { .. }) {
                    h.ledger.mark_ready("b2", h.now()).await.unwrap();
                }
            }
            9 => h.advance(900),
            10 => {
                for stop in h.ledger.pending_stops().await.unwrap() {
                    h.ledger.mark_stopped(&stop.server_key).await.unwrap();
                }
            }
            _ => unreachable!(),
        }
    }
    h.assert_audit_clean().await;
    let mut views = Vec::new();
    let mut journals = Vec::new();
    for user in ["ada", "bob"] {
        views.push(h.ledger.user_view(user).await.unwrap());
        journals.push(h.ledger.user_journal(user, None, 1000).await.unwrap());
    }
    journals.push(h.ledger.project_journal("lab", None, 1000).await.unwrap());
    (views, journals)
}

async fn reopen_anywhere_changes_nothing(db: Db) {
    let (views, journals) = scenario(&mut Harness::new(db).await, None).await;
    assert!(journals[0].len() > 5, "the scenario does something");
    for reopen in 0..12 {
        let got = scenario(&mut Harness::new(db).await, Some(reopen)).await;
        assert_eq!(
            got.0, views,
            "views differ after a reopen before step {reopen}"
        );
        assert_eq!(
            got.1, journals,
            "journals differ after a reopen before step {reopen}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_anywhere_changes_nothing_sqlite() {
    reopen_anywhere_changes_nothing(Db::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_anywhere_changes_nothing_postgres() {
    reopen_anywhere_changes_nothing(Db::Postgres).await
}

/// Makes the database reject the last write of a billing transaction (the
/// server update, after charges, pools and journal were written), so the
/// transaction is abandoned half-way; then lifts the fault.
async fn set_fault(h: &Harness, on: bool) {
    let statements: &[&'static str] = match (h.ledger.backend(), on) {
        (credit_ledger::Backend::Sqlite, true) => {
            &["CREATE TRIGGER injected_fault BEFORE UPDATE ON servers \
             BEGIN SELECT RAISE(ABORT, 'injected fault'); END"]
        }
        (credit_ledger::Backend::Sqlite, false) => &["DROP TRIGGER injected_fault"],
        (credit_ledger::Backend::Postgres, true) => &[
            "CREATE FUNCTION injected_fault() RETURNS trigger AS $$ \
             BEGIN RAISE EXCEPTION 'injected fault'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER injected_fault BEFORE UPDATE ON servers \
             FOR EACH ROW EXECUTE FUNCTION injected_fault()",
        ],
        (credit_ledger::Backend::Postgres, false) => &["DROP TRIGGER injected_fault ON servers"],
    };
    match h.ledger.backend() {
        credit_ledger::Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&h.url).await.unwrap();
            for s in statements {
                sqlx::query(*s).execute(&mut c).await.unwrap();
            }
        }
        credit_ledger::Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&h.url).await.unwrap();
            for s in statements {
                sqlx::query(*s).execute(&mut c).await.unwrap();
            }
        }
    }
}

async fn setup(h: &Harness) {
    h.project("lab", 30, 0, 600).await;
    h.user("ada", 100, 10, 600, Some("lab")).await;
    h.start("ada", "", "a1", 20, 60).await;
    h.advance(600);
}

async fn abandoned_transaction_leaves_no_trace(db: Db) {
    let clean = Harness::new(db).await;
    setup(&clean).await;
    let expected = clean.ledger.bill().await.unwrap();

    let faulty = Harness::new(db).await;
    setup(&faulty).await;
    let before = faulty.ledger.user_journal("ada", None, 1000).await.unwrap();
    set_fault(&faulty, true).await;
    let err = faulty.ledger.bill().await.unwrap_err();
    assert!(err.to_string().contains("injected fault"), "{err}");
    assert_eq!(
        faulty.ledger.user_journal("ada", None, 1000).await.unwrap(),
        before,
        "nothing of it stayed"
    );
    faulty.assert_audit_clean().await;
    set_fault(&faulty, false).await;
    let got = faulty.ledger.bill().await.unwrap();
    assert_eq!(got, expected);
    assert_eq!(
        faulty.ledger.user_view("ada").await.unwrap(),
        clean.ledger.user_view("ada").await.unwrap()
    );
    assert_eq!(
        faulty
            .ledger
            .user_journal("ada", None, 1000)
            .await
            .unwrap()
            .len(),
        clean
            .ledger
            .user_journal("ada", None, 1000)
            .await
            .unwrap()
            .len()
    );
    faulty.assert_audit_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_transaction_leaves_no_trace_sqlite() {
    abandoned_transaction_leaves_no_trace(Db::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_transaction_leaves_no_trace_postgres() {
    abandoned_transaction_leaves_no_trace(Db::Postgres).await
}
