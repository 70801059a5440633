//! Identifiers that come from outside (files, resources, API requests) as
//! types that hold only valid values: [`LoginId`], [`Name`] (a credential,
//! realm, purpose or channel), [`Email`] and [`ClientId`]. Parsing says
//! what is wrong and never repeats the value, which may be a secret typed
//! into the wrong field.

use std::fmt;

/// Why a value is not a valid identifier of its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(String);

impl Invalid {
    fn new(reason: impl Into<String>) -> Invalid {
        Invalid(reason.into())
    }
}

macro_rules! identifier {
    ($(#[$doc:meta])* $type:ident, $check:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $type(String);

        impl $type {
            /// `value`, if it is valid.
            pub fn parse(value: &str) -> Result<$type, Invalid> {
                $check(value).map(|()| $type(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $type {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $type {
            type Err = Invalid;
            fn from_str(value: &str) -> Result<$type, Invalid> {
                $type::parse(value)
            }
        }
    };
}

identifier!(
    /// A login ID: 1 to 128 characters of ASCII letters, digits and
    /// `. _ @ + -`, starting with a letter or digit. ISP login IDs are of
    /// this shape; anything else (quotes, semicolons, NUL, look-alike
    /// Unicode, bidirectional controls) is refused at the door rather than
    /// carried around.
    LoginId,
    check_login_id
);

identifier!(
    /// A credential, realm, purpose or channel name: a lower-case DNS label
    /// (`a-z`, `0-9`, `-`, starting with a letter, at most 63 characters).
    Name,
    check_name
);

identifier!(
    /// A base e-mail address: `local@domain`, at most 254 characters, no
    /// whitespace.
    Email,
    check_email
);

identifier!(
    /// A client identity as API callers send it: an IPv4/IPv6 address, a
    /// MAC or calling-station id, a host name. 1 to 128 bytes of printable
    /// ASCII without spaces, so it is bounded before it keys a throttling
    /// counter.
    ClientId,
    check_client
);

/// Longest login ID the store accepts.
pub const LOGIN_ID_MAX: usize = 128;

/// Longest client identity an API caller may name.
pub const CLIENT_MAX: usize = 128;

fn check_login_id(value: &str) -> Result<(), Invalid> {
    let len = value.chars().count();
    if len == 0 {
        return Err(Invalid::new("must not be empty"));
    }
    if len > LOGIN_ID_MAX {
        return Err(Invalid::new(format!(
            "must be at most {LOGIN_ID_MAX} characters, got {len}"
        )));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '+' | '-');
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) || !value.chars().all(allowed) {
        return Err(Invalid::new(
            "must be ASCII letters, digits and . _ @ + -, starting with a letter or digit",
        ));
    }
    Ok(())
}

fn check_email(value: &str) -> Result<(), Invalid> {
    if value.len() > 254 {
        return Err(Invalid::new("must be at most 254 characters"));
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Invalid::new(
            "must not contain whitespace or control characters",
        ));
    }
    match value.rsplit_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.') =>
        {
            Ok(())
        }
        _ => Err(Invalid::new("must be an address like member@example.jp")),
    }
}

fn check_name(value: &str) -> Result<(), Invalid> {
    let ok_len = (1..=63).contains(&value.len());
    let first_ok = value.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok_len && first_ok && rest_ok && !value.ends_with('-') {
        Ok(())
    } else {
        Err(Invalid::new(
            "must be 1-63 characters of a-z, 0-9 and '-', starting with a letter and not ending with '-'",
        ))
    }
}

fn check_client(value: &str) -> Result<(), Invalid> {
    if value.is_empty() || value.len() > CLIENT_MAX {
        return Err(Invalid::new(format!("must be 1 to {CLIENT_MAX} bytes")));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Invalid::new("must be printable ASCII without spaces"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients() {
        for good in [
            "192.0.2.1",
            "2001:db8::1",
            "00-11-22-33-44-55",
            "portal.example",
        ] {
            assert_eq!(
                ClientId::parse(good).map(|c| c.to_string()),
                Ok(good.to_owned())
            );
        }
        for bad in ["", "a b", "x\0", "\u{202e}x", &"x".repeat(129)] {
            assert!(ClientId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn login_ids() {
        assert!(LoginId::parse("ab123456").is_ok());
        assert!(LoginId::parse("taro.yamada+isp@wakwak").is_ok());
        for bad in [
            "",
            "a b",
            "a\0b",
            &"x".repeat(129),
            "会員-01",
            "x';DROP TABLE accounts;--",
            "ab\u{202e}12",
            "-ab",
            "ab\u{200b}c",
        ] {
            assert!(LoginId::parse(bad).is_err(), "{bad:?}");
        }
    }

    /// The reason never repeats the value: a password typed into the login
    /// ID field stays out of logs and answers.
    #[test]
    fn reasons_do_not_repeat_the_value() {
        let typed = "Secret pass;word";
        for reason in [
            LoginId::parse(typed).map(|_| ()),
            Name::parse(typed).map(|_| ()),
            Email::parse(typed).map(|_| ()),
            ClientId::parse(typed).map(|_| ()),
        ] {
            let reason = reason.expect_err("refused").to_string();
            assert!(
                !reason.contains("Secret") && !reason.contains("word"),
                "{reason}"
            );
        }
    }

    #[test]
    fn emails() {
        assert!(Email::parse("taro@wakwak.example.jp").is_ok());
        for bad in [
            "",
            "taro",
            "@x.jp",
            "taro@",
            "taro@jp",
            "ta ro@x.jp",
            "taro@x.jp.",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names() {
        for good in ["login", "support", "connection", "ftp", "mail-2"] {
            assert_eq!(
                good.parse::<Name>().map(|n| n.as_str().to_owned()),
                Ok(good.to_owned())
            );
        }
        for bad in ["", "Login", "1st", "a_b", "a-", &"a".repeat(64)] {
            assert!(Name::parse(bad).is_err(), "{bad:?}");
        }
    }
}
