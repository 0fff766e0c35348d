# Runs an oracle-style job in PySpark 3.5 (local[2], AvailableNow, maxFilesPerTrigger 1)
# and writes expected.jsonl + progress.jsonl like the oracle's cases.
import json, math, os, sys, time
os.environ["TZ"] = "UTC"; time.tzset()
from pyspark.sql import SparkSession, functions as F
job, inp, out = sys.argv[1], sys.argv[2], sys.argv[3]
params = json.loads(sys.argv[4])
spark = (SparkSession.builder.master("local[2]").config("spark.sql.session.timeZone", "UTC")
         .config("spark.sql.shuffle.partitions", "2").config("spark.ui.enabled", "false").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
if job == "windowed_agg":
    df = spark.readStream.schema("sensor string, ts timestamp, v double").option("maxFilesPerTrigger", 1).json(inp)
    if params.get("watermark"): df = df.withWatermark("ts", params["watermark"])
    w = F.window("ts", params["window"], params.get("slide", params["window"]))
    res = df.groupBy(w, "sensor").agg(F.count("*").alias("n"), F.count("v").alias("nv"), F.sum("v").alias("s"),
                                      F.avg("v").alias("avg"), F.min("v").alias("min"), F.max("v").alias("max"))
elif job == "wiki_edits":
    df = spark.readStream.schema("time timestamp, channel string, page string, user string, isRobot boolean, isNew boolean, delta long, added long, deleted long").option("maxFilesPerTrigger", 1).json(inp)
    df = df.withWatermark("time", params["watermark"])
    res = df.groupBy(F.window("time", params["window"]), "channel").agg(F.count("*").alias("edits"), F.sum("added").alias("added"), F.sum("deleted").alias("deleted"), F.sum(F.col("isRobot").cast("long")).alias("robot_edits"), F.max("delta").alias("max_delta"))
elif job == "running_counts":
    df = spark.readStream.schema("time timestamp, channel string, added long").option("maxFilesPerTrigger", 1).json(inp)
    res = df.groupBy("channel").agg(F.count("*").alias("edits"), F.sum("added").alias("added"))
if job == "ad_join":
    imp = spark.readStream.schema("ad_id string, impression_time timestamp, campaign string").option("maxFilesPerTrigger", 1).json(inp + "/impressions").withWatermark("impression_time", params.get("impression_watermark", "2 hours"))
    clk = spark.readStream.schema("click_ad_id string, click_time timestamp, cost double").option("maxFilesPerTrigger", 1).json(inp + "/clicks").withWatermark("click_time", params.get("click_watermark", "3 hours"))
    gap = params.get("max_gap", "1 hour")
    res = imp.join(clk, F.expr(f"click_ad_id = ad_id AND click_time >= impression_time AND click_time <= impression_time + interval {gap}"), params["how"])
if job == "wiki_languages":
    ed = spark.readStream.schema("time timestamp, channel string, user string, added long").option("maxFilesPerTrigger", 1).json(inp + "/edits").withWatermark("time", params["watermark"])
    ch = spark.read.option("header", True).schema("channel string, language string, project string").csv(inp + "/channels.csv")
    j = ed.join(ch, "channel", params["how"])
    res = j.groupBy(F.window("time", params["window"]), "language").agg(F.count("*").alias("edits"), F.sum("added").alias("added")) if params.get("window") else j
if job == "wiki_user_state":
    import pandas as pd
    from pyspark.sql.streaming.state import GroupStateTimeout
    ed = spark.readStream.schema("time timestamp, user string, added long").option("maxFilesPerTrigger", 1).json(inp).withWatermark("time", params["watermark"])
    tmo = int(params["timeout_minutes"]) * 60000
    def activity(key, pdfs, state):
        if state.hasTimedOut:
            edits, added, first, last = state.get
            state.remove()
            yield pd.DataFrame({"user": [key[0]], "edits": [edits], "added": [added],
                                "first_edit": [pd.to_datetime(first, unit="ms")], "last_edit": [pd.to_datetime(last, unit="ms")]})
            return
        edits, added, first, last = state.get if state.exists else (0, 0, None, None)
        for pdf in pdfs:
            ms = (pdf["time"] - pd.Timestamp(0)) // pd.Timedelta(milliseconds=1)
            edits += len(pdf)
            added += int(pdf["added"].sum())
            first = int(ms.min()) if first is None else min(first, int(ms.min()))
            last = int(ms.max()) if last is None else max(last, int(ms.max()))
        state.update((edits, added, first, last))
        state.setTimeoutTimestamp(max(last + tmo, state.getCurrentWatermarkMs() + 1))
        yield pd.DataFrame({"user": [], "edits": [], "added": [], "first_edit": [], "last_edit": []}).astype(
            {"user": "object", "edits": "int64", "added": "int64", "first_edit": "datetime64[ns]", "last_edit": "datetime64[ns]"})
    res = ed.groupBy("user").applyInPandasWithState(activity, "user string, edits long, added long, first_edit timestamp, last_edit timestamp",
                                                    "edits long, added long, first long, last long", "append", GroupStateTimeout.EventTimeTimeout)
if job == "dedup":
    df = spark.readStream.schema("event_id string, ts timestamp, v long").option("maxFilesPerTrigger", 1).json(inp)
    if params.get("watermark"): df = df.withWatermark("ts", params["watermark"])
    within = str(params.get("within_watermark", False)).lower() == "true"
    keys = params["keys"].split(",") if params.get("keys") else (["event_id"] if within else ["event_id", "ts"])
    res = df.dropDuplicatesWithinWatermark(keys) if within else df.dropDuplicates(keys)
    if params.get("count_window"): res = res.groupBy(F.window("ts", params["count_window"])).agg(F.count("*").alias("n"), F.sum("v").alias("v"))
if job == "wiki_sessions":
    ed = spark.readStream.schema("time timestamp, user string, added long").option("maxFilesPerTrigger", 1).json(inp).withWatermark("time", params["watermark"])
    res = ed.groupBy(F.session_window("time", params["gap"]), "user").agg(F.count("*").alias("edits"), F.sum("added").alias("added"))
if job == "sql":
    # The oracle's `sql` job: stream views `edits` and `sensors`, static table `channels`,
    # from what the input folder holds; each stream view watermarked on its time column
    # when `watermark` is given; then spark.sql(query).
    streams = {"edits": ("time timestamp, channel string, page string, user string, isRobot boolean, isNew boolean, delta long, added long, deleted long", "time"),
               "sensors": ("sensorId string, eventTime timestamp, value double, errorCode string", "eventTime")}
    for view, (schema, tcol) in streams.items():
        if os.path.isdir(os.path.join(inp, view)):
            df = spark.readStream.schema(schema).option("maxFilesPerTrigger", 1).json(os.path.join(inp, view))
            if params.get("watermark"): df = df.withWatermark(tcol, params["watermark"])
            df.createOrReplaceTempView(view)
    if os.path.exists(os.path.join(inp, "channels.csv")):
        spark.read.option("header", True).schema("channel string, language string, project string").csv(os.path.join(inp, "channels.csv")).createOrReplaceTempView("channels")
    try:
        res = spark.sql(params["query"])
    except Exception as e:   # a parse or analysis error: recorded in <out>/error.json
        res = e
rows = []
def ts(v):
    return v.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
def plain(v):   # nested values: timestamps as RFC 3339 UTC, structs as objects, arrays as lists
    if isinstance(v, dict): return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list): return [plain(x) for x in v]
    if hasattr(v, "strftime"): return ts(v)
    if isinstance(v, float) and not math.isfinite(v): return str(v)   # "nan", "inf": JSON has no NaN
    if type(v).__name__ == "Decimal": raise TypeError(f"decimal value {v}: cast it to double in the query")
    return v
def fe(b, bid):
    for r in b.collect():
        d = r.asDict(recursive=True)
        o = {"batch": bid}
        for k, v in d.items():
            if isinstance(v, dict) and set(v) == {"start", "end"}:   # a window: flattened
                o[k + "_start"] = ts(v["start"]); o[k + "_end"] = ts(v["end"])
            else:
                o[k] = plain(v)
        rows.append(o)
def failed(e, at):
    # Spark's error class (null for the streaming checks that have none yet) and its message
    # without the logical plan that follows it (the plan's expression ids vary)
    msg = str(e).strip()
    if ";\n" in msg: msg = msg.split(";\n")[0]
    os.makedirs(out, exist_ok=True)
    with open(out + "/error.json", "w") as f:
        json.dump({"error_class": e.getErrorClass() if hasattr(e, "getErrorClass") else None,
                   "message": msg, "at": at, "exception": type(e).__name__}, f)
    print("error at", at, type(e).__name__, msg)
    sys.exit(3)
if isinstance(res, Exception): failed(res, "sql")
try:
    q = res.writeStream.outputMode(params["mode"]).trigger(availableNow=True).foreachBatch(fe).option("checkpointLocation", out + "/ck").start()
except Exception as e:
    if job != "sql": raise
    failed(e, "start")
q.awaitTermination()
os.makedirs(out, exist_ok=True)
with open(out + "/expected.jsonl", "w") as f:
    for r in rows: f.write(json.dumps(r, default=str, sort_keys=True) + "\n")
# per batch: the rows read from the sources and the watermark the batch ran with (null
# without a watermark)
with open(out + "/progress.jsonl", "w") as f:
    for p in q.recentProgress:
        f.write(json.dumps({"batch": p["batchId"], "input_rows": p["numInputRows"],
                            "watermark": p.get("eventTime", {}).get("watermark")}) + "\n")
with open(out + "/case.json", "w") as f:
    json.dump({"job": job, "params": params}, f)
print("spark rows", len(rows), "batches", len(q.recentProgress))
