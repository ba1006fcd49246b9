//! Relation groups from the catalog (views over tables, partitions and inheritance) and the control connection the cache uses.

use crate::config::{Config, Database, User};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// A control-plane connection to the primary's database `db` as `user`.
pub async fn connect(
    config: &Config,
    db: &Database,
    user: &User,
    application: &str,
) -> Result<tokio_postgres::Client, String> {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&config.primary.host)
        .port(config.primary.port)
        .user(&user.name)
        .dbname(&db.server_database)
        .application_name(application)
        .connect_timeout(config.pool.connect_timeout);
    if let Some(pw) = user.server_password() {
        pg.password(pw);
    }
    let (client, conn) = pg
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "cache control connection ended");
        }
    });
    Ok(client)
}

/// Pairs of relations whose rows are shared: a view and each relation its rules read, a
/// partition or inheritance child and its parent, a referencing table and the table whose
/// deletes or updates cascade into it. Materialized views are left out: their rows change only
/// on REFRESH, which is itself a write to them.
const RELATED: &str = "
    select lower(c.relname), lower(p.relname)
      from pg_inherits i
      join pg_class c on c.oid = i.inhrelid
      join pg_class p on p.oid = i.inhparent
    union
    select distinct lower(v.relname), lower(t.relname)
      from pg_rewrite r
      join pg_class v on v.oid = r.ev_class and v.relkind = 'v'
      join pg_depend d on d.objid = r.oid
                      and d.classid = 'pg_rewrite'::regclass
                      and d.refclassid = 'pg_class'::regclass
      join pg_class t on t.oid = d.refobjid and t.oid <> v.oid
    union
    select lower(c.relname), lower(p.relname)
      from pg_constraint k
      join pg_class c on c.oid = k.conrelid
      join pg_class p on p.oid = k.confrelid
     where k.contype = 'f'
       and (k.confdeltype in ('c', 'n', 'd') or k.confupdtype in ('c', 'n', 'd'))";

/// Tables with user triggers: a write to them may write anything else.
const TRIGGERED: &str = "
    select distinct lower(c.relname)
      from pg_trigger t
      join pg_class c on c.oid = t.tgrelid
     where not t.tgisinternal";

/// What the catalog says about how writes spread.
pub struct Relations {
    /// Relation names that must be invalidated together (connected components).
    pub groups: Vec<Vec<String>>,
    /// Tables whose triggers may write other tables.
    pub triggered: Vec<String>,
}

pub async fn load(client: &tokio_postgres::Client) -> Result<Relations, String> {
    let rows = client
        .query(RELATED, &[])
        .await
        .map_err(|e| e.to_string())?;
    let pairs = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)));
    let groups = components(pairs);
    let triggered = client
        .query(TRIGGERED, &[])
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    Ok(Relations { groups, triggered })
}

/// Union-find over name pairs.
fn components(pairs: impl Iterator<Item = (String, String)>) -> Vec<Vec<String>> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut parent: Vec<usize> = Vec::new();
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut id = |name: String, parent: &mut Vec<usize>| -> usize {
        *index.entry(name).or_insert_with(|| {
            parent.push(parent.len());
            parent.len() - 1
        })
    };
    let mut edges = Vec::new();
    for (a, b) in pairs {
        let (x, y) = (id(a, &mut parent), id(b, &mut parent));
        edges.push((x, y));
    }
    for (x, y) in edges {
        let (rx, ry) = (find(&mut parent, x), find(&mut parent, y));
        if rx != ry {
            parent[rx] = ry;
        }
    }
    let mut groups: HashMap<usize, Vec<String>> = HashMap::new();
    for (name, i) in index {
        let r = find(&mut parent, i);
        groups.entry(r).or_default().push(name);
    }
    let mut out: Vec<Vec<String>> = groups
        .into_values()
        .map(|mut g| {
            g.sort();
            g
        })
        .collect();
    out.sort();
    out
}

/// Keeps every database's relation groups fresh: every minute, and soon after DDL through
/// the proxy (`changed` is notified).
pub async fn refresh_groups(
    config: Arc<Config>,
    cache: Arc<super::ResultCache>,
    changed: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(user) = config.users.first() else {
        return;
    };
    loop {
        for db in &config.databases {
            let name: Arc<str> = Arc::from(db.name.as_str());
            let relations = match connect(&config, db, user, "pgsplit-cache-catalog").await {
                Ok(c) => load(&c).await,
                Err(e) => Err(e),
            };
            match relations {
                Ok(r) => cache.generations.set_relations(&name, r),
                Err(e) => tracing::warn!(database = %db.name, error = %e,
                    "cannot load views and partitions for cache invalidation; writes invalidate only the tables they name"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = changed.notified() => {
                // Let a burst of DDL finish before reading the catalog.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::components;

    #[test]
    fn pairs_become_connected_groups() {
        let pairs = [
            ("events_2024", "events"),
            ("events_2025", "events"),
            ("recent_events", "events_2025"),
            ("lead_view", "leads"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()));
        let g = components(pairs);
        assert_eq!(
            g,
            vec![
                vec!["events", "events_2024", "events_2025", "recent_events"],
                vec!["lead_view", "leads"],
            ]
        );
    }
}
