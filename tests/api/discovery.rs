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
    // The ES256 access-token key and the RS256 ID-token key.
    assert_eq!(keys.len(), 2, "{jwks}");
    let token = app.admin_token().await;
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    let k = keys.iter().find(|k| k["kid"] == kid.as_str()).unwrap();
    assert_eq!(k["kty"], "EC");
    assert_eq!(k["alg"], "ES256");
    assert_eq!(k["use"], "sig");
    for k in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(k.get(private).is_none(), "{private} published: {k}");
        }
        assert!(k["kid"].as_str().unwrap().len() >= 43);
    }
}

/// The key that will sign ID tokens is published for relying parties:
/// RSA, `alg: RS256`, `use: sig`, named by its thumbprint, distinct from
/// the access-token key, and the one discovery advertises.
#[tokio::test]
async fn the_id_token_key_is_published_as_rs256() {
    let app = spawn_app().await;
    let jwks: Value = serde_json::from_str(&app.jwks().await).unwrap();
    let rsa: Vec<&Value> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["kty"] == "RSA")
        .collect();
    assert_eq!(rsa.len(), 1, "{jwks}");
    let k = rsa[0];
    assert_eq!(k["alg"], "RS256");
    assert_eq!(k["use"], "sig");
    assert_eq!(k["e"], "AQAB");
    // 2048 bits: 256 bytes of modulus, 342 base64url characters.
    assert_eq!(k["n"].as_str().unwrap().len(), 342);
    assert_eq!(
        tessera::crypto::keys::thumbprint(k).as_deref(),
        k["kid"].as_str()
    );
    // It is the ring's ID-token key, read back from the keys directory.
    let files = tessera::crypto::keys::load_dir(&app.keys_dir()).unwrap();
    let ring = tessera::crypto::KeyRing::from_keys(
        files,
        tessera::crypto::SigningAlg::ES256,
        tessera::crypto::SigningAlg::RS256,
    )
    .unwrap();
    assert_eq!(k["kid"], ring.id_token_key().kid());
    // An ID token it signs verifies against the published JWKS with the
    // published algorithm (as a relying party would check it).
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({"iss": app.address, "sub": "usr_1", "aud": "client_1",
        "iat": now, "exp": now + 60});
    let id_token = tessera::crypto::jwt::mint_id_token(&ring, &claims).unwrap();
    let header = jsonwebtoken::decode_header(&id_token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let jwk = set.find(header.kid.as_deref().unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&["client_1"]);
    v.set_issuer(&[app.address.as_str()]);
    let checked = jsonwebtoken::decode::<Value>(
        &id_token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &v,
    )
    .unwrap();
    assert_eq!(checked.claims["sub"], "usr_1");
    // ...and the gateway's own access-token endpoints refuse it.
    let res = app
        .client
        .get(app.url("/api/v1/apps"))
        .bearer_auth(&id_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let res = app.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap()
}

/// Every member authlib's `OpenIDProviderMetadata.validate()` requires or
/// type-checks (OpenID Connect Discovery 1.0 §3), with the values docs/api.md, "People"
/// promises; `tests/rp/metadata_check.py` runs authlib itself.
#[tokio::test]
async fn openid_configuration_satisfies_authlib_and_claims_nothing_false() {
    let app = spawn_app().await;
    let m = get_json(&app, "/.well-known/openid-configuration").await;
    let iss = app.address.as_str();
    assert_eq!(m["issuer"], iss);
    for (member, path) in [
        ("authorization_endpoint", "/oauth/authorize"),
        ("token_endpoint", "/oauth/token"),
        ("userinfo_endpoint", "/oauth/userinfo"),
        ("end_session_endpoint", "/oauth/logout"),
        ("jwks_uri", "/.well-known/jwks.json"),
        ("revocation_endpoint", "/oauth/revoke"),
        ("introspection_endpoint", "/oauth/introspect"),
    ] {
        assert_eq!(m[member], format!("{iss}{path}"), "{member}");
    }
    let list = |member: &str| -> Vec<String> {
        m[member]
            .as_array()
            .unwrap_or_else(|| panic!("{member} is not an array: {m}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(list("response_types_supported"), ["code"]);
    assert_eq!(list("response_modes_supported"), ["query"]);
    assert_eq!(list("subject_types_supported"), ["public"]);
    assert_eq!(list("id_token_signing_alg_values_supported"), ["RS256"]);
    assert_eq!(list("code_challenge_methods_supported"), ["S256"]);
    assert_eq!(
        list("grant_types_supported"),
        [
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:token-exchange",
            "urn:ietf:params:oauth:grant-type:device_code"
        ]
    );
    assert_eq!(
        list("token_endpoint_auth_methods_supported"),
        ["client_secret_basic", "client_secret_post", "none"]
    );
    let scopes = list("scopes_supported");
    assert_eq!(
        scopes[..4],
        ["openid", "profile", "email", "offline_access"]
    );
    assert!(scopes.iter().any(|s| s == "content:read"), "{scopes:?}");
    let claims = list("claims_supported");
    for c in [
        "sub",
        "iss",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "nonce",
        "sid",
        "amr",
        "email",
        "email_verified",
        "name",
        "at_hash",
    ] {
        assert!(claims.iter().any(|x| x == c), "{c} missing");
    }
    for flag in [
        "request_parameter_supported",
        "request_uri_parameter_supported",
        "claims_parameter_supported",
        "frontchannel_logout_supported",
        "backchannel_logout_supported",
    ] {
        assert_eq!(m[flag], false, "{flag}");
    }
    // Nothing that promises what the gateway does not do: JWT client
    // authentication, the implicit flow, signed or encrypted userinfo.
    for absent in [
        "token_endpoint_auth_signing_alg_values_supported",
        "userinfo_signing_alg_values_supported",
        "id_token_encryption_alg_values_supported",
        "request_object_signing_alg_values_supported",
        "registration_endpoint",
    ] {
        assert!(m.get(absent).is_none(), "{absent} advertised");
    }
    let text = m.to_string();
    for never in ["\"token\"", "id_token token", "private_key_jwt", "plain"] {
        assert!(!text.contains(never), "{never} advertised: {text}");
    }
}

/// RFC 8414 metadata: the OAuth members, the same values, none of the
/// OpenID-only ones.
#[tokio::test]
async fn oauth_metadata_is_the_rfc8414_subset() {
    let app = spawn_app().await;
    let oauth = get_json(&app, "/.well-known/oauth-authorization-server").await;
    let oidc = get_json(&app, "/.well-known/openid-configuration").await;
    let members = oauth.as_object().unwrap();
    for (k, v) in members {
        assert_eq!(&oidc[k], v, "{k} differs between the two documents");
    }
    for k in [
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "revocation_endpoint",
        "introspection_endpoint",
        "device_authorization_endpoint",
        "scopes_supported",
        "response_types_supported",
        "response_modes_supported",
        "grant_types_supported",
        "token_endpoint_auth_methods_supported",
        "code_challenge_methods_supported",
    ] {
        assert!(members.contains_key(k), "{k} missing");
    }
    for k in [
        "userinfo_endpoint",
        "end_session_endpoint",
        "id_token_signing_alg_values_supported",
        "subject_types_supported",
        "claims_supported",
    ] {
        assert!(!members.contains_key(k), "{k} is OpenID-only");
    }
}

/// With `id_token_alg = ES256`, discovery lists only what the ring can sign
/// ID tokens with (so authlib's RS256 requirement is not met: documented).
#[tokio::test]
async fn another_id_token_alg_is_advertised_as_is() {
    let app = spawn_with(|s| s.id_token_alg = tessera::crypto::SigningAlg::ES256).await;
    let m = get_json(&app, "/.well-known/openid-configuration").await;
    assert_eq!(
        m["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
    // One key serves both.
    let jwks: Value = serde_json::from_str(&app.jwks().await).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1, "{jwks}");
}

#[tokio::test]
async fn eddsa_and_rs256_are_selectable() {
    for (alg, kty) in [("EdDSA", "OKP"), ("RS256", "RSA")] {
        let app =
            spawn_with(|s| s.signing_alg = tessera::crypto::SigningAlg::parse(alg).unwrap()).await;
        let jwks: Value = serde_json::from_str(&app.jwks().await).unwrap();
        let token = app.admin_token().await;
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(format!("{:?}", header.alg), alg);
        let signer = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == header.kid.as_deref().unwrap())
            .unwrap();
        assert_eq!(signer["kty"], kty);
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
        let m = app.get_json(path).await;
        assert_eq!(m["issuer"], app.address);
        assert_eq!(m["token_endpoint"], format!("{}/oauth/token", app.address));
        assert_eq!(
            m["jwks_uri"],
            format!("{}/.well-known/jwks.json", app.address)
        );
        assert!(
            m["grant_types_supported"]
                .as_array()
                .unwrap()
                .contains(&Value::from("client_credentials"))
        );
        let methods = m["token_endpoint_auth_methods_supported"].to_string();
        assert!(methods.contains("client_secret_basic") && methods.contains("client_secret_post"));
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
    let admin = app.admin_token().await;
    // Without a token, /metrics says nothing about anyone's traffic.
    let anonymous = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let text = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(&admin)
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

#[tokio::test]
async fn openapi_describes_every_route_the_server_has() {
    let app = spawn_app().await;
    let doc = app.get_json("/openapi.json").await;
    assert_eq!(doc["openapi"], "3.1.0");
    let routes = [
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("get", "/openapi.json"),
        ("get", "/.well-known/jwks.json"),
        ("get", "/.well-known/oauth-authorization-server"),
        ("get", "/.well-known/openid-configuration"),
        ("post", "/oauth/token"),
        ("post", "/oauth/device_authorization"),
        ("post", "/oauth/revoke"),
        ("post", "/oauth/introspect"),
        ("get", "/api/v1/revocations"),
        ("post", "/api/v1/token"),
        ("post", "/api/v1/apps"),
        ("get", "/api/v1/apps"),
        ("post", "/api/v1/apps/bulk-delete"),
        ("get", "/api/v1/apps/{id}"),
        ("patch", "/api/v1/apps/{id}"),
        ("delete", "/api/v1/apps/{id}"),
        ("post", "/api/v1/apps/{id}/revoke"),
        ("post", "/api/v1/apps/{id}/rotate"),
        ("get", "/api/v1/permissions"),
        ("get", "/api/v1/roles"),
        ("post", "/api/v1/roles"),
        ("get", "/api/v1/roles/{name}"),
        ("patch", "/api/v1/roles/{name}"),
        ("delete", "/api/v1/roles/{name}"),
        ("get", "/api/v1/users"),
        ("post", "/api/v1/users"),
        ("get", "/api/v1/users/{id}"),
        ("patch", "/api/v1/users/{id}"),
        ("delete", "/api/v1/users/{id}"),
        ("get", "/api/v1/audit"),
        ("get", "/api/v1/me"),
        ("get", "/api/v1/me/sessions"),
        ("delete", "/api/v1/me/sessions/{id}"),
        ("post", "/api/v1/me/password"),
        ("post", "/api/v1/leaks"),
        ("get", "/api/v1/keys"),
        ("post", "/api/v1/keys/rotate"),
        ("post", "/api/v1/keys/{kid}/revoke"),
    ];
    let mut documented = 0;
    for (method, path) in routes {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        assert!(
            op["responses"].is_object(),
            "{method} {path} has no responses"
        );
        documented += 1;
        // And the server really routes it (a 404 here would be the JSON
        // "no such endpoint", a 405 a method the resource lacks).
        let concrete = path
            .replace("{id}", "x")
            .replace("{name}", "x")
            .replace("{kid}", "x");
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let res = app
            .client
            .request(m, app.url(&concrete))
            .send()
            .await
            .unwrap();
        assert_ne!(
            res.status(),
            405,
            "{method} {path} is documented but not routed"
        );
        if res.status() == 404 {
            let body: Value = res.json().await.unwrap();
            assert!(
                !body["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("no such endpoint"),
                "{method} {path} not routed"
            );
        }
    }
    let mut ids: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|p| p.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "operationIds must be unique");
    let total: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum();
    assert_eq!(
        total, documented,
        "the document lists a route this test does not know"
    );
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for s in [
        "ApiErrorBody",
        "AppView",
        "CreateApp",
        "PatchApp",
        "AppWithSecret",
        "Role",
        "User",
        "AuditRecord",
    ] {
        assert!(schemas.contains_key(s), "schema {s} missing");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

/// The response an operation documents for `status`, its `$ref` to a shared
/// response resolved.
fn documented_response<'a>(doc: &'a Value, op: &'a Value, status: &str) -> Option<&'a Value> {
    let r = op["responses"].get(status)?;
    match r["$ref"].as_str() {
        Some(reference) => {
            let name = reference.strip_prefix("#/components/responses/")?;
            doc["components"]["responses"].get(name)
        }
        None => Some(r),
    }
}

/// The error statuses every operation must document follow from what it
/// reads: a bearer token (400 for an unusable forwarding header, 401, 403,
/// 408, 503), a JSON body (400, 413, 415), a form (400, 413), query
/// parameters (400), a path parameter (404). Each documented error shows
/// the body the gateway really sends there: docs/errors.md on `/api/*`, RFC 6749
/// on `/oauth/*` (the 408 of the request deadline is docs/errors.md everywhere).
#[tokio::test]
async fn openapi_documents_every_error_an_operation_can_answer() {
    let app = spawn_app().await;
    let doc = app.get_json("/openapi.json").await;
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let label = format!("{method} {path}");
            let mut wanted: Vec<&str> = Vec::new();
            let bearer = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            let token_required = bearer
                && !op["security"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r.as_object().is_some_and(|o| o.is_empty()));
            let content = &op["requestBody"]["content"];
            let json_body = content.get("application/json").is_some();
            let form_body = content.get("application/x-www-form-urlencoded").is_some();
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let query = params.iter().any(|p| p["in"] == "query");
            let in_path = params.iter().any(|p| p["in"] == "path");
            if path.starts_with("/api/") || path == "/metrics" {
                wanted.extend(["400", "401", "403", "408", "503"]);
            }
            if path.starts_with("/oauth/") {
                wanted.extend(["400", "401", "408", "413", "503"]);
            }
            if json_body {
                wanted.extend(["400", "413"]);
            }
            if form_body {
                wanted.extend(["400", "413"]);
            }
            if query {
                wanted.push("400");
            }
            if in_path {
                wanted.push("404");
            }
            if token_required {
                wanted.extend(["401", "403"]);
            }
            for status in wanted {
                assert!(
                    documented_response(&doc, op, status).is_some(),
                    "{label} does not document {status}"
                );
            }
            // Parsed by actix's JSON extractor: a wrong content type is 415.
            if json_body && path != "/api/v1/apps/{id}/rotate" {
                assert!(
                    documented_response(&doc, op, "415").is_some(),
                    "{label} does not document 415"
                );
            }
            for (status, _) in op["responses"].as_object().unwrap() {
                if !status.starts_with('4') && !status.starts_with('5') {
                    continue;
                }
                let res = documented_response(&doc, op, status)
                    .unwrap_or_else(|| panic!("{label} {status}: dangling reference"));
                let schema = res["content"]["application/json"]["schema"]["$ref"]
                    .as_str()
                    .unwrap_or_default();
                let expected = if path.starts_with("/oauth/") && status != "408" {
                    "#/components/schemas/OAuthErrorBody"
                } else if path == "/readyz" {
                    "#/components/schemas/ReadyBody"
                } else {
                    "#/components/schemas/ApiErrorBody"
                };
                assert_eq!(schema, expected, "{label} {status}");
                if status == "401" {
                    assert!(
                        res["headers"].get("WWW-Authenticate").is_some(),
                        "{label}: 401 without WWW-Authenticate"
                    );
                }
                if status == "429" {
                    assert!(
                        res["headers"].get("Retry-After").is_some(),
                        "{label}: 429 without Retry-After"
                    );
                }
            }
            // A declared `limit` has the range the server enforces, and the
            // 422 a value outside it gets.
            if let Some(limit) = params.iter().find(|p| p["name"] == "limit") {
                assert_eq!(limit["schema"]["minimum"], 1, "{label}");
                assert!(limit["schema"]["maximum"].is_u64(), "{label}");
                assert!(
                    documented_response(&doc, op, "422").is_some(),
                    "{label}: limit without 422"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 31, "only {checked} operations");
    // Bounds written as literals in schema attributes match the service's.
    let grace = &doc["components"]["schemas"]["RotateBody"]["properties"]["gracePeriodSeconds"];
    assert_eq!(grace["maximum"], tessera::service::apps::MAX_GRACE_SECONDS);
    // Bodies read with `deny_unknown_fields` say so.
    for s in [
        "CreateApp",
        "PatchApp",
        "CreateRole",
        "PatchRole",
        "CreateUser",
        "PatchUser",
    ] {
        assert_eq!(
            doc["components"]["schemas"][s]["additionalProperties"], false,
            "{s}"
        );
    }
}
