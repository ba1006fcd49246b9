//! Connecting to PostgreSQL for the control plane, and the few catalog facts every command needs.

use std::str::FromStr;

use futures_util::StreamExt;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};

use super::error::{describe, ControlError};

/// A connected client plus where it points (never the password), for messages.
pub(crate) struct Db {
    pub client: Client,
    pub target: String,
    pub config: Config,
}

/// Parses the URL without connecting, so a typo is reported as such and not as a refused login.
pub(crate) fn parse_url(url: &str) -> Result<Config, ControlError> {
    Config::from_str(url).map_err(|e| ControlError::InvalidUrl(e.to_string()))
}

/// `user@host:port/dbname`, for messages (the password never appears).
pub(crate) fn describe_target(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{}:{}/{}",
        config.get_user().unwrap_or("?"),
        host,
        port,
        config.get_dbname().unwrap_or("?")
    )
}

/// Connects without TLS (the control plane runs next to the server) and drives the connection on
/// a task. Server NOTICEs go to tracing at debug: "already exists, skipping" is expected noise.
pub(crate) async fn connect(url: &str, application_name: &str) -> Result<Db, ControlError> {
    let mut config = parse_url(url)?;
    config.application_name(application_name);
    let target = describe_target(&config);
    let (client, mut connection) =
        config
            .connect(NoTls)
            .await
            .map_err(|e| ControlError::Connect {
                target: target.clone(),
                message: describe(&e),
            })?;
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notice(n)) => {
                    tracing::debug!(notice = n.message(), "server notice")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "control connection closed");
                    break;
                }
            }
        }
    });
    Ok(Db {
        client,
        target,
        config,
    })
}

/// `server_version_num` as a number (e.g. 150004).
pub(crate) async fn server_version_num(client: &Client) -> Result<i32, ControlError> {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| ControlError::query("reading server_version_num", &e))?;
    row.try_get(0)
        .map_err(|e| ControlError::query("reading server_version_num", &e))
}

/// Whether `extension` is installed in the connected database (not merely available).
pub(crate) async fn extension_installed(
    client: &Client,
    extension: &str,
) -> Result<bool, ControlError> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = $1)",
            &[&extension],
        )
        .await
        .map_err(|e| ControlError::query(format!("checking extension {extension}"), &e))?;
    row.try_get(0)
        .map_err(|e| ControlError::query(format!("checking extension {extension}"), &e))
}

/// Whether `extension` could be installed here (its control file is on the server).
pub(crate) async fn extension_available(
    client: &Client,
    extension: &str,
) -> Result<bool, ControlError> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = $1)",
            &[&extension],
        )
        .await
        .map_err(|e| ControlError::query(format!("checking extension {extension}"), &e))?;
    row.try_get(0)
        .map_err(|e| ControlError::query(format!("checking extension {extension}"), &e))
}

/// Quotes an identifier the way PostgreSQL's quote_ident does, for SQL this crate writes itself.
pub(crate) fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// A one-line, length-capped preview of SQL for progress lines and messages.
pub(crate) fn preview(sql: &str, max: usize) -> String {
    let flat: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}
