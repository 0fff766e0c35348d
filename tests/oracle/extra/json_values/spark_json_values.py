"""What Spark 3.5 does with the JSON values and CSV rows of issue 9 (items 1, 7, 8).

Run: python3 spark_json_values.py > spark_output.txt  (PySpark 3.5.9, Java 17, local[1], UTC)

Each probe reads a few JSON lines (or CSV rows) with spark.read (a batch read gives the
same per-record semantics as the stream's file source) under each parse mode and
prints the rows Spark returns, one JSON object per row (doubles spelt with repr so NaN
and Infinity are visible)."""
import json
import math
import os
import sys
import tempfile

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
from pyspark.sql import SparkSession, functions as F, types as T

spark = (SparkSession.builder.master("local[1]").appName("json-values")
         .config("spark.sql.session.timeZone", "UTC")
         .config("spark.ui.enabled", "false").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
work = tempfile.mkdtemp()


def show(v):
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return repr(v)
    if isinstance(v, str) and len(v) > 120:
        return v[:40] + f"...({len(v)} chars)..." + v[-20:]
    return v


def dump(df):
    for r in df.collect():
        print("   ", json.dumps({k: show(v) for k, v in r.asDict().items()}, ensure_ascii=False))


def probe(title, fmt, text, schema, modes=("PERMISSIVE", "DROPMALFORMED", "FAILFAST"), **opts):
    path = os.path.join(work, f"probe-{abs(hash(title))}.{fmt}")
    with open(path, "w") as f:
        f.write(text)
    print(f"## {title}")
    print("input:")
    for line in text.splitlines():
        print("   ", line if len(line) < 120 else line[:60] + f"... ({len(line)} chars)")
    for mode in modes:
        reader = spark.read.schema(schema).option("mode", mode)
        for k, v in opts.items():
            reader = reader.option(k, v)
        if mode == "PERMISSIVE":
            reader = reader.option("columnNameOfCorruptRecord", "_corrupt")
            schema2 = T.StructType(schema.fields + [T.StructField("_corrupt", T.StringType())])
            reader = reader.schema(schema2)
        print(f"  {mode}:")
        try:
            df = reader.format(fmt).load(path)
            dump(df)
        except Exception as e:  # noqa: BLE001
            cause = [l for l in str(e).splitlines() if "Exception" in l and "Py4J" not in l]
            print("    error:", (cause[0] if cause else str(e).splitlines()[0])[:160])


s_str = T.StructType([T.StructField("id", T.LongType()), T.StructField("s", T.StringType())])
probe("JSON object and array in a string column", "json",
      '{"id": 1, "s": {"a": 1, "b": [true, null, "x\\"y"], "c": {"d": 1.50}}}\n'
      '{"id": 2, "s": [1, 2.0, 1e3, "é\\n"]}\n'
      '{"id": 3, "s": "plain"}\n'
      '{"id": 4, "s": 12.50}\n'
      '{"id": 5, "s": true}\n'
      '{"id": 6, "s": {}}\n'
      '{"id": 7, "s": { "a" :  [ ] }}\n', s_str)

s_dbl = T.StructType([T.StructField("id", T.LongType()), T.StructField("v", T.DoubleType())])
probe("non-numeric numbers in a double column", "json",
      '{"id": 1, "v": NaN}\n{"id": 2, "v": Infinity}\n{"id": 3, "v": -Infinity}\n'
      '{"id": 4, "v": +INF}\n{"id": 5, "v": -INF}\n{"id": 6, "v": +Infinity}\n{"id": 7, "v": INF}\n'
      '{"id": 8, "v": 1e400}\n{"id": 9, "v": -1e400}\n{"id": 10, "v": 1e-400}\n'
      '{"id": 11, "v": "NaN"}\n{"id": 12, "v": "Infinity"}\n{"id": 13, "v": "-INF"}\n'
      '{"id": 14, "v": nan}\n{"id": 15, "v": "+INF"}\n{"id": 16, "v": "INF"}\n', s_dbl)

s_flt = T.StructType([T.StructField("id", T.LongType()), T.StructField("v", T.FloatType())])
probe("1e400 and 1e39 in a float column", "json", '{"id": 1, "v": 1e400}\n{"id": 2, "v": 1e39}\n', s_flt,
      modes=("PERMISSIVE",))

probe("NaN in a long and a string column", "json",
      '{"id": NaN, "s": "a"}\n{"id": 2, "s": NaN}\n{"id": 3, "s": -Infinity}\n', s_str)

deep = '{"id": 1, "s": ' + '{"a":' * 30000 + '1' + '}' * 30000 + '}'
probe("an object nested 30,000 deep in a string column", "json",
      deep + '\n{"id": 2, "s": "after"}\n', s_str)
for depth in (999, 1000, 1001):
    line = '{"id": 1, "s": ' + '[' * depth + ']' * depth + '}'
    probe(f"an array nested {depth} deep (+1 for the record) in a string column", "json",
          line + '\n', s_str, modes=("PERMISSIVE",))

s_csv = T.StructType([T.StructField("channel", T.StringType()), T.StructField("language", T.StringType()),
                      T.StructField("project", T.StringType())])
probe("CSV rows with more and fewer fields than the schema", "csv",
      "channel,language,project\n#en.wikipedia,en,wikipedia,extra1,extra2\n#de.wikipedia,de\n"
      "#fr.wikipedia,fr,wikipedia\n", s_csv, header="true")

s_csv2 = T.StructType([T.StructField("a", T.IntegerType()), T.StructField("b", T.StringType())])
probe("CSV: extra fields and a bad int", "csv", "1,x,y\nz,w\n3\n", s_csv2)

print("## writing NaN, Infinity, -Infinity and nulls as JSON (file sink and to_json)")
df = spark.createDataFrame([(1, float("nan")), (2, float("inf")), (3, float("-inf")), (4, None)], s_dbl)
out = os.path.join(work, "written")
df.coalesce(1).write.json(out)
for name in sorted(os.listdir(out)):
    if name.endswith(".json"):
        for line in open(os.path.join(out, name)):
            print("   write.json:", line.rstrip())
for r in df.select(F.to_json(F.struct("id", "v")).alias("j")).collect():
    print("   to_json:", r.j)
print("## from_json (Kafka values) of the same values")
vals = spark.createDataFrame([(v,) for v in [
    '{"id": 1, "v": NaN}', '{"id": 2, "v": 1e400}', '{"id": 3, "s": {"a": [1]}}', deep[:20] + "...",
    deep]], "value string")
sch = "id long, v double, s string"
for r in vals.select(F.from_json("value", sch).alias("j")).collect():
    j = r.j
    print("   from_json:", None if j is None else json.dumps({k: show(v) for k, v in j.asDict().items()}))
