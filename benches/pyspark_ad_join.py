#!/usr/bin/env python3
"""PySpark 3.5 counterpart of benches/ad_join.rs.

Runs the ad_join query (impressions with watermark 2 hours on impression_time joined with
clicks with watermark 3 hours on click_time, on click_ad_id = ad_id AND click_time BETWEEN
impression_time AND impression_time + 1 hour; append mode) with local[2],
maxFilesPerTrigger 1 per source, trigger(availableNow=True) and a foreachBatch sink that
counts the output rows, over the JSON lines files written by the Rust bench
(INPUT/impressions, INPUT/clicks). Only the query is timed (from writeStream.start() to
awaitTermination()), not the JVM start; a first untimed run over the first two files of
each stream warms the JIT.

Prints one line per run, `RESULT {json}`, read by the Rust bench:
  how, partitions, rows (input), out_rows, batches, wall_s, rows_per_s,
  p50_ms / p99_ms (triggerExecution of the batches that read data),
  state_rows_peak, state_bytes_peak (maxima of stateOperators[0] numRowsTotal and
  memoryUsedBytes), state_bytes_per_row (memoryUsedBytes / numRowsTotal at the peak of
  memoryUsedBytes).

Usage:
  python3 benches/pyspark_ad_join.py --input DIR [--runs inner:200,inner:2,leftOuter:2]
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

IMPRESSIONS = "ad_id string, impression_time timestamp, campaign string"
CLICKS = "click_ad_id string, click_time timestamp, cost double"


def percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[max(0, math.ceil(p * len(s)) - 1)]


def query(spark, path, how):
    def source(sub, schema):
        return spark.readStream.format("json").schema(schema).option("maxFilesPerTrigger", 1).load(os.path.join(path, sub))

    impressions = source("impressions", IMPRESSIONS).withWatermark("impression_time", "2 hours")
    clicks = source("clicks", CLICKS).withWatermark("click_time", "3 hours")
    cond = F.expr(
        "click_ad_id = ad_id AND click_time >= impression_time AND "
        "click_time <= impression_time + interval 1 hour"
    )
    return impressions.join(clicks, cond, how)


def run(spark, path, how, partitions):
    spark.conf.set("spark.sql.shuffle.partitions", str(partitions))
    ckpt = tempfile.mkdtemp(prefix="pyspark-ad-join-ckpt-")
    out_rows = [0]

    def count(df, _batch_id):
        out_rows[0] += df.count()

    df = query(spark, path, how)
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
    ops = [p["stateOperators"][0] for p in progress if p.get("stateOperators")]
    peak = max((o for o in ops if o["numRowsTotal"] > 0), key=lambda o: o["memoryUsedBytes"], default=None)
    return {
        "how": how,
        "partitions": partitions,
        "rows": rows,
        "out_rows": out_rows[0],
        "batches": len(progress),
        "wall_s": wall,
        "rows_per_s": rows / wall if wall > 0 else 0.0,
        "p50_ms": percentile(trig, 0.50),
        "p99_ms": percentile(trig, 0.99),
        "state_rows_peak": max((o["numRowsTotal"] for o in ops), default=0),
        "state_bytes_peak": max((o["memoryUsedBytes"] for o in ops), default=0),
        "state_bytes_per_row": (peak["memoryUsedBytes"] / peak["numRowsTotal"]) if peak else 0.0,
    }


def warm_up(spark, path):
    tmp = tempfile.mkdtemp(prefix="pyspark-ad-join-warm-")
    for sub in ("impressions", "clicks"):
        os.makedirs(os.path.join(tmp, sub))
        files = sorted(f for f in os.listdir(os.path.join(path, sub)) if not f.startswith((".", "_")))[:2]
        for f in files:
            shutil.copy(os.path.join(path, sub, f), os.path.join(tmp, sub))
    run(spark, tmp, "inner", 2)
    shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True, help="folder with impressions/ and clicks/ JSON lines files")
    ap.add_argument("--runs", default="inner:200,inner:2,leftOuter:2", help="how:shuffle.partitions runs")
    args = ap.parse_args()
    runs = [(h, int(p)) for h, p in (r.split(":") for r in args.runs.split(",") if r)]

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("sluice-ad-join-bench")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "4g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    warm_up(spark, args.input)
    for how, n in runs:
        r = run(spark, args.input, how, n)
        print("RESULT " + json.dumps(r), flush=True)
    spark.stop()


if __name__ == "__main__":
    sys.exit(main())
