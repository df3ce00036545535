//! Strict JSON for token headers and claims: duplicate keys and deep nesting are errors.
//!
//! `serde_json` lets the last of two equal keys win, so `{"sub":"alice","sub":"admin"}` would mean
//! different things to different parsers. Tokens are hostile input: refuse the ambiguity outright.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a JSON object was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonFault {
    /// Not JSON, not UTF-8, or not an object at the top.
    Invalid,
    /// A key appears twice in one object.
    DuplicateKey,
    /// Nested deeper than allowed.
    TooDeep,
}

/// Parses `bytes` as a JSON object, refusing duplicate keys and nesting deeper than `max_depth`
/// (the top-level object is depth 1).
pub fn parse_object(bytes: &[u8], max_depth: usize) -> Result<Map<String, Value>, JsonFault> {
    let fault = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue {
        depth_left: max_depth,
        fault: &fault,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    match (value, fault.get()) {
        (_, Some(f)) => Err(f),
        (Ok(Value::Object(map)), None) => Ok(map),
        _ => Err(JsonFault::Invalid),
    }
}

struct StrictValue<'a> {
    depth_left: usize,
    fault: &'a Cell<Option<JsonFault>>,
}

impl StrictValue<'_> {
    fn fail<E: de::Error>(&self, fault: JsonFault) -> E {
        self.fault.set(Some(fault));
        E::custom("refused")
    }
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        if self.depth_left == 0 {
            return Err(self.fail(JsonFault::TooDeep));
        }
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictValue {
            depth_left: self.depth_left - 1,
            fault: self.fault,
        })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        if self.depth_left == 0 {
            return Err(self.fail(JsonFault::TooDeep));
        }
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(StrictValue {
                depth_left: self.depth_left - 1,
                fault: self.fault,
            })?;
            if out.insert(key, value).is_some() {
                return Err(self.fail(JsonFault::DuplicateKey));
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_objects_parse() {
        let m = parse_object(br#"{"a":1,"b":{"c":[true,null,"x"]}}"#, 4).unwrap();
        assert_eq!(m["b"]["c"][2], "x");
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        assert_eq!(
            parse_object(br#"{"sub":"a","sub":"b"}"#, 4),
            Err(JsonFault::DuplicateKey)
        );
        assert_eq!(
            parse_object(br#"{"x":{"k":1,"k":2}}"#, 4),
            Err(JsonFault::DuplicateKey)
        );
    }

    #[test]
    fn nesting_is_limited() {
        assert!(parse_object(br#"{"a":{"b":{}}}"#, 3).is_ok());
        assert_eq!(
            parse_object(br#"{"a":{"b":{"c":{}}}}"#, 3),
            Err(JsonFault::TooDeep)
        );
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(parse_object(deep.as_bytes(), 16), Err(JsonFault::TooDeep));
    }

    #[test]
    fn non_objects_and_garbage_are_invalid() {
        for bad in [&b"[1]"[..], b"1", b"", b"{", b"{} x", b"{\"a\":\"\xff\"}"] {
            assert_eq!(parse_object(bad, 4), Err(JsonFault::Invalid), "{bad:?}");
        }
    }
}
