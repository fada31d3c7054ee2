//! The console's Users and Roles sections over plain HTTP (docs/api.md, "The console",
//! "People", "Applications"): a user created in the console signs in with their password;
//! disabling, a password reset and ending a session take effect at once;
//! roles are created, edited and deleted; "nobody widens their own reach"
//! and a public key holding a role show as the API's refusals; and every
//! route refuses a person without its permission (not offered, a forged
//! post with a valid CSRF token gets 403, nothing changes).

use serde_json::{Value, json};

use crate::console::Console;
use crate::helpers::{TestApp, call, ok, spawn_app};
use crate::people::{Browser, PASSWORD, create_user, sign_in};

const ADMIN: &str = "admin@example.com";
const ALL: &[&str] = &["users:manage", "roles:manage", "content:*", "workloads:*"];

fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .unwrap_or_else(|| panic!("a redirect, got {}", res.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Whether `email` signs in to the console with `password` (a fresh
/// browser: 303 on to the console, 401 refused).
async fn signs_in(app: &TestApp, email: &str, password: &str) -> bool {
    let mut b = Browser::new(app);
    let login = location(&b.get("/console").await);
    let authorize = location(&b.get(&login).await);
    let res = sign_in(&mut b, app, &authorize, email, password).await;
    match res.status().as_u16() {
        303 => true,
        401 => false,
        s => panic!("sign-in answered {s}: {}", res.text().await.unwrap()),
    }
}

async fn user_json(app: &TestApp, id: &str) -> Value {
    ok(
        call(
            app,
            reqwest::Method::GET,
            &format!("/api/v1/users/{id}"),
            None,
        )
        .await,
        200,
    )
    .await
}

async fn user_id_by_email(app: &TestApp, email: &str) -> String {
    let v = ok(
        call(app, reqwest::Method::GET, "/api/v1/users?limit=200", None).await,
        200,
    )
    .await;
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == email)
        .unwrap_or_else(|| panic!("no user {email}: {v}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The text of the `<p class="field-error" id="{field}-error">` of a page.
fn field_error(html: &str, field: &str) -> Option<String> {
    let marker = format!("<p class=\"field-error\" id=\"{field}-error\">");
    let at = html.find(&marker)? + marker.len();
    Some(html[at..].split("</p>").next()?.to_owned())
}

#[tokio::test]
async fn a_user_created_in_the_console_signs_in_and_refused_forms_keep_the_input() {
    let app = spawn_app().await;
    create_user(&app, ADMIN, ALL).await;
    let mut c = Console::sign_in(&app, ADMIN).await;
    let (status, html) = c.page("/console/users").await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("href=\"/console/users/new\"") && html.contains(ADMIN));
    let (status, html) = c.page("/console/users/new").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("<label for=\"email\">Email</label>"),
        "{html}"
    );
    assert!(
        html.contains("value=\"content:read\""),
        "the catalogue as checkboxes"
    );

    // A short password: 422, the error beside it, the rest kept, the
    // password itself never echoed.
    let res = c
        .post(
            "/console/users/new",
            &[
                ("email", "bea@example.com"),
                ("name", "Bea <b>"),
                ("password", "short-pw"),
                ("permissions", "content:read"),
                ("permissions_other", "workloads:*"),
            ],
        )
        .await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(
        field_error(&html, "password").is_some_and(|e| e.contains("12 to 128")),
        "{html}"
    );
    assert!(html.contains("aria-describedby=\"password-error password-hint\""));
    assert!(html.contains("value=\"bea@example.com\""));
    assert!(
        html.contains("value=\"Bea &#60;b&#62;\"") || html.contains("value=\"Bea &lt;b&gt;\""),
        "{html}"
    );
    assert!(html.contains("value=\"workloads:*\""), "other grants kept");
    assert!(
        html.contains("value=\"content:read\" checked"),
        "ticked boxes kept"
    );
    assert!(!html.contains("short-pw"), "the password is never echoed");
    // An unknown permission: beside the permissions.
    let res = c
        .post(
            "/console/users/new",
            &[
                ("email", "bea@example.com"),
                ("permissions_other", "nope:x"),
            ],
        )
        .await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(
        field_error(&html, "permissions").is_some_and(|e| e.contains("nope:x")),
        "{html}"
    );
    // The email of someone else: 409 beside the email.
    let res = c
        .post(
            "/console/users/new",
            &[("email", ADMIN.to_uppercase().as_str())],
        )
        .await;
    assert_eq!(res.status(), 409);
    assert!(field_error(&res.text().await.unwrap(), "email").is_some());

    // Created: off to their page, and they sign in with that password.
    let res = c
        .post(
            "/console/users/new",
            &[
                ("email", "bea@example.com"),
                ("name", "Bea"),
                ("password", PASSWORD),
                ("permissions", "content:read"),
                ("permissions_other", "workloads:*"),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    let page = location(&res);
    assert!(
        page.starts_with("/console/users/usr_") && page.ends_with("?done=created"),
        "{page}"
    );
    let (status, html) = c.page(&page).await;
    assert_eq!(status, 200);
    assert!(html.contains("The user was created."));
    assert!(html.contains("value=\"content:read\" checked"));
    let id = user_id_by_email(&app, "bea@example.com").await;
    let v = user_json(&app, &id).await;
    assert_eq!(v["permissions"], json!(["content:read", "workloads:*"]));
    assert_eq!(v["hasPassword"], true);
    assert!(signs_in(&app, "bea@example.com", PASSWORD).await);
    let mut bea = Console::sign_in(&app, "bea@example.com").await;
    assert_eq!(bea.page("/console").await.0, 200);

    // Edited: name and grants through users::patch.
    let res = c
        .post(
            &format!("/console/users/{id}"),
            &[
                ("email", "bea@example.com"),
                ("name", "Beatrice"),
                ("permissions", "content:write"),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), format!("/console/users/{id}?done=saved"));
    let v = user_json(&app, &id).await;
    assert_eq!(v["name"], "Beatrice");
    assert_eq!(v["permissions"], json!(["content:write"]));
    // An edit with a bad name keeps what was typed, 422 beside it.
    let long = "x".repeat(101);
    let res = c
        .post(
            &format!("/console/users/{id}"),
            &[("email", "bea@example.com"), ("name", &long)],
        )
        .await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(field_error(&html, "name").is_some(), "{html}");
    assert!(html.contains(&long));
    assert_eq!(user_json(&app, &id).await["name"], "Beatrice");

    // Deleted after a confirmation page; the table no longer lists them.
    let (status, html) = c.page(&format!("/console/users/{id}/delete")).await;
    assert_eq!(status, 200);
    assert!(html.contains(">Delete user</button>"), "{html}");
    let res = c.post(&format!("/console/users/{id}/delete"), &[]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/console/users?done=deleted");
    let (_, html) = c.page("/console/users?done=deleted").await;
    assert!(html.contains("The user was deleted.") && !html.contains("bea@example.com"));
    assert_eq!(
        bea.page("/console").await.0,
        303,
        "a deleted user's session is gone"
    );
    // An unknown id is the API's 404, echoing nothing odd.
    let (status, html) = c.page("/console/users/usr_nobody").await;
    assert_eq!(status, 404);
    assert!(html.contains("Not found"));
    let (status, html) = c.page("/console/users/%3Cscript%3E").await;
    assert_eq!(status, 404);
    assert!(
        !html.contains("&lt;script") && !html.contains("&#60;script"),
        "the odd id is not echoed: {html}"
    );
}

#[tokio::test]
async fn disabling_ends_the_session_a_reset_password_replaces_the_old_and_a_session_can_be_ended() {
    let app = spawn_app().await;
    create_user(&app, ADMIN, ALL).await;
    let id = create_user(&app, "cy@example.com", &["content:read"]).await;
    let mut c = Console::sign_in(&app, ADMIN).await;
    let mut cy = Console::sign_in(&app, "cy@example.com").await;
    assert_eq!(cy.page("/console").await.0, 200);

    // Disable: a confirmation page, then their console session is gone.
    let (status, html) = c.page(&format!("/console/users/{id}")).await;
    assert_eq!(status, 200);
    assert!(html.contains(&format!("href=\"/console/users/{id}/disable\"")));
    assert!(html.contains("tessera-console"), "their session is listed");
    let (status, html) = c.page(&format!("/console/users/{id}/disable")).await;
    assert_eq!(status, 200);
    assert!(html.contains(">Disable user</button>"));
    assert_eq!(
        user_json(&app, &id).await["status"],
        "active",
        "a GET changes nothing"
    );
    let res = c.post(&format!("/console/users/{id}/disable"), &[]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), format!("/console/users/{id}?done=disabled"));
    assert_eq!(user_json(&app, &id).await["status"], "disabled");
    assert_eq!(cy.page("/console").await.0, 303, "signed out at once");
    assert!(!signs_in(&app, "cy@example.com", PASSWORD).await);
    let (_, html) = c.page(&format!("/console/users/{id}?done=disabled")).await;
    assert!(html.contains("The user was disabled"));
    assert!(html.contains(">Enable</button>") && !html.contains("/disable\""));
    let res = c.post(&format!("/console/users/{id}/enable"), &[]).await;
    assert_eq!(res.status(), 303);
    assert!(signs_in(&app, "cy@example.com", PASSWORD).await);

    // Reset password: the two must match; neither is ever shown again.
    let path = format!("/console/users/{id}/password");
    let (status, html) = c.page(&path).await;
    assert_eq!(status, 200);
    assert!(html.contains("<label for=\"password_confirm\">"));
    let res = c
        .post(
            &path,
            &[
                ("password", "a brand new secret"),
                ("password_confirm", "a brand new secreT"),
            ],
        )
        .await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(field_error(&html, "password_confirm").is_some(), "{html}");
    assert!(!html.contains("brand new"), "passwords are never echoed");
    let res = c
        .post(
            &path,
            &[
                ("password", "cy@example.com"),
                ("password_confirm", "cy@example.com"),
            ],
        )
        .await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(
        field_error(&html, "password").is_some_and(|e| e.contains("email")),
        "{html}"
    );
    assert!(
        signs_in(&app, "cy@example.com", PASSWORD).await,
        "unchanged"
    );
    let mut cy = Console::sign_in(&app, "cy@example.com").await;
    let res = c
        .post(
            &path,
            &[
                ("password", "a brand new secret"),
                ("password_confirm", "a brand new secret"),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), format!("/console/users/{id}?done=password"));
    assert!(
        !signs_in(&app, "cy@example.com", PASSWORD).await,
        "the old one fails"
    );
    assert!(signs_in(&app, "cy@example.com", "a brand new secret").await);
    assert_eq!(cy.page("/console").await.0, 303, "their sessions ended");

    // End one session: listed, confirmed, gone; the other one lives.
    reset_to(&app, &id, PASSWORD).await;
    let mut first = Console::sign_in(&app, "cy@example.com").await;
    let mut second = Console::sign_in(&app, "cy@example.com").await;
    let sessions = first_session_ids(&mut c, &id).await;
    assert!(sessions.len() >= 2, "{sessions:?}");
    let (status, html) = c
        .page(&format!("/console/users/{id}/sessions/{}/end", sessions[0]))
        .await;
    assert_eq!(status, 200);
    assert!(html.contains(">End session</button>"), "{html}");
    let res = c
        .post(
            &format!("/console/users/{id}/sessions/{}/end", sessions[0]),
            &[],
        )
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), format!("/console/users/{id}?done=session"));
    let alive = [
        first.page("/console").await.0,
        second.page("/console").await.0,
    ];
    assert!(
        alive.contains(&303) && alive.contains(&200),
        "exactly one ended: {alive:?}"
    );
    assert_eq!(
        first_session_ids(&mut c, &id).await.len(),
        sessions.len() - 1
    );
    // A session of someone else, or no session at all, is not found.
    let mine = first_session_ids(&mut c, &user_id_by_email(&app, ADMIN).await).await;
    let res = c
        .post(
            &format!("/console/users/{id}/sessions/{}/end", mine[0]),
            &[],
        )
        .await;
    assert_eq!(res.status(), 404);
    assert_eq!(
        c.page("/console").await.0,
        200,
        "the admin's own session lives"
    );
    let (status, _) = c
        .page(&format!("/console/users/{id}/sessions/not-a-session/end"))
        .await;
    assert_eq!(status, 404);
}

async fn reset_to(app: &TestApp, id: &str, password: &str) {
    ok(
        call(
            app,
            reqwest::Method::PATCH,
            &format!("/api/v1/users/{id}"),
            Some(json!({"password": password})),
        )
        .await,
        200,
    )
    .await;
}

/// The ids of the sessions a user's page offers to end.
async fn first_session_ids(c: &mut Console, id: &str) -> Vec<String> {
    let (status, html) = c.page(&format!("/console/users/{id}")).await;
    assert_eq!(status, 200);
    let marker = format!("href=\"/console/users/{id}/sessions/");
    html.split(&marker)
        .skip(1)
        .map(|s| s.split('/').next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn roles_are_created_edited_and_deleted_and_no_one_widens_their_reach() {
    let app = spawn_app().await;
    create_user(&app, ADMIN, ALL).await;
    let mut c = Console::sign_in(&app, ADMIN).await;
    let (status, html) = c.page("/console/roles").await;
    assert_eq!(status, 200);
    assert!(html.contains("href=\"/console/roles/new\""));
    let (status, html) = c.page("/console/roles/new").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("<legend>content</legend>"),
        "grouped by resource"
    );
    assert!(html.contains("Read content"), "with descriptions");

    // A bad name: 422 beside the name, the rest kept.
    let res = c
        .post(
            "/console/roles/new",
            &[
                ("name", "Bad Name"),
                ("description", "Reads"),
                ("permissions", "content:read"),
            ],
        )
        .await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(field_error(&html, "name").is_some(), "{html}");
    assert!(html.contains(">Reads</textarea>"));
    assert!(html.contains("value=\"content:read\" checked"));
    let res = c
        .post(
            "/console/roles/new",
            &[
                ("name", "reader"),
                ("description", "Reads"),
                ("permissions", "content:read"),
                ("permissions_other", "workloads:*"),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(
        location(&res),
        "/console/roles/reader/edit?done=role-created"
    );
    let role = ok(
        call(&app, reqwest::Method::GET, "/api/v1/roles/reader", None).await,
        200,
    )
    .await;
    assert_eq!(role["permissions"], json!(["content:read", "workloads:*"]));
    let (status, html) = c.page("/console/roles/reader/edit").await;
    assert_eq!(status, 200);
    assert!(html.contains("value=\"workloads:*\""), "wildcards as text");
    // Taken: 409 beside the name.
    let res = c.post("/console/roles/new", &[("name", "reader")]).await;
    assert_eq!(res.status(), 409);
    assert!(field_error(&res.text().await.unwrap(), "name").is_some());

    // Edited.
    let res = c
        .post(
            "/console/roles/reader/edit",
            &[
                ("description", "Reads it all"),
                ("permissions", "content:read"),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    let role = ok(
        call(&app, reqwest::Method::GET, "/api/v1/roles/reader", None).await,
        200,
    )
    .await;
    assert_eq!(role["description"], "Reads it all");
    assert_eq!(role["permissions"], json!(["content:read"]));

    // Beyond the caller's holdings: the API's 403 page, nothing changed.
    let res = c
        .post(
            "/console/roles/reader/edit",
            &[("description", "x"), ("permissions_other", "*")],
        )
        .await;
    assert_eq!(res.status(), 403);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("Not allowed") && html.contains("more than you do"),
        "{html}"
    );
    // A user who holds more than the caller cannot be changed either.
    let root = create_user(&app, "root@example.com", &["*"]).await;
    let res = c.post(&format!("/console/users/{root}/disable"), &[]).await;
    assert_eq!(res.status(), 403);
    assert_eq!(user_json(&app, &root).await["status"], "active");
    // Nor can their sessions be ended (not offered to the caller: the id
    // is read from root's own page).
    let mut r = Console::sign_in(&app, "root@example.com").await;
    assert!(first_session_ids(&mut c, &root).await.is_empty());
    let theirs = first_session_ids(&mut r, &root).await;
    let res = c
        .post(
            &format!("/console/users/{root}/sessions/{}/end", theirs[0]),
            &[],
        )
        .await;
    assert_eq!(res.status(), 403);
    assert_eq!(r.page("/console").await.0, 200, "their session lives");

    // A public key holding the role: content:write is not public, 422
    // naming the key beside the permissions.
    let (app_v, _) = app
        .create_app(json!({"name": "web", "type": "public", "roles": ["reader"]}))
        .await;
    let key = app_v["id"].as_str().unwrap();
    let res = c
        .post(
            "/console/roles/reader/edit",
            &[("description", "Reads"), ("permissions", "content:write")],
        )
        .await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(
        field_error(&html, "permissions").is_some_and(|e| e.contains(key)),
        "{html}"
    );
    assert!(
        html.contains("value=\"content:write\" checked"),
        "input kept"
    );

    // Delete: held, so 409 on the confirmation page until detach is ticked.
    let (status, html) = c.page("/console/roles/reader/delete").await;
    assert_eq!(status, 200);
    assert!(html.contains(">Delete role</button>") && html.contains("id=\"detach\""));
    let res = c.post("/console/roles/reader/delete", &[]).await;
    assert_eq!(res.status(), 409);
    assert!(res.text().await.unwrap().contains("role=\"alert\""));
    let res = c
        .post("/console/roles/reader/delete", &[("detach", "true")])
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/console/roles?done=role-deleted");
    let (_, html) = c.page("/console/roles?done=role-deleted").await;
    assert!(html.contains("The role was deleted.") && !html.contains("/console/roles/reader/edit"));
    let (status, _) = c.page("/console/roles/reader/edit").await;
    assert_eq!(status, 404);
}

/// Every route of the section: (method, path) with the permission it needs.
fn routes(user: &str, sid: &str) -> Vec<(&'static str, String, &'static str)> {
    let u = |p: &str| format!("/console/users/{user}{p}");
    vec![
        ("GET", "/console/users".into(), "users:manage"),
        ("GET", "/console/users/new".into(), "users:manage"),
        ("POST", "/console/users/new".into(), "users:manage"),
        ("GET", u(""), "users:manage"),
        ("POST", u(""), "users:manage"),
        ("GET", u("/disable"), "users:manage"),
        ("POST", u("/disable"), "users:manage"),
        ("POST", u("/enable"), "users:manage"),
        ("GET", u("/password"), "users:manage"),
        ("POST", u("/password"), "users:manage"),
        ("GET", u(&format!("/sessions/{sid}/end")), "users:manage"),
        ("POST", u(&format!("/sessions/{sid}/end")), "users:manage"),
        ("GET", u("/delete"), "users:manage"),
        ("POST", u("/delete"), "users:manage"),
        ("GET", "/console/roles".into(), "roles:manage"),
        ("GET", "/console/roles/new".into(), "roles:manage"),
        ("POST", "/console/roles/new".into(), "roles:manage"),
        ("GET", "/console/roles/victim/edit".into(), "roles:manage"),
        ("POST", "/console/roles/victim/edit".into(), "roles:manage"),
        ("GET", "/console/roles/victim/delete".into(), "roles:manage"),
        (
            "POST",
            "/console/roles/victim/delete".into(),
            "roles:manage",
        ),
    ]
}

/// What each post of the matrix sends: enough to change something if it
/// were let through.
fn fields(path: &str) -> Vec<(&'static str, &'static str)> {
    if path.ends_with("/password") {
        vec![
            ("password", "forged password!!"),
            ("password_confirm", "forged password!!"),
        ]
    } else if path == "/console/users/new" {
        vec![
            ("email", "forged@example.com"),
            ("password", "forged password!!"),
        ]
    } else if path == "/console/roles/new" {
        vec![("name", "forged"), ("permissions", "content:read")]
    } else if path.ends_with("/delete") {
        vec![("detach", "true")]
    } else {
        vec![
            ("email", "victim@example.com"),
            ("name", "Forged"),
            ("description", "Forged"),
            ("permissions", "content:read"),
        ]
    }
}

#[tokio::test]
async fn every_route_refuses_a_person_without_its_permission() {
    let app = spawn_app().await;
    create_user(&app, ADMIN, ALL).await;
    let victim = create_user(&app, "victim@example.com", &["workloads:read"]).await;
    ok(
        call(
            &app,
            reqwest::Method::POST,
            "/api/v1/roles",
            Some(
                json!({"name": "victim", "description": "Kept", "permissions": ["workloads:read"]}),
            ),
        )
        .await,
        201,
    )
    .await;
    let mut v = Console::sign_in(&app, "victim@example.com").await;
    let mut admin = Console::sign_in(&app, ADMIN).await;
    let sid = first_session_ids(&mut admin, &victim).await[0].clone();
    let before_user = user_json(&app, &victim).await;
    let before_role = ok(
        call(&app, reqwest::Method::GET, "/api/v1/roles/victim", None).await,
        200,
    )
    .await;

    // Holding one of the two: the other's routes refuse; holding neither:
    // every route refuses. The nav offers only what is held.
    create_user(
        &app,
        "users@example.com",
        &["users:manage", "content:*", "workloads:*"],
    )
    .await;
    create_user(
        &app,
        "roles@example.com",
        &["roles:manage", "content:*", "workloads:*"],
    )
    .await;
    create_user(
        &app,
        "reader@example.com",
        &["api_keys:read", "content:*", "workloads:*"],
    )
    .await;
    for (email, held) in [
        ("users@example.com", &["users:manage"][..]),
        ("roles@example.com", &["roles:manage"][..]),
        ("reader@example.com", &[][..]),
    ] {
        let mut c = Console::sign_in(&app, email).await;
        let (_, home) = c.page("/console").await;
        for (link, perm) in [
            ("href=\"/console/users\"", "users:manage"),
            ("href=\"/console/roles\"", "roles:manage"),
        ] {
            assert_eq!(home.contains(link), held.contains(&perm), "{email}: {link}");
        }
        for (method, path, perm) in routes(&victim, &sid) {
            if held.contains(&perm) {
                continue;
            }
            let (status, html) = if method == "GET" {
                c.page(&path).await
            } else {
                let res = c.post(&path, &fields(&path)).await;
                (res.status().as_u16(), res.text().await.unwrap())
            };
            assert_eq!(status, 403, "{email}: {method} {path}: {html}");
            assert!(html.contains("Not allowed"), "{email}: {method} {path}");
            assert!(!html.contains("name=\"csrf\""), "no form offered");
        }
    }
    // Nothing changed: the victim, their session, the role, no new ones.
    assert_eq!(user_json(&app, &victim).await, before_user);
    assert_eq!(v.page("/console").await.0, 200, "the session lives");
    assert!(signs_in(&app, "victim@example.com", PASSWORD).await);
    let role = ok(
        call(&app, reqwest::Method::GET, "/api/v1/roles/victim", None).await,
        200,
    )
    .await;
    assert_eq!(role, before_role);
    let (_, list) = admin.page("/console/users").await;
    assert!(!list.contains("forged@example.com"));
    assert_eq!(admin.page("/console/roles/forged/edit").await.0, 404);

    // Users without roles:manage get roles as a text field, not the list.
    let mut u = Console::sign_in(&app, "users@example.com").await;
    let (status, html) = u.page(&format!("/console/users/{victim}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"roles_text\"") && !html.contains("id=\"role-0\""));
    let (_, html) = admin.page(&format!("/console/users/{victim}")).await;
    assert!(html.contains("id=\"role-0\"") && !html.contains("id=\"roles_text\""));

    // Holding it, each route works: the admin ends the victim's session,
    // gives them the role, and deletes it (the other routes are covered
    // by the tests above).
    let res = admin
        .post(&format!("/console/users/{victim}/sessions/{sid}/end"), &[])
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(v.page("/console").await.0, 303);
    let res = admin
        .post(
            &format!("/console/users/{victim}"),
            &[
                ("email", "victim@example.com"),
                ("name", "Vic"),
                ("roles", "victim"),
                ("permissions", "workloads:read"),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(user_json(&app, &victim).await["roles"], json!(["victim"]));
}

#[tokio::test]
async fn the_users_table_pages_fifty_at_a_time() {
    let app = spawn_app().await;
    create_user(&app, ADMIN, ALL).await;
    // No password: nothing to hash, so 55 users are quick to make.
    for n in 0..55 {
        ok(
            call(
                &app,
                reqwest::Method::POST,
                "/api/v1/users",
                Some(json!({"email": format!("u{n:02}@example.com")})),
            )
            .await,
            201,
        )
        .await;
    }
    let mut c = Console::sign_in(&app, ADMIN).await;
    let (status, html) = c.page("/console/users").await;
    assert_eq!(status, 200);
    let rows = |h: &str| h.matches("<tr><td><a href=\"/console/users/usr_").count();
    assert_eq!(rows(&html), 50);
    assert!(!html.contains(">First page</a>"));
    let at = html
        .find("href=\"/console/users?cursor=")
        .expect("a next page");
    let next = html[at + 6..]
        .split('"')
        .next()
        .unwrap()
        .replace("&#61;", "=");
    let (status, second) = c.page(&next).await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(rows(&second), 6, "56 users in all");
    assert!(second.contains(">First page</a>") && !second.contains(">Next page</a>"));
    // A cursor the gateway did not make: a page or the API's 400, never a
    // failure, and never echoed.
    let (status, html) = c.page("/console/users?cursor=%3Cbogus%3E").await;
    assert!(status == 200 || status == 400, "{status}: {html}");
    assert!(!html.contains("bogus"), "{html}");
}
