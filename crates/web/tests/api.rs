//! The JSON API over real HTTP: sign-in by JSON and by bearer token, and
//! every documented call's real responses checked against the OpenAPI
//! document the server publishes.

mod common;
use common::{PASSWORD, start};
use serde_json::Value;
use tomare_model::State;
use tomare_store::WebStore;

/// Checks `value` against `schema` (the subset of OpenAPI 3.0 schemas the
/// document uses: type, required, properties, items, allOf, enum,
/// nullable, $ref). Returns what does not match, with its JSON path.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let mut target = doc;
        for part in r.trim_start_matches("#/").split('/') {
            target = &target[part];
        }
        assert!(!target.is_null(), "dangling $ref {r}");
        return check(doc, target, value, at, errors);
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            check(doc, s, value, at, errors);
        }
    }
    if value.is_null() && schema.get("nullable") == Some(&Value::Bool(true)) {
        return;
    }
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "boolean" => value.is_boolean(),
            _ => true,
        };
        if !ok {
            errors.push(format!("{at}: {value} is not {t}"));
            return;
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(value)
    {
        errors.push(format!("{at}: {value} not in {e:?}"));
    }
    for name in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
        let name = name.as_str().unwrap();
        if value.get(name).is_none() {
            errors.push(format!("{at}: no {name}"));
        }
    }
    if let (Some(props), Some(obj)) = (schema.get("properties").and_then(Value::as_object), value.as_object()) {
        for (k, s) in props {
            if let Some(v) = obj.get(k) {
                check(doc, s, v, &format!("{at}.{k}"), errors);
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            check(doc, items, v, &format!("{at}[{i}]"), errors);
        }
    }
}

/// The response's body matches what the document says of `path`'s
/// `method` with this status.
fn conforms(doc: &Value, path: &str, method: &str, status: u16, body: &str) {
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "{method} {path} is not documented");
    let mut resp = &op["responses"][status.to_string()];
    assert!(resp.is_object(), "{method} {path} {status} is not documented: {body}");
    if let Some(r) = resp.get("$ref").and_then(Value::as_str) {
        resp = &doc["components"]["responses"][r.rsplit('/').next().unwrap()];
    }
    match resp["content"]["application/json"].get("schema") {
        Some(schema) => {
            let value: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"));
            let mut errors = Vec::new();
            check(doc, schema, &value, "$", &mut errors);
            assert!(errors.is_empty(), "{method} {path} {status}: {errors:?}\n{body}");
        }
        None => assert!(body.is_empty(), "{method} {path} {status} documents no body: {body}"),
    }
}

#[tokio::test]
async fn every_documented_call_answers_as_the_document_says() {
    let s = start().await;
    let doc = s.req("GET", "/api/v1/openapi.json", &[], "").await;
    assert_eq!(doc.status, 200);
    assert!(doc.head.contains("content-type: application/json"));
    let doc: Value = doc.json();
    assert_eq!(doc["openapi"], "3.0.3");

    let held = s.message(State::Held, "held 社外秘").await;
    let approval = s.message(State::AwaitingApproval, "approval").await;
    let json = ["Content-Type: application/json".to_string()];

    // Sign in by JSON: wrong, malformed, right.
    let r = s.req("POST", "/api/v1/login", &json, r#"{"email":"boss@example.com","password":"no"}"#).await;
    assert_eq!(r.status, 401);
    conforms(&doc, "/api/v1/login", "post", r.status, &r.body);
    let r = s.req("POST", "/api/v1/login", &json, r#"{"email":1}"#).await;
    assert_eq!(r.status, 400);
    conforms(&doc, "/api/v1/login", "post", r.status, &r.body);
    let body = format!(r#"{{"email":"boss@example.com","password":"{PASSWORD}"}}"#);
    let r = s.req("POST", "/api/v1/login", &json, &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    conforms(&doc, "/api/v1/login", "post", r.status, &r.body);
    let me = r.json();
    assert_eq!((me["role"].as_str(), me["reports"][0].as_str()), (Some("approver"), Some("taro@example.com")));
    let boss = [
        format!("Cookie: tomare_session={}", r.cookie("tomare_session").unwrap()),
        format!("X-CSRF-Token: {}", me["csrf"].as_str().unwrap()),
        "Content-Type: application/json".to_string(),
    ];

    // A bearer token (as `tomare user token` makes one) for the admin.
    let token = tomare_web::accounts::random_secret(32);
    s.store.create_token(&tomare_web::accounts::secret_hash(&token), "root@example.com").await.unwrap();
    let root = [format!("Authorization: Bearer {token}")];
    let r = s.req("GET", "/api/v1/me", &["Authorization: Bearer wrong".into()], "").await;
    assert_eq!(r.status, 401);
    conforms(&doc, "/api/v1/me", "get", r.status, &r.body);

    for (headers, path, doc_path, status) in [
        (&root[..], "/api/v1/me".to_string(), "/api/v1/me", 200),
        (&boss[..], "/api/v1/messages?state=held".to_string(), "/api/v1/messages", 200),
        (&boss[..], "/api/v1/messages?state=nonsense".to_string(), "/api/v1/messages", 400),
        (&root[..], "/api/v1/messages".to_string(), "/api/v1/messages", 200),
        (&boss[..], format!("/api/v1/messages/{approval}"), "/api/v1/messages/{id}", 200),
        (&boss[..], "/api/v1/messages/01NOSUCHTHING".to_string(), "/api/v1/messages/{id}", 404),
        (&boss[..], "/api/v1/approvals".to_string(), "/api/v1/approvals", 200),
        (&boss[..], "/api/v1/audit".to_string(), "/api/v1/audit", 403),
        (&root[..], "/api/v1/audit?q=login".to_string(), "/api/v1/audit", 200),
        (&boss[..], "/api/v1/archive/search?q=".to_string(), "/api/v1/archive/search", 400),
        // This server runs without an archive (tomare's e2e tests search a real one).
        (&boss[..], "/api/v1/archive/search?q=x".to_string(), "/api/v1/archive/search", 503),
    ] {
        let r = s.req("GET", &path, headers, "").await;
        assert_eq!(r.status, status, "GET {path}: {}", r.body);
        conforms(&doc, doc_path, "get", r.status, &r.body);
    }
    let r = s.req("GET", "/api/v1/messages?state=held", &boss, "").await;
    let list = r.json();
    let first = &list["messages"][0];
    assert_eq!(first["id"], held.to_string());
    assert_eq!(first["subject"], "held 社外秘");
    assert_eq!(first["from"], "taro@example.com");
    assert!(first["hold_until"].as_str().unwrap().ends_with('Z'), "{first}");
    assert_eq!(list["messages"].as_array().unwrap().len(), 1, "only held: {list}");
    let r = s.req("GET", "/api/v1/approvals", &boss, "").await;
    assert_eq!(r.json()["approvals"][0]["id"], approval.to_string());
    let r = s.req("GET", &format!("/api/v1/messages/{approval}"), &boss, "").await;
    assert_eq!(r.json()["actions"], serde_json::json!(["approve", "deny"]));
    let r = s.req("GET", "/api/v1/audit?q=login", &root, "").await;
    assert!(r.json()["entries"].as_array().unwrap().iter().any(|e| e["actor"] == "boss@example.com"), "{}", r.body);

    // Actions: done, too late, not found; bearer tokens need no CSRF.
    let path = "/api/v1/messages/{id}/{action}";
    let r = s.req("POST", &format!("/api/v1/messages/{approval}/deny"), &boss, r#"{"reason":"宛先違い"}"#).await;
    assert_eq!(r.status, 200, "{}", r.body);
    conforms(&doc, path, "post", r.status, &r.body);
    assert_eq!(r.json()["state"], "rejected");
    let r = s.req("POST", &format!("/api/v1/messages/{approval}/approve"), &boss, "").await;
    assert_eq!(r.status, 409);
    conforms(&doc, path, "post", r.status, &r.body);
    let r = s.req("POST", &format!("/api/v1/messages/{held}/cancel"), &boss, "").await;
    assert_eq!(r.status, 403);
    conforms(&doc, path, "post", r.status, &r.body);
    let r = s.req("POST", &format!("/api/v1/messages/{held}/release"), &root, "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(s.state(&held).await, State::Released);
    let r = s.req("POST", &format!("/api/v1/messages/{held}/cancel"), &root, "{not json").await;
    assert_eq!(r.status, 400);
    conforms(&doc, path, "post", r.status, &r.body);
    let r = s.req("POST", "/api/v1/messages/01NOSUCHTHING/cancel", &root, "").await;
    assert_eq!(r.status, 404);
    conforms(&doc, path, "post", r.status, &r.body);

    // Signed out: the session is gone.
    let r = s.req("POST", "/api/v1/logout", &boss, "").await;
    assert_eq!(r.status, 204);
    conforms(&doc, "/api/v1/logout", "post", r.status, &r.body);
    let r = s.req("GET", "/api/v1/me", &boss, "").await;
    assert_eq!(r.status, 401);

    // A message's download link: its state and files; revoked once, by its
    // sender or an admin.
    let r = s.req("GET", &format!("/api/v1/messages/{approval}/link"), &root, "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    conforms(&doc, "/api/v1/messages/{id}/link", "get", r.status, &r.body);
    let link = r.json();
    assert_eq!((link["status"].as_str(), link["files"][0]["name"].as_str()), (Some("pending"), Some("見積書.pdf")));
    let r = s.req("GET", &format!("/api/v1/messages/{held}/link"), &root, "").await;
    assert_eq!(r.status, 404);
    conforms(&doc, "/api/v1/messages/{id}/link", "get", r.status, &r.body);
    let revoke = format!("/api/v1/messages/{approval}/link/revoke");
    let r = s.req("POST", &revoke, &root, "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    conforms(&doc, "/api/v1/messages/{id}/link/revoke", "post", r.status, &r.body);
    let r = s.req("POST", &revoke, &root, "").await;
    assert_eq!(r.status, 409);
    conforms(&doc, "/api/v1/messages/{id}/link/revoke", "post", r.status, &r.body);
    let r = s.req("GET", &format!("/api/v1/messages/{approval}/link"), &root, "").await;
    assert_eq!(r.json()["status"], "revoked");

    // Every documented path was exercised above.
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    assert_eq!(paths.len(), 11, "{paths:?}");
}
