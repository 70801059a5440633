//! A tiny HTTP/1.1 client over `std::net::TcpStream` for the member-facing
//! API: one request per connection (`Connection: close`), JSON bodies with
//! `Content-Length`. Enough for tests, and it adds no crate.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

/// A whole response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Status, headers and body without `date`, which differs from one
    /// second to the next: two answers that must be indistinguishable
    /// compare equal on this.
    pub fn comparable(&self) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let headers = self
            .headers
            .iter()
            .filter(|(n, _)| n != "date")
            .cloned()
            .collect();
        (self.status, headers, self.body.clone())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response {} is not JSON ({e}): {:?}",
                self.status,
                self.text()
            )
        })
    }
}

/// Sends one request to `127.0.0.1:port`; `token` (when not empty) goes in
/// `Authorization: Bearer`, a body goes as JSON.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&[u8]>,
) -> std::io::Result<Response> {
    request_typed(port, method, path, token, body, "application/json")
}

/// The same with a body of `content_type`.
pub fn request_typed(
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&[u8]>,
    content_type: &str,
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_nodelay(true)?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if !token.is_empty() {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body.unwrap_or_default());
    s.write_all(&out)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse(&raw).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "not an HTTP response: {:?}",
                String::from_utf8_lossy(&raw[..raw.len().min(200)])
            ),
        )
    })
}

fn parse(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else {
        match headers.iter().find(|(n, _)| n == "content-length") {
            Some((_, len)) => rest.get(..len.parse::<usize>().ok()?)?.to_vec(),
            None => rest.to_vec(),
        }
    };
    Some(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// POSTs `body` as JSON; the whole response.
pub fn post_raw(port: u16, path: &str, token: &str, body: &serde_json::Value) -> Response {
    let bytes = serde_json::to_vec(body).expect("JSON");
    request(port, "POST", path, token, Some(&bytes))
        .unwrap_or_else(|e| panic!("POST {path} on port {port}: {e}"))
}

/// POSTs `body` as JSON; the status and the JSON answer (`null` when the
/// body is empty or not JSON).
pub fn post(
    port: u16,
    path: &str,
    token: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = post_raw(port, path, token, body);
    let json = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
    (r.status, json)
}

/// GETs a path; the status and the body as text.
pub fn get(port: u16, path: &str) -> (u16, String) {
    let r = request(port, "GET", path, "", None)
        .unwrap_or_else(|e| panic!("GET {path} on port {port}: {e}"));
    (r.status, r.text())
}

/// GETs a path; the whole response.
pub fn get_raw(port: u16, path: &str) -> Response {
    request(port, "GET", path, "", None)
        .unwrap_or_else(|e| panic!("GET {path} on port {port}: {e}"))
}
