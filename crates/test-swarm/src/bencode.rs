//! Minimal bencode reader for fixture use only: .torrent files we made ourselves and
//! tracker scrape replies. It is *not* bt-proto's codec on purpose — tests compare
//! bt-proto against this independent reading — and it is lenient where bt-proto
//! must be strict (no canonical-order or leading-zero checks).

use std::collections::BTreeMap;

/// A decoded bencode value. Dictionary keys are raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
}

impl Value {
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }

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
}

/// Decodes one complete value (trailing bytes are an error).
pub fn decode(data: &[u8]) -> Result<Value, String> {
    let (v, end) = decode_at(data, 0, 0)?;
    if end != data.len() {
        return Err(format!("trailing bytes after offset {end}"));
    }
    Ok(v)
}

/// Byte range of the value stored under `key` in the top-level dictionary, e.g. the
/// raw `info` dictionary whose SHA-1 is the v1 info-hash.
pub fn dict_value_span(data: &[u8], key: &[u8]) -> Result<std::ops::Range<usize>, String> {
    if data.first() != Some(&b'd') {
        return Err("not a dictionary".into());
    }
    let mut i = 1;
    while data.get(i) != Some(&b'e') {
        let (k, after_key) = decode_at(data, i, 1)?;
        let (_, after_val) = decode_at(data, after_key, 1)?;
        if k.as_bytes() == Some(key) {
            return Ok(after_key..after_val);
        }
        i = after_val;
    }
    Err(format!("key {:?} not found", String::from_utf8_lossy(key)))
}

fn decode_at(data: &[u8], i: usize, depth: usize) -> Result<(Value, usize), String> {
    if depth > 64 {
        return Err("nesting too deep".into());
    }
    let eof = || format!("unexpected end at {i}");
    match *data.get(i).ok_or_else(eof)? {
        b'i' => {
            let end = find(data, i + 1, b'e')?;
            let s = std::str::from_utf8(&data[i + 1..end]).map_err(|e| e.to_string())?;
            let n = s.parse().map_err(|e| format!("bad int at {i}: {e}"))?;
            Ok((Value::Int(n), end + 1))
        }
        b'l' => {
            let mut items = Vec::new();
            let mut j = i + 1;
            while *data.get(j).ok_or_else(eof)? != b'e' {
                let (v, next) = decode_at(data, j, depth + 1)?;
                items.push(v);
                j = next;
            }
            Ok((Value::List(items), j + 1))
        }
        b'd' => {
            let mut map = BTreeMap::new();
            let mut j = i + 1;
            while *data.get(j).ok_or_else(eof)? != b'e' {
                let (k, next) = decode_at(data, j, depth + 1)?;
                let Value::Bytes(k) = k else {
                    return Err(format!("non-string key at {j}"));
                };
                let (v, next) = decode_at(data, next, depth + 1)?;
                map.insert(k, v);
                j = next;
            }
            Ok((Value::Dict(map), j + 1))
        }
        b'0'..=b'9' => {
            let colon = find(data, i, b':')?;
            let s = std::str::from_utf8(&data[i..colon]).map_err(|e| e.to_string())?;
            let n: usize = s.parse().map_err(|e| format!("bad length at {i}: {e}"))?;
            let start = colon + 1;
            let end = start
                .checked_add(n)
                .filter(|&e| e <= data.len())
                .ok_or_else(eof)?;
            Ok((Value::Bytes(data[start..end].to_vec()), end))
        }
        c => Err(format!("unexpected byte {c:#04x} at {i}")),
    }
}

fn find(data: &[u8], from: usize, b: u8) -> Result<usize, String> {
    data.get(from..)
        .and_then(|s| s.iter().position(|&c| c == b))
        .map(|p| from + p)
        .ok_or_else(|| format!("missing {:?} after {from}", b as char))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_nested_and_finds_span() {
        let data = b"d8:announce3:url4:infod4:name1:x6:lengthi5eee";
        let v = decode(data).unwrap();
        assert_eq!(v.get("announce").unwrap().as_str(), Some("url"));
        assert_eq!(
            v.get("info").unwrap().get("length").unwrap().as_int(),
            Some(5)
        );
        let span = dict_value_span(data, b"info").unwrap();
        assert_eq!(&data[span], b"d4:name1:x6:lengthi5ee");
    }

    #[test]
    fn rejects_truncated() {
        assert!(decode(b"d3:abc").is_err());
        assert!(decode(b"5:ab").is_err());
        assert!(decode(b"i12").is_err());
    }
}
