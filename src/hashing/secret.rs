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
    fn formatting_never_shows_the_plaintext() {
        let s = Secret::from("hunter2-hunter2");
        assert_eq!(
            format!("{s} {s:?} {:?}", Some(&s)),
            "[redacted] [redacted] Some([redacted])"
        );
    }
}
