//! The console's result sets: text columns, and the cell formats every command shares.

/// A result set of text columns.
pub struct Table {
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Option<String>>>,
}

/// Milliseconds, to the microsecond.
pub(crate) fn ms(v: f64) -> Option<String> {
    Some(format!("{v:.3}"))
}

pub(crate) fn n<T: ToString>(v: T) -> Option<String> {
    Some(v.to_string())
}
