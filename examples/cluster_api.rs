//! A per-cluster API that accepts Tessera tokens on its own (docs/api.md, "Verifying tokens").
//!
//! `cargo run --release --example cluster_api -- --listen 127.0.0.1:9001 --gateway http://127.0.0.1:8080 --audience cluster-api [--redis redis://127.0.0.1:6379/]`
//!
//! It serves the verifier's metrics at `GET /metrics` as well.

#[path = "downstream/common.rs"]
mod common;

use actix_web::{App, HttpServer, web};

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let usage = common::usage(
        "cluster_api",
        "A per-cluster API that accepts Tessera tokens on its own: GET and POST /api/v1/clusters/{cluster}/workloads (workloads:read, workloads:write on cluster:{cluster}), and GET /metrics.",
        "cluster-api",
    );
    let args = common::parse_args(&usage)?;
    common::init_logging();
    let verifier = common::verifier(&args).await?;
    println!("cluster_api listening on http://{}", args.listen);
    HttpServer::new(move || {
        App::new()
            .app_data(web::Data::from(verifier.clone()))
            .wrap(actix_web::middleware::from_fn(common::log_refusals))
            .configure(common::cluster_routes)
            .configure(common::metrics_routes)
    })
    .bind(&args.listen)?
    .run()
    .await?;
    Ok(())
}
