//! Shape rules for identifiers that come from outside (files, resources, API
//! requests). Each returns a message that names what is wrong, never the value
//! of a secret.

/// Longest login ID the store accepts.
pub const LOGIN_ID_MAX: usize = 128;

/// A login ID: 1 to 128 characters of ASCII letters, digits and `. _ @ + -`,
/// starting with a letter or digit. ISP login IDs are of this shape; anything
/// else (quotes, semicolons, NUL, look-alike Unicode, bidirectional controls)
/// is refused at the door rather than carried around.
pub fn login_id(value: &str) -> Result<(), String> {
    let len = value.chars().count();
    if len == 0 {
        return Err("must not be empty".into());
    }
    if len > LOGIN_ID_MAX {
        return Err(format!(
            "must be at most {LOGIN_ID_MAX} characters, got {len}"
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '+' | '-');
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) || !value.chars().all(allowed) {
        return Err(
            "must be ASCII letters, digits and . _ @ + -, starting with a letter or digit".into(),
        );
    }
    Ok(())
}

/// A base e-mail address: `local@domain`, at most 254 characters, no whitespace.
pub fn email(value: &str) -> Result<(), String> {
    if value.len() > 254 {
        return Err("must be at most 254 characters".into());
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must not contain whitespace or control characters".into());
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
        _ => Err("must be an address like member@example.jp".into()),
    }
}

/// A credential, realm, purpose or channel name: a lower-case DNS label
/// (`a-z`, `0-9`, `-`, starting with a letter, at most 63 characters).
pub fn name(value: &str) -> Result<(), String> {
    let ok_len = (1..=63).contains(&value.len());
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok_len && first_ok && rest_ok && !value.ends_with('-') {
        Ok(())
    } else {
        Err("must be 1-63 characters of a-z, 0-9 and '-', starting with a letter and not ending with '-'".into())
    }
}

/// Longest `client` (the member's address or RADIUS calling-station id)
/// an API caller may name.
pub const CLIENT_MAX: usize = 128;

/// A client identity as API callers send it: an IPv4/IPv6 address, a MAC
/// or calling-station id, a host name. 1 to 128 bytes of printable ASCII
/// without spaces, so it is bounded before it keys a throttling counter.
pub fn client(value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > CLIENT_MAX {
        return Err(format!("must be 1 to {CLIENT_MAX} bytes"));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces".into());
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
            assert!(client(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "x\0", "\u{202e}x", &"x".repeat(129)] {
            assert!(client(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn login_ids() {
        assert!(login_id("ab123456").is_ok());
        assert!(login_id("").is_err());
        assert!(login_id("a b").is_err());
        assert!(login_id("a\0b").is_err());
        assert!(login_id(&"x".repeat(129)).is_err());
        for bad in [
            "会員-01",
            "x';DROP TABLE accounts;--",
            "ab\u{202e}12",
            "-ab",
            "ab\u{200b}c",
        ] {
            assert!(login_id(bad).is_err(), "{bad:?}");
        }
        assert!(login_id("taro.yamada+isp@wakwak").is_ok());
    }

    #[test]
    fn emails() {
        assert!(email("taro@wakwak.example.jp").is_ok());
        for bad in [
            "",
            "taro",
            "@x.jp",
            "taro@",
            "taro@jp",
            "ta ro@x.jp",
            "taro@x.jp.",
        ] {
            assert!(email(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names() {
        for good in ["login", "support", "connection", "ftp", "mail-2"] {
            assert!(name(good).is_ok(), "{good}");
        }
        for bad in ["", "Login", "1st", "a_b", "a-", &"a".repeat(64)] {
            assert!(name(bad).is_err(), "{bad:?}");
        }
    }
}
