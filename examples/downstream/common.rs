//! What the two example services share: the command line, starting the
//! verifier from the gateway's metadata, and their routes (the tests mount
//! the very same routes).

#![allow(dead_code)]

use actix_web::{HttpResponse, web};
use serde_json::json;
use std::sync::Arc;
use tessera::verifier::actix::Authenticated;
use tessera::verifier::{RevocationSource, Verifier, VerifierConfig, VerifyError, resource};

/// `--listen ADDR --gateway URL --audience AUD [--redis URL] [--redis-prefix P]`
pub struct Args {
    pub listen: String,
    pub gateway: String,
    pub audience: String,
    pub redis: Option<String>,
    pub redis_prefix: String,
}

pub fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut listen, mut gateway, mut audience, mut redis) = (None, None, None, None);
    let mut redis_prefix = "tessera:".to_owned();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = Some(value()?),
            "--gateway" => gateway = Some(value()?),
            "--audience" => audience = Some(value()?),
            "--redis" => redis = Some(value()?),
            "--redis-prefix" => redis_prefix = value()?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        listen: listen.ok_or("--listen is required")?,
        gateway: gateway
            .ok_or("--gateway is required")?
            .trim_end_matches('/')
            .to_owned(),
        audience: audience.ok_or("--audience is required")?,
        redis,
        redis_prefix,
    })
}

/// The verifier for these arguments: the issuer comes from the gateway's
/// RFC 8414 metadata; revocations from Redis, or else from the feed with
/// `TESSERA_APP_ID` / `TESSERA_APP_SECRET`.
pub async fn verifier(args: &Args) -> Result<Arc<Verifier>, String> {
    let meta: serde_json::Value = reqwest::get(format!(
        "{}/.well-known/oauth-authorization-server",
        args.gateway
    ))
    .await
    .map_err(|e| e.to_string())?
    .json()
    .await
    .map_err(|e| e.to_string())?;
    let issuer = meta["issuer"]
        .as_str()
        .ok_or("the gateway metadata has no issuer")?;
    let source = match &args.redis {
        Some(url) => RevocationSource::Redis {
            url: url.clone(),
            prefix: args.redis_prefix.clone(),
        },
        None => RevocationSource::Feed {
            gateway_url: args.gateway.clone(),
            app_id: std::env::var("TESSERA_APP_ID")
                .map_err(|_| "TESSERA_APP_ID is required without --redis")?,
            app_secret: std::env::var("TESSERA_APP_SECRET")
                .map_err(|_| "TESSERA_APP_SECRET is required without --redis")?
                .into(),
            every: std::time::Duration::from_millis(500),
        },
    };
    let config = VerifierConfig::new(&args.gateway, issuer, &args.audience, source);
    Verifier::start(config).await.map_err(|e| e.to_string())
}

/// The resource `cluster:{cluster}` of a path parameter. actix has decoded
/// the parameter, so `c1%2Fproject:p2` arrives as `c1/project:p2`; it must
/// stay one segment, or a token scoped only to `cluster:c1/project:p2` would
/// pass this cluster-wide check on `cluster:c1`. A bad segment is a 400.
fn cluster_resource(cluster: &str) -> Result<String, VerifyError> {
    resource(&[("cluster", cluster)])
}

/// `GET /api/v1/clusters/{cluster}/workloads`: `workloads:read` on `cluster:{cluster}`.
async fn list_workloads(
    Authenticated(t): Authenticated,
    cluster: web::Path<String>,
) -> Result<HttpResponse, VerifyError> {
    t.require("workloads:read", Some(&cluster_resource(&cluster)?))?;
    Ok(HttpResponse::Ok()
        .json(json!({"cluster": *cluster, "workloads": [], "caller": t.claims.sub})))
}

/// `POST /api/v1/clusters/{cluster}/workloads`: `workloads:write` on `cluster:{cluster}`.
async fn create_workload(
    Authenticated(t): Authenticated,
    cluster: web::Path<String>,
) -> Result<HttpResponse, VerifyError> {
    t.require("workloads:write", Some(&cluster_resource(&cluster)?))?;
    Ok(HttpResponse::Created()
        .json(json!({"cluster": *cluster, "created": true, "caller": t.claims.sub})))
}

/// `GET /api/v1/admin/summary`: `api_keys:read`.
async fn admin_summary(Authenticated(t): Authenticated) -> Result<HttpResponse, VerifyError> {
    t.require("api_keys:read", None)?;
    Ok(HttpResponse::Ok().json(json!({"summary": "ok", "caller": t.claims.sub})))
}

pub fn cluster_routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/api/v1/clusters/{cluster}/workloads",
        web::get().to(list_workloads),
    )
    .route(
        "/api/v1/clusters/{cluster}/workloads",
        web::post().to(create_workload),
    );
}

/// `GET /metrics`: the verifier's metrics (JWKS refreshes, refusals by
/// reason, the revocation mirror's freshness) in the Prometheus text
/// format. Open to anyone here; serve it on a private port in production.
async fn metrics(verifier: web::Data<Verifier>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(verifier.metrics_text())
}

pub fn metrics_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics));
}

pub fn admin_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/admin/summary", web::get().to(admin_summary));
}
