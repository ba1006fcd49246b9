//! The read-only test for what a statement reaches without naming it: views it reads, types it casts to, `x.f` calls.

use super::catalog::FunctionCatalog;
use super::facts::{Facts, Use};

/// Why a read that names only read-only functions still cannot run on a replica, if it cannot.
pub(super) fn read_only(facts: &Facts, catalog: &FunctionCatalog) -> Result<(), &'static str> {
    for (name, usage) in facts.relations() {
        if usage == Use::Read && catalog.relation(&name).is_some_and(|v| !v.is_read_only()) {
            return Err("relation reaches a volatile function");
        }
    }
    if facts
        .types
        .iter()
        .any(|t| catalog.type_reach(t).is_some_and(|v| !v.is_read_only()))
    {
        return Err("type reaches a volatile function");
    }
    if facts.attributes.iter().any(|a| catalog.attribute_call(a)) {
        return Err("attribute notation may call a volatile function");
    }
    Ok(())
}
