//! The held-key limit: the smallest server that does the token exchange's
//! unavoidable work and nothing else. actix-web parses the request body
//! (JSON at `/api/v1/token`, a form at `/oauth/token`), serializes claims of
//! the gateway's shape with serde, signs once with an aws-lc-rs ES256 key
//! pair parsed at start, and answers the same JSON as the gateway. No
//! credentials, no store, no policy, no metrics, no logs.
//!
//! `bench/run.sh` measures the gateway's warm exchange against it: what the
//! gateway spends beyond this is what its checks cost.
//!
//! `cargo run --release --example held_key -- 127.0.0.1:18091`

use actix_web::{App, HttpResponse, HttpServer, web};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The key pair and the header, both prepared once.
struct Held {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
    header_b64: String,
}

/// The JSON request of `/api/v1/token` (only parsed, never checked).
#[derive(Deserialize)]
#[allow(dead_code)]
struct JsonRequest {
    #[serde(rename = "grantType")]
    grant_type: Option<String>,
    #[serde(rename = "AppId")]
    app_id: Option<String>,
    #[serde(rename = "AppSecret")]
    app_secret: String,
    scope: Option<String>,
    audience: Option<String>,
}

/// The form request of `/oauth/token` (only parsed, never checked).
#[derive(Deserialize)]
#[allow(dead_code)]
struct FormRequest {
    grant_type: String,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
    audience: Option<String>,
}

/// Claims of the gateway's shape and size.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    iat_ms: i64,
    nbf: i64,
    jti: String,
    client_id: &'a str,
    scope: &'a str,
    roles: [&'a str; 0],
    permissions: [&'a str; 1],
    env: &'a str,
    key_type: &'a str,
}

/// `header.payload.signature`, as the gateway builds it.
fn sign(held: &Held) -> Result<String, String> {
    let now = chrono::Utc::now();
    let iat = now.timestamp();
    let mut jti = [0u8; 16];
    aws_lc_rs::rand::fill(&mut jti).map_err(|e| e.to_string())?;
    let claims = Claims {
        iss: "http://127.0.0.1:18080",
        sub: "app_0123456789abcdefghijklmn",
        aud: "tessera",
        exp: iat + 600,
        iat,
        iat_ms: now.timestamp_millis(),
        nbf: iat,
        jti: URL_SAFE_NO_PAD.encode(jti),
        client_id: "app_0123456789abcdefghijklmn",
        scope: "api_keys:read",
        roles: [],
        permissions: ["api_keys:read"],
        env: "live",
        key_type: "secret",
    };
    let payload = serde_json::to_vec(&claims).map_err(|e| e.to_string())?;
    let mut token = String::with_capacity(held.header_b64.len() + payload.len() * 4 / 3 + 100);
    token.push_str(&held.header_b64);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    let sig = held
        .pair
        .sign(&held.rng, token.as_bytes())
        .map_err(|e| e.to_string())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(sig.as_ref(), &mut token);
    Ok(token)
}

/// The gateway's JSON answer.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonAnswer<'a> {
    access_token: String,
    token_type: &'a str,
    expires_in: u64,
    scope: &'a str,
}

/// The OAuth2 answer.
#[derive(Serialize)]
struct OAuthAnswer<'a> {
    access_token: String,
    token_type: &'a str,
    expires_in: u64,
    scope: &'a str,
}

async fn json_token(held: web::Data<Arc<Held>>, _req: web::Json<JsonRequest>) -> HttpResponse {
    match sign(&held) {
        Ok(t) => HttpResponse::Ok().json(JsonAnswer {
            access_token: t,
            token_type: "Bearer",
            expires_in: 600,
            scope: "api_keys:read",
        }),
        Err(e) => HttpResponse::InternalServerError().body(e),
    }
}

async fn form_token(held: web::Data<Arc<Held>>, _req: web::Form<FormRequest>) -> HttpResponse {
    match sign(&held) {
        Ok(t) => HttpResponse::Ok()
            .insert_header(("cache-control", "no-store"))
            .json(OAuthAnswer {
                access_token: t,
                token_type: "Bearer",
                expires_in: 600,
                scope: "api_keys:read",
            }),
        Err(e) => HttpResponse::InternalServerError().body(e),
    }
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18091".into());
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|e| e.to_string())?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .map_err(|e| e.to_string())?;
    let header_b64 = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","kid":"held","typ":"at+jwt"}"#);
    let held = web::Data::new(Arc::new(Held {
        pair,
        rng,
        header_b64,
    }));
    println!("held-key limit listening on http://{listen}");
    HttpServer::new(move || {
        App::new()
            .app_data(held.clone())
            .route("/api/v1/token", web::post().to(json_token))
            .route("/oauth/token", web::post().to(form_token))
    })
    .bind(&listen)?
    .run()
    .await?;
    Ok(())
}
