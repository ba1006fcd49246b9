//! Every configuration key declared once, per section: raw field, default, reload class and effective value; render and reload's diff walk these tables.
//!
//! A section file declares its table with [`section!`]:
//!
//! ```text
//! section! {
//!     health: RawHealth ["health"], reported as "health";
//!     keys {
//!         ban_ms: u64 = 1_000, RESTART, |c| c.health.ban;
//!         retry_reads: bool = true, RESTART, |c| c.health.retry_reads;
//!     }
//! }
//! ```
//!
//! Each key line is `name: type [= default], class, |config| effective value;` (array tables
//! take `|config, index|`). A key without a default is required. The macro writes the raw serde
//! struct (`RawHealth`, unknown keys rejected), its defaults, and the section's [`Section`]
//! table, which [`SECTIONS`] lists in proxy.toml's order. Validation stays a plain function
//! beside the declaration, from the raw struct to the checked value the proxy reads.

use super::Config;
use std::time::Duration;

/// Whether a reload applies a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reload {
    /// The new value takes effect at the reload.
    Live,
    /// The running proxy keeps the old value until it is restarted.
    Restart,
}

/// How a key reloads, renders and is reported.
#[derive(Clone, Copy, Debug)]
pub struct Class {
    pub reload: Reload,
    /// Rendered masked.
    pub secret: bool,
    /// The name a reload summary gives a change of this key, when several keys share one.
    pub reported_as: Option<&'static str>,
}

pub const LIVE: Class = Class {
    reload: Reload::Live,
    secret: false,
    reported_as: None,
};

pub const RESTART: Class = Class {
    reload: Reload::Restart,
    ..LIVE
};

impl Class {
    pub const fn secret(self) -> Class {
        Class {
            secret: true,
            ..self
        }
    }

    pub const fn reported_as(self, name: &'static str) -> Class {
        Class {
            reported_as: Some(name),
            ..self
        }
    }
}

/// One key of a section.
pub struct Key {
    /// As written in the file.
    pub name: &'static str,
    /// "section.key", as proxy.toml nests it ("key" at the top level).
    pub path: &'static str,
    pub class: Class,
    /// The effective value of entry `index` (0 outside arrays of tables) as a TOML literal;
    /// None: unset. Read from the checked configuration, so overrides and normalisation show.
    pub value: fn(&Config, usize) -> Option<String>,
}

/// One table of the file.
pub struct Section {
    /// "" for the top-level keys, else the table's dotted name.
    pub name: &'static str,
    /// An array of tables (`[[users]]`).
    pub array: bool,
    /// Entries of an array of tables in a configuration; 1 for a plain table.
    pub entries: fn(&Config) -> usize,
    /// A change of any key of the table is reported under this one name.
    pub reported_as: Option<&'static str>,
    pub keys: &'static [Key],
}

impl Key {
    /// The name a reload summary lists a change of this key under.
    pub fn reported(&self, section: &Section) -> &'static str {
        self.class
            .reported_as
            .or(section.reported_as)
            .unwrap_or(self.path)
    }

    /// The key's values in every entry of its section.
    fn values(&self, section: &Section, c: &Config) -> Vec<Option<String>> {
        (0..(section.entries)(c))
            .map(|i| (self.value)(c, i))
            .collect()
    }
}

/// Every section, in proxy.toml's order (which [`Config::render`] follows).
pub static SECTIONS: &[&Section] = &[
    &super::root::SECTION,
    &super::servers::PRIMARY,
    &super::servers::REPLICAS,
    &super::pool::SECTION,
    &super::access::USERS,
    &super::access::DATABASES,
    &super::observe::STATS,
    &super::observe::TARGETS,
    &super::servers::HEALTH,
    &super::replication::SECTION,
    &super::cache::SECTION,
    &super::cache::RULES,
    &super::observe::N_PLUS_ONE,
];

/// Every key with its section.
pub fn all() -> impl Iterator<Item = (&'static Section, &'static Key)> {
    SECTIONS
        .iter()
        .flat_map(|s| s.keys.iter().map(move |k| (*s, k)))
}

/// The key at `path` ("section.key").
pub fn find(path: &str) -> Option<(&'static Section, &'static Key)> {
    all().find(|(_, k)| k.path == path)
}

/// Changes from `a` to `b`: each changed key's reported name (once) and reload class, in
/// file order.
pub fn changes(a: &Config, b: &Config) -> Vec<(&'static str, Reload)> {
    let mut out: Vec<(&'static str, Reload)> = Vec::new();
    for (section, key) in all() {
        if key.values(section, a) != key.values(section, b) {
            let name = key.reported(section);
            if !out.iter().any(|(n, _)| *n == name) {
                out.push((name, key.class.reload));
            }
        }
    }
    out
}

/// The key paths a TOML document sets, as the declarations name them ("section.key"; an
/// array of tables contributes its entries' keys), to hold a file against the declarations.
pub fn paths(v: &toml::Value) -> Vec<String> {
    fn walk(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
        let toml::Value::Table(t) = v else {
            return out.push(prefix.to_string());
        };
        for (k, v) in t {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Array(items) if items.iter().all(|i| i.is_table()) => {
                    for i in items {
                        walk(&path, i, out);
                    }
                }
                _ => walk(&path, v, out),
            }
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out
}

/// The TOML literal of an effective value.
pub trait Lit {
    fn lit(&self) -> Option<String>;
}

macro_rules! lit_display {
    ($($t:ty),*) => {
        $(impl Lit for $t {
            fn lit(&self) -> Option<String> {
                Some(self.to_string())
            }
        })*
    };
}
lit_display!(bool, u16, u32, u64, u128, usize, f64);

impl Lit for str {
    fn lit(&self) -> Option<String> {
        Some(toml::Value::String(self.to_string()).to_string())
    }
}

impl Lit for String {
    fn lit(&self) -> Option<String> {
        self.as_str().lit()
    }
}

impl Lit for std::path::PathBuf {
    fn lit(&self) -> Option<String> {
        self.to_string_lossy().lit()
    }
}

impl Lit for std::borrow::Cow<'_, str> {
    fn lit(&self) -> Option<String> {
        (**self).lit()
    }
}

impl Lit for std::net::SocketAddr {
    fn lit(&self) -> Option<String> {
        self.to_string().lit()
    }
}

/// Durations are written in milliseconds, as every `_ms` key.
impl Lit for Duration {
    fn lit(&self) -> Option<String> {
        self.as_millis().to_string().into()
    }
}

impl<T: Lit> Lit for Option<T> {
    fn lit(&self) -> Option<String> {
        self.as_ref().and_then(Lit::lit)
    }
}

impl<T: Lit + ?Sized> Lit for &T {
    fn lit(&self) -> Option<String> {
        (**self).lit()
    }
}

/// A closed set of words a key takes (`server_sslmode = "require"`), each spelled once, in
/// [`words!`]: parsing, rendering and the error that lists them all read that one table.
pub trait Words: Copy + 'static {
    const ALL: &'static [Self];
    fn word(&self) -> &'static str;
}

/// Declares an enum of words: `Variant = "spelling"` once each, giving [`Words`] and `as_str`.
macro_rules! words {
    ($(#[$m:meta])* $vis:vis enum $name:ident {
        $($(#[$vm:meta])* $variant:ident = $word:literal,)+
    }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        $vis enum $name {
            $($(#[$vm])* $variant,)+
        }

        impl $crate::config::keys::Words for $name {
            const ALL: &'static [Self] = &[$($name::$variant,)+];
            fn word(&self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl $name {
            pub fn as_str(&self) -> &'static str {
                $crate::config::keys::Words::word(self)
            }
        }
    };
}
pub(crate) use words;

/// Every word of `T`, quoted and comma-separated, for an error naming what a key takes.
pub fn one_of<T: Words>() -> String {
    let quoted: Vec<String> = T::ALL.iter().map(|w| format!("\"{}\"", w.word())).collect();
    quoted.join(", ")
}

/// A word of `T`, or the unknown one the file gave, so validation can name the key and the
/// words it takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Word<T> {
    Known(T),
    Unknown(String),
}

impl<'de, T: Words> serde::Deserialize<'de> for Word<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match T::ALL.iter().find(|w| w.word() == s) {
            Some(w) => Word::Known(*w),
            None => Word::Unknown(s),
        })
    }
}

impl<T: Words> Word<T> {
    /// The known word, or the error naming `key` and every word it takes.
    pub fn get(&self, key: &str) -> Result<T, super::ConfigError> {
        match self {
            Word::Known(t) => Ok(*t),
            Word::Unknown(w) => Err(super::invalid(
                key,
                format!("`{w}` is not one of {}", one_of::<T>()),
            )),
        }
    }
}

impl<T> From<T> for Word<T> {
    fn from(t: T) -> Self {
        Word::Known(t)
    }
}

/// Declares a section; see the module's documentation.
macro_rules! section {
    (@default $field:ident) => {
        return Err(format!("missing field `{}`", stringify!($field)))
    };
    (@default $field:ident $default:expr) => {
        $default
    };
    (@path "" $field:ident) => {
        stringify!($field)
    };
    (@path $name:tt $field:ident) => {
        concat!($name, ".", stringify!($field))
    };
    (@index) => { _ };
    (@index $i:ident) => { $i };
    (@opt) => { None };
    (@opt $v:tt) => { Some($v) };
    (@body [$(#[$meta:meta])*] $module:ident $raw:ident $name:tt $array:tt [$($count:tt)*] [$($rep:tt)?]
        keys {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty $(= $default:expr)? , $class:expr ,
               |$c:ident $(, $i:ident)?| $get:expr ; )*
        }
        $(tables {
            $( $(#[$tmeta:meta])* $tfield:ident : $tty:ty = $tdefault:expr ; )*
        })?
    ) => {
        pub mod $module {
            #![allow(unused_imports)]
            use super::*;
            use $crate::config::keys::{Key, Lit, Section};
            use $crate::config::Config;

            $(#[$meta])*
            #[derive(Clone, Debug, serde::Deserialize)]
            #[serde(try_from = "Partial")]
            pub struct $raw {
                $( $(#[$fmeta])* pub $field: $ty, )*
                $($( $(#[$tmeta])* pub $tfield: $tty, )*)?
            }

            /// The table as written: absent keys take their defaults in the conversion.
            #[derive(Default, serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            pub struct Partial {
                $( #[serde(default)] pub $field: Option<$ty>, )*
                $($( #[serde(default)] pub $tfield: Option<$tty>, )*)?
            }

            impl TryFrom<Partial> for $raw {
                type Error = String;
                fn try_from(p: Partial) -> Result<Self, String> {
                    Ok($raw {
                        $( $field: match p.$field {
                            Some(v) => v,
                            None => $crate::config::keys::section!(@default $field $($default)?),
                        }, )*
                        $($( $tfield: match p.$tfield {
                            Some(v) => v,
                            None => $tdefault,
                        }, )*)?
                    })
                }
            }

            impl $raw {
                /// The table as if the file did not have it (every key at its default).
                pub fn absent() -> Result<Self, String> {
                    Self::try_from(Partial::default())
                }
            }

            /// This table's keys.
            pub static SECTION: Section = Section {
                name: $name,
                array: $array,
                entries: $($count)*,
                reported_as: $crate::config::keys::section!(@opt $($rep)?),
                keys: &[$(Key {
                    name: stringify!($field),
                    path: $crate::config::keys::section!(@path $name $field),
                    class: $class,
                    value: |$c: &Config, $crate::config::keys::section!(@index $($i)?): usize| Lit::lit(&$get),
                },)*],
            };
        }
        pub use $module::$raw;
    };
    // `[[name]]`: an array of tables, with as many entries as `$count` says.
    ($(#[$meta:meta])* $module:ident : $raw:ident [[$name:tt]] each |$cc:ident| $count:expr
        $(, reported as $rep:tt)?; $($rest:tt)*) => {
        $crate::config::keys::section!(@body [$(#[$meta])*] $module $raw $name true [|$cc: &Config| $count] [$($rep)?] $($rest)*);
    };
    // `[]`: the top-level keys.
    ($(#[$meta:meta])* $module:ident : $raw:ident [] $(, reported as $rep:tt)?; $($rest:tt)*) => {
        $crate::config::keys::section!(@body [$(#[$meta])*] $module $raw "" false [|_: &Config| 1] [$($rep)?] $($rest)*);
    };
    // `[name]`: a table.
    ($(#[$meta:meta])* $module:ident : $raw:ident [$name:tt] $(, reported as $rep:tt)?; $($rest:tt)*) => {
        $crate::config::keys::section!(@body [$(#[$meta])*] $module $raw $name false [|_: &Config| 1] [$($rep)?] $($rest)*);
    };
}
pub(crate) use section;
