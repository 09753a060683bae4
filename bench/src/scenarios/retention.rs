//! Retention at catalog scale: one retention pass over a catalog of 10 000 and of 100 000 segments (four streams,
//! a minute each), with age limits that delete the 100 oldest. Measured in-process against a real SQLite catalog
//! (`gateway::retention::pass`); the files do not exist, so deleting them costs nothing and the figure is the
//! catalog work alone. The pass reads only what it deletes plus about one row per stream: its rows read do not
//! grow with the catalog, and its time grows at most linearly (the per-stream byte sums).

use std::collections::HashMap;
use std::time::Instant;

use dvr::retention::StreamLimits;
use gateway::purge::Dirs;
use gateway::Store;

use crate::report::Row;
use crate::Ctx;

const SCENARIO: &str = "Retention pass";
const STREAMS: usize = 4;
const MINUTE: i64 = 60_000;
/// Deleted by the age limits in every pass, whatever the catalog's size.
const DOOMED_PER_STREAM: usize = 25;

pub async fn run(ctx: &Ctx, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let sizes = ctx.sizes(&[10_000, 100_000], &[1_000, 10_000]);
    // What a pass may read: what it deletes plus at most a page per walk (one per stream, one across streams).
    let bound =
        |deleted: usize| deleted as u64 + (STREAMS as u64 + 1) * gateway::retention::PAGE as u64;
    let mut first: Option<(usize, f64, u64)> = None;
    for n in sizes {
        let (ms, rows_read, deleted) = one_pass(n).await?;
        anyhow::ensure!(
            deleted == STREAMS * DOOMED_PER_STREAM,
            "{deleted} deleted, not {}",
            STREAMS * DOOMED_PER_STREAM
        );
        let mut r = match first {
            None => {
                first = Some((n, ms, rows_read));
                Row::new(SCENARIO, format!("{n} segments")).target(
                    "rows read ≤ deleted + a page (64) per walk",
                    rows_read <= bound(deleted),
                )
            }
            Some((n0, ms0, read0)) => {
                let size_ratio = n as f64 / n0 as f64;
                let mut r = Row::new(SCENARIO, format!("{n} segments")).target(
                    format!(
                        "same rows read; time ≤ {size_ratio:.0}× the {n0}-segment pass (linear)"
                    ),
                    rows_read == read0 && ms <= ms0 * size_ratio * 1.2,
                );
                r.ratio = Some(ms / ms0);
                r.reference = format!("{ms0:.1} ms, {read0} rows read at {n0} segments");
                r
            }
        };
        r.gateway = format!("{ms:.1} ms, {rows_read} rows read, {deleted} deleted");
        r.note = "catalog work only (SQLite, the files are absent)".into();
        rows.push(r);
    }
    Ok(())
}

/// A catalog of `n` finished one-minute segments over [`STREAMS`] streams, then one pass. Returns its time in
/// ms, the rows its walks read, and how many segments it deleted.
async fn one_pass(n: usize) -> anyhow::Result<(f64, u64, usize)> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path()).await?;
    drop(store);
    let per_stream = n / STREAMS;
    {
        let mut conn = rusqlite::Connection::open(dir.path().join(gateway::store::DB_FILE))?;
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO segments (source_id, start_ms, end_ms, path, bytes, codec, width, height, state)
                 VALUES (?1, ?2, ?3, ?4, 1000000, 'h264', 1920, 1080, 'complete')",
            )?;
            // Interleaved as recorders write them: every stream's minute m, then minute m + 1.
            for m in 0..per_stream as i64 {
                for s in 0..STREAMS {
                    let path = format!("/nonexistent/cam{s}/{}.mp4", m * MINUTE);
                    insert.execute(rusqlite::params![
                        format!("cam{s}"),
                        m * MINUTE,
                        (m + 1) * MINUTE,
                        path
                    ])?;
                }
            }
        }
        tx.commit()?;
    }
    let store = Store::open(dir.path()).await?;
    let now = per_stream as i64 * MINUTE;
    let limits: HashMap<String, StreamLimits> = (0..STREAMS)
        .map(|s| {
            (
                format!("cam{s}"),
                StreamLimits {
                    // Segments ending more than this before now are too old: the oldest DOOMED_PER_STREAM.
                    max_age_ms: Some((per_stream - DOOMED_PER_STREAM) as i64 * MINUTE - 1),
                    max_bytes: None,
                },
            )
        })
        .collect();
    let dirs = Dirs {
        recordings: dir.path().join("recordings"),
        exports: dir.path().join("exports"),
    };
    let started = Instant::now();
    let (pass, _) = gateway::retention::pass(&store, limits, &dirs, 0, now).await?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok((ms, pass.rows_read, pass.deleted))
}
