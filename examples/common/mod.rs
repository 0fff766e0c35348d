//! Shared by the example jobs and the oracle tests: each job's query, its schema, the
//! command-line contract of `../shared/oracle/README.md`, and the `batch-<id>.jsonl`
//! writer. Included with `#[path]`, so it is not part of Sluice's public API.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use anyhow::Context;
use sluice::prelude::*;
use sluice::{interval, StreamJoinType, StreamingQueryProgress};

/// `--input DIR --output DIR --checkpoint DIR` of every job.
#[derive(clap::Args, Debug, Clone)]
pub struct IoArgs {
    /// Folder of JSON lines input files, read one file per micro-batch.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Folder receiving one `batch-<id>.jsonl` file per micro-batch.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Checkpoint folder (a fresh temporary one when absent).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
}

impl IoArgs {
    /// With `--input`: builds the job's query over it with `build`, runs it per the oracle
    /// contract (`batch-<id>.jsonl` in `--output`, `--checkpoint` or a fresh temporary
    /// folder) and returns `true`; without `--input`, `false` (the example narrates).
    pub fn run_contract_if_given(
        &self,
        job: &str,
        mode: OutputMode,
        build: impl FnOnce(&Path) -> anyhow::Result<StreamingDataFrame>,
    ) -> anyhow::Result<bool> {
        let Some(input) = &self.input else { return Ok(false) };
        let output = self.output.clone().ok_or_else(|| anyhow::anyhow!("--output is required with --input"))?;
        let checkpoint = checkpoint_dir(&self.checkpoint, job);
        run_contract(build(input)?, mode, &output, &checkpoint, ProgressDisplay::Off)?;
        Ok(true)
    }
}

pub fn ts() -> DataType {
    DataType::Datetime(TimeUnit::Microseconds, None)
}

pub fn schema(fields: &[(&str, DataType)]) -> Schema {
    Schema::from_iter(fields.iter().map(|(n, d)| Field::new((*n).into(), d.clone())))
}

/// `sensor string, ts timestamp, v double`.
pub fn sensor_schema() -> Schema {
    schema(&[("sensor", DataType::String), ("ts", ts()), ("v", DataType::Float64)])
}

/// The wiki edits schema of the oracle's `wiki_edits` job.
pub fn wiki_schema() -> Schema {
    schema(&[
        ("time", ts()),
        ("channel", DataType::String),
        ("page", DataType::String),
        ("user", DataType::String),
        ("isRobot", DataType::Boolean),
        ("isNew", DataType::Boolean),
        ("delta", DataType::Int64),
        ("added", DataType::Int64),
        ("deleted", DataType::Int64),
    ])
}

/// A JSON lines file source with one file per trigger.
pub fn json_source(session: &Session, input: &Path, schema: Schema) -> anyhow::Result<StreamingDataFrame> {
    session
        .read_stream()
        .format("json")
        .schema(schema)
        .option("maxFilesPerTrigger", 1)
        .load(input)
        .with_context(|| format!("reading {}", input.display()))
}

/// The `windowed_agg` job: `groupBy(window(ts, window, slide), sensor)` with
/// `n = count(*)`, `nv = count(v)`, `s = sum(v)`, `avg`, `min`, `max` of v.
pub fn windowed_agg(
    events: StreamingDataFrame,
    window_len: &str,
    slide: Option<&str>,
    watermark: Option<&str>,
) -> anyhow::Result<StreamingDataFrame> {
    let events = match watermark {
        Some(w) => events.with_watermark("ts", w)?,
        None => events,
    };
    Ok(events.group_by([window(col("ts"), window_len, slide, None)?, col("sensor")]).agg([
        len().alias("n"),
        col("v").count().alias("nv"),
        col("v").sum().alias("s"),
        col("v").mean().alias("avg"),
        col("v").min().alias("min"),
        col("v").max().alias("max"),
    ]))
}

/// The `wiki_edits` job: per window and channel, edits, bytes added and deleted, robot
/// edits and the largest delta.
pub fn wiki_edits(edits: StreamingDataFrame, window_len: &str, watermark: &str) -> anyhow::Result<StreamingDataFrame> {
    Ok(edits
        .with_watermark("time", watermark)?
        .group_by([window(col("time"), window_len, None, None)?, col("channel")])
        .agg([
            len().alias("edits"),
            col("added").sum().alias("added"),
            col("deleted").sum().alias("deleted"),
            col("isRobot").cast(DataType::Int64).sum().alias("robot_edits"),
            col("delta").max().alias("max_delta"),
        ]))
}

/// The `running_counts` job: per channel, edits and bytes added, no watermark.
pub fn running_counts(edits: StreamingDataFrame) -> StreamingDataFrame {
    edits
        .select([col("time"), col("channel"), col("added")])
        .group_by([col("channel")])
        .agg([len().alias("edits"), col("added").sum().alias("added")])
}

/// `ad_id string, impression_time timestamp, campaign string`.
pub fn impressions_schema() -> Schema {
    schema(&[("ad_id", DataType::String), ("impression_time", ts()), ("campaign", DataType::String)])
}

/// `click_ad_id string, click_time timestamp, cost double`.
pub fn clicks_schema() -> Schema {
    schema(&[("click_ad_id", DataType::String), ("click_time", ts()), ("cost", DataType::Float64)])
}

/// 2024-03-01T08:00:00Z, µs since the epoch: the origin of [`impressions_at`] and
/// [`clicks_at`].
pub const AD_TIME_ORIGIN_US: i64 = 1_709_280_000_000_000;

/// A timestamp column (µs, [`ts`]) of `secs` seconds after [`AD_TIME_ORIGIN_US`].
fn seconds_after_ad_origin(name: &str, secs: &[i64]) -> PolarsResult<Column> {
    Column::new(name.into(), secs.iter().map(|s| AD_TIME_ORIGIN_US + s * 1_000_000).collect::<Vec<_>>()).cast(&ts())
}

/// Impression rows ([`impressions_schema`]): ad `ads[i]` shown `secs[i]` seconds after
/// 2024-03-01T08:00:00Z, all of campaign `campaign`.
pub fn impressions_at<S: AsRef<str>>(ads: &[S], secs: &[i64], campaign: &str) -> PolarsResult<DataFrame> {
    let ads: Vec<&str> = ads.iter().map(AsRef::as_ref).collect();
    DataFrame::new(
        ads.len(),
        vec![
            Column::new("ad_id".into(), ads),
            seconds_after_ad_origin("impression_time", secs)?,
            Column::new("campaign".into(), vec![campaign; secs.len()]),
        ],
    )
}

/// Click rows ([`clicks_schema`]): ad `ads[i]` clicked `secs[i]` seconds after
/// 2024-03-01T08:00:00Z, costing `costs[i]`.
pub fn clicks_at<S: AsRef<str>>(ads: &[S], secs: &[i64], costs: &[f64]) -> PolarsResult<DataFrame> {
    let ads: Vec<&str> = ads.iter().map(AsRef::as_ref).collect();
    DataFrame::new(
        ads.len(),
        vec![
            Column::new("click_ad_id".into(), ads),
            seconds_after_ad_origin("click_time", secs)?,
            Column::new("cost".into(), costs.to_vec()),
        ],
    )
}

/// Feeds the small join example of the join tests into `impressions` and `clicks`, two
/// micro-batches run by `query`: ad `a` clicked in time, `b` clicked too late (an hour and
/// a second after), `c` never clicked, and a click `z` with no impression (seconds 0-3611
/// after 2024-03-01T08:00:00Z); then one impression and one click 5 hours later, which
/// move both watermarks past every earlier row.
///
/// # Errors
/// When a frame cannot be built or added, or a batch fails.
pub fn feed_small_join_example(
    impressions: &sluice::connectors::MemoryStream,
    clicks: &sluice::connectors::MemoryStream,
    query: &StreamingQuery,
) -> anyhow::Result<()> {
    impressions.add_data(impressions_at(&["a", "b", "c"], &[0, 10, 20], "k")?)?;
    clicks.add_data(clicks_at(&["a", "b", "z"], &[60, 10 + 3601, 30], &[1.0, 2.0, 3.0])?)?;
    query.process_all_available()?;
    impressions.add_data(impressions_at(&["later"], &[5 * 3600], "k")?)?;
    clicks.add_data(clicks_at(&["none"], &[5 * 3600], &[0.0])?)?;
    query.process_all_available()?;
    Ok(())
}

/// The `ad_join` job: impressions joined with their clicks within `max_gap`:
/// `click_ad_id = ad_id AND click_time >= impression_time AND
/// click_time <= impression_time + max_gap`.
pub fn ad_join(
    impressions: StreamingDataFrame,
    clicks: StreamingDataFrame,
    how: StreamJoinType,
    impression_watermark: &str,
    click_watermark: &str,
    max_gap: &str,
) -> anyhow::Result<StreamingDataFrame> {
    let impressions = impressions.with_watermark("impression_time", impression_watermark)?;
    let clicks = clicks.with_watermark("click_time", click_watermark)?;
    let within = col("click_time")
        .gt_eq(col("impression_time"))
        .and(col("click_time").lt_eq(col("impression_time") + interval(max_gap)?));
    Ok(impressions.join(&clicks, [col("ad_id")], [col("click_ad_id")], how, Some(within)))
}

/// `time timestamp, channel string, user string, added long`.
pub fn edits_schema() -> Schema {
    schema(&[("time", ts()), ("channel", DataType::String), ("user", DataType::String), ("added", DataType::Int64)])
}

/// `channel string, language string, project string` (with a header line).
pub fn channels_schema() -> Schema {
    schema(&[("channel", DataType::String), ("language", DataType::String), ("project", DataType::String)])
}

/// Reads the static channel table (CSV with a header).
pub fn read_channels(path: &Path) -> anyhow::Result<DataFrame> {
    Ok(sluice::connectors::FileSource::csv(path).schema(channels_schema()).header(true).read_static()?)
}

/// The `wiki_languages` job: edits enriched with their channel's language (stream-static
/// join), then with `window` counted per window and language.
pub fn wiki_languages(
    edits: StreamingDataFrame,
    channels: DataFrame,
    how: StreamJoinType,
    window_len: Option<&str>,
    watermark: &str,
) -> anyhow::Result<StreamingDataFrame> {
    let joined = edits
        .with_watermark("time", watermark)?
        .join_static(channels, [col("channel")], [col("channel")], how)
        .select([col("time"), col("channel"), col("user"), col("added"), col("language"), col("project")]);
    Ok(match window_len {
        None => joined,
        Some(w) => joined
            .group_by([window(col("time"), w, None, None)?, col("language")])
            .agg([len().alias("edits"), col("added").sum().alias("added")]),
    })
}

/// Writes one micro-batch as `<dir>/batch-<id>.jsonl` (atomically: a replayed batch
/// replaces its file). Timestamps are RFC 3339 UTC; a window is a nested object.
pub fn write_batch_jsonl(dir: &Path, df: &DataFrame, batch_id: u64) -> sluice::Result<()> {
    let io = |source, p: &Path| sluice::SluiceError::Io { path: p.display().to_string(), source };
    std::fs::create_dir_all(dir).map_err(|e| io(e, dir))?;
    // The engine's JSON form of a row: Arrow's writer, nulls written as `null` (Spark's
    // rows carry every column).
    let mut text = String::new();
    for line in sluice::engine::operators::late::rows_as_json(df)? {
        text.push_str(&line);
        text.push('\n');
    }
    let path = dir.join(format!("batch-{batch_id}.jsonl"));
    let tmp = dir.join(format!(".batch-{batch_id}.jsonl.tmp"));
    std::fs::write(&tmp, &text).map_err(|e| io(e, &tmp))?;
    std::fs::rename(&tmp, &path).map_err(|e| io(e, &path))?;
    Ok(())
}

/// Runs `df` per the oracle contract: AvailableNow, `batch-<id>.jsonl` per batch.
pub fn run_contract(
    df: StreamingDataFrame,
    mode: OutputMode,
    output: &Path,
    checkpoint: &Path,
    display: ProgressDisplay,
) -> anyhow::Result<Vec<StreamingQueryProgress>> {
    let out = output.to_path_buf();
    let query = df
        .write_stream()
        .output_mode(mode)
        .trigger(Trigger::AvailableNow)
        .checkpoint_location(checkpoint)
        .progress(display)
        .foreach_batch(move |batch, id| write_batch_jsonl(&out, batch, id))
        .start()?;
    query.await_termination()?;
    Ok(query.recent_progress())
}

/// Starts `df` in `mode` into the memory `table`, with its checkpoint in `ck`, the
/// default trigger and progress off (the tests' usual query).
///
/// # Errors
/// As [`DataStreamWriter::start`](sluice::DataStreamWriter::start).
pub fn start_into(df: StreamingDataFrame, mode: OutputMode, ck: &Path, table: &sluice::connectors::MemoryTable) -> sluice::Result<sluice::StreamingQuery> {
    df.write_stream()
        .output_mode(mode)
        .checkpoint_location(ck)
        .progress(ProgressDisplay::Off)
        .sink(Box::new(table.sink()))
        .start()
}

/// Sets the modification times of `paths` 1 s apart in the given order: the order in
/// which the file source takes files (Git keeps no modification times).
pub fn set_mtimes_in_order(paths: &[PathBuf]) -> anyhow::Result<()> {
    for (i, p) in paths.iter().enumerate() {
        let f = std::fs::File::options().write(true).open(p)?;
        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000 + i as u64))?;
    }
    Ok(())
}

/// Copies the folder `from` to `to`, recursively, with each folder's files' modification
/// times in name order (as the oracle's `run_case.sh` does).
pub fn copy_ordered(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    let mut names: Vec<_> = std::fs::read_dir(from)?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>()?;
    names.sort();
    let mut files = Vec::new();
    for n in &names {
        let (f, d) = (from.join(n), to.join(n));
        if f.is_dir() {
            copy_ordered(&f, &d)?;
        } else {
            std::fs::copy(&f, &d)?;
            files.push(d);
        }
    }
    set_mtimes_in_order(&files)
}

/// The manifest-listed output of a windowed file-sink job, the window struct flattened
/// into `window_start` / `window_end`, sorted by window start and `channel`.
pub fn sorted_window_output(out: &Path) -> anyhow::Result<DataFrame> {
    Ok(sluice::connectors::read_output(out)?
        .lazy()
        .with_columns([
            col("window").struct_().field_by_name("start").alias("window_start"),
            col("window").struct_().field_by_name("end").alias("window_end"),
        ])
        .drop(by_name(["window"], true, false))
        .sort(["window_start", "channel"], Default::default())
        .collect()?)
}

/// The `batch-<id>.jsonl` files of `dir` by batch id, each file's lines sorted (rows
/// within a batch have no order), for comparing two runs batch by batch.
pub fn read_batch_files(dir: &Path) -> anyhow::Result<std::collections::BTreeMap<u64, String>> {
    let mut files = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let Some(id) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("batch-")?.strip_suffix(".jsonl")?.parse::<u64>().ok())
        else {
            continue;
        };
        let mut lines: Vec<String> = std::fs::read_to_string(&p)?.lines().map(String::from).collect();
        lines.sort();
        files.insert(id, lines.join("\n"));
    }
    Ok(files)
}

/// A checkpoint folder: the given one, or a fresh temporary one.
pub fn checkpoint_dir(given: &Option<PathBuf>, job: &str) -> PathBuf {
    given.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("sluice-{job}-{}", std::process::id()))
    })
}

/// Removes each of `dirs` that exists (a walk-through starts from nothing).
pub fn remove_dirs(dirs: &[&Path]) -> anyhow::Result<()> {
    for d in dirs {
        if d.exists() {
            std::fs::remove_dir_all(d).with_context(|| format!("removing {}", d.display()))?;
        }
    }
    Ok(())
}

/// The bundled real data.
pub mod wiki {
    use std::io::{BufRead, Write};
    use std::path::{Path, PathBuf};

    /// `data/wikiticker-2015-09-12-sampled.json.gz` in the project.
    pub fn bundled() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/wikiticker-2015-09-12-sampled.json.gz")
    }

    /// The folder of `job`'s walk-through, `target/<job>` in the project, with `input/`
    /// holding the bundled edits afresh in files of 2,000 (one per micro-batch). Returns
    /// (the folder, its `input/`, the number of files).
    pub fn walkthrough_input(job: &str) -> anyhow::Result<(PathBuf, PathBuf, usize)> {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join(job);
        let input = base.join("input");
        super::remove_dirs(&[&input])?;
        let files = split_bundled(&input, 2000)?;
        Ok((base, input, files))
    }

    /// Splits the bundled edits, in file order, into JSON lines files of `per_file` edits
    /// (`part-00000.json`, ...) in `dir`, with modification times in name order (the file
    /// source's order). Returns the number of files.
    pub fn split_bundled(dir: &Path, per_file: usize) -> anyhow::Result<usize> {
        std::fs::create_dir_all(dir)?;
        let gz = std::fs::File::open(bundled())?;
        let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(gz));
        let mut files = 0;
        let mut current: Option<std::io::BufWriter<std::fs::File>> = None;
        let mut in_file = 0;
        let mut paths = Vec::new();
        for line in reader.lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            if current.is_none() || in_file == per_file {
                if let Some(mut w) = current.take() {
                    w.flush()?;
                }
                let p = dir.join(format!("part-{files:05}.json"));
                current = Some(std::io::BufWriter::new(std::fs::File::create(&p)?));
                paths.push(p);
                files += 1;
                in_file = 0;
            }
            let w = current.as_mut().expect("a file is open");
            w.write_all(line.as_bytes())?;
            w.write_all(b"\n")?;
            in_file += 1;
        }
        if let Some(mut w) = current.take() {
            w.flush()?;
        }
        super::set_mtimes_in_order(&paths)?;
        Ok(files)
    }
}

/// `time timestamp, user string, added long` (jobs `wiki_sessions`, `wiki_user_state`).
pub fn user_edits_schema() -> Schema {
    schema(&[("time", ts()), ("user", DataType::String), ("added", DataType::Int64)])
}

/// The output of `wiki_user_state`: one row per finished user activity.
pub fn user_activity_schema() -> Schema {
    schema(&[
        ("user", DataType::String),
        ("edits", DataType::Int64),
        ("added", DataType::Int64),
        ("first_edit", ts()),
        ("last_edit", ts()),
    ])
}

/// What `wiki_user_state` keeps per user (stored as JSON in the state store).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UserActivity {
    pub edits: i64,
    pub added: i64,
    /// First and last event time, µs since the epoch.
    pub first_us: i64,
    pub last_us: i64,
}

/// The `wiki_user_state` job: `groupBy(user)` with flatMapGroupsWithState (append,
/// event-time timeout). Per user it keeps edits, added, first and last event time; new
/// rows update them and set the timeout to `max(last + timeout_minutes, watermark + 1 ms)`;
/// on timeout it emits `user, edits, added, first_edit, last_edit` and removes the state.
pub fn wiki_user_state(edits: StreamingDataFrame, timeout_minutes: i64, watermark: &str) -> anyhow::Result<StreamingDataFrame> {
    let timeout_ms = timeout_minutes * 60_000;
    Ok(edits.with_watermark("time", watermark)?.group_by([col("user")]).flat_map_groups_with_state(
        OutputMode::Append,
        GroupStateTimeout::EventTimeTimeout,
        user_activity_schema(),
        move |key: &GroupKey, rows: DataFrame, state: &mut GroupState<UserActivity>| {
            if state.has_timed_out() {
                let out = match state.get_option() {
                    Some(a) => user_activity_row(key.str(0), a)?,
                    None => DataFrame::empty_with_schema(&user_activity_schema()),
                };
                state.remove();
                return Ok(out);
            }
            let times = rows.column("time")?.cast(&DataType::Int64)?;
            let times = times.i64()?;
            let added = rows.column("added")?.i64()?.sum().unwrap_or(0);
            let mut a = state.get_option().cloned().unwrap_or(UserActivity {
                edits: 0,
                added: 0,
                first_us: i64::MAX,
                last_us: i64::MIN,
            });
            a.edits += rows.height() as i64;
            a.added += added;
            if let (Some(lo), Some(hi)) = (times.min(), times.max()) {
                a.first_us = a.first_us.min(lo);
                a.last_us = a.last_us.max(hi);
            }
            let last_ms = a.last_us.div_euclid(1000);
            state.update(a);
            state.set_timeout_timestamp((last_ms + timeout_ms).max(state.current_watermark_ms()? + 1))?;
            Ok(DataFrame::empty_with_schema(&user_activity_schema()))
        },
    ))
}

fn user_activity_row(user: Option<&str>, a: &UserActivity) -> sluice::Result<DataFrame> {
    let ts_col = |name: &str, us: i64| Column::new(name.into(), [us]).cast(&ts());
    Ok(DataFrame::new(
        1,
        vec![
            Column::new("user".into(), [user]),
            Column::new("edits".into(), [a.edits]),
            Column::new("added".into(), [a.added]),
            ts_col("first_edit", a.first_us)?,
            ts_col("last_edit", a.last_us)?,
        ],
    )?)
}

/// `event_id string, ts timestamp, v long` (the `dedup` job's input).
pub fn dedup_schema() -> Schema {
    schema(&[("event_id", DataType::String), ("ts", ts()), ("v", DataType::Int64)])
}

/// The `dedup` job: `withWatermark(ts, watermark)` (when given), then
/// `dropDuplicates(keys)` (default `[event_id, ts]`) or, with `within_watermark`,
/// `dropDuplicatesWithinWatermark(keys)` (default `[event_id]`). `keys` is a
/// comma-separated list of columns.
pub fn dedup(
    events: StreamingDataFrame,
    watermark: Option<&str>,
    within_watermark: bool,
    keys: Option<&str>,
) -> anyhow::Result<StreamingDataFrame> {
    let events = match watermark {
        Some(w) => events.with_watermark("ts", w)?,
        None => events,
    };
    let keys: Vec<&str> = match keys {
        Some(k) => k.split(',').map(str::trim).filter(|k| !k.is_empty()).collect(),
        None if within_watermark => vec!["event_id"],
        None => vec!["event_id", "ts"],
    };
    Ok(if within_watermark {
        events.drop_duplicates_within_watermark(keys)?
    } else {
        events.drop_duplicates(keys)?
    })
}

/// A boolean job parameter of a `case.json`: JSON `true`/`false` or the strings
/// `"true"`/`"false"`; absent is `false`.
pub fn bool_param(case: &serde_json::Value, name: &str) -> bool {
    match &case["params"][name] {
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::String(s) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// The `dedup` job's optional `count_window` step: per `window(ts, window_len)`,
/// `n = count(*)` and `v = sum(v)` of the deduplicated rows (an aggregation after a
/// deduplication, both stateful).
pub fn window_counts(deduplicated: StreamingDataFrame, window_len: &str) -> anyhow::Result<StreamingDataFrame> {
    Ok(deduplicated
        .group_by([window(col("ts"), window_len, None, None)?])
        .agg([len().alias("n"), col("v").sum().alias("v")]))
}

/// `sensorId string, eventTime timestamp, value double, errorCode string` (the `sql` job's
/// `sensors` stream).
pub fn sql_sensors_schema() -> Schema {
    schema(&[("sensorId", DataType::String), ("eventTime", ts()), ("value", DataType::Float64), ("errorCode", DataType::String)])
}

/// The `sql` job's views, from what `input` holds (the oracle README): `input/edits/` the
/// stream `edits` (the wiki schema), `input/sensors/` the stream `sensors`, each with
/// `with_watermark(<its time column>, watermark)` when a watermark is given, and
/// `input/channels.csv` the static view `channels`.
pub fn sql_views(session: &Session, input: &Path, watermark: Option<&str>) -> anyhow::Result<()> {
    for (view, schema, time) in [("edits", wiki_schema(), "time"), ("sensors", sql_sensors_schema(), "eventTime")] {
        let dir = input.join(view);
        if dir.is_dir() {
            let mut df = json_source(session, &dir, schema)?;
            if let Some(w) = watermark {
                df = df.with_watermark(time, w)?;
            }
            df.create_or_replace_temp_view(view)?;
        }
    }
    let channels = input.join("channels.csv");
    if channels.is_file() {
        read_channels(&channels)?.create_or_replace_temp_view(session, "channels")?;
    }
    Ok(())
}

/// The `sql` job: `query` (Spark SQL) over the views [`sql_views`] makes of `input`.
pub fn sql_job(session: &Session, input: &Path, query: &str, watermark: Option<&str>) -> anyhow::Result<StreamingDataFrame> {
    sql_views(session, input, watermark)?;
    Ok(session.sql(query)?.into_stream()?)
}

/// The `wiki_sessions` job: per user, sessions of edits no more than `gap` apart
/// (`groupBy(session_window(time, gap), user)`), with `edits = count(*)` and
/// `added = sum(added)`, watermark on `time`.
pub fn wiki_sessions(edits: StreamingDataFrame, gap: &str, watermark: &str) -> anyhow::Result<StreamingDataFrame> {
    Ok(edits
        .with_watermark("time", watermark)?
        .group_by([session_window(col("time"), gap)?, col("user")])
        .agg([len().alias("edits"), col("added").sum().alias("added")]))
}
