//! Hostile probes of the console's Applications section (issue 12): filter
//! values the form never offers, editing an expired key, and inputs that
//! must never give a 500.

use serde_json::json;

use crate::console::Console;
use crate::helpers::{call, ok, spawn_app};
use crate::people::create_user;

const MANAGER: &[&str] = &["api_keys:manage", "content:*"];

#[tokio::test]
async fn a_filter_value_the_form_does_not_offer_is_a_clear_422_not_a_silent_everything() {
    let app = spawn_app().await;
    create_user(&app, "ops@example.com", MANAGER).await;
    let mut c = Console::sign_in(&app, "ops@example.com").await;
    for (field, qs) in [
        ("status", "status=revokd"),
        ("environment", "environment=prod"),
        ("type", "type=SECRET"),
    ] {
        let (status, html) = c.page(&format!("/console/apps?{qs}")).await;
        assert_eq!(status, 422, "{qs}: {html}");
        assert!(
            html.contains(&format!(
                "id=\"f-{field}\" name=\"{field}\" aria-invalid=\"true\""
            )),
            "{qs}: the error sits on its field"
        );
        assert!(!html.contains("<td"), "{qs}: no unfiltered rows shown");
    }
}

#[tokio::test]
async fn an_expired_key_can_still_be_narrowed_without_being_revived() {
    let app = spawn_app().await;
    create_user(&app, "ops@example.com", MANAGER).await;
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(3))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let created = ok(
        call(
            &app,
            reqwest::Method::POST,
            "/api/v1/apps",
            Some(json!({"name": "old", "permissions": ["content:read", "content:write"], "expiresAt": soon})),
        )
        .await,
        201,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let owner = created["owner"].as_str().unwrap().to_owned();
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let mut c = Console::sign_in(&app, "ops@example.com").await;
    let (status, html) = c.page(&format!("/console/apps/{id}")).await;
    assert_eq!(status, 200);
    let at = html.find("id=\"expires_at\"").expect("the expiry field");
    let value = html[at..]
        .split("value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    assert!(!value.is_empty());
    // Take content:write away; everything else as the form shows it.
    let res = c
        .post(
            &format!("/console/apps/{id}"),
            &[
                ("name", "old"),
                ("description", ""),
                ("owner", &owner),
                ("permissions", "content:read"),
                ("expires_at", &value),
                ("token_ttl", ""),
            ],
        )
        .await;
    let st = res.status().as_u16();
    assert_eq!(st, 303, "{}", res.text().await.unwrap());
    let got = ok(
        call(
            &app,
            reqwest::Method::GET,
            &format!("/api/v1/apps/{id}"),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(got["permissions"], json!(["content:read"]));
    assert_eq!(got["status"], "expired", "still expired: {got}");
}

#[tokio::test]
async fn hostile_inputs_never_give_a_500() {
    let app = spawn_app().await;
    create_user(&app, "ops@example.com", MANAGER).await;
    let mut c = Console::sign_in(&app, "ops@example.com").await;
    let long = "a".repeat(20_000);
    let gets = [
        "/console/apps?q=%FF%FE%00".to_owned(),
        "/console/apps?q=.*(a|b)%5B".to_owned(),
        format!("/console/apps?q={long}"),
        "/console/apps?cursor=!!!".to_owned(),
        "/console/apps?cursor=AAAA".to_owned(),
        "/console/apps?cursor=%FF".to_owned(),
        "/console/apps?owner=%3Cscript%3E".to_owned(),
        "/console/apps?notice=%3Cb%3E".to_owned(),
        "/console/apps/confirm?action=delete&ids=%3Cb%3E&ids=..%2F..".to_owned(),
        "/console/apps/confirm?action=revoke".to_owned(),
        "/console/apps/%3Cb%3E".to_owned(),
        "/console/apps/app_nope/secret?ticket=x".to_owned(),
        format!("/console/apps/{long}/secret"),
    ];
    for g in &gets {
        let (status, html) = c.page(g).await;
        assert!(status < 500, "{g}: {status}");
        assert!(!html.contains("<script>") && !html.contains("<b>"), "{g}");
    }
    let bad_expiry = [
        "+275760-09-13T00:00",
        "99999-01-01T00:00",
        "2030-02-30T00:00",
        "2030-01-01T24:00",
    ];
    for e in bad_expiry {
        let res = c
            .post(
                "/console/apps",
                &[
                    ("name", "x"),
                    ("type", "secret"),
                    ("environment", "live"),
                    ("expires_at", e),
                ],
            )
            .await;
        assert!(res.status().as_u16() < 500, "{e}: {}", res.status());
    }
    for grace in ["-1", "18446744073709551616", "604801", "1e3"] {
        let res = c
            .post("/console/apps/app_nope/rotate", &[("grace", grace)])
            .await;
        assert!(res.status().as_u16() < 500, "{grace}: {}", res.status());
    }
    for ttl in ["18446744073709551616", "-5", "0"] {
        let res = c
            .post(
                "/console/apps",
                &[
                    ("name", "x"),
                    ("type", "secret"),
                    ("environment", "live"),
                    ("token_ttl", ttl),
                ],
            )
            .await;
        assert_eq!(res.status().as_u16(), 422, "{ttl}");
    }
    for (field, value) in [
        ("access_rules", "@"),
        ("access_rules", "/x @"),
        ("access_rules", "/x"),
        ("access_rules", "/x/../y content:read"),
        ("access_rules", "/x content:read @nope @"),
        ("allowed_ips", "10.0.0.0/33"),
        ("allowed_ips", "::ffff:1.2.3.4/200"),
        ("allowed_ips", "1.2.3.4\n\u{0}"),
        ("roles_text", "@ \u{202e} <b>"),
        ("extra_permissions", "content:* *:* * :"),
    ] {
        let res = c
            .post(
                "/console/apps",
                &[
                    ("name", "x"),
                    ("type", "public"),
                    ("environment", "live"),
                    (field, value),
                ],
            )
            .await;
        let st = res.status().as_u16();
        let html = res.text().await.unwrap();
        assert!((400..500).contains(&st), "{field}={value:?}: {st}");
        assert!(!html.contains("<b>"), "{field}: escaped");
    }
    for name in ["\u{0}", "<b>x</b>\u{7}"] {
        let res = c
            .post(
                "/console/apps",
                &[("name", name), ("type", "secret"), ("environment", "live")],
            )
            .await;
        let st = res.status().as_u16();
        assert_eq!(st, 422, "{name:?}");
        assert!(!res.text().await.unwrap().contains("<b>"));
    }
    let perms: Vec<(&str, &str)> = std::iter::repeat_n(("permissions", "content:read"), 5_000)
        .chain([("name", "x"), ("type", "secret"), ("environment", "live")])
        .collect();
    let res = c.post("/console/apps", &perms).await;
    assert!(res.status().as_u16() < 500, "{}", res.status());
    let many: Vec<(&str, &str)> = std::iter::repeat_n(("ids", "app_x"), 10_000)
        .chain([("action", "delete")])
        .collect();
    let res = c.post("/console/apps/bulk", &many).await;
    assert!(res.status().as_u16() < 500, "{}", res.status());
}

/// A manager holding less than an application reaches it through no
/// console control: edit, owner change, rotate, revoke, delete, bulk.
#[tokio::test]
async fn a_manager_with_less_than_an_app_holds_changes_nothing_of_it() {
    let app = spawn_app().await;
    create_user(
        &app,
        "small@example.com",
        &["api_keys:manage", "content:read"],
    )
    .await;
    let big = create_user(&app, "big@example.com", &["content:*"]).await;
    let created = ok(
        call(
            &app,
            reqwest::Method::POST,
            "/api/v1/apps",
            Some(json!({"name": "big", "permissions": ["content:write"], "owner": big})),
        )
        .await,
        201,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let mut c = Console::sign_in(&app, "small@example.com").await;
    let edit = c
        .post(
            &format!("/console/apps/{id}"),
            &[
                ("name", "mine now"),
                ("owner", &big),
                ("permissions", "content:write"),
            ],
        )
        .await;
    assert_eq!(edit.status(), 403);
    let rotate = c
        .post(&format!("/console/apps/{id}/rotate"), &[("grace", "0")])
        .await;
    assert_eq!(rotate.status(), 403, "no secret of a key holding more");
    for action in ["revoke", "delete"] {
        let res = c.post(&format!("/console/apps/{id}/{action}"), &[]).await;
        assert_eq!(res.status(), 403, "{action}");
        let res = c
            .post(
                "/console/apps/bulk",
                &[("action", action), ("ids", &id), ("ids", &id)],
            )
            .await;
        assert_eq!(res.status(), 303);
        let to = res.headers()["location"].to_str().unwrap().to_owned();
        let (_, html) = c.page(&to).await;
        assert_eq!(
            html.matches("not done (403)").count(),
            1,
            "{action}: once, refused"
        );
        // The outcome is shown once.
        let (_, again) = c.page(&to).await;
        assert!(!again.contains("not done (403)"));
    }
    // A public key asking for a non-public grant, by wildcard text.
    let res = c
        .post(
            "/console/apps",
            &[
                ("name", "pub"),
                ("type", "public"),
                ("environment", "live"),
                ("extra_permissions", "content:*"),
            ],
        )
        .await;
    assert!(
        matches!(res.status().as_u16(), 403 | 422),
        "{}",
        res.status()
    );
    let got = ok(
        call(
            &app,
            reqwest::Method::GET,
            &format!("/api/v1/apps/{id}"),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(got["name"], "big");
    assert!(got["revokedAt"].is_null());
    let list = ok(
        call(&app, reqwest::Method::GET, "/api/v1/apps?q=pub", None).await,
        200,
    )
    .await;
    assert_eq!(list["data"], json!([]));
}

/// Eight loads of the secret page at once (same session): exactly one shows
/// the secret, never cached, never sent on as a Referer to elsewhere.
#[tokio::test]
async fn a_secret_loaded_eight_times_at_once_is_shown_exactly_once() {
    let app = spawn_app().await;
    create_user(&app, "ops@example.com", MANAGER).await;
    let mut c = Console::sign_in(&app, "ops@example.com").await;
    let res = c
        .post(
            "/console/apps",
            &[
                ("name", "raced"),
                ("type", "secret"),
                ("environment", "live"),
                ("permissions", "content:read"),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    let to = res.headers()["location"].to_str().unwrap().to_owned();
    let cookie = format!("tessera_session={}", c.b.cookie("tessera_session").unwrap());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut loads = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let req = http.get(app.url(&to)).header("cookie", cookie.clone());
        loads.spawn(async move {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 200);
            assert_eq!(res.headers()["cache-control"], "no-store");
            assert_eq!(res.headers()["referrer-policy"], "same-origin");
            res.text().await.unwrap()
        });
    }
    let pages = loads.join_all().await;
    let shown = pages
        .iter()
        .filter(|p| p.contains("id=\"secret\" value=\""))
        .count();
    assert_eq!(shown, 1);
}
