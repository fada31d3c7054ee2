//! Hostile review of the console's Users and Roles sections (docs/api.md, "The console",
//! "People", "Applications"): what a person may not change is not offered, names that a browser
//! rewrites in a path, odd input, and secrets never echoed.

use serde_json::Value;

use crate::console::Console;
use crate::helpers::{call, ok, spawn_app};
use crate::people::create_user;

const ADMIN: &str = "admin@example.com";
const ALL: &[&str] = &["users:manage", "roles:manage", "content:*", "workloads:*"];

/// The controls of a user's page that change the user.
fn user_controls(id: &str) -> Vec<String> {
    vec![
        format!("href=\"/console/users/{id}/disable\""),
        format!("action=\"/console/users/{id}/enable\""),
        format!("href=\"/console/users/{id}/password\""),
        format!("href=\"/console/users/{id}/delete\""),
        format!("action=\"/console/users/{id}\""),
        format!("href=\"/console/users/{id}/sessions/"),
        ">Save changes</button>".to_owned(),
    ]
}

#[tokio::test]
async fn the_page_of_someone_holding_more_offers_no_change_to_them() {
    let app = spawn_app().await;
    create_user(&app, ADMIN, ALL).await;
    let root = create_user(&app, "root@example.com", &["*"]).await;
    let peer = create_user(&app, "peer@example.com", &["content:read"]).await;
    let _root_console = Console::sign_in(&app, "root@example.com").await;
    let _peer_console = Console::sign_in(&app, "peer@example.com").await;
    let mut c = Console::sign_in(&app, ADMIN).await;

    // Someone within the caller's reach: every control is there.
    let (status, html) = c.page(&format!("/console/users/{peer}")).await;
    assert_eq!(status, 200);
    for control in user_controls(&peer) {
        if control.contains("/enable") {
            continue;
        }
        assert!(html.contains(&control), "{control} offered for a peer");
    }
    // Someone holding more: readable, but nothing that would be a 403.
    let (status, html) = c.page(&format!("/console/users/{root}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("root@example.com"));
    for control in user_controls(&root) {
        assert!(
            !html.contains(&control),
            "{control} offered for a user holding more:\n{html}"
        );
    }
    // Nor is a role granting more than the caller holds offered for change.
    ok(
        call(
            &app,
            reqwest::Method::POST,
            "/api/v1/roles",
            Some(serde_json::json!({"name": "everything", "permissions": ["*"]})),
        )
        .await,
        201,
    )
    .await;
    let (status, html) = c.page("/console/roles/everything/edit").await;
    assert_eq!(status, 200);
    assert!(
        !html.contains("action=\"/console/roles/everything/edit\"")
            && !html.contains("href=\"/console/roles/everything/delete\""),
        "{html}"
    );
    // Forced anyway: the API's 403, nothing changed.
    let res = c
        .post(
            &format!("/console/users/{root}/password"),
            &[
                ("password", "a new password here"),
                ("password_confirm", "a new password here"),
            ],
        )
        .await;
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn odd_input_is_a_clear_refusal_never_a_500_or_an_echo() {
    let app = spawn_app().await;
    create_user(&app, ADMIN, ALL).await;
    let mut c = Console::sign_in(&app, ADMIN).await;
    let html_name = "<script>alert(1)</script>\"'&";
    for path in [
        "/console/users?cursor=%00%FF%5B%28",
        "/console/users?cursor=[",
        "/console/users?cursor=(zzzz",
        "/console/users/..%2F..%2Fapi",
        "/console/users/%00",
        "/console/users/usr_x/sessions/..%2Fx/end",
        "/console/roles/%2E%2E/edit",
        "/console/roles/NEW/edit",
        "/console/roles/a%2Fb/delete",
    ] {
        let (status, html) = c.page(path).await;
        assert!(status < 500, "{path}: {status} {html}");
        assert!(!html.contains("<script>"), "{path}");
    }
    let res = c
        .post(
            "/console/users/new",
            &[
                ("email", "x@example.com"),
                ("name", html_name),
                ("roles_text", html_name),
                ("permissions_other", html_name),
                ("password", "short"),
            ],
        )
        .await;
    let status = res.status();
    let html = res.text().await.unwrap();
    assert_eq!(status, 422, "{html}");
    assert!(!html.contains("<script>"), "{html}");
    assert!(!html.contains("short"), "the password is never echoed");

    // Created with markup in the name and a password: nowhere echoed raw.
    let password = "Sw0rdfish-Sw0rdfish";
    let res = c
        .post(
            "/console/users/new",
            &[
                ("email", "mark@example.com"),
                ("name", html_name),
                ("password", password),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    let loc = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(!loc.contains(password));
    let id = loc
        .split('/')
        .nth(3)
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    for path in [
        "/console/users".to_owned(),
        format!("/console/users/{id}"),
        format!("/console/users/{id}/disable"),
        format!("/console/users/{id}/delete"),
        format!("/console/users/{id}/password"),
    ] {
        let (status, html) = c.page(&path).await;
        assert_eq!(status, 200, "{path}");
        assert!(!html.contains("<script>alert"), "{path}");
        assert!(!html.contains(password), "{path}");
    }
    // The same email again (409) with a password: not echoed.
    let res = c
        .post(
            "/console/users/new",
            &[("email", "MARK@example.com"), ("password", password)],
        )
        .await;
    assert_eq!(res.status(), 409);
    assert!(!res.text().await.unwrap().contains(password));
    // A reset that does not match, then one that is the email: neither is
    // echoed, the first is beside the confirmation.
    for (p, q) in [
        (password, "other-password-1"),
        ("mark@example.com", "mark@example.com"),
    ] {
        let res = c
            .post(
                &format!("/console/users/{id}/password"),
                &[("password", p), ("password_confirm", q)],
            )
            .await;
        assert_eq!(res.status(), 422);
        let html = res.text().await.unwrap();
        assert!(!html.contains(&format!("value=\"{p}")), "{html}");
        assert!(!html.contains(q) || q.contains('@'), "{html}");
    }
    let audit: Value = ok(
        call(&app, reqwest::Method::GET, "/api/v1/audit?limit=200", None).await,
        200,
    )
    .await;
    assert!(!audit.to_string().contains(password), "audit: {audit}");
}

#[tokio::test]
async fn a_role_name_a_browser_would_rewrite_in_a_path_is_refused() {
    let app = spawn_app().await;
    create_user(&app, ADMIN, ALL).await;
    let mut c = Console::sign_in(&app, ADMIN).await;
    // "/console/roles/../edit" is "/console/edit" to every browser: such a
    // role could never be opened, edited or deleted from the console.
    for name in [".", ".."] {
        let res = c
            .post(
                "/console/roles/new",
                &[("name", name), ("permissions", "content:read")],
            )
            .await;
        assert_eq!(res.status(), 422, "{name}");
        let html = res.text().await.unwrap();
        assert!(
            html.contains("<p class=\"field-error\" id=\"name-error\">"),
            "{html}"
        );
        let res = call(
            &app,
            reqwest::Method::POST,
            "/api/v1/roles",
            Some(serde_json::json!({"name": name})),
        )
        .await;
        assert_eq!(res.status(), 422, "{name} through the API");
    }
    // Dots within a name stay valid.
    let res = c.post("/console/roles/new", &[("name", "a..b")]).await;
    assert_eq!(res.status(), 303);
}

/// The session ids offered on `id`'s page to `c`.
async fn offered_sessions(c: &mut Console, id: &str) -> Vec<String> {
    let (_, html) = c.page(&format!("/console/users/{id}")).await;
    let marker = format!("href=\"/console/users/{id}/sessions/");
    html.split(&marker)
        .skip(1)
        .map(|s| s.split('/').next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_demotion_takes_effect_at_once_and_sessions_stay_with_their_user() {
    let app = spawn_app().await;
    create_user(&app, ADMIN, ALL).await;
    let ops = create_user(&app, "ops@example.com", &["users:manage"]).await;
    let a = create_user(&app, "a@example.com", &[]).await;
    let b = create_user(&app, "b@example.com", &[]).await;
    let _a = Console::sign_in(&app, "a@example.com").await;
    let mut o = Console::sign_in(&app, "ops@example.com").await;
    let a_sid = offered_sessions(&mut o, &a).await;
    assert_eq!(a_sid.len(), 1);
    // A's session named under B: not found, on the page and the post.
    let path = format!("/console/users/{b}/sessions/{}/end", a_sid[0]);
    assert_eq!(o.page(&path).await.0, 404);
    assert_eq!(o.post(&path, &[]).await.status(), 404);
    assert_eq!(offered_sessions(&mut o, &a).await, a_sid, "still alive");

    // Ops loses users:manage: the next page and post are refused at once.
    let mut c = Console::sign_in(&app, ADMIN).await;
    let res = c
        .post(
            &format!("/console/users/{ops}"),
            &[("email", "ops@example.com"), ("name", "")],
        )
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(o.page("/console/users").await.0, 403);
    let res = o.post(&format!("/console/users/{a}/disable"), &[]).await;
    assert_eq!(res.status(), 403);
    let (_, html) = o.page("/console").await;
    assert!(!html.contains("href=\"/console/users\""), "not offered");
}
