//! The benchmark ceiling: a bare actix-web endpoint that only signs an ES256
//! JWT with jsonwebtoken (no credentials, no store, no policy). The gateway's
//! warm token exchange is measured against it (`bench/run.sh`).
//!
//! `cargo run --release --example sign_ceiling -- 127.0.0.1:18090`

use actix_web::{App, HttpResponse, HttpServer, web};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

async fn sign(key: web::Data<EncodingKey>) -> HttpResponse {
    let now = chrono::Utc::now().timestamp();
    // Claims of the same shape and size as the gateway's.
    let claims = json!({
        "iss": "http://127.0.0.1:18080", "sub": "app_0123456789abcdef", "aud": "tessera",
        "exp": now + 600, "iat": now, "nbf": now, "jti": "AAAAAAAAAAAAAAAAAAAAAA",
        "client_id": "app_0123456789abcdef", "scope": "content:read", "roles": [],
        "permissions": ["content:read"], "env": "live", "key_type": "secret"
    });
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    header.kid = Some("ceiling".into());
    match jsonwebtoken::encode(&header, &claims, &key) {
        Ok(t) => HttpResponse::Ok().json(json!({"access_token": t, "token_type": "Bearer"})),
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".into());
    let pem = tessera::crypto::keys::generate_pem(tessera::crypto::SigningAlg::ES256)?;
    let key = web::Data::new(EncodingKey::from_ec_pem(pem.as_bytes())?);
    println!("ceiling listening on http://{listen}");
    HttpServer::new(move || {
        App::new()
            .app_data(key.clone())
            .route("/token", web::post().to(sign))
    })
    .bind(&listen)?
    .run()
    .await?;
    Ok(())
}
