//! Control-plane connections to the primary: the catalog loads and the cache's WAL follower.

use crate::config::{Config, Database, User};

/// A control-plane connection to the primary's database `db` as `user`; the error keeps the
/// server's SQLSTATE and message for the caller to report.
pub async fn connect(
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
            tracing::debug!(error = %e, "control connection ended");
        }
    });
    Ok(client)
}
