//! What the web shows of the archive: search (the query language of
//! `tomare archive search`, with highlights), a message's HTML body made
//! safe, and a message's bytes for download (.eml).
//!
//! A message's HTML is sanitised (ammonia: no script, no event handler, no
//! style, no form), every remote reference removed (images from elsewhere
//! would tell the sender that, when and where the mail was read), and it
//! is served on its own under a Content-Security-Policy that runs nothing
//! and loads nothing, into a sandboxed frame.

use crate::App;
use crate::accounts::Role;
use crate::session::Viewer;
use std::collections::HashSet;
use std::sync::Arc;
use tomare_archive::Hit;

/// Results a search shows at most.
pub const SEARCH_LIMIT: usize = 100;

#[derive(Debug)]
pub enum SearchError {
    /// The query does not parse: the message says why.
    Query(String),
    /// No archive ([archive] enabled = false) or it did not answer.
    Unavailable,
}

/// The archive's hits for `q` that `viewer` may see, newest first.
pub async fn search(app: &App, viewer: &Viewer, q: &str) -> Result<Vec<Hit>, SearchError> {
    let Some(archive) = app.archive.clone() else { return Err(SearchError::Unavailable) };
    let admin = viewer.role() == Role::Admin;
    // Others see a part: look further, then keep theirs.
    let limit = if admin { SEARCH_LIMIT } else { SEARCH_LIMIT * 10 };
    let q = q.to_string();
    let hits = tokio::task::spawn_blocking(move || archive.index.search(&q, limit))
        .await
        .map_err(|_| SearchError::Unavailable)?
        .map_err(|e| match e {
            tomare_archive::index::IndexError::Query(q) => SearchError::Query(q.to_string()),
            _ => SearchError::Unavailable,
        })?;
    if admin {
        return Ok(hits);
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for h in hits {
        let Some(id) = tomare_model::MessageId::parse(&h.id) else { continue };
        if !seen.insert(h.id.clone()) {
            continue;
        }
        match crate::access::visible(app, viewer, &id).await {
            Ok(Some(_)) => out.push(h),
            Ok(None) => {}
            Err(_) => return Err(SearchError::Unavailable),
        }
        if out.len() == SEARCH_LIMIT {
            break;
        }
    }
    Ok(out)
}

/// The message's bytes as delivered (else as received), from the archive.
pub async fn bytes(app: &App, id: &str) -> Option<Vec<u8>> {
    let archive = app.archive.clone()?;
    let store: Arc<dyn tomare_store::Store> = app.store.clone();
    tomare_archive::ops::message_bytes(&archive, &store, id, false).await.ok()
}

/// The first HTML body of `raw`, sanitised, or None when it has none.
pub fn safe_html(raw: &[u8]) -> Option<String> {
    // mail-parser makes HTML of a plain text body too: only a real
    // text/html part counts. (Parsing is under catch_unwind: a message is
    // hostile input.)
    let html = std::panic::catch_unwind(|| {
        let m = mail_parser::MessageParser::default().parse(raw)?;
        let part = m.parts.get(*m.html_body.first()? as usize)?;
        match &part.body {
            mail_parser::PartType::Html(h) => Some(h.to_string()),
            _ => None,
        }
    })
    .ok()
    .flatten()?;
    Some(sanitize(&html))
}

/// HTML from mail made inert: ammonia's safe subset, without any reference
/// to elsewhere (only `cid:` and `data:` images, and links, which open
/// nothing by themselves).
pub fn sanitize(html: &str) -> String {
    ammonia::Builder::default()
        .url_schemes(["http", "https", "mailto", "cid", "data"].into_iter().collect())
        .attribute_filter(|element, attribute, value| {
            let remote = || {
                let v = value.trim_start().to_ascii_lowercase();
                !(v.starts_with("cid:") || v.starts_with("data:image/"))
            };
            match (element, attribute) {
                // Images, and anything else that loads by itself, load
                // nothing from outside.
                (_, "src" | "srcset" | "background" | "poster" | "lowsrc") if remote() => None,
                _ => Some(value.into()),
            }
        })
        .link_rel(Some("noopener noreferrer nofollow"))
        .clean(html)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_html_is_made_inert() {
        let dirty = r#"<p onclick="x()">見積<script>alert(1)</script></p>
<img src="http://127.0.0.2:9/pixel.png" onerror="alert(2)"><img src="cid:logo">
<a href="https://example.com/" target="_top">link</a><a href="javascript:alert(3)">js</a>
<style>body{background:url(http://127.0.0.2/bg)}</style><div style="background:url(http://127.0.0.2/s)">s</div>
<iframe src="http://127.0.0.2/"></iframe><form action="http://127.0.0.2/"><input name=a></form>
<svg><image href="http://127.0.0.2/svg"/></svg><object data="http://127.0.0.2/o"></object>"#;
        let clean = sanitize(dirty);
        for gone in [
            "<script",
            "alert(1)",
            "onclick",
            "onerror",
            "127.0.0.2",
            "javascript:",
            "<style",
            "style=",
            "<iframe",
            "<form",
            "<svg",
            "<object",
        ] {
            assert!(!clean.contains(gone), "{gone} left in {clean}");
        }
        for kept in ["見積", "src=\"cid:logo\"", "href=\"https://example.com/\"", "noopener"] {
            assert!(clean.contains(kept), "{kept} lost from {clean}");
        }
    }

    #[test]
    fn the_html_body_of_a_message() {
        let raw = b"From: a@x\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<b>\xe7\xa4\xbe\xe5\xa4\x96\xe7\xa7\x98</b><script>x</script>\r\n";
        assert_eq!(safe_html(raw).unwrap().trim(), "<b>社外秘</b>");
        assert_eq!(safe_html(b"From: a@x\r\n\r\nplain\r\n"), None);
    }
}

/// One message captured by the sandbox delivery (`data_dir/sandbox`).
#[derive(Debug, Clone)]
pub struct Captured {
    pub id: String,
    /// The envelope sender; empty for tomare's own notices.
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub from: String,
    pub subject: String,
    /// When it was captured (the file's time), ms.
    pub at: i64,
}

#[derive(serde::Deserialize)]
struct CapturedEnvelope {
    #[serde(default)]
    mail_from: String,
    #[serde(default)]
    rcpt_to: Vec<String>,
}

/// The sandbox's folder, when delivery goes there.
pub fn sandbox_dir(app: &App) -> Option<std::path::PathBuf> {
    (app.config.delivery.mode == tomare_config::DeliveryMode::Sandbox)
        .then(|| app.config.storage.data_dir.join("sandbox"))
}

/// The header fields a list shows, read from the start of a message.
fn head_of(raw: &[u8]) -> (String, String) {
    std::panic::catch_unwind(|| {
        let m = mail_parser::MessageParser::default().parse_headers(raw)?;
        let from = m
            .from()
            .and_then(|a| a.first())
            .map(|a| match (&a.name, &a.address) {
                (Some(n), Some(e)) => format!("{n} <{e}>"),
                (None, Some(e)) => e.to_string(),
                (Some(n), None) => n.to_string(),
                (None, None) => String::new(),
            })
            .unwrap_or_default();
        Some((from, m.subject().unwrap_or_default().to_string()))
    })
    .ok()
    .flatten()
    .unwrap_or_default()
}

/// The sandbox's messages `viewer` may see (an admin: all; anyone else:
/// those addressed to them), newest first, at most `limit`.
pub async fn captured(app: &App, viewer: &Viewer, limit: usize) -> Vec<Captured> {
    let Some(dir) = sandbox_dir(app) else { return Vec::new() };
    let admin = viewer.role() == Role::Admin;
    let me = viewer.email().to_string();
    tokio::task::spawn_blocking(move || {
        let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
            .filter(|id| tomare_model::MessageId::parse(id).is_some())
            .collect();
        // Ids sort by time: newest first.
        ids.sort_unstable_by(|a, b| b.cmp(a));
        let mut out = Vec::new();
        for id in ids {
            let Some(c) = read_captured(&dir, &id) else { continue };
            if admin || c.rcpt_to.iter().any(|r| r.eq_ignore_ascii_case(&me)) {
                out.push(c);
            }
            if out.len() == limit {
                break;
            }
        }
        out
    })
    .await
    .unwrap_or_default()
}

fn read_captured(dir: &std::path::Path, id: &str) -> Option<Captured> {
    let envelope: CapturedEnvelope =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{id}.json"))).ok()?).ok()?;
    let path = dir.join(format!("{id}.eml"));
    let at = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    // The header block is enough for a list.
    let mut head = vec![0u8; 64 * 1024];
    let n = std::fs::File::open(&path).and_then(|mut f| std::io::Read::read(&mut f, &mut head)).ok()?;
    head.truncate(n);
    let (from, subject) = head_of(&head);
    Some(Captured { id: id.to_string(), mail_from: envelope.mail_from, rcpt_to: envelope.rcpt_to, from, subject, at })
}

/// One captured message, if `viewer` may see it: its summary and bytes.
pub async fn captured_one(app: &App, viewer: &Viewer, id: &str) -> Option<(Captured, Vec<u8>)> {
    let dir = sandbox_dir(app)?;
    // Only an id names a file here: never a path.
    tomare_model::MessageId::parse(id)?;
    let (admin, me, id) = (viewer.role() == Role::Admin, viewer.email().to_string(), id.to_string());
    tokio::task::spawn_blocking(move || {
        let c = read_captured(&dir, &id)?;
        if !admin && !c.rcpt_to.iter().any(|r| r.eq_ignore_ascii_case(&me)) {
            return None;
        }
        let raw = std::fs::read(dir.join(format!("{id}.eml"))).ok()?;
        Some((c, raw))
    })
    .await
    .ok()
    .flatten()
}

/// The text body of a message, for showing as text.
pub fn text_body(raw: &[u8]) -> String {
    std::panic::catch_unwind(|| {
        let m = mail_parser::MessageParser::default().parse(raw)?;
        m.body_text(0).map(|t| t.into_owned())
    })
    .ok()
    .flatten()
    .unwrap_or_default()
}

/// `text` split into plain pieces and links to this site (tomare's own
/// links in its notices), which a page may make clickable. Nothing else
/// becomes a link.
pub fn own_links(text: &str, base_url: &str) -> Vec<(String, bool)> {
    let base = format!("{}/", base_url.trim_end_matches('/'));
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(&base) {
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || c == '<' || c == '>' || c == '"')
            .map_or(rest.len(), |e| at + e);
        if at > 0 {
            out.push((rest[..at].to_string(), false));
        }
        out.push((rest[at..end].to_string(), true));
        rest = &rest[end..];
    }
    if !rest.is_empty() {
        out.push((rest.to_string(), false));
    }
    out
}

#[cfg(test)]
mod sandbox_tests {
    use super::*;

    #[test]
    fn only_our_own_links_become_links() {
        let text =
            "Cancel:\n  http://gw:8025/a/cancel/abc.def\nelse http://evil.test/x and http://gw:8025/a/release/x\"y";
        let parts = own_links(text, "http://gw:8025/");
        let links: Vec<&str> = parts.iter().filter(|(_, l)| *l).map(|(s, _)| s.as_str()).collect();
        assert_eq!(links, ["http://gw:8025/a/cancel/abc.def", "http://gw:8025/a/release/x"]);
        assert_eq!(parts.iter().map(|(s, _)| s.as_str()).collect::<String>(), text, "nothing lost");
    }
}
