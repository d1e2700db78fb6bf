//! A minimal HTTP/1.1 client for the chaos driver: one request per connection
//! (`Connection: close`), JSON bodies, every step under a timeout. Talks only to 127.0.0.1
//! (the gateway API and the simulator's `/admin`); not a general-purpose client.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Largest response body read (the tenant list of 1,000 tenants fits easily).
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// A request that did not produce a response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The connection could not be opened or broke (the process is down or restarting).
    #[error("{method} {path} on {addr}: connection failed")]
    Io {
        /// Method.
        method: String,
        /// Path.
        path: String,
        /// Target.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No complete response within the timeout.
    #[error("{method} {path} on {addr}: no response within {timeout_ms} ms")]
    Timeout {
        /// Method.
        method: String,
        /// Path.
        path: String,
        /// Target.
        addr: SocketAddr,
        /// The timeout.
        timeout_ms: u64,
    },
    /// The peer's response is not HTTP/1.1 as expected.
    #[error("{method} {path} on {addr}: malformed response ({detail})")]
    Malformed {
        /// Method.
        method: String,
        /// Path.
        path: String,
        /// Target.
        addr: SocketAddr,
        /// What was wrong.
        detail: String,
    },
}

/// A response: status and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Body bytes (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Sends one request and reads the whole response within `timeout`.
///
/// # Errors
/// [`HttpError`] when the connection fails, times out or the response is malformed.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    api_key: Option<&str>,
    timeout: Duration,
) -> Result<Response, HttpError> {
    let io = |source| HttpError::Io { method: method.to_owned(), path: path.to_owned(), addr, source };
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.map_err(io)?;
        let body = body.map(ToString::to_string).unwrap_or_default();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        if let Some(k) = api_key {
            req.push_str("X-API-Key: ");
            req.push_str(k);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        req.push_str(&body);
        s.write_all(req.as_bytes()).await.map_err(io)?;
        // Read until the response is complete: some servers keep the connection open despite
        // `Connection: close`, so the body length decides, not EOF.
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = s.read(&mut buf).await.map_err(io)?;
            raw.extend_from_slice(buf.get(..n).unwrap_or_default());
            if n == 0 || raw.len() > MAX_RESPONSE || is_complete(&raw) {
                return Ok(raw);
            }
        }
    };
    let raw = tokio::time::timeout(timeout, exchange).await.map_err(|_| HttpError::Timeout {
        method: method.to_owned(),
        path: path.to_owned(),
        addr,
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    })??;
    parse(&raw).map_err(|detail| HttpError::Malformed {
        method: method.to_owned(),
        path: path.to_owned(),
        addr,
        detail,
    })
}

/// True once `raw` holds the headers and the whole body (by `Content-Length` or the chunked
/// terminator); a body without either is read to EOF.
fn is_complete(raw: &[u8]) -> bool {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(raw.get(..split).unwrap_or_default()).to_ascii_lowercase();
    let body = raw.get(split + 4..).unwrap_or_default();
    for line in head.lines() {
        if let Some((k, v)) = line.split_once(':') {
            match k.trim() {
                "content-length" => return v.trim().parse::<usize>().is_ok_and(|n| body.len() >= n),
                "transfer-encoding" if v.trim() == "chunked" => return body.ends_with(b"0\r\n\r\n"),
                _ => {}
            }
        }
    }
    // No body (1xx/204/304) or length unknown: a 204/304 is complete now, anything else at EOF.
    head.split(' ').nth(1).is_some_and(|c| c == "204" || c == "304")
}

/// Parses a complete HTTP/1.1 response (`Content-Length`, chunked, or read-to-close bodies).
fn parse(raw: &[u8]) -> Result<Response, String> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(raw.get(..split).ok_or("short head")?).to_string();
    let rest = raw.get(split + 4..).unwrap_or_default();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {:?}", head.lines().next().unwrap_or_default()))?;
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("transfer-encoding") && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let mut body = if chunked { dechunk(rest)? } else { rest.to_vec() };
    let len = head.lines().find_map(|l| {
        l.split_once(':')
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
    });
    if let Some(n) = len.filter(|_| !chunked) {
        body.truncate(n);
    }
    Ok(Response { status, body })
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").ok_or("truncated chunk size")?;
        let size = String::from_utf8_lossy(b.get(..eol).unwrap_or_default()).trim().to_owned();
        let n = usize::from_str_radix(size.split(';').next().unwrap_or_default(), 16)
            .map_err(|_| format!("bad chunk size {size:?}"))?;
        if n == 0 {
            return Ok(out);
        }
        let data = b.get(eol + 2..eol + 2 + n).ok_or("truncated chunk")?;
        out.extend_from_slice(data);
        b = b.get(eol + 2 + n + 2..).ok_or("truncated chunk end")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Content-length and chunked bodies parse to the same bytes; garbage is an error.
    #[test]
    fn parses_plain_and_chunked() {
        let plain = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!((plain.status, plain.body.as_slice()), (200, b"{}".as_slice()));
        let chunked = parse(
            b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n1\r\n}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((chunked.status, chunked.body.as_slice()), (202, b"{}".as_slice()));
        assert!(parse(b"nonsense").is_err());
        assert!(is_complete(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"));
        assert!(!is_complete(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{}"));
        assert!(!is_complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n"));
        assert!(is_complete(b"HTTP/1.1 204 No Content\r\n\r\n"));
        assert!(parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
    }
}
