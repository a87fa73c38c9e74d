//! The pages behind notice links, over real HTTP against a real SQLite
//! store: GET changes nothing, POST acts once, and a changed, misdirected
//! or expired link is refused and changes nothing.

use tomare_model::{ActionLinks, LinkAction, NoticeKind, State, now_ms};
use tomare_store::QueueStore;
use tomare_web::links::{Claims, Links};

mod common;
use common::start;

fn path_of(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    rest[rest.find('/').unwrap()..].to_string()
}

#[tokio::test]
async fn a_link_shows_first_acts_once_on_post_and_says_so_after() {
    let s = start().await;
    let id = s.message(State::Held, "見積書 <script>alert(1)</script>").await;
    let url = s.links.link(&id, LinkAction::Cancel, "taro@example.com", now_ms() + 600_000);
    assert!(url.starts_with(&format!("http://{}/a/cancel/", s.addr)), "{url}");
    let path = path_of(&url);

    // GET (a mail scanner's prefetch) shows and changes nothing.
    for _ in 0..2 {
        let (status, head, body) = s.http("GET", &path, "").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(&format!("data-message-id=\"{id}\"")), "{body}");
        assert!(body.contains("data-action=\"cancel\""), "{body}");
        assert!(body.contains("送信を取り消す"), "Japanese for an Accept-Language ja: {body}");
        assert!(body.contains("&lt;script&gt;") && !body.contains("<script>"), "the subject is escaped: {body}");
        assert!(head.contains("referrer-policy: no-referrer"), "the token must not leak: {head}");
        assert!(head.contains("content-security-policy: default-src 'none'"), "{head}");
        assert_eq!(s.state(&id).await, State::Held);
    }

    // POST acts, and the event names the person and the way.
    let (status, _, body) = s.http("POST", &path, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.state(&id).await, State::Cancelled);
    let (_, events) = s.store.get(&id).await.unwrap().unwrap();
    let cancelled = events.iter().find(|e| e.kind == "cancelled").expect("a cancelled event");
    assert_eq!(cancelled.actor, "link:taro@example.com");
    let log = tomare_store::WebStore::audit_log(s.store.as_ref(), s.org, id.as_str(), 10).await.unwrap();
    assert_eq!(
        (log[0].actor.as_str(), log[0].via.as_str(), log[0].action.as_str()),
        ("taro@example.com", "link", "cancel")
    );

    // Used: both a second POST and a GET say what was done, and change nothing.
    for method in ["POST", "GET"] {
        let (status, _, body) = s.http(method, &path, "").await;
        assert_eq!(status, 200, "{method}: {body}");
        assert!(body.contains("実行済み"), "{method}: {body}");
        assert!(!body.contains("data-action="), "no button on a used link: {body}");
    }
    let (_, events) = s.store.get(&id).await.unwrap().unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == "cancelled").count(), 1);
}

#[tokio::test]
async fn changed_misdirected_and_expired_links_are_refused_and_change_nothing() {
    let s = start().await;
    let id = s.message(State::Held, "held").await;
    let until = now_ms() + 600_000;
    let url = s.links.link(&id, LinkAction::Release, "taro@example.com", until);
    let path = path_of(&url);
    let token = path.rsplit('/').next().unwrap().to_string();

    // One character of the signed part changed.
    let mut bytes = token.clone().into_bytes();
    bytes[3] = if bytes[3] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    // The same token under another action's path.
    let misdirected = format!("/a/cancel/{token}");
    // Another key's signature.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Links::open(other_dir.path(), "http://x").unwrap();
    let foreign =
        path_of(&other.link(&id, LinkAction::Release, "taro@example.com", until).replace("http://x", "http://h"));
    for bad in [format!("/a/release/{tampered}"), misdirected, foreign, "/a/release/not-a-token".to_string()] {
        for method in ["GET", "POST"] {
            let (status, _, body) = s.http(method, &bad, "").await;
            assert_eq!(status, 400, "{method} {bad}: {body}");
            assert!(body.contains("無効"), "{body}");
        }
    }
    assert_eq!(s.state(&id).await, State::Held);

    // Signed by us, but past its time.
    let expired = Claims {
        id: id.clone(),
        action: LinkAction::Release,
        person: "taro@example.com".into(),
        expires_at: now_ms() - 1,
        nonce: "00".into(),
    };
    let path = format!("/a/release/{}", s.links.sign(&expired));
    for method in ["GET", "POST"] {
        let (status, _, body) = s.http(method, &path, "").await;
        assert_eq!(status, 410, "{method}: {body}");
    }
    assert_eq!(s.state(&id).await, State::Held);

    // No link lives past seven days, whatever it asks for.
    let far = s.links.link(&id, LinkAction::Release, "taro@example.com", now_ms() + 30 * 24 * 3600 * 1000);
    let token = path_of(&far).rsplit('/').next().unwrap().to_string();
    let claims = s.links.verify("release", &token, now_ms()).unwrap();
    assert!(claims.expires_at <= now_ms() + tomare_web::links::MAX_LIFETIME_MS);
    assert_eq!(
        s.links.verify("release", &token, now_ms() + 8 * 24 * 3600 * 1000),
        Err(tomare_web::links::LinkError::Expired)
    );
}

#[tokio::test]
async fn a_link_for_what_can_no_longer_be_done_says_so() {
    let s = start().await;
    let id = s.message(State::Held, "held").await;
    s.store.cancel(&id, "cli").await.unwrap();
    let url = s.links.link(&id, LinkAction::Release, "taro@example.com", now_ms() + 600_000);
    let (status, _, body) = s.http("GET", &path_of(&url), "").await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("取り消し済み") && !body.contains("data-action="), "{body}");
    let (status, _, body) = s.http("POST", &path_of(&url), "").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(s.state(&id).await, State::Cancelled);
}

#[tokio::test]
async fn an_approver_denies_with_a_reason_the_sender_is_told() {
    let s = start().await;
    let id = s.message(State::AwaitingApproval, "approval").await;
    let url = s.links.link(&id, LinkAction::Deny, "boss@example.com", now_ms() + 600_000);
    let (status, _, body) = s.http("GET", &path_of(&url), "").await;
    assert_eq!(status, 200);
    assert!(body.contains("name=\"reason\""), "{body}");
    let (status, _, body) = s
        .http("POST", &path_of(&url), "reason=%E5%AE%9B%E5%85%88%E3%81%8C%E9%81%95%E3%81%84%E3%81%BE%E3%81%99+(wrong)")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.state(&id).await, State::Rejected);
    let notices = s.store.take_notices(10).await.unwrap();
    let denied = notices.iter().find(|n| n.id == id && n.kind == NoticeKind::Denied).expect("the sender is told");
    assert_eq!(denied.reason, "宛先が違います (wrong)");
    let (_, events) = s.store.get(&id).await.unwrap().unwrap();
    assert!(events.iter().any(|e| e.actor == "link:boss@example.com"), "{events:?}");
}
