#!/usr/bin/env python3
"""PySpark 3.5 counterpart of benches/groups_with_state.rs.

groupBy(user).applyInPandasWithState(func, output "user string, count long, total long",
state "count long, total long", outputMode "update", timeoutConf "NoTimeout"): per user a
running count and sum of v, one output row per user and batch. local[2],
maxFilesPerTrigger 1, trigger(availableNow=True), a foreachBatch sink counting rows. Only
the query is timed (start() to awaitTermination()); a first untimed run over the first
two files warms the JVM and the Python workers.

Prints `RESULT {json}`: partitions, rows, out_rows, batches, wall_s, rows_per_s, p50_ms,
state_rows (numRowsTotal of the last batch), state_bytes (memoryUsedBytes of the last
batch), state_bytes_per_key.

Usage: python3 benches/pyspark_groups_with_state.py --input DIR [--partitions 2]
"""

import argparse
import json
import math
import os
import shutil
import tempfile
import time

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql.streaming.state import GroupStateTimeout

SCHEMA = "user string, time timestamp, v long"


def func(key, pdfs, state):
    count, total = state.get if state.exists else (0, 0)
    for pdf in pdfs:
        count += len(pdf)
        total += int(pdf["v"].sum())
    state.update((count, total))
    yield pd.DataFrame({"user": [key[0]], "count": [count], "total": [total]})


def run(spark, path, partitions):
    spark.conf.set("spark.sql.shuffle.partitions", str(partitions))
    df = spark.readStream.format("json").schema(SCHEMA).option("maxFilesPerTrigger", 1).load(path)
    res = df.groupBy("user").applyInPandasWithState(
        func, "user string, count long, total long", "count long, total long", "update", GroupStateTimeout.NoTimeout
    )
    out = [0]

    def sink(batch, _id):
        out[0] += batch.count()

    ck = tempfile.mkdtemp(prefix="pyspark-gws-ck-")
    t0 = time.time()
    q = res.writeStream.outputMode("update").trigger(availableNow=True).foreachBatch(sink).option("checkpointLocation", ck).start()
    q.awaitTermination()
    wall = time.time() - t0
    prog = q.recentProgress
    shutil.rmtree(ck, ignore_errors=True)
    data = [p for p in prog if p["numInputRows"] > 0]
    lat = sorted(p["durationMs"]["triggerExecution"] for p in data)
    last = prog[-1]["stateOperators"][0] if prog and prog[-1]["stateOperators"] else {}
    rows = sum(p["numInputRows"] for p in prog)
    srows = last.get("numRowsTotal", 0)
    sbytes = last.get("memoryUsedBytes", 0)
    return {
        "partitions": partitions,
        "rows": rows,
        "out_rows": out[0],
        "batches": len(prog),
        "wall_s": wall,
        "rows_per_s": rows / wall if wall > 0 else 0,
        "p50_ms": lat[max(0, math.ceil(0.5 * len(lat)) - 1)] if lat else None,
        "state_rows": srows,
        "state_bytes": sbytes,
        "state_bytes_per_key": sbytes / srows if srows else None,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--partitions", default="2")
    a = ap.parse_args()
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "4g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    warm = tempfile.mkdtemp(prefix="pyspark-gws-warm-")
    for f in sorted(os.listdir(a.input))[:2]:
        shutil.copy2(os.path.join(a.input, f), warm)
    run(spark, warm, 2)
    shutil.rmtree(warm, ignore_errors=True)
    for p in a.partitions.split(","):
        print("RESULT " + json.dumps(run(spark, a.input, int(p))), flush=True)


if __name__ == "__main__":
    main()
