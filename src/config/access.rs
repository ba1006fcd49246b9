//! The `[[users]]` and `[[databases]]` sections: who may log in, how, and to which databases.

use super::keys::{section, words, Word, RESTART};
use super::{invalid, ConfigError, ADMIN_DATABASE};
use std::collections::HashMap;

section! {
    user: RawUser [["users"]] each |c| c.users.len(), reported as "users";
    keys {
        name: String, RESTART, |c, i| c.users[i].name;
        password: Option<String> = None, RESTART.secret(), |c, i| c.users[i].password;
        scram_verifier: Option<String> = None, RESTART.secret(), |c, i| c.users[i].scram_verifier;
        server_password: Option<String> = None, RESTART.secret(),
            |c, i| c.users[i].server_password;
        auth: Word<AuthMethod> = AuthMethod::ScramSha256.into(), RESTART,
            |c, i| c.users[i].auth.as_str();
        admin: bool = false, RESTART, |c, i| c.users[i].admin;
    }
}

section! {
    database: RawDatabase [["databases"]] each |c| c.databases.len(), reported as "databases";
    keys {
        name: String, RESTART, |c, i| c.databases[i].name;
        server_database: Option<String> = None, RESTART, |c, i| c.databases[i].server_database;
    }
}

pub use database::SECTION as DATABASES;
pub use user::SECTION as USERS;

words! {
    /// How a user's client proves its password.
    pub enum AuthMethod {
        ScramSha256 = "scram-sha-256",
        Md5 = "md5",
    }
}

#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    /// Plaintext password: checks clients (SCRAM verifier derived once at load) and logs in to servers.
    pub password: Option<String>,
    /// A PostgreSQL-style SCRAM verifier for checking clients without storing the password.
    pub scram_verifier: Option<String>,
    /// Password for logging in to servers when only a verifier is configured.
    pub server_password: Option<String>,
    pub auth: AuthMethod,
    /// May connect to the `pgsplit` admin database.
    pub admin: bool,
}

impl User {
    /// The password used to log in to the servers, if any (trust needs none).
    pub fn server_password(&self) -> Option<&str> {
        self.server_password.as_deref().or(self.password.as_deref())
    }
}

#[derive(Clone, Debug)]
pub struct Database {
    pub name: String,
    /// The database name on the servers.
    pub server_database: String,
}

pub(super) fn users(raw: &[RawUser]) -> Result<Vec<User>, ConfigError> {
    if raw.is_empty() {
        return Err(invalid("users", "at least one [[users]] entry is required"));
    }
    let mut seen = HashMap::new();
    let mut users = Vec::new();
    for (i, u) in raw.iter().enumerate() {
        let key = format!("users[{i}]");
        if u.name.is_empty() {
            return Err(invalid(format!("{key}.name"), "must not be empty"));
        }
        if seen.insert(u.name.clone(), i).is_some() {
            return Err(invalid(
                format!("{key}.name"),
                format!("user `{}` is listed twice", u.name),
            ));
        }
        if u.password.is_none() && u.scram_verifier.is_none() {
            return Err(invalid(
                format!("{key}.password"),
                "set `password` or `scram_verifier`",
            ));
        }
        if let Some(v) = &u.scram_verifier {
            if !v.starts_with("SCRAM-SHA-256$") {
                return Err(invalid(
                    format!("{key}.scram_verifier"),
                    "must look like SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>",
                ));
            }
        }
        let auth = u.auth.get(&format!("{key}.auth"))?;
        if auth == AuthMethod::Md5 && u.password.is_none() {
            return Err(invalid(
                format!("{key}.auth"),
                "md5 needs the plaintext `password`",
            ));
        }
        users.push(User {
            name: u.name.clone(),
            password: u.password.clone(),
            scram_verifier: u.scram_verifier.clone(),
            server_password: u.server_password.clone(),
            auth,
            admin: u.admin,
        });
    }
    Ok(users)
}

pub(super) fn databases(raw: &[RawDatabase]) -> Result<Vec<Database>, ConfigError> {
    if raw.is_empty() {
        return Err(invalid(
            "databases",
            "at least one [[databases]] entry is required",
        ));
    }
    let mut databases = Vec::new();
    for (i, d) in raw.iter().enumerate() {
        if d.name.is_empty() {
            return Err(invalid(format!("databases[{i}].name"), "must not be empty"));
        }
        if d.name == ADMIN_DATABASE {
            return Err(invalid(
                format!("databases[{i}].name"),
                "`pgsplit` is reserved for the admin console",
            ));
        }
        databases.push(Database {
            name: d.name.clone(),
            server_database: d.server_database.clone().unwrap_or_else(|| d.name.clone()),
        });
    }
    Ok(databases)
}
