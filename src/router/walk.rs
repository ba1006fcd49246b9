//! A walk over every node of a pg_query parse tree, driven by the tree's `serde::Serialize` impl.
//!
//! pg_query's own `nodes()` iterator visits only the node kinds it cares about (it skips LIMIT,
//! VALUES lists, locking clauses, ...). Routing must not miss a function call or a locking clause
//! hidden in a node kind nobody listed, and the generated protobuf types all derive `Serialize`, so
//! a serializer that writes nothing but reports structs, fields and scalars reaches every node
//! without a hand-written match over 270 node kinds.

use std::fmt;

use serde::ser::{self, Serialize};

/// Receives the walk. `path` alternates struct and field names from the walk's root: it ends with
/// the struct just entered (`enter`), or with the field holding the scalar (`string`, ...).
/// Options, boxes, lists and the `Node` oneof wrapper variants are transparent.
pub(super) trait Visitor {
    fn enter(&mut self, path: &[&'static str]);
    fn leave(&mut self, name: &'static str);
    fn string(&mut self, path: &[&'static str], value: &str);
    fn boolean(&mut self, path: &[&'static str], value: bool);
    fn int(&mut self, path: &[&'static str], value: i64);
}

/// Walks `tree`, reporting to `visitor`.
pub(super) fn walk<T: Serialize + ?Sized, V: Visitor>(
    tree: &T,
    visitor: &mut V,
) -> Result<(), WalkError> {
    let mut walker = Walker {
        path: Vec::with_capacity(64),
        visitor,
    };
    tree.serialize(&mut walker)
}

/// Only a `Serialize` impl can fail a walk, and the generated ones never do; kept for the trait.
#[derive(Debug)]
pub(super) struct WalkError(String);

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WalkError {}

impl ser::Error for WalkError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

struct Walker<'v, V> {
    path: Vec<&'static str>,
    visitor: &'v mut V,
}

impl<V: Visitor> Walker<'_, V> {
    fn open(&mut self, name: &'static str) {
        self.path.push(name);
        self.visitor.enter(&self.path);
    }

    fn close(&mut self) {
        if let Some(name) = self.path.pop() {
            self.visitor.leave(name);
        }
    }

    fn field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), WalkError> {
        self.path.push(key);
        let result = value.serialize(&mut *self);
        self.path.pop();
        result
    }

    fn int(&mut self, value: i64) -> Result<(), WalkError> {
        self.visitor.int(&self.path, value);
        Ok(())
    }
}

impl<V: Visitor> ser::Serializer for &mut Walker<'_, V> {
    type Ok = ();
    type Error = WalkError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn serialize_bool(self, v: bool) -> Result<(), WalkError> {
        self.visitor.boolean(&self.path, v);
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), WalkError> {
        self.int(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), WalkError> {
        self.int(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), WalkError> {
        self.int(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), WalkError> {
        self.int(v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), WalkError> {
        self.int(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), WalkError> {
        self.int(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), WalkError> {
        self.int(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), WalkError> {
        // Only OIDs and bitmaps are u64 in the tree; nothing reads them.
        self.int(v as i64)
    }
    fn serialize_f32(self, _: f32) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_f64(self, _: f64) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_char(self, _: char) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), WalkError> {
        self.visitor.string(&self.path, v);
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_none(self) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), WalkError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), WalkError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), WalkError> {
        // The oneof variant names its struct, which reports itself next.
        value.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, WalkError> {
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, WalkError> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, WalkError> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, WalkError> {
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, WalkError> {
        Ok(self)
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Self, WalkError> {
        self.open(name);
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self, WalkError> {
        self.open(variant);
        Ok(self)
    }
}

impl<V: Visitor> ser::SerializeSeq for &mut Walker<'_, V> {
    type Ok = ();
    type Error = WalkError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WalkError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), WalkError> {
        Ok(())
    }
}

impl<V: Visitor> ser::SerializeTuple for &mut Walker<'_, V> {
    type Ok = ();
    type Error = WalkError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WalkError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), WalkError> {
        Ok(())
    }
}

impl<V: Visitor> ser::SerializeTupleStruct for &mut Walker<'_, V> {
    type Ok = ();
    type Error = WalkError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WalkError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), WalkError> {
        Ok(())
    }
}

impl<V: Visitor> ser::SerializeTupleVariant for &mut Walker<'_, V> {
    type Ok = ();
    type Error = WalkError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WalkError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), WalkError> {
        Ok(())
    }
}

impl<V: Visitor> ser::SerializeMap for &mut Walker<'_, V> {
    type Ok = ();
    type Error = WalkError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), WalkError> {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WalkError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), WalkError> {
        Ok(())
    }
}

impl<V: Visitor> ser::SerializeStruct for &mut Walker<'_, V> {
    type Ok = ();
    type Error = WalkError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), WalkError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), WalkError> {
        self.close();
        Ok(())
    }
}

impl<V: Visitor> ser::SerializeStructVariant for &mut Walker<'_, V> {
    type Ok = ();
    type Error = WalkError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), WalkError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), WalkError> {
        self.close();
        Ok(())
    }
}
