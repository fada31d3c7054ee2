//! JWKS, metadata, health and metrics.

use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn jwks_publishes_public_keys_with_cache_headers() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let jwks: Value = res.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let k = &keys[0];
    assert_eq!(k["kty"], "EC");
    assert_eq!(k["alg"], "ES256");
    assert_eq!(k["use"], "sig");
    assert!(k.get("d").is_none());
    assert!(k["kid"].as_str().unwrap().len() >= 43);
}

#[tokio::test]
async fn eddsa_and_rs256_are_selectable() {
    for (alg, kty) in [("EdDSA", "OKP"), ("RS256", "RSA")] {
        let app =
            spawn_with(|s| s.signing_alg = tessera::crypto::SigningAlg::parse(alg).unwrap()).await;
        let jwks: Value = serde_json::from_str(&app.jwks().await).unwrap();
        assert_eq!(jwks["keys"][0]["kty"], kty);
        let token = app.admin_token().await;
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(format!("{:?}", header.alg), alg);
        let claims = tessera::crypto::jwt::verify_with_jwks(
            &app.jwks().await,
            &token,
            Some(&app.address),
            Some("tessera"),
            0,
        )
        .unwrap();
        assert_eq!(claims["sub"], ADMIN_ID);
    }
}

#[tokio::test]
async fn metadata_describes_the_token_endpoint() {
    let app = spawn_app().await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let m: Value = app
            .client
            .get(app.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(m["issuer"], app.address);
        assert_eq!(m["token_endpoint"], format!("{}/oauth/token", app.address));
        assert_eq!(
            m["jwks_uri"],
            format!("{}/.well-known/jwks.json", app.address)
        );
        assert_eq!(m["grant_types_supported"][0], "client_credentials");
        let methods = m["token_endpoint_auth_methods_supported"].to_string();
        assert!(methods.contains("client_secret_basic") && methods.contains("client_secret_post"));
        assert_eq!(m["id_token_signing_alg_values_supported"][0], "ES256");
    }
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = spawn_app().await;
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ready: Value = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    app.admin_token().await;
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("# TYPE tessera_tokens_issued_total counter"),
        "{text}"
    );
    let issued = text
        .lines()
        .find(|l| l.starts_with("tessera_tokens_issued_total "))
        .and_then(|l| l.split(' ').nth(1))
        .unwrap();
    assert_eq!(issued, "1");
}
