//! A minimal HTTP/1.1 GET over plain TCP for the stats endpoint: one request, `Connection: close`, Content-Length or chunked bodies.

use super::ReportError;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The whole exchange must finish within this; the endpoint answers from memory.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Refuse bodies past this: 5,000 fingerprints take a few MB, so more means something else answered.
pub const MAX_RESPONSE: usize = 64 << 20;

/// Where to send the request, split from `--url`.
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    /// For `connect`; IPv6 literals without brackets.
    pub host: String,
    pub port: u16,
    /// The authority as written, for the Host header.
    pub authority: String,
    /// Path before `/stats`, without a trailing slash ("" for the root).
    pub prefix: String,
}

impl Endpoint {
    /// Parses `http://HOST[:PORT][/PREFIX]`; the scheme may be left out.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let url = url.trim();
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
                return Err("https is not supported; the stats endpoint speaks plain HTTP".into())
            }
            Some((scheme, _)) => return Err(format!("unsupported scheme \"{scheme}\"")),
            None => url,
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if path.contains(['?', '#']) {
            return Err("a query string or fragment is not expected".into());
        }
        if authority.is_empty() {
            return Err("no host".into());
        }
        if authority.contains('@') {
            return Err("user info is not supported; use --token".into());
        }
        // Anything else unusual would end up in the request line or Host header.
        if authority
            .chars()
            .chain(path.chars())
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err("contains whitespace or control characters".into());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or("unclosed '[' in an IPv6 address")?;
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(p.strip_prefix(':').ok_or("junk after the IPv6 address")?),
                ),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err("no host".into());
        }
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("bad port \"{p}\""))?,
        };
        Ok(Endpoint {
            host: host.to_string(),
            port,
            authority: authority.to_string(),
            prefix: path.trim_end_matches('/').to_string(),
        })
    }

    fn request(&self, path: &str, token: Option<&str>) -> String {
        let mut req = format!(
            "GET {}{path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nUser-Agent: pgsplit-report/{}\r\nConnection: close\r\n",
            self.prefix,
            self.authority,
            env!("CARGO_PKG_VERSION"),
        );
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        req.push_str("\r\n");
        req
    }
}

/// A complete response.
#[derive(Debug, PartialEq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// GETs `{url}/stats` and returns the body of a 200 response.
pub async fn get_stats(url: &str, token: Option<&str>) -> Result<Vec<u8>, ReportError> {
    get(url, "/stats", token).await
}

/// GETs `{url}{path}` (path starts with `/`) and returns the body of a 200 response.
pub async fn get(url: &str, path: &str, token: Option<&str>) -> Result<Vec<u8>, ReportError> {
    let endpoint = Endpoint::parse(url).map_err(|reason| ReportError::BadUrl {
        url: url.to_string(),
        reason,
    })?;
    if let Some(t) = token {
        // A token with CR or LF would let it write its own headers.
        if t.is_empty() || t.chars().any(|c| c.is_control() || c == ' ') {
            return Err(ReportError::BadToken);
        }
    }
    let response = tokio::time::timeout(TIMEOUT, exchange(url, &endpoint, path, token))
        .await
        .map_err(|_| ReportError::Timeout {
            url: url.to_string(),
            secs: TIMEOUT.as_secs(),
        })??;
    match response.status {
        200 => Ok(response.body),
        401 | 403 => Err(ReportError::Unauthorized {
            url: url.to_string(),
            status: response.status,
            token_given: token.is_some(),
        }),
        status => Err(ReportError::Status {
            url: url.to_string(),
            status,
            body: snippet(&response.body),
        }),
    }
}

/// The first line of an error body, shortened, for the error message.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or("").trim();
    let mut s: String = line.chars().take(200).collect();
    if line.chars().count() > 200 {
        s.push('…');
    }
    s
}

async fn exchange(
    url: &str,
    endpoint: &Endpoint,
    path: &str,
    token: Option<&str>,
) -> Result<Response, ReportError> {
    let mut stream = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|source| ReportError::Unreachable {
            url: url.to_string(),
            source,
        })?;
    let lost = |source| ReportError::Lost {
        url: url.to_string(),
        source,
    };
    stream
        .write_all(endpoint.request(path, token).as_bytes())
        .await
        .map_err(lost)?;
    let bad = |reason: String| ReportError::BadResponse {
        url: url.to_string(),
        reason,
    };
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        // Parse before each read so a server that keeps the connection open is not waited on.
        if let Some(r) = parse_response(&buf, false).map_err(bad)? {
            return Ok(r);
        }
        if buf.len() > MAX_RESPONSE {
            return Err(bad(format!(
                "response larger than {} MiB",
                MAX_RESPONSE >> 20
            )));
        }
        let n = stream.read_buf(&mut buf).await.map_err(lost)?;
        if n == 0 {
            return match parse_response(&buf, true).map_err(bad)? {
                Some(r) => Ok(r),
                None => Err(bad(
                    "connection closed before the response was complete".into()
                )),
            };
        }
    }
}

/// Parses a response from what has been read so far: `Ok(None)` means read more. At `eof`, a
/// body without length or chunking ends here.
pub fn parse_response(buf: &[u8], eof: bool) -> Result<Option<Response>, String> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > 64 * 1024 {
            return Err("response headers longer than 64 KiB".into());
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| "response headers are not UTF-8".to_string())?;
    let body = &buf[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!(
            "not an HTTP/1.x response: \"{}\"",
            snippet(status_line.as_bytes())
        ));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line \"{}\"", snippet(status_line.as_bytes())))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line \"{}\"", snippet(line.as_bytes())))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked is always the last coding when present.
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| format!("bad Content-Length \"{value}\""))?,
            );
        }
    }
    // Transfer-Encoding wins over Content-Length (RFC 9112 section 6.3).
    let body = if chunked {
        // A complete chunked body always ends with CRLF CRLF (after the last chunk or the
        // trailers), so this cheap check spares re-decoding a large body on every read.
        if !eof && !body.ends_with(b"\r\n\r\n") {
            return Ok(None);
        }
        match decode_chunked(body)? {
            Some(b) => b,
            None => return Ok(None),
        }
    } else if let Some(len) = length {
        if body.len() < len {
            return Ok(None);
        }
        body[..len].to_vec()
    } else if eof {
        body.to_vec()
    } else {
        return Ok(None);
    };
    Ok(Some(Response { status, body }))
}

/// Decodes a chunked body; `Ok(None)` while the last chunk and trailers have not all arrived.
pub fn decode_chunked(mut input: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = find(input, b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&input[..eol])
            .map_err(|_| "chunk size line is not UTF-8".to_string())?;
        // Chunk extensions (";name=value") carry nothing we need.
        let hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(hex, 16)
            .ok()
            .filter(|_| !hex.is_empty() && hex.len() <= 15)
            .ok_or_else(|| format!("bad chunk size \"{}\"", snippet(line.as_bytes())))?;
        input = &input[eol + 2..];
        if size == 0 {
            // Trailer fields until an empty line; they are ignored.
            loop {
                let Some(eol) = find(input, b"\r\n") else {
                    return Ok(None);
                };
                if eol == 0 {
                    return Ok(Some(out));
                }
                input = &input[eol + 2..];
            }
        }
        if size > MAX_RESPONSE || out.len() + size > MAX_RESPONSE {
            return Err(format!("body larger than {} MiB", MAX_RESPONSE >> 20));
        }
        if input.len() < size + 2 {
            return Ok(None);
        }
        if &input[size..size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF".into());
        }
        out.extend_from_slice(&input[..size]);
        input = &input[size + 2..];
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
