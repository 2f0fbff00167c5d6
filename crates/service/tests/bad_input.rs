//! Admin changes: every bad value is a 4xx with a JSON message and changes
//! nothing; good ones take effect at once and are journaled.

use axum::body::Body;
use axum::http::Method;
use serde_json::{Value, json};

use crate::harness::{ADMIN, ADMIN_NAME, Db, SECRET, Service, enc};
use crate::on_both;

on_both!(bad_admin_input_changes_nothing, admin_patches_take_effect);

const POOL: &str = "api/v1/users/ada/pools/default";
const PROJECT: &str = "api/v1/projects/lab";

/// Values that are not credits: wrong type, fraction, out of range.
const NOT_CREDITS: [&str; 14] = [
    r#""10""#,
    "1.5",
    "10.0",
    "1e3",
    "-0.0",
    "true",
    "null",
    "[]",
    "{}",
    "1000000000000000000000000000000",
    "9223372036854775808",
    "9007199254740992",
    "-1",
    "-9223372036854775808",
];

struct Case {
    path: String,
    body: String,
    /// Acceptable statuses.
    expect: &'static [u16],
}

fn case(path: &str, body: impl Into<String>, expect: &'static [u16]) -> Case {
    Case {
        path: path.to_string(),
        body: body.into(),
        expect,
    }
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for target in [POOL, PROJECT] {
        for field in ["balance", "cap", "grant_value", "grant_interval"] {
            for value in NOT_CREDITS {
                cases.push(case(target, format!(r#"{{"{field}": {value}}}"#), &[400]));
                // All or nothing: a good field next to a bad one is not applied.
                let other = if field == "balance" { "cap" } else { "balance" };
                cases.push(case(
                    target,
                    format!(r#"{{"{other}": 3, "{field}": {value}, "reason": "mixed"}}"#),
                    &[400],
                ));
            }
        }
        for body in [
            r#"{"grant_interval": 0}"#,
            r#"{"grant_interval": 0, "balance": 1}"#,
            // Above the cap: the current one (50 for ada, 100 for lab) or the new one.
            r#"{"balance": 101}"#,
            r#"{"balance": 5, "cap": 4}"#,
            r#"{"cap": 10, "balance": 11}"#,
            r#"{"balance": 9007199254740991}"#,
            // Not an object.
            "",
            "not json",
            "{",
            r#"{"balance": 1"#,
            r#"{"balance": 1}{"balance": 2}"#,
            "[]",
            r#"[{"balance": 1}]"#,
            "5",
            "-1",
            r#""balance""#,
            "null",
            "true",
            // Unknown keys, wrong case, nothing to change.
            r#"{"balance": 5, "bogus": 1}"#,
            r#"{"Balance": 5}"#,
            r#"{"balance ": 5}"#,
            r#"{"billing_value": 5}"#,
            "{}",
            r#"{"reason": "only a reason"}"#,
            r#"{"reason": "ünïcødé ✓ 😀"}"#,
            // Reasons that are not short strings.
            r#"{"balance": 5, "reason": 5}"#,
            r#"{"balance": 5, "reason": true}"#,
            r#"{"balance": 5, "reason": null}"#,
            r#"{"balance": 5, "reason": ["a"]}"#,
            r#"{"balance": 5, "reason": {"text": "a"}}"#,
            r#"{"balance": 5, "reason": "nul \u0000 inside"}"#,
        ] {
            cases.push(case(target, body, &[400]));
        }
        let long_reason = json!({"balance": 5, "reason": "é".repeat(600)}).to_string();
        cases.push(case(target, long_reason, &[400]));
        // Larger than any body the service accepts.
        let huge_reason = json!({"balance": 5, "reason": "x".repeat(300 * 1024)}).to_string();
        cases.push(case(target, huge_reason, &[400, 413]));
        let huge_body = format!(r#"{{"balance": 5, "pad": "{}"}}"#, " ".repeat(1 << 20));
        cases.push(case(target, huge_body, &[400, 413]));
    }
    // project: only on a user's pool, only a string naming a project.
    for value in [
        "1",
        "true",
        "null",
        "[]",
        "{}",
        r#"["lab"]"#,
        r#"{"name": "lab"}"#,
    ] {
        cases.push(case(POOL, format!(r#"{{"project": {value}}}"#), &[400]));
    }
    for name in ["lab\n", "la\u{0}b", "l\tab", &"p".repeat(300)] {
        cases.push(case(POOL, json!({"project": name}).to_string(), &[400]));
    }
    for name in ["nope", "ラボ 😀", "LAB", "lab "] {
        cases.push(case(POOL, json!({"project": name}).to_string(), &[404]));
        // An unknown project fails the whole change.
        cases.push(case(
            POOL,
            json!({"project": name, "balance": 1}).to_string(),
            &[404],
        ));
    }
    cases.push(case(PROJECT, r#"{"project": "lab"}"#, &[400]));
    cases.push(case(PROJECT, r#"{"project": ""}"#, &[400]));
    // Unknown users, pools and projects.
    let good = r#"{"balance": 1, "reason": "x"}"#;
    let long = "x".repeat(1000);
    let unknown_pools = [
        "api/v1/users/nobody/pools/default".to_string(),
        "api/v1/users/ada/pools/gpu".to_string(),
        "api/v1/users/ada/pools/DEFAULT".to_string(),
        "api/v1/users/bob/pools/gpu".to_string(),
        format!("api/v1/users/{}/pools/default", enc("jürgen 😀")),
        format!("api/v1/users/{}/pools/default", enc(&long)),
        format!("api/v1/users/ada/pools/{}", enc(&long)),
        format!("api/v1/users/{}/pools/default", enc("ada\u{0}")),
        format!("api/v1/users/{}/pools/default", enc("a\nda")),
        "api/v1/users/%FF%FE/pools/default".to_string(),
    ];
    for path in &unknown_pools {
        cases.push(case(path, good, &[400, 404]));
    }
    for path in [
        "api/v1/projects/nope".to_string(),
        "api/v1/projects/LAB".to_string(),
        format!("api/v1/projects/{}", enc("ラボ")),
        format!("api/v1/projects/{}", enc(&long)),
        format!("api/v1/projects/{}", enc("lab\u{0}")),
        "api/v1/projects/%FF".to_string(),
    ] {
        cases.push(case(&path, good, &[400, 404]));
    }
    // The names that exist are 404s when they exist nowhere else.
    cases.push(case("api/v1/users/nobody/pools/default", good, &[404]));
    cases.push(case("api/v1/projects/nope", good, &[404]));
    cases
}

/// What an admin sees of everything the bad inputs could touch.
async fn snapshot(s: &Service) -> Value {
    let (lab, lab_journal) = s.project("lab").await;
    json!({
        "ada": s.view("ada").await,
        "ada_journal": s.journal("ada").await,
        "bob": s.view("bob").await,
        "bob_journal": s.journal("bob").await,
        "lab": lab,
        "lab_journal": lab_journal,
        "users": s.get("api/v1/users", ADMIN).await.ok(),
        "projects": s.get("api/v1/projects", ADMIN).await.ok(),
    })
}

async fn bad_admin_input_changes_nothing(db: Db) {
    let mut s = Service::with(db, &[]).await;
    s.put_projects(&[("lab", 100, 1, 60), ("other", 10, 1, 60)])
        .await;
    s.put_user("ada", 50, 1, 60, Some("lab")).await;
    s.put_user("bob", 40, 1, 3600, None).await;
    s.start_server("bob", "", "bob-1", 3, 60).await;
    assert_eq!(s.balance("bob").await, 37);
    let before = snapshot(&s).await;

    let mut failures = Vec::new();
    for c in cases() {
        let reply = s.patch(&c.path, ADMIN, c.body.clone()).await;
        let shown: String = c.body.chars().take(80).collect();
        let label = format!(
            "PATCH {} {shown}",
            c.path.chars().take(80).collect::<String>()
        );
        if !c.expect.contains(&reply.status.as_u16()) {
            failures.push(format!(
                "{label}: {} (expected {:?}): {}",
                reply.status,
                c.expect,
                reply.text().chars().take(200).collect::<String>()
            ));
            continue;
        }
        if let Err(problem) = reply.error_problem() {
            failures.push(format!("{label}: {problem}"));
        }
        // The same body forwarded by the plugin gets the same answer.
        if let Some(rest) = c.path.strip_prefix("api/v1/") {
            let forwarded = s
                .call(
                    Method::PATCH,
                    &format!("internal/v1/{rest}"),
                    &[
                        ("x-credits-plugin-secret", SECRET),
                        ("x-credits-actor", "hub-admin"),
                    ],
                    c.body.clone(),
                )
                .await;
            if forwarded.status != reply.status {
                failures.push(format!(
                    "{label}: forwarded {} but direct {}",
                    forwarded.status, reply.status
                ));
            }
        }
    }
    // Admission inputs that are not credits or intervals.
    let spawn = |value: Value, interval: Value| {
        json!({"user": "ada", "server_name": "", "server_key": "bad-spawn",
               "billing_value": value, "billing_interval": interval})
    };
    for body in [
        spawn(json!(1), json!(0)),
        spawn(json!(1), json!(-60)),
        spawn(json!(-1), json!(60)),
        spawn(json!(1.5), json!(60)),
        spawn(json!("1"), json!(60)),
        spawn(json!(1), json!(60.5)),
        spawn(json!(1), json!(null)),
        spawn(json!(9_007_199_254_740_992_i64), json!(60)),
        json!({"user": "ada", "server_key": "bad-spawn", "billing_value": 1}),
        json!({"user": "ada", "server_key": "bad-spawn", "billing_value": 1, "billing_interval": 60, "bogus": 1}),
        json!([1, 2]),
        json!({"user": "ada\u{0}", "server_key": "bad-spawn", "billing_value": 1, "billing_interval": 60}),
        json!({"user": "ada", "server_name": "a\u{0}", "server_key": "bad-spawn", "billing_value": 1, "billing_interval": 60}),
        json!({"user": "ada", "server_key": "bad\u{0}spawn", "billing_value": 1, "billing_interval": 60}),
        json!({"user": "ada", "server_key": "", "billing_value": 1, "billing_interval": 60}),
    ] {
        let reply = s
            .plugin(Method::POST, "internal/v1/spawns", body.clone())
            .await;
        if reply.status != 400 {
            failures.push(format!("POST spawns {body}: {}", reply.status));
        } else if let Err(problem) = reply.error_problem() {
            failures.push(format!("POST spawns {body}: {problem}"));
        }
    }
    // Query strings.
    for path in [
        "api/v1/users?limit=0",
        "api/v1/users?limit=1001",
        "api/v1/users?limit=-1",
        "api/v1/users?limit=1.5",
        "api/v1/users?limit=abc",
        "api/v1/users?limit=1&limit=2",
        "api/v1/users?bogus=1",
        "api/v1/projects?limit=0",
        "api/v1/users/ada/journal?before=0",
        "api/v1/users/ada/journal?before=abc",
        "api/v1/users/ada/journal?before=-5",
        "api/v1/users/ada/journal?after=1",
        "api/v1/projects/lab/journal?limit=100000",
        "api/v1/users?after=%00",
        "api/v1/projects?after=a%00",
    ] {
        let reply = s.get(path, ADMIN).await;
        if reply.status != 400 {
            failures.push(format!("GET {path}: {}", reply.status));
        } else if let Err(problem) = reply.error_problem() {
            failures.push(format!("GET {path}: {problem}"));
        }
    }
    assert!(failures.is_empty(), "bad inputs:\n{}", failures.join("\n"));

    assert_eq!(snapshot(&s).await, before, "a bad input changed something");
    // A refused spawn promised nothing: ada can still start what her pools pay.
    let admitted = s.admit("ada", "", "good-spawn", 150, 60).await;
    assert_eq!(admitted["admitted"], true, "{admitted}");

    // Billing goes on for everyone.
    s.advance(60);
    s.round().await;
    assert_eq!(s.balance("bob").await, 34);
    let journal = s.journal("bob").await;
    assert_eq!(journal[0]["kind"], "charge", "{journal:#}");
    assert_eq!(journal[0]["period"], 1);
    s.assert_audit_clean().await;
}

async fn admin_patches_take_effect(db: Db) {
    let s = Service::with(db, &[]).await;
    s.put_projects(&[("lab", 100, 5, 60), ("other", 10, 1, 60)])
        .await;
    s.put_user("ada", 50, 1, 60, Some("lab")).await;

    // Balance 0 is a valid value.
    let pool = s
        .patch(POOL, ADMIN, r#"{"balance": 0, "reason": "reset ✓"}"#)
        .await
        .ok();
    assert_eq!(pool["name"], "default");
    assert_eq!(pool["balance"], 0);
    assert_eq!(pool["cap"], 50);
    assert_eq!(pool["project"]["name"], "lab");
    assert!(pool["next_grant_at"].as_str().unwrap().ends_with('Z'));
    let journal = s.journal("ada").await;
    let entry = &journal[0];
    assert_eq!(entry["kind"], "adjust");
    assert_eq!(entry["delta"], -50);
    assert_eq!(entry["balance_after"], 0);
    assert_eq!(entry["actor"], ADMIN_NAME);
    assert_eq!(entry["reason"], "reset ✓");
    assert_eq!(entry["pool"], "default");
    assert!(entry["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(journal[1]["kind"], "open");

    // Grants run from the clock; the view shows them at once.
    s.advance(120);
    assert_eq!(s.balance("ada").await, 2);

    // Cap, grant and balance together; the largest values are accepted.
    let pool = s
        .patch(
            POOL,
            ADMIN,
            r#"{"cap": 9007199254740991, "grant_value": 9007199254740991, "grant_interval": 9007199254740991, "balance": 9007199254740991}"#,
        )
        .await
        .ok();
    assert_eq!(pool["balance"], 9_007_199_254_740_991_i64);
    assert!(pool["next_grant_at"].is_null());
    // Lowering the cap clamps the balance (and journals the clamp).
    let pool = s
        .patch(
            POOL,
            ADMIN,
            r#"{"cap": 30, "grant_value": 2, "grant_interval": 10}"#,
        )
        .await
        .ok();
    assert_eq!(
        (pool["balance"].as_i64(), pool["cap"].as_i64()),
        (Some(30), Some(30))
    );
    let journal = s.journal("ada").await;
    assert_eq!(journal[0]["kind"], "adjust");
    assert_eq!(journal[1]["kind"], "clamp");
    assert_eq!(journal[1]["balance_after"], 30);

    // Moving between projects, and out of them.
    let pool = s.patch(POOL, ADMIN, r#"{"project": "other"}"#).await.ok();
    assert_eq!(pool["project"]["name"], "other");
    let members = s.get("api/v1/projects/other", crate::harness::ADA).await;
    assert_eq!(members.ok()["name"], "other");
    s.get("api/v1/projects/lab", crate::harness::ADA)
        .await
        .error(403);
    let pool = s.patch(POOL, ADMIN, r#"{"project": ""}"#).await.ok();
    assert!(pool["project"].is_null());
    let me = s.get("api/v1/me", crate::harness::ADA).await.ok();
    assert!(me["pools"][0]["project"].is_null());

    // Projects.
    let project = s
        .patch(
            PROJECT,
            ADMIN,
            r#"{"balance": 0, "grant_value": 7, "reason": "workshop over"}"#,
        )
        .await
        .ok();
    assert_eq!(project["name"], "lab");
    assert_eq!(project["balance"], 0);
    assert_eq!(project["grant_value"], 7);
    let (view, journal) = s.project("lab").await;
    assert_eq!(view, project);
    assert_eq!(journal[0]["kind"], "adjust");
    assert_eq!(journal[0]["actor"], ADMIN_NAME);
    assert_eq!(journal[0]["reason"], "workshop over");
    s.advance(60);
    assert_eq!(s.project("lab").await.0["balance"], 7);

    // Forwarded by the plugin: the actor is the admin it names.
    let reply = s
        .call(
            Method::PATCH,
            "internal/v1/users/ada/pools/default",
            &[
                ("x-credits-plugin-secret", SECRET),
                ("x-credits-actor", "hub-admin"),
            ],
            r#"{"balance": 1}"#,
        )
        .await;
    assert_eq!(reply.ok()["balance"], 1);
    assert_eq!(s.journal("ada").await[0]["actor"], "hub-admin");
    let reply = s
        .call(
            Method::PATCH,
            "internal/v1/users/ada/pools/default",
            &[("x-credits-plugin-secret", SECRET)],
            Body::from(r#"{"balance": 2}"#),
        )
        .await;
    assert!(reply.error(400).contains("x-credits-actor"));
    assert_eq!(s.balance("ada").await, 1);

    // Listings page through users and projects.
    s.put_user("bob", 5, 1, 60, None).await;
    s.put_user("cy", 5, 1, 60, None).await;
    let page = s.get("api/v1/users?limit=2", ADMIN).await.ok();
    let names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ada", "bob"]);
    assert_eq!(page["next"], "bob");
    let page = s.get("api/v1/users?limit=2&after=bob", ADMIN).await.ok();
    assert_eq!(page["items"][0]["name"], "cy");
    assert!(page["next"].is_null());
    let page = s.get("api/v1/projects?limit=1", ADMIN).await.ok();
    assert_eq!(page["items"][0]["name"], "lab");
    let page = s.get("api/v1/projects?limit=1&after=lab", ADMIN).await.ok();
    assert_eq!(page["items"][0]["name"], "other");
    // Journal pages continue below the cursor.
    let first = s.get("api/v1/users/ada/journal?limit=2", ADMIN).await.ok();
    let cursor = first["next"].as_i64().unwrap();
    let rest = s
        .get(
            &format!("api/v1/users/ada/journal?limit=1000&before={cursor}"),
            ADMIN,
        )
        .await
        .ok();
    let all = s.journal("ada").await;
    assert_eq!(
        all.as_array().unwrap().len(),
        2 + rest["items"].as_array().unwrap().len()
    );
    assert_eq!(all[2], rest["items"][0]);
    s.assert_audit_clean().await;
}
