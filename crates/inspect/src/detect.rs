//! Detectors over text: keyword lists (after NFKC and case folding, so
//! full/half width and case do not matter), regular expressions, My Number
//! (12 digits with the check digit), card numbers (Luhn and a known issuer
//! prefix), Japanese phone numbers, bank account numbers near 口座/支店
//! words, and lists of email addresses.

use regex::Regex;
use std::collections::BTreeSet;
use tomare_model::Detection;

pub struct Detectors {
    keywords: Vec<(String, String)>,
    regexes: Vec<(String, Regex)>,
    my_number: bool,
    credit_card: bool,
    phone: bool,
    bank_account: bool,
    email_list: bool,
    email_list_min: usize,
    digits: Regex,
    phone_re: Regex,
    email_re: Regex,
}

pub use tomare_model::normalize;

impl Detectors {
    pub fn new(config: &tomare_config::Detect) -> Result<Detectors, String> {
        let mut regexes = Vec::new();
        for r in &config.regex {
            let re = Regex::new(&r.pattern).map_err(|e| format!("regex {:?}: {e}", r.name))?;
            regexes.push((r.name.clone(), re));
        }
        Ok(Detectors {
            keywords: config
                .keywords
                .iter()
                .map(|k| (k.clone(), normalize(k)))
                .filter(|(_, n)| !n.is_empty())
                .collect(),
            regexes,
            my_number: config.my_number,
            credit_card: config.credit_card,
            phone: config.phone,
            bank_account: config.bank_account,
            email_list: config.email_list,
            email_list_min: config.email_list_min,
            // Digit groups joined by single spaces or hyphens.
            digits: Regex::new(r"[0-9]+(?:[ \-][0-9]+)*").expect("valid"),
            phone_re: Regex::new(r"(?:\+81[ \-]?|0)[0-9]{1,4}(?:[ \-]?[0-9]{1,4}){1,2}").expect("valid"),
            email_re: Regex::new(r"[a-z0-9._%+\-]+@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.[a-z]{2,}").expect("valid"),
        })
    }

    /// Every detection in `text`, found at `location`. Long text is
    /// normalised and scanned a piece at a time (pieces end at a line
    /// break), so 20 MB of attachment text is not copied whole once more.
    pub fn scan(&self, location: &str, text: &str, out: &mut Vec<Detection>) {
        if text.is_empty() {
            return;
        }
        let mut found = Found {
            keywords: vec![Hits::default(); self.keywords.len()],
            regexes: vec![Hits::default(); self.regexes.len()],
            ..Found::default()
        };
        for w in windows(text, SCAN_PIECE) {
            // The piece with some text either side, so a match (or a bank
            // word near a number) across the cut is still seen; only
            // matches that start inside the piece count.
            let (lead, main) = (normalize(w.lead), normalize(w.main));
            let own = lead.len()..lead.len() + main.len();
            let norm = lead + &main + &normalize(w.tail);
            self.scan_piece(&norm, own, &mut found);
        }
        let mut add = |detector: &str, name: &str, hits: Hits| {
            if let Some(excerpt) = hits.first {
                out.push(Detection {
                    detector: detector.into(),
                    name: name.into(),
                    location: location.into(),
                    excerpt,
                    count: hits.count,
                });
            }
        };
        for ((original, _), hits) in self.keywords.iter().zip(found.keywords) {
            add("keyword", original, hits);
        }
        for ((name, _), hits) in self.regexes.iter().zip(found.regexes) {
            add("regex", name, hits);
        }
        add("my_number", "", found.my_number);
        add("credit_card", "", found.credit_card);
        add("bank_account", "", found.bank_account);
        add("phone", "", found.phone);
        if self.email_list && found.emails.len() >= self.email_list_min {
            let sample: Vec<&str> = found.emails.iter().take(3).map(String::as_str).collect();
            let excerpt = format!("{} distinct addresses: {}, …", found.emails.len(), sample.join(", "));
            add("email_list", "", Hits { first: Some(excerpt), count: found.emails.len() });
        }
    }

    /// One normalised window; counts what starts in `own` into `f`.
    fn scan_piece(&self, norm: &str, own: std::ops::Range<usize>, f: &mut Found) {
        let hit = |h: &mut Hits, start: usize, len: usize, mask: bool| {
            if !own.contains(&start) {
                return;
            }
            if h.first.is_none() {
                h.first = Some(excerpt(norm, start, len, mask));
            }
            h.count += 1;
        };
        // Counted, not collected: a 20 MB list has hundreds of thousands
        // (distinct addresses are collected, up to MAX_DISTINCT_EMAILS).
        for ((_, k), h) in self.keywords.iter().zip(&mut f.keywords) {
            for (i, _) in norm.match_indices(k.as_str()) {
                hit(h, i, k.len(), false);
            }
        }
        for ((_, re), h) in self.regexes.iter().zip(&mut f.regexes) {
            for m in re.find_iter(norm) {
                hit(h, m.start(), m.len(), false);
            }
        }
        if self.my_number || self.credit_card || self.bank_account {
            for m in self.digits.find_iter(norm) {
                if !standalone(norm, m.start(), m.end()) {
                    continue;
                }
                let d: Vec<u8> = m.as_str().bytes().filter(u8::is_ascii_digit).map(|b| b - b'0').collect();
                if self.my_number && d.len() == 12 && my_number_ok(&d) && grouping_ok(m.as_str(), &[4, 4, 4]) {
                    hit(&mut f.my_number, m.start(), m.len(), true);
                } else if self.credit_card && (13..=19).contains(&d.len()) && luhn_ok(&d) && issuer_ok(&d) {
                    hit(&mut f.credit_card, m.start(), m.len(), true);
                } else if self.bank_account
                    && d.len() == 7
                    && !m.as_str().contains([' ', '-'])
                    && near_bank_words(norm, m.start(), m.end())
                {
                    hit(&mut f.bank_account, m.start(), m.len(), true);
                }
            }
        }
        if self.phone {
            for m in self.phone_re.find_iter(norm) {
                if standalone(norm, m.start(), m.end()) && phone_ok(m.as_str()) {
                    hit(&mut f.phone, m.start(), m.len(), false);
                }
            }
        }
        if self.email_list {
            for m in self.email_re.find_iter(norm).filter(|m| own.contains(&m.start())) {
                if f.emails.len() >= MAX_DISTINCT_EMAILS {
                    break;
                }
                f.emails.insert(m.as_str().to_string());
            }
        }
    }
}

/// Text scanned at a time.
const SCAN_PIECE: usize = 1 << 20;
/// Text before a piece scanned with it (bank words look 60 bytes back).
const LEAD: usize = 256;
/// Text after a piece scanned with it: matches that start in the piece and
/// end up to this far past its end are found.
const TAIL: usize = 4096;
/// Distinct addresses counted at most (far beyond any `email_list_min`).
const MAX_DISTINCT_EMAILS: usize = 100_000;

/// A piece of a long text and what surrounds it.
struct Window<'a> {
    lead: &'a str,
    main: &'a str,
    tail: &'a str,
}

fn floor_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// `text` in pieces of about `size` bytes, each ending at a line break when
/// there is one (else at a character boundary), with their surroundings.
fn windows(text: &str, size: usize) -> impl Iterator<Item = Window<'_>> {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= text.len() {
            return None;
        }
        let rest = &text[start..];
        let mut len = rest.len();
        if len > size {
            len = floor_boundary(rest, size);
            if let Some(nl) = rest[..len].rfind('\n') {
                len = nl + 1;
            }
        }
        let lead_from = floor_boundary(text, start.saturating_sub(LEAD));
        let end = start + len;
        let tail_to = floor_boundary(text, (end + TAIL).min(text.len()));
        let w = Window { lead: &text[lead_from..start], main: &text[start..end], tail: &text[end..tail_to] };
        start = end;
        Some(w)
    })
}

/// What the pieces of one text found so far.
#[derive(Default)]
struct Found {
    keywords: Vec<Hits>,
    regexes: Vec<Hits>,
    my_number: Hits,
    credit_card: Hits,
    bank_account: Hits,
    phone: Hits,
    emails: BTreeSet<String>,
}

/// The first hit's excerpt and how many there are.
#[derive(Default, Clone)]
struct Hits {
    first: Option<String>,
    count: usize,
}

/// Not glued to other digits, letters or digit separators.
fn standalone(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    let bad = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '/');
    !bad(before) && !bad(after)
}

/// Ungrouped, or grouped exactly as `groups`.
fn grouping_ok(s: &str, groups: &[usize]) -> bool {
    let parts: Vec<usize> = s.split([' ', '-']).map(str::len).collect();
    parts.len() == 1 || parts == groups
}

/// The My Number check digit (個人番号の検査用数字).
pub fn my_number_ok(d: &[u8]) -> bool {
    if d.len() != 12 {
        return false;
    }
    let sum: u32 = (1..=11)
        .map(|n| {
            let p = u32::from(d[11 - n]);
            let q = if n <= 6 { n as u32 + 1 } else { n as u32 - 5 };
            p * q
        })
        .sum();
    let r = sum % 11;
    let check = if r <= 1 { 0 } else { 11 - r };
    u32::from(d[11]) == check
}

pub fn luhn_ok(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 { y - 9 } else { y }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A known card brand's prefix and length: cuts random Luhn-valid numbers.
fn issuer_ok(d: &[u8]) -> bool {
    let n = |k: usize| d.iter().take(k).fold(0u32, |a, &x| a * 10 + u32::from(x));
    let len = d.len();
    match d[0] {
        4 => matches!(len, 13 | 16 | 19),                // Visa
        5 => (51..=55).contains(&n(2)) && len == 16,     // Mastercard
        2 => (2221..=2720).contains(&n(4)) && len == 16, // Mastercard
        3 => {
            (matches!(n(2), 34 | 37) && len == 15)                             // Amex
                || ((3528..=3589).contains(&n(4)) && (16..=19).contains(&len)) // JCB
                || ((300..=305).contains(&n(3)) || matches!(n(2), 36 | 38)) && len == 14 // Diners
        }
        6 => (n(4) == 6011 || n(2) == 65) && len == 16, // Discover
        _ => false,
    }
}

/// 10 digits for landlines and 0120, 11 for 070/080/090/050 mobiles and IP
/// phones; international +81 drops the leading 0.
fn phone_ok(s: &str) -> bool {
    let intl = s.starts_with("+81");
    let digits: String = s.trim_start_matches("+81").chars().filter(char::is_ascii_digit).collect();
    let digits = if intl { format!("0{digits}") } else { digits };
    let separated = s.contains(['-', ' ']) || intl;
    let mobile = ["070", "080", "090", "050", "020"].iter().any(|p| digits.starts_with(p));
    let ok_len = if mobile { digits.len() == 11 } else { digits.len() == 10 };
    // Bare digit runs are phone numbers only in the mobile form; a bare
    // 10-digit number is as likely an order or invoice number.
    ok_len && digits.starts_with('0') && !digits.starts_with("00") && (separated || mobile)
}

fn near_bank_words(text: &str, start: usize, end: usize) -> bool {
    const WORDS: [&str; 8] = ["口座", "支店", "普通", "当座", "預金", "振込", "account", "branch"];
    let lo = floor_char(text, start.saturating_sub(60));
    let hi = ceil_char(text, (end + 60).min(text.len()));
    let window = &text[lo..hi];
    WORDS.iter().any(|w| window.contains(w))
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// About 20 characters either side; digits of the match masked but the last
/// four when `mask` (the excerpt is stored and shown: it must not leak the
/// number it warns about).
fn excerpt(text: &str, start: usize, len: usize, mask: bool) -> String {
    let before: String = text[..start].chars().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
    let hit = &text[start..start + len];
    let after: String = text[start + len..].chars().take(20).collect();
    let hit = if mask {
        let total = hit.chars().filter(char::is_ascii_digit).count();
        let mut seen = 0;
        hit.chars()
            .map(|c| {
                if c.is_ascii_digit() {
                    seen += 1;
                    if seen + 4 <= total { '*' } else { c }
                } else {
                    c
                }
            })
            .collect()
    } else {
        hit.to_string()
    };
    format!("{before}{hit}{after}").split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str) -> Vec<Detection> {
        let d = Detectors::new(&tomare_config::Detect::default()).unwrap();
        let mut out = Vec::new();
        d.scan("body", text, &mut out);
        out
    }

    fn kinds(text: &str) -> Vec<String> {
        scan(text).into_iter().map(|d| d.detector).collect()
    }

    #[test]
    fn long_text_is_scanned_in_pieces_with_the_same_result() {
        let d = Detectors::new(&tomare_config::Config::default().detect).unwrap();
        let line = "顧客 03-1234-5678 カード 4111 1111 1111 1111 a@b.co\n";
        let mut text = line.repeat(SCAN_PIECE / line.len() * 3);
        text.push_str("最後に社外秘\n");
        let mut out = Vec::new();
        d.scan("attachments", &text, &mut out);
        let count = |name: &str| out.iter().find(|x| x.detector == name).map(|x| x.count);
        let lines = SCAN_PIECE / line.len() * 3;
        assert_eq!(count("phone"), Some(lines));
        assert_eq!(count("credit_card"), Some(lines));
        assert_eq!(count("keyword"), Some(1), "found in the last piece");
        assert!(windows(&text, SCAN_PIECE).count() >= 3);
        assert!(windows(&text, SCAN_PIECE).all(|w| w.main.ends_with('\n')));
        assert_eq!(windows(&text, SCAN_PIECE).map(|w| w.main).collect::<String>(), text);
    }

    #[test]
    fn a_match_across_a_cut_between_pieces_is_found_once() {
        let d = Detectors::new(&tomare_config::Config::default().detect).unwrap();
        // One line longer than a piece, so the cut falls inside it, right in
        // the middle of a keyword; and a bank word that ends the piece before
        // the account number.
        let mut text = "x".repeat(SCAN_PIECE - 3);
        text.push_str("社外秘です\n");
        let pad = SCAN_PIECE - (text.len() % SCAN_PIECE) - "普通口座\n".len();
        text.push_str(&"y\n".repeat(pad / 2));
        text.push_str("普通口座\n1234567\n");
        let w: Vec<Window> = windows(&text, SCAN_PIECE).collect();
        assert!(w[0].main.ends_with("社") && w[1].main.starts_with("外秘"), "the cut splits the keyword");
        let number = w.iter().find(|w| w.main.contains("1234567")).unwrap();
        assert!(
            !number.main.contains("普通口座") && number.lead.contains("普通口座"),
            "the bank word is in the piece before"
        );
        let mut out = Vec::new();
        d.scan("attachments", &text, &mut out);
        let count = |name: &str| out.iter().find(|x| x.detector == name).map(|x| x.count);
        assert_eq!(count("keyword"), Some(1), "{out:?}");
        assert_eq!(count("bank_account"), Some(1), "{out:?}");
    }

    #[test]
    fn keywords_ignore_width_and_case_but_not_word_splits() {
        let hits = scan("【ＣＯＮＦＩＤＥＮＴＩＡＬ】本資料は社外秘です");
        let names: Vec<&str> = hits.iter().map(|d| d.name.as_str()).collect();
        assert!(names.contains(&"社外秘") && names.contains(&"confidential"), "{hits:?}");
        // 社外 and 外秘 apart are not 社外秘.
        assert!(!kinds("社外の方へ。外秘ではありません").contains(&"keyword".to_string()));
        assert!(kinds("ｺﾝﾌｨﾃﾞﾝｼｬﾙ Internal Only").contains(&"keyword".to_string()));
    }

    #[test]
    fn my_number_needs_its_check_digit() {
        // 12345678901 has check digit 8.
        assert!(my_number_ok(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 8]));
        assert!(!my_number_ok(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 9]));
        let hits = scan("個人番号: 1234 5678 9018 です");
        let my: Vec<_> = hits.iter().filter(|d| d.detector == "my_number").collect();
        assert_eq!(my.len(), 1, "{hits:?}");
        assert!(my[0].excerpt.contains("**** **** 9018"), "masked: {}", my[0].excerpt);
        assert!(!kinds("個人番号: 123456789019").contains(&"my_number".to_string()));
        // A 9-digit invoice number is not a My Number, nor part of a longer run.
        assert!(!kinds("請求書番号 123456789").contains(&"my_number".to_string()));
        assert!(!kinds("ID 9123456789018").contains(&"my_number".to_string()));
        // Full-width digits count.
        assert!(kinds("１２３４５６７８９０１８").contains(&"my_number".to_string()));
    }

    #[test]
    fn cards_phones_banks_and_address_lists() {
        assert!(kinds("card 4111 1111 1111 1111 exp 12/30").contains(&"credit_card".to_string()));
        assert!(kinds("JCB 3530-1113-3330-0000").contains(&"credit_card".to_string()));
        assert!(!kinds("order 4111 1111 1111 1112").contains(&"credit_card".to_string()), "Luhn fails");
        assert!(!kinds("tracking 1234567812345670").contains(&"credit_card".to_string()), "no issuer");
        assert!(kinds("TEL 03-1234-5678").contains(&"phone".to_string()));
        assert!(kinds("携帯 090-1234-5678").contains(&"phone".to_string()));
        assert!(kinds("+81 90 1234 5678").contains(&"phone".to_string()));
        assert!(!kinds("注文番号 0312345678").contains(&"phone".to_string()));
        assert!(kinds("三井住友銀行 渋谷支店 普通 1234567").contains(&"bank_account".to_string()));
        assert!(!kinds("在庫数 1234567 個").contains(&"bank_account".to_string()));
        let list: String = (0..12).map(|i| format!("user{i}@customer.test, ")).collect();
        let hits = scan(&list);
        let e = hits.iter().find(|d| d.detector == "email_list").expect("list");
        assert_eq!(e.count, 12);
        assert!(!kinds("a@x.test b@y.test").contains(&"email_list".to_string()));
    }
}
