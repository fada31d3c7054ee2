//! The console's audit log, signing keys and identity providers pages, and
//! its 404/405 pages (docs/api.md, "The console"), over HTTP: filters narrow the table as
//! they narrow `GET /api/v1/audit`, refused filters are shown beside their
//! field with what was typed, downloads carry the filtered rows, no page
//! holds a secret, and every route is held to its permission.

use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};
use tessera::config::{IdpSettings, RoleMapping};

use crate::console::Console;
use crate::helpers::{TestApp, call, ok, spawn_app, spawn_with};
use crate::people::create_user;

/// Creates roles through the API, as the admin application: one
/// `role.create` entry each.
async fn roles(app: &TestApp, names: &[&str]) {
    for name in names {
        let body = json!({"name": name, "description": "<img src=x onerror=alert(1)>"});
        ok(
            call(app, Method::POST, "/api/v1/roles", Some(body)).await,
            201,
        )
        .await;
    }
}

/// How many entries the page's table shows.
fn rows(html: &str) -> usize {
    html.matches("<time datetime=").count()
}

/// The `href` of the link whose text is `text`, unescaped.
fn link(html: &str, text: &str) -> String {
    let end = html
        .find(&format!(">{text}</a>"))
        .unwrap_or_else(|| panic!("a link {text:?} in {html}"));
    let start = html[..end].rfind("href=\"").unwrap() + 6;
    let href = &html[start..end];
    href[..href.find('"').unwrap()]
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

#[tokio::test]
async fn filters_narrow_the_table_and_the_cursor_pages_through_it() {
    let app = spawn_app().await;
    create_user(&app, "auditor@example.com", &["audit:read"]).await;
    let names: Vec<String> = (0..53).map(|i| format!("r{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    roles(&app, &names).await;
    let mut c = Console::sign_in(&app, "auditor@example.com").await;

    // Unfiltered: the newest page, with the user's creation further down.
    let (status, html) = c.page("/console/audit").await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(rows(&html), 50, "the API's page of 50");
    assert!(html.contains(">r52<") && html.contains("aria-current=\"page\""));
    assert!(html.contains("<label for=\"action\">Action</label>"));

    // By action: only role creations; by actor: the admin application.
    let (_, html) = c.page("/console/audit?action=user.create").await;
    assert_eq!(rows(&html), 1, "{html}");
    assert!(html.contains(">user.create<") && !html.contains(">role.create<"));
    assert!(html.contains("value=\"user.create\""), "the filter is kept");
    let (_, html) = c.page("/console/audit?action=role.*&target=r07").await;
    assert_eq!(rows(&html), 1, "{html}");
    assert!(html.contains(">r07<"));
    let (_, html) = c.page("/console/audit?actor=nobody-at-all").await;
    assert_eq!(rows(&html), 0);
    assert!(html.contains("No matching entries."), "{html}");

    // Details are JSON, shown compactly and escaped: the role's description
    // is never markup.
    assert!(!html.contains("<img"));
    let (_, html) = c.page("/console/audit?target=r07").await;
    assert!(
        html.contains("&#60;img src=x onerror=alert(1)&#62;"),
        "{html}"
    );
    assert!(!html.contains("<img src=x"));

    // Paging keeps the filters: 53 role creations are 50, then 3.
    let (_, html) = c
        .page("/console/audit?action=role.create&since=&until=")
        .await;
    assert_eq!(rows(&html), 50);
    let older = link(&html, "Older entries");
    assert!(
        older.starts_with("/console/audit?action=role.create&cursor="),
        "{older}"
    );
    let (status, html) = c.page(&older).await;
    assert_eq!(status, 200);
    assert_eq!(rows(&html), 3, "{html}");
    assert!(html.contains(">r00<") && !html.contains(">r03<"));
    assert!(!html.contains("Older entries"), "the log ends here");
    assert_eq!(
        link(&html, "Newest entries"),
        "/console/audit?action=role.create"
    );
    // Downloads carry the filters, not the cursor.
    assert_eq!(
        link(&html, "Download CSV"),
        "/console/audit/export?format=csv&action=role.create"
    );

    // A time window: everything so far is before now, nothing after it.
    let later = (chrono::Utc::now() + chrono::Duration::minutes(2))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let (_, html) = c
        .page(&format!("/console/audit?action=role.create&until={later}"))
        .await;
    assert_eq!(rows(&html), 50);
    let (status, html) = c
        .page(&format!("/console/audit?action=role.create&since={later}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(rows(&html), 0);
}

#[tokio::test]
async fn refused_filters_are_shown_beside_their_field_with_what_was_typed() {
    let app = spawn_app().await;
    create_user(&app, "auditor@example.com", &["audit:read"]).await;
    let mut c = Console::sign_in(&app, "auditor@example.com").await;

    let (status, html) = c
        .page("/console/audit?action=role.create&since=last+tuesday")
        .await;
    assert_eq!(status, 422, "{html}");
    assert!(html.contains("id=\"since-error\""), "{html}");
    assert!(html.contains("aria-describedby=\"since-hint since-error\""));
    assert!(html.contains("aria-invalid=\"true\""));
    assert!(html.contains("value=\"last tuesday\""), "kept as typed");
    assert!(
        html.contains("value=\"role.create\""),
        "the others kept too"
    );
    assert!(!html.contains("id=\"action-error\""));
    assert_eq!(rows(&html), 0);
    assert!(!html.contains("Download CSV"), "nothing to download");

    // The service's own refusals, placed by the field they name.
    let (status, html) = c
        .page("/console/audit?since=2026-02-01T00:00&until=2026-01-01T00:00")
        .await;
    assert_eq!(status, 422);
    assert!(
        html.contains(
            "<p class=\"field-error\" id=\"since-error\">Since must be before until.</p>"
        ),
        "{html}"
    );
    let long = "a".repeat(257);
    let (status, html) = c.page(&format!("/console/audit?action={long}")).await;
    assert_eq!(status, 422);
    assert!(
        html.contains("id=\"action-error\">Action must be 1 to 256 characters."),
        "{html}"
    );
    // 256 characters (not bytes) pass, as in the API.
    let (status, _) = c
        .page(&format!("/console/audit?target={}", "é".repeat(256)))
        .await;
    assert_eq!(status, 200);
    // A cursor that is not one: an error at the top.
    let (status, html) = c.page("/console/audit?cursor=%21%21%21").await;
    assert_eq!(status, 422);
    assert!(
        html.contains("<p class=\"error\" role=\"alert\">Invalid cursor.</p>"),
        "{html}"
    );
}

#[tokio::test]
async fn downloads_carry_the_filtered_rows_and_are_held_to_audit_read() {
    let app = spawn_app().await;
    create_user(&app, "auditor@example.com", &["audit:read"]).await;
    create_user(&app, "keys@example.com", &["api_keys:read"]).await;
    roles(&app, &["-formula", "plain"]).await;
    let mut c = Console::sign_in(&app, "auditor@example.com").await;

    let res =
        c.b.get("/console/audit/export?format=csv&action=role.create")
            .await;
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    assert_eq!(h["content-type"], "text/csv; charset=utf-8");
    assert_eq!(h["cache-control"], "no-store");
    let cd = h["content-disposition"].to_str().unwrap();
    assert!(
        cd.starts_with("attachment; filename=\"tessera-audit-") && cd.ends_with(".csv\""),
        "{cd}"
    );
    assert!(h.get("x-next-cursor").is_none(), "everything is in it");
    let body = res.text().await.unwrap();
    let lines: Vec<&str> = body.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], tessera::service::audit::CSV_HEADER);
    assert_eq!(lines.len(), 3, "{body}");
    assert!(
        lines[1].contains(",role.create,plain,"),
        "newest first: {body}"
    );
    assert!(
        lines[2].contains(",role.create,'-formula,"),
        "formula-safe: {body}"
    );

    let res =
        c.b.get("/console/audit/export?format=json&action=user.create&target=")
            .await;
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["cache-control"], "no-store");
    assert!(
        h["content-disposition"]
            .to_str()
            .unwrap()
            .ends_with(".json\"")
    );
    let v: Value = res.json().await.unwrap();
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{v}");
    assert!(data.iter().all(|r| r["action"] == "user.create"));
    assert!(v.get("nextCursor").is_none());

    // The same filters as the page, refused the same way.
    let (status, html) = c.page("/console/audit/export?format=csv&since=soon").await;
    assert_eq!(status, 422);
    assert!(html.contains("Enter since as a date and time"), "{html}");
    let (status, _) = c.page("/console/audit/export?format=xml").await;
    assert_eq!(status, 400);
    let (status, _) = c.page("/console/audit/export").await;
    assert_eq!(status, 400);

    // Without audit:read: 403 pages, nothing downloaded.
    let mut k = Console::sign_in(&app, "keys@example.com").await;
    for path in [
        "/console/audit/export?format=csv",
        "/console/audit/export?format=json&action=role.create",
    ] {
        let res = k.b.get(path).await;
        assert_eq!(res.status(), 403, "{path}");
        assert!(res.headers().get("content-disposition").is_none());
        let html = res.text().await.unwrap();
        assert!(html.contains("Not allowed") && !html.contains("role.create,"));
    }
    // No session: off to sign in, nothing downloaded.
    let res = crate::people::Browser::new(&app)
        .get("/console/audit/export?format=csv")
        .await;
    assert_eq!(res.status(), 303);
    assert!(res.headers().get("content-disposition").is_none());
    assert!(!res.text().await.unwrap().contains("role.create"));
}

#[tokio::test]
async fn the_keys_page_lists_the_published_keys_and_nothing_private() {
    let app = spawn_app().await;
    create_user(&app, "nobody@example.com", &[]).await;
    let jwks: Value = serde_json::from_str(&app.jwks().await).unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(!kids.is_empty());
    let mut c = Console::sign_in(&app, "nobody@example.com").await;
    let (status, html) = c.page("/console/keys").await;
    assert_eq!(status, 200, "{html}");
    for kid in &kids {
        assert!(html.contains(&format!(">{kid}</td>")), "{kid} in {html}");
    }
    assert!(html.contains("Active: signs access tokens"), "{html}");
    assert!(html.contains("ID tokens"));
    assert_eq!(html.matches("<tr>").count(), kids.len() + 1, "one row each");
    // No private member of any key, in any form.
    for k in jwks["keys"].as_array().unwrap() {
        for member in ["x", "y", "n"] {
            if let Some(v) = k[member].as_str() {
                assert!(!html.contains(v), "only the kid is shown");
            }
        }
    }
    assert!(!html.contains("PRIVATE KEY") && !html.contains("\"d\""));
    for file in crate::helpers::files_under(&app.keys_dir()) {
        let pem = std::fs::read_to_string(&file).unwrap();
        for line in pem.lines().filter(|l| l.len() > 20) {
            assert!(!html.contains(line), "no key material");
        }
    }
}

const IDP_SECRET: &str = "idp-client-secret-never-shown-7f3a";

fn provider() -> IdpSettings {
    IdpSettings {
        name: "corp".into(),
        display_name: Some("Corp <SSO>".into()),
        // Nothing listens there: the page never waits for it.
        issuer: "http://127.0.0.1:9/realms/corp".into(),
        client_id: "tessera-at-corp".into(),
        client_secret: Some(SecretString::from(IDP_SECRET)),
        scopes: vec!["openid".into(), "email".into(), "groups".into()],
        groups_claim: "groups".into(),
        create_users: true,
        allowed_domains: vec!["example.com".into(), "corp.example".into()],
        link_by_verified_email: true,
        token_exchange: false,
        role_map: vec![RoleMapping {
            group: "ops-team".into(),
            roles: vec!["operators".into(), "readers".into()],
        }],
    }
}

#[tokio::test]
async fn the_providers_page_shows_the_configuration_without_the_secret() {
    let app = spawn_with(|s| s.idp = vec![provider()]).await;
    create_user(&app, "admin@example.com", &["users:manage"]).await;
    let mut c = Console::sign_in(&app, "admin@example.com").await;
    let (status, html) = c.page("/console/idps").await;
    assert_eq!(status, 200, "{html}");
    for shown in [
        ">corp<",
        "Corp &#60;SSO&#62;",
        "http://127.0.0.1:9/realms/corp",
        ">tessera-at-corp<",
        "openid email groups",
        ">example.com</span>, <span class=\"mono\">corp.example<",
        ">ops-team</td><td class=\"mono\">operators, readers<",
        "<dt>Link by verified email</dt><dd>Yes</dd>",
        "<dt>Create users</dt><dd>Yes</dd>",
        "<dt>Discovery</dt>",
    ] {
        assert!(html.contains(shown), "{shown} in {html}");
    }
    assert!(!html.contains(IDP_SECRET), "never the client secret");
    assert!(!html.contains(&IDP_SECRET[..12]));
    assert!(!html.contains("Corp <SSO>"), "escaped");

    // None configured: said so, with where to read how.
    let bare = spawn_app().await;
    create_user(&bare, "admin@example.com", &["users:manage"]).await;
    let mut c = Console::sign_in(&bare, "admin@example.com").await;
    let (status, html) = c.page("/console/idps").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("No identity provider is configured"),
        "{html}"
    );
    assert!(html.contains("Single sign-on through upstream providers"));
}

#[tokio::test]
async fn every_route_is_held_to_its_permission_and_offered_only_to_holders() {
    let app = spawn_with(|s| s.idp = vec![provider()]).await;
    create_user(&app, "none@example.com", &[]).await;
    create_user(&app, "auditor@example.com", &["audit:read"]).await;
    create_user(&app, "admin@example.com", &["users:manage"]).await;
    // (route, the permission it needs; None: every signed-in person).
    let routes: [(&str, Option<&str>); 4] = [
        ("/console/audit", Some("audit:read")),
        ("/console/audit/export?format=csv", Some("audit:read")),
        ("/console/keys", None),
        ("/console/idps", Some("users:manage")),
    ];
    for (email, holds) in [
        ("none@example.com", None),
        ("auditor@example.com", Some("audit:read")),
        ("admin@example.com", Some("users:manage")),
    ] {
        let mut c = Console::sign_in(&app, email).await;
        let (_, home) = c.page("/console").await;
        for (path, needs) in routes {
            let may = needs.is_none() || needs == holds;
            let (status, html) = c.page(path).await;
            assert_eq!(status, if may { 200 } else { 403 }, "{email} {path}");
            if !may {
                assert!(html.contains("Not allowed"), "{html}");
            }
            // What is not held is not offered.
            if !path.contains('?') {
                assert_eq!(
                    home.contains(&format!("href=\"{path}\"")),
                    may,
                    "{email} offered {path}"
                );
            }
        }
        // No route here takes a form: a post, even a well-formed one, is
        // a 405 page, and changes nothing.
        for (path, _) in routes {
            let res = c.post(path.split('?').next().unwrap(), &[]).await;
            assert_eq!(res.status(), 405, "{email} POST {path}");
            assert_eq!(res.headers()["allow"], "GET");
        }
    }
}

#[tokio::test]
async fn unknown_console_paths_and_methods_get_html_console_pages() {
    let app = spawn_app().await;
    let check = |res: &reqwest::Response, status: u16| {
        assert_eq!(res.status(), status, "{}", res.url());
        let h = res.headers();
        assert_eq!(h["content-type"], "text/html; charset=utf-8");
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(
            h["content-security-policy"],
            tessera::http::console::CSP,
            "the console's CSP"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
    };
    // Signed in or not, the same page; the path is not repeated.
    let res = app
        .client
        .get(app.url("/console/no-such-page/%3Cb%3Ehi"))
        .send()
        .await
        .unwrap();
    check(&res, 404);
    let html = res.text().await.unwrap();
    assert!(html.contains("<h1>Page not found</h1>"), "{html}");
    assert!(html.contains("href=\"/console\"") && !html.contains("<b>hi"));
    assert!(html.contains("<html lang=\"en\">"));

    create_user(&app, "none@example.com", &[]).await;
    let mut c = Console::sign_in(&app, "none@example.com").await;
    let (status, html) = c.page("/console/apps/x/y/z/nothing").await;
    assert_eq!(status, 404);
    assert!(html.contains("Page not found"));

    // A form's address asked for as a page, a page's address posted to,
    // and a method the console never takes.
    let res = c.b.get("/console/logout").await;
    check(&res, 405);
    assert_eq!(res.headers()["allow"], "POST");
    let res = c.post("/console/keys", &[]).await;
    check(&res, 405);
    assert_eq!(res.headers()["allow"], "GET");
    let res = app
        .client
        .request(Method::PUT, app.url("/console/keys"))
        .send()
        .await
        .unwrap();
    check(&res, 405);
    let html = res.text().await.unwrap();
    assert!(html.contains("not take this kind of request"), "{html}");

    // Outside the console, the API's JSON as before.
    let res = app
        .client
        .get(app.url("/api/v1/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let res = app.client.get(app.url("/consoles")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
}
