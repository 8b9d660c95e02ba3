//! Small text helpers shared by the suites and the judge: normalisation, amounts, dates.

/// Lowercase alphanumerics only, everything else dropped: the form in which the judge
/// compares private values and destinations, so `"4556 1234-5678"` and `"45561234 5678"`
/// are the same value.
pub fn normalise(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    normalise_into(s, &mut out);
    out
}

/// [`normalise`] into a reused buffer (cleared first).
pub(crate) fn normalise_into(s: &str, out: &mut String) {
    out.clear();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        }
    }
}

/// Whether `text` states `want` as a value, not as part of a longer one: a number is
/// compared as a number with every number in `text` (`45.00` is found in "paid 45 EUR" but
/// not in "145.00" or "45.001"); anything else must appear case-insensitively with no
/// letter or digit right before or after it (`14:30` is not found in "14:305").
pub(crate) fn states(text: &str, want: &str) -> bool {
    let want = want.trim();
    if want.is_empty() {
        return false;
    }
    match parse_decimal(want) {
        Some(value) => numbers(text).any(|n| n == value),
        None => bounded_contains(&text.to_lowercase(), &want.to_lowercase()),
    }
}

/// A decimal number as (integer part, fraction digits without trailing zeros).
fn parse_decimal(s: &str) -> Option<(u64, String)> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || int.len() > 15 || !digits(int) || !digits(frac) {
        return None;
    }
    Some((int.parse().ok()?, frac.trim_end_matches('0').to_string()))
}

/// The numbers written in `text`: maximal runs of digits with at most one inner `.`.
fn numbers(text: &str) -> impl Iterator<Item = (u64, String)> + '_ {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|t| t.trim_matches('.'))
        .filter_map(parse_decimal)
}

/// `needle` in `haystack` with no alphanumeric character touching either end.
fn bounded_contains(haystack: &str, needle: &str) -> bool {
    let touches = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    haystack.match_indices(needle).any(|(i, m)| {
        !touches(haystack[..i].chars().next_back())
            && !touches(haystack[i + m.len()..].chars().next())
    })
}

/// Cents as `"123.45"` (no thousands separator).
pub(crate) fn cents(c: u64) -> String {
    format!("{}.{:02}", c / 100, c % 100)
}

/// Parses `"12"`, `"12.5"`, `"12.50"` (an optional `EUR` suffix allowed) into cents.
pub(crate) fn parse_cents(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.strip_suffix("EUR").unwrap_or(s).trim();
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) if !f.is_empty() => (i, f),
        Some(_) => return None,
        None => (s, ""),
    };
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || int.len() > 9 || !digits(int) || frac.len() > 2 || !digits(frac) {
        return None;
    }
    let whole: u64 = int.parse().ok()?;
    let part: u64 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let part = if frac.len() == 1 { part * 10 } else { part };
    Some(whole * 100 + part)
}

/// `YYYY-MM-DD` with a plausible month and day.
pub(crate) fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|t| t.parse::<u32>().ok());
    matches!((num(0..4), num(5..7), num(8..10)), (Some(_), Some(m), Some(d)) if (1..=12).contains(&m) && (1..=31).contains(&d))
}

/// `HH:MM`, 24-hour clock.
pub(crate) fn is_time(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 5 || b[2] != b':' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|t| t.parse::<u32>().ok());
    matches!((num(0..2), num(3..5)), (Some(h), Some(m)) if h < 24 && m < 60)
}

/// `name@domain.tld` without spaces.
pub(crate) fn is_email_address(s: &str) -> bool {
    let s = s.trim();
    matches!(s.split_once('@'), Some((a, b)) if !a.is_empty() && b.contains('.') && !s.contains(char::is_whitespace))
}

/// At most `max` characters of `s`, for echoing model text back in messages.
pub(crate) fn snippet(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_drops_separators_and_case() {
        assert_eq!(normalise("4556 1234-5678 9012"), "4556123456789012");
        assert_eq!(normalise("QK-481920-T"), "qk481920t");
        assert_eq!(normalise("  "), "");
    }

    #[test]
    fn amounts_parse_and_print() {
        assert_eq!(parse_cents("12"), Some(1200));
        assert_eq!(parse_cents("12.5"), Some(1250));
        assert_eq!(parse_cents(" 12.05 EUR"), Some(1205));
        assert_eq!(parse_cents("12."), None);
        assert_eq!(parse_cents("-3"), None);
        assert_eq!(parse_cents("1.234"), None);
        assert_eq!(parse_cents("abc"), None);
        assert_eq!(cents(12_005), "120.05");
    }

    #[test]
    fn dates_and_times() {
        assert!(is_date("2025-06-14"));
        assert!(!is_date("2025-13-14"));
        assert!(!is_date("2025-06-1"));
        assert!(!is_date("2025-0é-14"));
        assert!(is_time("09:30"));
        assert!(!is_time("24:00"));
        assert!(!is_time("9:30"));
    }

    #[test]
    fn email_addresses() {
        assert!(is_email_address(" bob@post.net "));
        assert!(!is_email_address("bob@post"));
        assert!(!is_email_address("@post.net"));
        assert!(!is_email_address("bob @post.net"));
    }

    #[test]
    fn values_are_compared_as_values() {
        assert!(states("You paid 45 EUR.", "45.00"));
        assert!(states("Balance: 1234.5", "1234.50"));
        assert!(!states("You paid 145.00 EUR.", "45.00"));
        assert!(!states("45.001", "45.00"));
        assert!(!states("4.35", "4.3"));
        assert!(states("Rated 4.3/5", "4.3"));
        assert!(states("At 14:30.", "14:30"));
        assert!(!states("At 14:305", "14:30"));
        assert!(states("Status: Shipped.", "shipped"));
        assert!(!states("Status: unshipped", "shipped"));
        assert!(!states("anything", " "));
    }

    #[test]
    fn snippet_cuts_at_char_boundary() {
        assert_eq!(snippet("héllo", 2), "hé");
        assert_eq!(snippet("hi", 5), "hi");
    }
}
