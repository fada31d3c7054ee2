//! The OpenAPI 3.1 document, generated from the handlers' annotations and
//! the types' schemas, so it cannot drift from the code. Served at
//! `/openapi.json` and printed by `tessera openapi`.

use actix_web::HttpResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::{
    ApiErrorBody, BadRequest, Forbidden, OAuthBadRequest, OAuthErrorBody, OAuthPayloadTooLarge,
    OAuthTooManyRequests, OAuthUnauthorized, OAuthUnavailable, PayloadTooLarge, RequestTimeout,
    TooManyRequests, Unauthorized, Unavailable, UnsupportedMediaType,
};

struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.bearer_format = Some("JWT".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tessera",
        description = "Token-exchange auth gateway: application secrets in, short-lived signed JWTs out.\n\nEvery error on `/api/*` has one JSON shape (`ApiErrorBody`, described in the repository's docs/errors.md); `/oauth/*` answers RFC 6749 §5.2 bodies (`OAuthErrorBody`). A method a documented path does not have answers 405 with `Allow` naming those it has; an unknown path answers 404; a request that does not arrive within the gateway's `request_timeout` answers 408 and the connection is closed."
    ),
    paths(
        super::health::healthz,
        super::health::readyz,
        super::health::metrics,
        super::discovery::jwks,
        super::discovery::metadata,
        super::discovery::openid_configuration,
        super::token::api_token,
        super::token::oauth_token,
        super::oauth::device::device_authorization,
        super::revocation::revoke,
        super::revocation::introspect,
        super::revocation::feed,
        super::apps::create,
        super::apps::list,
        super::apps::get,
        super::apps::patch,
        super::apps::rotate,
        super::apps::revoke,
        super::apps::delete,
        super::apps::bulk_delete,
        super::apps::permissions,
        super::leaks::report,
        super::keys::list,
        super::keys::rotate,
        super::keys::revoke,
        super::admin::list_roles,
        super::admin::create_role,
        super::admin::get_role,
        super::admin::patch_role,
        super::admin::delete_role,
        super::admin::list_users,
        super::admin::create_user,
        super::admin::get_user,
        super::admin::patch_user,
        super::admin::delete_user,
        super::admin::audit_log,
        super::me::get_me,
        super::me::sessions,
        super::me::end_session,
        super::me::change_password,
        openapi_json,
    ),
    components(
        schemas(ApiErrorBody, OAuthErrorBody),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            RequestTimeout,
            PayloadTooLarge,
            UnsupportedMediaType,
            TooManyRequests,
            Unavailable,
            OAuthBadRequest,
            OAuthUnauthorized,
            OAuthPayloadTooLarge,
            OAuthTooManyRequests,
            OAuthUnavailable,
        )
    ),
    modifiers(&Security),
    tags(
        (name = "tokens", description = "Exchanging credentials for access tokens"),
        (name = "apps", description = "Applications (API keys)"),
        (name = "roles", description = "Roles: permission templates"),
        (name = "users", description = "Users (owners of applications)"),
        (name = "people", description = "A signed-in person's own record, sessions and password"),
        (name = "audit", description = "The audit log"),
        (name = "keys", description = "The gateway's signing keys and their lifecycle"),
        (name = "leaks", description = "Leaked keys and tokens reported by secret scanners"),
        (name = "revocation", description = "Revocation, introspection and the revocation feed"),
        (name = "discovery", description = "JWKS and metadata"),
        (name = "operations", description = "Health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

/// The document as pretty JSON.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".into())
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object)))]
/// `GET /openapi.json`.
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The feed's entries are `Revocation`s: the document shows every kind,
    /// sessions included, because it is derived from the type.
    #[test]
    fn the_feed_schema_shows_every_revocation_kind() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let schemas = &doc["components"]["schemas"];
        let kind = schemas["RevocationKind"].to_string();
        for (tag, field) in [
            ("jti", "jti"),
            ("subject", "notBeforeMs"),
            ("session", "sid"),
        ] {
            assert!(kind.contains(&format!("\"{tag}\"")), "{tag}: {kind}");
            assert!(kind.contains(&format!("\"{field}\"")), "{field}: {kind}");
        }
        let entries = schemas["FeedPageBody"]["properties"]["entries"].to_string();
        assert!(entries.contains("Revocation"), "{entries}");
    }

    /// The leaks report is documented as the handler reads it: an array of
    /// at most 100 entries with exactly three bounded strings, and answered
    /// with labels only.
    #[test]
    fn the_leaks_report_schema_states_its_bounds() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let op = &doc["paths"]["/api/v1/leaks"]["post"];
        let body = &op["requestBody"]["content"]["application/json"]["schema"];
        let body = match body["$ref"].as_str() {
            Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
            None => body,
        };
        assert_eq!(body["type"], "array", "{body}");
        assert_eq!(body["maxItems"], 100, "{body}");
        let entry = &doc["components"]["schemas"]["LeakEntry"];
        assert_eq!(entry["additionalProperties"], false, "{entry}");
        assert_eq!(
            entry["required"],
            serde_json::json!(["token", "url", "source"])
        );
        let props = &entry["properties"];
        assert_eq!(props["token"]["maxLength"], 8192);
        assert_eq!(props["url"]["maxLength"], 2048);
        assert_eq!(props["source"]["maxLength"], 100);
        let verdict = &doc["components"]["schemas"]["LeakVerdict"];
        assert_eq!(
            verdict["required"],
            serde_json::json!(["label"]),
            "{verdict}"
        );
        let label = doc["components"]["schemas"]["LeakLabel"].to_string();
        assert!(label.contains("true_positive") && label.contains("false_positive"));
        assert!(op["responses"]["422"].is_object() && op["responses"]["403"].is_object());
    }
}
