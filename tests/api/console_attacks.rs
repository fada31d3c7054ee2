//! A hostile look at the console's sign-in, session and request-safety
//! layer (docs/api.md, "The console", "People"): return paths that break the redirect, forged
//! posts of every shape, powers that must follow the person's grants at
//! once, sessions ended elsewhere, headers on every answer, markup in
//! names, and formulas in the audit export.

use reqwest::Method;
use serde_json::{Value, json};

use crate::console::Console;
use crate::helpers::{TestApp, call, ok, spawn_app};
use crate::people::{Browser, PASSWORD, code_for, create_user, redeem, sign_in};

fn location(res: &reqwest::Response) -> String {
    let v = res
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("a redirect, got {}", res.status()))
        .as_bytes();
    // Lossy: a Location that is not ASCII must fail the assertions, not here.
    String::from_utf8_lossy(v).into_owned()
}

/// Signs in from `/console/login?return_to=…` (given already encoded);
/// returns the browser and the callback's answer.
async fn sign_in_returning_to(
    app: &TestApp,
    email: &str,
    return_to: &str,
) -> (Browser, reqwest::Response) {
    let mut b = Browser::new(app);
    let res = b
        .get(&format!("/console/login?return_to={return_to}"))
        .await;
    assert_eq!(res.status(), 303);
    let authorize = location(&res);
    let res = sign_in(&mut b, app, &authorize, email, PASSWORD).await;
    assert_eq!(res.status(), 303);
    let callback = location(&res);
    let res = b.get(&callback).await;
    (b, res)
}

#[tokio::test]
async fn a_return_path_outside_plain_ascii_never_breaks_the_sign_in() {
    let app = spawn_app().await;
    create_user(&app, "ops@example.com", &["api_keys:read"]).await;
    for back in [
        "/console/%C3%A9t%C3%A9",
        "/console/%E2%80%AE",
        "/console/%EF%BC%8F%EF%BC%8Fevil.example",
        "/console?q=%F0%9F%92%A5",
    ] {
        let (_, res) = sign_in_returning_to(&app, "ops@example.com", back).await;
        assert_eq!(res.status(), 303, "{back}: {}", res.text().await.unwrap());
        let to = location(&res);
        assert!(
            to.starts_with("/console") && !to.starts_with("//") && to.is_ascii(),
            "{back} → {to}"
        );
    }
    // Encoded slashes and dots stay on this host, as paths.
    for back in [
        "/console/%2F%2Fevil.example",
        "/console/..%2F%2Fevil.example",
        "%2F%2Fevil.example",
        "/console/%5C%5Cevil.example",
        "/console/../oauth/logout",
        "/console/%2e%2e/api/v1/me",
        "/console/.%2E/oauth/authorize",
    ] {
        let (_, res) = sign_in_returning_to(&app, "ops@example.com", back).await;
        assert_eq!(res.status(), 303, "{back}");
        let to = location(&res);
        assert!(
            to.starts_with("/console")
                && !to.contains("//")
                && !to.contains('\\')
                && !to.contains("/.")
                && !to.to_ascii_lowercase().contains("/%2e"),
            "{back} → {to}"
        );
    }
}

#[tokio::test]
async fn a_promoted_person_may_use_the_new_powers_at_once() {
    let app = spawn_app().await;
    let id = create_user(&app, "ops@example.com", &["api_keys:read"]).await;
    let mut c = Console::sign_in(&app, "ops@example.com").await;
    assert_eq!(c.page("/console/audit").await.0, 403);
    ok(
        call(
            &app,
            Method::PATCH,
            &format!("/api/v1/users/{id}"),
            Some(json!({"permissions": ["api_keys:read", "audit:read"]})),
        )
        .await,
        200,
    )
    .await;
    let (status, html) = c.page("/console/audit").await;
    assert_eq!(status, 200, "granted a moment ago: {html}");
    let (_, home) = c.page("/console").await;
    assert!(home.contains("href=\"/console/audit\""), "offered now");
}

#[tokio::test]
async fn a_demoted_or_disabled_person_loses_the_console_at_once() {
    let app = spawn_app().await;
    let id = create_user(&app, "ops@example.com", &["audit:read"]).await;
    let mut c = Console::sign_in(&app, "ops@example.com").await;
    assert_eq!(c.page("/console/audit").await.0, 200);
    ok(
        call(
            &app,
            Method::PATCH,
            &format!("/api/v1/users/{id}"),
            Some(json!({"permissions": []})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(c.page("/console/audit").await.0, 403, "demoted");
    let (_, home) = c.page("/console").await;
    assert!(!home.contains("href=\"/console/audit\""));
    let res = c.b.get("/console/audit/export?format=csv").await;
    assert_eq!(res.status(), 403);

    ok(
        call(
            &app,
            Method::PATCH,
            &format!("/api/v1/users/{id}"),
            Some(json!({"status": "disabled"})),
        )
        .await,
        200,
    )
    .await;
    let res = c.b.get("/console").await;
    assert_eq!(res.status(), 303, "disabled: no console");
    assert!(location(&res).starts_with("/console/login"));
    let res = c.post("/console/logout", &[]).await;
    assert_eq!(res.status(), 303);
    assert!(location(&res).starts_with("/console/login"));
}

#[tokio::test]
async fn a_session_ended_through_the_api_stops_the_console_at_once() {
    let app = spawn_app().await;
    create_user(&app, "ops@example.com", &["audit:read"]).await;
    let mut c = Console::sign_in(&app, "ops@example.com").await;
    assert_eq!(c.page("/console/audit").await.0, 200);
    // The same person, from the command line, ends the console's session.
    let mut cli = Browser::new(&app);
    let code = code_for(&mut cli, &app, "ops@example.com", "openid").await;
    let tokens: Value = redeem(&app, &code, Some(crate::people::VERIFIER))
        .await
        .json()
        .await
        .unwrap();
    let token = tokens["access_token"].as_str().unwrap().to_owned();
    let list: Value = app
        .authed(Method::GET, "/api/v1/me/sessions", &token)
        .await
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sessions = list["data"].as_array().or(list.as_array()).unwrap().clone();
    let console_sid = sessions
        .iter()
        .find(|s| s["clientId"] == "tessera-console")
        .unwrap_or_else(|| panic!("{list}"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .authed(
            Method::DELETE,
            &format!("/api/v1/me/sessions/{console_sid}"),
            &token,
        )
        .await
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let res = c.b.get("/console/audit").await;
    assert_eq!(res.status(), 303, "ended: off to sign in");
    let res = c.post("/console/logout", &[]).await;
    assert_eq!(res.status(), 303);
    assert!(location(&res).starts_with("/console/login"));
}

#[tokio::test]
async fn forged_posts_of_every_shape_are_refused_and_never_act() {
    let app = spawn_app().await;
    create_user(&app, "ops@example.com", &["api_keys:read"]).await;
    let mut c = Console::sign_in(&app, "ops@example.com").await;
    let ours = app.url("");
    let port = ours.rsplit(':').next().unwrap().trim_end_matches('/');
    let csrf = c.csrf.clone();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = format!("tessera_session={}", c.b.cookie("tessera_session").unwrap());
    let form = format!("csrf={csrf}");
    let lookalikes = [
        "null".to_owned(),
        format!("http://127.0.0.1:{}", port.parse::<u16>().unwrap() + 1),
        format!("https://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}.evil.example"),
        format!("http://127.0.0.1:{port}/"),
        format!("HTTP://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        format!("{ours}, http://evil.example"),
    ];
    for origin in &lookalikes {
        let res = http
            .post(app.url("/console/logout"))
            .header("cookie", &cookie)
            .header("origin", origin)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "origin {origin}");
    }
    // No Origin: the Referer decides, and a foreign or absent one fails.
    for referer in [
        None,
        Some("http://evil.example/console".to_owned()),
        Some(format!("http://127.0.0.1:{port}@evil.example/")),
        Some("not a url".to_owned()),
    ] {
        let mut req = http
            .post(app.url("/console/logout"))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.clone());
        if let Some(r) = &referer {
            req = req.header("referer", r);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 403, "referer {referer:?}");
    }
    // Bodies that are not the form: never read as one, never a 500.
    let bodies: Vec<(&str, String)> = vec![
        ("application/json", format!("{{\"csrf\":\"{csrf}\"}}")),
        (
            "multipart/form-data; boundary=XX",
            format!(
                "--XX\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n--XX--\r\n"
            ),
        ),
        ("text/plain", form.clone()),
        (
            "application/x-www-form-urlencoded",
            format!("csrf={csrf}&csrf={csrf}"),
        ),
        (
            "application/x-www-form-urlencoded",
            format!("csrf={csrf}&pad={}", "a".repeat(4 << 20)),
        ),
        (
            "application/x-www-form-urlencoded",
            "csrf=%ZZ%00&\u{0}=".to_owned(),
        ),
    ];
    for (kind, body) in bodies {
        let res = http
            .post(app.url("/console/logout"))
            .header("cookie", &cookie)
            .header("origin", &ours)
            .header("content-type", kind)
            .body(body)
            .send()
            .await;
        let Ok(res) = res else {
            continue; // the server may close on a body it will not read
        };
        let s = res.status().as_u16();
        assert!((400..500).contains(&s), "{kind}: {s}");
    }
    // A token from another person's session does not fit this one.
    create_user(&app, "other@example.com", &["api_keys:read"]).await;
    let other = Console::sign_in(&app, "other@example.com").await;
    let res = c
        .post_raw("/console/logout", &[("csrf", &other.csrf)], Some(&ours))
        .await;
    assert_eq!(res.status(), 403);
    // Still signed in after all of it.
    assert_eq!(c.page("/console").await.0, 200);
    // Signed out, then in again: the old token no longer fits.
    assert_eq!(c.post("/console/logout", &[]).await.status(), 303);
    let mut again = Console::sign_in(&app, "ops@example.com").await;
    assert_ne!(again.csrf, csrf);
    let res = again
        .post_raw("/console/logout", &[("csrf", &csrf)], Some(&ours))
        .await;
    assert_eq!(res.status(), 403);
}

fn assert_console_headers(what: &str, res: &reqwest::Response) {
    let h = res.headers();
    let csp = h
        .get("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no CSP"))
        .to_str()
        .unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert_eq!(
        h.get("x-frame-options").map(|v| v.as_bytes()),
        Some(&b"DENY"[..]),
        "{what}"
    );
    assert_eq!(
        h.get("cache-control").map(|v| v.as_bytes()),
        Some(&b"no-store"[..]),
        "{what}"
    );
    assert!(h.get("x-content-type-options").is_some(), "{what}");
}

#[tokio::test]
async fn every_console_answer_carries_the_console_headers() {
    let app = spawn_app().await;
    create_user(&app, "ops@example.com", &["audit:read"]).await;
    let mut anon = Browser::new(&app);
    let res = anon.get("/console/audit").await;
    assert_eq!(res.status(), 303);
    assert_console_headers("sign-in redirect", &res);
    let res = anon.get("/console/login").await;
    assert_console_headers("login redirect", &res);
    let res = anon.get("/console/callback?code=a&state=b").await;
    assert_console_headers("refused callback", &res);
    let res = anon.get("/console/signed-out").await;
    assert_console_headers("signed out", &res);

    let mut c = Console::sign_in(&app, "ops@example.com").await;
    for path in [
        "/console",
        "/console/keys",
        "/console/idps",
        "/console/audit?since=nonsense",
        "/console/audit/export?format=csv",
        "/console/audit/export?format=json",
        "/console/audit/export?format=xml",
        "/console/no-such-page",
        "/console/logout",
    ] {
        let res = c.b.get(path).await;
        assert_console_headers(path, &res);
    }
    let res = c.post("/console/audit", &[]).await;
    assert_eq!(res.status(), 405);
    assert_console_headers("405", &res);
    let res = c.post_raw("/console/logout", &[], None).await;
    assert_eq!(res.status(), 403);
    assert_console_headers("forged", &res);
    let res = c.post("/console/logout", &[]).await;
    assert_eq!(res.status(), 303);
    assert_console_headers("after logout", &res);
}

#[tokio::test]
async fn markup_in_names_and_emails_is_text_and_tokens_never_show() {
    let app = spawn_app().await;
    let v = ok(
        call(
            &app,
            Method::POST,
            "/api/v1/users",
            Some(json!({
                "email": "ops@example.com",
                "name": "<script>alert(1)</script>\"'&",
                "permissions": ["audit:read", "users:manage"],
                "password": PASSWORD,
            })),
        )
        .await,
        201,
    )
    .await;
    assert!(v["id"].is_string());
    let mut c = Console::sign_in(&app, "ops@example.com").await;
    // A failed sign-in whose email is markup and a formula.
    let mut b = Browser::new(&app);
    let res = b.get("/console/login").await;
    let authorize = location(&res);
    let evil = "=HYPERLINK(\"http://evil.example\")<b>x</b>@example.com";
    let res = sign_in(&mut b, &app, &authorize, evil, "wrong password 123").await;
    assert_eq!(res.status(), 401);
    for path in [
        "/console",
        "/console/audit",
        "/console/idps",
        "/console/keys",
    ] {
        let (status, html) = c.page(path).await;
        assert_eq!(status, 200, "{path}");
        assert!(!html.contains("<script>alert"), "{path}");
        assert!(!html.contains("<b>x</b>"), "{path}");
        assert!(!html.contains("eyJ"), "{path}: a token in the page");
    }
    let res = c.b.get("/console/audit/export?format=csv").await;
    assert_eq!(res.status(), 200);
    let disposition = res.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.starts_with("attachment; filename=\"tessera-audit-"));
    let csv = res.text().await.unwrap();
    assert!(!csv.contains("eyJ"));
    for line in csv.lines() {
        for cell in line.split(',') {
            let cell = cell.trim_start_matches('"');
            assert!(
                !cell.starts_with(['=', '+', '-', '@']),
                "a formula cell: {line}"
            );
        }
    }
    // The failure is in the export, without what was typed: an email that
    // names no account may be a password typed into the wrong field.
    assert!(
        csv.contains("signin.failed") && csv.contains("unknown"),
        "{csv}"
    );
    assert!(!csv.contains("HYPERLINK"), "{csv}");
}

#[tokio::test]
async fn hostile_audit_queries_are_refused_plainly_never_a_500() {
    let app = spawn_app().await;
    create_user(&app, "auditor@example.com", &["audit:read"]).await;
    let mut c = Console::sign_in(&app, "auditor@example.com").await;
    let long = "a".repeat(5000);
    for path in [
        "/console/audit?cursor=garbage".to_owned(),
        "/console/audit?cursor=%00%FF".to_owned(),
        "/console/audit/export?format=csv&cursor=garbage".to_owned(),
        "/console/audit/export?format=json&since=%2B275760-09-13T00:00:00Z".to_owned(),
        "/console/audit?since=9999-12-31T23:59&until=0001-01-01T00:00".to_owned(),
        "/console/audit/export?format=csv&since=2026-01-01T00:00&until=2020-01-01T00:00".to_owned(),
        format!("/console/audit?actor={long}"),
        format!("/console/audit/export?format=csv&target={long}"),
        "/console/audit?action=%3Cscript%3E&format=csv%0d%0aX-Evil:%201".to_owned(),
        "/console/audit/export?format=csv%0d%0aX-Evil:%201".to_owned(),
        "/console/audit/export?format=CSV".to_owned(),
        "/console/assets/..%2F..%2Fetc%2Fpasswd".to_owned(),
    ] {
        let res = c.b.get(&path).await;
        let s = res.status().as_u16();
        assert!(s < 500, "{path}: {s}");
        assert!(res.headers().get("x-evil").is_none(), "{path}");
        let html = res.text().await.unwrap();
        assert!(!html.contains("<script>"), "{path}");
    }
}

#[tokio::test]
async fn a_password_reset_or_role_taken_away_reaches_the_console_at_once() {
    let app = spawn_app().await;
    ok(
        call(
            &app,
            Method::POST,
            "/api/v1/roles",
            Some(json!({"name": "auditors", "permissions": ["audit:read"]})),
        )
        .await,
        201,
    )
    .await;
    let id = create_user(&app, "ops@example.com", &[]).await;
    ok(
        call(
            &app,
            Method::PATCH,
            &format!("/api/v1/users/{id}"),
            Some(json!({"roles": ["auditors"]})),
        )
        .await,
        200,
    )
    .await;
    let mut c = Console::sign_in(&app, "ops@example.com").await;
    assert_eq!(c.page("/console/audit").await.0, 200);
    // The role loses the permission: the console follows at once.
    ok(
        call(
            &app,
            Method::PATCH,
            "/api/v1/roles/auditors",
            Some(json!({"permissions": ["api_keys:read"]})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(c.page("/console/audit").await.0, 403, "role narrowed");
    // And gains it back: at once too.
    ok(
        call(
            &app,
            Method::PATCH,
            "/api/v1/roles/auditors",
            Some(json!({"permissions": ["audit:read"]})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(c.page("/console/audit").await.0, 200, "role widened");
    // A password reset by an administrator ends the console's session.
    ok(
        call(
            &app,
            Method::PATCH,
            &format!("/api/v1/users/{id}"),
            Some(json!({"password": "a brand new password"})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(c.b.get("/console").await.status(), 303);
}

#[tokio::test]
async fn a_replayed_callback_neither_signs_in_nor_signs_out() {
    let app = spawn_app().await;
    create_user(&app, "ops@example.com", &["audit:read"]).await;
    let mut b = Browser::new(&app);
    let res = b.get("/console/login").await;
    let authorize = location(&res);
    let res = sign_in(&mut b, &app, &authorize, "ops@example.com", PASSWORD).await;
    let callback = location(&res);
    let res = b.get(&callback).await;
    assert_eq!(res.status(), 303);
    // Reloaded: the sign-in it belonged to is over; the session lives on.
    let res = b.get(&callback).await;
    assert_eq!(res.status(), 400);
    assert_eq!(b.get("/console/audit").await.status(), 200);
    // In another browser (no pending sign-in, no session): refused.
    let mut other = Browser::new(&app);
    assert_eq!(other.get(&callback).await.status(), 400);
    assert_eq!(other.get("/console").await.status(), 303);
}

#[tokio::test]
async fn a_callback_loaded_twice_at_once_does_not_end_the_session() {
    let app = spawn_app().await;
    create_user(&app, "ops@example.com", &["audit:read"]).await;
    let mut b = Browser::new(&app);
    let res = b.get("/console/login").await;
    let authorize = location(&res);
    let res = sign_in(&mut b, &app, &authorize, "ops@example.com", PASSWORD).await;
    let callback = location(&res);
    let cookie = format!(
        "tessera_session={}; tessera_console_signin={}",
        b.cookie("tessera_session").unwrap(),
        b.cookie("tessera_console_signin").unwrap()
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = if callback.starts_with("http") {
        callback.clone()
    } else {
        app.url(&callback)
    };
    // A double click, a restored tab: the same answer twice at once.
    let (a, z) = tokio::join!(
        http.get(&url).header("cookie", &cookie).send(),
        http.get(&url).header("cookie", &cookie).send()
    );
    let statuses = [a.unwrap().status().as_u16(), z.unwrap().status().as_u16()];
    assert!(statuses.contains(&303), "{statuses:?}");
    assert_eq!(
        b.get("/console/audit").await.status(),
        200,
        "the person is still signed in after {statuses:?}"
    );
}
