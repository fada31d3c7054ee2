//! Single sign-on (SPEC §10, §11) against a real OpenID Connect provider:
//! oidc-provider on Node.js (tests/oidc), driven over HTTP through the
//! whole redirect chain by a browser played by hand.

use serde_json::{Value, json};

use crate::oidc_provider::{Browser, OidcProvider, query_of};

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
