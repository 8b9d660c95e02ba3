//! One configuration mechanism for every command (`arlas train` and the three roles):
//!
//! ```text
//! defaults  <  the --config file  <  ARLAS_* environment variables  <  flags
//! ```
//!
//! - A command's settings are one serde type; its `--config` file holds the same keys, in
//!   TOML (JSON also reads, for files named `*.json`, such as a run's `config.json`).
//! - A command's flags are one clap struct; clap already gives a flag precedence over its
//!   environment variable. The struct serializes to the keys it sets: a field named like
//!   its key sets that key; `#[serde(rename = "a.b")]` sets a nested key, and
//!   `"a.b,c.d"` sets several. A flag that was not given serializes to null (or is skipped)
//!   and sets nothing.
//! - [`load`] merges the three layers key by key (tables merge, other values replace) and
//!   deserializes the result, so a file names only what it changes and an unknown key is an
//!   error naming it.

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// `defaults`, then the file at `file`, then `flags` (see the module docs).
pub fn load<T: Serialize + DeserializeOwned>(
    defaults: &T,
    file: Option<&Path>,
    flags: &impl Serialize,
) -> anyhow::Result<T> {
    let mut value = serde_json::to_value(defaults).context("built-in defaults")?;
    if let Some(path) = file {
        merge(&mut value, read_file(path)?, false);
    }
    let given = expand(serde_json::to_value(flags).context("flags")?);
    merge(&mut value, given, true);
    serde_json::from_value(value).map_err(|e| match file {
        Some(path) => anyhow::anyhow!(
            "invalid settings (config file {} and flags): {e}",
            path.display()
        ),
        None => anyhow::anyhow!("invalid settings: {e}"),
    })
}

/// A settings file as a value tree: TOML, or JSON when the name ends in `.json`.
pub fn read_file(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let json = path.extension().is_some_and(|e| e == "json");
    let value: Value = if json {
        serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("config file {} is not valid JSON: {e}", path.display()))?
    } else {
        toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "config file {} is not valid TOML: {}",
                path.display(),
                e.message()
            )
        })?
    };
    anyhow::ensure!(
        value.is_object(),
        "config file {} must hold a table of settings",
        path.display()
    );
    Ok(value)
}

/// Writes `settings` as a TOML file that [`load`] reads back.
pub fn write_toml(path: &Path, settings: &impl Serialize) -> anyhow::Result<()> {
    let value = strip_nulls(serde_json::to_value(settings)?);
    let text = toml::to_string_pretty(&value).context("settings as TOML")?;
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// `over` into `base`, key by key. With `skip_null`, a null in `over` changes nothing (a
/// flag that was not given).
pub fn merge(base: &mut Value, over: Value, skip_null: bool) {
    match (base, over) {
        (_, Value::Null) if skip_null => {}
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(slot) => merge(slot, value, skip_null),
                    None if skip_null && value.is_null() => {}
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

/// A flat map of dotted keys (`"agent.train.learning_rate"`, or several separated by
/// commas) as a tree of tables.
fn expand(flat: Value) -> Value {
    let Value::Object(map) = flat else {
        return flat;
    };
    let mut tree = Value::Object(Map::new());
    for (keys, value) in map {
        if value.is_null() {
            continue;
        }
        for key in keys.split(',') {
            let mut nested = value.clone();
            for part in key.rsplit('.') {
                let mut table = Map::new();
                table.insert(part.to_string(), nested);
                nested = Value::Object(table);
            }
            merge(&mut tree, nested, true);
        }
    }
    tree
}

/// The tree without null values (TOML has no null: an absent key means "not set").
fn strip_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// Serde helper: skip a `false` flag (it was not given), so it cannot turn off a file's `true`.
#[allow(clippy::trivially_copy_pass_by_ref)]
pub fn is_false(b: &bool) -> bool {
    !*b
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Inner {
        a: u32,
        b: u32,
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Settings {
        name: String,
        left: Inner,
        right: Inner,
    }

    #[derive(Serialize)]
    struct Flags {
        name: Option<String>,
        #[serde(rename = "left.a")]
        left_a: Option<u32>,
        #[serde(rename = "left.b,right.b")]
        both_b: Option<u32>,
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults_key_by_key() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("s.toml");
        std::fs::write(
            &file,
            "name = \"file\"\n[left]\na = 1\nb = 2\n[right]\na = 3\n",
        )
        .unwrap();
        let defaults = Settings {
            right: Inner { a: 9, b: 9 },
            ..Settings::default()
        };
        let flags = Flags {
            name: None,
            left_a: Some(10),
            both_b: Some(20),
        };
        let s = load(&defaults, Some(&file), &flags).unwrap();
        assert_eq!(s.name, "file", "a flag not given keeps the file's value");
        assert_eq!(s.left, Inner { a: 10, b: 20 });
        assert_eq!(
            s.right,
            Inner { a: 3, b: 20 },
            "one flag may set several keys"
        );

        let json = tmp.path().join("s.json");
        std::fs::write(&json, r#"{"right": {"b": 5}}"#).unwrap();
        let none = Flags {
            name: None,
            left_a: None,
            both_b: None,
        };
        let s = load(&defaults, Some(&json), &none).unwrap();
        assert_eq!(
            s.right,
            Inner { a: 9, b: 5 },
            "a file changes only what it names"
        );
    }

    #[test]
    fn unknown_keys_and_bad_files_are_errors_that_name_them() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("s.toml");
        std::fs::write(&file, "[left]\nc = 1\n").unwrap();
        let none = Flags {
            name: None,
            left_a: None,
            both_b: None,
        };
        let err = load(&Settings::default(), Some(&file), &none).unwrap_err();
        assert!(format!("{err:#}").contains("`c`"), "{err:#}");
        std::fs::write(&file, "left = [").unwrap();
        let err = load(&Settings::default(), Some(&file), &none).unwrap_err();
        assert!(format!("{err:#}").contains("not valid TOML"), "{err:#}");
    }

    #[test]
    fn written_settings_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("w.toml");
        let s = Settings {
            name: "x".into(),
            left: Inner { a: 1, b: 2 },
            right: Inner::default(),
        };
        write_toml(&file, &s).unwrap();
        let none = Flags {
            name: None,
            left_a: None,
            both_b: None,
        };
        assert_eq!(load(&Settings::default(), Some(&file), &none).unwrap(), s);
    }
}
