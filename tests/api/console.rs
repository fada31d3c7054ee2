//! The console's sign-in, CSRF and header rules over plain HTTP (docs/api.md, "The console"):
//! a browser-like client (cookies kept, redirects followed by hand) signs
//! in through `/oauth/authorize` as `tessera-console`. Also the helpers the
//! other console tests use.

use crate::helpers::{TestApp, spawn_app};
use crate::people::{Browser, PASSWORD, create_user, sign_in};

/// A signed-in console: the browser and its CSRF token.
pub struct Console {
    pub b: Browser,
    pub csrf: String,
    origin: String,
}

/// The value of the first hidden `csrf` field of a page.
pub fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a page with a CSRF field");
    html[at + 19..].split('"').next().unwrap().to_owned()
}

fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .unwrap_or_else(|| panic!("a redirect, got {}", res.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

impl Console {
    /// Signs `email` (password `PASSWORD`) in from a fresh browser, the way
    /// a browser does: `/console` → `/console/login` → `/oauth/authorize`
    /// (the form) → `/console/callback` → `/console`.
    pub async fn sign_in(app: &TestApp, email: &str) -> Console {
        let mut b = Browser::new(app);
        let res = b.get("/console").await;
        assert_eq!(res.status(), 303, "no session: off to sign in");
        let login = location(&res);
        assert!(login.starts_with("/console/login?return_to="), "{login}");
        let res = b.get(&login).await;
        assert_eq!(res.status(), 303);
        let authorize = location(&res);
        assert!(
            authorize.starts_with("/oauth/authorize?")
                && authorize.contains("client_id=tessera-console"),
            "{authorize}"
        );
        let res = sign_in(&mut b, app, &authorize, email, PASSWORD).await;
        assert_eq!(res.status(), 303, "signed in");
        let callback = location(&res);
        assert!(callback.contains("/console/callback?"), "{callback}");
        let res = b.get(&callback).await;
        assert_eq!(
            res.status(),
            303,
            "{}",
            res.text().await.unwrap_or_default()
        );
        assert_eq!(location(&res), "/console");
        let res = b.get("/console").await;
        assert_eq!(res.status(), 200);
        let html = res.text().await.unwrap();
        Console {
            csrf: csrf_of(&html),
            b,
            origin: app.url(""),
        }
    }

    /// GETs a console page: status and body.
    pub async fn page(&mut self, path: &str) -> (u16, String) {
        let res = self.b.get(path).await;
        (res.status().as_u16(), res.text().await.unwrap())
    }

    /// Posts a form as the console's own page would (this origin, this
    /// session's CSRF token).
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let mut form: Vec<(String, String)> = vec![("csrf".into(), self.csrf.clone())];
        form.extend(
            fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let origin = self.origin.clone();
        self.b.post_form(path, &form, Some(&origin)).await
    }

    /// Posts a form exactly as given (no token added), from `origin`.
    pub async fn post_raw(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        origin: Option<&str>,
    ) -> reqwest::Response {
        let form: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.b.post_form(path, &form, origin).await
    }
}

#[tokio::test]
async fn signing_in_goes_through_authorize_and_the_browser_holds_only_the_session() {
    let app = spawn_app().await;
    create_user(&app, "ops@example.com", &["api_keys:read"]).await;
    let mut c = Console::sign_in(&app, "ops@example.com").await;
    // The browser's cookies: the session, and nothing that holds a token.
    let session =
        c.b.cookie("tessera_session")
            .expect("the session cookie")
            .clone();
    assert!(
        c.b.cookie("tessera_console_signin").is_none(),
        "the sign-in cookie is gone"
    );
    assert!(!session.starts_with("eyJ"));
    // Every cookie the browser holds: the session, and the sign-in form's
    // CSRF cookie (a random value, not a token).
    assert_eq!(c.b.cookie_names(), ["tessera_csrf", "tessera_session"]);
    let (status, html) = c.page("/console").await;
    assert_eq!(status, 200);
    assert!(html.contains("ops@example.com"), "{html}");
    assert!(
        html.contains("href=\"/console/apps\""),
        "api_keys:read opens Applications"
    );
    assert!(
        !html.contains("href=\"/console/users\""),
        "users:manage is not held"
    );
    assert!(!html.contains("eyJ"), "no token in the page");

    let res = c.b.get("/console").await;
    let h = res.headers();
    let csp = h.get("content-security-policy").unwrap().to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(h.get("x-frame-options").unwrap(), "DENY");
    assert_eq!(h.get("cache-control").unwrap(), "no-store");
    assert!(h.get("referrer-policy").is_some());

    // Signing out ends the session: the same cookie no longer opens pages.
    let res = c.post("/console/logout", &[]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/console/signed-out");
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = no_redirects
        .get(app.url("/console"))
        .header("cookie", format!("tessera_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "the old cookie leads to sign-in");
}

#[tokio::test]
async fn a_form_without_the_token_or_from_elsewhere_is_refused() {
    let app = spawn_app().await;
    create_user(&app, "ops@example.com", &["api_keys:read"]).await;
    let mut c = Console::sign_in(&app, "ops@example.com").await;
    let origin = app.url("");
    let here = Some(origin.as_str());
    let csrf = c.csrf.clone();
    for (what, fields, from) in [
        ("no token", vec![], here),
        ("a wrong token", vec![("csrf", "x".repeat(43))], here),
        (
            "another origin",
            vec![("csrf", csrf.clone())],
            Some("https://evil.example"),
        ),
        ("no origin", vec![("csrf", csrf.clone())], None),
    ] {
        let f: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let res = c.post_raw("/console/logout", &f, from).await;
        assert_eq!(res.status(), 403, "{what}");
        let html = res.text().await.unwrap();
        assert!(html.contains("This form was refused"), "{what}: {html}");
    }
    // None of them signed the person out.
    assert_eq!(c.page("/console").await.0, 200);
    // Another session's token does not fit this one.
    let mut other = Console::sign_in(&app, "ops@example.com").await;
    let res = other
        .post_raw("/console/logout", &[("csrf", &csrf)], here)
        .await;
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn a_callback_this_browser_did_not_start_is_refused() {
    let app = spawn_app().await;
    let mut b = Browser::new(&app);
    let res = b.get("/console/callback?code=abc&state=def").await;
    assert_eq!(res.status(), 400);
    let html = res.text().await.unwrap();
    assert!(html.contains("did not start this sign-in"), "{html}");
    // Off-site return paths are never followed.
    let res = b.get("/console/login?return_to=//evil.example/x").await;
    assert_eq!(res.status(), 303);
    let pending = b.cookie("tessera_console_signin").unwrap().clone();
    assert!(!pending.contains("evil"));
}

#[tokio::test]
async fn a_session_from_another_client_still_goes_through_the_consoles_own_sign_in() {
    let app = spawn_app().await;
    create_user(&app, "ops@example.com", &["api_keys:read"]).await;
    let mut b = Browser::new(&app);
    // Signed in through the command line's client, not the console's.
    crate::people::code_for(&mut b, &app, "ops@example.com", "openid").await;
    let res = b.get("/console/apps").await;
    assert_eq!(res.status(), 303, "no console sign-in yet on this gateway");
    let login = location(&res);
    assert!(login.starts_with("/console/login?"), "{login}");
    let res = b.get(&login).await;
    let authorize = location(&res);
    // The session exists: the authorization server answers at once.
    let res = b.get(&authorize).await;
    assert_eq!(res.status(), 303, "no sign-in form this time");
    let callback = location(&res);
    assert!(callback.contains("/console/callback?code="), "{callback}");
    let res = b.get(&callback).await;
    assert_eq!(location(&res), "/console/apps");
    let res = b.get("/console/apps").await;
    assert_eq!(res.status(), 200);
    // The answer is spent: loading it again does nothing.
    let res = b.get(&callback).await;
    assert_eq!(res.status(), 400);
}
