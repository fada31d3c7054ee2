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

/// The usage of `program` (`cluster_api`, `admin_api`), for `--help`.
pub fn usage(program: &str, about: &str, example_audience: &str) -> String {
    format!(
        "{about}

Usage: {program} --listen ADDR --gateway URL --audience AUD [--redis URL] [--redis-prefix P]

Options:
  --listen ADDR         address to serve on, e.g. 127.0.0.1:9001
  --gateway URL         the Tessera gateway (its metadata, JWKS and revocation feed)
  --audience AUD        the audience tokens must carry, e.g. {example_audience}
  --redis URL           read revocations from the gateway's Redis instead of the feed
  --redis-prefix P      the gateway's Redis prefix (default tessera:)
  -h, --help            print this help

Environment:
  TESSERA_APP_ID, TESSERA_APP_SECRET
                        an application holding tokens:introspect, to read the
                        revocation feed (required without --redis)
  RUST_LOG              log filter (default info); refused tokens are logged
                        at info with their reason, never the token
"
    )
}

/// Reads the command line; `--help` prints `usage` and exits with 0.
pub fn parse_args(usage: &str) -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut listen, mut gateway, mut audience, mut redis) = (None, None, None, None);
    let mut redis_prefix = "tessera:".to_owned();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or(format!("{flag} needs a value (see --help)"))
        };
        match flag.as_str() {
            "-h" | "--help" => {
                print!("{usage}");
                std::process::exit(0);
            }
            "--listen" => listen = Some(value()?),
            "--gateway" => gateway = Some(value()?),
            "--audience" => audience = Some(value()?),
            "--redis" => redis = Some(value()?),
            "--redis-prefix" => redis_prefix = value()?,
            // The argument is the caller's own, shown back to them.
            other => return Err(format!("unknown argument {other} (see --help)")),
        }
    }
    Ok(Args {
        listen: listen.ok_or("--listen is required (see --help)")?,
        gateway: gateway
            .ok_or("--gateway is required (see --help)")?
            .trim_end_matches('/')
            .to_owned(),
        audience: audience.ok_or("--audience is required (see --help)")?,
        redis,
        redis_prefix,
    })
}

/// Logs to standard error at `RUST_LOG` (default `info`), coloured only on
/// a terminal.
pub fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Middleware logging every refused request at info with its reason (the
/// verifier's refusal label, and for a missing permission which one): the
/// token itself, the query string and the headers are never logged.
pub async fn log_refusals(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let method = req.method().clone();
    let path = req.path().to_owned();
    let res = next.call(req).await?;
    if let Some(e) = res
        .response()
        .error()
        .and_then(|e| e.as_error::<VerifyError>())
    {
        let reason = tessera::verifier::metrics::refusal_reason(e);
        // Our own words only: a missing permission names it; the jose
        // detail says which check failed (expiry, issuer, audience...).
        let detail = match e {
            VerifyError::Forbidden(d) => d.clone(),
            VerifyError::Invalid(tessera::crypto::jose::JoseError::Invalid(d)) => d.clone(),
            _ => String::new(),
        };
        tracing::info!(
            %reason,
            %detail,
            status = res.status().as_u16(),
            %method,
            %path,
            "token refused"
        );
    }
    Ok(res)
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
