//! The HTTP surface: the route table, the error shapes, and the extractors.
//! Handlers only parse, call a service, and map the result.

pub mod access;
pub mod admin;
pub mod apps;
pub mod body;
pub mod console;
pub mod discovery;
pub mod error;
pub mod extract;
pub mod forward;
pub mod health;
pub mod json;
pub mod keys;
pub mod leaks;
pub mod me;
pub mod oauth;
pub mod openapi;
pub mod revocation;
pub mod sso;
pub mod token;

use actix_web::{HttpRequest, HttpResponse, web};

pub use error::{ApiError, OAuthError};

/// Answers 404 with the JSON error shape for an unknown path; under
/// `/console` an HTML page instead (404, or 405 for a console path that
/// does not take this method), with the console's headers.
async fn not_found(req: HttpRequest) -> HttpResponse {
    let path = req.path();
    if path == "/console" || path.starts_with("/console/") {
        return console::system::missing(&req);
    }
    error::path_not_found(path.starts_with("/oauth/"))
}

/// A resource whose unmatched methods get a JSON 405 with `Allow` naming
/// the methods it has (`allow` must list exactly the routes added to it).
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move |req: HttpRequest| async move {
        error::method_not_allowed(req.method(), allow, req.path().starts_with("/oauth/"))
    }))
}

/// Registers every route, the body limits and the extractor error handlers.
pub fn routes(max_body: usize) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(error::json_config(max_body))
            .app_data(error::form_config(max_body))
            .app_data(error::query_config())
            .app_data(error::path_config())
            .app_data(web::PayloadConfig::new(max_body))
            .app_data(body::BodyLimit(max_body))
            // First: it sits in front of every API call behind the proxy,
            // and actix tries routes in order (the bench measured the
            // parameterised routes ahead of it costing a tenth).
            // Any method: the proxy asks with the method of the request it
            // guards (Traefik and Envoy do; nginx always asks with GET).
            .service(web::resource("/auth/forward").route(web::route().to(forward::check)))
            // Then the token endpoints, the hottest calls, ahead of every
            // parameterised route: each of those costs a regex match.
            .service(resource("/api/v1/token", "POST").route(web::post().to(token::api_token)))
            .service(resource("/oauth/token", "POST").route(web::post().to(token::oauth_token)))
            // Envoy's ext_authz appends the original path to its prefix.
            .service(
                web::resource("/auth/forward/{tail:.*}").route(web::route().to(forward::check)),
            )
            .service(resource("/healthz", "GET").route(web::get().to(health::healthz)))
            .service(resource("/readyz", "GET").route(web::get().to(health::readyz)))
            .service(resource("/metrics", "GET").route(web::get().to(health::metrics)))
            .service(resource("/openapi.json", "GET").route(web::get().to(openapi::openapi_json)))
            .service(
                resource("/.well-known/jwks.json", "GET").route(web::get().to(discovery::jwks)),
            )
            .service(
                resource("/.well-known/oauth-authorization-server", "GET")
                    .route(web::get().to(discovery::metadata)),
            )
            .service(
                resource("/.well-known/openid-configuration", "GET")
                    .route(web::get().to(discovery::openid_configuration)),
            )
            .service(
                resource("/oauth/authorize", "GET, POST")
                    .route(web::get().to(oauth::authorize))
                    .route(web::post().to(oauth::sign_in)),
            )
            .service(
                resource("/oauth/userinfo", "GET, POST")
                    .route(web::get().to(oauth::userinfo))
                    .route(web::post().to(oauth::userinfo)),
            )
            .service(
                resource("/oauth/logout", "GET, POST")
                    .route(web::get().to(oauth::logout_get))
                    .route(web::post().to(oauth::logout_post)),
            )
            .service(
                resource("/oauth/assets/tessera.css", "GET")
                    .route(web::get().to(oauth::stylesheet)),
            )
            .service(resource("/sso/{name}/login", "GET").route(web::get().to(sso::login)))
            .service(resource("/sso/{name}/callback", "GET").route(web::get().to(sso::callback)))
            .service(resource("/api/v1/me", "GET").route(web::get().to(me::get_me)))
            .service(resource("/api/v1/me/sessions", "GET").route(web::get().to(me::sessions)))
            .service(
                resource("/api/v1/me/sessions/{id}", "DELETE")
                    .route(web::delete().to(me::end_session)),
            )
            .service(
                resource("/api/v1/me/password", "POST").route(web::post().to(me::change_password)),
            )
            .service(resource("/oauth/revoke", "POST").route(web::post().to(revocation::revoke)))
            .service(
                resource("/oauth/introspect", "POST").route(web::post().to(revocation::introspect)),
            )
            .service(resource("/api/v1/revocations", "GET").route(web::get().to(revocation::feed)))
            .service(
                resource("/api/v1/apps", "GET, POST")
                    .route(web::post().to(apps::create))
                    .route(web::get().to(apps::list)),
            )
            // Before `/api/v1/apps/{id}`, which would otherwise match it.
            .service(
                resource("/api/v1/apps/bulk-delete", "POST")
                    .route(web::post().to(apps::bulk_delete)),
            )
            .service(
                resource("/api/v1/apps/{id}", "GET, PATCH, DELETE")
                    .route(web::get().to(apps::get))
                    .route(web::patch().to(apps::patch))
                    .route(web::delete().to(apps::delete)),
            )
            .service(
                resource("/api/v1/apps/{id}/revoke", "POST").route(web::post().to(apps::revoke)),
            )
            .service(
                resource("/api/v1/apps/{id}/rotate", "POST").route(web::post().to(apps::rotate)),
            )
            .service(resource("/api/v1/permissions", "GET").route(web::get().to(apps::permissions)))
            .service(
                resource("/api/v1/roles", "GET, POST")
                    .route(web::get().to(admin::list_roles))
                    .route(web::post().to(admin::create_role)),
            )
            .service(
                resource("/api/v1/roles/{name}", "GET, PATCH, DELETE")
                    .route(web::get().to(admin::get_role))
                    .route(web::patch().to(admin::patch_role))
                    .route(web::delete().to(admin::delete_role)),
            )
            .service(
                resource("/api/v1/users", "GET, POST")
                    .route(web::get().to(admin::list_users))
                    .route(web::post().to(admin::create_user)),
            )
            .service(
                resource("/api/v1/users/{id}", "GET, PATCH, DELETE")
                    .route(web::get().to(admin::get_user))
                    .route(web::patch().to(admin::patch_user))
                    .route(web::delete().to(admin::delete_user)),
            )
            .service(resource("/api/v1/leaks", "POST").route(web::post().to(leaks::report)))
            .service(resource("/api/v1/keys", "GET").route(web::get().to(keys::list)))
            .service(resource("/api/v1/keys/rotate", "POST").route(web::post().to(keys::rotate)))
            .service(
                resource("/api/v1/keys/{kid}/revoke", "POST").route(web::post().to(keys::revoke)),
            )
            .service(resource("/api/v1/audit", "GET").route(web::get().to(admin::audit_log)))
            .configure(oauth::device::routes)
            .configure(console::routes)
            .default_service(web::to(not_found));
    }
}
