//! A control-plane admin API that accepts Tessera tokens on its own (docs/api.md, "Verifying tokens").
//!
//! `cargo run --release --example admin_api -- --listen 127.0.0.1:9002 --gateway http://127.0.0.1:8080 --audience admin-api [--redis redis://127.0.0.1:6379/]`

#[path = "downstream/common.rs"]
mod common;

use actix_web::{App, HttpServer, web};

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let usage = common::usage(
        "admin_api",
        "A control-plane admin API that accepts Tessera tokens on its own: GET /api/v1/admin/summary (api_keys:read).",
        "admin-api",
    );
    let args = common::parse_args(&usage)?;
    common::init_logging();
    let verifier = common::verifier(&args).await?;
    println!("admin_api listening on http://{}", args.listen);
    HttpServer::new(move || {
        App::new()
            .app_data(web::Data::from(verifier.clone()))
            .wrap(actix_web::middleware::from_fn(common::log_refusals))
            .configure(common::admin_routes)
    })
    .bind(&args.listen)?
    .run()
    .await?;
    Ok(())
}
