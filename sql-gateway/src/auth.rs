//! Who may connect to the SQL gateway. `trust` (the default, as a fresh
//! Postgres on loopback: any user, no password) or SCRAM-SHA-256 against a
//! password file, the exchange Postgres uses since 14 (RFC 5802/7677), so
//! libpq, psycopg, asyncpg and JDBC authenticate as they do against Postgres.
//!
//! The password file holds `user:password` lines (`#` comments, blank lines
//! ignored). Passwords are salted and hashed (PBKDF2, 4096 rounds, as
//! Postgres's default) when the file is loaded; cleartext is not kept.

use std::collections::HashMap;
use std::path::Path;

use async_trait::async_trait;
use pgwire::api::auth::sasl::scram::{SCRAM_ITERATIONS, gen_salted_password};
use pgwire::api::auth::{AuthSource, LoginInfo, Password};
use pgwire::error::PgWireResult;

/// Largest password file read: it is a list of users, not a database.
const MAX_PASSWORD_FILE: u64 = 1 << 20;

#[derive(Debug, Clone, Default)]
pub enum SqlAuth {
    #[default]
    Trust,
    ScramSha256(std::sync::Arc<PasswordFile>),
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordFileError {
    #[error("reading the SQL password file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the SQL password file {path} is {size} bytes; at most {MAX_PASSWORD_FILE}")]
    TooBig { path: String, size: u64 },
    #[error("the SQL password file {path}, line {line}: {problem}")]
    Line {
        path: String,
        line: usize,
        problem: &'static str,
    },
    #[error("the SQL password file {path} names no user")]
    Empty { path: String },
}

/// Users and their SCRAM salted passwords.
#[derive(Debug)]
pub struct PasswordFile {
    users: HashMap<String, Password>,
    /// Answered for an unknown user, so the exchange runs to its end and
    /// fails as a wrong password does: Postgres does not tell a client
    /// which user names exist, nor does this.
    unknown: Password,
}

fn random_salt() -> Vec<u8> {
    // 122 random bits from the OS generator, through a crate already here.
    uuid::Uuid::new_v4().into_bytes().to_vec()
}

/// The `user:password` lines of a users file (this one and the broker's
/// `--sasl-users-file`): blank lines and `#` comments skipped, the password
/// everything after the first colon, each user once. An error names the
/// line (1-based; 0 when there is no user at all).
pub fn user_lines(text: &str) -> Result<Vec<(&str, &str)>, (usize, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let (user, password) = line
            .split_once(':')
            .ok_or((i + 1, "expected user:password"))?;
        if user.is_empty() || password.is_empty() {
            return Err((i + 1, "the user name and the password must not be empty"));
        }
        if out.iter().any(|(u, _)| *u == user) {
            return Err((i + 1, "this user is named twice"));
        }
        out.push((user, password));
    }
    if out.is_empty() {
        return Err((0, "no user"));
    }
    Ok(out)
}

impl PasswordFile {
    pub fn load(path: &Path) -> Result<Self, PasswordFileError> {
        let shown = path.display().to_string();
        let read = |source| PasswordFileError::Read {
            path: shown.clone(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read)?.len();
        if size > MAX_PASSWORD_FILE {
            return Err(PasswordFileError::TooBig { path: shown, size });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        Self::parse(&text).map_err(|e| match e {
            (0, _) => PasswordFileError::Empty { path: shown },
            (line, problem) => PasswordFileError::Line {
                path: shown,
                line,
                problem,
            },
        })
    }

    /// Parses `user:password` lines; an error names the line (1-based, 0
    /// when there is no user at all).
    pub fn parse(text: &str) -> Result<Self, (usize, &'static str)> {
        let mut users = HashMap::new();
        for (user, password) in user_lines(text)? {
            let salt = random_salt();
            let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
            users.insert(user.to_string(), Password::new(Some(salt), salted));
        }
        let bogus = uuid::Uuid::new_v4().into_bytes().repeat(2);
        Ok(PasswordFile {
            users,
            unknown: Password::new(Some(random_salt()), bogus),
        })
    }

    pub fn users(&self) -> usize {
        self.users.len()
    }
}

#[async_trait]
impl AuthSource for PasswordFile {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let known = login.user().and_then(|u| self.users.get(u));
        Ok(known.unwrap_or(&self.unknown).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_users_and_names_the_bad_line() {
        let f = PasswordFile::parse("# users\n\nalice:s3cret:with:colons\r\nbob:pw\n").unwrap();
        assert_eq!(f.users(), 2);
        let a = &f.users["alice"];
        // Salted and hashed, not the cleartext.
        assert_eq!(a.password().len(), 32);
        assert_eq!(
            a.password(),
            gen_salted_password("s3cret:with:colons", a.salt().unwrap(), SCRAM_ITERATIONS)
        );
        assert_ne!(f.users["bob"].salt(), a.salt());
        assert_eq!(
            PasswordFile::parse("alice\n").err(),
            Some((1, "expected user:password"))
        );
        assert!(matches!(PasswordFile::parse("a:b\n:pw\n"), Err((2, _))));
        assert!(matches!(PasswordFile::parse("a:b\na:c\n"), Err((2, _))));
        assert!(matches!(PasswordFile::parse("# none\n"), Err((0, _))));
    }
}
