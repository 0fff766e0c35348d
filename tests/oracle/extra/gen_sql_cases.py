# Computes the sql_* cases here with PySpark 3.5 (run_spark.py's `sql` job), records the
# analysis errors in sql_errors.jsonl, and checks run_spark.py against the oracle's sql cases.
#
#   python3 gen_sql_cases.py validate          # p14..p21: reproduce Spark's rows and progress
#   python3 gen_sql_cases.py cases [NAME ...]  # (re)compute all or the named sql_* cases
#   python3 gen_sql_cases.py errors            # sql_errors.jsonl
#
# Inputs are copied to a fresh folder with modification times in name order first (the file
# source reads in that order). A case reads the input of the oracle case named by
# `input_case` (looked up in ../cases, then in the shared oracle's cases: $ORACLE_CASES or
# <project>/../shared/oracle/cases), or `input_dir` (relative to this folder; made by
# gen_sql_input.py).
import json, os, shutil, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
SHARED = os.environ.get("ORACLE_CASES", os.path.join(PROJECT, "..", "shared", "oracle", "cases"))
COMPARE = os.path.join(SHARED, "..", "compare.py")
GS = {"input_dir": "inputs/sql_sensors"}         # generated sensors (gen_sql_input.py)
E = {"input_case": "p14_sql_window_counts"}       # edits, 10 files of 4000 rows
S16 = {"input_case": "p16_sql_sensor_stats"}      # sensors, 15 files of 100 rows
C = {"input_case": "p19_sql_static_join"}         # edits + channels.csv

AGG_ALL = ("count(*) AS n, count(value) AS nv, sum(value) AS sum_value, avg(value) AS avg_value, "
           "mean(value) AS mean_value, min(value) AS min_value, max(value) AS max_value, "
           "first(value) AS first_value, last(value) AS last_value, stddev(value) AS sd, "
           "stddev_samp(value) AS sd_samp, stddev_pop(value) AS sd_pop, variance(value) AS var, "
           "var_samp(value) AS var_samp, var_pop(value) AS var_pop, "
           "array_sort(collect_list(errorCode)) AS codes, array_sort(collect_set(errorCode)) AS code_set, "
           "min_by(value, eventTime) AS earliest_value, max_by(value, eventTime) AS latest_value, "
           "count_if(value > 20) AS over_20")
INNER_30M = ("SELECT window(time, '30 minutes') AS w, channel, count(*) AS edits, sum(added) AS added "
             "FROM edits GROUP BY window(time, '30 minutes'), channel")
INNER_1M = ("SELECT window(eventTime, '1 minute') AS w, sensorId, count(*) AS n, avg(value) AS a "
            "FROM sensors GROUP BY window(eventTime, '1 minute'), sensorId")
SELF_JOIN = ("FROM edits a JOIN edits b ON a.page = b.page AND a.user <> b.user "
             "AND b.time BETWEEN a.time AND a.time + interval 10 minutes")

def case(name, inp, query, mode, watermark=None, what=""):
    params = {"query": query, "mode": mode}
    if watermark: params["watermark"] = watermark
    return name, inp, params, what

CASES = [
    # global aggregation (no GROUP BY)
    case("sql_global_update", S16, "SELECT count(*) AS n, count(value) AS nv, sum(value) AS sum_value, avg(value) AS avg_value, min(value) AS min_value, max(value) AS max_value FROM sensors", "update",
         what="global aggregation in update mode (one row a batch), null values"),
    case("sql_global_update_wm", GS, "SELECT count(*) AS n, count(value) AS nv, count(errorCode) AS ne, sum(value) AS sum_value, avg(value) AS avg_value, min(value) AS min_value, max(value) AS max_value, min(eventTime) AS first_time, max(eventTime) AS last_time FROM sensors", "update", "2 minutes",
         what="global aggregation in update mode with a watermark: late rows and a null event time still counted"),
    case("sql_global_complete", E, "SELECT count(*) AS edits, count(CASE WHEN isRobot THEN 1 END) AS robot_edits, sum(added) AS added, avg(delta) AS avg_delta, min(delta) AS min_delta, max(added) AS max_added, min(time) AS first_time, max(time) AS last_time FROM edits", "complete",
         what="global aggregation in complete mode over edits (long sums, min/max of a timestamp)"),
    case("sql_global_complete_nulls", GS, "SELECT count(*) AS n, count(value) AS nv, count(sensorId) AS ns, sum(value) AS sum_value, avg(value) AS avg_value, min(value) AS min_value, max(value) AS max_value FROM sensors", "complete",
         what="global aggregation in complete mode, null values and keys"),
    # every aggregate function grouped by a key, update mode
    case("sql_agg_basic_update", GS, "SELECT sensorId, count(*) AS n, count(value) AS nv, sum(value) AS sum_value, avg(value) AS avg_value, mean(value) AS mean_value, min(value) AS min_value, max(value) AS max_value, count_if(value > 20) AS over_20, count_if(errorCode IS NULL) AS no_code FROM sensors GROUP BY sensorId", "update",
         what="count(*), count(col), sum, avg, mean, min, max, count_if per key in update mode; an all-null group, a one-row group, a null key"),
    case("sql_agg_stats_update", GS, "SELECT sensorId, stddev(value) AS sd, stddev_samp(value) AS sd_samp, stddev_pop(value) AS sd_pop, variance(value) AS var, var_samp(value) AS var_samp, var_pop(value) AS var_pop FROM sensors GROUP BY sensorId", "update",
         what="stddev, stddev_samp, stddev_pop, variance, var_samp, var_pop per key in update mode (one row: samp null, pop 0)"),
    case("sql_agg_order_update", GS, "SELECT sensorId, first(value) AS first_value, last(value) AS last_value, first(value, true) AS first_nonnull, last(value, true) AS last_nonnull, first(errorCode) AS first_code, last(errorCode) AS last_code, min_by(value, eventTime) AS earliest_value, max_by(value, eventTime) AS latest_value, min_by(errorCode, value) AS code_of_min, max_by(eventTime, value) AS time_of_max FROM sensors GROUP BY sensorId", "update",
         what="first, last (with and without ignoreNulls), min_by, max_by per key in update mode across batches"),
    case("sql_agg_collect_update", GS, "SELECT sensorId, array_sort(collect_list(errorCode)) AS codes, array_sort(collect_set(errorCode)) AS code_set, array_sort(collect_list(value)) AS values, array_sort(collect_set(value)) AS value_set, size(collect_list(value)) AS nv FROM sensors GROUP BY sensorId", "update",
         what="array_sort(collect_list), array_sort(collect_set) per key in update mode (nulls skipped, re-deliveries kept by collect_list)"),
    case("sql_agg_all_update", S16, f"SELECT sensorId, {AGG_ALL.replace('array_sort(collect_list(errorCode)) AS codes, ', '')} FROM sensors GROUP BY sensorId", "update", "10 minutes",
         what="all aggregate functions per sensor in update mode over p16's input"),
    case("sql_agg_window_append", GS, f"SELECT window(eventTime, '5 minutes') AS window, sensorId, {AGG_ALL} FROM sensors GROUP BY window(eventTime, '5 minutes'), sensorId", "append", "2 minutes",
         what="all aggregate functions per 5-minute window and key in append mode; late rows dropped"),
    case("sql_agg_window_append_p16", S16, f"SELECT window(eventTime, '15 minutes') AS window, sensorId, {AGG_ALL.replace('array_sort(collect_list(errorCode)) AS codes, ', '')} FROM sensors GROUP BY window(eventTime, '15 minutes'), sensorId", "append", "5 minutes",
         what="all aggregate functions per 15-minute window and sensor in append mode over p16's input"),
    # HAVING
    case("sql_having_window_append", E, "SELECT window(time, '10 minutes') AS window, channel, count(*) AS edits, sum(added) AS added FROM edits GROUP BY window(time, '10 minutes'), channel HAVING count(*) >= 20 AND sum(added) > 5000", "append", "1 minute",
         what="HAVING over a tumbling-window aggregate in append mode"),
    case("sql_having_update", E, "SELECT channel, count(*) AS edits, avg(delta) AS avg_delta FROM edits GROUP BY channel HAVING count(*) >= 100 AND avg(delta) > 150", "update",
         what="HAVING in update mode: only updated groups that pass (a group can pass, then fail, then pass)"),
    case("sql_having_update_sensors", GS, "SELECT sensorId, count(*) AS n, avg(value) AS avg_value FROM sensors GROUP BY sensorId HAVING avg(value) > 19 AND count(*) > 1", "update",
         what="HAVING in update mode over a small input (null averages never pass)"),
    # arithmetic over aggregates
    case("sql_agg_arith_update", E, "SELECT channel, sum(added) / count(*) AS avg_added, max(delta) - min(delta) AS delta_range, sum(added) - sum(deleted) AS net, count(*) * 2 + 1 AS odd, round(avg(added), 2) AS avg_added_2, cast(sum(CASE WHEN isRobot THEN 1 ELSE 0 END) AS double) / count(*) AS robot_share FROM edits GROUP BY channel", "update",
         what="arithmetic over aggregates (long / long is a double, round, differences) in update mode"),
    case("sql_agg_arith_window_append", GS, "SELECT window(eventTime, '5 minutes') AS window, sensorId, max(value) - min(value) AS spread, sum(value) / count(value) AS mean_value, sum(value) / count(*) AS mean_over_all, count(*) - count(value) AS missing FROM sensors GROUP BY window(eventTime, '5 minutes'), sensorId", "append", "2 minutes",
         what="arithmetic over windowed aggregates in append mode (null where there are no values)"),
    # ORDER BY ... LIMIT in complete mode
    case("sql_topn_complete", E, "SELECT channel, count(*) AS edits, sum(added) AS added FROM edits GROUP BY channel ORDER BY edits DESC, channel LIMIT 5", "complete",
         what="top 5 channels by edits in complete mode (ORDER BY ... LIMIT)"),
    case("sql_topn_language_complete", C, "SELECT c.language, count(*) AS edits FROM edits e JOIN channels c ON e.channel = c.channel GROUP BY c.language ORDER BY edits DESC, c.language LIMIT 3", "complete",
         what="top 3 languages (static join) in complete mode"),
    case("sql_order_complete", GS, "SELECT sensorId, count(*) AS n, avg(value) AS avg_value FROM sensors GROUP BY sensorId ORDER BY avg_value DESC", "complete",
         what="ORDER BY without LIMIT in complete mode (every group, null average last)"),
    # window aggregation over window_time(window) of another
    case("sql_chained_30m_2h", E, f"SELECT window(window_time(w), '2 hours') AS window, count(*) AS channels, sum(edits) AS edits, max(edits) AS max_edits, sum(added) AS added FROM ({INNER_30M}) WHERE edits >= 5 GROUP BY window(window_time(w), '2 hours')", "append", "5 minutes",
         what="30-minute counts per channel, then 2-hour windows over window_time, append"),
    case("sql_chained_sliding", S16, f"SELECT window(window_time(w), '10 minutes', '5 minutes') AS window, sensorId, count(*) AS minutes, sum(n) AS n, max(n) AS max_per_minute, avg(a) AS mean_of_means FROM ({INNER_1M}) GROUP BY window(window_time(w), '10 minutes', '5 minutes'), sensorId", "append", "2 minutes",
         what="1-minute averages per sensor, then sliding 10/5-minute windows over window_time, append"),
    # aggregation after a stream-stream join
    case("sql_join_agg_append", E, f"SELECT window(a.time, '1 hour') AS window, count(*) AS pairs, sum(b.added) AS added_after FROM edits a JOIN edits b ON a.page = b.page AND a.user <> b.user AND b.time BETWEEN a.time AND a.time + interval 10 minutes GROUP BY window(a.time, '1 hour')", "append", "1 minute",
         what="self-join of edits (same page, other user, within 10 minutes), then hourly counts, append"),
    case("sql_join_window_agg_append", E, "SELECT window, count(*) AS pairs, max(page) AS max_page FROM (SELECT window(time, '10 minutes') AS window, page, user FROM edits) a JOIN (SELECT window(time, '10 minutes') AS window, page, user AS other FROM edits) b USING (window, page) WHERE user <> other GROUP BY window", "append", "1 minute",
         what="self-join on (10-minute window, page), then a count per window, append"),
    # aggregation after SELECT DISTINCT
    case("sql_distinct_agg_append", GS, "SELECT window(eventTime, '5 minutes') AS window, sensorId, count(*) AS n, sum(value) AS sum_value FROM (SELECT DISTINCT sensorId, eventTime, value FROM sensors) GROUP BY window(eventTime, '5 minutes'), sensorId", "append", "2 minutes",
         what="SELECT DISTINCT (drops re-deliveries) then a windowed count, append"),
    case("sql_distinct_users_append", E, "SELECT w AS window, count(*) AS user_channels, count(CASE WHEN channel = '#en.wikipedia' THEN 1 END) AS en_users FROM (SELECT DISTINCT window(time, '30 minutes') AS w, channel, user FROM edits) GROUP BY w", "append", "1 minute",
         what="SELECT DISTINCT window, channel, user then a count per window (distinct users per channel), append"),
    # session windows
    case("sql_session_sensors", GS, "SELECT session_window(eventTime, '45 seconds') AS session, sensorId, count(*) AS n, avg(value) AS avg_value FROM sensors GROUP BY session_window(eventTime, '45 seconds'), sensorId", "append", "1 minute",
         what="session_window gap 45 seconds per sensor, watermark 1 minute, append"),
    case("sql_session_new_pages", E, "SELECT session_window(time, '30 minutes') AS session, user, count(*) AS edits, sum(added) AS added FROM edits WHERE isNew GROUP BY session_window(time, '30 minutes'), user", "append", "2 minutes",
         what="session_window gap 30 minutes per user over new pages, watermark 2 minutes, append"),
]

# approx_count_distinct: Spark's estimate beside the exact count of the rows seen so far
APPROX = [
    ("sql_approx_distinct_05", E, "SELECT approx_count_distinct(user, 0.05) AS users, approx_count_distinct(page, 0.05) AS pages FROM edits", "complete", [], ["users", "pages"],
     "approx_count_distinct(x, 0.05), global, complete: exact count and Spark's estimate"),
    ("sql_approx_distinct_01", E, "SELECT approx_count_distinct(user, 0.01) AS users, approx_count_distinct(page, 0.01) AS pages FROM edits", "complete", [], ["users", "pages"],
     "approx_count_distinct(x, 0.01), global, complete: exact count and Spark's estimate"),
    ("sql_approx_distinct_channel_01", E, "SELECT channel, approx_count_distinct(user, 0.01) AS users FROM edits GROUP BY channel", "update", ["channel"], ["users"],
     "approx_count_distinct(user, 0.01) per channel, update: exact count and Spark's estimate"),
]
EXACT = {"users": "user", "pages": "page"}

ERRORS = [
    ("SELECT channel, count(DISTINCT user) AS users FROM edits GROUP BY channel", "update", None),
    ("SELECT window(time, '10 minutes') AS window, count(DISTINCT user) AS users FROM edits GROUP BY window(time, '10 minutes')", "append", "1 minute"),
    ("SELECT count(*) AS edits, sum(added) AS added FROM edits", "append", None),
    ("SELECT count(*) AS edits, sum(added) AS added FROM edits", "append", "1 minute"),
    ("SELECT channel, added FROM edits ORDER BY added DESC", "append", None),
    ("SELECT channel, count(*) AS edits FROM edits GROUP BY channel ORDER BY edits DESC LIMIT 5", "update", None),
    ("SELECT channel, count(*) AS edits FROM edits GROUP BY channel ORDER BY edits DESC", "update", None),
    ("SELECT channel, count(*) AS edits FROM edits GROUP BY channel LIMIT 5", "update", None),
    ("SELECT window(time, '10 minutes') AS window, channel, count(*) AS edits FROM edits GROUP BY window(time, '10 minutes'), channel ORDER BY edits DESC LIMIT 5", "append", "1 minute"),
    ("SELECT window(window_time(w), '1 hour') AS window, count(*) AS busy_channels, sum(edits) AS edits FROM (SELECT window(time, '10 minutes') AS w, channel, count(*) AS edits FROM edits GROUP BY window(time, '10 minutes'), channel) WHERE edits >= 10 GROUP BY window(window_time(w), '1 hour')", "update", "1 minute"),
    ("SELECT window(window_time(w), '1 hour') AS window, count(*) AS busy_channels, sum(edits) AS edits FROM (SELECT window(time, '10 minutes') AS w, channel, count(*) AS edits FROM edits GROUP BY window(time, '10 minutes'), channel) WHERE edits >= 10 GROUP BY window(window_time(w), '1 hour')", "complete", "1 minute"),
    ("SELECT count(*) AS channels FROM (SELECT channel, count(*) AS edits FROM edits GROUP BY channel)", "complete", None),
    ("SELECT count(*) AS channels FROM (SELECT channel, count(*) AS edits FROM edits GROUP BY channel)", "update", None),
    ("SELECT a.page, a.time, b.time AS t2 FROM edits a LEFT OUTER JOIN edits b ON a.page = b.page AND a.user <> b.user AND b.time BETWEEN a.time AND a.time + interval 10 minutes", "append", None),
    ("SELECT a.page, a.time, b.time AS t2 FROM edits a FULL OUTER JOIN edits b ON a.page = b.page AND a.user <> b.user", "append", None),
    ("SELEC channel FROM edits", "append", None),
    ("SELECT channel, nosuch FROM edits", "append", None),
    ("SELECT channel, frobnicate(added) AS f FROM edits", "append", None),
]

def input_of(inp):
    if "input_dir" in inp:
        return os.path.join(HERE, inp["input_dir"])
    for root in (os.path.join(HERE, "..", "cases"), SHARED):
        d = os.path.join(root, inp["input_case"], "input")
        if os.path.isdir(d): return d
    sys.exit(f"no input for {inp}")

def copy_ordered(frm, to):   # modification times in name order: the file source's order
    os.makedirs(to, exist_ok=True)
    for i, n in enumerate(sorted(os.listdir(frm))):
        f, d = os.path.join(frm, n), os.path.join(to, n)
        if os.path.isdir(f): copy_ordered(f, d); continue
        shutil.copyfile(f, d); os.utime(d, (1700000000 + i, 1700000000 + i))

def spark_run(inp_dir, params, work):
    copy_ordered(inp_dir, work + "/in")
    r = subprocess.run([sys.executable, os.path.join(HERE, "run_spark.py"), "sql", work + "/in", work + "/out", json.dumps(params)],
                       capture_output=True, text=True)
    return r, work + "/out"

def store(name, inp, params, out, what, extra={}):
    d = os.path.join(HERE, name)
    os.makedirs(d, exist_ok=True)
    shutil.copyfile(out + "/expected.jsonl", d + "/expected.jsonl")
    shutil.copyfile(out + "/progress.jsonl", d + "/progress.jsonl")
    with open(d + "/case.json", "w") as f:
        json.dump({"job": "sql", "params": params, **inp, **extra}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    rows = sum(1 for _ in open(d + "/expected.jsonl"))
    batches = sum(1 for _ in open(d + "/progress.jsonl"))
    print(f"{name}: {rows} rows, {batches} batches  ({what})", flush=True)

def run_cases(names):
    for name, inp, params, what in CASES:
        if names and name not in names: continue
        with tempfile.TemporaryDirectory() as work:
            r, out = spark_run(input_of(inp), params, work)
            if r.returncode: sys.exit(f"{name} failed:\n{r.stdout}\n{r.stderr[-3000:]}")
            store(name, inp, params, out, what)
    for name, inp, query, mode, keys, cols, what in APPROX:
        if names and name not in names: continue
        with tempfile.TemporaryDirectory() as work:
            params = {"query": query, "mode": mode}
            r, out = spark_run(input_of(inp), params, work)
            if r.returncode: sys.exit(f"{name} failed:\n{r.stdout}\n{r.stderr[-3000:]}")
            exact_counts(work + "/in", out, keys, cols)
            store(name, inp, params, out, what, {"approx_fields": {c: c + "_spark_estimate" for c in cols}})
            with open(os.path.join(HERE, name, "README.md"), "w") as f:
                f.write(APPROX_README.format(query=query, mode=mode, cols=", ".join(cols)))

APPROX_README = """# {query} ({mode} mode)

Spark's `approx_count_distinct` is a HyperLogLog++ sketch whose estimate another sketch will
not reproduce bit for bit. So each row of `expected.jsonl` has, for each of {cols}:

- `<col>`: the exact `count(DISTINCT x)` over all rows read up to and including that batch
  (computed by a Spark batch query over those input files), what a sketch estimates;
- `<col>_spark_estimate`: what Spark 3.5's `approx_count_distinct` gave in that batch.

Compare an engine's estimate with the exact count (within a few times the relative standard
deviation), not with Spark's estimate; `case.json`'s `approx_fields` names the columns.
"""

def exact_counts(inp, out, keys, cols):
    """Adds the exact count of distinct values seen so far to each row of Spark's output."""
    from pyspark.sql import SparkSession, functions as F
    spark = (SparkSession.builder.master("local[2]").config("spark.sql.session.timeZone", "UTC")
             .config("spark.sql.shuffle.partitions", "2").config("spark.ui.enabled", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    files = sorted(os.listdir(inp + "/edits"))
    progress = [json.loads(l) for l in open(out + "/progress.jsonl")]
    rows = [json.loads(l) for l in open(out + "/expected.jsonl")]
    read, exact = 0, {}
    schema = "time timestamp, channel string, page string, user string, isRobot boolean, isNew boolean, delta long, added long, deleted long"
    for p in progress:
        n = 0
        while n < p["input_rows"]:    # the files this batch read (one per batch)
            n += sum(1 for _ in open(os.path.join(inp, "edits", files[read]))); read += 1
        assert n == p["input_rows"], (p, n)
        df = spark.read.schema(schema).json([os.path.join(inp, "edits", f) for f in files[:read]])
        q = df.groupBy(*keys).agg(*[F.expr(f"count(DISTINCT {EXACT[c]}) AS {c}") for c in cols])
        exact[p["batch"]] = {tuple(r[k] for k in keys): r.asDict() for r in q.collect()}
    with open(out + "/expected.jsonl", "w") as f:
        for r in rows:
            e = exact[r["batch"]][tuple(r[k] for k in keys)]
            for c in cols:
                r[c + "_spark_estimate"] = r[c]; r[c] = e[c]
            f.write(json.dumps(r, sort_keys=True, ensure_ascii=True) + "\n")
    spark.stop()

def run_errors():
    lines = []
    for query, mode, watermark in ERRORS:
        params = {"query": query, "mode": mode}
        if watermark: params["watermark"] = watermark
        with tempfile.TemporaryDirectory() as work:
            r, out = spark_run(input_of(E), params, work)
            if r.returncode != 3: sys.exit(f"expected an error: {query} ({mode})\n{r.stdout}\n{r.stderr[-3000:]}")
            err = json.load(open(out + "/error.json"))
        rec = {"query": query, "mode": mode, "watermark": watermark, "error_class": err["error_class"],
               "message": err["message"], "at": err["at"], "exception": err["exception"]}
        print(json.dumps(rec), flush=True)
        lines.append(json.dumps(rec, ensure_ascii=False))
    with open(os.path.join(HERE, "sql_errors.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")

def validate():
    bad = 0
    for name in sorted(os.listdir(SHARED)):
        d = os.path.join(SHARED, name)
        if json.load(open(d + "/case.json"))["job"] != "sql": continue
        with tempfile.TemporaryDirectory() as work:
            r, out = spark_run(d + "/input", json.load(open(d + "/case.json"))["params"], work)
            if r.returncode: print(name, "failed", r.stderr[-2000:]); bad += 1; continue
            bd = out + "/batches"; os.makedirs(bd)
            for line in open(out + "/expected.jsonl"):
                row = json.loads(line); b = row.pop("batch")
                with open(f"{bd}/batch-{b}.jsonl", "a") as f: f.write(json.dumps(row) + "\n")
            c = subprocess.run([sys.executable, COMPARE, d, bd], capture_output=True, text=True)
            same_progress = open(d + "/progress.jsonl").read().split() == open(out + "/progress.jsonl").read().split() or \
                [json.loads(l) for l in open(d + "/progress.jsonl")] == [json.loads(l) for l in open(out + "/progress.jsonl")]
            print(c.stdout.strip().splitlines()[-1], "| progress", "match" if same_progress else "DIFFERS", flush=True)
            bad += c.returncode != 0 or not same_progress
    return bad

if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "cases"
    if what == "validate": sys.exit(1 if validate() else 0)
    elif what == "cases": run_cases(sys.argv[2:])
    elif what == "errors": run_errors()
    else: sys.exit(__doc__ or "usage: gen_sql_cases.py validate | cases [NAME ...] | errors")
