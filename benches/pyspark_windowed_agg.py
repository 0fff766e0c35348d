#!/usr/bin/env python3
"""PySpark 3.5 counterpart of benches/windowed_agg.rs.

Runs the windowed_agg query (window 10 minutes, slide 5 minutes, watermark 10 minutes,
append mode; per window and sensor n=count(*), nv=count(v), s=sum(v), avg, min, max of v)
with local[2], maxFilesPerTrigger 1, trigger(availableNow=True) and a foreachBatch sink
that counts the output rows, over the JSON lines and/or Parquet files written by the Rust
bench. Only the query is timed (from writeStream.start() to awaitTermination()), not the
JVM start; each format first runs once, untimed, over its first two files to warm the JIT.

Prints one line per run, `RESULT {json}`, read by the Rust bench:
  format, partitions, rows (input), out_rows, batches, wall_s, rows_per_s,
  p50_ms / p99_ms (triggerExecution of the batches that read data),
  state_bytes_per_group (memoryUsedBytes / numRowsTotal at the peak of memoryUsedBytes).

Usage:
  python3 benches/pyspark_windowed_agg.py [--json DIR] [--parquet DIR] [--partitions 200,2]
"""

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

SCHEMA = "sensor string, ts timestamp, v double"


def percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[max(0, math.ceil(p * len(s)) - 1)]


def query(spark, fmt, path):
    events = spark.readStream.format(fmt.split("-")[0]).schema(SCHEMA).option("maxFilesPerTrigger", 1).load(path)
    if fmt.endswith("-stats"):
        # The statistical variant: moments and a set per window and sensor.
        return (
            events.withWatermark("ts", "10 minutes")
            .groupBy(F.window("ts", "10 minutes", "5 minutes"), "sensor")
            .agg(
                F.count(F.lit(1)).alias("n"),
                F.avg("v").alias("avg"),
                F.stddev("v").alias("sd"),
                F.collect_set((F.col("v") / 10).cast("long")).alias("deciles"),
            )
        )
    return (
        events.withWatermark("ts", "10 minutes")
        .groupBy(F.window("ts", "10 minutes", "5 minutes"), "sensor")
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.count("v").alias("nv"),
            F.sum("v").alias("s"),
            F.avg("v").alias("avg"),
            F.min("v").alias("min"),
            F.max("v").alias("max"),
        )
    )


def run(spark, fmt, path, partitions):
    spark.conf.set("spark.sql.shuffle.partitions", str(partitions))
    ckpt = tempfile.mkdtemp(prefix="pyspark-windowed-agg-ckpt-")
    out_rows = [0]

    def count(df, _batch_id):
        out_rows[0] += df.count()

    df = query(spark, fmt, path)
    t0 = time.perf_counter()
    q = (
        df.writeStream.outputMode("append")
        .trigger(availableNow=True)
        .option("checkpointLocation", ckpt)
        .foreachBatch(count)
        .start()
    )
    q.awaitTermination()
    wall = time.perf_counter() - t0
    progress = q.recentProgress
    shutil.rmtree(ckpt, ignore_errors=True)
    rows = sum(p["numInputRows"] for p in progress)
    data = [p for p in progress if p["numInputRows"] > 0]
    trig = [p["durationMs"]["triggerExecution"] for p in data]
    peak = None
    for p in progress:
        ops = p.get("stateOperators") or []
        if ops and ops[0]["numRowsTotal"] > 0:
            if peak is None or ops[0]["memoryUsedBytes"] > peak["memoryUsedBytes"]:
                peak = ops[0]
    return {
        "format": fmt,
        "partitions": partitions,
        "rows": rows,
        "out_rows": out_rows[0],
        "batches": len(progress),
        "wall_s": wall,
        "rows_per_s": rows / wall if wall > 0 else 0.0,
        "p50_ms": percentile(trig, 0.50),
        "p99_ms": percentile(trig, 0.99),
        "state_rows_peak": peak["numRowsTotal"] if peak else 0,
        "state_bytes_per_group": (peak["memoryUsedBytes"] / peak["numRowsTotal"]) if peak else 0.0,
    }


def warm_up(spark, fmt, path):
    files = sorted(f for f in os.listdir(path) if not f.startswith((".", "_")))[:2]
    tmp = tempfile.mkdtemp(prefix="pyspark-windowed-agg-warm-")
    for f in files:
        shutil.copy(os.path.join(path, f), tmp)
    run(spark, fmt, tmp, 2)
    shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="folder of JSON lines files")
    ap.add_argument("--parquet", help="folder of Parquet files")
    ap.add_argument("--stats", help="folder of JSON lines files for the stddev + collect_set variant")
    ap.add_argument("--partitions", default="200,2", help="spark.sql.shuffle.partitions values to run")
    args = ap.parse_args()
    parts = [int(p) for p in args.partitions.split(",") if p]

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("sluice-windowed-agg-bench")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "4g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    for fmt, path in (("json", args.json), ("parquet", args.parquet), ("json-stats", args.stats)):
        if not path:
            continue
        warm_up(spark, fmt, path)
        for n in parts:
            r = run(spark, fmt, path, n)
            print("RESULT " + json.dumps(r), flush=True)
    spark.stop()


if __name__ == "__main__":
    sys.exit(main())
