//! The stats endpoint's JSON as this client reads it: every field defaulted so older and newer servers still parse.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// Reads a JSON null as the type's default, because serde_json writes a NaN or infinite f64 as
/// null and a newer server may send null where this client expects a number.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The whole `/stats` document.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct StatsDoc {
    #[serde(deserialize_with = "null_default")]
    pub uptime_s: u64,
    #[serde(deserialize_with = "null_default")]
    pub queries: Vec<Query>,
    #[serde(deserialize_with = "null_default")]
    pub queries_folded: u64,
    #[serde(deserialize_with = "null_default")]
    pub pools: Vec<Pool>,
    #[serde(deserialize_with = "null_default")]
    pub servers: Vec<Server>,
    #[serde(deserialize_with = "null_default")]
    pub cache: Cache,
    #[serde(deserialize_with = "null_default")]
    pub n_plus_one: Vec<NPlusOne>,
    /// Keyed by name; unknown names from a newer server are kept and shown after the known ones.
    #[serde(deserialize_with = "null_default")]
    pub targets: BTreeMap<String, Target>,
    #[serde(deserialize_with = "null_default")]
    pub clients: u64,
}

/// One fingerprint's row.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Query {
    #[serde(deserialize_with = "null_default")]
    pub fingerprint: String,
    #[serde(deserialize_with = "null_default")]
    pub database: String,
    #[serde(deserialize_with = "null_default")]
    pub query: String,
    #[serde(deserialize_with = "null_default")]
    pub calls: u64,
    #[serde(deserialize_with = "null_default")]
    pub errors: u64,
    #[serde(deserialize_with = "null_default")]
    pub rows: u64,
    #[serde(deserialize_with = "null_default")]
    pub total_ms: f64,
    #[serde(deserialize_with = "null_default")]
    pub mean_ms: f64,
    #[serde(deserialize_with = "null_default")]
    pub p50_ms: f64,
    #[serde(deserialize_with = "null_default")]
    pub p90_ms: f64,
    #[serde(deserialize_with = "null_default")]
    pub p99_ms: f64,
    #[serde(deserialize_with = "null_default")]
    pub primary_calls: u64,
    #[serde(deserialize_with = "null_default")]
    pub replica_calls: u64,
    #[serde(deserialize_with = "null_default")]
    pub cache_hits: u64,
}

/// One server pool (one user/database pair on one server).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Pool {
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    #[serde(deserialize_with = "null_default")]
    pub max_size: u64,
    #[serde(deserialize_with = "null_default")]
    pub size: u64,
    #[serde(deserialize_with = "null_default")]
    pub busy: u64,
    #[serde(deserialize_with = "null_default")]
    pub waiting: u64,
    #[serde(deserialize_with = "null_default")]
    pub acquisitions: u64,
    #[serde(deserialize_with = "null_default")]
    pub acquire_p95_ms: f64,
    /// 0..1; null before the first acquisition.
    pub efficiency: Option<f64>,
    #[serde(deserialize_with = "null_default")]
    pub timeouts: u64,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Server {
    #[serde(deserialize_with = "null_default")]
    pub server: String,
    #[serde(deserialize_with = "null_default")]
    pub role: String,
    #[serde(deserialize_with = "null_default")]
    pub reachable: bool,
    #[serde(deserialize_with = "null_default")]
    pub outstanding: u64,
    #[serde(deserialize_with = "null_default")]
    pub reads: ReadRouting,
}

/// Where reads went and why (a replica's; zero on the primary).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ReadRouting {
    #[serde(deserialize_with = "null_default")]
    pub served: u64,
    #[serde(deserialize_with = "null_default")]
    pub served_after_wait: u64,
    #[serde(deserialize_with = "null_default")]
    pub to_primary: std::collections::BTreeMap<String, u64>,
    pub wait_p99_ms: Option<f64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Cache {
    #[serde(deserialize_with = "null_default")]
    pub enabled: bool,
    #[serde(deserialize_with = "null_default")]
    pub hits: u64,
    #[serde(deserialize_with = "null_default")]
    pub misses: u64,
    /// 0..1; null before the first lookup.
    pub hit_rate: Option<f64>,
    #[serde(deserialize_with = "null_default")]
    pub entries: u64,
    #[serde(deserialize_with = "null_default")]
    pub bytes: u64,
    #[serde(deserialize_with = "null_default")]
    pub evictions: u64,
    #[serde(deserialize_with = "null_default")]
    pub coalesced: u64,
    #[serde(deserialize_with = "null_default")]
    pub invalidation: String,
    #[serde(deserialize_with = "null_default")]
    pub invalidations: CacheInvalidations,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct CacheInvalidations {
    #[serde(deserialize_with = "null_default")]
    pub write: u64,
    #[serde(deserialize_with = "null_default")]
    pub unknown: u64,
    #[serde(deserialize_with = "null_default")]
    pub wal: u64,
}

/// One N+1 finding (kind "n_plus_one", "repeated_identical" or "batchable_writes").
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct NPlusOne {
    #[serde(deserialize_with = "null_default")]
    pub fingerprint: String,
    #[serde(deserialize_with = "null_default")]
    pub database: String,
    #[serde(deserialize_with = "null_default")]
    pub application_name: String,
    #[serde(deserialize_with = "null_default")]
    pub query: String,
    #[serde(deserialize_with = "null_default")]
    pub parent_query: String,
    #[serde(deserialize_with = "null_default")]
    pub kind: String,
    #[serde(deserialize_with = "null_default")]
    pub occurrences: u64,
    #[serde(deserialize_with = "null_default")]
    pub last_count: u64,
    #[serde(deserialize_with = "null_default")]
    pub max_count: u64,
    #[serde(deserialize_with = "null_default")]
    pub total_ms: f64,
    #[serde(deserialize_with = "null_default")]
    pub suggestion: String,
    /// "conversations.contact_id takes leads.contact_id" for a loop confirmed by data flow.
    #[serde(deserialize_with = "null_default")]
    pub flow: String,
    /// For repeated_identical: the share of executions the result cache answered.
    pub cached_share: Option<f64>,
}

/// One performance target as judged by the server.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Target {
    /// "<", ">" or "<=".
    #[serde(deserialize_with = "null_default")]
    pub comparison: String,
    #[serde(deserialize_with = "null_default")]
    pub target: f64,
    /// Null when nothing has been measured yet.
    pub actual: Option<f64>,
    /// "met", "missed" or "no data".
    #[serde(deserialize_with = "null_default")]
    pub status: String,
}
