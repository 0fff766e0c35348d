//! Aggregations as Spark users write them, through the DataFrame API, checked against the
//! outputs PySpark 3.5.9 computed for the same queries in SQL (`tests/oracle/extra/sql_*`):
//! global aggregation in update and complete mode, every aggregate function (moments,
//! collect, min_by/max_by, count_if, first/last with and without nulls, approximate
//! distinct counts against the exact count), HAVING, arithmetic over aggregates, sort and
//! limit in complete mode, and chained stateful operators in append mode (window over
//! window_time, aggregation after a stream-stream join and after deduplication), each batch
//! by batch with Spark's watermark and input rows; plus Spark's analysis rules, and a
//! restart after every batch of a chained query and of one with collect_set and stddev.

#[path = "../examples/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use sluice::prelude::*;
use sluice::StreamingQueryProgress;

fn extra_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/extra")
}

fn case_json(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(extra_dir().join(name).join("case.json")).unwrap()).unwrap()
}

/// The case's input folder (with `edits/` and/or `sensors/`), copied with ordered mtimes.
fn input_of(case: &serde_json::Value, work: &Path) -> PathBuf {
    let from = match (case["input_case"].as_str(), case["input_dir"].as_str()) {
        (Some(c), _) => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/cases").join(c).join("input"),
        (None, Some(d)) => extra_dir().join(d),
        _ => panic!("case without input"),
    };
    let to = work.join("in");
    for sub in ["edits", "sensors"] {
        if from.join(sub).exists() {
            common::copy_ordered(&from.join(sub), &to.join(sub)).unwrap();
        }
    }
    to
}

fn sensors_schema() -> Schema {
    common::schema(&[
        ("sensorId", DataType::String),
        ("eventTime", common::ts()),
        ("value", DataType::Float64),
        ("errorCode", DataType::String),
    ])
}

/// The stream view of `input/<view>` with the case's watermark, as the oracle's `sql` job
/// builds it.
fn view(session: &Session, input: &Path, case: &serde_json::Value, name: &str) -> StreamingDataFrame {
    let (schema, time) = match name {
        "sensors" => (sensors_schema(), "eventTime"),
        _ => (common::wiki_schema(), "time"),
    };
    let df = common::json_source(session, &input.join(name), schema).unwrap();
    match case["params"]["watermark"].as_str() {
        Some(w) => df.with_watermark(time, w).unwrap(),
        None => df,
    }
}

fn mode_of(case: &serde_json::Value) -> OutputMode {
    case["params"]["mode"].as_str().unwrap().parse().unwrap()
}

/// Runs `build` over the case's input in the case's mode; returns the output folder, the
/// progress of every batch, and the work folder (kept alive).
fn run(
    name: &str,
    build: impl FnOnce(&Session, &Path, &serde_json::Value) -> StreamingDataFrame,
) -> (PathBuf, Vec<StreamingQueryProgress>, tempfile::TempDir) {
    let case = case_json(name);
    let work = tempfile::tempdir().unwrap();
    let input = input_of(&case, work.path());
    let session = Session::new();
    let df = build(&session, &input, &case);
    let out = work.path().join("out");
    let progress = common::run_contract(df, mode_of(&case), &out, &work.path().join("ck"), ProgressDisplay::Off).unwrap();
    (out, progress, work)
}

fn compare(name: &str, out: &Path, progress: &[StreamingQueryProgress]) {
    let case_dir = extra_dir().join(name);
    let result = std::process::Command::new("python3")
        .arg(extra_dir().parent().unwrap().join("compare.py"))
        .arg(&case_dir)
        .arg(out)
        .output()
        .expect("python3 runs compare.py");
    let text = String::from_utf8_lossy(&result.stdout);
    assert!(result.status.success(), "{name}: output differs from Spark's:\n{text}{}", String::from_utf8_lossy(&result.stderr));
    let expected: Vec<serde_json::Value> = std::fs::read_to_string(case_dir.join("progress.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(progress.len(), expected.len(), "{name}: number of batches (Spark ran {})", expected.len());
    for (p, e) in progress.iter().zip(&expected) {
        assert_eq!(p.num_input_rows, e["input_rows"].as_u64().unwrap(), "{name}: input rows of batch {}", p.batch_id);
        assert_eq!(
            p.event_time.get("watermark").map(String::as_str),
            e["watermark"].as_str(),
            "{name}: watermark of batch {}",
            p.batch_id
        );
    }
}

fn check(name: &str, build: impl FnOnce(&Session, &Path, &serde_json::Value) -> StreamingDataFrame) {
    let (out, progress, _work) = run(name, build);
    compare(name, &out, &progress);
}

fn v() -> Expr {
    col("value")
}

fn sorted(e: Expr, name: &str) -> Expr {
    e.list().sort(SortOptions::default()).alias(name)
}

#[test]
fn global_aggregation_in_update_and_complete_mode() {
    let basic = |nv: &str| {
        vec![
            len().alias("n"),
            v().count().alias(nv),
            v().sum().alias("sum_value"),
            v().mean().alias("avg_value"),
            v().min().alias("min_value"),
            v().max().alias("max_value"),
        ]
    };
    check("sql_global_update", |s, input, case| view(s, input, case, "sensors").agg(basic("nv")));
    // With a watermark, every watermark move runs a no-data batch that emits the row again.
    check("sql_global_update_wm", |s, input, case| {
        let mut aggs = basic("nv");
        aggs.extend([
            col("errorCode").count().alias("ne"),
            col("eventTime").min().alias("first_time"),
            col("eventTime").max().alias("last_time"),
        ]);
        view(s, input, case, "sensors").agg(aggs)
    });
    check("sql_global_complete_nulls", |s, input, case| {
        let mut aggs = basic("nv");
        aggs.push(col("sensorId").count().alias("ns"));
        view(s, input, case, "sensors").agg(aggs)
    });
    check("sql_global_complete", |s, input, case| {
        view(s, input, case, "edits").agg([
            len().alias("edits"),
            when(col("isRobot")).then(lit(1)).otherwise(lit(NULL)).count().alias("robot_edits"),
            col("added").sum().alias("added"),
            col("delta").mean().alias("avg_delta"),
            col("delta").min().alias("min_delta"),
            col("added").max().alias("max_added"),
            col("time").min().alias("first_time"),
            col("time").max().alias("last_time"),
        ])
    });
}

#[test]
fn every_aggregate_function_matches_spark() {
    let by_sensor = |s: &Session, input: &Path, case: &serde_json::Value| view(s, input, case, "sensors").group_by([col("sensorId")]);
    check("sql_agg_basic_update", |s, input, case| {
        by_sensor(s, input, case).agg([
            len().alias("n"),
            v().count().alias("nv"),
            v().sum().alias("sum_value"),
            v().mean().alias("avg_value"),
            v().mean().alias("mean_value"),
            v().min().alias("min_value"),
            v().max().alias("max_value"),
            count_if(v().gt(lit(20))).alias("over_20"),
            count_if(col("errorCode").is_null()).alias("no_code"),
        ])
    });
    check("sql_agg_stats_update", |s, input, case| {
        by_sensor(s, input, case).agg([
            stddev(v()).alias("sd"),
            stddev_samp(v()).alias("sd_samp"),
            stddev_pop(v()).alias("sd_pop"),
            variance(v()).alias("var"),
            var_samp(v()).alias("var_samp"),
            var_pop(v()).alias("var_pop"),
        ])
    });
    check("sql_agg_order_update", |s, input, case| {
        by_sensor(s, input, case).agg([
            first_value(v(), false).alias("first_value"),
            last_value(v(), false).alias("last_value"),
            first_value(v(), true).alias("first_nonnull"),
            last_value(v(), true).alias("last_nonnull"),
            col("errorCode").first().alias("first_code"),
            col("errorCode").last().alias("last_code"),
            min_by(v(), col("eventTime")).alias("earliest_value"),
            max_by(v(), col("eventTime")).alias("latest_value"),
            min_by(col("errorCode"), v()).alias("code_of_min"),
            max_by(col("eventTime"), v()).alias("time_of_max"),
        ])
    });
    check("sql_agg_collect_update", |s, input, case| {
        by_sensor(s, input, case)
            .agg([
                collect_list(col("errorCode")).alias("codes"),
                collect_set(col("errorCode")).alias("code_set"),
                collect_list(v()).alias("values"),
                collect_set(v()).alias("value_set"),
            ])
            .select([
                col("sensorId"),
                sorted(col("codes"), "codes"),
                sorted(col("code_set"), "code_set"),
                sorted(col("values"), "values"),
                sorted(col("value_set"), "value_set"),
                col("values").list().len().cast(DataType::Int32).alias("nv"),
            ])
    });
    check("sql_agg_window_append", |s, input, case| {
        view(s, input, case, "sensors")
            .group_by([window(col("eventTime"), "5 minutes", None, None).unwrap(), col("sensorId")])
            .agg([
                len().alias("n"),
                v().count().alias("nv"),
                v().sum().alias("sum_value"),
                v().mean().alias("avg_value"),
                v().mean().alias("mean_value"),
                v().min().alias("min_value"),
                v().max().alias("max_value"),
                v().first().alias("first_value"),
                v().last().alias("last_value"),
                stddev(v()).alias("sd"),
                stddev_samp(v()).alias("sd_samp"),
                stddev_pop(v()).alias("sd_pop"),
                variance(v()).alias("var"),
                var_samp(v()).alias("var_samp"),
                var_pop(v()).alias("var_pop"),
                collect_list(col("errorCode")).alias("codes"),
                collect_set(col("errorCode")).alias("code_set"),
                min_by(v(), col("eventTime")).alias("earliest_value"),
                max_by(v(), col("eventTime")).alias("latest_value"),
                count_if(v().gt(lit(20))).alias("over_20"),
            ])
            .with_columns([sorted(col("codes"), "codes"), sorted(col("code_set"), "code_set")])
    });
}

#[test]
fn having_arithmetic_sort_and_limit() {
    check("sql_having_window_append", |s, input, case| {
        view(s, input, case, "edits")
            .group_by([window(col("time"), "10 minutes", None, None).unwrap(), col("channel")])
            .agg([len().alias("edits"), col("added").sum().alias("added")])
            .filter(col("edits").gt_eq(lit(20)).and(col("added").gt(lit(5000))))
    });
    check("sql_having_update", |s, input, case| {
        view(s, input, case, "edits")
            .group_by([col("channel")])
            .agg([len().alias("edits"), col("delta").mean().alias("avg_delta")])
            .filter(col("edits").gt_eq(lit(100)).and(col("avg_delta").gt(lit(150))))
    });
    check("sql_topn_complete", |s, input, case| {
        view(s, input, case, "edits")
            .group_by([col("channel")])
            .agg([len().alias("edits"), col("added").sum().alias("added")])
            .sort([col("edits"), col("channel")], &[true, false])
            .limit(5)
    });
    check("sql_order_complete", |s, input, case| {
        view(s, input, case, "sensors")
            .group_by([col("sensorId")])
            .agg([len().alias("n"), v().mean().alias("avg_value")])
            .sort([col("avg_value")], &[true])
    });
}

#[test]
fn chained_stateful_operators_in_append_mode() {
    check("sql_chained_30m_2h", |s, input, case| {
        view(s, input, case, "edits")
            .group_by([window(col("time"), "30 minutes", None, None).unwrap().alias("w"), col("channel")])
            .agg([len().alias("edits"), col("added").sum().alias("added")])
            .filter(col("edits").gt_eq(lit(5)))
            .group_by([window(window_time(col("w")), "2 hours", None, None).unwrap()])
            .agg([
                len().alias("channels"),
                col("edits").sum().alias("edits"),
                col("edits").max().alias("max_edits"),
                col("added").sum().alias("added"),
            ])
    });
    check("sql_chained_sliding", |s, input, case| {
        view(s, input, case, "sensors")
            .group_by([window(col("eventTime"), "1 minute", None, None).unwrap().alias("w"), col("sensorId")])
            .agg([len().alias("n"), v().mean().alias("a")])
            .group_by([window(window_time(col("w")), "10 minutes", Some("5 minutes"), None).unwrap(), col("sensorId")])
            .agg([
                len().alias("minutes"),
                col("n").sum().alias("n"),
                col("n").max().alias("max_per_minute"),
                col("a").mean().alias("mean_of_means"),
            ])
    });
    check("sql_join_agg_append", |s, input, case| {
        let edits = view(s, input, case, "edits");
        let a = edits.select([col("page"), col("user"), col("time")]);
        let b = edits.select([col("page").alias("b_page"), col("user").alias("b_user"), col("time").alias("b_time"), col("added")]);
        a.join(
            &b,
            [col("page")],
            [col("b_page")],
            StreamJoinType::Inner,
            Some(
                col("user")
                    .neq(col("b_user"))
                    .and(col("b_time").gt_eq(col("time")))
                    .and(col("b_time").lt_eq(col("time") + interval("10 minutes").unwrap())),
            ),
        )
        .group_by([window(col("time"), "1 hour", None, None).unwrap()])
        .agg([len().alias("pairs"), col("added").sum().alias("added_after")])
    });
    check("sql_distinct_agg_append", |s, input, case| {
        view(s, input, case, "sensors")
            .select([col("sensorId"), col("eventTime"), v()])
            .drop_duplicates::<[&str; 0], &str>([])
            .unwrap()
            .group_by([window(col("eventTime"), "5 minutes", None, None).unwrap(), col("sensorId")])
            .agg([len().alias("n"), v().sum().alias("sum_value")])
    });
}

/// approx_count_distinct's estimate stays within 3 relative standard deviations of the
/// exact count Spark's batch query gives (Spark's own estimate is beside it in the case).
#[test]
fn approx_count_distinct_is_within_its_error_bound() {
    for (name, rsd, grouped) in [("sql_approx_distinct_05", 0.05, false), ("sql_approx_distinct_channel_01", 0.01, true)] {
        let (out, _progress, _work) = run(name, |s, input, case| {
            let edits = view(s, input, case, "edits");
            if grouped {
                edits.group_by([col("channel")]).agg([approx_count_distinct(col("user"), rsd).unwrap().alias("users")])
            } else {
                edits.agg([
                    approx_count_distinct(col("user"), rsd).unwrap().alias("users"),
                    approx_count_distinct(col("page"), rsd).unwrap().alias("pages"),
                ])
            }
        });
        let got = common::read_batch_files(&out).unwrap();
        let mut checked = 0;
        for line in std::fs::read_to_string(extra_dir().join(name).join("expected.jsonl")).unwrap().lines() {
            let e: serde_json::Value = serde_json::from_str(line).unwrap();
            let batch = e["batch"].as_u64().unwrap();
            let rows: Vec<serde_json::Value> =
                got[&batch].lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            let row = rows
                .iter()
                .find(|r| !grouped || r["channel"] == e["channel"])
                .unwrap_or_else(|| panic!("{name}: no row for {e} in batch {batch}"));
            for field in ["users", "pages"] {
                let Some(exact) = e[field].as_f64() else { continue };
                let est = row[field].as_f64().unwrap();
                let bound = (3.0 * rsd * exact).max(1.0);
                assert!((est - exact).abs() <= bound, "{name} batch {batch} {field}: {est} vs exact {exact}");
                checked += 1;
            }
        }
        assert!(checked >= 10, "{name}: {checked} estimates checked");
    }
}

#[test]
fn analysis_rules_follow_spark() {
    let session = Session::new();
    let stream = sluice::connectors::MemoryStream::new(sensors_schema());
    let df = || stream.to_df(&session);
    let err = |q: StreamingDataFrame, mode: OutputMode| {
        q.write_stream().output_mode(mode).foreach_batch(|_, _| Ok(())).start().err().map(|e| e.to_string()).unwrap_or_default()
    };
    let e = err(df().group_by([col("sensorId")]).agg([col("value").n_unique().alias("d")]), OutputMode::Update);
    assert!(e.contains("Distinct aggregations are not supported") && e.contains("approx_count_distinct"), "{e}");
    let e = err(df().with_watermark("eventTime", "1 minute").unwrap().agg([len()]), OutputMode::Append);
    assert!(e.contains("Append output mode not supported when there are streaming aggregations"), "{e}");
    let e = err(df().sort([col("value")], &[true]), OutputMode::Append);
    assert!(e.contains("Sorting is not supported on streaming DataFrames/Datasets, unless it is on aggregated"), "{e}");
    let counts = || df().group_by([col("sensorId")]).agg([len().alias("n")]);
    let e = err(counts().sort([col("n")], &[true]), OutputMode::Update);
    assert!(e.contains("Sorting is not supported"), "{e}");
    let e = err(counts().limit(3), OutputMode::Update);
    assert!(e.contains("Limits are not supported on streaming DataFrames/Datasets in Update output mode"), "{e}");
    for mode in [OutputMode::Update, OutputMode::Complete] {
        let e = err(counts().agg([len().alias("groups")]), mode);
        assert!(e.contains("possible 'correctness' issue due to global watermark"), "{mode}: {e}");
    }
    let e = err(df().group_by([col("sensorId")]).agg([count_if(col("value"))]), OutputMode::Update);
    assert!(e.contains("count_if needs a boolean predicate"), "{e}");
    assert!(approx_count_distinct(col("value"), 0.5).is_err());
    // Valid: sort and limit after an aggregation in complete mode; a chain in append mode.
    let q = counts().sort([col("n")], &[true]).limit(2).write_stream().output_mode(OutputMode::Complete).foreach_batch(|_, _| Ok(())).start().unwrap();
    q.stop().unwrap();
}

/// A chained query and one with collect_set and stddev, stopped and restarted after every
/// batch, write exactly what an uninterrupted run writes.
#[test]
fn restart_after_every_batch_gives_the_uninterrupted_output() {
    for name in ["sql_chained_30m_2h", "sql_agg_window_append"] {
        let case = case_json(name);
        let work = tempfile::tempdir().unwrap();
        let input = input_of(&case, work.path());
        let build = |session: &Session| -> StreamingDataFrame {
            if name == "sql_chained_30m_2h" {
                view(session, &input, &case, "edits")
                    .group_by([window(col("time"), "30 minutes", None, None).unwrap().alias("w"), col("channel")])
                    .agg([len().alias("edits")])
                    .group_by([window(window_time(col("w")), "2 hours", None, None).unwrap()])
                    .agg([len().alias("channels"), col("edits").sum().alias("edits")])
            } else {
                view(session, &input, &case, "sensors")
                    .group_by([window(col("eventTime"), "5 minutes", None, None).unwrap(), col("sensorId")])
                    .agg([stddev(v()).alias("sd"), collect_set(col("errorCode")).alias("codes"), approx_count_distinct(v(), 0.05).unwrap().alias("d")])
                    .with_columns([sorted(col("codes"), "codes")])
            }
        };
        let full = work.path().join("full");
        common::run_contract(build(&Session::new()), OutputMode::Append, &full, &work.path().join("ck-full"), ProgressDisplay::Off)
            .unwrap();
        let expected = common::read_batch_files(&full).unwrap();
        // Run r stops with a failure in its sink at batch r (nothing of batch r committed),
        // so the next run restores the state of batch r - 1 and replays batch r.
        let out = work.path().join("restarted");
        let ck = work.path().join("ck");
        let mut runs = 0u64;
        loop {
            runs += 1;
            let stop_at = runs;
            let o = out.clone();
            let q = build(&Session::new())
                .write_stream()
                .output_mode(OutputMode::Append)
                .trigger(Trigger::AvailableNow)
                .checkpoint_location(&ck)
                .progress(ProgressDisplay::Off)
                .foreach_batch(move |df, id| {
                    if id == stop_at {
                        return Err(sluice::SluiceError::User(format!("stop at batch {id}")));
                    }
                    common::write_batch_jsonl(&o, df, id)
                })
                .start()
                .unwrap();
            if q.await_termination().is_ok() {
                break;
            }
            assert!(runs < 60, "{name}: never finished");
        }
        assert!(runs > 5, "{name}: {runs} runs");
        assert_eq!(common::read_batch_files(&out).unwrap(), expected, "{name}: restarted output");
    }
}

/// An aggregation after flat_map_groups_with_state in append mode (Spark 3.5 allows it
/// when the aggregation's input carries a watermark again: groups-with-state output is not
/// bound to one): per batch each user's rows become one (user, time, n) row, re-watermarked
/// and counted per 20-minute window. Every window the watermark closed equals the static
/// aggregation of those rows; progress reports both operators.
#[test]
fn aggregation_after_flat_map_groups_with_state() {
    let schema = common::schema(&[("user", DataType::String), ("time", common::ts()), ("n", DataType::Int64)]);
    let session = Session::new();
    let stream = sluice::connectors::MemoryStream::new(schema.clone());
    let out_schema = schema.clone();
    let per_user = stream
        .to_df(&session)
        .with_watermark("time", "10 minutes")
        .unwrap()
        .group_by([col("user")])
        .flat_map_groups_with_state(
            OutputMode::Append,
            GroupStateTimeout::NoTimeout,
            out_schema.clone(),
            move |key: &GroupKey, rows: DataFrame, _state: &mut GroupState<i64>| {
                let t = rows.column("time")?.as_materialized_series().max_reduce()?.into_value().into_static();
                Ok(DataFrame::new(
                    1,
                    vec![
                        Column::new("user".into(), [key.str(0)]),
                        Column::new_scalar("time".into(), polars::prelude::Scalar::new(common::ts(), t), 1),
                        Column::new("n".into(), [rows.height() as i64]),
                    ],
                )?)
            },
        );
    let windows = per_user
        .with_watermark("time", "30 minutes")
        .unwrap()
        .group_by([window(col("time"), "20 minutes", None, None).unwrap()])
        .agg([col("n").sum().alias("edits"), len().alias("rows")]);
    let table = sluice::connectors::MemoryTable::new();
    let q = windows
        .write_stream()
        .output_mode(OutputMode::Append)
        .progress(ProgressDisplay::Off)
        .sink(Box::new(table.sink()))
        .start()
        .unwrap();
    let base = 1_704_067_200_000_000i64; // 2024-01-01T00:00:00Z, µs
    let mut emitted_rows: Vec<(String, i64, i64)> = Vec::new();
    for k in 0..12i64 {
        let users = ["a", "b", "c"];
        let mut u = Vec::new();
        let mut t = Vec::new();
        for (i, user) in users.iter().enumerate().take(1 + (k as usize % 3)) {
            for j in 0..=i as i64 {
                u.push(*user);
                t.push(base + (k * 10 + j) * 60_000_000);
            }
        }
        for user in users.iter().take(1 + (k as usize % 3)) {
            let ts: Vec<i64> = u.iter().zip(&t).filter(|(x, _)| *x == user).map(|(_, t)| *t).collect();
            emitted_rows.push((user.to_string(), *ts.iter().max().unwrap(), ts.len() as i64));
        }
        let n = vec![1i64; u.len()];
        let df = df!("user" => u, "time" => t, "n" => n).unwrap().lazy().with_column(col("time").cast(common::ts())).collect().unwrap();
        stream.add_data(df).unwrap();
        q.process_all_available().unwrap();
    }
    let last = q.last_progress().unwrap();
    assert_eq!(last.state_operators.len(), 2, "both operators report progress: {:?}", last.state_operators);
    q.stop().unwrap();
    // The windows closed by the final watermark, computed statically from the emitted rows.
    let wm_us = chrono::DateTime::parse_from_rfc3339(&last.event_time["watermark"]).unwrap().timestamp_micros();
    let window_us = 20 * 60_000_000;
    let mut expected: std::collections::BTreeMap<i64, (i64, i64)> = Default::default();
    for (_, t, n) in &emitted_rows {
        let start = t - t.rem_euclid(window_us);
        if start + window_us <= wm_us {
            let e = expected.entry(start).or_default();
            e.0 += n;
            e.1 += 1;
        }
    }
    let got = table.to_df().unwrap().unwrap();
    let starts = got.column("window").unwrap().struct_().unwrap().field_by_name("start").unwrap().cast(&DataType::Int64).unwrap();
    let mut actual: std::collections::BTreeMap<i64, (i64, i64)> = Default::default();
    for i in 0..got.height() {
        let e = got.column("edits").unwrap().i64().unwrap().get(i).unwrap();
        let r = got.column("rows").unwrap().i64().unwrap().get(i).unwrap();
        actual.insert(starts.i64().unwrap().get(i).unwrap(), (e, r));
    }
    assert!(expected.len() >= 3, "{expected:?}");
    assert_eq!(actual, expected);
}
