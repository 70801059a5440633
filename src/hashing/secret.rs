//! A password or temporary password in memory: never printed, wiped on drop.

use std::fmt;

use zeroize::Zeroizing;

/// A plaintext secret. `Debug` and `Display` print `[redacted]`, so a secret
/// that reaches a log line, an error or a panic message shows nothing.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(Zeroizing::new(value))
    }

    /// The plaintext, for hashing or for the one place it is delivered.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The password in Unicode NFKC, as it is checked against rules and
    /// hashed (NIST SP 800-63B): a full-width `ｐａｓｓｗｏｒｄ` is
    /// `password`, and the same password typed through another input method
    /// is the same password. `None` when it is already in NFKC (all ASCII is).
    pub fn nfkc(&self) -> Option<Secret> {
        use unicode_normalization::{IsNormalized, UnicodeNormalization as _, is_nfkc_quick};
        if self.0.is_ascii() || is_nfkc_quick(self.0.chars()) == IsNormalized::Yes {
            return None;
        }
        let normal: String = self.0.nfkc().collect();
        (normal != *self.0).then(|| Secret::new(normal))
    }

    /// [`Secret::nfkc`], or this secret when it is already normalised.
    pub fn normalized(self) -> Secret {
        self.nfkc().unwrap_or(self)
    }

    /// Length in characters (not bytes), as password rules count it.
    pub fn char_len(&self) -> usize {
        self.0.chars().count()
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret::new(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfkc_folds_full_width_and_compatibility_forms_and_leaves_ascii() {
        assert_eq!(
            Secret::from("ｐａｓｓｗｏｒｄ１２３").normalized().expose(),
            "password123"
        );
        assert_eq!(Secret::from("ｶﾞｲﾄﾞ").normalized().expose(), "ガイド");
        assert_eq!(Secret::from("ﬁnance").normalized().expose(), "finance");
        assert!(Secret::from("plain-ascii").nfkc().is_none());
        assert!(Secret::from("すでに正規形").nfkc().is_none());
        // Composed and decomposed forms are one password.
        let decomposed = Secret::from("cafe\u{301}");
        assert_eq!(decomposed.normalized().expose(), "caf\u{e9}");
    }

    #[test]
    fn formatting_never_shows_the_plaintext() {
        let s = Secret::from("hunter2-hunter2");
        assert_eq!(
            format!("{s} {s:?} {:?}", Some(&s)),
            "[redacted] [redacted] Some([redacted])"
        );
    }
}
