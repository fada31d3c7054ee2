//! Behind a reverse proxy (docs/operations.md): which forwarding header counts, and
//! what a user sees when a request's proxy chain is forged or unreadable.
//!
//! Every request here comes from 127.0.0.1, the configured trusted proxy,
//! so the gateway reads the configured header. One application may be used
//! only from 127.0.0.1, another only from 198.51.100.7.

use actix_web::{App, HttpResponse, HttpServer, web};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
use std::sync::Arc;
use tessera::domain::IpNet;
use tessera::domain::cidr::ForwardedHeader;
use tessera::verifier::actix::Authenticated;
use tessera::verifier::{RevocationSource, Verifier, VerifierConfig};

use crate::helpers::*;

const XFF: ForwardedHeader = ForwardedHeader::XForwardedFor;
const FWD: ForwardedHeader = ForwardedHeader::Forwarded;

/// The proxy's own statement that the client is 127.0.0.1 (itself), for the
/// test's set-up calls.
fn self_header(mode: ForwardedHeader) -> (&'static str, &'static str) {
    match mode {
        ForwardedHeader::XForwardedFor => ("x-forwarded-for", "127.0.0.1"),
        ForwardedHeader::Forwarded => ("forwarded", "for=127.0.0.1"),
    }
}

struct Behind {
    app: TestApp,
    /// Allowed only from 127.0.0.1.
    local: String,
    /// Allowed only from 198.51.100.7.
    remote: String,
}

/// A gateway trusting 127.0.0.1 as its proxy, reading `mode`, with the two
/// applications.
async fn behind(mode: ForwardedHeader, trusted: &str) -> Behind {
    let trusted = IpNet::parse(trusted).unwrap();
    let mut app = spawn_with(|s| {
        s.trusted_proxies = vec![trusted];
        s.forwarded_header = mode;
    })
    .await;
    // The harness's own calls go through "the proxy" too: without the
    // header it would rightly be refused.
    let (name, value) = self_header(mode);
    let mut defaults = HeaderMap::new();
    defaults.insert(name, HeaderValue::from_static(value));
    app.client = reqwest::Client::builder()
        .default_headers(defaults)
        .build()
        .unwrap();
    let (_l, local) = app
        .create_app(json!({"name": "local", "allowedIps": ["127.0.0.1/32"]}))
        .await;
    let (_r, remote) = app
        .create_app(json!({"name": "remote", "allowedIps": ["198.51.100.7/32"]}))
        .await;
    Behind { app, local, remote }
}

/// `POST /api/v1/token` with exactly `headers` (repeated names are separate
/// header lines): status, docs/errors.md code, body.
async fn exchange(app: &TestApp, secret: &str, headers: &[(&str, &str)]) -> (u16, String, Value) {
    let mut req = reqwest::Client::new()
        .post(app.url("/api/v1/token"))
        .json(&json!({"AppSecret": secret}));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    error_code(req.send().await.unwrap()).await
}

fn expected_code(status: u16) -> &'static str {
    match status {
        200 => "",
        400 => "invalid_request",
        403 => "ip_not_allowed",
        _ => unreachable!("no such case"),
    }
}

/// One row: the headers sent, and the status for the local and the remote
/// application.
type Row<'a> = (&'a [(&'a str, &'a str)], u16, u16);

async fn run_matrix(b: &Behind, header_name: &str, rows: &[Row<'_>]) {
    for (headers, local, remote) in rows {
        for (secret, want, which) in [(&b.local, *local, "local"), (&b.remote, *remote, "remote")] {
            let (status, code, body) = exchange(&b.app, secret, headers).await;
            assert_eq!(
                (status, code.as_str()),
                (want, expected_code(want)),
                "{which} app, headers {headers:?}: {body}"
            );
            if want == 400 {
                let message = body["error"]["message"].as_str().unwrap();
                assert!(message.contains(header_name), "{message}");
                // The refusal never quotes what the header said.
                for (_, v) in *headers {
                    for word in v.split([',', ';', '=', ' ', '"']) {
                        if word.len() > 3 {
                            assert!(!message.contains(word), "{message} quotes {word}");
                        }
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_matrix() {
    let b = behind(XFF, "127.0.0.1/32").await;
    let many = vec!["127.0.0.1"; 33].join(", ");
    let many_hops = [("x-forwarded-for", many.as_str())];
    let many_lines = vec![("x-forwarded-for", "127.0.0.1"); 33];
    let rows: Vec<Row<'_>> = vec![
        // The proxy must say who the client is.
        (&[], 400, 400),
        (&[("x-forwarded-for", "")], 400, 400),
        // The red team's case: the unparsable hop is left of the deciding
        // one, so the client is 203.0.113.9, not the proxy.
        (&[("x-forwarded-for", "garbage, 203.0.113.9")], 403, 403),
        // Unparsable where it decides: refused, never the peer.
        (&[("x-forwarded-for", "203.0.113.9, garbage")], 400, 400),
        (&[("x-forwarded-for", "198.51.100.7, unknown")], 400, 400),
        (&[("x-forwarded-for", "198.51.100.7, _hidden")], 400, 400),
        (&[("x-forwarded-for", "198.51.100.7,")], 400, 400),
        (
            &[("x-forwarded-for", "198.51.100.7, , 127.0.0.1")],
            400,
            400,
        ),
        (&many_hops, 400, 400),
        (&many_lines, 400, 400),
        // Well-formed chains.
        (&[("x-forwarded-for", "127.0.0.1")], 200, 403),
        (&[("x-forwarded-for", "198.51.100.7")], 403, 200),
        (&[("x-forwarded-for", "198.51.100.7:5123")], 403, 200),
        (&[("x-forwarded-for", "198.51.100.7, 127.0.0.1")], 403, 200),
        (
            &[("x-forwarded-for", "garbage, 198.51.100.7, 127.0.0.1")],
            403,
            200,
        ),
        // A client claiming the proxy's address on the left changes nothing.
        (&[("x-forwarded-for", "127.0.0.1, 198.51.100.7")], 403, 200),
        (
            &[("x-forwarded-for", "198.51.100.7, 203.0.113.9")],
            403,
            403,
        ),
        (&[("x-forwarded-for", "[2001:db8::1]:443")], 403, 403),
        // Several lines are one list, in order.
        (
            &[
                ("x-forwarded-for", "198.51.100.7"),
                ("x-forwarded-for", "127.0.0.1"),
            ],
            403,
            200,
        ),
        (
            &[
                ("x-forwarded-for", "198.51.100.7"),
                ("x-forwarded-for", "unknown"),
            ],
            400,
            400,
        ),
        // The other kind is ignored entirely: a client-sent `Forwarded`
        // never wins, and never stands in for a missing X-Forwarded-For.
        (
            &[
                ("forwarded", "for=198.51.100.7"),
                ("x-forwarded-for", "127.0.0.1"),
            ],
            200,
            403,
        ),
        (
            &[
                ("forwarded", "for=127.0.0.1"),
                ("x-forwarded-for", "198.51.100.7"),
            ],
            403,
            200,
        ),
        (&[("forwarded", "for=127.0.0.1")], 400, 400),
        (
            &[
                ("forwarded", "for=unknown"),
                ("x-forwarded-for", "127.0.0.1"),
            ],
            200,
            403,
        ),
    ];
    run_matrix(&b, "X-Forwarded-For", &rows).await;

    // The refused address is named in a 403.
    let (_, _, body) = exchange(
        &b.app,
        &b.local,
        &[("x-forwarded-for", "[2001:db8::1]:443")],
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2001:db8::1"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_matrix() {
    let b = behind(FWD, "127.0.0.1/32").await;
    let rows: Vec<Row<'_>> = vec![
        (&[], 400, 400),
        // The red team's cases.
        (&[("forwarded", "proto=https")], 400, 400),
        (&[("forwarded", "for=unknown")], 400, 400),
        (&[("forwarded", "for=_hidden;proto=https")], 400, 400),
        (&[("forwarded", "for=198.51.100.7, proto=https")], 400, 400),
        (&[("forwarded", "for=198.51.100.7, ")], 400, 400),
        (&[("forwarded", "for=\"198.51.100.7")], 400, 400),
        (&[("forwarded", "for=198.51.100.7;for=127.0.0.1")], 400, 400),
        // An open quote swallows the proxy's element on the same line.
        (
            &[("forwarded", "for=127.0.0.1;x=\", for=198.51.100.7")],
            400,
            400,
        ),
        // Well-formed chains.
        (&[("forwarded", "for=127.0.0.1")], 200, 403),
        (&[("forwarded", "for=198.51.100.7")], 403, 200),
        (
            &[(
                "forwarded",
                "for=\"198.51.100.7:4711\";proto=https, for=127.0.0.1",
            )],
            403,
            200,
        ),
        (&[("forwarded", "for=unknown, for=198.51.100.7")], 403, 200),
        (&[("forwarded", "for=127.0.0.1, for=203.0.113.9")], 403, 403),
        (&[("forwarded", "for=\"[2001:db8::1]:443\"")], 403, 403),
        (
            &[
                ("forwarded", "for=198.51.100.7;proto=https"),
                ("forwarded", "for=127.0.0.1"),
            ],
            403,
            200,
        ),
        // X-Forwarded-For is ignored entirely in this mode.
        (
            &[
                ("x-forwarded-for", "198.51.100.7"),
                ("forwarded", "for=127.0.0.1"),
            ],
            200,
            403,
        ),
        (&[("x-forwarded-for", "127.0.0.1")], 400, 400),
        (
            &[
                ("x-forwarded-for", "garbage"),
                ("forwarded", "for=198.51.100.7"),
            ],
            403,
            200,
        ),
    ];
    run_matrix(&b, "Forwarded", &rows).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_peer_is_the_client_whatever_it_sends() {
    // The proxy is somewhere else: 127.0.0.1 is an ordinary client.
    let b = behind(XFF, "10.0.0.0/8").await;
    let rows: Vec<Row<'_>> = vec![
        (&[], 200, 403),
        (&[("x-forwarded-for", "198.51.100.7")], 200, 403),
        (&[("x-forwarded-for", "garbage")], 200, 403),
        (&[("forwarded", "for=198.51.100.7")], 200, 403),
    ];
    run_matrix(&b, "X-Forwarded-For", &rows).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_on_the_oauth_and_admin_endpoints() {
    let b = behind(XFF, "127.0.0.1/32").await;
    let client = reqwest::Client::new();
    // RFC 6749's own error shape on /oauth/token.
    let res = client
        .post(b.app.url("/oauth/token"))
        .header("x-forwarded-for", "198.51.100.7, unknown")
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_secret", b.remote.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("X-Forwarded-For"),
        "{body}"
    );
    let res = client
        .post(b.app.url("/oauth/token"))
        .header("x-forwarded-for", "198.51.100.7")
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_secret", b.remote.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // The admin API (the `Caller` extractor): docs/errors.md shape.
    let admin = b.app.admin_token().await;
    let list = |xff: Option<&'static str>| {
        let mut req = client.get(b.app.url("/api/v1/apps")).bearer_auth(&admin);
        if let Some(v) = xff {
            req = req.header("x-forwarded-for", v);
        }
        req.send()
    };
    let (status, code, _) = error_code(list(None).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "invalid_request"));
    let (status, code, _) = error_code(list(Some("for=127.0.0.1")).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "invalid_request"));
    assert_eq!(list(Some("127.0.0.1")).await.unwrap().status(), 200);

    // Revocation authenticates its caller with the same rule.
    let res = client
        .post(b.app.url("/oauth/revoke"))
        .header("x-forwarded-for", "unknown")
        .form(&[("client_secret", b.remote.as_str()), ("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

/// A downstream service behind the same proxy: the verifier applies the
/// gateway's rule to the token's `allowed_cidrs`.
async fn verifier_behind(
    b: &Behind,
    mode: ForwardedHeader,
) -> (String, actix_web::dev::ServerHandle) {
    let mut config = VerifierConfig::new(
        &b.app.address,
        &b.app.issuer_hint(),
        "tessera",
        RevocationSource::Disabled,
    );
    config.trusted_proxies = vec![IpNet::parse("127.0.0.1/32").unwrap()];
    config.forwarded_header = mode;
    let verifier: Arc<Verifier> =
        Verifier::with_fixed_keys(config, &b.app.jwks().await, None).unwrap();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::from(verifier.clone()))
            .route(
                "/whoami",
                web::get().to(|Authenticated(t): Authenticated| async move {
                    HttpResponse::Ok().json(json!({"sub": t.claims.sub}))
                }),
            )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}/whoami"), handle)
}

async fn verifier_matrix(mode: ForwardedHeader, rows: &[Row<'_>]) {
    let b = behind(mode, "127.0.0.1/32").await;
    let local = b.app.token_for(None, &b.local).await;
    let remote = {
        let (status, _, body) = exchange(
            &b.app,
            &b.remote,
            &[match mode {
                XFF => ("x-forwarded-for", "198.51.100.7"),
                FWD => ("forwarded", "for=198.51.100.7"),
            }],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body["accessToken"].as_str().unwrap().to_owned()
    };
    let (url, handle) = verifier_behind(&b, mode).await;
    let client = reqwest::Client::new();
    for (headers, want_local, want_remote) in rows {
        for (token, want, which) in [
            (&local, *want_local, "local"),
            (&remote, *want_remote, "remote"),
        ] {
            let mut req = client.get(&url).bearer_auth(token);
            for (k, v) in *headers {
                req = req.header(*k, *v);
            }
            let (status, code, body) = error_code(req.send().await.unwrap()).await;
            assert_eq!(
                (status, code.as_str()),
                (want, expected_code(want)),
                "verifier, {which} token, headers {headers:?}: {body}"
            );
            if want == 400 {
                assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
            }
        }
    }
    std::mem::drop(handle.stop(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verifier_shares_the_rule_with_x_forwarded_for() {
    verifier_matrix(
        XFF,
        &[
            (&[], 400, 400),
            (&[("x-forwarded-for", "198.51.100.7, garbage")], 400, 400),
            (&[("x-forwarded-for", "unknown")], 400, 400),
            (&[("x-forwarded-for", "127.0.0.1")], 200, 403),
            (&[("x-forwarded-for", "198.51.100.7, 127.0.0.1")], 403, 200),
            (&[("x-forwarded-for", "garbage, 203.0.113.9")], 403, 403),
            (
                &[
                    ("forwarded", "for=198.51.100.7"),
                    ("x-forwarded-for", "127.0.0.1"),
                ],
                200,
                403,
            ),
            (&[("forwarded", "for=127.0.0.1")], 400, 400),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verifier_shares_the_rule_with_forwarded() {
    verifier_matrix(
        FWD,
        &[
            (&[], 400, 400),
            (&[("forwarded", "proto=https")], 400, 400),
            (&[("forwarded", "for=unknown")], 400, 400),
            (&[("forwarded", "for=127.0.0.1")], 200, 403),
            (
                &[("forwarded", "for=198.51.100.7;proto=https, for=127.0.0.1")],
                403,
                200,
            ),
            (
                &[
                    ("x-forwarded-for", "198.51.100.7"),
                    ("forwarded", "for=127.0.0.1"),
                ],
                200,
                403,
            ),
            (&[("x-forwarded-for", "127.0.0.1")], 400, 400),
        ],
    )
    .await;
}
