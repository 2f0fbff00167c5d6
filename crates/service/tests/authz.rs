//! Who may call what: every endpoint against every kind of caller.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{
    ADA, ADMIN, ADMIN_NAME, BOB, GROUP_ADMIN, METRICS, REJECTED, SECRET, Service, eventually,
};

/// The callers of the matrix, in column order.
#[derive(Debug, Clone, Copy)]
enum Who {
    Anonymous,
    Ada,
    Bob,
    Admin,
    Rejected,
    Plugin,
    WrongPlugin,
    AdaWithSecret,
    GroupAdmin,
}

const CALLERS: [Who; 9] = [
    Who::Anonymous,
    Who::Ada,
    Who::Bob,
    Who::Admin,
    Who::Rejected,
    Who::Plugin,
    Who::WrongPlugin,
    Who::AdaWithSecret,
    Who::GroupAdmin,
];

impl Who {
    fn headers(self) -> Vec<(&'static str, String)> {
        let token = |t: &str| ("authorization", format!("token {t}"));
        let secret = |s: &str| ("x-credits-plugin-secret", s.to_string());
        match self {
            Who::Anonymous => vec![],
            Who::Ada => vec![token(ADA)],
            Who::Bob => vec![token(BOB)],
            Who::Admin => vec![token(ADMIN)],
            Who::Rejected => vec![token(REJECTED)],
            Who::Plugin => vec![secret(SECRET)],
            Who::WrongPlugin => vec![secret("not-the-secret")],
            Who::AdaWithSecret => vec![token(ADA), secret(SECRET)],
            Who::GroupAdmin => vec![token(GROUP_ADMIN)],
        }
    }
}

/// One row: an endpoint and the status each caller gets, in [`CALLERS`] order.
struct Row {
    method: Method,
    path: &'static str,
    body: Value,
    /// An event stream: check the status and headers, don't read the body.
    stream: bool,
    expect: [u16; 9],
}

fn row(method: Method, path: &'static str, body: Value, expect: [u16; 9]) -> Row {
    Row {
        method,
        path,
        body,
        stream: false,
        expect,
    }
}

fn stream(path: &'static str, expect: [u16; 9]) -> Row {
    Row {
        method: Method::GET,
        path,
        body: Value::Null,
        stream: true,
        expect,
    }
}

//                          anon ada  bob  admin rej  plug wrong ada+s group
const SELF: [u16; 9] = [401, 200, 200, 200, 401, 401, 401, 200, 200];
const ADA_OR_ADMIN: [u16; 9] = [401, 200, 403, 200, 401, 401, 401, 200, 403];
const ADMIN_ONLY: [u16; 9] = [401, 403, 403, 200, 401, 401, 401, 403, 403];
const PLUGIN_ONLY: [u16; 9] = [401, 401, 401, 401, 401, 200, 403, 200, 401];
const ANYONE: [u16; 9] = [200; 9];

fn matrix() -> Vec<Row> {
    let spawn = json!({
        "user": "ada", "server_name": "matrix", "server_key": "matrix-key",
        "user_options": {}, "billing_value": 1, "billing_interval": 60,
    });
    let lab = json!([{"name": "lab", "cap": 100, "grant_value": 1, "grant_interval": 60}]);
    let ada_pools = json!({"pools": [{"name": "default", "cap": 50, "grant_value": 1, "grant_interval": 60, "project": "lab"}]});
    vec![
        row(Method::GET, "api/v1/me", Value::Null, SELF),
        row(Method::GET, "api/v1/users", Value::Null, ADMIN_ONLY),
        row(Method::GET, "api/v1/users/ada", Value::Null, ADA_OR_ADMIN),
        row(
            Method::PATCH,
            "api/v1/users/ada/pools/default",
            json!({"balance": 7, "reason": "matrix"}),
            ADMIN_ONLY,
        ),
        row(
            Method::GET,
            "api/v1/users/ada/journal",
            Value::Null,
            ADA_OR_ADMIN,
        ),
        row(Method::GET, "api/v1/projects", Value::Null, ADMIN_ONLY),
        // ada is a member of lab, bob is not.
        row(
            Method::GET,
            "api/v1/projects/lab",
            Value::Null,
            ADA_OR_ADMIN,
        ),
        row(
            Method::PATCH,
            "api/v1/projects/lab",
            json!({"balance": 5, "reason": "matrix"}),
            ADMIN_ONLY,
        ),
        row(
            Method::GET,
            "api/v1/projects/lab/journal",
            Value::Null,
            ADA_OR_ADMIN,
        ),
        row(Method::GET, "api/v1/unbilled", Value::Null, ADMIN_ONLY),
        stream("api/v1/me/events", SELF),
        row(Method::GET, "metrics", Value::Null, ADMIN_ONLY),
        row(Method::GET, "health", Value::Null, ANYONE),
        row(Method::PUT, "internal/v1/projects", lab, PLUGIN_ONLY),
        row(Method::PUT, "internal/v1/users/ada", ada_pools, PLUGIN_ONLY),
        row(
            Method::GET,
            "internal/v1/users/ada",
            Value::Null,
            PLUGIN_ONLY,
        ),
        row(
            Method::PATCH,
            "internal/v1/users/ada/pools/default",
            json!({"balance": 6, "reason": "forwarded"}),
            PLUGIN_ONLY,
        ),
        row(
            Method::PATCH,
            "internal/v1/projects/lab",
            json!({"balance": 4}),
            PLUGIN_ONLY,
        ),
        row(Method::POST, "internal/v1/spawns", spawn, PLUGIN_ONLY),
        row(
            Method::POST,
            "internal/v1/spawns/matrix-key/ready",
            Value::Null,
            PLUGIN_ONLY,
        ),
        row(
            Method::POST,
            "internal/v1/spawns/matrix-key/stopped",
            Value::Null,
            PLUGIN_ONLY,
        ),
        stream("internal/v1/rounds", PLUGIN_ONLY),
    ]
}

/// ada (in project lab), bob (no project), the admin and the group admin,
/// all with credits.
async fn fixture() -> Service {
    let s = Service::new().await;
    s.put_projects(&[("lab", 100, 1, 60)]).await;
    s.put_user("ada", 50, 1, 60, Some("lab")).await;
    s.put_user("bob", 50, 1, 60, None).await;
    s.put_user(ADMIN_NAME, 10, 1, 60, None).await;
    s.put_user("grace", 10, 1, 60, None).await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_against_every_caller() {
    let s = fixture().await;
    let bob_before = (s.view("bob").await, s.journal("bob").await);
    let mut failures = Vec::new();
    for row in matrix() {
        for (who, expected) in CALLERS.iter().zip(row.expect) {
            let mut headers = who.headers();
            // Forwarded admin changes name the admin they are made for.
            if row.path.starts_with("internal/v1/") && row.method == Method::PATCH {
                headers.push(("x-credits-actor", "hub-admin".into()));
            }
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let body = if row.body.is_null() {
                Body::empty()
            } else {
                Body::from(row.body.to_string())
            };
            let label = format!("{} {} as {who:?}", row.method, row.path);
            if row.stream {
                let response = s
                    .send(Service::request(
                        row.method.clone(),
                        row.path,
                        &headers,
                        body,
                    ))
                    .await;
                let status = response.status().as_u16();
                if status != expected {
                    failures.push(format!("{label}: {status}, expected {expected}"));
                } else if status == 200 {
                    let content_type = response.headers()["content-type"].to_str().unwrap();
                    assert_eq!(content_type, "text/event-stream", "{label}");
                } else {
                    let reply = collect(response).await;
                    reply.assert_error_shape();
                }
                continue;
            }
            let reply = s.call(row.method.clone(), row.path, &headers, body).await;
            let status = reply.status.as_u16();
            if status != expected {
                failures.push(format!(
                    "{label}: {status}, expected {expected}: {}",
                    reply.text()
                ));
                continue;
            }
            if status >= 400 {
                reply.assert_error_shape();
            } else if row.path != "metrics" {
                reply.json();
            }
        }
    }
    assert!(
        failures.is_empty(),
        "authorization matrix:\n{}",
        failures.join("\n")
    );

    // The only changes to ada's credits are the admin's and the plugin's
    // forwarded ones.
    let journal = s.journal("ada").await;
    let actors: Vec<&str> = journal
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "adjust")
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(
        actors,
        ["hub-admin", "hub-admin", ADMIN_NAME],
        "{journal:#}"
    );
    // Nothing touched bob.
    assert_eq!((s.view("bob").await, s.journal("bob").await), bob_before);
    s.assert_audit_clean().await;
}

async fn collect(response: axum::http::Response<Body>) -> crate::harness::Reply {
    use http_body_util::BodyExt;
    let (parts, body) = response.into_parts();
    crate::harness::Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_never_reads_or_changes_another_users_credits() {
    let mut s = fixture().await;
    s.start_server("ada", "", "ada-1", 2, 60).await;
    s.advance(120);
    s.round().await;
    let ada_before = (s.view("ada").await, s.journal("ada").await);
    let lab_before = s.project("lab").await;

    let reads = [
        "api/v1/users/ada",
        "api/v1/users/ada/journal",
        "api/v1/users/ada/journal?limit=1",
        "api/v1/users",
        "api/v1/users?after=a",
        "api/v1/projects",
        "api/v1/projects/lab",
        "api/v1/projects/lab/journal",
        "api/v1/unbilled",
        "metrics",
    ];
    for path in reads {
        let reply = s.get(path, BOB).await;
        let message = reply.error(403);
        assert!(!reply.text().contains("\"balance\""), "{path}: {message}");
    }
    let bodies = [
        json!({"balance": 50}),
        json!({"cap": 1_000_000}),
        json!({"grant_value": 1000, "grant_interval": 1}),
        json!({"project": ""}),
        json!({"balance": 0, "reason": "bob was here"}),
    ];
    for body in &bodies {
        for path in [
            "api/v1/users/ada/pools/default",
            "api/v1/users/bob/pools/default",
            "api/v1/users/ada/pools/nope",
        ] {
            s.patch(path, BOB, body.to_string()).await.error(403);
        }
        let project_body = json!({"balance": 0});
        s.patch("api/v1/projects/lab", BOB, project_body.to_string())
            .await
            .error(403);
        // ada can't raise her own credits either.
        s.patch("api/v1/users/ada/pools/default", ADA, body.to_string())
            .await
            .error(403);
        s.patch("api/v1/projects/lab", ADA, project_body.to_string())
            .await
            .error(403);
        // The plugin's forwarded changes need the secret, not a token.
        let auth = format!("token {BOB}");
        s.call(
            Method::PATCH,
            "internal/v1/users/ada/pools/default",
            &[("authorization", &auth), ("x-credits-actor", "bob")],
            body.to_string(),
        )
        .await
        .error(401);
    }
    // Other spellings of ada's name or path are not ada's credits.
    for path in [
        "api/v1/users/ADA",
        "api/v1/users/ada%20",
        "api/v1/users/bob/../ada",
        "api/v1/users/bob%2F..%2Fada",
        "api/v1/users/ada/",
    ] {
        let reply = s.get(path, BOB).await;
        assert!(
            matches!(reply.status.as_u16(), 403 | 404),
            "{path}: {}",
            reply.status
        );
        reply.assert_error_shape();
    }
    // bob's own view shows only bob.
    let me = s.get("api/v1/me", BOB).await.ok();
    assert_eq!(me["name"], "bob");
    assert_eq!(me["servers"], json!([]));
    assert!(me["pools"][0]["project"].is_null());

    assert_eq!((s.view("ada").await, s.journal("ada").await), ada_before);
    assert_eq!(s.project("lab").await, lab_before);
    s.assert_audit_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_come_from_header_query_or_cookie() {
    let s = fixture().await;
    let ways: [(&str, Vec<(&str, String)>); 4] = [
        ("api/v1/me", vec![("authorization", format!("token {ADA}"))]),
        (
            "api/v1/me",
            vec![("authorization", format!("Bearer {ADA}"))],
        ),
        ("api/v1/me?token=ada-token", vec![]),
        (
            "api/v1/me",
            vec![("cookie", format!("other=1; jupyterhub-credits-token={ADA}"))],
        ),
    ];
    for (path, headers) in &ways {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = s.call(Method::GET, path, &headers, Body::empty()).await;
        assert_eq!(reply.ok()["name"], "ada", "{path} {headers:?}");
    }
    // Malformed credentials are a 401, not a 500.
    for value in ["token", "token ", "Basic YWRhOnB3", "ada-token", "token   "] {
        let reply = s
            .call(
                Method::GET,
                "api/v1/me",
                &[("authorization", value)],
                Body::empty(),
            )
            .await;
        reply.error(401);
    }
    // Tokens no hub could have issued are a 401 too, not a hub outage.
    for path in [
        "api/v1/me?token=%00",
        "api/v1/me?token=a%0Ab",
        "api/v1/me?token=%FF%FE",
        "api/v1/me?token=%E2%9C%93",
    ] {
        s.call(Method::GET, path, &[], Body::empty())
            .await
            .error(401);
    }
    // Metrics: read:metrics is enough; a group-restricted scope is not.
    assert_eq!(s.get("metrics", METRICS).await.status, StatusCode::OK);
    s.get("metrics", GROUP_ADMIN).await.error(403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_identities_are_cached_briefly() {
    let s = fixture().await;
    let calls = s.hub.identify_calls();
    for _ in 0..3 {
        s.get("api/v1/me", ADA).await.ok();
        s.get("api/v1/me", REJECTED).await.error(401);
    }
    assert_eq!(s.hub.identify_calls() - calls, 2, "one check per token");

    // Without a cache every request asks the hub.
    let s = Service::with(crate::harness::Db::Sqlite, &["--auth-cache", "0"]).await;
    s.put_user("ada", 5, 1, 60, None).await;
    let calls = s.hub.identify_calls();
    for _ in 0..3 {
        s.get("api/v1/me", ADA).await.ok();
    }
    assert_eq!(s.hub.identify_calls() - calls, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_that_cant_check_tokens_is_a_503_not_a_401() {
    let s = fixture().await;
    s.hub.set_failing(true);
    let message = s.get("api/v1/me", ADA).await.error(503);
    assert!(message.contains("hub"), "{message}");
    s.hub.set_failing(false);
    s.hub.set_down(true);
    s.get("api/v1/me", ADA).await.error(503);
    // No token is no token, whatever the hub's state.
    s.call(Method::GET, "api/v1/me", &[], Body::empty())
        .await
        .error(401);
    s.hub.set_down(false);
    // The failure was not cached as a rejection.
    eventually("the hub answers again", Duration::from_secs(5), || async {
        s.get("api/v1/me", ADA).await.status == StatusCode::OK
    })
    .await;
    // And health needs no hub at all.
    s.hub.set_down(true);
    s.call(Method::GET, "health", &[], Body::empty()).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_endpoints_and_methods_are_json_errors() {
    let s = fixture().await;
    let auth = format!("token {ADMIN}");
    let headers = [("authorization", auth.as_str())];
    for path in [
        "api/v1/nope",
        "api/v2/me",
        "api/v1/users/ada/pools",
        "internal/v1/nope",
    ] {
        s.call(Method::GET, path, &headers, Body::empty())
            .await
            .error(404);
    }
    // Without credentials too.
    s.call(Method::GET, "api/v1/nope", &[], Body::empty())
        .await
        .error(404);
    for (method, path) in [
        (Method::POST, "api/v1/me"),
        (Method::DELETE, "api/v1/users/ada"),
        (Method::PUT, "api/v1/users/ada/pools/default"),
        (Method::GET, "internal/v1/spawns"),
    ] {
        let reply = s.call(method.clone(), path, &headers, Body::empty()).await;
        assert_eq!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        reply.assert_error_shape();
        assert!(reply.headers.contains_key("allow"), "{method} {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_redirects_to_the_hub_login_and_api_never_does() {
    let s = Service::with(
        crate::harness::Db::Sqlite,
        &[
            "--oauth-client-id",
            "service-credits",
            "--oauth-callback-url",
            "/services/credits/oauth_callback",
        ],
    )
    .await;
    s.put_user("ada", 5, 1, 60, None).await;
    let reply = s.call(Method::GET, "", &[], Body::empty()).await;
    assert!(reply.status.is_redirection(), "{}", reply.status);
    let location = reply.headers["location"].to_str().unwrap();
    assert!(
        location.starts_with("/hub/api/oauth2/authorize?")
            && location.contains("client_id=service-credits"),
        "{location}"
    );
    // The bare prefix leads to the page.
    let reply = s
        .send(
            axum::http::Request::builder()
                .uri("/services/credits")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert!(reply.status().is_redirection(), "{}", reply.status());
    assert_eq!(reply.headers()["location"], "/services/credits/");
    // A logged-in browser gets the page.
    let reply = s
        .call(
            Method::GET,
            "",
            &[("cookie", &format!("jupyterhub-credits-token={ADA}"))],
            Body::empty(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.text().contains("/services/credits/"));
    // The API answers 401, never a redirect, whatever the caller accepts.
    for accept in ["text/html", "application/json", "*/*"] {
        s.call(
            Method::GET,
            "api/v1/me",
            &[("accept", accept)],
            Body::empty(),
        )
        .await
        .error(401);
    }
}
