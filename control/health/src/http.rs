//! The HTTP check's request and an incremental, sans-IO reader of the
//! response (RFC 9110 semantics, RFC 9112 message syntax).
//!
//! The reader takes whatever bytes arrive, in pieces of any size, and
//! decides as early as it can: at the end of the header when the status is
//! wrong or no body is expected, as soon as the expected text appears in
//! the body otherwise. It never panics and never holds more than
//! [`MAX_HEAD`] bytes of header and [`MAX_BODY`] bytes of body.

use std::net::Ipv4Addr;

use crate::{CheckResult, Reason, StatusRange};

/// Most bytes of a response header (status line and fields) read; a longer
/// header fails the check.
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// Most bytes of body searched for the expected text.
pub(crate) const MAX_BODY: usize = 64 * 1024;
/// Longest chunk-size line (with extensions) accepted.
const MAX_CHUNK_LINE: usize = 1024;

/// The request: `GET path HTTP/1.1` with `Host` (RFC 9110 section 7.2:
/// `host[:port]`, the port left out when it is 80, the default of `http`),
/// `Connection: close` so the server ends the body by closing, and no
/// body.
pub(crate) fn request(path: &str, host: Option<&str>, address: Ipv4Addr, port: u16) -> Vec<u8> {
    let host = match host {
        Some(host) => host.to_owned(),
        None if port == 80 => address.to_string(),
        None => format!("{address}:{port}"),
    };
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: pylon-health\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// Finds `needle` in a stream of bytes fed piece by piece, keeping at most
/// `limit` bytes; shared by the HTTP body and the TCP `expect` check.
#[derive(Debug)]
pub(crate) struct Finder {
    needle: Vec<u8>,
    seen: Vec<u8>,
    limit: usize,
}

impl Finder {
    pub(crate) fn new(needle: Vec<u8>, limit: usize) -> Finder {
        Finder {
            needle,
            seen: Vec::new(),
            limit,
        }
    }

    /// Adds `data`; `Some(true)` once the needle was seen, `Some(false)` once
    /// `limit` bytes went by without it, `None` while it may still come.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Option<bool> {
        if self.needle.is_empty() {
            return Some(true);
        }
        let room = self.limit.saturating_sub(self.seen.len());
        let take = data.len().min(room);
        // Search only where a match could end in the new bytes.
        let from = self.seen.len().saturating_sub(self.needle.len() - 1);
        self.seen.extend_from_slice(&data[..take]);
        if self.seen[from..]
            .windows(self.needle.len())
            .any(|window| window == self.needle.as_slice())
        {
            return Some(true);
        }
        (self.seen.len() >= self.limit).then_some(false)
    }
}

/// How the body of a response ends (RFC 9112 section 6.3).
#[derive(Debug)]
enum Framing {
    /// `Content-Length`: this many bytes remain.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked(Chunked),
    /// Neither: the body ends when the server closes.
    Close,
}

/// Decoder of the chunked transfer coding (RFC 9112 section 7.1).
#[derive(Debug)]
enum Chunked {
    /// Reading a chunk-size line.
    Size(Vec<u8>),
    /// Inside a chunk's data: this many bytes remain.
    Data(u64),
    /// After a chunk's data: reading its CRLF.
    DataEnd(Vec<u8>),
    /// After the last chunk: reading trailer lines until an empty one.
    Trailer(Vec<u8>),
    /// The body is complete.
    Done,
}

/// A step of the response reader.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// More bytes are needed.
    Pending,
    /// The check is decided.
    Done(CheckResult),
}

#[derive(Debug)]
enum Phase {
    Head(Vec<u8>),
    Body { framing: Framing, finder: Finder },
    Finished,
}

/// Reads a response, deciding the HTTP check.
#[derive(Debug)]
pub(crate) struct ResponseReader {
    expect_status: StatusRange,
    body: Option<Vec<u8>>,
    phase: Phase,
}

fn bad(what: &str) -> Verdict {
    Verdict::Done(CheckResult::Fail(Reason::BadResponse(what.to_owned())))
}

impl ResponseReader {
    pub(crate) fn new(expect_status: StatusRange, body: Option<Vec<u8>>) -> ResponseReader {
        ResponseReader {
            expect_status,
            body,
            phase: Phase::Head(Vec::new()),
        }
    }

    /// Adds bytes of the response.
    pub(crate) fn feed(&mut self, mut data: &[u8]) -> Verdict {
        loop {
            match &mut self.phase {
                Phase::Finished => return Verdict::Pending,
                Phase::Head(head) => {
                    let before = head.len();
                    let take = data.len().min(MAX_HEAD + 1 - before);
                    head.extend_from_slice(&data[..take]);
                    // The blank line may begin up to 3 bytes before the new ones.
                    let Some(end) = head_end(head, before.saturating_sub(3)) else {
                        if head.len() > MAX_HEAD {
                            return self.finish(bad("header too long"));
                        }
                        return Verdict::Pending;
                    };
                    // Bytes after the header belong to the body.
                    let used = end.saturating_sub(before);
                    let rest = data.get(used..).unwrap_or_default();
                    let head = std::mem::take(head);
                    match self.on_head(&head[..end]) {
                        Step::Verdict(verdict) => return self.finish(verdict),
                        Step::Interim => {
                            // A 1xx response precedes the final one (RFC 9110
                            // section 15.2); read the next header.
                            data = rest;
                        }
                        Step::Body(Framing::Length(0), _) => {
                            return self.finish(Verdict::Done(Reason::BodyMismatch.into()));
                        }
                        Step::Body(framing, finder) => {
                            self.phase = Phase::Body { framing, finder };
                            data = rest;
                        }
                    }
                }
                Phase::Body { framing, finder } => {
                    let verdict = body_feed(framing, finder, data);
                    if verdict != Verdict::Pending {
                        return self.finish(verdict);
                    }
                    return Verdict::Pending;
                }
            }
        }
    }

    /// The server closed the connection: decides what is still open.
    pub(crate) fn eof(&mut self) -> CheckResult {
        let result = match &self.phase {
            Phase::Head(head) if head.is_empty() => CheckResult::Fail(Reason::Closed),
            Phase::Head(_) => {
                Reason::BadResponse("connection closed inside the header".to_owned()).into()
            }
            Phase::Body { .. } | Phase::Finished => Reason::BodyMismatch.into(),
        };
        self.phase = Phase::Finished;
        result
    }

    fn finish(&mut self, verdict: Verdict) -> Verdict {
        self.phase = Phase::Finished;
        verdict
    }

    fn on_head(&self, head: &[u8]) -> Step {
        let mut lines = head
            .split(|&b| b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
        let Some(code) = lines.next().and_then(status_code) else {
            return Step::Verdict(bad("malformed status line"));
        };
        if (100..200).contains(&code) && code != 101 {
            return Step::Interim;
        }
        if !self.expect_status.contains(code) {
            return Step::Verdict(Verdict::Done(Reason::Status(code).into()));
        }
        let Some(needle) = &self.body else {
            return Step::Verdict(Verdict::Done(CheckResult::Pass));
        };
        let mut length = None;
        let mut chunked = false;
        for line in lines.filter(|line| !line.is_empty()) {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                return Step::Verdict(bad("malformed header field"));
            };
            let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
            if name.eq_ignore_ascii_case(b"content-length") {
                let Some(parsed) = parse_decimal(value) else {
                    return Step::Verdict(bad("bad Content-Length"));
                };
                if length.is_some_and(|l| l != parsed) {
                    return Step::Verdict(bad("conflicting Content-Length"));
                }
                length = Some(parsed);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                // The final coding decides (RFC 9112 section 6.3, rule 4).
                chunked = value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|last| trim(last).eq_ignore_ascii_case(b"chunked"));
            }
        }
        // No body in these (RFC 9110 sections 15.3.5 and 15.4.5).
        let framing = if code == 204 || code == 304 {
            Framing::Length(0)
        } else if chunked {
            Framing::Chunked(Chunked::Size(Vec::new()))
        } else if let Some(length) = length {
            Framing::Length(length)
        } else {
            Framing::Close
        };
        Step::Body(framing, Finder::new(needle.clone(), MAX_BODY))
    }
}

enum Step {
    Verdict(Verdict),
    Interim,
    Body(Framing, Finder),
}

/// Index just past the blank line that ends a header (`\r\n\r\n`, or bare
/// `\n\n` which RFC 9112 section 2.2 lets a recipient accept), searched
/// from `from` on.
fn head_end(head: &[u8], from: usize) -> Option<usize> {
    let tail = head.get(from..)?;
    let crlf = tail
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| from + i + 4);
    let lf = tail
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| from + i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The status code of `HTTP/1.x SSS reason` (RFC 9112 section 4).
fn status_code(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let (&minor, rest) = rest.split_first()?;
    let rest = rest.strip_prefix(b" ")?;
    if !minor.is_ascii_digit() || rest.len() < 3 || rest.get(3).is_some_and(|&b| b != b' ') {
        return None;
    }
    let digits = &rest[..3];
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |code, d| code * 10 + u16::from(d - b'0'));
    (100..=599).contains(&code).then_some(code)
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end.max(start)]
}

fn parse_decimal(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 19 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

fn parse_hex(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 15 {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &d| {
        let digit = char::from(d).to_digit(16)?;
        n.checked_mul(16)?.checked_add(u64::from(digit))
    })
}

/// Moves bytes from `data` into `line` up to and without the next `\n`
/// (and a `\r` before it); whether the line is complete.
fn take_line(line: &mut Vec<u8>, data: &mut &[u8]) -> bool {
    match data.iter().position(|&b| b == b'\n') {
        Some(newline) => {
            line.extend_from_slice(&data[..newline]);
            *data = &data[newline + 1..];
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            true
        }
        None => {
            line.extend_from_slice(data);
            *data = &[];
            false
        }
    }
}

/// Feeds body bytes through the framing to the finder.
fn body_feed(framing: &mut Framing, finder: &mut Finder, data: &[u8]) -> Verdict {
    let found = |found: Option<bool>| match found {
        Some(true) => Some(Verdict::Done(CheckResult::Pass)),
        Some(false) => Some(Verdict::Done(Reason::BodyMismatch.into())),
        None => None,
    };
    match framing {
        Framing::Close => found(finder.feed(data)).unwrap_or(Verdict::Pending),
        Framing::Length(remaining) => {
            let take = usize::try_from(*remaining).map_or(data.len(), |r| r.min(data.len()));
            *remaining -= take as u64;
            if let Some(verdict) = found(finder.feed(&data[..take])) {
                return verdict;
            }
            if *remaining == 0 {
                return Verdict::Done(Reason::BodyMismatch.into());
            }
            Verdict::Pending
        }
        Framing::Chunked(state) => {
            let mut data = data;
            while !data.is_empty() {
                match state {
                    Chunked::Size(line) => {
                        if !take_line(line, &mut data) {
                            if line.len() > MAX_CHUNK_LINE {
                                return bad("chunk size line too long");
                            }
                            continue;
                        }
                        let size_text = line.split(|&b| b == b';').next().unwrap_or_default();
                        let Some(size) = parse_hex(trim(size_text)) else {
                            return bad("bad chunk size");
                        };
                        *state = if size == 0 {
                            Chunked::Trailer(Vec::new())
                        } else {
                            Chunked::Data(size)
                        };
                    }
                    Chunked::Data(remaining) => {
                        let take =
                            usize::try_from(*remaining).map_or(data.len(), |r| r.min(data.len()));
                        *remaining -= take as u64;
                        if let Some(verdict) = found(finder.feed(&data[..take])) {
                            return verdict;
                        }
                        data = &data[take..];
                        if *remaining == 0 {
                            *state = Chunked::DataEnd(Vec::new());
                        }
                    }
                    Chunked::DataEnd(line) => {
                        if !take_line(line, &mut data) {
                            if line.len() > 2 {
                                return bad("chunk data longer than its size");
                            }
                            continue;
                        }
                        if !line.is_empty() {
                            return bad("chunk data longer than its size");
                        }
                        *state = Chunked::Size(Vec::new());
                    }
                    Chunked::Trailer(line) => {
                        if !take_line(line, &mut data) {
                            if line.len() > MAX_HEAD {
                                return bad("trailer too long");
                            }
                            continue;
                        }
                        if line.is_empty() {
                            *state = Chunked::Done;
                        } else {
                            line.clear();
                        }
                    }
                    Chunked::Done => break,
                }
            }
            if matches!(state, Chunked::Done) {
                return Verdict::Done(Reason::BodyMismatch.into());
            }
            Verdict::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn read_all(reader: &mut ResponseReader, response: &[u8], piece: usize) -> CheckResult {
        for chunk in response.chunks(piece.max(1)) {
            if let Verdict::Done(result) = reader.feed(chunk) {
                return result;
            }
        }
        reader.eof()
    }

    fn check(status: &str, body: Option<&str>, response: &str) -> CheckResult {
        let status = match status.split_once('-') {
            Some((l, h)) => StatusRange {
                low: l.parse().unwrap(),
                high: h.parse().unwrap(),
            },
            None => StatusRange {
                low: status.parse().unwrap(),
                high: status.parse().unwrap(),
            },
        };
        let results: Vec<CheckResult> = [1, 2, 3, 7, 4096]
            .into_iter()
            .map(|piece| {
                let mut reader = ResponseReader::new(status, body.map(|b| b.as_bytes().to_vec()));
                read_all(&mut reader, response.as_bytes(), piece)
            })
            .collect();
        for result in &results[1..] {
            assert_eq!(result, &results[0], "same verdict whatever the pieces");
        }
        results[0].clone()
    }

    #[test]
    fn request_has_host_and_closes() {
        let addr = Ipv4Addr::new(10, 0, 2, 11);
        assert_eq!(
            request("/healthz", None, addr, 80),
            b"GET /healthz HTTP/1.1\r\nHost: 10.0.2.11\r\nUser-Agent: pylon-health\r\n\
              Accept: */*\r\nConnection: close\r\n\r\n"
        );
        let with_port = String::from_utf8(request("/", None, addr, 8080)).unwrap();
        assert!(with_port.contains("\r\nHost: 10.0.2.11:8080\r\n"));
        let named = String::from_utf8(request("/", Some("www.example.com"), addr, 8080)).unwrap();
        assert!(named.contains("\r\nHost: www.example.com\r\n"));
    }

    #[test]
    fn status_in_range_passes_without_body() {
        assert_eq!(
            check("200-399", None, "HTTP/1.1 302 Found\r\nLocation: /\r\n\r\n"),
            CheckResult::Pass
        );
        assert_eq!(
            check("200", None, "HTTP/1.0 200\r\n\r\n"),
            CheckResult::Pass
        );
    }

    #[test]
    fn status_out_of_range_fails() {
        assert_eq!(
            check("200-399", None, "HTTP/1.1 503 Service Unavailable\r\n\r\n"),
            Reason::Status(503).into()
        );
        assert_eq!(
            check(
                "200-399",
                Some("ok"),
                "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nok"
            ),
            Reason::Status(404).into()
        );
    }

    #[test]
    fn interim_responses_are_skipped() {
        assert_eq!(
            check(
                "200",
                Some("ok"),
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            ),
            CheckResult::Pass
        );
    }

    #[test]
    fn body_by_length() {
        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nall is okay";
        assert_eq!(check("200", Some("is ok"), ok), CheckResult::Pass);
        assert_eq!(check("200", Some("bad"), ok), Reason::BodyMismatch.into());
        // Text after Content-Length does not count.
        let short = "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nall is okay";
        assert_eq!(
            check("200", Some("okay"), short),
            Reason::BodyMismatch.into()
        );
        let empty = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(check("200", Some("ok"), empty), Reason::BodyMismatch.into());
        let no_content = "HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(
            check("200-299", Some("ok"), no_content),
            Reason::BodyMismatch.into()
        );
    }

    #[test]
    fn body_until_close() {
        let response = "HTTP/1.1 200 OK\n\nhello world";
        assert_eq!(check("200", Some("world"), response), CheckResult::Pass);
        assert_eq!(
            check("200", Some("earth"), response),
            Reason::BodyMismatch.into()
        );
    }

    #[test]
    fn body_chunked() {
        let response = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                        5;ext=1\r\nhello\r\n5\r\n worl\r\n1\r\nd\r\n0\r\nX-Trailer: 1\r\n\r\n";
        assert_eq!(
            check("200", Some("hello world"), response),
            CheckResult::Pass
        );
        assert_eq!(
            check("200", Some("hello\r\n5"), response),
            Reason::BodyMismatch.into()
        );
        assert_eq!(
            check("200", Some("earth"), response),
            Reason::BodyMismatch.into()
        );
        let bad_size = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n";
        assert!(matches!(
            check("200", Some("x"), bad_size),
            CheckResult::Fail(Reason::BadResponse(_))
        ));
        let overlong = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n";
        assert!(matches!(
            check("200", Some("x"), overlong),
            CheckResult::Fail(Reason::BadResponse(_))
        ));
    }

    #[test]
    fn malformed_responses() {
        for response in [
            "SSH-2.0-OpenSSH_9.2\r\n\r\n",
            "HTTP/1.1 20 OK\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/2 200\r\n\r\n",
            "HTTP/1.1 999 What\r\n\r\n",
            "HTTP/1.1 200OK\r\n\r\n",
        ] {
            assert!(
                matches!(
                    check("100-599", None, response),
                    CheckResult::Fail(Reason::BadResponse(_))
                ),
                "{response:?}"
            );
        }
        let bad_length = "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n";
        assert!(matches!(
            check("200", Some("x"), bad_length),
            CheckResult::Fail(Reason::BadResponse(_))
        ));
        let no_colon = "HTTP/1.1 200 OK\r\nbroken\r\n\r\n";
        assert!(matches!(
            check("200", Some("x"), no_colon),
            CheckResult::Fail(Reason::BadResponse(_))
        ));
    }

    #[test]
    fn closed_early() {
        assert_eq!(check("200", None, ""), Reason::Closed.into());
        assert!(matches!(
            check("200", None, "HTTP/1.1 200 OK\r\n"),
            CheckResult::Fail(Reason::BadResponse(_))
        ));
    }

    #[test]
    fn endless_header_fails() {
        let mut reader = ResponseReader::new(StatusRange::DEFAULT, None);
        let line = [b'a'; 1000];
        let mut verdict = Verdict::Pending;
        for _ in 0..20 {
            verdict = reader.feed(&line);
            if verdict != Verdict::Pending {
                break;
            }
        }
        assert!(matches!(
            verdict,
            Verdict::Done(CheckResult::Fail(Reason::BadResponse(_)))
        ));
    }

    #[test]
    fn endless_body_without_the_text_fails() {
        let mut reader = ResponseReader::new(StatusRange::DEFAULT, Some(b"needle".to_vec()));
        assert_eq!(reader.feed(b"HTTP/1.1 200 OK\r\n\r\n"), Verdict::Pending);
        let hay = [b'h'; 4096];
        let mut verdict = Verdict::Pending;
        for _ in 0..20 {
            verdict = reader.feed(&hay);
            if verdict != Verdict::Pending {
                break;
            }
        }
        assert_eq!(verdict, Verdict::Done(Reason::BodyMismatch.into()));
    }

    #[test]
    fn finder_across_pieces() {
        let mut finder = Finder::new(b"abc".to_vec(), 100);
        assert_eq!(finder.feed(b"xxa"), None);
        assert_eq!(finder.feed(b"b"), None);
        assert_eq!(finder.feed(b"cz"), Some(true));
        let mut limited = Finder::new(b"abc".to_vec(), 4);
        assert_eq!(limited.feed(b"xxxxabc"), Some(false));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2048), piece in 1usize..64) {
            for body in [None, Some(b"ok".to_vec())] {
                let mut reader = ResponseReader::new(StatusRange::DEFAULT, body);
                read_all(&mut reader, &data, piece);
            }
        }

        #[test]
        fn garbage_after_a_good_header_never_panics(
            data in proptest::collection::vec(any::<u8>(), 0..2048),
            chunked in any::<bool>(),
            piece in 1usize..64,
        ) {
            let head: &[u8] = if chunked {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
            };
            let mut reader = ResponseReader::new(StatusRange::DEFAULT, Some(b"ok".to_vec()));
            let response = [head, &data].concat();
            read_all(&mut reader, &response, piece);
        }
    }
}
