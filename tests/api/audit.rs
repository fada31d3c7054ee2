//! `GET /api/v1/audit`: filters, paging under a filter, CSV export, refusals.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, call, error_code, ok, spawn_app};

/// Every record the admin can read with `query`, following cursors.
async fn all(app: &TestApp, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut path = format!("/api/v1/audit?{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = ok(call(app, Method::GET, &path, None).await, 200).await;
        out.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
    panic!("more than 100 pages for {query}");
}

fn field<'a>(records: &'a [Value], name: &str) -> Vec<&'a str> {
    records.iter().map(|r| r[name].as_str().unwrap()).collect()
}

/// Query-string encoding of an RFC 3339 time (`+` would read as a space).
fn enc(t: &str) -> String {
    t.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn each_filter_alone_and_together_keeps_exactly_its_records() {
    let app = spawn_app().await;
    // A second actor: an application that may manage roles.
    let (ops, ops_secret) = app
        .create_app(json!({"name": "ops", "permissions": ["roles:manage"]}))
        .await;
    let ops_token = app
        .token_for(Some(ops["id"].as_str().unwrap()), &ops_secret)
        .await;
    let res = app
        .authed(Method::POST, "/api/v1/roles", &ops_token)
        .await
        .json(&json!({"name": "r-ops"}))
        .send()
        .await
        .unwrap();
    ok(res, 201).await;
    for name in ["r1", "r2", "r3"] {
        let body = json!({ "name": name });
        ok(
            call(&app, Method::POST, "/api/v1/roles", Some(body)).await,
            201,
        )
        .await;
    }
    ok(
        call(&app, Method::DELETE, "/api/v1/roles/r1", None).await,
        204,
    )
    .await;

    let every = all(&app, "limit=200").await;
    let ops_actor = every.iter().find(|r| r["target"] == "r-ops").unwrap()["actor"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin_actor = every.iter().find(|r| r["target"] == "r1").unwrap()["actor"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(ops_actor, admin_actor);

    let got = all(&app, &format!("actor={ops_actor}")).await;
    assert_eq!(field(&got, "target"), ["r-ops"]);
    let got = all(&app, "action=role.create").await;
    assert_eq!(field(&got, "target"), ["r3", "r2", "r1", "r-ops"]);
    for prefix in ["role.", "role.%2A"] {
        let got = all(&app, &format!("action={prefix}")).await;
        assert_eq!(field(&got, "action")[0], "role.delete", "{prefix}");
        assert_eq!(got.len(), 5, "{prefix}");
    }
    assert!(all(&app, "action=role").await.is_empty(), "exact match");
    assert!(all(&app, "action=app.create").await.len() == 1);
    let got = all(&app, "target=r1").await;
    assert_eq!(field(&got, "action"), ["role.delete", "role.create"]);
    let got = all(
        &app,
        &format!("actor={admin_actor}&action=role.*&target=r1"),
    )
    .await;
    assert_eq!(field(&got, "action"), ["role.delete", "role.create"]);
    let got = all(&app, "action=role.delete&target=r1").await;
    assert_eq!(got.len(), 1);
    assert!(
        all(&app, &format!("actor={ops_actor}&target=r1"))
            .await
            .is_empty()
    );

    // The time window: since inclusive, until exclusive.
    let at = |target: &str, action: &str| {
        every
            .iter()
            .find(|r| r["target"] == target && r["action"] == action)
            .unwrap()["at"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (from, to) = (at("r1", "role.create"), at("r3", "role.create"));
    let got = all(&app, &format!("since={}&until={}", enc(&from), enc(&to))).await;
    assert_eq!(field(&got, "target"), ["r2", "r1"]);
    let got = all(&app, &format!("since={}", enc(&to))).await;
    assert_eq!(field(&got, "target"), ["r1", "r3"], "the delete, then r3");
    let got = all(&app, &format!("until={}&action=role.*", enc(&from))).await;
    assert_eq!(field(&got, "target"), ["r-ops"]);

    // Paging under a filter: one match a page, every match once.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/api/v1/audit?action=role.create&limit=1{cursor}");
        let page = ok(call(&app, Method::GET, &path, None).await, 200).await;
        seen.extend(
            field(page["data"].as_array().unwrap(), "target")
                .iter()
                .map(|s| s.to_string()),
        );
        match page["nextCursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
        assert!(seen.len() < 10);
    }
    assert_eq!(seen, ["r3", "r2", "r1", "r-ops"]);
}

#[tokio::test]
async fn paging_under_a_filter_over_hundreds_of_records_sees_each_match_once() {
    let app = spawn_app().await;
    // 240 role changes, one in eight a `-`-named role (a formula to a
    // spreadsheet).
    for i in 0..240 {
        let name = if i % 8 == 0 {
            format!("-x{i}")
        } else {
            format!("y{i}")
        };
        let body = json!({ "name": name });
        ok(
            call(&app, Method::POST, "/api/v1/roles", Some(body)).await,
            201,
        )
        .await;
    }
    let want: Vec<String> = (0..240)
        .rev()
        .filter(|i| i % 8 == 0)
        .map(|i| format!("-x{i}"))
        .collect();
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let path = format!("/api/v1/audit?action=role.create&limit=7{cursor}");
        let page = ok(call(&app, Method::GET, &path, None).await, 200).await;
        pages += 1;
        for r in page["data"].as_array().unwrap() {
            let t = r["target"].as_str().unwrap();
            if t.starts_with('-') {
                seen.push(t.to_owned());
            }
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
        assert!(pages < 100);
    }
    assert_eq!(pages, 35, "240 matches by 7");
    assert_eq!(seen, want);

    // CSV: the formula-looking target is defused; the cursor in a header.
    let res = call(
        &app,
        Method::GET,
        "/api/v1/audit?format=csv&target=-x8",
        None,
    )
    .await;
    assert_eq!(res.status(), 200);
    let h = res.headers().clone();
    assert_eq!(h["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        h["content-disposition"],
        "attachment; filename=\"tessera-audit.csv\""
    );
    let body = res.text().await.unwrap();
    let lines: Vec<&str> = body.split("\r\n").collect();
    assert_eq!(lines[0], "id,at,actor,action,target,sourceIp,details");
    assert_eq!(lines.len(), 3, "header, one row, the final CRLF: {body}");
    assert!(lines[1].contains(",role.create,'-x8,"), "{body}");
    assert!(!h.contains_key("x-next-cursor"));
}

#[tokio::test]
async fn csv_quotes_details_and_carries_the_next_cursor_in_a_header() {
    let app = spawn_app().await;
    let (created, _) = app
        .create_app(json!({"name": "=HYPERLINK(\"http://x\",\"y\")", "permissions": []}))
        .await;
    let id = created["id"].as_str().unwrap();
    ok(
        call(
            &app,
            Method::POST,
            "/api/v1/roles",
            Some(json!({"name": "=r"})),
        )
        .await,
        422,
    )
    .await;
    ok(
        call(
            &app,
            Method::POST,
            "/api/v1/roles",
            Some(json!({"name": "r"})),
        )
        .await,
        201,
    )
    .await;

    let res = call(&app, Method::GET, "/api/v1/audit?format=csv&limit=1", None).await;
    let next = res.headers()["x-next-cursor"].to_str().unwrap().to_owned();
    let body = res.text().await.unwrap();
    assert!(body.contains(",role.create,r,"), "{body}");
    let path = format!("/api/v1/audit?format=csv&limit=5&cursor={next}");
    let res = call(&app, Method::GET, &path, None).await;
    assert!(!res.headers().contains_key("x-next-cursor"));
    let body = res.text().await.unwrap();
    let row = body
        .split("\r\n")
        .find(|l| l.contains(",app.create,"))
        .unwrap_or_else(|| panic!("{body}"));
    assert!(row.contains(&format!(",app.create,{id},")), "{row}");
    // The details cell: compact JSON, quoted, its quotes doubled.
    assert!(
        row.contains(r#""name"":""=HYPERLINK(\""http://x\"",\""y\"")"""#),
        "{row}"
    );
    assert!(row.ends_with('"'), "{row}");
    assert!(!body.contains(",role.create,r,"), "the next page only");
}

#[tokio::test]
async fn bad_parameters_are_refused_in_the_spec_shape() {
    let app = spawn_app().await;
    ok(
        call(
            &app,
            Method::POST,
            "/api/v1/roles",
            Some(json!({"name": "r"})),
        )
        .await,
        201,
    )
    .await;
    let before = ok(call(&app, Method::GET, "/api/v1/audit", None).await, 200).await;
    assert!(!before["data"].as_array().unwrap().is_empty());
    for (query, status, code) in [
        ("limit=0", 422, "validation_failed"),
        ("limit=201", 422, "validation_failed"),
        ("limit=ten", 400, "invalid_request"),
        ("since=yesterday", 400, "invalid_request"),
        ("until=2026-13-01T00:00:00Z", 400, "invalid_request"),
        (
            "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
            422,
            "validation_failed",
        ),
        (
            "since=2026-01-01T00:00:00Z&until=2026-01-01T00:00:00Z",
            422,
            "validation_failed",
        ),
        ("format=xml", 400, "invalid_request"),
        ("actor=", 422, "validation_failed"),
        ("cursor=%21%21", 400, "invalid_request"),
        ("colour=red", 400, "invalid_request"),
    ] {
        let path = format!("/api/v1/audit?{query}");
        let (got, c, body) = error_code(call(&app, Method::GET, &path, None).await).await;
        assert_eq!((got, c.as_str()), (status, code), "{query}: {body}");
        assert!(body["error"]["message"].is_string(), "{query}: {body}");
    }
    let long = format!("/api/v1/audit?target={}", "t".repeat(257));
    let (got, c, _) = error_code(call(&app, Method::GET, &long, None).await).await;
    assert_eq!((got, c.as_str()), (422, "validation_failed"));
    // `*` alone matches every action.
    let every = ok(
        call(&app, Method::GET, "/api/v1/audit?action=*", None).await,
        200,
    )
    .await;
    assert_eq!(every["data"], before["data"]);
    // Refusals change nothing: the log is as it was.
    let after = ok(call(&app, Method::GET, "/api/v1/audit", None).await, 200).await;
    assert_eq!(after, before);
}

#[tokio::test]
async fn reading_or_exporting_the_log_needs_audit_read() {
    let app = spawn_app().await;
    let (no, no_secret) = app
        .create_app(json!({"name": "no", "permissions": ["roles:manage"]}))
        .await;
    let (yes, yes_secret) = app
        .create_app(json!({"name": "yes", "permissions": ["audit:read"]}))
        .await;
    let no = app
        .token_for(Some(no["id"].as_str().unwrap()), &no_secret)
        .await;
    let yes = app
        .token_for(Some(yes["id"].as_str().unwrap()), &yes_secret)
        .await;
    for q in ["", "?format=csv", "?action=app.*&format=csv"] {
        let path = format!("/api/v1/audit{q}");
        let res = app
            .authed(Method::GET, &path, &no)
            .await
            .send()
            .await
            .unwrap();
        let (s, code, _) = error_code(res).await;
        assert_eq!((s, code.as_str()), (403, "insufficient_permissions"), "{q}");
        let res = app
            .authed(Method::GET, &path, &yes)
            .await
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{q}");
    }
    let res = app
        .client
        .get(app.url("/api/v1/audit?format=csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}
