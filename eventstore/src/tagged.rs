//! Reading an aggregate's event enum from a record's type name and payload as they are.
//!
//! Events are stored with their type in its own column and the variant's fields as the
//! payload; serde's external tagging reads `{"<EventType>": {..}}`. Building that object
//! copies the whole payload tree, once per event and projector, so the enum is handed the
//! type name and the borrowed payload directly instead.

use serde::de::value::{BorrowedStrDeserializer, EnumAccessDeserializer};
use serde::de::{DeserializeSeed, Deserializer, EnumAccess, VariantAccess, Visitor};
use serde::Deserialize;
use serde_json::{Error, Value};

/// Deserializes `T` (an externally tagged enum) as serde_json would from
/// `{variant: payload}`.
pub fn from_tagged<'a, T: Deserialize<'a>>(
    variant: &'a str,
    payload: &'a Value,
) -> Result<T, Error> {
    T::deserialize(EnumAccessDeserializer::new(Tagged { variant, payload }))
}

struct Tagged<'a> {
    variant: &'a str,
    payload: &'a Value,
}

impl<'de> EnumAccess<'de> for Tagged<'de> {
    type Error = Error;
    type Variant = Payload<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Payload<'de>), Error> {
        let variant = seed.deserialize(BorrowedStrDeserializer::<Error>::new(self.variant))?;
        Ok((variant, Payload(self.payload)))
    }
}

/// The variant's content, read as serde_json reads the value under the tag.
struct Payload<'a>(&'a Value);

impl<'de> VariantAccess<'de> for Payload<'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        <()>::deserialize(self.0)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self.0)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.0.deserialize_seq(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.0.deserialize_map(visitor)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[derive(Debug, PartialEq, Deserialize)]
    enum Event {
        Renamed { name: String, at: u32 },
        Wrapped(Vec<u8>),
        Pair(u8, String),
        Closed,
    }

    /// What `{variant: payload}` through serde_json gives, for agreement.
    fn via_json(variant: &str, payload: &Value) -> Result<Event, Error> {
        serde_json::from_value(json!({ variant: payload }))
    }

    #[test]
    fn reads_every_variant_kind_as_serde_json_does_from_the_tagged_object() {
        for (variant, payload) in [
            ("Renamed", json!({"name": "n", "at": 3})),
            ("Wrapped", json!([1, 2])),
            ("Pair", json!([7, "x"])),
            ("Closed", Value::Null),
        ] {
            assert_eq!(
                from_tagged::<Event>(variant, &payload).unwrap(),
                via_json(variant, &payload).unwrap(),
                "{variant}"
            );
        }
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        for (variant, payload) in [
            ("Unknown", json!({"name": "n", "at": 3})),
            ("Renamed", json!({"name": "n"})),
            ("Renamed", json!(["n", 3])),
            ("Renamed", json!({"name": 1, "at": 3})),
            ("Closed", json!({"x": 1})),
            ("Wrapped", json!("not a list")),
        ] {
            assert!(via_json(variant, &payload).is_err(), "{variant} {payload}");
            assert!(
                from_tagged::<Event>(variant, &payload).is_err(),
                "{variant} {payload}"
            );
        }
    }
}
