//! Single sign-on against a provider the test controls (docs/api.md, "Single sign-on", "People"): a
//! small HTTP server serving discovery, a JWKS and a token endpoint that
//! hands out whatever ID token the test crafted for a code. The whole chain
//! runs over HTTP, redirects followed by hand. Every way a hostile provider
//! (or a hostile page) can try to slip a sign-in through is refused with a
//! page; a good token signs in, completes the pending authorization request
//! and is exchanged for an access token.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::SecretString;
use serde_json::{Value, json};
use tessera::config::{IdpSettings, RoleMapping};
use tessera::crypto::opaque::pkce_s256;

use crate::helpers::{TestApp, call, claims_of, ok, spawn_with};
use crate::people::{Browser, VERIFIER, authorize_path, create_user, redeem};

const CLIENT_ID: &str = "tessera-at-idp";
const CLIENT_SECRET: &str = "idp-client-secret-0123";
const CLI_REDIRECT: &str = "http://127.0.0.1:49152/callback";
const TX_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// What the provider saw and will answer.
#[derive(Default)]
struct Seen {
    /// code → the ID token to return for it.
    codes: HashMap<String, String>,
    /// The form of every token request, with `authorization` added.
    token_requests: Vec<HashMap<String, String>>,
}

struct Idp {
    base: String,
    seen: Arc<Mutex<Seen>>,
    jwks_hits: Arc<AtomicUsize>,
    /// While set, discovery answers 503.
    down: Arc<std::sync::atomic::AtomicBool>,
    key: EncodingKey,
    rogue: EncodingKey,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for Idp {
    fn drop(&mut self) {
        std::mem::drop(self.handle.stop(false));
    }
}

fn ec_key() -> (EncodingKey, Value) {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref();
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": "k1",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    });
    (EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
}

/// Starts the provider. Each tenant `t` is its own issuer `{base}/{t}`.
async fn start_idp() -> Idp {
    let (key, jwk) = ec_key();
    let (rogue, _) = ec_key();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let jwks_hits = Arc::new(AtomicUsize::new(0));
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s2, h2, jwk2, d2) = (seen.clone(), jwks_hits.clone(), jwk.clone(), down.clone());
    let server = HttpServer::new(move || {
        let (seen, hits, jwk, down) = (s2.clone(), h2.clone(), jwk2.clone(), d2.clone());
        App::new()
            .route(
                "/{t}/.well-known/openid-configuration",
                web::get().to(move |req: HttpRequest, t: web::Path<String>| {
                    let down = down.load(Ordering::SeqCst);
                    async move {
                        if down {
                            return HttpResponse::ServiceUnavailable().finish();
                        }
                        let base = format!("http://{}/{t}", req.connection_info().host());
                        // Tenant `post` wants the secret in the body.
                        let auth = if t.as_str() == "post" {
                            "client_secret_post"
                        } else {
                            "client_secret_basic"
                        };
                        HttpResponse::Ok().json(json!({
                            "issuer": base,
                            "authorization_endpoint": format!("{base}/authorize"),
                            "token_endpoint": format!("{base}/token"),
                            "jwks_uri": format!("{base}/jwks"),
                            "token_endpoint_auth_methods_supported": [auth],
                            "id_token_signing_alg_values_supported": ["ES256"],
                        }))
                    }
                }),
            )
            .route(
                "/{t}/jwks",
                web::get().to(move || {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let body = json!({"keys": [jwk.clone()]});
                    async move { HttpResponse::Ok().json(body) }
                }),
            )
            .route(
                "/{t}/token",
                web::post().to(
                    move |req: HttpRequest, form: web::Form<HashMap<String, String>>| {
                        let seen = seen.clone();
                        async move {
                            let mut f = form.into_inner();
                            if let Some(a) = req.headers().get("authorization") {
                                f.insert("authorization".into(), a.to_str().unwrap().into());
                            }
                            let mut s = seen.lock().unwrap();
                            let token = f.get("code").and_then(|c| s.codes.remove(c));
                            s.token_requests.push(f);
                            match token {
                                Some(t) => HttpResponse::Ok().json(
                                    json!({"access_token": "at", "token_type": "Bearer", "id_token": t}),
                                ),
                                None => HttpResponse::BadRequest()
                                    .json(json!({"error": "invalid_grant"})),
                            }
                        }
                    },
                ),
            )
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    Idp {
        base: format!("http://127.0.0.1:{port}"),
        seen,
        jwks_hits,
        down,
        key,
        rogue,
        handle,
    }
}

impl Idp {
    fn issuer(&self, tenant: &str) -> String {
        format!("{}/{tenant}", self.base)
    }

    fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("k1".into());
        jsonwebtoken::encode(&h, claims, &self.key).unwrap()
    }

    /// Claims a provider would send for `tenant`, person `sub`.
    fn claims(&self, tenant: &str, sub: &str, email: &str, verified: bool, nonce: &str) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "iss": self.issuer(tenant), "aud": CLIENT_ID, "sub": sub, "iat": now, "exp": now + 300,
            "nonce": nonce, "email": email, "email_verified": verified, "name": "Upstream Person",
        })
    }

    fn will_answer(&self, code: &str, id_token: String) {
        self.seen
            .lock()
            .unwrap()
            .codes
            .insert(code.to_owned(), id_token);
    }
}

fn provider(idp: &Idp, name: &str) -> IdpSettings {
    IdpSettings {
        name: name.into(),
        display_name: Some(format!("{name} SSO")),
        issuer: idp.issuer(name),
        client_id: CLIENT_ID.into(),
        client_secret: Some(SecretString::from(CLIENT_SECRET)),
        scopes: vec!["openid".into(), "email".into(), "groups".into()],
        groups_claim: "groups".into(),
        create_users: false,
        allowed_domains: vec![],
        link_by_verified_email: false,
        token_exchange: false,
        role_map: vec![],
    }
}

async fn gateway(idps: Vec<IdpSettings>) -> TestApp {
    spawn_with(move |s| s.idp = idps).await
}

fn query_of(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn location(res: &reqwest::Response) -> String {
    res.headers()["location"].to_str().unwrap().to_owned()
}

/// Starts a sign-on at `name` in browser `b`; returns the provider's
/// authorization request.
async fn begin(b: &mut Browser, idp: &Idp, name: &str) -> HashMap<String, String> {
    let res = b.get(&format!("/sso/{name}/login")).await;
    assert_eq!(res.status(), 302, "{}", res.text().await.unwrap());
    let loc = location(&res);
    assert!(
        loc.starts_with(&format!("{}/authorize?", idp.issuer(name))),
        "{loc}"
    );
    query_of(&loc)
}

/// Completes the callback with `id_token` for the request `q`.
async fn complete(
    b: &mut Browser,
    idp: &Idp,
    app: &TestApp,
    name: &str,
    q: &HashMap<String, String>,
    id_token: String,
) -> reqwest::Response {
    let code = format!("code-{}", q["state"]);
    idp.will_answer(&code, id_token);
    b.get(&callback(app, name, &code, &q["state"])).await
}

fn callback(app: &TestApp, name: &str, code: &str, state: &str) -> String {
    let mut u = url::Url::parse(&app.url(&format!("/sso/{name}/callback"))).unwrap();
    u.query_pairs_mut()
        .append_pair("code", code)
        .append_pair("state", state);
    u.to_string()
}

/// A refusal page: HTML, the status, the words, no session cookie.
async fn refused_page(res: reqwest::Response, status: u16, words: &str) {
    assert_eq!(res.status(), status);
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/html"), "{ct}");
    let set: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        !set.iter().any(|c| c.starts_with("tessera_session=")),
        "{set:?}"
    );
    let html = res.text().await.unwrap();
    assert!(html.contains(words), "{words}: {html}");
    assert!(!html.contains("<script"), "{html}");
}

async fn audit_text(app: &TestApp) -> String {
    ok(
        call(app, reqwest::Method::GET, "/api/v1/audit?limit=200", None).await,
        200,
    )
    .await
    .to_string()
}

#[tokio::test]
async fn a_good_id_token_signs_in_and_completes_the_authorize_request() {
    let idp = start_idp().await;
    let mut corp = provider(&idp, "corp");
    corp.link_by_verified_email = true;
    let app = gateway(vec![corp]).await;
    let uid = create_user(&app, "ada@example.com", &["content:read"]).await;

    // The sign-in page offers the provider.
    let mut b = Browser::new(&app);
    let authorize = authorize_path("tessera-cli", CLI_REDIRECT, "openid content:read", "st-9");
    let page = b.get(&authorize).await;
    let html = page.text().await.unwrap();
    assert!(html.contains("Sign in with corp SSO"), "{html}");
    assert!(html.contains("href=\"/sso/corp/login?return_to="), "{html}");

    // idp=corp goes straight to the provider, with PKCE, state and nonce.
    let res = b.get(&format!("{authorize}&idp=corp")).await;
    assert_eq!(res.status(), 302);
    let q = query_of(&location(&res));
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["redirect_uri"], app.url("/sso/corp/callback"));
    assert!(q["state"].len() >= 43 && q["nonce"].len() >= 43 && q["state"] != q["nonce"]);
    assert!(q["scope"].split(' ').any(|w| w == "openid"));

    let token = idp.sign(&idp.claims("corp", "ada-at-corp", "ada@example.com", true, &q["nonce"]));
    let cb = callback(&app, "corp", "c-good", &q["state"]);
    idp.will_answer("c-good", token);
    let res = b.get(&cb).await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    assert!(b.cookie("tessera_session").is_some());
    let resume = location(&res);
    assert!(resume.starts_with("/oauth/authorize?"), "{resume}");
    assert!(!resume.contains("idp="), "{resume}");

    // The provider was asked with our secret (Basic) and the PKCE verifier.
    {
        let seen = idp.seen.lock().unwrap();
        let f = seen.token_requests.last().unwrap();
        assert_eq!(f["grant_type"], "authorization_code");
        assert_eq!(f["redirect_uri"], app.url("/sso/corp/callback"));
        assert_eq!(pkce_s256(&f["code_verifier"]), q["code_challenge"]);
        assert!(f["authorization"].starts_with("Basic "));
        assert!(!f.contains_key("client_secret"));
    }

    // The pending authorization request completes with a code.
    let res = b.get(&resume).await;
    assert_eq!(res.status(), 303);
    let back = location(&res);
    assert!(back.starts_with(CLI_REDIRECT), "{back}");
    let code = query_of(&back)["code"].clone();
    assert_eq!(query_of(&back)["state"], "st-9");
    let t: Value = redeem(&app, &code, Some(VERIFIER))
        .await
        .json()
        .await
        .unwrap();
    let c = claims_of(t["access_token"].as_str().unwrap());
    assert_eq!(c["sub"], uid.as_str());
    assert_eq!(c["amr"], json!(["fed"]));
    assert_eq!(c["idp"], "corp");

    // The identity is now linked; a replayed state is refused.
    let u = ok(
        call(
            &app,
            reqwest::Method::GET,
            &format!("/api/v1/users/{uid}"),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(u["identities"][0]["idp"], "corp");
    assert_eq!(u["identities"][0]["subject"], "ada-at-corp");
    refused_page(b.get(&cb).await, 400, "expired or was already used").await;

    // Without anywhere to return to: a small signed-in page.
    let q = begin(&mut b, &idp, "corp").await;
    let token = idp.sign(&idp.claims("corp", "ada-at-corp", "ada@example.com", true, &q["nonce"]));
    let res = complete(&mut b, &idp, &app, "corp", &q, token).await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("ada@example.com"));

    let audit = audit_text(&app).await;
    assert!(
        audit.contains("sso.signin") && audit.contains("sso.link"),
        "{audit}"
    );
    assert!(audit.contains("bad_state"), "{audit}");
    assert!(!audit.contains("eyJ"), "no token in the audit log");

    // An unknown provider is a 404 page.
    refused_page(b.get("/sso/nope/login").await, 404, "No identity provider").await;
}

#[tokio::test]
async fn hostile_answers_are_refused() {
    let idp = start_idp().await;
    let mut corp = provider(&idp, "corp");
    corp.link_by_verified_email = true;
    let app = gateway(vec![corp]).await;
    create_user(&app, "ada@example.com", &[]).await;
    let now = chrono::Utc::now().timestamp();

    type Forge = Box<dyn Fn(&Idp, Value) -> String>;
    let signed = |f: fn(&mut Value)| -> Forge {
        Box::new(move |idp: &Idp, mut c: Value| {
            f(&mut c);
            idp.sign(&c)
        })
    };
    let cases: Vec<(&str, Forge)> = vec![
        ("wrong aud", signed(|c| c["aud"] = json!("someone-else"))),
        (
            "wrong iss",
            signed(|c| c["iss"] = json!("http://127.0.0.1:1/corp")),
        ),
        (
            "expired",
            signed(|c| c["exp"] = json!(chrono::Utc::now().timestamp() - 3600)),
        ),
        (
            "nonce mismatch",
            signed(|c| c["nonce"] = json!("not-the-nonce")),
        ),
        (
            "several audiences without azp",
            signed(|c| c["aud"] = json!([CLIENT_ID, "other"])),
        ),
        (
            "iat in the future",
            signed(|c| c["iat"] = json!(chrono::Utc::now().timestamp() + 3600)),
        ),
        (
            "alg none",
            Box::new(|_: &Idp, c: Value| {
                let h = json!({"alg": "none", "typ": "JWT", "kid": "k1"});
                format!(
                    "{}.{}.",
                    URL_SAFE_NO_PAD.encode(h.to_string()),
                    URL_SAFE_NO_PAD.encode(c.to_string())
                )
            }),
        ),
        (
            "HS256 with the client secret",
            Box::new(|_: &Idp, c: Value| {
                let mut h = Header::new(Algorithm::HS256);
                h.kid = Some("k1".into());
                jsonwebtoken::encode(&h, &c, &EncodingKey::from_secret(CLIENT_SECRET.as_bytes()))
                    .unwrap()
            }),
        ),
        (
            "a key not in its JWKS, named as its key",
            Box::new(|idp: &Idp, c: Value| {
                let mut h = Header::new(Algorithm::ES256);
                h.kid = Some("k1".into());
                jsonwebtoken::encode(&h, &c, &idp.rogue).unwrap()
            }),
        ),
        (
            "a key not in its JWKS, under its own kid",
            Box::new(|idp: &Idp, c: Value| {
                let mut h = Header::new(Algorithm::ES256);
                h.kid = Some("rogue".into());
                jsonwebtoken::encode(&h, &c, &idp.rogue).unwrap()
            }),
        ),
    ];
    for (what, forge) in &cases {
        let mut b = Browser::new(&app);
        let q = begin(&mut b, &idp, "corp").await;
        let claims = idp.claims("corp", "ada-at-corp", "ada@example.com", true, &q["nonce"]);
        let res = complete(&mut b, &idp, &app, "corp", &q, forge(&idp, claims)).await;
        assert_eq!(res.status(), 400, "{what}");
        refused_page(res, 400, "could not be verified").await;
    }
    // Unknown kids refetch the key set, but rate-limited: not once per token.
    let hits = idp.jwks_hits.load(Ordering::SeqCst);
    assert!(hits <= 3, "the JWKS was fetched {hits} times");

    // A state started in one browser cannot be completed in another.
    let mut victim = Browser::new(&app);
    let q = begin(&mut victim, &idp, "corp").await;
    let mut attacker = Browser::new(&app);
    let token = idp.sign(&idp.claims("corp", "ada-at-corp", "ada@example.com", true, &q["nonce"]));
    let res = complete(&mut attacker, &idp, &app, "corp", &q, token).await;
    refused_page(res, 400, "another browser").await;

    // The provider's own error is a page too.
    let mut b = Browser::new(&app);
    let q = begin(&mut b, &idp, "corp").await;
    let mut u = url::Url::parse(&app.url("/sso/corp/callback")).unwrap();
    u.query_pairs_mut()
        .append_pair("error", "access_denied")
        .append_pair("state", &q["state"]);
    refused_page(b.get(u.as_str()).await, 400, "did not sign you in").await;

    // Nothing got through: no session anywhere, and every refusal audited.
    let audit = audit_text(&app).await;
    assert!(!audit.contains("sso.signin"), "{audit}");
    for reason in ["bad_id_token", "other_browser", "provider_error"] {
        assert!(audit.contains(reason), "{reason}: {audit}");
    }
    let _ = now;
}

#[tokio::test]
async fn identities_are_linked_or_created_only_as_configured() {
    let idp = start_idp().await;
    let closed = provider(&idp, "closed");
    let mut linking = provider(&idp, "linking");
    linking.link_by_verified_email = true;
    let mut jit = provider(&idp, "jit");
    jit.create_users = true;
    jit.allowed_domains = vec!["example.com".into()];
    let app = gateway(vec![closed, linking, jit]).await;
    let bob = create_user(&app, "bob@example.com", &[]).await;

    let attempt = |tenant: &'static str, sub: &'static str, email: &'static str, verified: bool| {
        let (idp, app) = (&idp, &app);
        async move {
            let mut b = Browser::new(app);
            let q = begin(&mut b, idp, tenant).await;
            let token = idp.sign(&idp.claims(tenant, sub, email, verified, &q["nonce"]));
            complete(&mut b, idp, app, tenant, &q, token).await
        }
    };

    // create_users off, no link: an unknown identity is refused, even with
    // an existing user's verified email.
    refused_page(
        attempt("closed", "s-bob", "bob@example.com", true).await,
        403,
        "not linked",
    )
    .await;
    // Linking by email needs the provider to have verified it.
    refused_page(
        attempt("linking", "s-bob", "bob@example.com", false).await,
        403,
        "not verified",
    )
    .await;
    assert_eq!(
        attempt("linking", "s-bob", "bob@example.com", true)
            .await
            .status(),
        200
    );
    // The link is by (provider, sub): the same sub elsewhere is nobody, and
    // another sub with bob's email at `closed` is still refused.
    refused_page(
        attempt("closed", "s-bob", "bob@example.com", true).await,
        403,
        "not linked",
    )
    .await;
    // Linked now: even a changed email at the provider signs bob in.
    assert_eq!(
        attempt("linking", "s-bob", "renamed@example.org", false)
            .await
            .status(),
        200
    );

    // Just-in-time creation: only verified, only allowed domains.
    refused_page(
        attempt("jit", "s-eve", "eve@evil.example", true).await,
        403,
        "email domain",
    )
    .await;
    refused_page(
        attempt("jit", "s-new", "new@example.com", false).await,
        403,
        "not verified",
    )
    .await;
    assert_eq!(
        attempt("jit", "s-new", "new@example.com", true)
            .await
            .status(),
        200
    );
    // bob exists and jit does not link: refused, never taken over.
    refused_page(
        attempt("jit", "s-bob2", "bob@example.com", true).await,
        403,
        "already has",
    )
    .await;

    let users = ok(
        call(&app, reqwest::Method::GET, "/api/v1/users", None).await,
        200,
    )
    .await;
    let all = users["data"].as_array().unwrap();
    let new = all
        .iter()
        .find(|u| u["email"] == "new@example.com")
        .unwrap();
    assert_eq!(new["status"], "active");
    assert_eq!(new["hasPassword"], false);
    assert_eq!(
        new["identities"],
        json!([{"idp": "jit", "subject": "s-new", "email": "new@example.com"}])
    );
    let b = all.iter().find(|u| u["id"] == bob.as_str()).unwrap();
    assert_eq!(b["identities"].as_array().unwrap().len(), 1);

    // A disabled user is refused.
    ok(
        call(
            &app,
            reqwest::Method::PATCH,
            &format!("/api/v1/users/{bob}"),
            Some(json!({"status": "disabled"})),
        )
        .await,
        200,
    )
    .await;
    refused_page(
        attempt("linking", "s-bob", "bob@example.com", true).await,
        403,
        "disabled",
    )
    .await;

    let audit = audit_text(&app).await;
    for reason in [
        "unknown_identity",
        "unverified_email",
        "domain_not_allowed",
        "email_taken",
        "disabled",
    ] {
        assert!(audit.contains(reason), "{reason}");
    }
}

#[tokio::test]
async fn the_role_map_adds_and_takes_back_only_its_own_roles() {
    let idp = start_idp().await;
    let mut corp = provider(&idp, "corp");
    corp.link_by_verified_email = true;
    corp.role_map = vec![
        RoleMapping {
            group: "ops".into(),
            roles: vec!["ops".into(), "kept".into()],
        },
        RoleMapping {
            group: "ghosts".into(),
            roles: vec!["no-such-role".into()],
        },
    ];
    let app = gateway(vec![corp]).await;
    for (name, perm) in [("ops", "workloads:write"), ("kept", "content:read")] {
        ok(
            call(
                &app,
                reqwest::Method::POST,
                "/api/v1/roles",
                Some(json!({"name": name, "permissions": [perm]})),
            )
            .await,
            201,
        )
        .await;
    }
    let uid = create_user(&app, "ada@example.com", &[]).await;
    // An administrator grants `kept` directly.
    ok(
        call(
            &app,
            reqwest::Method::PATCH,
            &format!("/api/v1/users/{uid}"),
            Some(json!({"roles": ["kept"]})),
        )
        .await,
        200,
    )
    .await;
    let sign_in = |groups: Value| {
        let (idp, app) = (&idp, &app);
        async move {
            let mut b = Browser::new(app);
            let q = begin(&mut b, idp, "corp").await;
            let mut c = idp.claims("corp", "ada-sub", "ada@example.com", true, &q["nonce"]);
            c["groups"] = groups;
            let res = complete(&mut b, idp, app, "corp", &q, idp.sign(&c)).await;
            assert_eq!(res.status(), 200);
        }
    };
    let roles = || async {
        let u = ok(
            call(
                &app,
                reqwest::Method::GET,
                &format!("/api/v1/users/{uid}"),
                None,
            )
            .await,
            200,
        )
        .await;
        let mut r: Vec<String> = serde_json::from_value(u["roles"].clone()).unwrap();
        r.sort();
        (r, u["identities"][0]["roles"].clone())
    };

    sign_in(json!(["ops", "ghosts", "other"])).await;
    let (r, granted) = roles().await;
    assert_eq!(r, vec!["kept", "ops"]);
    // Only what the map added is remembered as its own.
    assert_eq!(granted, json!(["ops"]));

    sign_in(json!(["other"])).await;
    let (r, granted) = roles().await;
    assert_eq!(r, vec!["kept"], "the map's role went, the admin's stayed");
    assert_eq!(granted, Value::Null);

    sign_in(json!("ops")).await;
    assert_eq!(roles().await.0, vec!["kept", "ops"]);

    let audit = audit_text(&app).await;
    assert!(
        audit.contains("sso:corp"),
        "role changes are audited as the provider's"
    );
}

#[tokio::test]
async fn upstream_id_tokens_are_exchanged_for_the_linked_user() {
    let idp = start_idp().await;
    let mut corp = provider(&idp, "corp");
    corp.token_exchange = true;
    corp.link_by_verified_email = true;
    corp.role_map = vec![RoleMapping {
        group: "readers".into(),
        roles: vec!["reader".into()],
    }];
    let mut quiet = provider(&idp, "quiet");
    quiet.link_by_verified_email = true;
    let app = gateway(vec![corp, quiet]).await;
    ok(
        call(
            &app,
            reqwest::Method::POST,
            "/api/v1/roles",
            Some(json!({"name": "reader", "permissions": ["content:read"]})),
        )
        .await,
        201,
    )
    .await;
    let uid = create_user(&app, "ada@example.com", &[]).await;
    let (broker, secret) = app
        .create_app(
            json!({"name": "broker", "permissions": ["content:read"], "grantTypes": [TX_GRANT]}),
        )
        .await;
    let broker = broker["id"].as_str().unwrap().to_owned();

    let post = |subject: String, ty: &'static str| {
        let (app, broker, secret) = (&app, broker.clone(), secret.clone());
        async move {
            let res = app
                .client
                .post(app.url("/oauth/token"))
                .basic_auth(&broker, Some(&secret))
                .form(&[
                    ("grant_type", TX_GRANT),
                    ("subject_token", subject.as_str()),
                    ("subject_token_type", ty),
                ])
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap())
        }
    };
    let id_token = |tenant: &str, sub: &str, email: &str, aud: &str| {
        let now = chrono::Utc::now().timestamp();
        idp.sign(&json!({
            "iss": idp.issuer(tenant), "aud": aud, "sub": sub, "iat": now, "exp": now + 300,
            "email": email, "email_verified": true, "groups": ["readers"],
        }))
    };

    let (status, t) = post(
        id_token("corp", "ada-sub", "ada@example.com", CLIENT_ID),
        "urn:ietf:params:oauth:token-type:id_token",
    )
    .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(
        t["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert!(t.get("refresh_token").is_none());
    let c = claims_of(t["access_token"].as_str().unwrap());
    assert_eq!(c["sub"], uid.as_str());
    assert_eq!(c["client_id"], broker.as_str());
    assert_eq!(c["idp"], "corp");
    assert_eq!(c["amr"], json!(["fed"]));
    assert_eq!(c["roles"], json!(["reader"]), "role map applied");
    assert!(c.get("sid").is_none());

    // `:jwt` is accepted as well.
    let (status, _) = post(
        id_token("corp", "ada-sub", "ada@example.com", CLIENT_ID),
        "urn:ietf:params:oauth:token-type:jwt",
    )
    .await;
    assert_eq!(status, 200);

    // Refused: another audience, a provider without token_exchange, an
    // identity linked to nobody (no creation: create_users is off).
    let (status, e) = post(
        id_token("corp", "ada-sub", "ada@example.com", "someone-else"),
        "urn:ietf:params:oauth:token-type:id_token",
    )
    .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, e) = post(
        id_token("quiet", "ada-sub", "ada@example.com", CLIENT_ID),
        "urn:ietf:params:oauth:token-type:id_token",
    )
    .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, e) = post(
        id_token("corp", "stranger", "stranger@example.com", CLIENT_ID),
        "urn:ietf:params:oauth:token-type:id_token",
    )
    .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (400, Some("invalid_request")),
        "an identity linked to nobody is refused by policy (RFC 8693 §2.2.2): {e}"
    );
    assert!(
        e["error_description"]
            .as_str()
            .unwrap()
            .contains("identity"),
        "{e}"
    );
    // A forged token (signed by a key the provider never published).
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("k1".into());
    let now = chrono::Utc::now().timestamp();
    let forged = jsonwebtoken::encode(
        &h,
        &json!({"iss": idp.issuer("corp"), "aud": CLIENT_ID, "sub": "ada-sub", "iat": now, "exp": now + 300}),
        &idp.rogue,
    )
    .unwrap();
    let (status, e) = post(forged, "urn:ietf:params:oauth:token-type:id_token").await;
    assert_eq!(
        (status, e["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

#[tokio::test]
async fn a_provider_down_at_start_is_used_once_it_is_up_and_post_auth_is_honoured() {
    let idp = start_idp().await;
    idp.down.store(true, Ordering::SeqCst);
    let mut post = provider(&idp, "post");
    post.create_users = true;
    post.allowed_domains = vec!["example.com".into()];
    // The gateway starts although the provider cannot be discovered.
    let app = gateway(vec![post]).await;
    let mut b = Browser::new(&app);
    refused_page(b.get("/sso/post/login").await, 502, "could not be reached").await;

    idp.down.store(false, Ordering::SeqCst);
    // A failed discovery is retried after a short pause, not at every hit.
    tokio::time::sleep(std::time::Duration::from_millis(5200)).await;
    let q = begin(&mut b, &idp, "post").await;
    let token = idp.sign(&idp.claims("post", "p-1", "pat@example.com", true, &q["nonce"]));
    let res = complete(&mut b, &idp, &app, "post", &q, token).await;
    assert_eq!(res.status(), 200);
    let seen = idp.seen.lock().unwrap();
    let f = seen.token_requests.last().unwrap();
    assert_eq!(f["client_id"], CLIENT_ID);
    assert_eq!(f["client_secret"], CLIENT_SECRET);
    assert!(!f.contains_key("authorization"));
}

// Security review: each test below failed before the fix it names.

/// Unicode case folding: `K` (KELVIN SIGN) lowercases to ASCII `k`, so a
/// provider-verified `\u{212A}evin@…` (another mailbox) must never reach
/// kevin@…'s account, by linking or by creating.
#[tokio::test]
async fn a_unicode_lookalike_email_never_links_or_creates() {
    let idp = start_idp().await;
    let mut linking = provider(&idp, "linking");
    linking.link_by_verified_email = true;
    linking.create_users = true;
    linking.allowed_domains = vec!["example.com".into()];
    let app = gateway(vec![linking]).await;
    let kevin = create_user(&app, "kevin@example.com", &[]).await;
    let attempt = |sub: &'static str, email: &'static str| {
        let (idp, app) = (&idp, &app);
        async move {
            let mut b = Browser::new(app);
            let q = begin(&mut b, idp, "linking").await;
            let token = idp.sign(&idp.claims("linking", sub, email, true, &q["nonce"]));
            complete(&mut b, idp, app, "linking", &q, token).await
        }
    };
    refused_page(
        attempt("s-evil", "\u{212A}evin@example.com").await,
        403,
        "not verified",
    )
    .await;
    refused_page(
        attempt("s-evil2", "zo\u{212A}@example.com").await,
        403,
        "not verified",
    )
    .await;
    let users = ok(
        call(&app, reqwest::Method::GET, "/api/v1/users", None).await,
        200,
    )
    .await;
    let all = users["data"].as_array().unwrap();
    let k = all.iter().find(|u| u["id"] == kevin.as_str()).unwrap();
    assert_eq!(k["identities"], json!([]), "{k}");
    assert!(!all.iter().any(|u| u["email"] == "zok@example.com"));
    // ASCII case differences are the same mailbox, and still link.
    assert_eq!(attempt("s-kevin", "KEVIN@Example.com").await.status(), 200);
}

/// An identity is (provider, `sub`): once a user is linked at a provider,
/// another `sub` there carrying the same email (the address reassigned to
/// someone else at the provider) is not linked to the same user.
#[tokio::test]
async fn a_second_subject_at_a_provider_is_not_linked_by_email() {
    let idp = start_idp().await;
    let mut linking = provider(&idp, "linking");
    linking.link_by_verified_email = true;
    let app = gateway(vec![linking]).await;
    let bob = create_user(&app, "bob@example.com", &[]).await;
    let attempt = |sub: &'static str| {
        let (idp, app) = (&idp, &app);
        async move {
            let mut b = Browser::new(app);
            let q = begin(&mut b, idp, "linking").await;
            let token = idp.sign(&idp.claims("linking", sub, "bob@example.com", true, &q["nonce"]));
            complete(&mut b, idp, app, "linking", &q, token).await
        }
    };
    assert_eq!(attempt("s-bob").await.status(), 200);
    refused_page(attempt("s-successor").await, 403, "not linked").await;
    let u = ok(
        call(
            &app,
            reqwest::Method::GET,
            &format!("/api/v1/users/{bob}"),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(u["identities"].as_array().unwrap().len(), 1, "{u}");
    // bob himself still signs in.
    assert_eq!(attempt("s-bob").await.status(), 200);
}

/// RFC 7515 §4.1.11: a `crit` header names extensions the recipient must
/// understand; we understand none, so such a token is refused.
#[tokio::test]
async fn an_id_token_with_crit_is_refused() {
    let idp = start_idp().await;
    let mut corp = provider(&idp, "corp");
    corp.link_by_verified_email = true;
    let app = gateway(vec![corp]).await;
    create_user(&app, "ada@example.com", &[]).await;
    let mut b = Browser::new(&app);
    let q = begin(&mut b, &idp, "corp").await;
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("k1".into());
    h.crit = Some(vec!["urn:example:must-understand".into()]);
    let claims = idp.claims("corp", "ada-sub", "ada@example.com", true, &q["nonce"]);
    let token = jsonwebtoken::encode(&h, &claims, &idp.key).unwrap();
    refused_page(
        complete(&mut b, &idp, &app, "corp", &q, token).await,
        400,
        "could not be verified",
    )
    .await;
}

/// The exchanged token never outlives the ID token it came from (as on the
/// Tessera-token path, which never outlives its subject token).
#[tokio::test]
async fn an_exchanged_id_token_bounds_the_new_tokens_lifetime() {
    let idp = start_idp().await;
    let mut corp = provider(&idp, "corp");
    corp.token_exchange = true;
    corp.link_by_verified_email = true;
    let app = gateway(vec![corp]).await;
    create_user(&app, "ada@example.com", &[]).await;
    let (broker, secret) = app
        .create_app(json!({"name": "broker", "permissions": [], "grantTypes": [TX_GRANT]}))
        .await;
    let broker = broker["id"].as_str().unwrap().to_owned();
    let now = chrono::Utc::now().timestamp();
    let id_exp = now + 40;
    let subject = idp.sign(&json!({
        "iss": idp.issuer("corp"), "aud": CLIENT_ID, "sub": "ada-sub", "iat": now, "exp": id_exp,
        "email": "ada@example.com", "email_verified": true,
    }));
    let res = app
        .client
        .post(app.url("/oauth/token"))
        .basic_auth(&broker, Some(&secret))
        .form(&[
            ("grant_type", TX_GRANT),
            ("subject_token", subject.as_str()),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:id_token",
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let t: Value = res.json().await.unwrap();
    let c = claims_of(t["access_token"].as_str().unwrap());
    assert!(c["exp"].as_i64().unwrap() <= id_exp, "{c} vs {id_exp}");
    assert!(t["expires_in"].as_i64().unwrap() <= 40, "{t}");
}

/// A provider's documents may move within its origin only: a redirect to
/// another port on the same host (a service beside the provider, or an
/// https-to-http downgrade) is not followed.
#[tokio::test]
async fn discovery_does_not_follow_a_redirect_to_another_port() {
    // It names the front's issuer, as a document from there would.
    let front_issuer = Arc::new(Mutex::new(String::new()));
    let fi = front_issuer.clone();
    let beside = HttpServer::new(move || {
        let fi = fi.clone();
        App::new().default_service(web::to(move || {
            let issuer = fi.lock().unwrap().clone();
            async move {
                HttpResponse::Ok().json(json!({
                "issuer": issuer,
                "authorization_endpoint": "http://127.0.0.1:9/authorize",
                "token_endpoint": "http://127.0.0.1:9/token",
                "jwks_uri": "http://127.0.0.1:9/jwks",
                }))
            }
        }))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let beside_port = beside.addrs()[0].port();
    let beside = beside.run();
    let beside_handle = beside.handle();
    tokio::spawn(beside);
    let hits = Arc::new(AtomicUsize::new(0));
    let h2 = hits.clone();
    let front = HttpServer::new(move || {
        let hits = h2.clone();
        App::new().default_service(web::to(move |req: HttpRequest| {
            hits.fetch_add(1, Ordering::SeqCst);
            let to = format!("http://127.0.0.1:{beside_port}{}", req.path());
            async move {
                HttpResponse::Found()
                    .insert_header(("location", to))
                    .finish()
            }
        }))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let front_port = front.addrs()[0].port();
    *front_issuer.lock().unwrap() = format!("http://127.0.0.1:{front_port}");
    let front = front.run();
    let front_handle = front.handle();
    tokio::spawn(front);
    let idp = start_idp().await;
    let mut hop = provider(&idp, "hop");
    hop.issuer = format!("http://127.0.0.1:{front_port}");
    let app = gateway(vec![hop]).await;
    let mut b = Browser::new(&app);
    let res = b.get("/sso/hop/login").await;
    assert!(hits.load(Ordering::SeqCst) > 0, "the provider was asked");
    refused_page(res, 502, "could not be reached").await;
    std::mem::drop(front_handle.stop(false));
    std::mem::drop(beside_handle.stop(false));
}
