//! A strict, zero-copy JSON reader (RFC 8259) that keeps every number's text.
//!
//! Event identity needs the canonical form of a payload, and the canonical form keeps each number's
//! text exactly as received (`19.90` stays `19.90`, a 40-digit integer stays exact). `serde_json`
//! only does that with its `arbitrary_precision` feature, which is a switch for the whole build
//! graph and changes how every other crate's `serde_json::Value` behaves; see
//! `docs/decisions/0002-own-json-reader.md`. This reader is small, borrows from the input wherever
//! it can, reports errors with a line and column, and caps nesting depth so a hostile body cannot
//! exhaust the stack. Property tests check it accepts and rejects exactly what `serde_json` does.

use std::borrow::Cow;
use std::fmt;

/// The deepest nesting of arrays and objects accepted (the same limit `serde_json` applies).
pub const MAX_DEPTH: usize = 128;

/// A parsed JSON value borrowing from the text it was read from.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// `null`
    Null,
    /// `true` or `false`
    Bool(bool),
    /// A number, as its exact text.
    Number(&'a str),
    /// A string, unescaped (borrowed when the input had no escapes).
    String(Cow<'a, str>),
    /// An array, each element with the exact text it was read from.
    Array(Vec<Element<'a>>),
    /// An object's members in the order received (duplicates kept).
    Object(Vec<(Cow<'a, str>, Value<'a>)>),
}

/// An array element: its value and its exact text in the input.
#[derive(Debug, Clone, PartialEq)]
pub struct Element<'a> {
    /// The element's text, exactly as received (no surrounding whitespace).
    pub raw: &'a str,
    /// The parsed value.
    pub value: Value<'a>,
}

/// Why a text is not JSON, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// What is wrong.
    pub message: String,
    /// 1-based line of the offending byte.
    pub line: usize,
    /// 1-based column (in characters) of the offending byte.
    pub column: usize,
    /// Byte offset of the offending byte.
    pub offset: usize,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {}, column {}",
            self.message, self.line, self.column
        )
    }
}

impl std::error::Error for JsonError {}

/// Parses a whole document: one value, optionally surrounded by whitespace.
pub fn parse(text: &str) -> Result<Value<'_>, JsonError> {
    let mut p = Parser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        depth: 0,
    };
    p.skip_ws();
    let value = p.value()?;
    p.skip_ws();
    if p.pos != p.bytes.len() {
        return Err(p.error_here("unexpected data after the JSON value"));
    }
    Ok(value)
}

impl<'a> Value<'a> {
    /// The member `key` of an object (the last one when the key repeats, as `serde_json` does).
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        match self {
            Value::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number's text, if this is a number.
    pub fn as_number(&self) -> Option<&'a str> {
        match self {
            Value::Number(n) => Some(n),
            _ => None,
        }
    }

    /// The value as an `i64`, if it is an integer number that fits.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_number().and_then(|n| n.parse().ok())
    }

    /// Whether this is an object.
    pub fn is_object(&self) -> bool {
        matches!(self, Value::Object(_))
    }

    /// Writes the canonical form: object keys sorted by their UTF-8 bytes (stable for repeated
    /// keys), no whitespace, strings escaped minimally, numbers exactly as received.
    pub fn write_canonical(&self, out: &mut String) {
        self.write_canonical_skipping(out, None);
    }

    /// As [`Value::write_canonical`], leaving out the top-level object member `skip`.
    pub fn write_canonical_skipping(&self, out: &mut String, skip: Option<&str>) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(true) => out.push_str("true"),
            Value::Bool(false) => out.push_str("false"),
            Value::Number(n) => out.push_str(n),
            Value::String(s) => write_string(out, s),
            Value::Array(elements) => {
                out.push('[');
                for (i, e) in elements.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    e.value.write_canonical(out);
                }
                out.push(']');
            }
            Value::Object(members) => {
                let mut sorted: Vec<&(Cow<'a, str>, Value<'a>)> = members
                    .iter()
                    .filter(|(k, _)| Some(k.as_ref()) != skip)
                    .collect();
                // `str`'s order is the order of its UTF-8 bytes; `sort_by` is stable.
                sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                out.push('{');
                for (i, (k, v)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(out, k);
                    out.push(':');
                    v.write_canonical(out);
                }
                out.push('}');
            }
        }
    }

    /// The canonical form as a new string.
    pub fn to_canonical(&self) -> String {
        let mut out = String::new();
        self.write_canonical(&mut out);
        out
    }
}

/// Writes `s` as a JSON string with minimal escaping: `"`, `\` and control characters only.
pub fn write_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0x00..=0x1f => Some(""),
            _ => None,
        };
        if let Some(esc) = escape {
            out.push_str(&s[start..i]);
            if esc.is_empty() {
                out.push_str("\\u00");
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0xf) as usize] as char);
            } else {
                out.push_str(esc);
            }
            start = i + 1;
        }
    }
    out.push_str(&s[start..]);
    out.push('"');
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn error_at(&self, offset: usize, message: impl Into<String>) -> JsonError {
        let offset = offset.min(self.bytes.len());
        let before = &self.bytes[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        // Count characters, not bytes; `offset` may sit inside a character only if the caller
        // points there, so fall back to a lossy count.
        let column = String::from_utf8_lossy(&self.bytes[line_start..offset])
            .chars()
            .count()
            + 1;
        JsonError {
            message: message.into(),
            line,
            column,
            offset,
        }
    }

    fn error_here(&self, message: &str) -> JsonError {
        match self.text[self.pos..].chars().next() {
            Some(c) => self.error_at(self.pos, format!("{message} (found {})", describe(c))),
            None => self.error_at(self.pos, format!("{message} (found the end of the input)")),
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn value(&mut self) -> Result<Value<'a>, JsonError> {
        match self.bytes.get(self.pos) {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.error_here("expected a JSON value")),
        }
    }

    fn literal(&mut self, word: &str, value: Value<'a>) -> Result<Value<'a>, JsonError> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            let end = self.text[self.pos..]
                .find(|c: char| !c.is_alphanumeric() && c != '_')
                .map_or(self.text.len(), |i| self.pos + i);
            let token = &self.text[self.pos..end];
            Err(self.error_at(self.pos, format!("expected a JSON value (found `{token}`)")))
        }
    }

    fn enter(&mut self) -> Result<(), JsonError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_at(self.pos, format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn array(&mut self) -> Result<Value<'a>, JsonError> {
        self.enter()?;
        self.pos += 1;
        let mut elements = Vec::new();
        self.skip_ws();
        if self.bytes.get(self.pos) == Some(&b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(Value::Array(elements));
        }
        loop {
            self.skip_ws();
            if self.bytes.get(self.pos) == Some(&b']') && !elements.is_empty() {
                return Err(self.error_here("trailing comma before the end of an array"));
            }
            let start = self.pos;
            let value = self.value()?;
            elements.push(Element {
                raw: &self.text[start..self.pos],
                value,
            });
            self.skip_ws();
            match self.bytes.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(Value::Array(elements));
                }
                _ => return Err(self.error_here("expected `,` or `]` in an array")),
            }
        }
    }

    fn object(&mut self) -> Result<Value<'a>, JsonError> {
        self.enter()?;
        self.pos += 1;
        let mut members = Vec::new();
        self.skip_ws();
        if self.bytes.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_ws();
            match self.bytes.get(self.pos) {
                Some(b'"') => {}
                Some(b'}') if !members.is_empty() => {
                    return Err(self.error_here("trailing comma before the end of an object"));
                }
                _ => return Err(self.error_here("expected a string key in an object")),
            }
            let key = self.string()?;
            self.skip_ws();
            if self.bytes.get(self.pos) != Some(&b':') {
                return Err(self.error_here("expected `:` after an object key"));
            }
            self.pos += 1;
            self.skip_ws();
            let value = self.value()?;
            members.push((key, value));
            self.skip_ws();
            match self.bytes.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(Value::Object(members));
                }
                _ => return Err(self.error_here("expected `,` or `}` in an object")),
            }
        }
    }

    fn number(&mut self) -> Result<Value<'a>, JsonError> {
        let start = self.pos;
        if self.bytes[self.pos] == b'-' {
            self.pos += 1;
        }
        match self.bytes.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error_here("expected a digit in a number")),
        }
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if !matches!(self.bytes.get(self.pos), Some(b'0'..=b'9')) {
                return Err(self.error_here("expected a digit after the decimal point"));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            if !matches!(self.bytes.get(self.pos), Some(b'0'..=b'9')) {
                return Err(self.error_here("expected a digit in an exponent"));
            }
            self.digits();
        }
        if let Some(b'0'..=b'9') = self.bytes.get(self.pos) {
            return Err(self.error_here("a number may not have a leading zero"));
        }
        Ok(Value::Number(&self.text[start..self.pos]))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// Reads a string starting at the opening quote; borrows when it has no escapes.
    fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        let open = self.pos;
        self.pos += 1;
        let start = self.pos;
        // Fast path: scan for the closing quote with no escapes or control characters.
        loop {
            match self.bytes.get(self.pos) {
                Some(b'"') => {
                    let s = &self.text[start..self.pos];
                    self.pos += 1;
                    return Ok(Cow::Borrowed(s));
                }
                Some(b'\\') => break,
                Some(0x00..=0x1f) => {
                    return Err(self.error_at(
                        self.pos,
                        "control character in a string (it must be escaped)",
                    ));
                }
                Some(_) => self.pos += 1,
                None => return Err(self.error_at(open, "string is never closed")),
            }
        }
        let mut out = String::with_capacity(self.pos - start + 16);
        out.push_str(&self.text[start..self.pos]);
        loop {
            match self.bytes.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    let esc_at = self.pos;
                    self.pos += 1;
                    let c = match self.bytes.get(self.pos) {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.pos += 1;
                            let hi = self.hex4(esc_at)?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                if !self.bytes[self.pos..].starts_with(b"\\u") {
                                    return Err(self.error_at(
                                        esc_at,
                                        "lone leading surrogate in a \\u escape",
                                    ));
                                }
                                self.pos += 2;
                                let lo = self.hex4(esc_at)?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.error_at(
                                        esc_at,
                                        "invalid surrogate pair in a \\u escape",
                                    ));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return Err(self
                                    .error_at(esc_at, "lone trailing surrogate in a \\u escape"));
                            } else {
                                hi
                            };
                            // Surrogates were excluded above, so this is a valid scalar value.
                            let c = char::from_u32(code)
                                .ok_or_else(|| self.error_at(esc_at, "invalid \\u escape"))?;
                            out.push(c);
                            continue;
                        }
                        _ => return Err(self.error_at(esc_at, "invalid escape in a string")),
                    };
                    out.push(c);
                    self.pos += 1;
                }
                Some(0x00..=0x1f) => {
                    return Err(self.error_at(
                        self.pos,
                        "control character in a string (it must be escaped)",
                    ));
                }
                Some(_) => {
                    let run_start = self.pos;
                    while let Some(&b) = self.bytes.get(self.pos) {
                        if b == b'"' || b == b'\\' || b < 0x20 {
                            break;
                        }
                        self.pos += 1;
                    }
                    out.push_str(&self.text[run_start..self.pos]);
                }
                None => return Err(self.error_at(open, "string is never closed")),
            }
        }
    }

    fn hex4(&mut self, esc_at: usize) -> Result<u32, JsonError> {
        let digits = self
            .bytes
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.error_at(esc_at, "incomplete \\u escape"))?;
        let mut v = 0u32;
        for &d in digits {
            let n = (d as char)
                .to_digit(16)
                .ok_or_else(|| self.error_at(esc_at, "invalid hex digit in a \\u escape"))?;
            v = v * 16 + n;
        }
        self.pos += 4;
        Ok(v)
    }
}

fn describe(c: char) -> String {
    match c {
        '\n' => "a line break".to_owned(),
        c if c.is_control() => format!("control character U+{:04X}", c as u32),
        c => format!("`{c}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn canon(text: &str) -> String {
        parse(text)
            .map(|v| v.to_canonical())
            .unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn canonical_form_sorts_keys_drops_whitespace_keeps_number_text() {
        assert_eq!(
            canon(
                r#" { "b" : 19.90, "a": [1, 1e3, -0.0, 123456789012345678901234567890], "A": null } "#
            ),
            r#"{"A":null,"a":[1,1e3,-0.0,123456789012345678901234567890],"b":19.90}"#
        );
    }

    #[test]
    fn canonical_form_escapes_minimally() {
        assert_eq!(
            canon(r#""\u0041\/\u00e9\n\u0001\"\\""#),
            "\"A/é\\n\\u0001\\\"\\\\\""
        );
        assert_eq!(canon(r#""\ud83d\ude00""#), "\"😀\"");
    }

    #[test]
    fn keys_sort_by_utf8_bytes_not_utf16() {
        // U+FF5E sorts after U+1F600 in UTF-16 code units but before it in UTF-8 bytes.
        assert_eq!(canon(r#"{"😀":1,"～":2}"#), r#"{"～":2,"😀":1}"#);
    }

    #[test]
    fn errors_say_what_and_where() {
        assert_eq!(
            canon("{\n  \"a\": nil\n}"),
            "error: expected a JSON value (found `nil`) at line 2, column 8"
        );
        assert_eq!(
            canon("{\"a\": 1,\n}"),
            "error: trailing comma before the end of an object (found `}`) at line 2, column 1"
        );
        assert_eq!(
            canon("[1,]"),
            "error: trailing comma before the end of an array (found `]`) at line 1, column 4"
        );
        assert_eq!(
            canon(""),
            "error: expected a JSON value (found the end of the input) at line 1, column 1"
        );
        assert_eq!(
            canon("01"),
            "error: a number may not have a leading zero (found `1`) at line 1, column 2"
        );
        assert_eq!(
            canon("\"\\ud800\""),
            "error: lone leading surrogate in a \\u escape at line 1, column 2"
        );
        assert_eq!(
            canon("[1] x"),
            "error: unexpected data after the JSON value (found `x`) at line 1, column 5"
        );
    }

    #[test]
    fn nesting_is_capped() {
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(&ok).is_ok());
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        let err = parse(&deep).expect_err("too deep");
        assert!(err.message.contains("nesting deeper than 128"), "{err}");
        // Far deeper than the stack could take if it recursed without a limit.
        assert!(parse(&"[".repeat(1_000_000)).is_err());
    }

    #[test]
    fn array_elements_keep_their_exact_text() {
        let v = parse("[ {\"a\" : 1} ,\n\"x\",2.50 ]").expect("valid");
        let Value::Array(elements) = v else {
            panic!("not an array")
        };
        let raws: Vec<&str> = elements.iter().map(|e| e.raw).collect();
        assert_eq!(raws, ["{\"a\" : 1}", "\"x\"", "2.50"]);
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| serde_json::json!(f)),
            ".*".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                prop::collection::btree_map(".*", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn accepts_and_rejects_what_serde_json_does(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(text) = std::str::from_utf8(&bytes) {
                let ours = parse(text).is_ok();
                let theirs = serde_json::from_str::<serde_json::Value>(text).is_ok();
                prop_assert_eq!(ours, theirs, "disagree on {:?}", text);
            }
        }

        #[test]
        fn json_shaped_text_is_judged_like_serde_json(s in r#"[\[\]{}",:0-9a-z.eE+\- \\]{0,24}"#) {
            prop_assert_eq!(parse(&s).is_ok(), serde_json::from_str::<serde_json::Value>(&s).is_ok(), "{:?}", s);
        }

        #[test]
        fn canonical_form_of_pretty_json_is_serde_jsons_compact_form(v in arb_json()) {
            // serde_json's `Value` keeps objects in a BTreeMap (UTF-8 byte order) and escapes
            // minimally, so its compact output is exactly our canonical form.
            let pretty = serde_json::to_string_pretty(&v).expect("serializes");
            let compact = serde_json::to_string(&v).expect("serializes");
            let canonical = parse(&pretty).expect("serde_json output parses").to_canonical();
            prop_assert_eq!(&canonical, &compact);
            prop_assert_eq!(parse(&canonical).expect("parses").to_canonical(), canonical);
        }
    }
}
