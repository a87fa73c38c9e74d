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
