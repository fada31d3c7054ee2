//! A per-cluster API that accepts Tessera tokens on its own (SPEC §7).
//!
//! `cargo run --release --example cluster_api -- --listen 127.0.0.1:9001 --gateway http://127.0.0.1:8080 --audience cluster-api [--redis redis://127.0.0.1:6379/]`
//!
//! It serves the verifier's metrics at `GET /metrics` as well.

#[path = "downstream/common.rs"]
mod common;

use actix_web::{App, HttpServer, web};

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = common::parse_args()?;
    let verifier = common::verifier(&args).await?;
    println!("cluster_api listening on http://{}", args.listen);
    HttpServer::new(move || {
        App::new()
            .app_data(web::Data::from(verifier.clone()))
            .configure(common::cluster_routes)
            .configure(common::metrics_routes)
    })
    .bind(&args.listen)?
    .run()
    .await?;
    Ok(())
}
