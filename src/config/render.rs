//! The effective configuration rendered back as TOML from the key tables, secrets masked, for `check-config`.

use super::keys::SECTIONS;
use super::Config;
use std::fmt::Write;

impl Config {
    /// The effective configuration as TOML, every key of every section in proxy.toml's order
    /// (unset optional keys left out), passwords and tokens masked, for `check-config`.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for section in SECTIONS {
            for i in 0..(section.entries)(self) {
                match (section.name, section.array) {
                    ("", _) => {}
                    (name, true) => {
                        let _ = writeln!(s, "\n[[{name}]]");
                    }
                    (name, false) => {
                        let _ = writeln!(s, "\n[{name}]");
                    }
                }
                for key in section.keys {
                    if let Some(v) = (key.value)(self, i) {
                        let v = if key.class.secret { "\"********\"" } else { &v };
                        let _ = writeln!(s, "{} = {v}", key.name);
                    }
                }
            }
        }
        s
    }
}
