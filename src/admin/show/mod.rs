//! The SHOW commands: one file each, turning the live state into a table; a new one is a file here and a variant below.

mod cache;
mod clients;
mod n_plus_one;
mod pools;
mod queries;
mod servers;
mod stats;
mod targets;

use super::table::Table;
use crate::Shared;

/// What `SHOW <name>` can show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Show {
    Stats,
    Queries,
    Pools,
    Servers,
    Clients,
    Cache,
    NPlusOne,
    Targets,
}

impl Show {
    /// In the order HELP lists them.
    pub const ALL: &'static [Show] = &[
        Show::Stats,
        Show::Queries,
        Show::Pools,
        Show::Servers,
        Show::Clients,
        Show::Cache,
        Show::NPlusOne,
        Show::Targets,
    ];

    /// The word after SHOW, upper case.
    pub fn name(self) -> &'static str {
        match self {
            Show::Stats => "STATS",
            Show::Queries => "QUERIES",
            Show::Pools => "POOLS",
            Show::Servers => "SERVERS",
            Show::Clients => "CLIENTS",
            Show::Cache => "CACHE",
            Show::NPlusOne => "N_PLUS_ONE",
            Show::Targets => "TARGETS",
        }
    }

    /// `word` upper-cased already, as the console reads it.
    pub fn parse(word: &str) -> Option<Show> {
        Show::ALL.iter().copied().find(|s| s.name() == word)
    }

    pub fn table(self, shared: &Shared) -> Table {
        match self {
            Show::Stats => stats::table(shared),
            Show::Queries => queries::table(shared),
            Show::Pools => pools::table(shared),
            Show::Servers => servers::table(shared),
            Show::Clients => clients::table(shared),
            Show::Cache => cache::table(shared),
            Show::NPlusOne => n_plus_one::table(shared),
            Show::Targets => targets::table(shared),
        }
    }
}

/// "SHOW STATS, SHOW QUERIES, ...", for the errors that list what exists.
pub fn list() -> String {
    Show::ALL
        .iter()
        .map(|c| format!("SHOW {}", c.name()))
        .collect::<Vec<_>>()
        .join(", ")
}
