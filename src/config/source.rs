//! Where the configuration was read from, kept so a reload reads it again the same way.

use super::EnvOverrides;
use std::path::PathBuf;

/// Where the configuration came from, so it can be read again the same way.
#[derive(Clone, Debug)]
pub struct ConfigSource {
    pub path: PathBuf,
    pub env: EnvOverrides,
}
