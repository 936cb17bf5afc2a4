//! Finding a card number in free text, however it is written: grouped with any punctuation,
//! in Unicode digits, or with an expiry, CVV or other digits before or after it.
//!
//! No I/O. Nothing here logs. Cost is linear in the text: each digit starts at most eight
//! windows (12–19 digits) in at most three chains, and one buffer of at most the text's length
//! is allocated.

use std::ops::Range;

use crate::domain::luhn;

/// Shortest and longest card number (ISO/IEC 7812-1).
const PAN_LENGTHS: std::ops::RangeInclusive<usize> = 12..=19;
/// Longest separator that still joins two digit groups, in characters (`" - "` is three).
const MAX_SEPARATOR_CHARS: usize = 3;
/// Groups at least this long join across any separators: card groupings are 4-4-4-4, 4-6-5
/// and 4-4-4-4-3, while dates and times are made of two-digit groups.
const MIN_CARD_GROUP: usize = 3;

/// Whether `text` holds a card number.
///
/// Digits (ASCII, fullwidth, Arabic-Indic, Devanagari) form groups; every character that is
/// neither a letter nor a digit separates them, and a letter ends a number. Neighbouring
/// groups joined by 1–3 separator characters form a chain when every group in it has at least
/// three digits, or when all its separators are the same string — so `4111.1111.1111.1111`
/// and `4111-1111 1111.1111` join, and `2026-12-01 08:34:25` does not join across the space.
///
/// Inside a chain every window of 12–19 digits is a card number when it passes Luhn and
/// starts with a card network's prefix (3, 4, 5, 6, or 2221–2720): that finds a PAN with an
/// expiry, a CVV or stray digits before or after it, while the windows of compact timestamps
/// (`2026…`) and epoch milliseconds (`17…`) do not count. A whole digit group of 12–19 digits
/// that passes Luhn is a card number whatever its first digit (the spec's rule), so one such
/// timestamp in ten is still refused, as it always was.
pub fn contains_card_number(text: &str) -> bool {
    let (digits, groups) = scan(text);
    let mut rest = groups.as_slice();
    while let Some(segment) = next_segment(&mut rest) {
        if segment_holds_card(&digits, segment) {
            return true;
        }
    }
    false
}

/// One maximal run of digits.
struct Group<'a> {
    /// Where its digits are in the scanned digit buffer.
    digits: Range<usize>,
    /// The separator joining it to the previous group, or `None` when a letter, a long
    /// separator or the start of the text comes first.
    joined_by: Option<&'a str>,
}

impl Group<'_> {
    fn len(&self) -> usize {
        self.digits.len()
    }
}

/// The ASCII digit a character stands for, for the decimal digit sets a caller could type.
fn decimal(c: char) -> Option<u8> {
    let zero = match c {
        '0'..='9' => '0',
        '\u{FF10}'..='\u{FF19}' => '\u{FF10}', // fullwidth
        '\u{0660}'..='\u{0669}' => '\u{0660}', // Arabic-Indic
        '\u{06F0}'..='\u{06F9}' => '\u{06F0}', // extended Arabic-Indic
        '\u{0966}'..='\u{096F}' => '\u{0966}', // Devanagari
        _ => return None,
    };
    let value = u32::from(c) - u32::from(zero);
    u8::try_from(value).ok().map(|v| b'0' + v)
}

/// Splits `text` into digit groups; their ASCII digits go into one buffer, in order.
fn scan(text: &str) -> (Vec<u8>, Vec<Group<'_>>) {
    let mut digits = Vec::new();
    let mut groups = Vec::new();
    // The group being read: where it starts in `digits` and what joined it to the last one.
    let mut current: Option<(usize, Option<&str>)> = None;
    // Where the separator after the last group started, and its length so far in characters;
    // `None` once a letter has ended the chain.
    let mut separator: Option<(usize, usize)> = None;
    for (at, c) in text.char_indices() {
        if let Some(d) = decimal(c) {
            if current.is_none() {
                let joined_by = separator
                    .filter(|&(_, chars)| (1..=MAX_SEPARATOR_CHARS).contains(&chars))
                    .and_then(|(from, _)| text.get(from..at));
                current = Some((digits.len(), joined_by));
            }
            digits.push(d);
            continue;
        }
        if let Some((start, joined_by)) = current.take() {
            groups.push(Group {
                digits: start..digits.len(),
                joined_by,
            });
            separator = Some((at, 0));
        }
        if c.is_alphanumeric() {
            separator = None;
        } else if let Some((_, chars)) = separator.as_mut() {
            *chars += 1;
        }
    }
    if let Some((start, joined_by)) = current {
        groups.push(Group {
            digits: start..digits.len(),
            joined_by,
        });
    }
    (digits, groups)
}

/// Takes the next run of groups joined by short separators off the front of `rest`.
fn next_segment<'g, 'a>(rest: &mut &'g [Group<'a>]) -> Option<&'g [Group<'a>]> {
    if rest.is_empty() {
        return None;
    }
    let len = rest
        .iter()
        .skip(1)
        .position(|g| g.joined_by.is_none())
        .map_or(rest.len(), |p| p + 1);
    let (segment, tail) = rest.split_at(len);
    *rest = tail;
    Some(segment)
}

/// Whether a segment (groups joined by short separators) holds a card number.
fn segment_holds_card(digits: &[u8], segment: &[Group<'_>]) -> bool {
    // The spec's rule for a plain run: any Luhn-valid 12–19 digits, whatever they start with.
    let whole_run = segment.iter().any(|g| {
        PAN_LENGTHS.contains(&g.len()) && digits.get(g.digits.clone()).is_some_and(luhn::is_valid)
    });
    whole_run
        || long_group_chains(segment)
            .chain(same_separator_chains(segment))
            .any(|chain| windows_hold_card(digits, chain))
}

/// Maximal chains of groups that each have at least [`MIN_CARD_GROUP`] digits.
fn long_group_chains<'s>(segment: &'s [Group<'_>]) -> impl Iterator<Item = Range<usize>> + 's {
    segment
        .split(|g| g.len() < MIN_CARD_GROUP)
        .filter_map(|run| Some(run.first()?.digits.start..run.last()?.digits.end))
}

/// Maximal chains whose separators are all the same string. Two joined groups always
/// qualify; neighbouring chains share their border group.
fn same_separator_chains(segment: &[Group<'_>]) -> Vec<Range<usize>> {
    let mut chains = Vec::new();
    let mut start = 0;
    // The first group of a segment has no separator before it; compare each join with the
    // one before it.
    for i in 2..segment.len() {
        let changed = match (segment.get(i - 1), segment.get(i)) {
            (Some(prev), Some(next)) => prev.joined_by != next.joined_by,
            _ => false,
        };
        if changed {
            chains.extend(digit_range(segment, start, i - 1));
            start = i - 1;
        }
    }
    if segment.len() >= 2 {
        chains.extend(digit_range(segment, start, segment.len() - 1));
    }
    chains
}

/// The digits of groups `first..=last` of a segment (contiguous in the digit buffer).
fn digit_range(segment: &[Group<'_>], first: usize, last: usize) -> Option<Range<usize>> {
    Some(segment.get(first)?.digits.start..segment.get(last)?.digits.end)
}

/// Whether some window of 12–19 digits in `chain` starts with a network prefix and passes
/// Luhn.
fn windows_hold_card(digits: &[u8], chain: Range<usize>) -> bool {
    let Some(chain) = digits.get(chain) else {
        return false;
    };
    (0..chain.len()).any(|from| {
        let tail = chain.get(from..).unwrap_or_default();
        starts_with_network_prefix(tail)
            && PAN_LENGTHS
                .clone()
                .filter_map(|len| tail.get(..len))
                .any(luhn::is_valid)
    })
}

/// Whether digits start like a card of a payment network: 3 (Amex, Diners, JCB), 4 (Visa),
/// 5 (Mastercard), 6 (Discover, UnionPay, Maestro) or Mastercard's 2221–2720 series.
fn starts_with_network_prefix(digits: &[u8]) -> bool {
    match digits.first() {
        Some(b'3'..=b'6') => true,
        Some(b'2') => digits
            .get(..4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| d.parse::<u16>().ok())
            .is_some_and(|d| (2221..=2720).contains(&d)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Test PANs of each network: Visa, Mastercard, Amex (15), Discover, Mastercard 2-series.
    const PANS: &[&str] = &[
        "4111111111111111",
        "5555555555554444",
        "378282246310005",
        "6011111111111117",
        "2223003122003222",
    ];

    /// Spellings of a card number that must be found.
    const FOUND: &[&str] = &[
        "4111111111111111",
        "5555555555554444",
        "378282246310005",
        "6011111111111117",
        "2223003122003222",
        "4111 1111 1111 1111",
        "5555-5555-5555-4444",
        "4111.1111.1111.1111",
        "4111_1111_1111_1111",
        // Short groups join when every separator is the same.
        "41 11 11 11 11 11 11 11",
        "4-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1",
        "4111/1111/1111/1111",
        "4111 - 1111 - 1111 - 1111",
        "4111 1111 1111 1111 1225",
        "4111111111111111 123",
        "4111111111111111-01",
        "1 4111111111111111",
        "4111111111111111/12/25",
        "41111111111111111225",
        "3782 822463 10005",
        "card no. 4111.1111.1111.1111 exp 12/25",
        "x4111111111111111y",
        "４１１１１１１１１１１１１１１１",
        "４１１１ １１１１ １１１１ １１１１",
        "٤١١١١١١١١١١١١١١١",
        "۴۱۱۱۱۱۱۱۱۱۱۱۱۱۱۱",
        "४१११११११११११११११",
        "4111\u{2009}1111\u{2009}1111\u{2009}1111",
        "4111\u{2011}1111\u{2011}1111\u{2011}1111",
        "4111\u{a0}1111\u{a0}1111\u{a0}1111",
        "4111-1111 1111.1111",
        "2223 0031 2200 3222",
        "6011:1111:1111:1117",
        "note: 4111,1111,1111,1111;",
        "(4111) 1111 1111 1111",
        "4111111111111111.0",
        // The spec's plain-run rule: Luhn-valid 12–19 digits whatever the first digit.
        "123456789015",
    ];

    /// Values that must pass: ids, amounts, phones, tracking numbers, times, a Luhn failure.
    const PASSED: &[&str] = &[
        "ORD-2026-000123",
        "A1B2C3D4E5",
        "1,234,567.89",
        "EUR 12,345,678.90",
        "+1 415-555-0132",
        "+44 20 7946 0958",
        "1Z999AA10123456784",
        "1Z 999 AA1 01 2345 6784",
        "2026-12-01T08:34:25.123Z",
        "2026-12-01 08:34:25",
        "20261201083425",
        "1764578065123",
        "0b6f3c52-9a7e-4f7d-b1a2-5c3e8d9f0a1b",
        "4111111111111112",
        "chargeback CB-1234 for order 55",
        "4111    1111    1111    1111",
        "4111x1111x1111x1111",
        "",
        "no digits at all",
    ];

    #[test]
    fn every_spelling_of_a_card_number_is_found() {
        for text in FOUND {
            assert!(contains_card_number(text), "not found: {text:?}");
        }
    }

    #[test]
    fn ordinary_values_pass() {
        for text in PASSED {
            assert!(!contains_card_number(text), "refused: {text:?}");
        }
    }

    #[test]
    fn the_network_prefix_limits_windows_but_not_whole_runs() {
        // Luhn-valid 12 digits starting with 1: refused alone, not inside a longer run (no
        // network's numbers start with 1).
        assert!(contains_card_number("123456789015"));
        assert!(!contains_card_number("9123456789015"));
        // So a Luhn-valid compact timestamp or epoch-milliseconds value is refused (one in
        // ten), unless more digits are glued to it.
        assert!(contains_card_number("20261201083429"));
        assert!(contains_card_number("at 1764578065120 ms"));
        assert!(!contains_card_number("1764578065120123"));
        // The Mastercard 2-series ends at 2720.
        assert!(contains_card_number("92720999999999996"));
        assert!(!contains_card_number("92721000000000004"));
    }

    #[test]
    fn dates_do_not_join_across_a_different_separator() {
        assert!(!contains_card_number(
            "2026-12-01 08:34:25 2026-12-01 08:34:25"
        ));
        assert!(!contains_card_number("12/25 12/25 12/25 12/25"));
    }

    #[test]
    fn a_few_kilobytes_of_digits_in_one_chain_are_scanned_to_the_end() {
        // Worst cases for the window search (its cost is linear: at most eight windows start
        // at each digit): one long chain of 4-digit groups, one long run of a digit no
        // network starts with, and a card at the very end of both.
        let chained = "4111 1111 1111 1112 ".repeat(200);
        let run = "9".repeat(4096);
        assert!(!contains_card_number(&run));
        assert!(contains_card_number(&format!(
            "{chained}4111 1111 1111 1111"
        )));
        assert!(contains_card_number(&format!("{run} 4111111111111111")));
    }

    fn separator() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            " ", "-", ".", "_", "/", ",", ":", "  ", " - ", "--", "\u{2009}", "\u{2011}", "\u{a0}",
            "\t", "\n", "*",
        ])
        .prop_map(str::to_owned)
    }

    proptest! {
        #[test]
        fn a_test_pan_in_4_digit_groups_with_digits_after_it_is_found(
            pan in prop::sample::select(PANS.to_vec()),
            separators in prop::collection::vec(separator(), 5),
            tail_separator in separator(),
            tail in "[0-9]{1,4}",
        ) {
            let mut text = String::new();
            for (i, chunk) in pan.as_bytes().chunks(4).enumerate() {
                if i > 0 {
                    text.push_str(&separators[i]);
                }
                text.push_str(std::str::from_utf8(chunk).unwrap());
            }
            text.push_str(&tail_separator);
            text.push_str(&tail);
            prop_assert!(contains_card_number(&text), "not found: {:?}", text);
        }

        #[test]
        fn iso_timestamps_and_dates_pass(
            (y, mo, d) in (1970u32..2200, 1u32..13, 1u32..32),
            (h, mi, s, ms) in (0u32..24, 0u32..60, 0u32..60, 0u32..1000),
            layout in 0usize..4,
        ) {
            let text = match layout {
                0 => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z"),
                1 => format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"),
                2 => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}+01:00"),
                _ => format!("{d:02}/{mo:02}/{y:04} {h:02}:{mi:02}:{s:02}.{ms:03}"),
            };
            prop_assert!(!contains_card_number(&text), "refused: {:?}", text);
        }

        #[test]
        fn phone_numbers_of_at_most_11_digits_pass(
            groups in prop::collection::vec("[0-9]{1,4}", 1..5),
            separator in separator(),
        ) {
            let digits: usize = groups.iter().map(String::len).sum();
            prop_assume!(digits <= 11);
            let text = format!("+{}", groups.join(&separator));
            prop_assert!(!contains_card_number(&text), "refused: {:?}", text);
        }
    }
}
