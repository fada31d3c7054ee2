//! Single sign-on (docs/api.md, "Single sign-on", "People") against a real OpenID Connect provider:
//! oidc-provider on Node.js (tests/oidc), driven over HTTP through the
//! whole redirect chain by a browser played by hand.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::helpers::{TestApp, call, claims_of, ok, spawn_with, verify_with_jwks};
use crate::oidc_provider::{Browser, Landing, OidcProvider, query_of};
use crate::people::{VERIFIER, authorize_path, create_user, redeem};

/// The tests' own client at the provider (not the gateway).
const PROBE: &str = "probe";
const PROBE_SECRET: &str = "probe-secret-0123456789-abcdefghijklmnop";
/// Never served: the browser stops at the redirect and reads the code.
const PROBE_REDIRECT: &str = "http://127.0.0.1:9/probe/callback";

fn probe_client() -> Value {
    json!({
        "client_id": PROBE,
        "client_secret": PROBE_SECRET,
        "redirect_uris": [PROBE_REDIRECT],
    })
}

/// Verifies an ID token against the provider's own JWKS, as a relying
/// party would.
async fn verify_at_provider(idp: &OidcProvider, token: &str, aud: &str) -> Value {
    let jwks = reqwest::get(idp.url("/jwks"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&jwks).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    let jwk = set.find(header.kid.as_deref().unwrap()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_issuer(&[&idp.issuer]);
    v.set_audience(&[aud]);
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .unwrap()
        .claims
}

#[tokio::test]
async fn the_provider_alone_signs_its_own_client_in() {
    let idp = OidcProvider::start(&json!({
        "accounts": {"ada": {"email": "ada@example.com", "email_verified": true,
                             "name": "Ada", "groups": ["platform-admins"]}},
        "clients": [probe_client()],
    }))
    .await;
    let disco: Value = reqwest::get(idp.url("/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(disco["issuer"], idp.issuer);
    assert_eq!(disco["code_challenge_methods_supported"], json!(["S256"]));

    // PKCE is required, even of a confidential client.
    let mut b = Browser::new();
    let mut no_pkce =
        url::Url::parse(&idp.authorize_url(PROBE, PROBE_REDIRECT, "openid", "n")).unwrap();
    let kept: Vec<(String, String)> = no_pkce
        .query_pairs()
        .filter(|(k, _)| !k.starts_with("code_challenge"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    no_pkce.query_pairs_mut().clear().extend_pairs(kept);
    let loc = b.follow(no_pkce.as_str(), PROBE_REDIRECT).await.redirect();
    assert_eq!(query_of(&loc)["error"], "invalid_request", "{loc}");

    // An unknown account is refused at the form.
    let start = idp.authorize_url(PROBE, PROBE_REDIRECT, "openid", "n");
    let (_, status, body) = idp
        .sign_in(&mut Browser::new(), &start, "nobody", PROBE_REDIRECT)
        .await
        .page();
    assert_eq!(status, 200);
    assert!(body.contains("unknown account"), "{body}");

    let t = idp
        .id_token_for(
            PROBE,
            PROBE_SECRET,
            PROBE_REDIRECT,
            "ada",
            "openid email profile groups",
        )
        .await;
    let c = verify_at_provider(&idp, t["id_token"].as_str().unwrap(), PROBE).await;
    assert_eq!(c["sub"], "ada");
    assert_eq!(c["email"], "ada@example.com");
    assert_eq!(c["email_verified"], true);
    assert_eq!(c["groups"], json!(["platform-admins"]));
    assert_eq!(c["nonce"], "n-provider");

    // The directory is read at every sign-in: a group removed shows at once.
    idp.edit(|d| d["accounts"]["ada"]["groups"] = json!([]));
    let t = idp
        .id_token_for(PROBE, PROBE_SECRET, PROBE_REDIRECT, "ada", "openid groups")
        .await;
    let c = verify_at_provider(&idp, t["id_token"].as_str().unwrap(), PROBE).await;
    assert_eq!(c["groups"], json!([]));
}

// ---------------------------------------------------------------------------
// The gateway signing people in through the provider.

/// The gateway's client at the provider.
const GW_CLIENT: &str = "tessera";
const GW_SECRET: &str = "gateway-secret-at-the-provider-0123456789";
/// The tessera-cli loopback redirect `people::redeem` uses.
const CLI_REDIRECT: &str = "http://127.0.0.1:49152/callback";
const GRANT_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
const AT_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// A gateway and the provider it trusts as `corp`.
struct Sso {
    idp: OidcProvider,
    app: TestApp,
}

/// The `[[idp]]` table of docs/api.md, "Single sign-on", pointed at `idp`, with `change`
/// applied.
fn corp(idp: &OidcProvider, change: impl FnOnce(&mut Value)) -> Value {
    let mut v = json!({
        "name": "corp",
        "display_name": "Corp SSO",
        "issuer": idp.issuer,
        "client_id": GW_CLIENT,
        "client_secret": GW_SECRET,
        "scopes": ["openid", "email", "profile", "groups"],
        "groups_claim": "groups",
        "create_users": true,
        "allowed_domains": ["example.com"],
        "link_by_verified_email": true,
        "token_exchange": true,
        "role_map": [{"group": "platform-admins", "roles": ["platform-admin"]}],
    });
    change(&mut v);
    v
}

/// Starts the provider with `accounts`, then a gateway configured with
/// `corp(change)`, then registers the gateway at the provider with its
/// real callback URL (the provider reads its clients at every lookup).
async fn setup(accounts: Value, change: impl FnOnce(&mut Value)) -> Sso {
    let idp =
        OidcProvider::start(&json!({"accounts": accounts, "clients": [probe_client()]})).await;
    let table = corp(&idp, change);
    let app = spawn_with(move |s| s.idp = serde_json::from_value(json!([table])).unwrap()).await;
    let callback = format!("{}/sso/corp/callback", app.issuer_hint());
    idp.edit(|d| {
        d["clients"].as_array_mut().unwrap().push(json!({
            "client_id": GW_CLIENT,
            "client_secret": GW_SECRET,
            "redirect_uris": [callback],
        }))
    });
    for (name, perm) in [
        ("platform-admin", "content:write"),
        ("auditor", "workloads:read"),
    ] {
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
    Sso { idp, app }
}

fn account(email: &str, verified: bool, groups: &[&str]) -> Value {
    json!({"email": email, "email_verified": verified, "name": "Person", "groups": groups})
}

impl Sso {
    /// The client's authorize URL at the gateway, straight to `corp`.
    fn authorize(&self, state: &str) -> String {
        self.app.url(&format!(
            "{}&idp=corp",
            authorize_path("tessera-cli", CLI_REDIRECT, "openid email profile", state)
        ))
    }

    /// The whole chain: gateway, provider sign-in and consent, gateway
    /// callback, back to the client; returns where it ended.
    async fn sign_in(&self, b: &mut Browser, account: &str) -> Landing {
        self.idp
            .sign_in(b, &self.authorize("st-sso"), account, CLI_REDIRECT)
            .await
    }

    /// Signs `account` in with a fresh browser and redeems the code; returns
    /// the access token's claims.
    async fn signed_in(&self, account: &str) -> Value {
        let loc = self.sign_in(&mut Browser::new(), account).await.redirect();
        let q = query_of(&loc);
        assert!(q.contains_key("code"), "no code: {loc}");
        assert_eq!(q["state"], "st-sso", "{loc}");
        assert_eq!(q["iss"], self.app.issuer_hint());
        let t = ok(redeem(&self.app, &q["code"], Some(VERIFIER)).await, 200).await;
        claims_of(t["access_token"].as_str().unwrap())
    }

    /// A refusal: the chain ends on a gateway page (403, a sentence that
    /// says why, containing `says`), never at the client; one more
    /// `sso.refused` audit entry with `reason`.
    async fn refused(&self, account: &str, reason: &str, says: &str) {
        let before = self.refusals(reason).await;
        let (url, status, body) = self.sign_in(&mut Browser::new(), account).await.page();
        assert!(url.starts_with(&self.app.address), "ended at {url}: {body}");
        assert_eq!(status, 403, "at {url}: {body}");
        assert!(body.contains(says), "{body}");
        assert!(!body.contains(CLI_REDIRECT), "{body}");
        assert_eq!(self.refusals(reason).await, before + 1, "audited");
    }

    /// The `sso.refused` audit entries for `corp` with `reason`.
    async fn refusals(&self, reason: &str) -> usize {
        let v = ok(
            call(&self.app, reqwest::Method::GET, "/api/v1/audit", None).await,
            200,
        )
        .await;
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r["action"] == "sso.refused"
                    && r["details"]["idp"] == "corp"
                    && r["details"]["reason"] == reason
            })
            .count()
    }

    async fn user(&self, id: &str) -> Value {
        ok(
            call(
                &self.app,
                reqwest::Method::GET,
                &format!("/api/v1/users/{id}"),
                None,
            )
            .await,
            200,
        )
        .await
    }

    async fn users(&self) -> Vec<Value> {
        let v = ok(
            call(&self.app, reqwest::Method::GET, "/api/v1/users", None).await,
            200,
        )
        .await;
        v["data"].as_array().unwrap().clone()
    }
}

/// The user holds exactly one linked identity: (`corp`, `subject`), `email`.
fn assert_identity(user: &Value, subject: &str, email: &str) {
    let ids = user["identities"].as_array().unwrap();
    assert_eq!(ids.len(), 1, "{user}");
    let id = &ids[0];
    assert_eq!(
        (&id["idp"], &id["subject"], &id["email"]),
        (&json!("corp"), &json!(subject), &json!(email)),
        "{user}"
    );
}

#[tokio::test]
async fn a_new_person_is_created_at_first_sign_in_and_found_again_after() {
    let sso = setup(
        json!({"ada": account("Ada@Example.com", true, &["platform-admins"])}),
        |_| {},
    )
    .await;
    let before = sso.users().await.len();

    // The sign-in page offers the provider.
    let page =
        reqwest::get(
            sso.app
                .url(&authorize_path("tessera-cli", CLI_REDIRECT, "openid", "s")),
        )
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Corp SSO") && page.contains("/sso/corp/login"),
        "{page}"
    );

    let mut b = Browser::new();
    let loc = sso.sign_in(&mut b, "ada").await.redirect();
    assert!(b.cookie(&sso.app.address, "tessera_session").is_some());
    let q = query_of(&loc);
    let t = ok(redeem(&sso.app, &q["code"], Some(VERIFIER)).await, 200).await;
    let c = claims_of(t["access_token"].as_str().unwrap());
    let uid = c["sub"].as_str().unwrap().to_owned();
    assert!(uid.starts_with("usr_"), "{c}");
    assert_eq!(c["amr"], json!(["fed"]));
    assert_eq!(c["idp"], "corp");
    assert_eq!(c["roles"], json!(["platform-admin"]));
    assert_eq!(c["permissions"], json!(["content:write"]));

    let u = sso.user(&uid).await;
    assert_eq!(u["email"], "ada@example.com");
    assert_eq!(u["roles"], json!(["platform-admin"]));
    assert_eq!(u["hasPassword"], false);
    assert_identity(&u, "ada", "ada@example.com");
    assert_eq!(sso.users().await.len(), before + 1);

    // Again, from another browser: the same person, nobody new.
    let again = sso.signed_in("ada").await;
    assert_eq!(again["sub"], uid);
    assert_eq!(sso.users().await.len(), before + 1);
}

#[tokio::test]
async fn an_unknown_person_is_refused_when_creation_is_off() {
    let sso = setup(json!({"ned": account("ned@example.com", true, &[])}), |v| {
        v["create_users"] = json!(false)
    })
    .await;
    let before = sso.users().await;
    sso.refused("ned", "unknown_identity", "not linked").await;
    assert_eq!(sso.users().await, before, "nobody was created");
}

#[tokio::test]
async fn a_verified_email_links_an_existing_user_and_an_unverified_one_does_not() {
    let sso = setup(
        json!({
            "bo-at-corp": account("bo@example.com", true, &["platform-admins"]),
            "cy-at-corp": account("cy@example.com", false, &["platform-admins"]),
        }),
        |v| v["create_users"] = json!(false),
    )
    .await;
    let bo = create_user(&sso.app, "bo@example.com", &[]).await;
    let cy = create_user(&sso.app, "cy@example.com", &[]).await;

    let c = sso.signed_in("bo-at-corp").await;
    assert_eq!(c["sub"], bo, "linked to the user with that verified email");
    let u = sso.user(&bo).await;
    assert_identity(&u, "bo-at-corp", "bo@example.com");
    assert_eq!(u["roles"], json!(["platform-admin"]));

    sso.refused("cy-at-corp", "unverified_email", "verified your email")
        .await;
    let u = sso.user(&cy).await;
    assert_eq!(
        u["identities"],
        json!([]),
        "an unverified email links nothing"
    );
    assert_eq!(u["roles"], json!([]));

    // Once linked, the identity is the key: the provider changing bo's email
    // (even to an unverified one) still finds bo, never another user.
    sso.idp.edit(|d| {
        d["accounts"]["bo-at-corp"]["email"] = json!("cy@example.com");
        d["accounts"]["bo-at-corp"]["email_verified"] = json!(false);
    });
    let c = sso.signed_in("bo-at-corp").await;
    assert_eq!(c["sub"], bo);
}

#[tokio::test]
async fn a_domain_not_allowed_is_refused() {
    let sso = setup(
        json!({
            "eve": account("eve@elsewhere.org", true, &[]),
            "mal": account("mal@notexample.com", true, &[]),
            "dot": account("dot@example.com.elsewhere.org", true, &[]),
        }),
        |_| {},
    )
    .await;
    let before = sso.users().await;
    for who in ["eve", "mal", "dot"] {
        sso.refused(who, "domain_not_allowed", "domain").await;
    }
    assert_eq!(sso.users().await, before, "nobody was created");
}

#[tokio::test]
async fn a_group_gone_at_the_provider_drops_its_role_and_an_admin_grant_stays() {
    let sso = setup(
        json!({"gil": account("gil@example.com", true, &["platform-admins"])}),
        |_| {},
    )
    .await;
    let c = sso.signed_in("gil").await;
    let uid = c["sub"].as_str().unwrap().to_owned();
    assert_eq!(c["roles"], json!(["platform-admin"]));

    // An admin grants a role by hand.
    ok(
        call(
            &sso.app,
            reqwest::Method::PATCH,
            &format!("/api/v1/users/{uid}"),
            Some(json!({"roles": ["platform-admin", "auditor"]})),
        )
        .await,
        200,
    )
    .await;

    // Gil leaves the group at the provider: at the next sign-in the mapped
    // role goes, the admin's stays.
    sso.idp
        .edit(|d| d["accounts"]["gil"]["groups"] = json!(["somewhere-else"]));
    let c = sso.signed_in("gil").await;
    assert_eq!(c["sub"], uid);
    assert_eq!(c["roles"], json!(["auditor"]));
    assert_eq!(c["permissions"], json!(["workloads:read"]));
    assert_eq!(sso.user(&uid).await["roles"], json!(["auditor"]));

    // Back in the group: the role comes back beside the admin's.
    sso.idp
        .edit(|d| d["accounts"]["gil"]["groups"] = json!(["platform-admins"]));
    let c = sso.signed_in("gil").await;
    let mut roles: Vec<String> = serde_json::from_value(c["roles"].clone()).unwrap();
    roles.sort();
    assert_eq!(roles, ["auditor", "platform-admin"]);
}

// ---------------------------------------------------------------------------
// Token exchange (docs/api.md, "Single sign-on") of the provider's own ID tokens.

/// A confidential client at the gateway allowed the token-exchange grant.
async fn broker(app: &TestApp) -> (String, String) {
    let (v, secret) = app
        .create_app(json!({
            "name": "broker",
            "grantTypes": [GRANT_EXCHANGE],
            // People's tokens through a client are bounded by what it holds.
            "permissions": ["content:write", "workloads:read"],
        }))
        .await;
    (v["id"].as_str().unwrap().to_owned(), secret)
}

/// Exchanges an upstream ID token at the gateway; returns status and body.
async fn exchange_id_token(app: &TestApp, client: &(String, String), token: &str) -> (u16, Value) {
    let res = app
        .client
        .post(app.url("/oauth/token"))
        .basic_auth(&client.0, Some(&client.1))
        .form(&[
            ("grant_type", GRANT_EXCHANGE),
            ("subject_token", token),
            ("subject_token_type", ID_TOKEN_TYPE),
        ])
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    assert!(body.get("refresh_token").is_none(), "{body}");
    (status, body)
}

/// An ID token the provider issues to the gateway's client id, fetched by
/// the test through a redirect URI of its own that the directory adds to
/// that client (a command-line tool sharing the gateway's registration).
async fn id_token_for_gateway(idp: &OidcProvider, account: &str) -> String {
    idp.edit(|d| {
        for c in d["clients"].as_array_mut().unwrap() {
            if c["client_id"] != GW_CLIENT {
                continue;
            }
            let uris = c["redirect_uris"].as_array_mut().unwrap();
            if !uris.contains(&json!(PROBE_REDIRECT)) {
                uris.push(json!(PROBE_REDIRECT));
            }
        }
    });
    let t = idp
        .id_token_for(
            GW_CLIENT,
            GW_SECRET,
            PROBE_REDIRECT,
            account,
            "openid email profile groups",
        )
        .await;
    t["id_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_providers_id_token_is_exchanged_for_a_tessera_token_with_the_role_map() {
    let sso = setup(
        json!({
            "tex": account("tex@example.com", true, &["platform-admins"]),
            "zed": account("zed@example.com", true, &["platform-admins"]),
        }),
        |v| v["create_users"] = json!(false),
    )
    .await;
    let tex = create_user(&sso.app, "tex@example.com", &[]).await;
    let client = broker(&sso.app).await;
    // Tex signs in once through the browser: the identity is linked.
    assert_eq!(sso.signed_in("tex").await["sub"], tex);

    let id_token = id_token_for_gateway(&sso.idp, "tex").await;
    let (status, body) = exchange_id_token(&sso.app, &client, &id_token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], AT_TYPE);
    assert_eq!(body["token_type"], "Bearer");
    let access = body["access_token"].as_str().unwrap();
    let c = verify_with_jwks(
        &sso.app.jwks().await,
        access,
        &sso.app.issuer_hint(),
        "tessera",
    )
    .unwrap_or_else(|e| panic!("{e}: {}", claims_of(access)));
    assert_eq!(c["sub"], tex);
    assert_eq!(c["roles"], json!(["platform-admin"]));
    assert_eq!(c["permissions"], json!(["content:write"]));
    assert_eq!(c["client_id"], client.0);

    // The role map is applied at the exchange too: out of the group, a fresh
    // ID token gives a token without the role.
    sso.idp.edit(|d| d["accounts"]["tex"]["groups"] = json!([]));
    let id_token = id_token_for_gateway(&sso.idp, "tex").await;
    let (status, body) = exchange_id_token(&sso.app, &client, &id_token).await;
    assert_eq!(status, 200, "{body}");
    let c = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(c["sub"], tex);
    assert_eq!(c["roles"], json!([]));
    assert_eq!(sso.user(&tex).await["roles"], json!([]));

    // Refused. A token that is not valid (issued to another client; the
    // last one with its groups put back by hand, signature kept; not a JWT)
    // and an identity linked to nobody (refused by policy) are all
    // invalid_request, as RFC 8693 §2.2.2 says.
    let unlinked = id_token_for_gateway(&sso.idp, "zed").await;
    let other_client = sso
        .idp
        .id_token_for(
            PROBE,
            PROBE_SECRET,
            PROBE_REDIRECT,
            "tex",
            "openid email groups",
        )
        .await["id_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let forged = {
        let parts: Vec<&str> = id_token.split('.').collect();
        let mut c = claims_of(&id_token);
        c["groups"] = json!(["platform-admins"]);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
        format!("{}.{payload}.{}", parts[0], parts[2])
    };
    for (token, error) in [
        (unlinked, "invalid_request"),
        (other_client, "invalid_request"),
        (forged, "invalid_request"),
        ("not-a-jwt".to_owned(), "invalid_request"),
    ] {
        let (status, body) = exchange_id_token(&sso.app, &client, &token).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(error)),
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_provider_without_token_exchange_has_its_id_tokens_refused() {
    let sso = setup(json!({"una": account("una@example.com", true, &[])}), |v| {
        v["token_exchange"] = json!(false)
    })
    .await;
    let client = broker(&sso.app).await;
    sso.signed_in("una").await;
    let id_token = id_token_for_gateway(&sso.idp, "una").await;
    let (status, body) = exchange_id_token(&sso.app, &client, &id_token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
}

// ---------------------------------------------------------------------------
// Figures for the lead's notes: printed, never asserted.

fn summary(mut v: Vec<Duration>) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = v.iter().sum::<Duration>() / u32::try_from(v.len()).unwrap();
    format!(
        "median {:.1} ms, p90 {:.1} ms, max {:.1} ms, mean {:.1} ms",
        ms(v[v.len() / 2]),
        ms(v[v.len() * 9 / 10]),
        ms(v[v.len() - 1]),
        ms(mean)
    )
}

#[tokio::test]
async fn sso_sign_in_round_trip_figures() {
    const N: usize = 50;
    let sso = setup(
        json!({"fay": account("fay@example.com", true, &["platform-admins"])}),
        |_| {},
    )
    .await;
    let uid = sso.signed_in("fay").await["sub"].clone();

    // One browser keeps its provider session (the provider signs fay in
    // without a form, as a company provider does in the morning's second
    // tab) and forgets the gateway's cookies before each sign-in, so every
    // round goes through the provider and the gateway's callback.
    let mut b = Browser::new();
    sso.sign_in(&mut b, "fay").await.redirect();
    let (mut total, mut gateway, mut provider) = (Vec::new(), Vec::new(), Vec::new());
    let mut hops = (0, 0);
    for _ in 0..N {
        b.forget(&sso.app.address);
        let (g0, p0) = (b.waited_on(&sso.app.address), b.waited_on(&sso.idp.issuer));
        let (gn, pn) = (
            b.requests_to(&sso.app.address),
            b.requests_to(&sso.idp.issuer),
        );
        let started = Instant::now();
        let loc = sso.sign_in(&mut b, "fay").await.redirect();
        total.push(started.elapsed());
        gateway.push(b.waited_on(&sso.app.address) - g0);
        provider.push(b.waited_on(&sso.idp.issuer) - p0);
        hops = (
            b.requests_to(&sso.app.address) - gn,
            b.requests_to(&sso.idp.issuer) - pn,
        );
        let t = ok(
            redeem(&sso.app, &query_of(&loc)["code"], Some(VERIFIER)).await,
            200,
        )
        .await;
        assert_eq!(claims_of(t["access_token"].as_str().unwrap())["sub"], uid);
    }

    // The provider's token endpoint alone, on a kept connection as the
    // gateway's pooled client calls it: its share of the callback leg.
    let http = reqwest::Client::new();
    let mut redemptions = Vec::new();
    for _ in 0..N {
        let start = sso
            .idp
            .authorize_url(PROBE, PROBE_REDIRECT, "openid email groups", "n");
        let loc = sso
            .idp
            .sign_in(&mut b, &start, "fay", PROBE_REDIRECT)
            .await
            .redirect();
        let code = query_of(&loc)["code"].clone();
        let started = Instant::now();
        let res = http
            .post(sso.idp.url("/token"))
            .basic_auth(PROBE, Some(PROBE_SECRET))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", PROBE_REDIRECT),
                ("code_verifier", crate::oidc_provider::VERIFIER),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.bytes().await.unwrap();
        redemptions.push(started.elapsed());
    }

    println!(
        "SSO sign-in round trip over {N} sign-ins (debug build, loopback; {} gateway and {} provider requests each):",
        hops.0, hops.1
    );
    println!("  whole chain, browser's view: {}", summary(total));
    println!(
        "  gateway legs (authorize, callback incl. its code redemption at the provider): {}",
        summary(gateway)
    );
    println!("  provider legs seen by the browser: {}", summary(provider));
    println!(
        "  provider token endpoint alone (kept connection): {}",
        summary(redemptions)
    );
}

#[tokio::test]
async fn a_callback_is_single_use_and_bound_to_the_browser_that_started_it() {
    let sso = setup(
        json!({"kim": account("kim@example.com", true, &[])}),
        |_| {},
    )
    .await;
    let callback = format!("{}/sso/corp/callback", sso.app.issuer_hint());

    // Stops where the provider sends the browser back, to look at it.
    let started = async |b: &mut Browser| {
        sso.idp
            .sign_in(b, &sso.authorize("st-sso"), "kim", &callback)
            .await
            .redirect()
    };
    let refused = async |b: &mut Browser, back: &str| {
        let (url, status, body) = b.follow(back, CLI_REDIRECT).await.page();
        assert!(url.starts_with(&callback), "{url}");
        assert_eq!(status, 400, "{body}");
    };

    // Another browser presenting it (a login CSRF, or a stolen URL) is
    // refused, and the attempt is spent: single use, whatever happens.
    let mut b = Browser::new();
    let back = started(&mut b).await;
    let q = query_of(&back);
    assert!(q.contains_key("code") && q.contains_key("state"), "{back}");
    refused(&mut Browser::new(), &back).await;
    assert_eq!(sso.refusals("other_browser").await, 1);
    refused(&mut b, &back).await;

    // The browser that started it goes on to the client, once: a replay
    // of the same callback is refused.
    let mut b = Browser::new();
    let back = started(&mut b).await;
    let loc = b.follow(&back, CLI_REDIRECT).await.redirect();
    assert!(query_of(&loc).contains_key("code"), "{loc}");
    let before = sso.refusals("bad_state").await;
    refused(&mut b, &back).await;
    assert_eq!(sso.refusals("bad_state").await, before + 1);
}
