//! Card brands, told from the issuer identification number (the BIN: the first six digits)
//! that a masked PAN shows.
//!
//! For an approver deciding whether someone may see a card: "a Visa ending 1111" says which
//! card without saying its number. Ranges are the networks' published IIN ranges; the more
//! specific prefix wins where two overlap (Discover's 622126-622925 inside UnionPay's 62).

use serde::Serialize;

/// A card network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CardBrand {
    /// Visa: 4.
    Visa,
    /// Mastercard: 51-55, 2221-2720.
    Mastercard,
    /// American Express: 34, 37.
    Amex,
    /// Discover: 6011, 644-649, 65, 622126-622925.
    Discover,
    /// JCB: 3528-3589.
    Jcb,
    /// Diners Club: 300-305, 36, 38-39.
    DinersClub,
    /// UnionPay: 62 (outside Discover's part of it), 81.
    UnionPay,
    /// Maestro: 50, 56-58, 639, 67.
    Maestro,
    /// Not told: no BIN shown (a PAN shorter than 16 digits shows only its last four), or a
    /// range not listed here.
    Unknown,
}

impl CardBrand {
    /// The brand of a card whose PAN starts with `bin` (at least the first six digits; `None`
    /// when they are not known).
    pub fn of_bin(bin: Option<&str>) -> CardBrand {
        let Some(bin) = bin.filter(|b| b.len() >= 6 && b.bytes().all(|c| c.is_ascii_digit()))
        else {
            return CardBrand::Unknown;
        };
        let prefix = |n: usize| {
            bin.get(..n)
                .and_then(|p| p.parse::<u32>().ok())
                .unwrap_or(0)
        };
        let (p1, p2, p3, p4, p6) = (prefix(1), prefix(2), prefix(3), prefix(4), prefix(6));
        match () {
            () if p1 == 4 => CardBrand::Visa,
            () if (51..=55).contains(&p2) || (2221..=2720).contains(&p4) => CardBrand::Mastercard,
            () if p2 == 34 || p2 == 37 => CardBrand::Amex,
            () if p4 == 6011
                || (644..=649).contains(&p3)
                || p2 == 65
                || (622_126..=622_925).contains(&p6) =>
            {
                CardBrand::Discover
            }
            () if (3528..=3589).contains(&p4) => CardBrand::Jcb,
            () if (300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39 => {
                CardBrand::DinersClub
            }
            () if p2 == 62 || p2 == 81 => CardBrand::UnionPay,
            () if p2 == 50 || (56..=58).contains(&p2) || p3 == 639 || p2 == 67 => {
                CardBrand::Maestro
            }
            () => CardBrand::Unknown,
        }
    }

    /// A name to show.
    pub fn display_name(self) -> &'static str {
        match self {
            CardBrand::Visa => "Visa",
            CardBrand::Mastercard => "Mastercard",
            CardBrand::Amex => "American Express",
            CardBrand::Discover => "Discover",
            CardBrand::Jcb => "JCB",
            CardBrand::DinersClub => "Diners Club",
            CardBrand::UnionPay => "UnionPay",
            CardBrand::Maestro => "Maestro",
            CardBrand::Unknown => "Unknown brand",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brands_are_told_from_their_bins() {
        let cases = [
            ("411111", CardBrand::Visa),
            ("555555", CardBrand::Mastercard),
            ("222100", CardBrand::Mastercard),
            ("272099", CardBrand::Mastercard),
            ("272100", CardBrand::Unknown),
            ("378282", CardBrand::Amex),
            ("341111", CardBrand::Amex),
            ("601111", CardBrand::Discover),
            ("644000", CardBrand::Discover),
            ("650000", CardBrand::Discover),
            ("622126", CardBrand::Discover),
            ("622925", CardBrand::Discover),
            ("622125", CardBrand::UnionPay),
            ("622926", CardBrand::UnionPay),
            ("353011", CardBrand::Jcb),
            ("305693", CardBrand::DinersClub),
            ("361234", CardBrand::DinersClub),
            ("501234", CardBrand::Maestro),
            ("639000", CardBrand::Maestro),
            ("999999", CardBrand::Unknown),
        ];
        for (bin, brand) in cases {
            assert_eq!(CardBrand::of_bin(Some(bin)), brand, "{bin}");
        }
    }

    #[test]
    fn no_bin_is_no_brand() {
        for bin in [None, Some(""), Some("4111"), Some("41111*"), Some("******")] {
            assert_eq!(CardBrand::of_bin(bin), CardBrand::Unknown, "{bin:?}");
        }
    }
}
