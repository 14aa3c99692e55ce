//! What the tee needs to know from one `data:` payload, read without building a tree.
//!
//! `serde_json` drives hand-written visitors (no derive, no allocation for skipped values)
//! so the per-chunk cost on the streaming path stays small. Only two facts are kept:
//! whether the top level has a non-null `error` member, and the `(index, finished)` pair
//! of each entry of `choices`. Duplicate keys: the last one wins, as in Python's `json`.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The facts read from one payload.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ChunkProbe {
    /// The top level had a non-null `error` member.
    pub error: bool,
    /// `(index, finish_reason is non-null)` for each choice with a non-negative integer
    /// index.
    pub choices: Vec<(u64, bool)>,
}

impl ChunkProbe {
    /// Probe a payload; `None` when it is not a JSON object.
    pub fn read(data: &str) -> Option<ChunkProbe> {
        let first = data
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .as_bytes()
            .first();
        if first != Some(&b'{') {
            return None;
        }
        serde_json::from_str(data).ok()
    }
}

/// The keys the probe cares about, matched while borrowed.
enum Key {
    Error,
    Choices,
    Index,
    FinishReason,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "error" => Key::Error,
                    "choices" => Key::Choices,
                    "index" => Key::Index,
                    "finish_reason" => Key::FinishReason,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

/// `Visitor` methods mapping every scalar JSON value to `$default` (used inside an impl).
macro_rules! scalars_to {
    ($value:ty, $default:expr) => {
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<$value, E> {
            Ok($default)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<$value, E> {
            Ok($default)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<$value, E> {
            Ok($default)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<$value, E> {
            Ok($default)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<$value, E> {
            Ok($default)
        }
        fn visit_unit<E: de::Error>(self) -> Result<$value, E> {
            Ok($default)
        }
    };
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// A non-negative integer, or `None` for any other value.
struct Index(Option<u64>);

impl<'de> Deserialize<'de> for Index {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Index;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Index, E> {
                Ok(Index(Some(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Index, E> {
                Ok(Index(u64::try_from(v).ok()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Index, E> {
                Ok(Index(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Index, E> {
                Ok(Index(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Index, E> {
                Ok(Index(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Index, E> {
                Ok(Index(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Index, A::Error> {
                drain_seq(seq)?;
                Ok(Index(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Index, A::Error> {
                drain_map(map)?;
                Ok(Index(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// One entry of `choices`: `Some((index, finished))` when it is an object with a valid
/// index.
struct Choice(Option<(u64, bool)>);

impl<'de> Deserialize<'de> for Choice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Choice;
            scalars_to!(Choice, Choice(None));
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Choice, A::Error> {
                drain_seq(seq)?;
                Ok(Choice(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Choice, A::Error> {
                let mut index = None;
                let mut finished = false;
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Index => index = map.next_value::<Index>()?.0,
                        Key::FinishReason => {
                            finished = map.next_value::<Option<IgnoredAny>>()?.is_some();
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Choice(index.map(|i| (i, finished))))
            }
        }
        d.deserialize_any(V)
    }
}

/// The `choices` member: the valid entries of an array, or nothing for any other value.
struct Choices(Vec<(u64, bool)>);

impl<'de> Deserialize<'de> for Choices {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Choices;
            scalars_to!(Choices, Choices(Vec::new()));
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Choices, A::Error> {
                let mut out = Vec::new();
                while let Some(c) = seq.next_element::<Choice>()? {
                    out.extend(c.0);
                }
                Ok(Choices(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Choices, A::Error> {
                drain_map(map)?;
                Ok(Choices(Vec::new()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for ChunkProbe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ChunkProbe;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ChunkProbe, A::Error> {
                let mut probe = ChunkProbe::default();
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Error => {
                            probe.error = map.next_value::<Option<IgnoredAny>>()?.is_some();
                        }
                        Key::Choices => probe.choices = map.next_value::<Choices>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(probe)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_error_and_choices() {
        let p = ChunkProbe::read(
            r#"{"id":"x","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null},
               {"index":1,"finish_reason":"stop"},{"index":-1,"finish_reason":"stop"},
               {"index":1.5},"junk",{"finish_reason":"stop"}],"error":null}"#,
        )
        .unwrap();
        assert_eq!(
            p,
            ChunkProbe {
                error: false,
                choices: vec![(0, false), (1, true)]
            }
        );
        let p = ChunkProbe::read(r#" {"error": {"message": "boom"}} "#).unwrap();
        assert!(p.error);
        assert!(p.choices.is_empty());
    }

    #[test]
    fn last_duplicate_wins() {
        let p = ChunkProbe::read(r#"{"error":1,"error":null}"#).unwrap();
        assert!(!p.error);
        let p = ChunkProbe::read(r#"{"error":null,"error":false}"#).unwrap();
        assert!(p.error);
    }

    #[test]
    fn escaped_keys_match() {
        let p = ChunkProbe::read(r#"{"\u0065rror":"x"}"#).unwrap();
        assert!(p.error);
    }

    #[test]
    fn not_objects() {
        assert_eq!(ChunkProbe::read("[DONE]"), None);
        assert_eq!(ChunkProbe::read("[1]"), None);
        assert_eq!(ChunkProbe::read("{\"a\":"), None);
        assert_eq!(ChunkProbe::read("{} x"), None);
        assert_eq!(ChunkProbe::read(""), None);
    }

    #[test]
    fn deep_nesting_does_not_crash() {
        // Skipped values are drained without recursion, so depth costs nothing here.
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(ChunkProbe::read(&deep), Some(ChunkProbe::default()));
        let deep = format!(
            "{{\"choices\":[{{\"index\":{}1{}}}]}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(ChunkProbe::read(&deep), Some(ChunkProbe::default()));
    }
}
