//! Post-migration validation through the migration's own validate_performance_indexes().

use tokio_postgres::Client;

use super::preflight::bytes;
use crate::control::ControlError;

/// One row of validate_performance_indexes().
#[derive(Debug, Clone)]
pub struct IndexCheck {
    pub index_name: String,
    pub table_name: String,
    pub exists: bool,
    pub valid: bool,
    pub ready: bool,
    pub size_bytes: i64,
    pub scans: i64,
    pub required: bool,
}

/// Reads validate_performance_indexes(); None when the function is absent (001 not applied).
pub async fn read(client: &Client) -> Result<Option<Vec<IndexCheck>>, ControlError> {
    let ctx = "calling validate_performance_indexes()";
    let present: bool = client
        .query_one(
            "SELECT to_regprocedure('validate_performance_indexes()') IS NOT NULL",
            &[],
        )
        .await
        .and_then(|r| r.try_get(0))
        .map_err(|e| ControlError::query(ctx, &e))?;
    if !present {
        return Ok(None);
    }
    let rows = client
        .query("SELECT * FROM validate_performance_indexes()", &[])
        .await
        .map_err(|e| ControlError::query(ctx, &e))?;
    let checks = rows
        .iter()
        .map(|r| {
            Ok(IndexCheck {
                index_name: r.try_get("index_name")?,
                table_name: r.try_get("table_name")?,
                exists: r.try_get("index_exists")?,
                valid: r.try_get("is_valid")?,
                ready: r.try_get("is_ready")?,
                size_bytes: r.try_get("size_bytes")?,
                scans: r.try_get("scans")?,
                required: r.try_get("required")?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .map_err(|e| ControlError::query(ctx, &e))?;
    Ok(Some(checks))
}

/// Prints the validation (every row when `verbose`) and fails if a required index is missing,
/// invalid or not ready.
pub async fn report(client: &Client, verbose: bool) -> Result<(), ControlError> {
    let Some(checks) = read(client).await? else {
        println!(
            "validation: validate_performance_indexes() is not installed (version 001 not applied)"
        );
        return Ok(());
    };
    if verbose {
        println!(
            "  {:<42} {:<22} {:>7} {:>6} {:>6} {:>10} {:>6}",
            "index", "table", "exists", "valid", "ready", "size", "scans"
        );
        for c in &checks {
            let yn = |b: bool| if b { "yes" } else { "no" };
            let exists = if !c.exists && !c.required {
                "skipped"
            } else {
                yn(c.exists)
            };
            println!(
                "  {:<42} {:<22} {:>7} {:>6} {:>6} {:>10} {:>6}",
                c.index_name,
                c.table_name,
                exists,
                yn(c.valid),
                yn(c.ready),
                bytes(c.size_bytes.max(0) as u64),
                c.scans
            );
        }
    }
    let required: Vec<&IndexCheck> = checks.iter().filter(|c| c.required).collect();
    let bad: Vec<String> = required
        .iter()
        .filter(|c| !(c.exists && c.valid && c.ready))
        .map(|c| {
            let state = if !c.exists {
                "missing"
            } else if !c.valid {
                "INVALID"
            } else {
                "not ready"
            };
            format!("{} on {} is {state}", c.index_name, c.table_name)
        })
        .collect();
    let optional = checks.len() - required.len();
    let note = if optional > 0 {
        format!(" ({optional} skipped: extension not installed)")
    } else {
        String::new()
    };
    if bad.is_empty() {
        println!(
            "validation: {}/{} required indexes present and valid{note}",
            required.len(),
            required.len()
        );
        Ok(())
    } else {
        Err(ControlError::Validation(bad.join(", ")))
    }
}
