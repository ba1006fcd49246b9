//! `SHOW TARGETS`: each service target, its threshold and whether it is met.

use crate::admin::snapshot;
use crate::admin::table::{n, Table};
use crate::Shared;

pub fn table(shared: &Shared) -> Table {
    Table {
        columns: vec!["target", "comparison", "threshold", "actual", "status"],
        rows: snapshot::targets(shared)
            .rows()
            .into_iter()
            .map(|(name, t)| {
                vec![
                    n(name),
                    n(t.comparison),
                    n(t.target),
                    t.actual.map(|a| format!("{a:.4}")),
                    n(t.status),
                ]
            })
            .collect(),
    }
}
