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

/// What [`Framer`] yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// One complete input unit: a balanced top-level JSON object or array,
    /// or whatever else was sent up to a newline (the newline excluded).
    Line(Vec<u8>),
    /// A unit longer than the limit; its bytes were (or will be) discarded up
    /// to the next newline or the end of the over-long object.
    TooLong,
}

/// Splits a client's byte stream into requests.
///
/// QMP clients differ in how they delimit requests: people and most tools
/// end each with a newline, while `qemu.qmp` (like QEMU's own streaming
/// parser) sends bare objects with no terminator. A unit therefore ends at a
/// newline, or as soon as a top-level `{...}`/`[...]` is balanced (braces
/// inside strings do not count). A newline always ends the unit, so a
/// malformed line is answered with an error right away instead of swallowing
/// the lines after it. Partial units survive across reads; at most
/// `max_line` bytes are held for one unit.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    /// Start of the unit being assembled.
    start: usize,
    /// Next byte to scan.
    pos: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// The unit holds something besides whitespace.
    nonblank: bool,
    /// Dropping the rest of an over-long unit.
    discarding: bool,
    max_line: usize,
}

impl Default for Framer {
    fn default() -> Self {
        Self::new(MAX_LINE)
    }
}

impl Framer {
    /// A framer accepting units of at most `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        Framer {
            buf: Vec::new(),
            start: 0,
            pos: 0,
            depth: 0,
            in_string: false,
            escaped: false,
            nonblank: false,
            discarding: false,
            max_line,
        }
    }

    /// Append bytes read from the peer.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.pos -= self.start;
            self.start = 0;
        }
        if self.buf.is_empty() && self.buf.capacity() > 64 * 1024 {
            self.buf.shrink_to(64 * 1024);
        }
        self.buf.extend_from_slice(data);
    }

    /// Number of bytes held (unconsumed).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    fn reset_json(&mut self) {
        self.depth = 0;
        self.in_string = false;
        self.escaped = false;
        self.nonblank = false;
    }

    /// Track JSON nesting; true when `b` closes the top-level value.
    fn scan(&mut self, b: u8) -> bool {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
            }
            return false;
        }
        match b {
            b'"' => self.in_string = true,
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' if self.depth > 0 => {
                self.depth -= 1;
                return self.depth == 0;
            }
            _ => {}
        }
        false
    }

    /// The next complete unit or over-long marker, in input order.
    pub fn next_frame(&mut self) -> Option<Frame> {
        while self.pos < self.buf.len() {
            let b = self.buf[self.pos];
            self.pos += 1;
            if b == b'\n' {
                let (start, end) = (self.start, self.pos - 1);
                self.start = self.pos;
                let nonblank = self.nonblank;
                let discarding = std::mem::take(&mut self.discarding);
                self.reset_json();
                if nonblank && !discarding {
                    return Some(Frame::Line(self.buf[start..end].to_vec()));
                }
                continue;
            }
            let closed = self.scan(b);
            if self.discarding {
                self.start = self.pos;
                if closed {
                    self.discarding = false;
                    self.reset_json();
                }
                continue;
            }
            if !b.is_ascii_whitespace() {
                self.nonblank = true;
            }
            if closed {
                let start = self.start;
                self.start = self.pos;
                self.reset_json();
                return Some(Frame::Line(self.buf[start..self.pos].to_vec()));
            }
            if self.pos - self.start > self.max_line {
                // Keep the nesting state so the end of an over-long object
                // (not only a newline) ends the discarding.
                self.discarding = true;
                self.start = self.pos;
                self.nonblank = false;
                return Some(Frame::TooLong);
            }
        }
        if !self.nonblank && !self.discarding {
            // Only whitespace so far: nothing worth keeping.
            self.start = self.pos;
        }
        None
    }

    /// At end of input: the unterminated last unit, if any.
    pub fn finish(&mut self) -> Option<Frame> {
        if let Some(frame) = self.next_frame() {
            return Some(frame);
        }
        let unit = (self.nonblank && !self.discarding).then(|| self.buf[self.start..].to_vec());
        self.buf.clear();
        self.start = 0;
        self.pos = 0;
        self.discarding = false;
        self.reset_json();
        unit.map(Frame::Line)
    }
}

/// The error replied to a request over [`MAX_LINE`] bytes.
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

    fn frames(buf: &mut Framer) -> Vec<Frame> {
        std::iter::from_fn(|| buf.next_frame()).collect()
    }

    fn line(s: &str) -> Frame {
        Frame::Line(s.as_bytes().to_vec())
    }

    #[test]
    fn several_lines_in_one_read() {
        let mut b = Framer::default();
        b.push(b"{\"execute\":\"a\"}\n{\"execute\":\"b\"}\r\n\r\n\n{\"exec");
        assert_eq!(
            frames(&mut b),
            vec![line("{\"execute\":\"a\"}"), line("{\"execute\":\"b\"}")]
        );
        b.push(b"ute\":\"c\"}\n");
        assert_eq!(frames(&mut b), vec![line("{\"execute\":\"c\"}")]);
        assert_eq!(b.buffered(), 0);
    }

    #[test]
    fn objects_without_newlines() {
        // qemu.qmp writes bare objects, no terminator.
        let mut b = Framer::default();
        b.push(br#"{"execute":"qmp_capabilities","arguments":{}}"#);
        assert_eq!(
            frames(&mut b),
            vec![line(r#"{"execute":"qmp_capabilities","arguments":{}}"#)]
        );
        b.push(br#"{"execute":"a","id":"}{\"]"} {"execute":"b","arguments":{"x":[1,{"y":"["}]}}"#);
        assert_eq!(
            frames(&mut b),
            vec![
                line(r#"{"execute":"a","id":"}{\"]"}"#),
                line(r#" {"execute":"b","arguments":{"x":[1,{"y":"["}]}}"#)
            ]
        );
        assert!(frames(&mut b).is_empty());
    }

    #[test]
    fn newline_ends_a_malformed_unit() {
        let mut b = Framer::default();
        b.push(b"{\"execute\":\n{\"execute\":\"x\"}\nnonsense\n\"str\"\n}\n");
        assert_eq!(
            frames(&mut b),
            vec![
                line("{\"execute\":"),
                line("{\"execute\":\"x\"}"),
                line("nonsense"),
                line("\"str\""),
                line("}"),
            ]
        );
    }

    #[test]
    fn line_split_across_many_reads() {
        let mut b = Framer::default();
        let text = b"{\"execute\":\"query-status\",\"id\":7}\r\n";
        let mut got = Vec::new();
        for (i, byte) in text.iter().enumerate() {
            b.push(&[*byte]);
            let f = frames(&mut b);
            if i + 1 != text.len() - 2 {
                assert!(f.is_empty(), "{i}");
            }
            got.extend(f);
        }
        assert_eq!(got, vec![line("{\"execute\":\"query-status\",\"id\":7}")]);
        assert_eq!(b.buffered(), 0);
    }

    #[test]
    fn overlong_line_is_reported_once_and_discarded() {
        let mut b = Framer::new(16);
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
        // An over-long object ends where the object ends.
        b.push(b"{\"k\":\"");
        b.push(&[b'}'; 40]);
        b.push(b"\"}{\"execute\":\"x\"}");
        assert_eq!(
            frames(&mut b),
            vec![Frame::TooLong, line("{\"execute\":\"x\"}")]
        );
    }

    #[test]
    fn one_mebibyte_limit() {
        let mut b = Framer::default();
        let chunk = vec![b'x'; 64 * 1024];
        let mut got = Vec::new();
        for _ in 0..20 {
            b.push(&chunk);
            got.extend(frames(&mut b));
            assert!(b.buffered() <= MAX_LINE + chunk.len());
        }
        assert_eq!(got, vec![Frame::TooLong]);
        b.push(b"\n{}\n");
        assert_eq!(frames(&mut b), vec![line("{}")]);
        // Whitespace is not hoarded.
        for _ in 0..20 {
            b.push(&vec![b' '; 64 * 1024]);
            assert!(frames(&mut b).is_empty());
            assert_eq!(b.buffered(), 0);
        }
    }

    #[test]
    fn finish_yields_unterminated_unit() {
        let mut b = Framer::default();
        b.push(b"a\nb");
        assert_eq!(b.finish(), Some(line("a")));
        assert_eq!(b.finish(), Some(line("b")));
        assert_eq!(b.finish(), None);
        b.push(b"{\"execute\"");
        assert_eq!(b.finish(), Some(line("{\"execute\"")));
        let mut b = Framer::new(2);
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
