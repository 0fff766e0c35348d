//! Every Rust snippet of README.md, verbatim, in the context it assumes, so that the
//! build compiles them (`tests/readme.rs` checks that each README block is here). Not
//! meant to be run: `cargo run --example readme` only lists the snippets.
#![allow(unused_variables, dead_code, clippy::too_many_arguments)]

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sluice::prelude::*;

/// README "Twenty lines": a whole program.
mod twenty_lines {
use sluice::prelude::*;

fn main() -> sluice::Result<()> {
    let session = Session::new();
    let schema = Schema::from_iter([
        Field::new("time".into(), DataType::Datetime(TimeUnit::Microseconds, None)),
        Field::new("channel".into(), DataType::String),
        Field::new("added".into(), DataType::Int64),
    ]);
    let edits = session.read_stream().format("json").schema(schema)
        .option("maxFilesPerTrigger", 1).load("data/in")?;
    let counts = edits
        .with_watermark("time", "1 minute")?
        .group_by([window(col("time"), "10 minutes", None, None)?, col("channel")])
        .agg([len().alias("edits"), col("added").sum().alias("added")]);
    let query = counts.write_stream()
        .output_mode(OutputMode::Append)
        .format("parquet").option("path", "out").option("checkpointLocation", "ckpt")
        .trigger(Trigger::AvailableNow)
        .start()?;
    query.await_termination()
}
}

/// README "Several queries, listeners, reading results back".
fn listeners_and_reading(session: &Session, edits: StreamingDataFrame, counts: StreamingDataFrame) -> sluice::Result<()> {
    struct BatchLog;

    impl StreamingQueryListener for BatchLog {
        fn on_query_progress(&self, event: &QueryProgressEvent) {
            let p = &event.progress;
            println!("{} batch {}: {} rows in", p.name.as_deref().unwrap_or(&p.id), p.batch_id, p.num_input_rows);
        }
        fn on_query_terminated(&self, event: &QueryTerminatedEvent) {
            if let Some(error) = &event.exception {
                eprintln!("query {} failed: {error}", event.id);
            }
        }
    }

    session.streams().add_listener(Arc::new(BatchLog));
    let windows = counts.write_stream().query_name("windows")
        .format("parquet").option("path", "out").checkpoint_location("ckpt-windows")
        .start()?;
    let big = edits.filter(col("added").gt(lit(10_000))).write_stream().query_name("big_edits")
        .format("json").option("path", "big").checkpoint_location("ckpt-big")
        .start()?;
    for q in session.streams().active() {
        println!("running: {} ({})", q.name().unwrap_or("-"), q.id());
    }
    session.streams().await_any_termination(None)?;   // the first query to stop; its error if it failed

    // A file sink's output, read back: only the files its manifest lists, with the types
    // written (the window struct, UTC timestamps); JSON and CSV output need no schema either.
    let written = session.read().parquet("out")?;
    let big_edits = session.read().json("big")?;
    Ok(())
}

/// README "Joins".
fn joins(session: &Session, impressions: StreamingDataFrame, clicks: StreamingDataFrame, edits: StreamingDataFrame, schema: Schema) -> sluice::Result<()> {
    // Stream-stream: impressions joined with their clicks within an hour (Spark semantics:
    // both sides buffered in state, bounded by the watermarks and the time range).
    let attributed = impressions
        .with_watermark("impression_time", "2 hours")?
        .join(
            &clicks.with_watermark("click_time", "3 hours")?,
            [col("ad_id")], [col("click_ad_id")],
            StreamJoinType::LeftOuter,
            Some(col("click_time").gt_eq(col("impression_time"))
                .and(col("click_time").lt_eq(col("impression_time") + interval("1 hour")?))),
        );
    // Stream-static: every micro-batch joined with a table read once.
    let channels = session.read().schema(schema).option("header", true).csv("channels.csv")?;
    let enriched = edits.join_static(channels.clone(), [col("channel")], [col("channel")], StreamJoinType::Inner);
    // Spark's using-columns form keeps one `channel` column (both above, `channel_right`
    // too); `join_on(&right, ["ad_id"], how, condition)` for two streams, where a full
    // outer join coalesces the key.
    let one_key = edits.join_on_static(channels, ["channel"], StreamJoinType::LeftOuter);
    Ok(())
}

/// README "Kafka, rate and socket".
#[cfg(feature = "kafka")]
fn kafka(session: &Session, schema: Schema, windows: StreamingDataFrame) -> sluice::Result<()> {
    let edits = session.read_stream().format("kafka")
        .option("kafka.bootstrap.servers", "localhost:9092")
        .option("subscribe", "wiki_edits")            // or subscribePattern, assign
        .option("startingOffsets", "earliest")         // latest (default), or {"wiki_edits":{"0":42}}
        .option("maxOffsetsPerTrigger", 2000)
        .load("")?                                     // key, value, topic, partition, offset, timestamp, timestampType
        .select([from_json(col("value"), &schema)?.alias("edit")]);
    windows.write_stream().format("kafka")
        .option("kafka.bootstrap.servers", "localhost:9092").option("topic", "wiki_windows")
        .option("deliveryGuarantee", "exactly-once")   // default at-least-once
        .checkpoint_location("ckpt").start()?;
    Ok(())
}

/// README "Kinesis" (cargo feature `kinesis`).
#[cfg(feature = "kinesis")]
fn kinesis(session: &Session, schema: Schema, windows: StreamingDataFrame) -> sluice::Result<()> {
let edits = session.read_stream().format("kinesis")
    .option("streamName", "wiki_edits")
    .option("region", "eu-west-1")                 // or AWS_REGION, ~/.aws/config
    .option("startingPosition", "TRIM_HORIZON")    // LATEST (default), AT_TIMESTAMP + startingTimestamp
    .option("maxRecordsPerTrigger", 2000)
    .load("")?                                     // data, stream, partitionKey, sequenceNumber, shardId, approximateArrivalTimestamp
    .select([from_json(col("data"), &schema)?.alias("edit")]);
windows.select([col("channel").alias("partitionKey"), to_json(as_struct(vec![col("window"), col("edits")])).alias("data")])
    .write_stream().format("kinesis")
    .option("streamName", "wiki_windows").option("region", "eu-west-1")
    .checkpoint_location("ckpt").start()?;
    Ok(())
}

/// README "Files and S3".
fn files_and_s3(session: &Session, schema: Schema, windows: StreamingDataFrame) -> sluice::Result<()> {
    // Partitioned, compressed Parquet on S3, with the checkpoint on S3 too (cargo feature `s3`).
    windows.write_stream().format("parquet")
        .option("path", "s3://my-bucket/wiki/windows")
        .checkpoint_location("s3://my-bucket/wiki/checkpoint")
        .partition_by(["channel"])                      // Hive-style channel=%23en.wikipedia/
        .option("compression", "zstd")                  // parquet: snappy (default), zstd, gzip, none
        .option("maxRecordsPerFile", 100_000)
        .option("s3.region", "eu-west-1")               // else AWS_REGION, AWS_ACCESS_KEY_ID, ...
        .start()?;
    // Read back as a stream, or once; the partition column comes from the path.
    let again = session.read_stream().format("parquet").schema(schema)
        .option("s3.region", "eu-west-1").load("s3://my-bucket/wiki/windows")?;
    let table = session.read().format("parquet").option("s3.region", "eu-west-1")
        .load("s3://my-bucket/wiki/windows")?;
    Ok(())
}

/// The latest event time of `rows` in ms (assumed by the next snippet).
fn last_event_ms(rows: &DataFrame) -> sluice::Result<i64> {
    let us = rows.column("time")?.cast(&DataType::Int64)?;
    Ok(us.i64()?.max().unwrap_or(0).div_euclid(1000))
}

/// README "Arbitrary state: flat_map_groups_with_state".
fn arbitrary_state(edits: StreamingDataFrame, output_schema: Schema) -> sluice::Result<StreamingDataFrame> {
    #[derive(Clone, Serialize, Deserialize)]
    struct Activity { edits: i64, last_ms: i64 }

    let per_user = edits
        .with_watermark("time", "5 minutes")?
        .group_by([col("user")])
        .flat_map_groups_with_state(
            OutputMode::Append, GroupStateTimeout::EventTimeTimeout, output_schema.clone(),
            move |key: &GroupKey, rows: DataFrame, state: &mut GroupState<Activity>| {
                if state.has_timed_out() {          // no rows: the watermark passed the timeout
                    let a = state.get()?.clone();
                    state.remove();
                    return Ok(df!("user" => [key.str(0)], "edits" => [a.edits])?);
                }
                let mut a = state.get_option().cloned().unwrap_or(Activity { edits: 0, last_ms: 0 });
                a.edits += rows.height() as i64;
                a.last_ms = a.last_ms.max(last_event_ms(&rows)?);
                let timeout = a.last_ms + 30 * 60_000;
                state.update(a);
                state.set_timeout_timestamp(timeout)?;    // Spark: never before the watermark
                Ok(DataFrame::empty_with_schema(&output_schema))
            });
    Ok(per_user)
}

/// README "Aggregations".
fn aggregations(readings: StreamingDataFrame, edits: StreamingDataFrame, per_channel: StreamingDataFrame) -> sluice::Result<()> {
// Learning Spark's sensor queries (cargo run --release --example sensor_stats):
let total = readings.agg([len().alias("count")]);                 // groupBy().count(), complete/update mode
let stats = readings.group_by([col("sensorId")]).agg([
    len().alias("n"), col("value").mean().alias("baselineValue"), stddev(col("value")).alias("sd"),
    collect_set(col("errorCode")).alias("allErrorCodes"), approx_count_distinct(col("errorCode"), 0.05)?.alias("kinds"),
]);
let busy = edits.with_watermark("time", "1 minute")?                // window -> window, append mode
    .group_by([window(col("time"), "10 minutes", None, None)?.alias("w"), col("channel")])
    .agg([len().alias("edits")])
    .filter(col("edits").gt_eq(lit(10)))                            // HAVING
    .group_by([window(window_time(col("w")), "1 hour", None, None)?])
    .agg([len().alias("busy_channels"), col("edits").sum().alias("edits")]);
let top5 = per_channel.sort([col("edits")], &[true]).limit(5);      // complete mode only
    Ok(())
}

/// README "SQL".
fn sql(session: Session, edits: StreamingDataFrame, channels: DataFrame) -> sluice::Result<()> {
edits.with_watermark("time", "1 minute")?.create_or_replace_temp_view("edits")?;
channels.create_or_replace_temp_view(&session, "channels")?;     // a static Polars frame
let per_language = session.sql(
    "SELECT window(e.time, '30 minutes') AS window, c.language, count(*) AS edits
     FROM edits e JOIN channels c ON e.channel = c.channel
     GROUP BY window(e.time, '30 minutes'), c.language")?
    .into_stream()?;                  // SqlFrame::Stream; a query of static views only is SqlFrame::Static
    Ok(())
}

/// README "Seeing inside a stream".
fn seeing_inside(session: Session, counts: StreamingDataFrame) -> sluice::Result<()> {
println!("{}", counts.explain(false)?);                       // planned in append mode, no sink yet
println!("{}", counts.write_stream().output_mode(OutputMode::Update)
    .format("parquet").option("path", "out").explain(true)?); // + schemas of every node and store
let state = session.read_state("ckpt").operator(0).batch(3).query(&counts).load()?;
let changes = session.read_state_changes("ckpt", 1, 3).operator(0).load()?;
let stores = session.read_state_metadata("ckpt")?;
    Ok(())
}

fn main() {
    println!(
        "README snippets compiled here: twenty_lines, aggregations, sql, seeing_inside, listeners_and_reading, joins, {}{}files_and_s3, arbitrary_state",
        if cfg!(feature = "kafka") { "kafka, " } else { "" },
        if cfg!(feature = "kinesis") { "kinesis, " } else { "" }
    );
}
