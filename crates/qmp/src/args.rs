//! Typed argument parsing with QEMU-worded errors.
//!
//! Command arguments arrive as a JSON object. They are deserialised into the
//! command's argument struct (which uses `#[serde(deny_unknown_fields)]`)
//! through a thin deserializer that remembers which member it is looking at,
//! so serde's errors can be reworded the way QEMU words them:
//!
//! * `Parameter 'x' is missing`
//! * `Parameter 'x' is unexpected`
//! * `Invalid parameter type for 'x', expected: integer`
//! * `Parameter 'x' expects uint64`
//!
//! Nested members are named with dots (`file.filename`), list elements with
//! brackets (`list[0]`), as QEMU does.

use std::cell::RefCell;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor,
};
use serde::forward_to_deserialize_any;
use serde_json::{Map, Value};

use crate::error::QmpError;

type JsonError = serde_json::Error;

/// Deserialise `args` into `T`, reporting errors in QEMU's wording.
pub fn parse_arguments<T: DeserializeOwned>(args: &Map<String, Value>) -> Result<T, QmpError> {
    let context = RefCell::new(String::new());
    let de = ObjectDe {
        map: args,
        path: String::new(),
        context: &context,
    };
    T::deserialize(de).map_err(|e| convert_error(&e.to_string(), &context.borrow()))
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

/// Turn a serde type description into the word QEMU uses.
fn qapi_type(expected: &str) -> String {
    let e = expected.trim();
    let word = match e {
        "a string" | "a borrowed string" | "string" | "a character" | "char" => "string",
        "a boolean" | "bool" | "boolean" => "boolean",
        "i8" | "i16" | "i32" | "i64" | "i128" | "u8" | "u16" | "u32" | "u64" | "u128" | "isize"
        | "usize" | "an integer" | "integer" => "integer",
        "f32" | "f64" | "a number" | "number" => "number",
        "a sequence" | "a list" | "an array" => "array",
        "a map" | "an object" => "object",
        "unit" | "null" => "null",
        _ if e.starts_with("struct ") || e.starts_with("a map") => "object",
        _ if e.starts_with("a sequence") || e.starts_with("a tuple") || e.starts_with("tuple") => {
            "array"
        }
        _ if e.starts_with("enum ") || e.starts_with("variant") => "string",
        _ => e,
    };
    word.to_string()
}

/// QAPI names of Rust integer types, for out-of-range values.
fn qapi_int(expected: &str) -> Option<&'static str> {
    Some(match expected.trim() {
        "u8" => "uint8",
        "u16" => "uint16",
        "u32" => "uint32",
        "u64" | "usize" => "uint64",
        "i8" => "int8",
        "i16" => "int16",
        "i32" => "int32",
        "i64" | "isize" => "int64",
        _ => return None,
    })
}

/// Text between the first pair of backticks.
fn quoted(s: &str) -> Option<&str> {
    let start = s.find('`')? + 1;
    let len = s[start..].find('`')?;
    Some(&s[start..start + len])
}

fn convert_error(msg: &str, context: &str) -> QmpError {
    if let Some(rest) = msg.strip_prefix("missing field ") {
        let name = quoted(rest).unwrap_or(rest);
        return QmpError::missing_parameter(&join(context, name));
    }
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        let name = quoted(rest).unwrap_or(rest);
        return QmpError::unexpected_parameter(&join(context, name));
    }
    if let Some(rest) = msg.strip_prefix("duplicate field ") {
        let name = quoted(rest).unwrap_or(rest);
        return QmpError::generic(format!("Duplicate parameter '{}'", join(context, name)));
    }
    let expected = msg.rsplit_once(", expected ").map(|(_, e)| e);
    if msg.starts_with("invalid type: ") {
        let expected = expected.map(qapi_type).unwrap_or_else(|| "value".into());
        return QmpError::invalid_parameter_type(context, &expected);
    }
    if let Some(rest) = msg.strip_prefix("invalid value: ") {
        if let Some(int) = expected.and_then(qapi_int) {
            return QmpError::invalid_parameter_value(context, int);
        }
        let value = quoted(rest).unwrap_or(rest);
        return QmpError::generic(format!(
            "Parameter '{context}' does not accept value '{value}'"
        ));
    }
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        let value = quoted(rest).unwrap_or(rest);
        return QmpError::generic(format!(
            "Parameter '{context}' does not accept value '{value}'"
        ));
    }
    if msg.starts_with("invalid length ") {
        return QmpError::generic(format!("Invalid number of elements for '{context}'"));
    }
    // A custom message from a handler's own validation: keep it as it is.
    QmpError::generic(msg.to_string())
}

/// Deserializer over a JSON object whose members are tracked by path.
struct ObjectDe<'a> {
    map: &'a Map<String, Value>,
    path: String,
    context: &'a RefCell<String>,
}

impl<'de> Deserializer<'de> for ObjectDe<'de> {
    type Error = JsonError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        visitor.visit_map(ObjectAccess {
            iter: self.map.iter(),
            pending: None,
            path: self.path,
            context: self.context,
        })
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        visitor.visit_newtype_struct(self)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

struct ObjectAccess<'a> {
    iter: serde_json::map::Iter<'a>,
    pending: Option<(String, &'a Value)>,
    path: String,
    context: &'a RefCell<String>,
}

impl<'de> MapAccess<'de> for ObjectAccess<'de> {
    type Error = JsonError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, JsonError> {
        // Errors raised from here on (unknown member, or a missing one once
        // the object is exhausted) concern this object.
        self.context.replace(self.path.clone());
        match self.iter.next() {
            Some((key, value)) => {
                self.pending = Some((join(&self.path, key), value));
                let key: de::value::BorrowedStrDeserializer<'de, JsonError> =
                    de::value::BorrowedStrDeserializer::new(key.as_str());
                seed.deserialize(key).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, JsonError> {
        let (path, value) = self
            .pending
            .take()
            .ok_or_else(|| de::Error::custom("value requested before key"))?;
        seed.deserialize(ValueDe {
            value,
            path,
            context: self.context,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct ArrayAccess<'a> {
    iter: std::iter::Enumerate<std::slice::Iter<'a, Value>>,
    path: String,
    context: &'a RefCell<String>,
}

impl<'de> SeqAccess<'de> for ArrayAccess<'de> {
    type Error = JsonError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, JsonError> {
        self.context.replace(self.path.clone());
        match self.iter.next() {
            Some((i, value)) => seed
                .deserialize(ValueDe {
                    value,
                    path: format!("{}[{i}]", self.path),
                    context: self.context,
                })
                .map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

/// Deserializer over one member value.
struct ValueDe<'a> {
    value: &'a Value,
    path: String,
    context: &'a RefCell<String>,
}

impl<'de> ValueDe<'de> {
    fn mark(&self) {
        self.context.replace(self.path.clone());
    }

    fn containers<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.value {
            Value::Object(map) => visitor.visit_map(ObjectAccess {
                iter: map.iter(),
                pending: None,
                path: self.path,
                context: self.context,
            }),
            Value::Array(items) => visitor.visit_seq(ArrayAccess {
                iter: items.iter().enumerate(),
                path: self.path,
                context: self.context,
            }),
            other => {
                self.mark();
                other.deserialize_any(visitor)
            }
        }
    }
}

macro_rules! leaf {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
                self.mark();
                self.value.$method(visitor)
            }
        )*
    };
}

impl<'de> Deserializer<'de> for ValueDe<'de> {
    type Error = JsonError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        self.containers(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        match self.value {
            Value::Object(_) => self.containers(visitor),
            other => {
                self.mark();
                other.deserialize_struct(name, fields, visitor)
            }
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.value {
            Value::Object(_) => self.containers(visitor),
            other => {
                self.mark();
                other.deserialize_map(visitor)
            }
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, JsonError> {
        match self.value {
            Value::Array(_) => self.containers(visitor),
            other => {
                self.mark();
                other.deserialize_seq(visitor)
            }
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        self.mark();
        self.value.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, JsonError> {
        self.mark();
        self.value.deserialize_unit_struct(name, visitor)
    }

    leaf! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_unit
        deserialize_identifier deserialize_ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct File {
        driver: String,
        filename: String,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    #[serde(rename_all = "kebab-case")]
    enum Mode {
        Fast,
        Slow,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    struct Args {
        node_name: String,
        file: File,
        #[serde(default)]
        read_only: Option<bool>,
        #[serde(default)]
        value: Option<u64>,
        #[serde(default)]
        small: Option<u8>,
        #[serde(default)]
        list: Option<Vec<u32>>,
        #[serde(default)]
        mode: Option<Mode>,
    }

    fn parse(v: Value) -> Result<Args, QmpError> {
        parse_arguments(v.as_object().unwrap())
    }

    fn desc(v: Value) -> String {
        let e = parse(v).unwrap_err();
        assert_eq!(e.class, crate::ErrorClass::GenericError);
        e.desc
    }

    fn base() -> Value {
        json!({"node-name": "d", "file": {"driver": "file", "filename": "/x"}})
    }

    fn with(key: &str, value: Value) -> Value {
        let mut b = base();
        b.as_object_mut().unwrap().insert(key.into(), value);
        b
    }

    #[test]
    fn accepts_valid() {
        let a = parse(with("read-only", json!(true))).unwrap();
        assert_eq!(a.node_name, "d");
        assert_eq!(a.read_only, Some(true));
        assert_eq!(a.file.filename, "/x");
        let a = parse(with("list", json!([1, 2]))).unwrap();
        assert_eq!(a.list, Some(vec![1, 2]));
        let a = parse(with("mode", json!("slow"))).unwrap();
        assert_eq!(a.mode, Some(Mode::Slow));
        // null for an optional member means absent.
        assert_eq!(parse(with("value", json!(null))).unwrap().value, None);
    }

    #[test]
    fn missing() {
        assert_eq!(
            desc(json!({"file": {"driver": "file", "filename": "/x"}})),
            "Parameter 'node-name' is missing"
        );
        assert_eq!(
            desc(json!({"node-name": "d", "file": {"driver": "file"}})),
            "Parameter 'file.filename' is missing"
        );
    }

    #[test]
    fn unexpected() {
        assert_eq!(
            desc(with("bogus", json!(1))),
            "Parameter 'bogus' is unexpected"
        );
        assert_eq!(
            desc(json!({"node-name": "d", "file": {"driver": "file", "filename": "/x", "x": 1}})),
            "Parameter 'file.x' is unexpected"
        );
    }

    #[test]
    fn wrong_types() {
        assert_eq!(
            desc(with("node-name", json!(1))),
            "Invalid parameter type for 'node-name', expected: string"
        );
        assert_eq!(
            desc(with("read-only", json!("yes"))),
            "Invalid parameter type for 'read-only', expected: boolean"
        );
        assert_eq!(
            desc(with("value", json!("big"))),
            "Invalid parameter type for 'value', expected: integer"
        );
        assert_eq!(
            desc(with("value", json!(1.5))),
            "Invalid parameter type for 'value', expected: integer"
        );
        assert_eq!(
            desc(with("file", json!("x"))),
            "Invalid parameter type for 'file', expected: object"
        );
        assert_eq!(
            desc(with("list", json!({}))),
            "Invalid parameter type for 'list', expected: array"
        );
        assert_eq!(
            desc(with("list", json!([1, "a"]))),
            "Invalid parameter type for 'list[1]', expected: integer"
        );
        assert_eq!(
            desc(json!({"node-name": "d", "file": {"driver": 3, "filename": "/x"}})),
            "Invalid parameter type for 'file.driver', expected: string"
        );
    }

    #[test]
    fn bad_values() {
        assert_eq!(
            desc(with("value", json!(-1))),
            "Parameter 'value' expects uint64"
        );
        assert_eq!(
            desc(with("small", json!(300))),
            "Parameter 'small' expects uint8"
        );
        assert_eq!(
            desc(with("mode", json!("medium"))),
            "Parameter 'mode' does not accept value 'medium'"
        );
    }

    #[test]
    fn empty_struct_rejects_everything() {
        let m = json!({"x": 1});
        let e = parse_arguments::<crate::schema::NoArguments>(m.as_object().unwrap()).unwrap_err();
        assert_eq!(e.desc, "Parameter 'x' is unexpected");
        let m = json!({});
        parse_arguments::<crate::schema::NoArguments>(m.as_object().unwrap()).unwrap();
    }
}
