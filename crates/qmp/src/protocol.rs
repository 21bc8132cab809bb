//! The QMP wire protocol, free of any I/O: greeting, line framing, request
//! parsing and reply/event serialisation.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::QmpError;

/// The greeting sent to every client as soon as it connects.
pub const GREETING: &str = r#"{"QMP":{"version":{"qemu":{"micro":1,"minor":0,"major":4},"package":""},"capabilities":[]}}"#;

/// Line terminator of everything the server writes (QEMU writes CRLF).
pub const LINE_END: &str = "\r\n";

/// Longest accepted input line, in bytes (terminator excluded).
pub const MAX_LINE: usize = 1 << 20;

/// A parsed command: `{"execute":NAME,"arguments":{...},"id":ANY}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// Command name.
    pub execute: String,
    /// Arguments (an empty object when the request had none).
    pub arguments: Map<String, Value>,
    /// The request's `id`, echoed in the reply; `Some(Value::Null)` when the
    /// client sent `"id":null`.
    pub id: Option<Value>,
}

/// A request that could not be parsed: the error to reply with, plus the
/// request's `id` when one could be recovered.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestError {
    /// The error reply.
    pub error: QmpError,
    /// The `id` to echo, if the input was an object carrying one.
    pub id: Option<Value>,
}

impl RequestError {
    fn new(error: QmpError, id: Option<Value>) -> Self {
        RequestError { error, id }
    }
}

/// What [`LineBuffer`] yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// One complete line, without its `\n` (a trailing `\r` is left in place;
    /// it is JSON whitespace).
    Line(Vec<u8>),
    /// A line longer than the limit; its bytes were (or will be) discarded up
    /// to the next newline.
    TooLong,
}

/// Splits a byte stream into lines, keeping partial lines across reads and
/// bounding the memory a single line may take.
#[derive(Debug)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Start of the first unconsumed byte.
    pos: usize,
    /// Bytes before this offset are known to hold no newline.
    scanned: usize,
    /// Dropping bytes of an over-long line until the next newline.
    discarding: bool,
    max_line: usize,
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self::new(MAX_LINE)
    }
}

impl LineBuffer {
    /// A buffer accepting lines of at most `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        LineBuffer {
            buf: Vec::new(),
            pos: 0,
            scanned: 0,
            discarding: false,
            max_line,
        }
    }

    /// Append bytes read from the peer.
    pub fn push(&mut self, data: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.scanned -= self.pos;
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Number of bytes held (unconsumed).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.buf.shrink_to(64 * 1024);
        self.pos = 0;
        self.scanned = 0;
    }

    /// The next complete line or over-long-line marker, in input order.
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            let found = self.buf[self.scanned..].iter().position(|&b| b == b'\n');
            match found {
                Some(offset) => {
                    let end = self.scanned + offset;
                    let start = self.pos;
                    self.pos = end + 1;
                    self.scanned = self.pos;
                    if self.discarding {
                        self.discarding = false;
                        continue;
                    }
                    if end - start > self.max_line {
                        return Some(Frame::TooLong);
                    }
                    return Some(Frame::Line(self.buf[start..end].to_vec()));
                }
                None => {
                    self.scanned = self.buf.len();
                    if self.discarding {
                        self.reset();
                        return None;
                    }
                    if self.buffered() > self.max_line {
                        self.reset();
                        self.discarding = true;
                        return Some(Frame::TooLong);
                    }
                    return None;
                }
            }
        }
    }

    /// At end of input: the unterminated last line, if any.
    pub fn finish(&mut self) -> Option<Frame> {
        if let Some(frame) = self.next_frame() {
            return Some(frame);
        }
        let discarding = std::mem::take(&mut self.discarding);
        if self.buffered() == 0 || discarding {
            self.reset();
            return None;
        }
        let line = self.buf[self.pos..].to_vec();
        self.reset();
        Some(Frame::Line(line))
    }
}

/// The error replied to a line over [`MAX_LINE`] bytes.
pub fn line_too_long_error() -> QmpError {
    QmpError::generic(format!(
        "JSON parse error, request line exceeds {MAX_LINE} bytes"
    ))
}

/// Parse one input line into the requests it holds, in order.
///
/// An empty (whitespace-only) line yields nothing. A line normally holds one
/// object; several concatenated objects are accepted as QEMU's streaming
/// parser does. Parsing stops at the first malformed JSON text.
pub fn parse_line(line: &[u8]) -> Vec<Result<Request, RequestError>> {
    let text = match std::str::from_utf8(line) {
        Ok(text) => text,
        Err(e) => {
            return vec![Err(RequestError::new(
                QmpError::generic(format!(
                    "JSON parse error, invalid UTF-8 sequence at byte {}",
                    e.valid_up_to()
                )),
                None,
            ))]
        }
    };
    if text.trim().is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for item in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        match item {
            Ok(value) => out.push(parse_request(value)),
            Err(e) => {
                out.push(Err(RequestError::new(
                    QmpError::generic(format!("JSON parse error, {e}")),
                    None,
                )));
                break;
            }
        }
    }
    out
}

/// Validate a JSON value as a QMP request (QEMU's rules and messages).
pub fn parse_request(value: Value) -> Result<Request, RequestError> {
    let Value::Object(mut obj) = value else {
        return Err(RequestError::new(
            QmpError::generic("QMP input must be a JSON object"),
            None,
        ));
    };
    let id = obj.remove("id");
    for (key, member) in &obj {
        match key.as_str() {
            "execute" if !member.is_string() => {
                return Err(RequestError::new(
                    QmpError::generic("QMP input member 'execute' must be a string"),
                    id,
                ))
            }
            "arguments" if !member.is_object() => {
                return Err(RequestError::new(
                    QmpError::generic("QMP input member 'arguments' must be an object"),
                    id,
                ))
            }
            "execute" | "arguments" => {}
            other => {
                return Err(RequestError::new(
                    QmpError::generic(format!("QMP input member '{other}' is unexpected")),
                    id,
                ))
            }
        }
    }
    let execute = match obj.remove("execute") {
        Some(Value::String(name)) => name,
        _ => {
            return Err(RequestError::new(
                QmpError::generic("QMP input lacks member 'execute'"),
                id,
            ))
        }
    };
    let arguments = match obj.remove("arguments") {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    Ok(Request {
        execute,
        arguments,
        id,
    })
}

#[derive(Serialize)]
struct ReturnResponse<'a, T: Serialize + ?Sized> {
    #[serde(rename = "return")]
    ret: &'a T,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a Value>,
}

#[derive(Serialize)]
struct ErrorResponse<'a> {
    error: &'a QmpError,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a Value>,
}

/// `{"return":RET[,"id":ID]}` (no line terminator).
pub fn return_response<T: Serialize + ?Sized>(
    ret: &T,
    id: Option<&Value>,
) -> Result<String, serde_json::Error> {
    serde_json::to_string(&ReturnResponse { ret, id })
}

/// `{"error":{"class":..,"desc":..}[,"id":ID]}` (no line terminator).
pub fn error_response(error: &QmpError, id: Option<&Value>) -> String {
    // Serialising a struct of strings and a JSON value cannot fail.
    serde_json::to_string(&ErrorResponse { error, id }).unwrap_or_else(|_| {
        r#"{"error":{"class":"GenericError","desc":"internal error"}}"#.to_string()
    })
}

/// Wall-clock event timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    pub seconds: u64,
    /// Microseconds within the second.
    pub microseconds: u32,
}

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            seconds: d.as_secs(),
            microseconds: d.subsec_micros(),
        }
    }
}

#[derive(Serialize)]
struct EventMessage<'a> {
    event: &'a str,
    data: &'a Value,
    timestamp: Timestamp,
}

/// `{"event":NAME,"data":DATA,"timestamp":{...}}` (no line terminator).
/// A `null` data is sent as `{}`.
pub fn event_message(name: &str, data: &Value, timestamp: Timestamp) -> String {
    let empty = Value::Object(Map::new());
    let data = if data.is_null() { &empty } else { data };
    serde_json::to_string(&EventMessage {
        event: name,
        data,
        timestamp,
    })
    .unwrap_or_else(|_| format!(r#"{{"event":"{name}","data":{{}}}}"#))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorClass;
    use serde_json::json;

    fn frames(buf: &mut LineBuffer) -> Vec<Frame> {
        std::iter::from_fn(|| buf.next_frame()).collect()
    }

    fn line(s: &str) -> Frame {
        Frame::Line(s.as_bytes().to_vec())
    }

    #[test]
    fn greeting_is_the_seed_text() {
        assert_eq!(
            GREETING,
            "{\"QMP\":{\"version\":{\"qemu\":{\"micro\":1,\"minor\":0,\"major\":4},\"package\":\"\"},\"capabilities\":[]}}"
        );
        let v: Value = serde_json::from_str(GREETING).unwrap();
        assert_eq!(
            v["QMP"]["version"],
            serde_json::to_value(crate::schema::VersionInfo::current()).unwrap()
        );
    }

    #[test]
    fn several_lines_in_one_read() {
        let mut b = LineBuffer::default();
        b.push(b"{\"execute\":\"a\"}\n{\"execute\":\"b\"}\r\n{\"exec");
        assert_eq!(
            frames(&mut b),
            vec![line("{\"execute\":\"a\"}"), line("{\"execute\":\"b\"}\r")]
        );
        b.push(b"ute\":\"c\"}\n");
        assert_eq!(frames(&mut b), vec![line("{\"execute\":\"c\"}")]);
        assert_eq!(b.buffered(), 0);
    }

    #[test]
    fn line_split_across_many_reads() {
        let mut b = LineBuffer::default();
        let text = b"{\"execute\":\"query-status\",\"id\":7}\r\n";
        for (i, byte) in text.iter().enumerate() {
            b.push(&[*byte]);
            let f = frames(&mut b);
            if i + 1 < text.len() {
                assert!(f.is_empty());
            } else {
                assert_eq!(f, vec![line("{\"execute\":\"query-status\",\"id\":7}\r")]);
            }
        }
    }

    #[test]
    fn overlong_line_is_reported_once_and_discarded() {
        let mut b = LineBuffer::new(16);
        b.push(&[b'x'; 10]);
        assert!(frames(&mut b).is_empty());
        b.push(&[b'x'; 10]);
        assert_eq!(frames(&mut b), vec![Frame::TooLong]);
        b.push(&[b'y'; 100]);
        assert!(frames(&mut b).is_empty());
        assert_eq!(b.buffered(), 0);
        b.push(b"yyy\nok\n");
        assert_eq!(frames(&mut b), vec![line("ok")]);
        // A complete over-long line in one read.
        b.push(&[b'z'; 40]);
        b.push(b"\nnext\n");
        assert_eq!(frames(&mut b), vec![Frame::TooLong, line("next")]);
        // Exactly the limit is fine.
        b.push(&[b'a'; 16]);
        b.push(b"\n");
        assert_eq!(frames(&mut b), vec![Frame::Line(vec![b'a'; 16])]);
    }

    #[test]
    fn one_mebibyte_limit() {
        let mut b = LineBuffer::default();
        let chunk = vec![b' '; 64 * 1024];
        let mut got = Vec::new();
        for _ in 0..20 {
            b.push(&chunk);
            got.extend(frames(&mut b));
            assert!(b.buffered() <= MAX_LINE + chunk.len());
        }
        assert_eq!(got, vec![Frame::TooLong]);
        b.push(b"\n{}\n");
        assert_eq!(frames(&mut b), vec![line("{}")]);
    }

    #[test]
    fn finish_yields_unterminated_line() {
        let mut b = LineBuffer::default();
        b.push(b"a\nb");
        assert_eq!(b.finish(), Some(line("a")));
        assert_eq!(b.finish(), Some(line("b")));
        assert_eq!(b.finish(), None);
        let mut b = LineBuffer::new(2);
        b.push(b"abcdef");
        assert_eq!(b.finish(), Some(Frame::TooLong));
        assert_eq!(b.finish(), None);
    }

    fn one(line: &str) -> Result<Request, RequestError> {
        let mut v = parse_line(line.as_bytes());
        assert_eq!(v.len(), 1, "{line}");
        v.remove(0)
    }

    fn err_desc(line: &str) -> (String, Option<Value>) {
        let e = one(line).unwrap_err();
        assert_eq!(e.error.class, ErrorClass::GenericError);
        (e.error.desc, e.id)
    }

    #[test]
    fn parses_requests() {
        let r = one(r#"{"execute":"stop"}"#).unwrap();
        assert_eq!(r.execute, "stop");
        assert!(r.arguments.is_empty());
        assert_eq!(r.id, None);
        let r = one(r#" {"execute":"x","arguments":{"a":1},"id":{"k":[1]}} "#).unwrap();
        assert_eq!(r.arguments["a"], json!(1));
        assert_eq!(r.id, Some(json!({"k":[1]})));
        let r = one("{\"execute\":\"x\",\"id\":null}\r").unwrap();
        assert_eq!(r.id, Some(Value::Null));
    }

    #[test]
    fn empty_lines_are_ignored() {
        assert!(parse_line(b"").is_empty());
        assert!(parse_line(b"  \r").is_empty());
        assert!(parse_line(b"\t").is_empty());
    }

    #[test]
    fn several_objects_on_one_line() {
        let v = parse_line(br#"{"execute":"a"} {"execute":"b"}{"#);
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].as_ref().unwrap().execute, "a");
        assert_eq!(v[1].as_ref().unwrap().execute, "b");
        assert!(v[2]
            .as_ref()
            .unwrap_err()
            .error
            .desc
            .starts_with("JSON parse error, "));
    }

    #[test]
    fn malformed_requests() {
        assert!(err_desc("{\"execute\":")
            .0
            .starts_with("JSON parse error, "));
        assert!(err_desc("nonsense").0.starts_with("JSON parse error, "));
        let (d, id) = err_desc("\u{1}\u{2}");
        assert!(d.starts_with("JSON parse error, "));
        assert_eq!(id, None);
        for text in ["[]", "\"x\"", "1", "null", "true"] {
            assert_eq!(err_desc(text).0, "QMP input must be a JSON object");
        }
        assert_eq!(
            err_desc(r#"{"execute":1,"id":"a"}"#),
            (
                "QMP input member 'execute' must be a string".into(),
                Some(json!("a"))
            )
        );
        assert_eq!(
            err_desc(r#"{"execute":"x","arguments":[],"id":2}"#),
            (
                "QMP input member 'arguments' must be an object".into(),
                Some(json!(2))
            )
        );
        assert_eq!(
            err_desc(r#"{"execute":"x","argumnets":{}}"#).0,
            "QMP input member 'argumnets' is unexpected"
        );
        assert_eq!(
            err_desc(r#"{"arguments":{},"id":1}"#),
            ("QMP input lacks member 'execute'".into(), Some(json!(1)))
        );
        assert_eq!(err_desc("{}").0, "QMP input lacks member 'execute'");
    }

    #[test]
    fn invalid_utf8() {
        let v = parse_line(b"{\"execute\":\"\xff\xfe\"}");
        assert_eq!(v.len(), 1);
        let e = v[0].as_ref().unwrap_err();
        assert_eq!(e.error.class, ErrorClass::GenericError);
        assert!(e.error.desc.starts_with("JSON parse error, invalid UTF-8"));
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let text = "[".repeat(100_000);
        let v = parse_line(text.as_bytes());
        assert!(v[0].is_err());
    }

    #[test]
    fn serialises_responses() {
        assert_eq!(
            return_response(&crate::schema::Empty {}, None).unwrap(),
            r#"{"return":{}}"#
        );
        assert_eq!(
            return_response(&crate::schema::Empty {}, Some(&json!("abc"))).unwrap(),
            r#"{"return":{},"id":"abc"}"#
        );
        assert_eq!(
            return_response(&json!([1]), Some(&Value::Null)).unwrap(),
            r#"{"return":[1],"id":null}"#
        );
        assert_eq!(
            error_response(&QmpError::command_not_found("foo"), Some(&json!(5))),
            r#"{"error":{"class":"CommandNotFound","desc":"The command foo has not been found"},"id":5}"#
        );
    }

    #[test]
    fn serialises_events() {
        let ts = Timestamp {
            seconds: 1583908726,
            microseconds: 162739,
        };
        assert_eq!(
            event_message("STOP", &json!({}), ts),
            r#"{"event":"STOP","data":{},"timestamp":{"seconds":1583908726,"microseconds":162739}}"#
        );
        assert_eq!(
            event_message("STOP", &Value::Null, ts),
            r#"{"event":"STOP","data":{},"timestamp":{"seconds":1583908726,"microseconds":162739}}"#
        );
        assert_eq!(
            event_message(
                "SHUTDOWN",
                &json!({"guest":false,"reason":"host-qmp-quit"}),
                ts
            ),
            r#"{"event":"SHUTDOWN","data":{"guest":false,"reason":"host-qmp-quit"},"timestamp":{"seconds":1583908726,"microseconds":162739}}"#
        );
        let now = Timestamp::now();
        assert!(now.seconds > 1_600_000_000);
        assert!(now.microseconds < 1_000_000);
    }
}
