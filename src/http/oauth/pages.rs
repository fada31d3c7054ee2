//! Server-rendered pages of the sign-in flow. Plain HTML forms that work
//! without JavaScript, every control labelled, nothing from another origin
//! (one stylesheet from this gateway; a strict Content-Security-Policy).

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, HttpResponseBuilder};

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    crate::domain::markup::escape(s)
}

/// The stylesheet every page links (served at `/oauth/assets/tessera.css`).
pub const STYLESHEET: &str = "\
*{box-sizing:border-box}\
body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d1f23}\
main{max-width:26rem;margin:3rem auto;padding:2rem;background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.15)}\
h1{font-size:1.4rem;margin:0 0 1rem}\
label{display:block;margin:1rem 0 .25rem;font-weight:600}\
input[type=email],input[type=password]{width:100%;padding:.6rem;border:1px solid #8a8f98;border-radius:4px;font-size:1rem}\
button{margin-top:1.25rem;width:100%;padding:.7rem;border:0;border-radius:4px;background:#1f5fbf;color:#fff;font-size:1rem;cursor:pointer}\
button:focus,input:focus,a:focus{outline:3px solid #f0b400;outline-offset:1px}\
a.idp{display:block;margin-top:.75rem;padding:.7rem;border:1px solid #1f5fbf;border-radius:4px;color:#1f5fbf;text-align:center;text-decoration:none}\
.or{margin:1.5rem 0 0;text-align:center;color:#555}\
.error{background:#fde8e8;color:#8a1c1c;padding:.75rem;border-radius:4px}\
.muted{color:#555;font-size:.9rem}\
input[type=text]{width:100%;padding:.6rem;border:1px solid #8a8f98;border-radius:4px;font-size:1.2rem;letter-spacing:.1em;text-transform:uppercase}\
button.secondary{background:#5a6270}\
.scope li{margin:.4rem 0}\
@media (max-width:420px){main{margin:0;border-radius:0;min-height:100vh}}";

/// A complete page.
fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t} · Tessera</title><link rel=\"stylesheet\" href=\"/oauth/assets/tessera.css\"></head>\
<body><main>{body}</main></body></html>\n",
        t = esc(title)
    )
}

/// A response carrying a page, with the headers every page has. `form_to`
/// is an extra origin a form on the page may end up at (the redirect after
/// sign-in), for the CSP's `form-action`.
pub fn respond(status: StatusCode, title: &str, body: &str, form_to: Option<&str>) -> HttpResponse {
    let mut res = HttpResponseBuilder::new(status);
    headers(&mut res, form_to);
    res.content_type("text/html; charset=utf-8")
        .body(page(title, body))
}

/// The headers of every page: no caching, no framing, no foreign content.
pub fn headers(res: &mut HttpResponseBuilder, form_to: Option<&str>) {
    let form_action = match form_to {
        Some(o) => format!("'self' {o}"),
        None => "'self'".into(),
    };
    res.insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            format!(
                "default-src 'none'; style-src 'self'; img-src 'self'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
            ),
        ))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        // Not `no-referrer`: under it a browser sends `Origin: null` with
        // the page's own form posts, which the Origin check refuses. The
        // query (state, challenge) still never leaves for another site.
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .insert_header(("X-Content-Type-Options", "nosniff"));
}

/// Hidden fields carrying a request's parameters through a form.
pub fn hidden(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                esc(k),
                esc(v)
            )
        })
        .collect()
}

/// The sign-in form (fields `email` and `password`, for password managers
/// and scripts), then one link per upstream provider (`idps`: URL and
/// display name). Links rather than forms: a form's redirect to the
/// provider would be blocked by the page's `form-action`.
pub fn sign_in(
    hidden_fields: &str,
    csrf: &str,
    email: &str,
    error: Option<&str>,
    idps: &[(String, String)],
) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    let mut links = String::new();
    if !idps.is_empty() {
        links.push_str("<p class=\"or\">or</p>");
        for (href, name) in idps {
            links.push_str(&format!(
                "<a class=\"idp\" href=\"{}\">Sign in with {}</a>",
                esc(href),
                esc(name)
            ));
        }
    }
    format!(
        "<h1>Sign in to Tessera</h1>{error}\
<form method=\"post\" action=\"/oauth/authorize\">{hidden_fields}\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<label for=\"email\">Email</label>\
<input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required value=\"{email}\">\
<label for=\"password\">Password</label>\
<input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
<button type=\"submit\">Sign in</button></form>{links}",
        csrf = esc(csrf),
        email = esc(email),
    )
}

/// After a single sign-on with nowhere to continue.
pub fn signed_in(email: &str) -> String {
    format!(
        "<h1>Signed in</h1><p>You are signed in to Tessera as {}. You can close this window or go back to your application.</p>",
        esc(email)
    )
}

/// A refused single sign-on.
pub fn sso_refused(message: &str) -> String {
    format!(
        "<h1>Sign-in refused</h1><p class=\"error\" role=\"alert\">{}</p>\
<p class=\"muted\">Go back to the application you came from and start again.</p>",
        esc(message)
    )
}

/// A page that explains a refusal and links nowhere it was not asked to.
pub fn error(message: &str) -> String {
    format!(
        "<h1>This sign-in request cannot be completed</h1><p class=\"error\" role=\"alert\">{}</p>\
<p class=\"muted\">Go back to the application you came from and start again.</p>",
        esc(message)
    )
}

/// After logging out with nowhere to go.
pub fn signed_out() -> String {
    "<h1>Signed out</h1><p>You are signed out of Tessera. You can close this window.</p>".into()
}

/// Asks before ending a session when the request does not prove it came
/// from the session's own client.
pub fn confirm_logout(hidden_fields: &str, csrf: &str) -> String {
    format!(
        "<h1>Sign out of Tessera?</h1><p>An application asked to end your Tessera session.</p>\
<form method=\"post\" action=\"/oauth/logout\">{hidden_fields}\
<input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<button type=\"submit\">Sign out</button></form>",
        esc(csrf)
    )
}

/// The device page's first step: the user code (RFC 8628 §3.3).
pub fn device_entry(csrf: &str, user_code: &str, error: Option<&str>) -> String {
    // A refusal sits between the label and the field it is about, and the
    // field names it, so a screen reader reads it with the field.
    let (error, invalid) = match error {
        Some(e) => (
            format!(
                "<p id=\"code_error\" class=\"error\" role=\"alert\">{}</p>",
                esc(e)
            ),
            " aria-invalid=\"true\" aria-describedby=\"code_error code_help\"",
        ),
        None => (String::new(), " aria-describedby=\"code_help\""),
    };
    format!(
        "<h1>Connect a device</h1>\
<p>Enter the code your device shows to let it sign in as you.</p>\
<form method=\"post\" action=\"/device\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<label for=\"user_code\">Code</label>{error}\
<input id=\"user_code\" name=\"user_code\" type=\"text\" autocomplete=\"off\" autocapitalize=\"characters\" spellcheck=\"false\" maxlength=\"20\" required value=\"{code}\"{invalid}>\
<p id=\"code_help\" class=\"muted\">Eight letters, like BCDF-GHJK.</p>\
<button type=\"submit\">Continue</button></form>",
        csrf = esc(csrf),
        code = esc(user_code),
    )
}

/// The device page's second step: which client asks for what, and the
/// person's answer.
pub fn device_confirm(
    csrf: &str,
    user_code: &str,
    client_name: &str,
    email: &str,
    scope: &[(String, String)],
) -> String {
    let items: String = scope
        .iter()
        .map(|(w, what)| {
            if what.is_empty() {
                format!("<li><code>{}</code></li>", esc(w))
            } else {
                format!("<li><code>{}</code>: {}</li>", esc(w), esc(what))
            }
        })
        .collect();
    format!(
        "<h1>Allow {client} to sign in as you?</h1>\
<p><strong>{client}</strong> asks to act as <strong>{email}</strong> on the device showing the code <strong>{code}</strong>. It asks for:</p>\
<ul class=\"scope\">{items}</ul>\
<p class=\"muted\">Allow only if you started this sign-in yourself and the device shows this code.</p>\
<form method=\"post\" action=\"/device/confirm\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<input type=\"hidden\" name=\"user_code\" value=\"{code}\">\
<button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
<button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button></form>",
        client = esc(client_name),
        email = esc(email),
        code = esc(user_code),
        csrf = esc(csrf),
    )
}

/// After the person answered.
pub fn device_done(approved: bool, client_name: &str) -> String {
    if approved {
        format!(
            "<h1>Device connected</h1><p>{} is signed in as you. Return to your device; you can close this window.</p>",
            esc(client_name)
        )
    } else {
        format!(
            "<h1>Request denied</h1><p>{} was not allowed to sign in. You can close this window.</p>",
            esc(client_name)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let h = hidden(&[("state", "\"><script>")]);
        assert!(!h.contains("<script>"), "{h}");
    }
}
