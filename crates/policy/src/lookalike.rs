//! Look-alike domains: a recipient domain that is *almost* one we know —
//! one or two edits away (exmaple.co.jp), or the same once confusable
//! characters are folded (examp1e.com, rn for m, Cyrillic а for Latin a).

/// Folds characters that read alike to one form.
pub fn skeleton(domain: &str) -> String {
    let lower = domain.to_lowercase();
    let folded: String = lower
        .chars()
        .map(|c| match c {
            '0' | 'о' | 'ο' => 'o',
            '1' | 'l' | 'і' | 'ı' | '|' => 'l',
            'а' | 'α' => 'a',
            'е' | 'ε' => 'e',
            'р' | 'ρ' => 'p',
            'с' => 'c',
            'х' => 'x',
            'у' => 'y',
            'ѕ' => 's',
            'ј' => 'j',
            '5' => 's',
            c => c,
        })
        .collect();
    folded.replace("rn", "m").replace("vv", "w").replace("cl", "d")
}

/// Optimal string alignment distance (Levenshtein plus adjacent swaps).
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// The domains a look-alike imitates for sure: the org's own and those
/// delivered to (lower case).
pub fn settled(internal: &[String], contacted: &std::collections::HashSet<String>) -> Vec<String> {
    internal.iter().map(|d| d.to_lowercase()).chain(contacted.iter().cloned()).collect()
}

/// The domain of waiting mail that `candidate` imitates, if any. Only a
/// candidate that is not settled is judged against waiting mail (the real
/// customer is never a look-alike of a typo), and a waiting domain that
/// itself imitates a settled one is no reference (a held typo). Cost: one
/// comparison per waiting domain; the settled list only for a match.
pub fn imitates_waiting<'a>(
    candidate: &str,
    waiting: &'a std::collections::HashSet<String>,
    settled: &[String],
) -> Option<&'a String> {
    if settled.iter().any(|s| s == candidate) {
        return None;
    }
    waiting
        .iter()
        .filter(|w| w.as_str() != candidate && imitates(candidate, std::iter::once(*w)).is_some())
        .find(|w| !settled.contains(w) && imitates(w, settled).is_none())
}

/// The known domain `candidate` imitates, if any. Short domains need a
/// closer match: `ab.jp` and `ac.jp` are simply different.
pub fn imitates<'a>(candidate: &str, known: impl IntoIterator<Item = &'a String>) -> Option<&'a String> {
    let candidate = candidate.to_lowercase();
    let skel = skeleton(&candidate);
    known.into_iter().find(|k| {
        let k_lower = k.to_lowercase();
        if k_lower == candidate {
            return false;
        }
        if skeleton(&k_lower) == skel {
            return true;
        }
        let allowed = match k_lower.chars().count() {
            0..=6 => 0,
            7..=10 => 1,
            _ => 2,
        };
        allowed > 0 && distance(&candidate, &k_lower) <= allowed
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catches_typos_and_confusables_not_strangers() {
        let known = vec!["example.co.jp".to_string(), "partner-corp.com".to_string()];
        assert_eq!(imitates("exmaple.co.jp", &known), Some(&known[0]), "swap");
        assert_eq!(imitates("examp1e.co.jp", &known), Some(&known[0]), "digit for letter");
        assert_eq!(imitates("exarnple.co.jp", &known), Some(&known[0]), "rn for m");
        assert_eq!(imitates("еxample.co.jp", &known), Some(&known[0]), "Cyrillic е");
        assert_eq!(imitates("partner-corp.co", &known), Some(&known[1]), "dropped letter");
        assert_eq!(imitates("example.co.jp", &known), None, "the domain itself");
        assert_eq!(imitates("another.co.jp", &known), None);
        assert_eq!(imitates("ac.jp", &["ab.jp".to_string()]), None, "short names need exactness");
    }
}
