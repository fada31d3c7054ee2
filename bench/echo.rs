//! The edge benchmark's floor: a bare actix-web server answering every
//! request with a small JSON body (its method and path), with no
//! credentials, store or policy. `/auth/forward` and nginx in front of it
//! are measured against it (`bench/edge.sh`).
//!
//! `cargo run --release --example edge_echo -- 127.0.0.1:18091 [workers]`
//!
//! Workers default to the number of cores, as the gateway's do.

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::json;

async fn echo(req: HttpRequest) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "ok": true,
        "method": req.method().as_str(),
        "path": req.path(),
    }))
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18091".into());
    // The gateway's own default (src/startup.rs), so both sides have the
    // same threads to serve with.
    let workers = match args.next() {
        Some(n) => n.parse::<usize>()?.max(1),
        None => std::thread::available_parallelism().map_or(2, |n| n.get()),
    };
    println!("edge_echo listening on http://{listen} with {workers} workers");
    // One handler for every path and method: nginx passes paths on as the
    // client wrote them.
    HttpServer::new(|| App::new().default_service(web::to(echo)))
        .workers(workers)
        .bind(&listen)?
        .run()
        .await?;
    Ok(())
}
