//! Commonly used and breached passwords, refused as new passwords when a
//! policy enables `rules.blocklist` (NIST SP 800-63B: check new passwords
//! against a list of values known to be commonly used, expected or
//! compromised).
//!
//! The list is `data/common-passwords.txt`, compiled in: one password per
//! line, in NFKC and lower case, at least 8 characters (no policy admits a
//! shorter one), sorted. Where it comes from and how to rebuild it:
//! `data/README.md`. A password is refused when its NFKC lower-case form is
//! on the list, so neither case nor full-width letters get round it.

use std::sync::LazyLock;

/// The list as compiled in.
const LIST: &str = include_str!("../../data/common-passwords.txt");

/// The entries, sorted, for binary search (a tenth of the memory a hash
/// set would take, and a lookup of about 17 comparisons).
static ENTRIES: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut entries: Vec<&str> = LIST.lines().filter(|l| !l.is_empty()).collect();
    // Sorted by the generator; sorted again here so that a hand edit
    // cannot make a lookup miss.
    entries.sort_unstable();
    entries.dedup();
    entries
});

/// How many passwords the list holds.
pub fn len() -> usize {
    ENTRIES.len()
}

/// Whether `password` (already in NFKC) is on the list, whatever its case.
pub fn contains(password: &str) -> bool {
    let lower = password.to_lowercase();
    ENTRIES.binary_search(&lower.as_str()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_large_normalised_and_sorted() {
        assert!(len() >= 100_000, "{} entries", len());
        let lines: Vec<&str> = LIST.lines().collect();
        assert!(
            lines.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
        for line in &lines {
            assert!(
                line.chars().count() >= 8,
                "{line:?} is shorter than any policy allows"
            );
            let normal = crate::hashing::Secret::from(*line).normalized();
            assert_eq!(
                normal.expose().to_lowercase(),
                *line,
                "{line:?} not NFKC lower case"
            );
        }
    }

    #[test]
    fn common_passwords_are_refused_in_any_case() {
        for p in [
            "password",
            "PASSWORD",
            "Password1",
            "12345678",
            "iloveyou",
            "qwertyuiop",
        ] {
            assert!(contains(p), "{p}");
        }
        assert!(!contains("kinshicho-rain-17"));
        assert!(!contains("correct horse battery staple tokyo"));
    }
}
