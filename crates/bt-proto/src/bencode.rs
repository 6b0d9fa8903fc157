//! Bencode (BEP 3): a bounded, non-recursive decoder and a canonical encoder.
//!
//! Every byte that reaches [`decode`] may come from a hostile peer or a
//! hostile `.torrent`, so the decoder keeps its own stack instead of
//! recursing (a million `l` bytes must be an error, not a stack overflow),
//! checks every length prefix against the bytes actually present before
//! allocating, and counts values against [`Limits`].
//!
//! The decoder is lenient about dictionary key order by default because
//! real `.torrent` files are sometimes unsorted; [`decode_strict`] rejects
//! them. Everything else that makes an encoding ambiguous — leading zeros,
//! `-0`, duplicate keys, trailing bytes — is always an error, so two
//! different byte strings never decode to the same value silently.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

/// A decoded bencode value. Dictionaries keep their keys sorted, so
/// [`encode`] of any value is canonical.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
}

/// Resource ceilings for one decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Deepest allowed nesting of lists and dictionaries.
    pub max_depth: usize,
    /// Largest accepted input buffer, in bytes.
    pub max_input: usize,
    /// Most values (integers, strings, lists, dictionaries, keys included)
    /// one input may contain; bounds memory independently of input size.
    pub max_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_input: 64 * 1024 * 1024,
            max_items: 4_000_000,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BencodeError {
    #[error("bencode input ended unexpectedly at byte {pos}")]
    UnexpectedEof { pos: usize },
    #[error("unexpected byte 0x{byte:02x} at byte {pos} of bencode input")]
    InvalidByte { byte: u8, pos: usize },
    #[error("bencode number at byte {pos} has a leading zero")]
    LeadingZero { pos: usize },
    #[error("bencode integer at byte {pos} is -0, which is invalid")]
    NegativeZero { pos: usize },
    #[error("bencode number at byte {pos} has no digits")]
    EmptyNumber { pos: usize },
    #[error("bencode integer at byte {pos} does not fit in 64 bits")]
    IntOverflow { pos: usize },
    #[error("bencode string length at byte {pos} does not fit in memory")]
    LengthOverflow { pos: usize },
    #[error(
        "bencode string at byte {pos} claims {len} bytes but only {available} bytes of input remain"
    )]
    StringPastEnd {
        pos: usize,
        len: usize,
        available: usize,
    },
    #[error("bencode nested deeper than {max} levels")]
    TooDeep { max: usize },
    #[error("bencode input of {len} bytes exceeds the {max}-byte limit")]
    InputTooLarge { len: usize, max: usize },
    #[error("bencode input contains more than {max} values")]
    TooManyItems { max: usize },
    #[error("bencode dictionary key at byte {pos} is not a byte string")]
    NonStringKey { pos: usize },
    #[error("bencode dictionary key at byte {pos} is out of sorted order")]
    UnsortedKey { pos: usize },
    #[error("bencode dictionary has duplicate key {key:?} at byte {pos}")]
    DuplicateKey { key: String, pos: usize },
    #[error("{count} trailing bytes after the bencode value at byte {pos}")]
    TrailingBytes { pos: usize, count: usize },
    #[error("bencode input is not a dictionary")]
    NotADict,
}

/// Decodes exactly one value filling `buf`, with default [`Limits`].
pub fn decode(buf: &[u8]) -> Result<Value, BencodeError> {
    decode_with(buf, &Limits::default())
}

/// Decodes exactly one value filling `buf`; trailing bytes are an error.
pub fn decode_with(buf: &[u8], limits: &Limits) -> Result<Value, BencodeError> {
    whole(buf, limits, false)
}

/// Like [`decode_with`], but dictionary keys must also be sorted, as in a
/// canonical encoding. Use it where a re-encoding must reproduce the input.
pub fn decode_strict(buf: &[u8], limits: &Limits) -> Result<Value, BencodeError> {
    whole(buf, limits, true)
}

/// Decodes one value from the front of `buf` and returns it with the number
/// of bytes it used; whatever follows is left to the caller (BEP 9 sends raw
/// metadata right after a dictionary).
pub fn decode_prefix(buf: &[u8], limits: &Limits) -> Result<(Value, usize), BencodeError> {
    Decoder::new(buf, limits, false)?.value()
}

fn whole(buf: &[u8], limits: &Limits, strict: bool) -> Result<Value, BencodeError> {
    let (v, used) = Decoder::new(buf, limits, strict)?.value()?;
    if used != buf.len() {
        return Err(BencodeError::TrailingBytes {
            pos: used,
            count: buf.len() - used,
        });
    }
    Ok(v)
}

/// Byte range of the value stored under `key` in the top-level dictionary
/// of `buf`, exactly as it appears in the input. The info-hash is the SHA-1
/// of these raw bytes, so they must not be re-encoded.
pub fn find_raw(buf: &[u8], key: &[u8]) -> Result<Option<Range<usize>>, BencodeError> {
    find_raw_with(buf, key, &Limits::default())
}

/// [`find_raw`] with explicit limits.
pub fn find_raw_with(
    buf: &[u8],
    key: &[u8],
    limits: &Limits,
) -> Result<Option<Range<usize>>, BencodeError> {
    let mut d = Decoder::new(buf, limits, false)?;
    if d.peek()? != b'd' {
        return Err(BencodeError::NotADict);
    }
    d.count_item()?;
    d.pos += 1;
    // Everything `decode` rejects must be rejected here too, or a caller
    // could hash the `info` of a file it then fails to parse.
    let mut seen = std::collections::BTreeSet::new();
    let mut found = None;
    loop {
        if d.peek()? == b'e' {
            d.pos += 1;
            break;
        }
        let key_pos = d.pos;
        if !d.peek()?.is_ascii_digit() {
            return Err(BencodeError::NonStringKey { pos: key_pos });
        }
        let k = d.bytes()?;
        d.count_item()?;
        let start = d.pos;
        // Depth 1 is already used by the enclosing dictionary.
        let mut inner = Decoder {
            depth_base: 1,
            ..d.clone()
        };
        let (_, end) = inner.value_at(start)?;
        d.items = inner.items;
        d.pos = end;
        if seen.contains(&k) {
            return Err(BencodeError::DuplicateKey {
                key: String::from_utf8_lossy(&k).into_owned(),
                pos: key_pos,
            });
        }
        if k == key {
            found = Some(start..end);
        }
        seen.insert(k);
    }
    if d.pos != buf.len() {
        return Err(BencodeError::TrailingBytes {
            pos: d.pos,
            count: buf.len() - d.pos,
        });
    }
    Ok(found)
}

/// Open containers on the decoder's explicit stack.
enum Frame {
    List(Vec<Value>),
    Dict {
        map: BTreeMap<Vec<u8>, Value>,
        /// Key waiting for its value, and where it started (for errors).
        pending: Option<(Vec<u8>, usize)>,
    },
}

#[derive(Clone)]
struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    limits: Limits,
    strict: bool,
    items: usize,
    depth_base: usize,
}

impl<'a> Decoder<'a> {
    fn new(buf: &'a [u8], limits: &Limits, strict: bool) -> Result<Self, BencodeError> {
        if buf.len() > limits.max_input {
            return Err(BencodeError::InputTooLarge {
                len: buf.len(),
                max: limits.max_input,
            });
        }
        Ok(Decoder {
            buf,
            pos: 0,
            limits: *limits,
            strict,
            items: 0,
            depth_base: 0,
        })
    }

    fn peek(&self) -> Result<u8, BencodeError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or(BencodeError::UnexpectedEof { pos: self.pos })
    }

    fn count_item(&mut self) -> Result<(), BencodeError> {
        self.items += 1;
        if self.items > self.limits.max_items {
            return Err(BencodeError::TooManyItems {
                max: self.limits.max_items,
            });
        }
        Ok(())
    }

    fn value(mut self) -> Result<(Value, usize), BencodeError> {
        self.value_at(0)
    }

    /// Decodes one value starting at `start`; returns it and its end offset.
    fn value_at(&mut self, start: usize) -> Result<(Value, usize), BencodeError> {
        self.pos = start;
        let mut stack: Vec<Frame> = Vec::new();
        loop {
            // Inside a dictionary, the next token is a key or its end.
            if let Some(Frame::Dict { map, pending }) = stack.last_mut()
                && pending.is_none()
            {
                let key_pos = self.pos;
                match self.peek()? {
                    b'e' => {}
                    b'0'..=b'9' => {
                        let key = self.bytes()?;
                        self.count_item()?;
                        if map.contains_key(&key) {
                            return Err(BencodeError::DuplicateKey {
                                key: String::from_utf8_lossy(&key).into_owned(),
                                pos: key_pos,
                            });
                        }
                        if self.strict && map.last_key_value().is_some_and(|(last, _)| *last > key)
                        {
                            return Err(BencodeError::UnsortedKey { pos: key_pos });
                        }
                        *pending = Some((key, key_pos));
                        continue;
                    }
                    _ => return Err(BencodeError::NonStringKey { pos: key_pos }),
                }
            }

            let at = self.pos;
            let done = match self.peek()? {
                b'i' => {
                    self.count_item()?;
                    Value::Int(self.int()?)
                }
                b'0'..=b'9' => {
                    self.count_item()?;
                    Value::Bytes(self.bytes()?)
                }
                c @ (b'l' | b'd') => {
                    self.count_item()?;
                    if self.depth_base + stack.len() >= self.limits.max_depth {
                        return Err(BencodeError::TooDeep {
                            max: self.limits.max_depth,
                        });
                    }
                    self.pos += 1;
                    stack.push(if c == b'l' {
                        Frame::List(Vec::new())
                    } else {
                        Frame::Dict {
                            map: BTreeMap::new(),
                            pending: None,
                        }
                    });
                    continue;
                }
                b'e' => {
                    // A dictionary with a pending key lands here only if
                    // the key has no value.
                    match stack.pop() {
                        Some(Frame::List(items)) => {
                            self.pos += 1;
                            Value::List(items)
                        }
                        Some(Frame::Dict { map, pending: None }) => {
                            self.pos += 1;
                            Value::Dict(map)
                        }
                        _ => {
                            return Err(BencodeError::InvalidByte {
                                byte: b'e',
                                pos: at,
                            });
                        }
                    }
                }
                byte => return Err(BencodeError::InvalidByte { byte, pos: at }),
            };

            match stack.last_mut() {
                None => return Ok((done, self.pos)),
                Some(Frame::List(items)) => items.push(done),
                Some(Frame::Dict { map, pending }) => {
                    let (key, _) = pending.take().expect("dict value follows its key");
                    map.insert(key, done);
                }
            }
        }
    }

    /// Parses `i<digits>e` at the cursor.
    fn int(&mut self) -> Result<i64, BencodeError> {
        let start = self.pos;
        self.pos += 1;
        let negative = self.buf.get(self.pos) == Some(&b'-');
        if negative {
            self.pos += 1;
        }
        let digits_start = self.pos;
        // Accumulating towards the sign lets i64::MIN parse.
        let mut n: i64 = 0;
        loop {
            let c = self.peek()?;
            match c {
                b'0'..=b'9' => {
                    let d = i64::from(c - b'0');
                    n = n
                        .checked_mul(10)
                        .and_then(|n| {
                            if negative {
                                n.checked_sub(d)
                            } else {
                                n.checked_add(d)
                            }
                        })
                        .ok_or(BencodeError::IntOverflow { pos: start })?;
                    self.pos += 1;
                }
                b'e' => break,
                byte => {
                    return Err(BencodeError::InvalidByte {
                        byte,
                        pos: self.pos,
                    });
                }
            }
        }
        let digits = &self.buf[digits_start..self.pos];
        if digits.is_empty() {
            return Err(BencodeError::EmptyNumber { pos: start });
        }
        if digits[0] == b'0' {
            if negative {
                return Err(BencodeError::NegativeZero { pos: start });
            }
            if digits.len() > 1 {
                return Err(BencodeError::LeadingZero { pos: start });
            }
        }
        self.pos += 1;
        Ok(n)
    }

    /// Parses `<len>:<bytes>` at the cursor, checking the length against the
    /// remaining input before allocating anything.
    fn bytes(&mut self) -> Result<Vec<u8>, BencodeError> {
        let start = self.pos;
        let mut len: usize = 0;
        loop {
            let c = self.peek()?;
            match c {
                b'0'..=b'9' => {
                    len = len
                        .checked_mul(10)
                        .and_then(|l| l.checked_add(usize::from(c - b'0')))
                        .ok_or(BencodeError::LengthOverflow { pos: start })?;
                    self.pos += 1;
                }
                b':' => break,
                byte => {
                    return Err(BencodeError::InvalidByte {
                        byte,
                        pos: self.pos,
                    });
                }
            }
        }
        if self.pos - start > 1 && self.buf[start] == b'0' {
            return Err(BencodeError::LeadingZero { pos: start });
        }
        self.pos += 1;
        let available = self.buf.len() - self.pos;
        if len > available {
            return Err(BencodeError::StringPastEnd {
                pos: start,
                len,
                available,
            });
        }
        let out = self.buf[self.pos..self.pos + len].to_vec();
        self.pos += len;
        Ok(out)
    }
}

/// Canonical encoding of `v` (sorted keys, shortest integers).
pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(v, &mut out);
    out
}

/// Appends the canonical encoding of `v` to `out`.
///
/// Recursion is fine here: decoded values are depth-limited, and values
/// built in code are as deep as the code that built them.
pub fn encode_into(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Int(i) => {
            out.push(b'i');
            out.extend_from_slice(i.to_string().as_bytes());
            out.push(b'e');
        }
        Value::Bytes(b) => encode_bytes(b, out),
        Value::List(items) => {
            out.push(b'l');
            for item in items {
                encode_into(item, out);
            }
            out.push(b'e');
        }
        Value::Dict(map) => {
            out.push(b'd');
            for (k, item) in map {
                encode_bytes(k, out);
                encode_into(item, out);
            }
            out.push(b'e');
        }
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

impl Value {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The byte string, if it is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&BTreeMap<Vec<u8>, Value>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// Looks `key` up if this is a dictionary.
    pub fn get(&self, key: &[u8]) -> Option<&Value> {
        self.as_dict().and_then(|d| d.get(key))
    }

    /// An empty dictionary, to be filled with [`Value::insert`].
    pub fn dict() -> Value {
        Value::Dict(BTreeMap::new())
    }

    /// Inserts into a dictionary; does nothing on other variants.
    pub fn insert(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Value>) {
        if let Value::Dict(d) = self {
            d.insert(key.into(), value.into());
        }
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Self {
        Value::Bytes(b)
    }
}

impl From<&[u8]> for Value {
    fn from(b: &[u8]) -> Self {
        Value::Bytes(b.to_vec())
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Bytes(s.as_bytes().to_vec())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Bytes(s.into_bytes())
    }
}

impl From<Vec<Value>> for Value {
    fn from(l: Vec<Value>) -> Self {
        Value::List(l)
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn bytes(f: &mut fmt::Formatter<'_>, b: &[u8]) -> fmt::Result {
            match std::str::from_utf8(b) {
                Ok(s) => write!(f, "{s:?}"),
                // Piece hashes and peer lists are binary; long dumps help nobody.
                Err(_) if b.len() > 32 => write!(f, "<{} bytes>", b.len()),
                Err(_) => write!(f, "b\"{}\"", b.escape_ascii()),
            }
        }
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Bytes(b) => bytes(f, b),
            Value::List(l) => f.debug_list().entries(l).finish(),
            Value::Dict(d) => {
                let mut m = f.debug_map();
                for (k, v) in d {
                    m.key(&format_args!("{}", k.escape_ascii())).value(v);
                }
                m.finish()
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &[u8]) -> Result<Value, BencodeError> {
        decode(s)
    }

    #[test]
    fn bep3_examples() {
        assert_eq!(d(b"4:spam").unwrap(), Value::from("spam"));
        assert_eq!(d(b"0:").unwrap(), Value::from(""));
        assert_eq!(d(b"i3e").unwrap(), Value::Int(3));
        assert_eq!(d(b"i-3e").unwrap(), Value::Int(-3));
        assert_eq!(d(b"i0e").unwrap(), Value::Int(0));
        assert_eq!(
            d(b"l4:spam4:eggse").unwrap(),
            Value::List(vec!["spam".into(), "eggs".into()])
        );
        let v = d(b"d3:cow3:moo4:spam4:eggse").unwrap();
        assert_eq!(v.get(b"cow").and_then(Value::as_str), Some("moo"));
        assert_eq!(v.get(b"spam").and_then(Value::as_str), Some("eggs"));
        let v = d(b"d4:spaml1:a1:bee").unwrap();
        assert_eq!(
            v.get(b"spam").and_then(Value::as_list).map(<[_]>::len),
            Some(2)
        );
        assert_eq!(encode(&v), b"d4:spaml1:a1:bee");
    }

    #[test]
    fn integer_edge_cases() {
        assert_eq!(d(b"i9223372036854775807e").unwrap(), Value::Int(i64::MAX));
        assert_eq!(d(b"i-9223372036854775808e").unwrap(), Value::Int(i64::MIN));
        assert!(matches!(
            d(b"i9223372036854775808e"),
            Err(BencodeError::IntOverflow { .. })
        ));
        assert!(matches!(d(b"i03e"), Err(BencodeError::LeadingZero { .. })));
        assert!(matches!(
            d(b"i-03e"),
            Err(BencodeError::NegativeZero { .. })
        ));
        assert!(matches!(d(b"i-0e"), Err(BencodeError::NegativeZero { .. })));
        assert!(matches!(d(b"ie"), Err(BencodeError::EmptyNumber { .. })));
        assert!(matches!(d(b"i-e"), Err(BencodeError::EmptyNumber { .. })));
        assert!(matches!(d(b"i1"), Err(BencodeError::UnexpectedEof { .. })));
        assert!(matches!(
            d(b"i1.5e"),
            Err(BencodeError::InvalidByte { byte: b'.', .. })
        ));
        assert!(matches!(d(b"i--1e"), Err(BencodeError::InvalidByte { .. })));
    }

    #[test]
    fn string_edge_cases() {
        assert!(matches!(
            d(b"03:abc"),
            Err(BencodeError::LeadingZero { .. })
        ));
        assert!(matches!(
            d(b"4:abc"),
            Err(BencodeError::StringPastEnd { .. })
        ));
        assert!(matches!(d(b"3abc"), Err(BencodeError::InvalidByte { .. })));
        assert!(matches!(d(b"3"), Err(BencodeError::UnexpectedEof { .. })));
    }

    #[test]
    fn huge_length_prefix_is_rejected_without_allocating() {
        // If this tried to allocate 10^12 bytes the test would abort.
        let err = d(b"999999999999:abc").unwrap_err();
        assert_eq!(
            err,
            BencodeError::StringPastEnd {
                pos: 0,
                len: 999_999_999_999,
                available: 3
            }
        );
        assert!(matches!(
            d(b"99999999999999999999999999:"),
            Err(BencodeError::LengthOverflow { .. })
        ));
        let mut nested = b"l".repeat(10);
        nested.extend_from_slice(b"18446744073709551615:");
        assert!(d(&nested).is_err());
    }

    #[test]
    fn million_deep_nesting_is_an_error_not_a_crash() {
        let deep = vec![b'l'; 1_000_000];
        assert_eq!(d(&deep), Err(BencodeError::TooDeep { max: 64 }));
        let deep = b"d1:a".repeat(1_000_000);
        assert_eq!(d(&deep), Err(BencodeError::TooDeep { max: 64 }));
        assert_eq!(
            find_raw(&deep, b"a"),
            Err(BencodeError::TooDeep { max: 64 })
        );
        // Exactly at the limit is fine.
        let mut ok = vec![b'l'; 64];
        ok.extend(vec![b'e'; 64]);
        assert!(d(&ok).is_ok());
        let mut too_deep = vec![b'l'; 65];
        too_deep.extend(vec![b'e'; 65]);
        assert_eq!(
            d(&too_deep).unwrap_err().to_string(),
            "bencode nested deeper than 64 levels"
        );
    }

    #[test]
    fn limits_are_enforced() {
        let small = Limits {
            max_depth: 2,
            max_input: 10,
            max_items: 3,
        };
        assert!(matches!(
            decode_with(b"l1:a1:b1:c1:de", &small),
            Err(BencodeError::InputTooLarge { len: 14, max: 10 })
        ));
        assert!(matches!(
            decode_with(b"li1ei2ei3ee", &small),
            Err(BencodeError::InputTooLarge { .. })
        ));
        assert!(matches!(
            decode_with(b"li1ei2ee", &small),
            Ok(Value::List(_))
        ));
        assert!(matches!(
            decode_with(
                b"li1ei2ei3e",
                &Limits {
                    max_input: 100,
                    ..small
                }
            ),
            Err(BencodeError::TooManyItems { max: 3 })
        ));
        assert!(matches!(
            decode_with(b"llleee", &small),
            Err(BencodeError::TooDeep { max: 2 })
        ));
    }

    #[test]
    fn dict_key_rules() {
        let unsorted = b"d1:b1:x1:a1:ye";
        assert!(decode(unsorted).is_ok());
        assert_eq!(
            decode_strict(unsorted, &Limits::default()),
            Err(BencodeError::UnsortedKey { pos: 7 })
        );
        assert!(decode_strict(b"d1:a1:y1:b1:xe", &Limits::default()).is_ok());
        // Duplicates are rejected in both modes.
        assert!(matches!(
            decode(b"d1:a1:x1:a1:ye"),
            Err(BencodeError::DuplicateKey { .. })
        ));
        assert!(matches!(
            decode(b"di1ei2ee"),
            Err(BencodeError::NonStringKey { pos: 1 })
        ));
        // Key without a value.
        assert!(matches!(
            decode(b"d1:ae"),
            Err(BencodeError::InvalidByte { byte: b'e', .. })
        ));
    }

    #[test]
    fn trailing_bytes_and_prefix() {
        assert_eq!(
            decode(b"i1ei2e"),
            Err(BencodeError::TrailingBytes { pos: 3, count: 3 })
        );
        let (v, used) =
            decode_prefix(b"d8:msg_typei1e5:piecei0eeRAWDATA", &Limits::default()).unwrap();
        assert_eq!(used, 25);
        assert_eq!(v.get(b"piece"), Some(&Value::Int(0)));
        assert!(matches!(
            decode(b""),
            Err(BencodeError::UnexpectedEof { pos: 0 })
        ));
        assert!(matches!(
            decode(b"e"),
            Err(BencodeError::InvalidByte { .. })
        ));
    }

    #[test]
    fn find_raw_returns_exact_span() {
        // Deliberately non-canonical (unsorted) inside info: the span must
        // still cover the original bytes.
        let buf = b"d8:announce3:url4:infod1:zi1e1:ai2ee3:zzzi0ee";
        let span = find_raw(buf, b"info").unwrap().unwrap();
        assert_eq!(&buf[span], b"d1:zi1e1:ai2ee");
        assert_eq!(find_raw(buf, b"nope").unwrap(), None);
        assert_eq!(find_raw(b"li1ee", b"info"), Err(BencodeError::NotADict));
        assert!(matches!(
            find_raw(b"d4:infoi1e4:infoi2ee", b"info"),
            Err(BencodeError::DuplicateKey { .. })
        ));
        // Found by fuzzing: a duplicate of *another* key made `decode`
        // fail while `find_raw` succeeded.
        assert_eq!(
            find_raw(b"d0:i1e0:i2e4:infoi1ee", b"info"),
            Err(BencodeError::DuplicateKey {
                key: String::new(),
                pos: 6
            })
        );
        assert!(matches!(
            find_raw(b"d4:infoi1ee!", b"info"),
            Err(BencodeError::TrailingBytes { .. })
        ));
    }

    pub(crate) fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::Int),
            proptest::collection::vec(any::<u8>(), 0..16).prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::List),
                proptest::collection::btree_map(
                    proptest::collection::vec(any::<u8>(), 0..8),
                    inner,
                    0..8
                )
                .prop_map(Value::Dict),
            ]
        })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(v in arb_value()) {
            let bytes = encode(&v);
            prop_assert_eq!(&decode_strict(&bytes, &Limits::default()).unwrap(), &v);
            // Canonical: re-encoding gives the same bytes.
            prop_assert_eq!(encode(&decode(&bytes).unwrap()), bytes.clone());
            let mut with_tail = bytes.clone();
            with_tail.extend_from_slice(b"tail");
            let (p, used) = decode_prefix(&with_tail, &Limits::default()).unwrap();
            prop_assert_eq!(p, v);
            prop_assert_eq!(used, bytes.len());
        }

        #[test]
        fn find_raw_agrees_with_decode(
            entries in proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 0..6), arb_value(), 0..6),
        ) {
            let bytes = encode(&Value::Dict(entries.clone()));
            for (k, v) in &entries {
                let span = find_raw(&bytes, k).unwrap().unwrap();
                prop_assert_eq!(&decode(&bytes[span]).unwrap(), v);
            }
        }

        #[test]
        fn decode_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
            let _ = decode_prefix(&bytes, &Limits::default());
            let _ = find_raw(&bytes, b"info");
        }

        #[test]
        fn decode_bencode_shaped_bytes_never_panics(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just(b"l".to_vec()), Just(b"d".to_vec()), Just(b"e".to_vec()),
                    Just(b"i".to_vec()), Just(b"-".to_vec()), Just(b"0".to_vec()),
                    Just(b"1:".to_vec()), Just(b"3:abc".to_vec()), Just(b"i42e".to_vec()),
                ],
                0..40,
            )
        ) {
            let bytes = parts.concat();
            if let Ok(v) = decode(&bytes) {
                // Whatever decodes must re-decode to itself.
                prop_assert_eq!(decode(&encode(&v)).unwrap(), v);
            }
        }
    }
}
