//! The console's Applications section over plain HTTP (docs/api.md, "The console"): create
//! with the secret shown once, field errors, rotate, revoke, edit, bulk
//! actions behind a confirmation, search, filters and paging, and the
//! permission matrix of every route (what is not held is not offered, and
//! a forged post with a valid CSRF token gets the API's 403).

use serde_json::json;

use crate::console::Console;
use crate::helpers::{TestApp, call, ok, spawn_app};
use crate::people::create_user;

/// A person who may manage applications and holds what they grant.
const MANAGER: &[&str] = &["api_keys:manage", "content:*"];

fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .unwrap_or_else(|| panic!("a redirect, got {}", res.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// The value of the readonly secret field, when the page shows one.
fn secret_of(html: &str) -> Option<String> {
    let at = html.find("id=\"secret\" value=\"")?;
    Some(html[at + 19..].split('"').next()?.to_owned())
}

/// The id in `/console/apps/{id}/secret?ticket=…`.
fn id_of(secret_location: &str) -> String {
    secret_location
        .strip_prefix("/console/apps/")
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("not a secret page: {secret_location}"))
        .to_owned()
}

/// Creates an application through the console form; returns (id, secret).
async fn create_in_console(c: &mut Console, name: &str, perms: &[&str]) -> (String, String) {
    let mut fields = vec![
        ("name", name),
        ("description", "made in the console"),
        ("type", "secret"),
        ("environment", "live"),
    ];
    fields.extend(perms.iter().map(|p| ("permissions", *p)));
    let res = c.post("/console/apps", &fields).await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let to = location(&res);
    assert!(to.contains("/secret?ticket="), "{to}");
    let id = id_of(&to);
    let (status, html) = c.page(&to).await;
    assert_eq!(status, 200);
    (id, secret_of(&html).expect("the secret, once"))
}

async fn api_get(app: &TestApp, path: &str) -> reqwest::Response {
    call(app, reqwest::Method::GET, path, None).await
}

#[tokio::test]
async fn a_created_secret_is_shown_once_to_its_session_and_exchanges() {
    let app = spawn_app().await;
    create_user(&app, "ops@example.com", MANAGER).await;
    let mut c = Console::sign_in(&app, "ops@example.com").await;
    let mut other = Console::sign_in(&app, "ops@example.com").await;

    let (status, form) = c.page("/console/apps/new").await;
    assert_eq!(status, 200);
    for label in [
        "Name",
        "Description",
        "Type",
        "Environment",
        "Allowed IPs",
        "Expiry (UTC)",
        "Token lifetime (seconds)",
        "Access rules",
        "Create application",
    ] {
        assert!(form.contains(label), "{label} on the form");
    }
    assert!(
        form.contains("Read content"),
        "catalogue descriptions shown"
    );

    let res = c
        .post(
            "/console/apps",
            &[
                ("name", "billing"),
                ("description", "Billing service"),
                ("type", "secret"),
                ("environment", "test"),
                ("permissions", "content:read"),
                ("extra_permissions", "content:*"),
                ("access_rules", "cluster:c1/project:* content:write"),
                ("allowed_ips", "10.0.0.0/8\n127.0.0.1"),
                ("expires_at", "2099-01-31T18:00"),
                ("token_ttl", "600"),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    let to = location(&res);
    assert!(!to.contains("tsr_"), "the secret is never in a URL: {to}");
    let id = id_of(&to);

    // Another session of the same person cannot take it, nor spoil it.
    let (status, html) = other.page(&to).await;
    assert_eq!(status, 200);
    assert!(secret_of(&html).is_none());

    let res = c.b.get(&to).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let html = res.text().await.unwrap();
    let secret = secret_of(&html).expect("the secret is shown");
    assert!(secret.starts_with("tsr_sk_test_"), "{secret}");
    assert!(html.contains("will not be shown again"));
    assert!(html.contains("data-copy=\"secret\""));

    let (status, again) = c.page(&to).await;
    assert_eq!(status, 200);
    assert!(secret_of(&again).is_none(), "a reload shows it no more");
    assert!(!again.contains(&secret));
    assert!(again.contains("shown once") && again.contains("rotate"));

    // It is what the form said, and it exchanges.
    let v = ok(api_get(&app, &format!("/api/v1/apps/{id}")).await, 200).await;
    assert_eq!(v["name"], "billing");
    assert_eq!(v["environment"], "test");
    assert_eq!(v["permissions"], json!(["content:*", "content:read"]));
    assert_eq!(v["accessRules"][0]["scope"], "cluster:c1/project:*");
    assert_eq!(v["allowedIps"], json!(["10.0.0.0/8", "127.0.0.1/32"]));
    assert_eq!(v["expiresAt"], "2099-01-31T18:00:00Z");
    assert_eq!(v["tokenTtl"], 600);
    assert_eq!(app.exchange(None, &secret).await.status(), 200);

    // The details page shows every field, the effective permissions and usage.
    let (status, details) = c.page(&format!("/console/apps/{id}")).await;
    assert_eq!(status, 200);
    for s in [
        "Billing service",
        "cluster:c1/project:*",
        "10.0.0.0/8",
        "2099-01-31 18:00 UTC",
        "600 seconds",
        "Effective permissions",
        "Last used",
        "Uses",
    ] {
        assert!(details.contains(s), "{s} on the details page");
    }
}

#[tokio::test]
async fn invalid_fields_are_shown_beside_them_with_the_input_kept_and_nothing_created() {
    let app = spawn_app().await;
    create_user(&app, "ops@example.com", MANAGER).await;
    let mut c = Console::sign_in(&app, "ops@example.com").await;
    let res = c
        .post(
            "/console/apps",
            &[
                ("name", "kept-name"),
                ("description", "kept <b>description</b>"),
                ("type", "secret"),
                ("environment", "live"),
                ("extra_permissions", "nothing:here"),
                ("allowed_ips", "10.0.0.0/8\nnot-an-ip"),
                ("token_ttl", "5"),
                ("expires_at", "2001-01-01T00:00"),
                ("access_rules", "bad scope here"),
            ],
        )
        .await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    for field in [
        "extra_permissions",
        "allowed_ips",
        "token_ttl",
        "expires_at",
        "access_rules",
    ] {
        assert!(
            html.contains(&format!("<p class=\"field-error\" id=\"{field}-error\">")),
            "an error beside {field}"
        );
    }
    assert!(
        html.contains("nothing:here"),
        "the unknown permission is named"
    );
    assert!(html.contains("aria-invalid=\"true\""));
    assert!(html.contains("value=\"kept-name\""), "the name is kept");
    assert!(
        html.contains("kept &#60;b&#62;description") || html.contains("kept &lt;b&gt;description"),
        "kept, escaped: {html}"
    );
    assert!(html.contains("not-an-ip"), "the IPs are kept");
    assert!(html.contains("role=\"alert\""));
    let list = ok(api_get(&app, "/api/v1/apps?q=kept-name").await, 200).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0, "nothing created");

    // A name left empty is about the name.
    let res = c
        .post(
            "/console/apps",
            &[("name", " "), ("type", "secret"), ("environment", "live")],
        )
        .await;
    assert_eq!(res.status(), 422);
    assert!(res.text().await.unwrap().contains("id=\"name-error\""));
}

#[tokio::test]
async fn rotate_with_grace_keeps_both_secrets_and_revoke_refuses_it() {
    let app = spawn_app().await;
    create_user(&app, "ops@example.com", MANAGER).await;
    let mut c = Console::sign_in(&app, "ops@example.com").await;
    let (id, old) = create_in_console(&mut c, "rotating", &["content:read"]).await;

    let (_, details) = c.page(&format!("/console/apps/{id}")).await;
    for g in [
        "value=\"0\"",
        "value=\"3600\"",
        "value=\"86400\"",
        "value=\"604800\"",
    ] {
        assert!(details.contains(g), "grace choice {g}");
    }
    let res = c
        .post(&format!("/console/apps/{id}/rotate"), &[("grace", "3600")])
        .await;
    assert_eq!(res.status(), 303);
    let to = location(&res);
    let (_, html) = c.page(&to).await;
    let new = secret_of(&html).expect("the new secret, once");
    assert_ne!(new, old);
    assert!(secret_of(&c.page(&to).await.1).is_none());
    assert_eq!(app.exchange(None, &old).await.status(), 200, "in its grace");
    assert_eq!(app.exchange(None, &new).await.status(), 200);

    // Usage as the details page shows it: the count, the last use and the
    // hourly chart follow the exchanges (flushed about every second).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (_, details) = c.page(&format!("/console/apps/{id}")).await;
    assert!(details.contains("<dt>Uses</dt><dd>2</dd>"), "{details}");
    assert!(
        !details.contains("<dt>Last used</dt><dd>never"),
        "{details}"
    );
    assert!(
        details.contains("2 in total"),
        "the chart counts them: {details}"
    );

    // Grace "None": the replaced secret stops at once.
    let res = c
        .post(&format!("/console/apps/{id}/rotate"), &[("grace", "0")])
        .await;
    assert_eq!(res.status(), 303);
    let (_, html) = c.page(&location(&res)).await;
    let newest = secret_of(&html).expect("the newest secret, once");
    assert_eq!(app.exchange(None, &new).await.status(), 401, "no grace");
    assert_eq!(app.exchange(None, &newest).await.status(), 200);
    let new = newest;

    // Revoke asks first, on a page of its own.
    let (status, confirm) = c.page(&format!("/console/apps/{id}/revoke")).await;
    assert_eq!(status, 200);
    assert!(confirm.contains("Revoke rotating</button>"));
    let res = c.post(&format!("/console/apps/{id}/revoke"), &[]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), format!("/console/apps/{id}?done=revoked"));
    let (_, html) = c.page(&location(&res)).await;
    assert!(html.contains("was revoked") && html.contains("(revoked)"));
    assert!(
        !html.contains(">Rotate</button>"),
        "a revoked key is not rotated"
    );
    assert_eq!(app.exchange(None, &new).await.status(), 401);
    assert_eq!(app.exchange(None, &old).await.status(), 401);

    // A grace period the API refuses is a clear 422, not a rotation.
    let (id2, s2) = create_in_console(&mut c, "other", &["content:read"]).await;
    let res = c
        .post(
            &format!("/console/apps/{id2}/rotate"),
            &[("grace", "9999999")],
        )
        .await;
    assert_eq!(res.status(), 422);
    assert_eq!(app.exchange(None, &s2).await.status(), 200);
}

#[tokio::test]
async fn edit_owner_name_and_description_and_see_the_owner_bound() {
    let app = spawn_app().await;
    create_user(&app, "ops@example.com", MANAGER).await;
    let reader = create_user(&app, "reader@example.com", &["content:read"]).await;
    let mut c = Console::sign_in(&app, "ops@example.com").await;
    let (id, secret) =
        create_in_console(&mut c, "editable", &["content:read", "content:write"]).await;
    assert_eq!(app.exchange(None, &secret).await.status(), 200);

    let (_, page) = c.page(&format!("/console/apps/{id}")).await;
    assert!(
        !page.contains("not held by its owner"),
        "its owner holds both"
    );
    let details = format!("/console/apps/{id}");
    let res = c
        .post(
            &details,
            &[
                ("name", "renamed"),
                ("description", "new words"),
                ("owner", &reader),
                ("permissions", "content:read"),
                ("permissions", "content:write"),
            ],
        )
        .await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    assert_eq!(location(&res), format!("{details}?done=saved"));
    let v = ok(api_get(&app, &format!("/api/v1/apps/{id}")).await, 200).await;
    assert_eq!(
        (v["name"].as_str(), v["description"].as_str()),
        (Some("renamed"), Some("new words"))
    );
    assert_eq!(v["owner"], reader.as_str());
    assert_eq!(
        v["permissions"],
        json!(["content:read", "content:write"]),
        "untouched"
    );
    // The new owner holds less: the page says what is cut.
    let (_, page) = c.page(&format!("{details}?done=saved")).await;
    assert!(page.contains("Your changes were saved."));
    assert!(
        page.contains("cut: not held by its owner"),
        "content:write is cut"
    );

    // A bad owner is an error beside the owner field, nothing changed.
    let res = c
        .post(
            &details,
            &[
                ("name", "again"),
                ("owner", "usr_nobody"),
                ("permissions", "content:read"),
            ],
        )
        .await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains("id=\"owner-error\""), "{html}");
    assert!(html.contains("value=\"again\""));
    let v = ok(api_get(&app, &format!("/api/v1/apps/{id}")).await, 200).await;
    assert_eq!(v["name"], "renamed");
}

#[tokio::test]
async fn bulk_revoke_and_delete_ask_first_and_report_each_outcome() {
    let app = spawn_app().await;
    create_user(
        &app,
        "ops@example.com",
        &["api_keys:manage", "content:read"],
    )
    .await;
    let mut ids = Vec::new();
    for n in ["b-one", "b-two", "b-three"] {
        let (v, _) = app
            .create_app(json!({"name": n, "permissions": ["content:read"]}))
            .await;
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    // Beyond the person's reach: it holds content:write.
    let (v, strong_secret) = app
        .create_app(json!({"name": "b-strong", "permissions": ["content:write"]}))
        .await;
    let strong = v["id"].as_str().unwrap().to_owned();
    let mut c = Console::sign_in(&app, "ops@example.com").await;

    let (_, table) = c.page("/console/apps").await;
    assert!(table.contains("Revoke selected") && table.contains("Delete selected"));
    assert!(table.contains(&format!("name=\"ids\" value=\"{}\"", ids[0])));

    let confirm = format!(
        "/console/apps/confirm?action=delete&ids={}&ids={}&ids={strong}",
        ids[0], ids[1]
    );
    let (status, html) = c.page(&confirm).await;
    assert_eq!(status, 200);
    assert!(html.contains("Delete 3 applications</button>"));
    assert!(html.contains("b-one") && html.contains("b-two") && html.contains("b-strong"));
    // Nothing happened yet.
    assert_eq!(
        api_get(&app, &format!("/api/v1/apps/{}", ids[0]))
            .await
            .status(),
        200
    );

    let res = c
        .post(
            "/console/apps/bulk",
            &[
                ("action", "delete"),
                ("ids", &ids[0]),
                ("ids", &ids[1]),
                ("ids", &strong),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    let to = location(&res);
    assert!(to.starts_with("/console/apps?notice="), "{to}");
    let (_, html) = c.page(&to).await;
    assert!(html.contains("Delete selected: the outcome"));
    assert!(html.contains(&format!("b-one (<code>{}</code>): deleted", ids[0])));
    assert!(html.contains(&format!("b-strong (<code>{strong}</code>): not done (403)")));
    assert!(!c.page(&to).await.1.contains("the outcome"), "shown once");
    for (id, status) in [
        (&ids[0], 404),
        (&ids[1], 404),
        (&ids[2], 200),
        (&strong, 200),
    ] {
        assert_eq!(
            api_get(&app, &format!("/api/v1/apps/{id}")).await.status(),
            status
        );
    }
    assert_eq!(app.exchange(None, &strong_secret).await.status(), 200);

    // Bulk revoke the same way.
    let (status, html) = c
        .page(&format!(
            "/console/apps/confirm?action=revoke&ids={}",
            ids[2]
        ))
        .await;
    assert_eq!(status, 200);
    assert!(html.contains("Revoke 1 application</button>"));
    let res = c
        .post(
            "/console/apps/bulk",
            &[("action", "revoke"), ("ids", &ids[2])],
        )
        .await;
    let (_, html) = c.page(&location(&res)).await;
    assert!(html.contains(&format!("b-three (<code>{}</code>): revoked", ids[2])));
    let v = ok(
        api_get(&app, &format!("/api/v1/apps/{}", ids[2])).await,
        200,
    )
    .await;
    assert_eq!(v["status"], "revoked");

    // Nothing chosen: a clear refusal, nothing done.
    let (status, _) = c.page("/console/apps/confirm?action=delete").await;
    assert_eq!(status, 422);
}

/// The number of rows of the table.
fn rows(html: &str) -> usize {
    html.matches("<td><a id=\"name-").count()
}

/// The href of the "Next page" link, unescaped.
fn next_link(html: &str) -> Option<String> {
    let end = html.find("\" rel=\"next\">Next page")?;
    let start = html[..end].rfind("href=\"")? + 6;
    Some(
        html[start..end]
            .replace("&#38;", "&")
            .replace("&amp;", "&")
            .replace("&#x3d;", "=")
            .replace("&#61;", "="),
    )
}

#[tokio::test]
async fn search_filters_and_paging_over_120_applications() {
    let app = spawn_app().await;
    create_user(&app, "reader@example.com", &["api_keys:read"]).await;
    let admin = app.admin_token().await;
    let make = |i: usize| {
        let env = if i % 3 == 0 { "test" } else { "live" };
        let kind = if i % 4 == 0 { "public" } else { "secret" };
        let req = app
            .client
            .post(app.url("/api/v1/apps"))
            .bearer_auth(&admin)
            .json(&json!({"name": format!("Svc-{i:03}"), "environment": env, "type": kind, "permissions": ["content:read"]}));
        async move { req.send().await.unwrap().status().as_u16() }
    };
    for chunk in (0..120).collect::<Vec<_>>().chunks(8) {
        let got = futures_util::future::join_all(chunk.iter().map(|i| make(*i))).await;
        assert!(got.iter().all(|s| *s == 201), "{got:?}");
    }
    let mut c = Console::sign_in(&app, "reader@example.com").await;

    // Page size 50; the next page keeps the filters.
    let (status, html) = c.page("/console/apps?q=svc&environment=live").await;
    assert_eq!(status, 200);
    assert_eq!(rows(&html), 50);
    let next = next_link(&html).expect("a next page");
    assert!(
        next.contains("q=svc") && next.contains("environment=live"),
        "{next}"
    );
    let (_, page2) = c.page(&next).await;
    assert_eq!(rows(&page2), 30, "80 live ones");
    assert!(next_link(&page2).is_none());
    assert!(page2.contains("First page"));
    assert!(!page2.contains("Svc-000") && page2.contains("Svc-119"));

    // Search ignores case and looks at the name, the id and the prefix.
    let (_, html) = c.page("/console/apps?q=SVC-01").await;
    assert_eq!(rows(&html), 10, "Svc-010 … Svc-019");
    let (_, html) = c.page("/console/apps?q=svc-01&type=public").await;
    assert_eq!(rows(&html), 2, "Svc-012 and Svc-016");
    let (_, html) = c.page("/console/apps?environment=test&status=active").await;
    assert_eq!(rows(&html), 40);
    let (_, html) = c.page("/console/apps?status=revoked").await;
    assert_eq!(rows(&html), 0);
    assert!(html.contains("No application matches."));
    let (_, html) = c.page("/console/apps?q=tsr_pk").await;
    assert_eq!(rows(&html), 30, "prefixes of public keys");
    let list = ok(api_get(&app, "/api/v1/apps?q=svc-11&limit=200").await, 200).await;
    let some_id = list["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        10,
        "the API searches too"
    );
    let (_, html) = c
        .page(&format!("/console/apps?q={}", some_id.to_uppercase()))
        .await;
    assert_eq!(rows(&html), 1, "by id");
    let (_, html) = c.page("/console/apps?owner=gateway&q=svc-1").await;
    assert_eq!(rows(&html), 20, "Svc-100 … Svc-119");
    let (_, html) = c.page("/console/apps?owner=usr_else").await;
    assert_eq!(rows(&html), 0);

    // A search too long is refused, beside the field and by the API.
    let long = "x".repeat(101);
    let (status, html) = c.page(&format!("/console/apps?q={long}")).await;
    assert_eq!(status, 422);
    assert!(html.contains("id=\"q-error\""));
    assert_eq!(
        api_get(&app, &format!("/api/v1/apps?q={long}"))
            .await
            .status(),
        422
    );
}

/// What a route needs.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Needs {
    Read,
    Manage,
}

#[tokio::test]
async fn permission_matrix_read_only_is_not_offered_and_forged_posts_get_403() {
    let app = spawn_app().await;
    create_user(&app, "none@example.com", &["content:read"]).await;
    create_user(
        &app,
        "reader@example.com",
        &["api_keys:read", "content:read", "content:write"],
    )
    .await;
    create_user(&app, "ops@example.com", MANAGER).await;
    let (v, secret) = app
        .create_app(json!({"name": "target", "permissions": ["content:read"]}))
        .await;
    let id = v["id"].as_str().unwrap().to_owned();
    let mut none = Console::sign_in(&app, "none@example.com").await;
    let mut reader = Console::sign_in(&app, "reader@example.com").await;
    let mut ops = Console::sign_in(&app, "ops@example.com").await;

    // Pages.
    let gets = [
        ("/console/apps".to_owned(), Needs::Read),
        (format!("/console/apps/{id}"), Needs::Read),
        (format!("/console/apps/{id}/secret"), Needs::Read),
        ("/console/apps/new".to_owned(), Needs::Manage),
        (
            format!("/console/apps/confirm?action=delete&ids={id}"),
            Needs::Manage,
        ),
        (format!("/console/apps/{id}/revoke"), Needs::Manage),
        (format!("/console/apps/{id}/delete"), Needs::Manage),
    ];
    for (path, needs) in &gets {
        assert_eq!(
            none.page(path).await.0,
            403,
            "no api_keys permission: {path}"
        );
        let want = if *needs == Needs::Read { 200 } else { 403 };
        assert_eq!(reader.page(path).await.0, want, "api_keys:read: {path}");
        assert_eq!(ops.page(path).await.0, 200, "api_keys:manage: {path}");
    }

    // Not offered to the reader; offered to the manager.
    let (_, table) = reader.page("/console/apps").await;
    let (_, details) = reader.page(&format!("/console/apps/{id}")).await;
    for control in [
        "Create application",
        "Revoke selected",
        "Delete selected",
        "name=\"ids\"",
    ] {
        assert!(!table.contains(control), "reader offered {control}");
    }
    for control in [">Rotate</button>", "Save changes", "/revoke\"", "/delete\""] {
        assert!(!details.contains(control), "reader offered {control}");
    }
    let (_, table) = ops.page("/console/apps").await;
    assert!(
        table.contains("<a href=\"/console/apps\" aria-current=\"page\">Applications</a>"),
        "api_keys:manage alone opens the section from the navigation"
    );
    let (_, details) = ops.page(&format!("/console/apps/{id}")).await;
    for control in [
        "Create application",
        "Revoke selected",
        "Delete selected",
        "name=\"ids\"",
    ] {
        assert!(table.contains(control), "manager not offered {control}");
    }
    for control in [">Rotate</button>", "Save changes", "/revoke\"", "/delete\""] {
        assert!(details.contains(control), "manager not offered {control}");
    }

    // Forged posts with a valid CSRF token: the API's 403, nothing changed.
    let create: &[(&str, &str)] = &[
        ("name", "forged"),
        ("type", "secret"),
        ("environment", "live"),
        ("permissions", "content:read"),
    ];
    let posts: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/console/apps".into(), create.to_vec()),
        (
            format!("/console/apps/{id}"),
            vec![
                ("name", "forged"),
                ("owner", "gateway"),
                ("permissions", "content:read"),
            ],
        ),
        (format!("/console/apps/{id}/rotate"), vec![("grace", "0")]),
        (format!("/console/apps/{id}/revoke"), vec![]),
        (format!("/console/apps/{id}/delete"), vec![]),
        (
            "/console/apps/bulk".into(),
            vec![("action", "delete"), ("ids", id.as_str())],
        ),
        (
            "/console/apps/bulk".into(),
            vec![("action", "revoke"), ("ids", id.as_str())],
        ),
    ];
    for who in [&mut none, &mut reader] {
        for (path, fields) in &posts {
            let res = who.post(path, fields).await;
            assert_eq!(res.status(), 403, "forged post to {path}");
            assert!(res.text().await.unwrap().contains("Not allowed"));
        }
    }
    let v = ok(api_get(&app, &format!("/api/v1/apps/{id}")).await, 200).await;
    assert_eq!(
        (v["name"].as_str(), v["status"].as_str()),
        (Some("target"), Some("active"))
    );
    assert_eq!(
        app.exchange(None, &secret).await.status(),
        200,
        "not rotated, revoked or deleted"
    );
    let list = ok(api_get(&app, "/api/v1/apps?q=forged").await, 200).await;
    assert!(list["data"].as_array().unwrap().is_empty());

    // The manager succeeds at each.
    let res = ops.post("/console/apps", create).await;
    assert_eq!(res.status(), 303);
    let res = ops
        .post(
            &format!("/console/apps/{id}"),
            &[
                ("name", "managed"),
                ("owner", "gateway"),
                ("permissions", "content:read"),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    let res = ops
        .post(&format!("/console/apps/{id}/rotate"), &[("grace", "0")])
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(
        app.exchange(None, &secret).await.status(),
        401,
        "rotated out"
    );
    let res = ops
        .post(
            "/console/apps/bulk",
            &[("action", "revoke"), ("ids", id.as_str())],
        )
        .await;
    assert_eq!(res.status(), 303);
    let res = ops.post(&format!("/console/apps/{id}/revoke"), &[]).await;
    assert_eq!(res.status(), 303);
    let (v, _) = app
        .create_app(json!({"name": "bulk-del", "permissions": ["content:read"]}))
        .await;
    let res = ops
        .post(
            "/console/apps/bulk",
            &[("action", "delete"), ("ids", v["id"].as_str().unwrap())],
        )
        .await;
    assert_eq!(res.status(), 303);
    let res = ops.post(&format!("/console/apps/{id}/delete"), &[]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/console/apps?done=deleted");
    assert_eq!(
        api_get(&app, &format!("/api/v1/apps/{id}")).await.status(),
        404
    );
}

#[tokio::test]
async fn a_manager_holding_less_than_an_application_cannot_rotate_revoke_or_delete_it() {
    let app = spawn_app().await;
    create_user(
        &app,
        "ops@example.com",
        &["api_keys:manage", "content:read"],
    )
    .await;
    let (v, secret) = app
        .create_app(json!({"name": "strong", "permissions": ["content:write"]}))
        .await;
    let id = v["id"].as_str().unwrap().to_owned();
    let (own, _) = app
        .create_app(json!({"name": "weak", "permissions": ["content:read"]}))
        .await;
    let own = own["id"].as_str().unwrap().to_owned();
    let mut c = Console::sign_in(&app, "ops@example.com").await;
    // Not offered: no checkbox for it in the table (one for the weak one),
    // no edit, rotate, revoke or delete on its page, no confirmation page,
    // and the create form lists only what the person holds.
    let (_, table) = c.page("/console/apps").await;
    assert!(!table.contains(&format!("value=\"{id}\"")), "{table}");
    assert!(table.contains(&format!("value=\"{own}\"")), "{table}");
    let (status, details) = c.page(&format!("/console/apps/{id}")).await;
    assert_eq!(status, 200);
    for control in [
        "Save changes",
        "action=\"/console/apps/",
        "Rotate",
        "/revoke\"",
        "/delete\"",
    ] {
        assert!(!details.contains(control), "{control} offered: {details}");
    }
    assert!(details.contains("not change it"), "{details}");
    let (_, mine) = c.page(&format!("/console/apps/{own}")).await;
    assert!(mine.contains("Rotate"), "its own reach is offered: {mine}");
    for action in ["revoke", "delete"] {
        let (status, _) = c.page(&format!("/console/apps/{id}/{action}")).await;
        assert_eq!(status, 403, "{action} confirmation");
    }
    let (_, form) = c.page("/console/apps/new").await;
    assert!(form.contains("value=\"content:read\""), "{form}");
    assert!(
        !form.contains("value=\"content:write\""),
        "not held, not offered"
    );
    for path in [
        format!("/console/apps/{id}/rotate"),
        format!("/console/apps/{id}/revoke"),
        format!("/console/apps/{id}/delete"),
    ] {
        let res = c.post(&path, &[("grace", "3600")]).await;
        assert_eq!(res.status(), 403, "{path}");
        let html = res.text().await.unwrap();
        assert!(html.contains("Not allowed"), "the API's 403 as a page");
    }
    assert_eq!(app.exchange(None, &secret).await.status(), 200);
    // Granting more than one holds through the form is refused, input kept.
    let res = c
        .post(
            "/console/apps",
            &[
                ("name", "greedy"),
                ("type", "secret"),
                ("environment", "live"),
                ("permissions", "content:write"),
            ],
        )
        .await;
    assert_eq!(res.status(), 403);
    let html = res.text().await.unwrap();
    assert!(html.contains("role=\"alert\"") && html.contains("value=\"greedy\""));
}
