//! The `[replication]` section: replica lag limits and how reads are kept from missing writes.

use super::keys::{section, words, Word, RESTART};
use super::{millis, positive, ConfigError};
use std::time::Duration;

section! {
    replication: RawReplication ["replication"], reported as "replication";
    keys {
        lag_poll_ms: u64 = 50, RESTART, |c| c.replication.lag_poll;
        max_lag_bytes: u64 = 16 << 20, RESTART, |c| c.replication.max_lag_bytes;
        max_lag_ms: u64 = 5_000, RESTART, |c| c.replication.max_lag_ms;
        consistency: Word<Consistency> = Consistency::TableLsn.into(), RESTART,
            |c| c.replication.consistency.as_str();
        max_tracked_tables: usize = 10_000, RESTART, |c| c.replication.max_tracked_tables;
        max_replica_wait_ms: u64 = 5, RESTART, |c| c.replication.max_replica_wait;
    }
}

pub use replication::SECTION;

words! {
    /// How reads are kept from missing writes made through the proxy (`replication.consistency`).
    pub enum Consistency {
        /// A read goes to a replica only if it has replayed the last write to every table it reads.
        TableLsn = "table_lsn",
        /// A session's reads go to a replica only if it has replayed that session's last write.
        Session = "session",
        /// A read goes to a replica only if it has replayed the primary's WAL position read after
        /// the read arrived: it sees every write acknowledged before it, through any instance.
        Global = "global",
        /// No tracking: reads may miss recent writes (replication lag).
        None = "none",
    }
}

impl Consistency {
    /// A replica answers a read only once it has replayed what the read needs.
    pub fn routes_by_lsn(&self) -> bool {
        matches!(self, Consistency::TableLsn | Consistency::Global)
    }
}

#[derive(Clone, Debug)]
pub struct ReplicationConfig {
    /// Interval of each server's health and replay-position poll.
    pub lag_poll: Duration,
    /// A replica further behind gets no reads; 0 means no limit.
    pub max_lag_bytes: u64,
    pub max_lag_ms: u64,
    pub consistency: Consistency,
    /// Tables whose last write LSN is remembered; older entries fold into one floor LSN.
    pub max_tracked_tables: usize,
    /// How long a read may wait for a replica to replay what it needs, asking the replica
    /// itself, before it goes to the primary; zero: no asking, the polled position decides.
    pub max_replica_wait: Duration,
}

pub(super) fn replication(r: &RawReplication) -> Result<ReplicationConfig, ConfigError> {
    let replication = ReplicationConfig {
        lag_poll: millis("replication.lag_poll_ms", r.lag_poll_ms)?,
        max_lag_bytes: r.max_lag_bytes,
        max_lag_ms: r.max_lag_ms,
        consistency: r.consistency.get("replication.consistency")?,
        max_tracked_tables: r.max_tracked_tables,
        max_replica_wait: Duration::from_millis(r.max_replica_wait_ms),
    };
    positive("replication.max_tracked_tables", r.max_tracked_tables)?;
    Ok(replication)
}
