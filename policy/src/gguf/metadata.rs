//! Typed access to GGUF metadata values, with errors that name the key.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;

use super::GgufError;

/// GGUF metadata: key → value, as parsed by candle.
pub(crate) type Metadata = HashMap<String, Value>;

pub(crate) fn get<'a>(md: &'a Metadata, key: &str) -> Result<&'a Value, GgufError> {
    md.get(key).ok_or_else(|| GgufError::MissingMetadata {
        key: key.to_owned(),
    })
}

fn type_error(key: &str, expected: &'static str, value: &Value) -> GgufError {
    GgufError::MetadataType {
        key: key.to_owned(),
        expected,
        found: format!("{:?}", value.value_type()),
    }
}

/// A non-negative integer of any GGUF integer width.
pub(crate) fn uint_value(key: &str, value: &Value) -> Result<u64, GgufError> {
    let v = match *value {
        Value::U8(v) => Some(u64::from(v)),
        Value::U16(v) => Some(u64::from(v)),
        Value::U32(v) => Some(u64::from(v)),
        Value::U64(v) => Some(v),
        Value::I8(v) => u64::try_from(v).ok(),
        Value::I16(v) => u64::try_from(v).ok(),
        Value::I32(v) => u64::try_from(v).ok(),
        Value::I64(v) => u64::try_from(v).ok(),
        _ => None,
    };
    v.ok_or_else(|| type_error(key, "a non-negative integer", value))
}

pub(crate) fn uint(md: &Metadata, key: &str) -> Result<u64, GgufError> {
    uint_value(key, get(md, key)?)
}

/// A count or size that must fit in `usize`.
pub(crate) fn usize(md: &Metadata, key: &str) -> Result<usize, GgufError> {
    let v = uint(md, key)?;
    usize::try_from(v)
        .map_err(|_| GgufError::InvalidConfig(format!("{key} = {v} does not fit in usize")))
}

/// A floating-point value, widened to f64 through its shortest decimal form, so that an f32
/// `1e-5` becomes the f64 `1e-5` a Hugging Face `config.json` holds, not `9.999999747378752e-6`.
pub(crate) fn float(md: &Metadata, key: &str) -> Result<f64, GgufError> {
    let value = get(md, key)?;
    match *value {
        Value::F32(v) => v
            .to_string()
            .parse::<f64>()
            .map_err(|_| type_error(key, "a finite float", value)),
        Value::F64(v) => Ok(v),
        _ => Err(type_error(key, "a float", value)),
    }
}

pub(crate) fn string<'a>(md: &'a Metadata, key: &str) -> Result<&'a str, GgufError> {
    match get(md, key)? {
        Value::String(s) => Ok(s),
        other => Err(type_error(key, "a string", other)),
    }
}

pub(crate) fn optional_string<'a>(
    md: &'a Metadata,
    key: &str,
) -> Result<Option<&'a str>, GgufError> {
    if md.contains_key(key) {
        string(md, key).map(Some)
    } else {
        Ok(None)
    }
}

pub(crate) fn array<'a>(md: &'a Metadata, key: &str) -> Result<&'a [Value], GgufError> {
    match get(md, key)? {
        Value::Array(items) => Ok(items),
        other => Err(type_error(key, "an array", other)),
    }
}

pub(crate) fn string_array<'a>(md: &'a Metadata, key: &str) -> Result<Vec<&'a str>, GgufError> {
    array(md, key)?
        .iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.as_str()),
            other => Err(type_error(key, "an array of strings", other)),
        })
        .collect()
}

pub(crate) fn int_array(md: &Metadata, key: &str) -> Result<Vec<i64>, GgufError> {
    array(md, key)?
        .iter()
        .map(|v| match *v {
            Value::I8(x) => Ok(i64::from(x)),
            Value::I16(x) => Ok(i64::from(x)),
            Value::I32(x) => Ok(i64::from(x)),
            Value::I64(x) => Ok(x),
            Value::U8(x) => Ok(i64::from(x)),
            Value::U16(x) => Ok(i64::from(x)),
            Value::U32(x) => Ok(i64::from(x)),
            ref other => Err(type_error(key, "an array of integers", other)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_epsilon_widens_to_its_decimal_value() {
        let mut md = Metadata::new();
        md.insert("eps".into(), Value::F32(1e-5));
        assert_eq!(float(&md, "eps").unwrap(), 1e-5);
        assert_ne!(f64::from(1e-5_f32), 1e-5);
    }

    #[test]
    fn integers_of_any_width_read_and_negative_ones_are_rejected() {
        let mut md = Metadata::new();
        md.insert("a".into(), Value::U32(30));
        md.insert("b".into(), Value::I32(7));
        md.insert("c".into(), Value::I32(-1));
        md.insert("d".into(), Value::String("x".into()));
        assert_eq!(uint(&md, "a").unwrap(), 30);
        assert_eq!(uint(&md, "b").unwrap(), 7);
        assert!(matches!(
            uint(&md, "c"),
            Err(GgufError::MetadataType { .. })
        ));
        assert!(matches!(
            uint(&md, "d"),
            Err(GgufError::MetadataType { .. })
        ));
        assert!(matches!(
            uint(&md, "e"),
            Err(GgufError::MissingMetadata { .. })
        ));
    }
}
