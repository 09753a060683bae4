//! Access control: who may call what (docs/decisions/0006-access-control.md).
//!
//! With no admin token configured, auth is off and every call is open. With one:
//! - the admin token (`Authorization: Bearer <admin token>`) may do everything: management, reading stream
//!   configurations, listing sessions, minting viewer tokens;
//! - a viewer token ([`token`]) opens viewer sessions of its one stream until it expires, and, if it says so,
//!   plays from the recording (`dvr`) and downloads exports (`export`);
//! - a session id is the capability over its session (control, stats, trickle, delete); the DVR right is fixed
//!   when the session opens.
//!
//! Viewer tokens are signed with a random 32-byte key kept in `<data_dir>/token.key` (0600), made on first use.
//! Deleting the file and restarting revokes every viewer token; changing the admin token does not.

pub mod extract;
pub mod token;

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;

use crate::error::AppError;
use token::{constant_time_eq, TokenError, TokenKey, ViewerClaims};

/// File of the viewer-token key inside the data directory.
pub const KEY_FILE: &str = "token.key";
/// Bytes of the viewer-token key.
const KEY_BYTES: usize = 32;

/// What a caller may do on one stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Play from the recording and list it.
    pub dvr: bool,
    /// Download exports.
    pub export: bool,
}

impl Grant {
    /// Everything: the admin, or anyone while auth is off.
    pub const ALL: Grant = Grant {
        dvr: true,
        export: true,
    };

    pub fn require_dvr(self) -> Result<(), AppError> {
        if self.dvr {
            Ok(())
        } else {
            Err(AppError::Forbidden(
                "this token has no DVR right (mint one with \"dvr\": true)".into(),
            ))
        }
    }

    pub fn require_export(self) -> Result<(), AppError> {
        if self.export {
            Ok(())
        } else {
            Err(AppError::Forbidden(
                "this token has no export right (mint one with \"export\": true)".into(),
            ))
        }
    }
}

/// The gateway's access rules: the admin token and the key of viewer tokens. `Debug` prints neither.
pub struct Access {
    admin_token: Option<String>,
    key: Option<TokenKey>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("enabled", &self.enabled())
            .finish()
    }
}

impl Access {
    /// Auth off: everything open.
    pub fn open() -> Access {
        Access {
            admin_token: None,
            key: None,
        }
    }

    /// Auth on, with `key` signing viewer tokens.
    pub fn new(admin_token: String, key: TokenKey) -> Access {
        Access {
            admin_token: Some(admin_token),
            key: Some(key),
        }
    }

    /// Auth on when `admin_token` is set; the key is read from (or first written to) `data_dir`. Blocking.
    pub fn load(admin_token: Option<&str>, data_dir: &Path) -> anyhow::Result<Access> {
        match admin_token {
            None => Ok(Access::open()),
            Some(t) => Ok(Access::new(t.to_owned(), load_or_create_key(data_dir)?)),
        }
    }

    pub fn enabled(&self) -> bool {
        self.admin_token.is_some()
    }

    fn is_admin(&self, given: &str) -> bool {
        self.admin_token
            .as_deref()
            .is_some_and(|t| constant_time_eq(given.as_bytes(), t.as_bytes()))
    }

    /// Passes the admin (or anyone while auth is off).
    pub fn check_admin(&self, given: Option<&str>) -> Result<(), AppError> {
        if !self.enabled() {
            return Ok(());
        }
        match given {
            None => Err(AppError::Unauthorized(
                "this call needs `Authorization: Bearer <admin token>`".into(),
            )),
            Some(g) if self.is_admin(g) => Ok(()),
            Some(_) => Err(AppError::Unauthorized(
                "this call needs the admin token; the one given is not it".into(),
            )),
        }
    }

    /// What `given` may do on `stream` at `now_ms`: everything for the admin (or while auth is off), a viewer
    /// token's rights if it is for this stream and still valid.
    pub fn grant(&self, given: Option<&str>, stream: &str, now_ms: i64) -> Result<Grant, AppError> {
        let Some(key) = &self.key else {
            return Ok(Grant::ALL);
        };
        let Some(given) = given else {
            return Err(AppError::Unauthorized(
                "this call needs a viewer token: `Authorization: Bearer <token>` or `?token=<token>`".into(),
            ));
        };
        if self.is_admin(given) {
            return Ok(Grant::ALL);
        }
        let claims = key.verify(given, now_ms).map_err(|e| match e {
            TokenError::Invalid => AppError::Unauthorized(e.to_string()),
            TokenError::Expired { .. } => AppError::TokenExpired(e.to_string()),
        })?;
        if claims.stream != stream {
            return Err(AppError::Forbidden(format!(
                "this token is for stream {:?}, not {stream:?}",
                claims.stream
            )));
        }
        Ok(Grant {
            dvr: claims.dvr,
            export: claims.export,
        })
    }

    /// Signs a viewer token; `None` while auth is off (there is nothing to sign with, and nothing needs one).
    pub fn mint(&self, claims: &ViewerClaims) -> Option<String> {
        self.key.as_ref().map(|k| k.mint(claims))
    }

    /// What an operator should hear about at start-up and in `/health`.
    pub fn warnings(&self, bind: SocketAddr) -> Vec<String> {
        if self.enabled() || bind.ip().is_loopback() {
            return Vec::new();
        }
        vec![format!(
            "no admin token is set and the gateway listens on {bind}: anyone who can reach it can add, change \
             and delete streams, read their configuration and watch every stream; set --admin-token / \
             ADMIN_TOKEN, or bind to 127.0.0.1"
        )]
    }
}

/// Makes the data directory (0700 when new) and the database file (0600, also when an older version left it
/// readable to others) private before SQLite opens it: it holds camera passwords. SQLite gives its `-wal` and
/// `-shm` files the database file's mode. Blocking.
pub fn private_files(data_dir: &Path) -> anyhow::Result<()> {
    let mut dir = std::fs::DirBuilder::new();
    dir.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
    dir.create(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let db = crate::store::DB_FILE;
        for name in [db.to_owned(), format!("{db}-wal"), format!("{db}-shm")] {
            let path = data_dir.join(&name);
            if name == db {
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .mode(0o600)
                    .open(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
            }
            if path.exists() {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("making {} private", path.display()))?;
            }
        }
    }
    Ok(())
}

/// Reads `<data_dir>/token.key`, or writes a new random one (mode 0600, never overwriting one a concurrent start
/// wrote first).
fn load_or_create_key(data_dir: &Path) -> anyhow::Result<TokenKey> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let path = data_dir.join(KEY_FILE);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(&path) {
        Ok(mut f) => {
            let secret: [u8; KEY_BYTES] = rand::random();
            f.write_all(&secret)
                .and_then(|()| f.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(TokenKey::new(&secret))
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let mut secret = Vec::new();
            std::fs::File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut secret))
                .with_context(|| format!("reading {}", path.display()))?;
            if secret.len() < KEY_BYTES {
                anyhow::bail!(
                    "{} holds {} bytes, fewer than {KEY_BYTES}: delete it to make a new key (this revokes \
                     every viewer token)",
                    path.display(),
                    secret.len()
                );
            }
            Ok(TokenKey::new(&secret))
        }
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_000_000_000;

    fn access() -> Access {
        Access::new("admin-secret".into(), TokenKey::new(&[1; 32]))
    }

    fn viewer(a: &Access, stream: &str, dvr: bool) -> String {
        a.mint(&ViewerClaims {
            stream: stream.into(),
            expires_ms: NOW + 1000,
            dvr,
            export: false,
        })
        .unwrap()
    }

    #[test]
    fn off_lets_everyone_do_everything() {
        let a = Access::open();
        assert!(a.check_admin(None).is_ok());
        assert_eq!(a.grant(None, "cam", NOW).unwrap(), Grant::ALL);
        assert!(a
            .mint(&ViewerClaims {
                stream: "cam".into(),
                expires_ms: NOW,
                dvr: false,
                export: false
            })
            .is_none());
    }

    #[test]
    fn admin_and_viewer_tokens() {
        let a = access();
        assert!(a.check_admin(Some("admin-secret")).is_ok());
        assert!(matches!(
            a.check_admin(None),
            Err(AppError::Unauthorized(_))
        ));
        assert!(matches!(
            a.check_admin(Some("admin-secreT")),
            Err(AppError::Unauthorized(_))
        ));
        let v = viewer(&a, "cam", false);
        assert!(
            matches!(a.check_admin(Some(&v)), Err(AppError::Unauthorized(_))),
            "a viewer token is not the admin's"
        );
        assert_eq!(
            a.grant(Some("admin-secret"), "any", NOW).unwrap(),
            Grant::ALL
        );
        let g = a.grant(Some(&v), "cam", NOW).unwrap();
        assert_eq!(
            g,
            Grant {
                dvr: false,
                export: false
            }
        );
        assert!(matches!(g.require_dvr(), Err(AppError::Forbidden(_))));
        assert!(matches!(
            a.grant(Some(&v), "other", NOW),
            Err(AppError::Forbidden(_))
        ));
        assert!(matches!(
            a.grant(Some(&v), "cam", NOW + 1000),
            Err(AppError::TokenExpired(_))
        ));
        assert!(matches!(
            a.grant(None, "cam", NOW),
            Err(AppError::Unauthorized(_))
        ));
        assert!(viewer(&a, "cam", true).len() < 200);
        assert!(
            a.grant(Some(&viewer(&a, "cam", true)), "cam", NOW)
                .unwrap()
                .dvr
        );
    }

    #[test]
    fn warns_only_when_open_beyond_loopback() {
        let open = Access::open();
        assert!(open.warnings("127.0.0.1:8009".parse().unwrap()).is_empty());
        assert!(open.warnings("[::1]:8009".parse().unwrap()).is_empty());
        assert_eq!(open.warnings("0.0.0.0:8009".parse().unwrap()).len(), 1);
        assert!(access()
            .warnings("0.0.0.0:8009".parse().unwrap())
            .is_empty());
        assert!(!format!("{:?}", access()).contains("admin-secret"));
    }

    #[test]
    fn key_file_is_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = Access::load(Some("t"), dir.path()).unwrap();
        let token = viewer(&a, "cam", false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // The same key after a restart, whatever the admin token became.
        let b = Access::load(Some("another admin token"), dir.path()).unwrap();
        assert!(b.grant(Some(&token), "cam", NOW).is_ok());
        std::fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        assert!(Access::load(Some("t"), dir.path()).is_err());
        assert!(!Access::load(None, dir.path()).unwrap().enabled());
    }
}
