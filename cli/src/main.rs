//! # sluice: streaming Spark SQL from the shell
//!
//! Runs one streaming Spark SQL query over file (and, with the `kafka` feature, Kafka)
//! sources and static tables, printing each micro-batch as the console sink does or
//! writing it to Parquet / JSON lines files: ksqlDB's CLI for Sluice, no Rust to write.
//!
//! ```text
//! --source/--schema/--watermark ─► read_stream()...with_watermark() ─► view
//! --static/--schema              ─► FileSource::read_static()        ─► view
//! "SELECT ..."                   ─► session.sql() ─► write_stream() (--mode, --sink,
//!                                   --checkpoint, --trigger) ─► start() ─► await
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use clap::{Parser, Subcommand};
use sluice::prelude::*;

const EXAMPLE: &str = "\
Example (the README's quick start: 10-minute edit counts per channel of the bundled wiki edits):

  sluice sql \"SELECT window(time, '10 minutes') AS window, channel, count(*) AS edits,
                     sum(added) AS added FROM edits
              GROUP BY window(time, '10 minutes'), channel\" \\
    --source edits=json:target/edits \\
    --schema edits='time timestamp, channel string, page string, user string, isRobot boolean,
                    isNew boolean, delta bigint, added bigint, deleted bigint' \\
    --option edits.maxFilesPerTrigger=1 --watermark edits.time='1 minute' \\
    --mode append --trigger available-now --checkpoint /tmp/ckpt

Views: --source NAME=json:DIR | csv:DIR | parquet:DIR | kafka:HOST:PORT/TOPIC (a stream),
       --static NAME=csv:FILE | json:FILE | parquet:FILE (a table read once);
each needs --schema NAME='col type, ...' (types: string, int, bigint/long, double, float,
boolean, timestamp, date). A Kafka view's columns are parsed from the JSON in each
record's value.";

#[derive(Parser, Debug)]
#[command(name = "sluice", version, about = "Sluice: streaming Spark SQL over files and Kafka, with Spark Structured Streaming's semantics", after_help = EXAMPLE)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs a streaming Spark SQL query and prints or writes each micro-batch.
    #[command(after_help = EXAMPLE)]
    Sql(Box<SqlArgs>),
    /// As `sql`, with the HTTP endpoint on (`--http-port`, default 8080): the query's
    /// progress and its state by key, while it runs.
    Serve(Box<SqlArgs>),
    /// Re-runs one batch of a `sluice sql` checkpoint read-only and explains it: why each
    /// output row was emitted, what became of each input row (late, still in state).
    Explain(ExplainArgs),
}

#[derive(clap::Args, Debug)]
struct ExplainArgs {
    /// The checkpoint of a `sluice sql --checkpoint DIR` run (it holds the query).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The batch to explain.
    #[arg(long)]
    batch: u64,
    /// Only the rows matching this Spark SQL predicate over the query's columns (output
    /// rows) and the sources' columns (input rows), e.g. "channel = '#en.wikipedia'".
    #[arg(long = "where")]
    filter: Option<String>,
}

/// Where `sluice sql` keeps its arguments in the checkpoint, so that `sluice explain`
/// can rebuild the query.
const STORED_QUERY: &str = "sluice_sql.json";

#[derive(clap::Args, Debug, serde::Serialize, serde::Deserialize)]
struct SqlArgs {
    /// The query, in Spark SQL (SELECT ... FROM <views> ...).
    query: String,
    /// A streaming view: NAME=FORMAT:LOCATION, FORMAT one of json, csv, parquet (a
    /// directory, new files read in order) or kafka (HOST:PORT/TOPIC). Repeatable.
    #[arg(long = "source", value_name = "NAME=FORMAT:LOCATION")]
    sources: Vec<String>,
    /// A static view read once: NAME=FORMAT:FILE, FORMAT one of csv (with a header line),
    /// json, parquet. Repeatable.
    #[arg(long = "static", value_name = "NAME=FORMAT:FILE")]
    statics: Vec<String>,
    /// The columns of a view: NAME='col type, col type, ...'. Repeatable.
    #[arg(long = "schema", value_name = "NAME=COLUMNS")]
    schemas: Vec<String>,
    /// A watermark: NAME.COLUMN=DELAY (e.g. edits.time='1 minute'). Repeatable.
    #[arg(long = "watermark", value_name = "NAME.COLUMN=DELAY")]
    watermarks: Vec<String>,
    /// A source option: NAME.KEY=VALUE (e.g. edits.maxFilesPerTrigger=1,
    /// edits.startingOffsets=earliest). Repeatable.
    #[arg(long = "option", value_name = "NAME.KEY=VALUE")]
    options: Vec<String>,
    /// Output mode: append, update or complete.
    #[arg(long, default_value = "append")]
    mode: String,
    /// Where batches go: console (printed, as Spark's console sink), or
    /// parquet:DIR / json:DIR / csv:DIR (exactly-once files).
    #[arg(long, default_value = "console")]
    sink: String,
    /// Checkpoint directory (a fresh temporary one when absent: no restart then).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Trigger: available-now (everything there now, then stop), once, or an interval
    /// such as '5 seconds'. Default: the next batch as soon as the last one ends.
    #[arg(long)]
    trigger: Option<String>,
    /// Rows printed per batch by the console sink.
    #[arg(long, default_value_t = 20)]
    num_rows: usize,
    /// Print one progress line per batch on stderr.
    #[arg(long)]
    progress: bool,
    /// Serve GET /queries, /queries/<name>/progress and /queries/<name>/state?key=.. on
    /// 127.0.0.1:PORT while the query runs (`sluice serve`: 8080 by default).
    #[arg(long, value_name = "PORT")]
    #[serde(default)]
    http_port: Option<u16>,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sql(args) => run_sql(*args),
        Command::Serve(args) => {
            let mut args = *args;
            args.http_port.get_or_insert(8080);
            run_sql(args)
        }
        Command::Explain(args) => run_explain(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// `NAME=VALUE` (NAME case-insensitive).
fn split_named<'a>(s: &'a str, what: &str) -> anyhow::Result<(String, &'a str)> {
    let (n, v) = s.split_once('=').ok_or_else(|| anyhow!("{what} {s:?}: expected NAME=..."))?;
    if n.trim().is_empty() {
        bail!("{what} {s:?}: empty name");
    }
    Ok((n.trim().to_lowercase(), v.trim()))
}

/// A column list as in Spark's DDL: `time timestamp, channel string`.
fn parse_schema(text: &str) -> anyhow::Result<Schema> {
    let mut fields = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut words = part.split_whitespace();
        let (Some(name), Some(ty), None) = (words.next(), words.next(), words.next()) else {
            bail!("schema column {part:?}: expected `name type`");
        };
        let dt = match ty.to_lowercase().as_str() {
            "string" | "varchar" | "text" => DataType::String,
            "int" | "integer" => DataType::Int32,
            "bigint" | "long" => DataType::Int64,
            "double" => DataType::Float64,
            "float" | "real" => DataType::Float32,
            "boolean" | "bool" => DataType::Boolean,
            "timestamp" => DataType::Datetime(TimeUnit::Microseconds, None),
            "date" => DataType::Date,
            other => bail!("schema column {part:?}: unknown type {other:?} (string, int, bigint, double, float, boolean, timestamp, date)"),
        };
        fields.push(Field::new(name.into(), dt));
    }
    if fields.is_empty() {
        bail!("empty schema {text:?}");
    }
    Ok(Schema::from_iter(fields))
}

/// Builds the query of `args`: its session and streaming frame.
fn build_query(args: &SqlArgs) -> anyhow::Result<(Session, StreamingDataFrame)> {
    let session = Session::new();
    let mut schemas = BTreeMap::new();
    for s in &args.schemas {
        let (name, cols) = split_named(s, "--schema")?;
        schemas.insert(name, parse_schema(cols).with_context(|| format!("--schema {s}"))?);
    }
    let mut options: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for o in &args.options {
        let (key, value) = split_named(o, "--option")?;
        let (view, k) = key.split_once('.').ok_or_else(|| anyhow!("--option {o:?}: expected NAME.KEY=VALUE"))?;
        let original_key = &o[o.find('.').map(|i| i + 1).unwrap_or(0)..o.find('=').unwrap_or(o.len())];
        let _ = k;
        options.entry(view.to_string()).or_default().push((original_key.trim().to_string(), value.to_string()));
    }
    let mut watermarks: BTreeMap<String, (String, String)> = BTreeMap::new();
    for w in &args.watermarks {
        let (key, delay) = split_named(w, "--watermark")?;
        let (view, column) = key.split_once('.').ok_or_else(|| anyhow!("--watermark {w:?}: expected NAME.COLUMN=DELAY"))?;
        let original_col = &w[w.find('.').map(|i| i + 1).unwrap_or(0)..w.find('=').unwrap_or(w.len())];
        let _ = column;
        watermarks.insert(view.to_string(), (original_col.trim().to_string(), delay.trim_matches('\'').to_string()));
    }
    let schema_of = |name: &str| {
        schemas.get(name).cloned().ok_or_else(|| anyhow!("view {name}: give its columns with --schema {name}='col type, ...'"))
    };
    for s in &args.sources {
        let (name, spec) = split_named(s, "--source")?;
        let (format, location) = spec.split_once(':').ok_or_else(|| anyhow!("--source {s:?}: expected NAME=FORMAT:LOCATION"))?;
        let schema = schema_of(&name)?;
        let mut df = match format.to_lowercase().as_str() {
            "json" | "csv" | "parquet" => {
                let mut r = session.read_stream().format(format).schema(schema);
                if format.eq_ignore_ascii_case("csv") {
                    r = r.option("header", "true");
                }
                for (k, v) in options.get(&name).into_iter().flatten() {
                    r = r.option(k, v);
                }
                r.load(location).with_context(|| format!("--source {s}"))?
            }
            "kafka" => kafka_source(&session, &name, location, &schema, options.get(&name).map(Vec::as_slice).unwrap_or(&[]))?,
            other => bail!("--source {s:?}: unknown format {other:?} (json, csv, parquet, kafka)"),
        };
        if let Some((column, delay)) = watermarks.get(&name) {
            df = df.with_watermark(column, delay).with_context(|| format!("--watermark {name}.{column}"))?;
        }
        df.create_or_replace_temp_view(&name)?;
    }
    for s in &args.statics {
        let (name, spec) = split_named(s, "--static")?;
        let (format, path) = spec.split_once(':').ok_or_else(|| anyhow!("--static {s:?}: expected NAME=FORMAT:FILE"))?;
        let schema = schema_of(&name)?;
        let source = match format.to_lowercase().as_str() {
            "csv" => sluice::connectors::FileSource::csv(path).header(true),
            "json" => sluice::connectors::FileSource::json(path),
            "parquet" => sluice::connectors::FileSource::parquet(path),
            other => bail!("--static {s:?}: unknown format {other:?} (csv, json, parquet)"),
        };
        let df = source.schema(schema).read_static().with_context(|| format!("--static {s}"))?;
        df.create_or_replace_temp_view(&session, &name)?;
    }
    if let Some(name) = watermarks.keys().find(|n| !args.sources.iter().any(|s| s.to_lowercase().starts_with(&format!("{n}=")))) {
        bail!("--watermark names {name:?}, which is not a --source");
    }

    let query = session.sql(&args.query)?.into_stream().context("the query must read at least one --source")?;
    Ok((session, query))
}

fn run_sql(args: SqlArgs) -> anyhow::Result<()> {
    let (_session, query) = build_query(&args)?;
    let mode: OutputMode = args.mode.parse()?;
    let checkpoint = match &args.checkpoint {
        Some(c) => c.clone(),
        None => std::env::temp_dir().join(format!("sluice-sql-{}", std::process::id())),
    };
    if args.checkpoint.is_some() {
        // The query and its sources, for `sluice explain` (outside the checkpoint's logs).
        std::fs::create_dir_all(&checkpoint)?;
        std::fs::write(checkpoint.join(STORED_QUERY), serde_json::to_string_pretty(&args)?)?;
    }
    let mut writer = query
        .write_stream()
        .output_mode(mode)
        .checkpoint_location(&checkpoint)
        .progress(if args.progress { ProgressDisplay::Lines } else { ProgressDisplay::Off });
    writer = match args.sink.split_once(':') {
        None if args.sink.eq_ignore_ascii_case("console") => writer.format("console").option("numRows", args.num_rows),
        Some((f, dir)) if ["parquet", "json", "csv"].contains(&f.to_lowercase().as_str()) => writer.format(f).option("path", dir),
        _ => bail!("--sink {:?}: console, parquet:DIR, json:DIR or csv:DIR", args.sink),
    };
    if let Some(port) = args.http_port {
        writer = writer.option("sluice.http.port", port).query_name("sql");
    }
    if let Some(t) = &args.trigger {
        writer = writer.trigger(match t.to_lowercase().as_str() {
            "available-now" | "availablenow" => Trigger::AvailableNow,
            "once" => Trigger::Once,
            interval => Trigger::processing_time(interval)?,
        });
    }
    let handle = writer.start()?;
    handle.await_termination()?;
    if args.checkpoint.is_none() {
        let _ = std::fs::remove_dir_all(&checkpoint);
    }
    Ok(())
}

/// `sluice explain`: rebuilds the query `sluice sql` stored in the checkpoint, re-runs the
/// batch read-only, prints why, and checks the replay against a file sink's batch.
fn run_explain(args: ExplainArgs) -> anyhow::Result<()> {
    let stored = args.checkpoint.join(STORED_QUERY);
    let text = std::fs::read_to_string(&stored).with_context(|| {
        format!("{} holds no query: explain works on checkpoints of `sluice sql --checkpoint DIR` (a Rust program calls sluice::engine::explain_batch)", stored.display())
    })?;
    let sql: SqlArgs = serde_json::from_str(&text).with_context(|| format!("reading {}", stored.display()))?;
    let (session, query) = build_query(&sql)?;
    let mode: OutputMode = sql.mode.parse()?;
    let explained = sluice::engine::explain_batch(&query, mode, &args.checkpoint, args.batch)?;
    let shown = match &args.filter {
        None => explained.clone(),
        Some(w) => filtered(&session, &sql, &explained, w)?,
    };
    print!("{}", shown.to_text());
    if let Some((_, dir)) = sql.sink.split_once(':') {
        let rows = sink_batch(std::path::Path::new(dir), args.batch)?;
        match rows {
            Some(rows) => {
                explained.verify(&rows)?;
                println!("the replay equals the sink's batch {} ({} rows)", args.batch, rows.height());
            }
            None => println!("the sink holds no batch {}", args.batch),
        }
    }
    Ok(())
}

/// `explained` with only the output rows and input rows matching `predicate` (Spark
/// SQL): the output through a static view, the input rows decoded from their JSON with
/// the sources' `--schema` columns.
fn filtered(
    session: &Session,
    sql: &SqlArgs,
    explained: &sluice::engine::BatchExplanation,
    predicate: &str,
) -> anyhow::Result<sluice::engine::BatchExplanation> {
    let mut out = explained.clone();
    let select = |name: &str, df: &DataFrame| -> anyhow::Result<DataFrame> {
        df.create_or_replace_temp_view(session, name)?;
        let r = session.sql(&format!("SELECT * FROM {name} WHERE {predicate}"))?.into_static()?;
        session.drop_temp_view(name);
        Ok(r)
    };
    out.output = select("explained_output", &explained.output).with_context(|| format!("--where {predicate} on the output rows"))?;
    let mut schema = Schema::default();
    for s in &sql.schemas {
        let (_, cols) = split_named(s, "--schema")?;
        for (n, t) in parse_schema(cols)?.iter() {
            if !schema.contains(n) && !explained.rows.schema().contains(n) {
                schema.with_column(n.clone(), t.clone());
            }
        }
    }
    if explained.rows.height() > 0 && !schema.is_empty() {
        let names: Vec<PlSmallStr> = explained.rows.get_column_names().into_iter().cloned().collect();
        let decoded = explained
            .rows
            .clone()
            .lazy()
            .with_column(sluice::connectors::from_json(col("row"), &schema)?.alias("__input"))
            .unnest(by_name(["__input"], true, false), None)
            .collect()?;
        let kept = select("explained_rows", &decoded).with_context(|| format!("--where {predicate} on the input rows"))?;
        out.rows = kept.select(names)?;
    }
    println!("(only rows where {predicate})");
    Ok(out)
}

/// The rows a file sink holds for `batch` (its manifest entry's files), if any.
fn sink_batch(out: &std::path::Path, batch: u64) -> anyhow::Result<Option<DataFrame>> {
    let Some(entry) = sluice::connectors::read_manifest(out)?.into_iter().find(|e| e.batch_id == batch) else {
        return Ok(None);
    };
    // A copy of just this entry and its files, read as a sink output.
    let tmp = std::env::temp_dir().join(format!("sluice-explain-{}-{batch}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    // as the copy's batch 0 (a manifest starts at 0)
    let entry_path = sluice::connectors::manifest_entry_path(out, batch);
    let copy = sluice::connectors::manifest_entry_path(&tmp, 0);
    std::fs::create_dir_all(copy.parent().context("a manifest folder")?)?;
    std::fs::copy(&entry_path, &copy)?;
    for f in &entry.files {
        std::fs::copy(out.join(&f.path), tmp.join(&f.path))?;
    }
    let rows = sluice::connectors::read_output(&tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(Some(rows?))
}

/// A Kafka view: `HOST:PORT/TOPIC`, each record's value parsed as JSON with `schema`.
#[cfg(feature = "kafka")]
fn kafka_source(session: &Session, name: &str, location: &str, schema: &Schema, options: &[(String, String)]) -> anyhow::Result<StreamingDataFrame> {
    let (servers, topic) = location.rsplit_once('/').ok_or_else(|| anyhow!("--source {name}=kafka:{location}: expected HOST:PORT/TOPIC"))?;
    let mut r = session.read_stream().format("kafka").option("kafka.bootstrap.servers", servers).option("subscribe", topic);
    if !options.iter().any(|(k, _)| k.eq_ignore_ascii_case("startingOffsets")) {
        r = r.option("startingOffsets", "earliest");
    }
    for (k, v) in options {
        r = r.option(k, v);
    }
    let raw = r.load("")?;
    let parsed = raw.select([from_json(col("value"), schema)?.alias("__v")]);
    let columns: Vec<Expr> =
        schema.iter_names().map(|n| col("__v").struct_().field_by_name(n.as_str()).alias(n.as_str())).collect();
    Ok(parsed.select(columns))
}

#[cfg(not(feature = "kafka"))]
fn kafka_source(_: &Session, name: &str, _: &str, _: &Schema, _: &[(String, String)]) -> anyhow::Result<StreamingDataFrame> {
    bail!("--source {name}=kafka:...: this sluice was built without the `kafka` feature")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_parse_spark_ddl() {
        let s = parse_schema("time timestamp, channel string, added bigint").unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s.get("added"), Some(&DataType::Int64));
        assert!(parse_schema("time").is_err());
        assert!(parse_schema("x blob").is_err());
    }

    #[test]
    fn the_help_shows_an_example() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("sluice sql"), "{help}");
        Cli::command().debug_assert();
    }
}
