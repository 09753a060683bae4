//! Persistence of stream definitions in SQLite (`<data-dir>/gateway.db`), so streams come back after a restart.
//!
//! Schema (version kept in `PRAGMA user_version`, migrated forward at open):
//! - `streams(source_id TEXT PRIMARY KEY, inputs TEXT /* JSON [{label, url, priority, transport}] */,
//!   should_record INTEGER /* 0|1 */, restart_interval_secs INTEGER, created_ms INTEGER /* epoch ms */,
//!   retention_max_age_secs INTEGER NULL, retention_max_bytes INTEGER NULL)`;
//!   the URLs in `inputs` never carry credentials.
//! - `stream_credentials(source_id TEXT PRIMARY KEY REFERENCES streams ON DELETE CASCADE, username, password)`:
//!   credentials live apart from URLs, so a dump of `streams` leaks nothing.
//! - `segments(id, source_id, start_ms, end_ms /* NULL while writing */, path UNIQUE, bytes, codec, width, height,
//!   state /* writing|complete|recovered */)`, indexed by `(source_id, start_ms)`: the recordings catalog
//!   (`catalog.rs`). Rows are not tied to `streams`: recordings outlive a deleted stream until retention.
//!
//! One connection behind a `std::sync::Mutex`, locked only inside `spawn_blocking`: SQLite calls never block the
//! async runtime's threads.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use sources::{Credentials, InputSpec, InputUrl, Transport};

use crate::definition::StreamDefinition;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "gateway.db";

/// Migrations; entry `i` moves the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE streams (
        source_id TEXT PRIMARY KEY NOT NULL,
        inputs TEXT NOT NULL,
        should_record INTEGER NOT NULL DEFAULT 0,
        restart_interval_secs INTEGER NOT NULL,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE stream_credentials (
        source_id TEXT PRIMARY KEY NOT NULL REFERENCES streams (source_id) ON DELETE CASCADE,
        username TEXT NOT NULL,
        password TEXT NOT NULL
    );
"#,
    r#"
    CREATE TABLE segments (
        id INTEGER PRIMARY KEY,
        source_id TEXT NOT NULL,
        start_ms INTEGER NOT NULL,
        end_ms INTEGER,
        path TEXT NOT NULL UNIQUE,
        bytes INTEGER NOT NULL DEFAULT 0,
        codec TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        state TEXT NOT NULL
    );
    CREATE INDEX segments_by_time ON segments (source_id, start_ms);
"#,
    r#"
    ALTER TABLE streams ADD COLUMN retention_max_age_secs INTEGER;
    ALTER TABLE streams ADD COLUMN retention_max_bytes INTEGER;
"#,
];

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A stream with this id is already stored.
    #[error("stream {0:?} exists already")]
    Exists(String),
    /// No stream with this id is stored.
    #[error("stream {0:?} is not stored")]
    Missing(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// One input as stored in the `inputs` JSON column.
#[derive(Serialize, Deserialize)]
struct StoredInput {
    label: String,
    /// Without credentials.
    url: String,
    priority: i32,
    /// `tcp` or `udp`.
    transport: String,
}

/// The gateway's database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (creating if needed) `<data_dir>/gateway.db` and migrates it.
    pub async fn open(data_dir: &Path) -> anyhow::Result<Store> {
        let data_dir = data_dir.to_owned();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&data_dir)
                .with_context(|| format!("creating data directory {}", data_dir.display()))?;
            let path = data_dir.join(DB_FILE);
            let mut conn =
                Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
            conn.pragma_update(None, "foreign_keys", true)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            migrate(&mut conn).with_context(|| format!("migrating {}", path.display()))?;
            Ok(Store {
                conn: Arc::new(Mutex::new(conn)),
            })
        })
        .await?
    }

    /// Runs `f` on the connection in a blocking thread.
    pub(crate) async fn with_conn<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Other(anyhow!("store task failed: {e}")))?
    }

    /// Runs `f` on the connection on this thread, which must not be a runtime worker (a DVR player's thread).
    pub(crate) fn with_conn_blocking<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Stores a new stream; [`StoreError::Exists`] if its id is taken.
    pub async fn insert(&self, def: StreamDefinition) -> Result<(), StoreError> {
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(other)?;
            let inputs = inputs_json(&def.inputs)?;
            let inserted = tx
                .execute(
                    "INSERT INTO streams (source_id, inputs, should_record, restart_interval_secs, created_ms,
                        retention_max_age_secs, retention_max_bytes)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (source_id) DO NOTHING",
                    params![
                        def.source_id,
                        inputs,
                        def.should_record,
                        def.restart_interval_secs,
                        def.created_ms,
                        def.retention.max_age_secs.map(|v| v as i64),
                        def.retention.max_bytes.map(|v| v as i64)
                    ],
                )
                .map_err(other)?;
            if inserted == 0 {
                return Err(StoreError::Exists(def.source_id));
            }
            write_credentials(&tx, &def.source_id, def.credentials.as_ref())?;
            tx.commit().map_err(other)
        })
        .await
    }

    /// Replaces a stored stream's definition (its `created_ms` is kept); [`StoreError::Missing`] if unknown.
    pub async fn update(&self, def: StreamDefinition) -> Result<(), StoreError> {
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(other)?;
            let inputs = inputs_json(&def.inputs)?;
            let updated = tx
                .execute(
                    "UPDATE streams SET inputs = ?2, should_record = ?3, restart_interval_secs = ?4,
                        retention_max_age_secs = ?5, retention_max_bytes = ?6
                     WHERE source_id = ?1",
                    params![
                        def.source_id,
                        inputs,
                        def.should_record,
                        def.restart_interval_secs,
                        def.retention.max_age_secs.map(|v| v as i64),
                        def.retention.max_bytes.map(|v| v as i64)
                    ],
                )
                .map_err(other)?;
            if updated == 0 {
                return Err(StoreError::Missing(def.source_id));
            }
            write_credentials(&tx, &def.source_id, def.credentials.as_ref())?;
            tx.commit().map_err(other)
        })
        .await
    }

    /// Deletes a stream and its credentials; [`StoreError::Missing`] if unknown.
    pub async fn delete(&self, source_id: &str) -> Result<(), StoreError> {
        let id = source_id.to_owned();
        self.with_conn(move |conn| {
            let tx = conn.transaction().map_err(other)?;
            tx.execute("DELETE FROM stream_credentials WHERE source_id = ?1", [&id])
                .map_err(other)?;
            let deleted = tx
                .execute("DELETE FROM streams WHERE source_id = ?1", [&id])
                .map_err(other)?;
            if deleted == 0 {
                return Err(StoreError::Missing(id));
            }
            tx.commit().map_err(other)
        })
        .await
    }

    /// One stored stream, if any.
    pub async fn get(&self, source_id: &str) -> Result<Option<StreamDefinition>, StoreError> {
        let id = source_id.to_owned();
        self.with_conn(move |conn| {
            let row = conn
                .query_row(
                    &format!("{SELECT} WHERE s.source_id = ?1"),
                    [&id],
                    Row::read,
                )
                .optional()
                .map_err(other)?;
            row.map(Row::into_definition)
                .transpose()
                .map_err(StoreError::Other)
        })
        .await
    }

    /// Every stored stream, oldest first. A row that no longer parses is skipped with a warning, so one bad row
    /// cannot keep the gateway from starting.
    pub async fn list(&self) -> Result<Vec<StreamDefinition>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare(&format!("{SELECT} ORDER BY s.created_ms, s.source_id"))
                .map_err(other)?;
            let rows = stmt.query_map([], Row::read).map_err(other)?;
            let mut defs = Vec::new();
            for row in rows {
                let row = row.map_err(other)?;
                let id = row.source_id.clone();
                match row.into_definition() {
                    Ok(d) => defs.push(d),
                    Err(e) => tracing::warn!(source_id = %id, error = format!("{e:#}"), "skipping unreadable stream"),
                }
            }
            Ok(defs)
        })
        .await
    }
}

const SELECT: &str =
    "SELECT s.source_id, s.inputs, s.should_record, s.restart_interval_secs, s.created_ms,
    c.username, c.password, s.retention_max_age_secs, s.retention_max_bytes
    FROM streams s LEFT JOIN stream_credentials c ON c.source_id = s.source_id";

/// A row of [`SELECT`].
struct Row {
    source_id: String,
    inputs: String,
    should_record: bool,
    restart_interval_secs: u64,
    created_ms: i64,
    username: Option<String>,
    password: Option<String>,
    retention_max_age_secs: Option<i64>,
    retention_max_bytes: Option<i64>,
}

impl Row {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
        Ok(Row {
            source_id: r.get(0)?,
            inputs: r.get(1)?,
            should_record: r.get(2)?,
            restart_interval_secs: r.get(3)?,
            created_ms: r.get(4)?,
            username: r.get(5)?,
            password: r.get(6)?,
            retention_max_age_secs: r.get(7)?,
            retention_max_bytes: r.get(8)?,
        })
    }

    fn into_definition(self) -> anyhow::Result<StreamDefinition> {
        let stored: Vec<StoredInput> =
            serde_json::from_str(&self.inputs).context("inputs column")?;
        let inputs = stored
            .into_iter()
            .map(|i| {
                let transport = if i.transport == "udp" {
                    Transport::Udp
                } else {
                    Transport::Tcp
                };
                let (url, _) = InputUrl::parse(&i.url, transport)
                    .with_context(|| format!("input {:?}", i.label))?;
                Ok(InputSpec {
                    label: i.label,
                    url,
                    priority: i.priority,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let credentials = match (self.username, self.password) {
            (Some(username), Some(password)) => Some(Credentials { username, password }),
            _ => None,
        };
        Ok(StreamDefinition {
            source_id: self.source_id,
            inputs,
            credentials,
            should_record: self.should_record,
            restart_interval_secs: self.restart_interval_secs,
            created_ms: self.created_ms,
            retention: api_models::RetentionDto {
                max_age_secs: self.retention_max_age_secs.map(|v| v as u64),
                max_bytes: self.retention_max_bytes.map(|v| v as u64),
            },
        })
    }
}

pub(crate) fn other(e: rusqlite::Error) -> StoreError {
    StoreError::Other(e.into())
}

fn inputs_json(inputs: &[InputSpec]) -> Result<String, StoreError> {
    let stored: Vec<StoredInput> = inputs
        .iter()
        .map(|i| StoredInput {
            label: i.label.clone(),
            // Query secrets some cameras need stay; user info never reaches here.
            url: i.url.unredacted(),
            priority: i.priority,
            transport: match crate::definition::transport_dto(&i.url) {
                api_models::TransportDto::Udp => "udp",
                api_models::TransportDto::Tcp => "tcp",
            }
            .to_owned(),
        })
        .collect();
    serde_json::to_string(&stored).map_err(|e| StoreError::Other(e.into()))
}

fn write_credentials(
    tx: &Transaction<'_>,
    id: &str,
    c: Option<&Credentials>,
) -> Result<(), StoreError> {
    tx.execute("DELETE FROM stream_credentials WHERE source_id = ?1", [id])
        .map_err(other)?;
    if let Some(c) = c {
        tx.execute(
            "INSERT INTO stream_credentials (source_id, username, password) VALUES (?1, ?2, ?3)",
            params![id, c.username, c.password],
        )
        .map_err(other)?;
    }
    Ok(())
}

/// Applies the migrations the database has not seen yet, each in its own transaction.
fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > MIGRATIONS.len() {
        anyhow::bail!(
            "database schema version {version} is newer than this gateway knows ({}); refusing to touch it",
            MIGRATIONS.len()
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(
        id: &str,
        url: &str,
        credentials: Option<Credentials>,
        created_ms: i64,
    ) -> StreamDefinition {
        let (url, _) = InputUrl::parse(url, Transport::Udp).unwrap();
        StreamDefinition {
            source_id: id.into(),
            inputs: vec![InputSpec {
                label: "main".into(),
                url,
                priority: 3,
            }],
            credentials,
            should_record: true,
            restart_interval_secs: 30,
            created_ms,
            retention: api_models::RetentionDto {
                max_age_secs: Some(86_400),
                max_bytes: None,
            },
        }
    }

    fn creds() -> Option<Credentials> {
        Some(Credentials {
            username: "admin".into(),
            password: "secret".into(),
        })
    }

    #[tokio::test]
    async fn crud_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let a = def("a", "rtsp://10.0.0.1/x", creds(), 2);
        let b = def("b", "testsrc://?width=320&height=240", None, 1);
        store.insert(a.clone()).await.unwrap();
        store.insert(b.clone()).await.unwrap();
        assert!(matches!(
            store.insert(a.clone()).await,
            Err(StoreError::Exists(_))
        ));
        assert_eq!(store.list().await.unwrap(), vec![b.clone(), a.clone()]);
        assert_eq!(store.get("a").await.unwrap(), Some(a.clone()));

        let mut a2 = a.clone();
        a2.credentials = None;
        a2.should_record = false;
        store.update(a2.clone()).await.unwrap();
        assert_eq!(store.get("a").await.unwrap(), Some(a2));
        assert!(matches!(
            store.update(def("zz", "rtsp://h/", None, 0)).await,
            Err(StoreError::Missing(_))
        ));

        store.delete("a").await.unwrap();
        assert!(matches!(
            store.delete("a").await,
            Err(StoreError::Missing(_))
        ));
        assert_eq!(store.list().await.unwrap(), vec![b]);
    }

    #[tokio::test]
    async fn survives_reopen_and_keeps_credentials_apart() {
        let dir = tempfile::tempdir().unwrap();
        let a = def("a", "rtsp://10.0.0.1/x", creds(), 2);
        {
            let store = Store::open(dir.path()).await.unwrap();
            store.insert(a.clone()).await.unwrap();
        }
        let store = Store::open(dir.path()).await.unwrap();
        assert_eq!(store.get("a").await.unwrap(), Some(a));
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        let inputs: String = conn
            .query_row("SELECT inputs FROM streams", [], |r| r.get(0))
            .unwrap();
        assert!(
            !inputs.contains("secret") && !inputs.contains("admin"),
            "{inputs}"
        );
        assert!(inputs.contains("\"udp\""));
        let version: usize = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len());
    }

    #[tokio::test]
    async fn refuses_a_newer_schema_and_skips_bad_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.execute(
            "INSERT INTO streams (source_id, inputs, should_record, restart_interval_secs, created_ms)
             VALUES ('bad', '[{\"label\":\"m\",\"url\":\"ftp://x\",\"priority\":0,\"transport\":\"tcp\"}]', 0, 60, 0)",
            [],
        )
        .unwrap();
        assert_eq!(store.list().await.unwrap(), vec![]);
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(store);
        assert!(Store::open(dir.path()).await.is_err());
    }
}
