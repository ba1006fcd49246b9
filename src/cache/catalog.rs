//! How writes spread between relations, from the catalog (views, partitions, inheritance, cascading foreign keys, triggers), and the control connection the cache uses.

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
    connect_client(config, db, user, application)
        .await
        .map_err(|e| e.to_string())
}

/// `connect`, keeping the server's error (its SQLSTATE and message) for the caller to report.
pub async fn connect_client(
    config: &Config,
    db: &Database,
    user: &User,
    application: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
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
    let (client, conn) = pg.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "cache control connection ended");
        }
    });
    Ok(client)
}

/// Directed pairs (from, to): a write to `from` can change what reads of `to` return. A view
/// and each relation its rules read, both ways (a write through an updatable view lands in the
/// table); a partition or inheritance child and its parent, both ways; a table whose deletes or
/// updates cascade (or set null/default) into a referencing table, one way only, so tables that
/// merely share a parent stay apart. Materialized views are left out: their rows change only on
/// REFRESH, which is itself a write to them.
const RELATED: &str = "
    select lower(c.relname), lower(p.relname)
      from pg_inherits i
      join pg_class c on c.oid = i.inhrelid
      join pg_class p on p.oid = i.inhparent
    union
    select lower(p.relname), lower(c.relname)
      from pg_inherits i
      join pg_class c on c.oid = i.inhrelid
      join pg_class p on p.oid = i.inhparent
    union
    select lower(t.relname), lower(v.relname)
      from pg_rewrite r
      join pg_class v on v.oid = r.ev_class and v.relkind = 'v'
      join pg_depend d on d.objid = r.oid
                      and d.classid = 'pg_rewrite'::regclass
                      and d.refclassid = 'pg_class'::regclass
      join pg_class t on t.oid = d.refobjid and t.oid <> v.oid
    union
    select lower(v.relname), lower(t.relname)
      from pg_rewrite r
      join pg_class v on v.oid = r.ev_class and v.relkind = 'v'
      join pg_depend d on d.objid = r.oid
                      and d.classid = 'pg_rewrite'::regclass
                      and d.refclassid = 'pg_class'::regclass
      join pg_class t on t.oid = d.refobjid and t.oid <> v.oid
    union
    select lower(p.relname), lower(c.relname)
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
    /// For each relation a write to which reaches others: itself and every relation it
    /// reaches, transitively.
    pub reach: Vec<(String, Vec<String>)>,
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
    let reach = closure(pairs);
    let triggered = client
        .query(TRIGGERED, &[])
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    Ok(Relations { reach, triggered })
}

/// Every relation with outgoing edges, with all it reaches (itself first, the rest sorted).
fn closure(pairs: impl Iterator<Item = (String, String)>) -> Vec<(String, Vec<String>)> {
    let mut edges: HashMap<String, Vec<String>> = HashMap::new();
    for (from, to) in pairs {
        if from != to {
            edges.entry(from).or_default().push(to);
        }
    }
    let mut out: Vec<(String, Vec<String>)> = edges
        .keys()
        .map(|start| {
            let mut seen = std::collections::BTreeSet::new();
            let mut stack = vec![start.clone()];
            while let Some(n) = stack.pop() {
                for next in edges.get(&n).into_iter().flatten() {
                    if next != start && seen.insert(next.clone()) {
                        stack.push(next.clone());
                    }
                }
            }
            let mut all = vec![start.clone()];
            all.extend(seen);
            (start.clone(), all)
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
    use super::closure;

    fn pairs(p: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn writes_reach_dependents_transitively_and_only_forwards() {
        let r = closure(pairs(&[
            // partitions, both ways
            ("events_2024", "events"),
            ("events", "events_2024"),
            // a view over a partition, both ways
            ("events_2024", "recent"),
            ("recent", "events_2024"),
            // cascading foreign keys: leads and properties into showings, one way
            ("leads", "showings"),
            ("properties", "showings"),
        ]));
        let get = |n: &str| r.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(
            get("events").unwrap(),
            vec!["events", "events_2024", "recent"]
        );
        assert_eq!(get("leads").unwrap(), vec!["leads", "showings"]);
        // Siblings stay apart, and the child reaches nothing.
        assert!(!get("properties").unwrap().contains(&"leads".to_string()));
        assert_eq!(get("showings"), None);
    }
}
