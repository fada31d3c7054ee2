//! Malformed input: every case gets a docs/errors.md body and changes nothing.

use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn an_oversized_body_is_413_with_json() {
    let app = spawn_app().await;
    let big = "x".repeat(64 * 1024);
    let mut answer = None;
    for _ in 0..5 {
        let sent = app
            .client
            .post(app.url("/api/v1/token"))
            .json(&json!({"AppSecret": big}))
            .send()
            .await;
        if let Ok(res) = sent {
            answer = Some(res);
            break;
        }
    }
    let res = answer.expect("an answer within five tries");
    let (status, code, body) = error_code(res).await;
    assert_eq!(status, 413);
    assert_eq!(code, "invalid_request");
    assert!(body["error"]["message"].as_str().unwrap().contains("32768"));

    // The server may answer and close before the client has sent the whole
    // body; the client then sees a reset instead of the answer. Only that
    // transport error is retried: every answer must be the JSON 413.
    let mut answer = None;
    for _ in 0..5 {
        let sent = app
            .client
            .post(app.url("/oauth/token"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!("grant_type=client_credentials&client_secret={big}"))
            .send()
            .await;
        if let Ok(res) = sent {
            answer = Some(res);
            break;
        }
    }
    let res = answer.expect("an answer within five tries");
    assert_eq!(res.status(), 413);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );
}

/// Sends `pieces` to `path` with a pause between (so they arrive apart):
/// as chunks when `chunked`, otherwise under a Content-Length declaring
/// them all. Returns the raw answer.
fn send_pieces(
    url: &str,
    path: &str,
    content_type: &str,
    pieces: &[Vec<u8>],
    chunked: bool,
) -> String {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_nodelay(true).unwrap();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!(
            "Content-Length: {}",
            pieces.iter().map(Vec::len).sum::<usize>()
        )
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: {content_type}\r\n{framing}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    // The server may refuse and close before the last piece: what it
    // answered is still there to read.
    for piece in pieces {
        let mut chunk = Vec::new();
        if chunked {
            chunk.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        }
        chunk.extend_from_slice(piece);
        if chunked {
            chunk.extend_from_slice(b"\r\n");
        }
        if stream
            .write_all(&chunk)
            .and_then(|()| stream.flush())
            .is_err()
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if chunked {
        let _ = stream.write_all(b"0\r\n\r\n");
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn bodies_sent_in_pieces_are_read_whole_and_bounded() {
    let app = spawn_app().await;
    let url = app.url("");
    let json = format!(r#"{{"AppId": "{ADMIN_ID}", "AppSecret": "{ADMIN_SECRET}"}}"#).into_bytes();
    let form =
        format!("grant_type=client_credentials&client_id={ADMIN_ID}&client_secret={ADMIN_SECRET}")
            .into_bytes();
    let thirds =
        |b: &[u8]| -> Vec<Vec<u8>> { b.chunks(b.len() / 3 + 1).map(<[u8]>::to_vec).collect() };
    let cases = [
        ("/api/v1/token", "application/json", json),
        ("/oauth/token", "application/x-www-form-urlencoded", form),
    ];
    for ((path, content_type, body), chunked) in cases
        .iter()
        .flat_map(|case| [(case.clone(), true), (case.clone(), false)])
    {
        let pieces = thirds(&body);
        assert_eq!(pieces.len(), 3);
        let (url, path, ct) = (url.clone(), path.to_owned(), content_type.to_owned());
        let answer =
            tokio::task::spawn_blocking(move || send_pieces(&url, &path, &ct, &pieces, chunked))
                .await
                .unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "chunked {chunked}: {answer}"
        );
        assert!(
            answer.contains("ccess_token") || answer.contains("accessToken"),
            "{answer}"
        );
    }
    // No length declared: the limit (32768) holds as the pieces arrive.
    for (path, content_type) in [
        ("/api/v1/token", "application/json"),
        ("/oauth/token", "application/x-www-form-urlencoded"),
    ] {
        let pieces = vec![vec![b' '; 4096]; 10];
        let (url, path, ct) = (url.clone(), path.to_owned(), content_type.to_owned());
        let answer =
            tokio::task::spawn_blocking(move || send_pieces(&url, &path, &ct, &pieces, true))
                .await
                .unwrap();
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("32768"), "{answer}");
        assert!(answer.contains("invalid_request"), "{answer}");
    }
}

/// The token endpoints take the media types they always took, with or
/// without a charset, and refuse a body without one as before.
#[tokio::test]
async fn token_bodies_are_read_by_their_media_type() {
    let app = spawn_app().await;
    let json = json!({"AppId": ADMIN_ID, "AppSecret": ADMIN_SECRET}).to_string();
    let form =
        format!("grant_type=client_credentials&client_id={ADMIN_ID}&client_secret={ADMIN_SECRET}");
    let cases: [(&str, Option<&str>, &String, u16); 7] = [
        ("/api/v1/token", Some("application/json"), &json, 200),
        (
            "/api/v1/token",
            Some("application/json; charset=utf-8"),
            &json,
            200,
        ),
        ("/api/v1/token", Some("application/jwt+json"), &json, 200),
        ("/api/v1/token", None, &json, 415),
        (
            "/oauth/token",
            Some("application/x-www-form-urlencoded; charset=utf-8"),
            &form,
            200,
        ),
        (
            "/oauth/token",
            Some("application/x-www-form-urlencoded; charset=iso-8859-1"),
            &form,
            200,
        ),
        ("/oauth/token", None, &form, 400),
    ];
    for (path, content_type, body, want) in cases {
        let mut req = app.client.post(app.url(path)).body(body.clone());
        if let Some(ct) = content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let answer: Value = res.json().await.unwrap();
        assert_eq!(status, want, "{path} {content_type:?}: {answer}");
        if want == 200 {
            let token = answer["accessToken"]
                .as_str()
                .or(answer["access_token"].as_str());
            assert!(token.is_some(), "{answer}");
        } else if path == "/oauth/token" {
            assert_eq!(answer["error"], "invalid_request", "{answer}");
        } else {
            assert_eq!(answer["error"]["code"], "invalid_request", "{answer}");
        }
    }
}

#[tokio::test]
async fn malformed_json_wrong_types_and_bad_utf8_are_400() {
    let app = spawn_app().await;
    let send = |body: Vec<u8>| {
        app.client
            .post(app.url("/api/v1/token"))
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
    };
    for body in [
        b"{not json".to_vec(),
        br#"{"AppSecret": 12}"#.to_vec(),
        br#"{"AppSecret": ["a"]}"#.to_vec(),
        b"{\"AppSecret\": \"\xff\xfe\"}".to_vec(),
        br#"[]"#.to_vec(),
        Vec::new(),
    ] {
        let res = send(body.clone()).await.unwrap();
        let (status, code, parsed) = error_code(res).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "invalid_request"),
            "{:?} -> {parsed}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(parsed["error"]["type"], "invalid_request_error");
    }
    // Wrong content type.
    let res = app
        .client
        .post(app.url("/api/v1/token"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_request"
    );
}

#[tokio::test]
async fn a_type_error_never_echoes_the_value() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let res = app
        .client
        .post(app.url("/api/v1/apps"))
        .bearer_auth(&admin)
        .json(&json!({"name": "x", "tokenTtl": "tsr_sk_live_pretend_secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let text = res.text().await.unwrap();
    assert!(!text.contains("pretend_secret"), "{text}");
}

#[tokio::test]
async fn a_bad_query_string_never_echoes_what_was_sent() {
    let app = spawn_app().await;
    // serde quotes an unknown variant or parameter between backticks
    // without escaping it: a backtick in the value must not open a way out.
    let cases = [
        (
            "/api/v1/apps?environment=a%60tsr_sk_live_PRETENDsecret9%60b",
            "invalid query parameters: expected one of live, test",
        ),
        (
            "/api/v1/apps?x%60tsr_sk_live_PRETENDsecret9%60y=1",
            "invalid query parameters: unknown parameter; the parameters are limit, cursor, environment, type, status, owner, q",
        ),
        (
            "/api/v1/apps?limit=tsr_sk_live_PRETENDsecret9",
            "invalid query parameters: invalid digit found in string",
        ),
    ];
    for (path, want) in cases {
        let (status, code, body) =
            error_code(call(&app, reqwest::Method::GET, path, None).await).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "invalid_request"),
            "{path}: {body}"
        );
        let text = body.to_string();
        assert!(!text.contains("PRETEND"), "{path}: {text}");
        assert_eq!(body["error"]["message"], want, "{path}");
    }
    let (status, _, body) = error_code(
        call(
            &app,
            reqwest::Method::DELETE,
            "/api/v1/roles/nobody?detach=tsr_sk_live_PRETENDsecret9",
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["message"],
        "invalid query parameters: expected true or false"
    );
}

#[tokio::test]
async fn wrong_method_is_405_and_unknown_path_404() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/api/v1/token"))
        .send()
        .await
        .unwrap();
    let (status, _, body) = error_code(res).await;
    assert_eq!(status, 405);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let res = app
        .client
        .delete(app.url("/oauth/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    let res = app
        .client
        .get(app.url("/api/v1/nothing"))
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(res).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
}

#[tokio::test]
async fn every_401_carries_www_authenticate() {
    let app = spawn_app().await;
    let responses = vec![
        app.exchange(Some("app_nobody_at_all"), "secret-secret")
            .await,
        app.post_json("/api/v1/token", &json!({})).await,
        app.client
            .get(app.url("/api/v1/apps"))
            .send()
            .await
            .unwrap(),
        app.client
            .get(app.url("/api/v1/apps"))
            .bearer_auth("x.y.z")
            .send()
            .await
            .unwrap(),
        app.client
            .post(app.url("/oauth/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "nobody"),
                ("client_secret", "nope"),
            ])
            .send()
            .await
            .unwrap(),
    ];
    for res in responses {
        assert_eq!(res.status(), 401);
        assert!(
            res.headers().get("www-authenticate").is_some(),
            "{:?}",
            res.url()
        );
    }
}

#[tokio::test]
async fn garbage_never_takes_the_server_down() {
    let app = spawn_app().await;
    let bodies: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02".to_vec(),
        "{\"AppSecret\": \"tsr_sk_live_".repeat(50).into_bytes(),
        br#"{"AppSecret": "tsr_sk_live_0000000000000000"}"#.to_vec(),
        br#"{"AppId": "a b c", "AppSecret": "x"}"#.to_vec(),
        format!(
            "{{\"AppId\": \"{}\", \"AppSecret\": \"x\"}}",
            "a".repeat(5000)
        )
        .into_bytes(),
        br#"{"AppSecret": "tsr_", "scope": "\u0000"}"#.to_vec(),
    ];
    for b in bodies {
        let res = app
            .client
            .post(app.url("/api/v1/token"))
            .header(CONTENT_TYPE, "application/json")
            .body(b)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_client_error(), "{}", res.status());
    }
    let res = app
        .client
        .get(app.url("/api/v1/apps/%ff%fe"))
        .bearer_auth("a")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error());
    let res = app
        .client
        .post(app.url("/oauth/token"))
        .header("authorization", "Basic %%%")
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
