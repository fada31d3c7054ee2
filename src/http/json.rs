//! JSON request bodies, read the way the OpenAPI document describes them.

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use serde::de::DeserializeOwned;
use serde_json::{Number, Value};
use std::future::Future;
use std::pin::Pin;

use super::ApiError;
use super::body::BodyError;
use super::error::{
    DataError, ErrorCode, NOT_JSON, UNREADABLE, api_error_response, describe_at,
    describe_json_error, explain_data_error, too_large,
};
use crate::domain::DomainError;
use actix_web::http::StatusCode;
use serde_path_to_error::Segment;

/// A JSON body that must be an object, read into `T`.
///
/// `web::Json<T>` alone lets serde read a struct from an array
/// (`[null, null]`) and refuses `63.0` for an integer field, while JSON
/// Schema, and so the OpenAPI document, says the opposite of both. This
/// extractor reads the body with the limits and errors of `web::Json` (see
/// `error::json_config`), refuses anything but an object, and reads
/// integral numbers written with a fraction as integers.
pub struct JsonObject<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonObject<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = web::Json::<Value>::from_request(req, payload);
        Box::pin(async move {
            let web::Json(value) = body.await?;
            Ok(JsonObject(from_object(value).map_err(ApiError::from)?))
        })
    }
}

/// [`JsonObject`] for the hottest endpoint (`POST /api/v1/token`): the
/// body is read by [`super::body::read`] and straight into `T`, with no
/// `Value` in between; only a body that does not fit is read again as a
/// `Value`, so that its error names the field exactly as `JsonObject`'s
/// would (and a number written with a fraction is still read as an
/// integer). Its errors are `error::json_config`'s.
pub struct FastJsonObject<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for FastJsonObject<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        // As `web::Json` decides: `application/json` or any `+json` type.
        let json = matches!(req.mime_type(), Ok(Some(m))
            if m.subtype() == actix_web::mime::JSON || m.suffix() == Some(actix_web::mime::JSON));
        if !json {
            return Box::pin(async {
                Err(refused(StatusCode::UNSUPPORTED_MEDIA_TYPE, NOT_JSON.into()))
            });
        }
        let body = super::body::read(req, payload);
        Box::pin(async move {
            let body = body.await.map_err(|e| match e {
                BodyError::TooLarge(limit) => {
                    refused(StatusCode::PAYLOAD_TOO_LARGE, too_large(limit))
                }
                BodyError::Unreadable => refused(StatusCode::BAD_REQUEST, UNREADABLE.into()),
            })?;
            // Anything but an object goes the long way, which refuses it
            // (serde would read a struct from an array).
            let object = body
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|b| *b == b'{');
            if object {
                match serde_json::from_slice::<T>(&body) {
                    Ok(t) => return Ok(FastJsonObject(t)),
                    Err(e) if e.is_data() => {
                        // A `Value` keeps the last of repeated keys; the
                        // direct read refuses them, and so must the answer.
                        let explained = explain_data_error(&e.to_string());
                        if matches!(explained, DataError::Duplicate(_)) {
                            return Err(ApiError::from(DomainError::InvalidRequest(describe_at(
                                "", &explained,
                            )))
                            .into());
                        }
                    }
                    Err(e) => {
                        return Err(refused(StatusCode::BAD_REQUEST, describe_json_error(&e)));
                    }
                }
            }
            let value: Value = serde_json::from_slice(&body)
                .map_err(|e| refused(StatusCode::BAD_REQUEST, describe_json_error(&e)))?;
            Ok(FastJsonObject(from_object(value).map_err(ApiError::from)?))
        })
    }
}

/// A body refused before it was read as `T`, in the docs/errors.md shape.
fn refused(status: StatusCode, message: String) -> actix_web::Error {
    let res = api_error_response(status, ErrorCode::InvalidRequest, &message);
    actix_web::error::InternalError::from_response(message, res).into()
}

/// Reads `T` from a parsed body that must be a JSON object (400 otherwise,
/// naming no value).
pub fn from_object<T: DeserializeOwned>(mut value: Value) -> Result<T, DomainError> {
    if !value.is_object() {
        return Err(DomainError::InvalidRequest(
            "the request body must be a JSON object".into(),
        ));
    }
    integral(&mut value);
    read(&value)
}

/// Reads `T` from a parsed body; a value that does not fit is a 400 naming
/// the field and what it accepts (`environment: expected one of live,
/// test`), never the value sent.
pub fn read<T: DeserializeOwned>(value: &Value) -> Result<T, DomainError> {
    let (path, error) = match attempt::<T>(value) {
        Ok(t) => return Ok(t),
        Err(e) => e,
    };
    let error = sharpen::<T>(value, &path, error, SHARPEN_DEPTH);
    Err(DomainError::InvalidRequest(describe_at(
        &render(&path),
        &error,
    )))
}

/// One deserialization, with the path of the failing value on error.
fn attempt<T: DeserializeOwned>(value: &Value) -> Result<T, (Vec<Segment>, DataError)> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let mut path: Vec<Segment> = e.path().iter().cloned().collect();
        let error = explain_data_error(&e.inner().to_string());
        // The key of an unknown field is the caller's: name its object only.
        if matches!(error, DataError::UnknownField(_)) {
            path.pop();
        }
        (path, error)
    })
}

/// How many levels of nested arrays [`sharpen`] looks into.
const SHARPEN_DEPTH: u8 = 4;

/// Two answers serde gives say little: an enum given a non-string ("string
/// or map") does not list its values, and an array given something else
/// does not say of what. Both are learnt by reading `T` again with a probe
/// in the field's place: an empty string names the enum's values, `[true]`
/// the items' type.
fn sharpen<T: DeserializeOwned>(
    root: &Value,
    path: &[Segment],
    error: DataError,
    depth: u8,
) -> DataError {
    let DataError::Expected(what) = &error else {
        return error;
    };
    if depth == 0 {
        return error;
    }
    let (probe, inner) = match what.as_str() {
        "string or map" => (Value::String(String::new()), false),
        "an array" => (Value::Array(vec![Value::Bool(true)]), true),
        _ => return error,
    };
    let mut copy = root.clone();
    if !replace_at(&mut copy, path, probe) {
        return error;
    }
    let Err((probe_path, DataError::Expected(found))) = attempt::<T>(&copy) else {
        return error;
    };
    let expected_path = if inner {
        let mut p = path.to_vec();
        p.push(Segment::Seq { index: 0 });
        p
    } else {
        path.to_vec()
    };
    if render(&probe_path) != render(&expected_path) {
        return error;
    }
    // The items may be enums or arrays themselves: ask them too, a few
    // levels deep at most (each round reads `T` again).
    let found = match sharpen::<T>(
        &copy,
        &probe_path,
        DataError::Expected(found.clone()),
        depth - 1,
    ) {
        DataError::Expected(f) => f,
        _ => found,
    };
    DataError::Expected(if !inner {
        found
    } else {
        match found.as_str() {
            "a string" => "an array of strings".into(),
            "an object" => "an array of objects".into(),
            other => format!("an array, each item {other}"),
        }
    })
}

/// Puts `with` where `path` leads in `value`; false when it leads nowhere.
fn replace_at(value: &mut Value, path: &[Segment], with: Value) -> bool {
    let mut at = value;
    for seg in path {
        let next = match (seg, at) {
            (Segment::Seq { index }, Value::Array(items)) => items.get_mut(*index),
            (Segment::Map { key }, Value::Object(fields)) => fields.get_mut(key),
            _ => None,
        };
        match next {
            Some(v) => at = v,
            None => return false,
        }
    }
    *at = with;
    true
}

/// `accessRules[0].scope`. The keys on the way are the fields of our types
/// (an unknown one is never on a path, see [`attempt`]); a key that does not
/// look like one is not repeated.
fn render(path: &[Segment]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                let plain = crate::domain::error::quotable(key)
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                out.push_str(if plain { key } else { "…" });
            }
            Segment::Unknown => out.push('?'),
        }
    }
    out
}

/// 2^64 and -2^63 as floats: the bounds of the integer types serde reads.
const U64_END: f64 = 18_446_744_073_709_551_616.0;
const I64_MIN: f64 = -9_223_372_036_854_775_808.0;

/// Rewrites every number with no fractional part (`63.0`, `1e3`) as an
/// integer, as JSON Schema counts it, when an integer type can hold it.
fn integral(value: &mut Value) {
    match value {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => {
            let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0) else {
                return;
            };
            // In range, the casts are exact: `f` has no fraction.
            if (0.0..U64_END).contains(&f) {
                *n = Number::from(f as u64);
            } else if (I64_MIN..0.0).contains(&f) {
                *n = Number::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral),
        Value::Object(fields) => fields.values_mut().for_each(integral),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct T {
        n: Option<u64>,
        m: Option<i64>,
    }

    #[test]
    fn objects_only_and_integral_floats_are_integers() {
        let t: T = from_object(json!({"n": 63.0, "m": -2.0})).unwrap();
        assert_eq!((t.n, t.m), (Some(63), Some(-2)));
        assert!(from_object::<T>(json!([null, null])).is_err());
        assert!(from_object::<T>(json!(null)).is_err());
        assert!(from_object::<T>(json!({"n": 1.5})).is_err());
        assert!(from_object::<T>(json!({"n": 1e30})).is_err());
        assert!(from_object::<T>(json!({"x": 1})).is_err());
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(rename_all = "lowercase")]
    enum Env {
        Live,
        Test,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Rule {
        scope: String,
        roles: Vec<String>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Body {
        name: String,
        #[serde(default)]
        environment: Option<Env>,
        #[serde(default)]
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
        #[serde(default)]
        roles: Vec<String>,
        #[serde(default)]
        access_rules: Vec<Rule>,
        #[serde(default)]
        envs: Vec<Env>,
        #[serde(default)]
        ttl: Option<u32>,
    }

    fn message(v: serde_json::Value) -> String {
        match from_object::<Body>(v) {
            Err(DomainError::InvalidRequest(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    const SECRET: &str = "tsr_sk_live_Q2x9vP0aZ4mLr7TtYb1cWd3eFg5hJk8nMp6sRu0vXy";

    #[test]
    fn errors_name_the_field_and_what_it_accepts_never_the_value() {
        let cases = [
            (
                json!({"name": "a", "environment": SECRET}),
                "environment: expected one of live, test",
            ),
            (
                json!({"name": "a", "environment": 5}),
                "environment: expected one of live, test",
            ),
            (
                json!({"name": "a", "expiresAt": SECRET}),
                "expiresAt: expected an RFC 3339 instant, e.g. 2030-01-31T00:00:00Z",
            ),
            (
                json!({"name": "a", "expiresAt": 5}),
                "expiresAt: expected an RFC 3339 instant, e.g. 2030-01-31T00:00:00Z",
            ),
            (
                json!({"name": "a", "roles": SECRET}),
                "roles: expected an array of strings",
            ),
            (
                json!({"name": "a", "roles": ["x", 5]}),
                "roles[1]: expected a string",
            ),
            (
                json!({"name": "a", "accessRules": [{"scope": "s"}]}),
                "accessRules[0].roles: required",
            ),
            (
                json!({"name": "a", "accessRules": {"scope": "s"}}),
                "accessRules: expected an array of objects",
            ),
            (
                json!({"name": "a", "envs": [SECRET]}),
                "envs[0]: expected one of live, test",
            ),
            (
                json!({"name": "a", "envs": "live"}),
                "envs: expected an array, each item one of live, test",
            ),
            (
                json!({"name": "a", "ttl": 1e12}),
                "ttl: expected an integer from 0 to 4294967295",
            ),
            (json!({}), "name: required"),
            (
                json!({"name": "a", SECRET: 1}),
                "the request body: unknown field; the fields are name, environment, expiresAt, roles, accessRules, envs, ttl",
            ),
            (
                json!({"name": "a", "accessRules": [{"scope": "s", "roles": [], SECRET: 1}]}),
                "accessRules[0]: unknown field; the fields are scope, roles",
            ),
        ];
        for (body, want) in cases {
            let got = message(body.clone());
            assert_eq!(got, want, "{body}");
            assert!(!got.contains("tsr_"), "{got}");
        }
    }
}
