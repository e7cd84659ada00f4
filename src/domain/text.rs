//! Free text from callers (names, labels, reasons, evidence references), checked by one rule.

/// Whether `c` may be stored in free text. Control characters (C0, DEL, C1) are refused: NUL
/// cannot be stored in PostgreSQL text, and the others corrupt logs, CSV exports and terminals.
/// So are the bidirectional overrides and isolates and the line and paragraph separators, which
/// make a stored text read differently from what it holds (CVE-2021-42574).
fn is_printable(c: char) -> bool {
    !(c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}'))
}

/// `raw` trimmed, if it then holds 1 to `max_chars` characters, all of them printable.
pub fn checked_text(raw: &str, max_chars: usize) -> Option<&str> {
    let trimmed = raw.trim();
    let fits = !trimmed.is_empty() && trimmed.chars().count() <= max_chars;
    (fits && trimmed.chars().all(is_printable)).then_some(trimmed)
}

/// `items` as a sentence's list: "a", "a and b", "a, b and c" (with `last` as the last joint).
pub fn listing<T: std::fmt::Display>(items: impl IntoIterator<Item = T>, last: &str) -> String {
    let items: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    match items.split_last() {
        None => String::new(),
        Some((only, [])) => only.clone(),
        Some((final_item, rest)) => format!("{} {last} {final_item}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_as_a_sentence() {
        assert_eq!(listing(Vec::<&str>::new(), "and"), "");
        assert_eq!(listing(["a"], "and"), "a");
        assert_eq!(listing(["a", "b"], "or"), "a or b");
        assert_eq!(listing(["a", "b", "c"], "and"), "a, b and c");
    }

    #[test]
    fn text_is_trimmed_bounded_and_printable() {
        assert_eq!(checked_text("  Contoso Ltd. ", 20), Some("Contoso Ltd."));
        assert_eq!(checked_text("Grüße, 東京 😀", 20), Some("Grüße, 東京 😀"));
        assert_eq!(checked_text(&"é".repeat(5), 5), Some("ééééé"));
        for bad in [
            "",
            "   ",
            "\t",
            "a\0b",
            "a\u{7}b",
            "two\nlines",
            "a\rb",
            "a\u{7f}b",
            "a\u{85}b",
            "evil\u{202E}txt.exe",
            "a\u{2066}b",
            "a\u{2028}b",
        ] {
            assert_eq!(checked_text(bad, 100), None, "{bad:?}");
        }
        assert_eq!(checked_text(&"é".repeat(6), 5), None);
    }
}
