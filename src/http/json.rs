//! JSON request bodies, read the way the OpenAPI document describes them.

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use serde::de::DeserializeOwned;
use serde_json::{Number, Value};
use std::future::Future;
use std::pin::Pin;

use super::ApiError;
use super::error::describe_json_error;
use crate::domain::DomainError;

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

/// Reads `T` from a parsed body that must be a JSON object (400 otherwise,
/// naming no value).
pub fn from_object<T: DeserializeOwned>(mut value: Value) -> Result<T, DomainError> {
    if !value.is_object() {
        return Err(DomainError::InvalidRequest(
            "the request body must be a JSON object".into(),
        ));
    }
    integral(&mut value);
    serde_json::from_value(value).map_err(|e| DomainError::InvalidRequest(describe_json_error(&e)))
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
}
