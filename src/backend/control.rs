//! Control-plane connections (catalog loads, the cache's WAL follower, health and position checks): one login for all of them.

use crate::config::{Config, Database, User};
use std::time::Duration;

/// How the proxy's own connections log in to `host:port`: as a configured user, to a configured
/// database, under an application name that tells them apart in pg_stat_activity.
pub fn login(
    host: &str,
    port: u16,
    db: &Database,
    user: &User,
    application: &str,
    timeout: Duration,
) -> tokio_postgres::Config {
    let mut pg = tokio_postgres::Config::new();
    pg.host(host)
        .port(port)
        .user(&user.name)
        .dbname(&db.server_database)
        .application_name(application)
        .connect_timeout(timeout);
    if let Some(pw) = user.server_password() {
        pg.password(pw);
    }
    pg
}

/// A control-plane connection to the primary's database `db` as `user`; the error keeps the
/// server's SQLSTATE and message for the caller to report.
pub async fn connect(
    config: &Config,
    db: &Database,
    user: &User,
    application: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let pg = login(
        &config.primary.host,
        config.primary.port,
        db,
        user,
        application,
        config.pool.connect_timeout,
    );
    let (client, conn) = pg.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "control connection ended");
        }
    });
    Ok(client)
}
