//! A small HTTP client for the admin API: exchanges the CLI's credentials
//! for a token once, then sends authenticated calls.

use reqwest::Method;
use serde_json::Value;

use super::Remote;

/// An authenticated connection to a gateway.
pub struct AdminClient {
    base: String,
    http: reqwest::Client,
    token: String,
}

/// Turns an error response into one line: status, message and code.
pub fn describe(status: reqwest::StatusCode, body: &Value) -> String {
    super::credentials::printable(&describe_raw(status, body))
}

fn describe_raw(status: reqwest::StatusCode, body: &Value) -> String {
    let e = &body["error"];
    match (e.get("code"), e.as_str()) {
        (Some(code), _) => format!(
            "{status}: {} ({})",
            e["message"].as_str().unwrap_or_default(),
            code.as_str().unwrap_or_default()
        ),
        // `/oauth/*` (RFC 6749 §5.2): the same shape, the description as
        // the message and the error as the code.
        (None, Some(oauth)) => format!(
            "{status}: {} ({oauth})",
            body["error_description"].as_str().unwrap_or_default()
        ),
        _ => format!("{status}"),
    }
}

impl AdminClient {
    /// Exchanges the credentials for an access token: the application's
    /// (`TESSERA_APP_ID`/`TESSERA_APP_SECRET`) when set, else the stored
    /// login of `tessera login`, refreshed when it is about to expire.
    pub async fn connect(remote: &Remote) -> Result<Self, String> {
        let http = reqwest::Client::new();
        let Some(secret) = remote.app_secret.as_deref() else {
            let base = super::credentials::normalise_url(&remote.url)?;
            let token = super::credentials::access_token(&http, &base).await?;
            return Ok(Self {
                base,
                http,
                token: secrecy::ExposeSecret::expose_secret(&token).to_owned(),
            });
        };
        let base = remote.url.trim_end_matches('/').to_owned();
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_secret", secret),
        ];
        if let Some(id) = remote.app_id.as_deref() {
            form.push(("client_id", id));
        }
        let url = format!("{base}/oauth/token");
        let res = http
            .post(&url)
            .form(&form)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let (status, body) = read_json(&url, res).await?;
        if !status.is_success() {
            return Err(describe(status, &body));
        }
        let token = body["access_token"]
            .as_str()
            .ok_or("the gateway answered without an access_token")?
            .to_owned();
        Ok(Self { base, http, token })
    }

    /// Sends a call; success gives the JSON body (`Null` for 204).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.map_err(|e| format!("{url}: {e}"))?;
        let (status, body) = read_json(&url, res).await?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(describe(status, &body))
        }
    }

    /// Posts a form to an `/oauth/*` endpoint with the bearer token; success
    /// gives the JSON body (`Null` when empty). Errors are RFC 6749 shaped.
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let res = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .form(form)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let (status, body) = read_json(&url, res).await?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(describe(status, &body))
        }
    }

    /// Sends a GET whose success body is not JSON (a CSV export); gives the
    /// body and the response headers. Errors are still JSON, in the shape
    /// of docs/errors.md.
    pub async fn get_text(
        &self,
        path: &str,
    ) -> Result<(String, reqwest::header::HeaderMap), String> {
        let url = format!("{}{path}", self.base);
        let res = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let (status, headers) = (res.status(), res.headers().clone());
        let text = res.text().await.map_err(|e| format!("{url}: {e}"))?;
        if status.is_success() {
            return Ok((text, headers));
        }
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        Err(describe(status, &body))
    }
}

/// Reads an answer's status and JSON body (`Null` when empty); `url` names
/// the request in errors. An error answer that is not JSON (a proxy's HTML
/// 502) gives `Null`, so that the caller still reports its status; a
/// success that is not JSON is an error naming the status.
pub(crate) async fn read_json(
    url: &str,
    res: reqwest::Response,
) -> Result<(reqwest::StatusCode, Value), String> {
    let status = res.status();
    let text = res.text().await.map_err(|e| format!("{url}: {e}"))?;
    if text.is_empty() {
        return Ok((status, Value::Null));
    }
    match serde_json::from_str(&text) {
        Ok(body) => Ok((status, body)),
        Err(_) if !status.is_success() => Ok((status, Value::Null)),
        Err(e) => Err(format!("{url}: unreadable answer ({status}): {e}")),
    }
}
