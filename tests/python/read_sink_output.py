"""Reads the Parquet, JSON lines and CSV output of Sluice's file sink with pyarrow, Polars
and DuckDB (each where installed) and checks values and types against expected.json.

Usage: read_sink_output.py DIR, where DIR holds parquet/, json/, csv/ (sink outputs) and
expected.json (rows: id, name, t_us, window_start_us, window_end_us, tags, times_us).

The files read are those the manifest (DIR/<format>/_sluice_metadata/<batch>) lists, as
Spark's reader trusts only _spark_metadata; the tools' own directory readers are checked
too (they ignore _sluice_metadata, as its name starts with '_').
Exit status 1 when a reader disagrees; a tool that is not installed is skipped.
"""

import datetime as dt
import json
import os
import sys

DIR = sys.argv[1]
EXPECTED = json.load(open(os.path.join(DIR, "expected.json")))
UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
failures = []


def listed(fmt):
    """The data files the manifest lists, in batch order."""
    meta = os.path.join(DIR, fmt, "_sluice_metadata")
    files = []
    for entry in sorted((n for n in os.listdir(meta) if n.isdigit()), key=int):
        lines = open(os.path.join(meta, entry)).read().splitlines()
        assert lines[0] == "v1", lines[0]
        # The last line is the integrity trailer ("#sluice crc32=... len=..."), not an entry.
        files += [os.path.join(DIR, fmt, json.loads(l)["path"]) for l in lines[1:] if l.strip() and not l.startswith("#")]
    return files


def us(value):
    """Microseconds since the epoch of an aware datetime (UTC instants only)."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise AssertionError(f"{value!r} has no time zone: not a UTC instant")
    if value.utcoffset() != dt.timedelta(0):
        raise AssertionError(f"{value!r} is not in UTC")
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def check(tool, fmt, rows, types):
    """rows: dicts with id, name, t, window {start, end} (aware datetimes), tags, maybe times."""
    want = {r["id"]: r for r in EXPECTED}
    got = {r["id"]: r for r in rows}
    problems = []
    if sorted(got) != sorted(want):
        problems.append(f"ids {sorted(got)} != {sorted(want)}")
    for i, w in want.items():
        g = got.get(i)
        if g is None:
            continue
        try:
            if g["name"] != w["name"]:
                problems.append(f"id {i}: name {g['name']!r} != {w['name']!r}")
            if us(g["t"]) != w["t_us"]:
                problems.append(f"id {i}: t {g['t']!r} != {w['t_us']} us")
            win = g["window"]
            if (us(win["start"]), us(win["end"])) != (w["window_start_us"], w["window_end_us"]):
                problems.append(f"id {i}: window {win!r}")
            if fmt != "csv" and g["tags"] != w["tags"]:
                problems.append(f"id {i}: tags {g['tags']!r} != {w['tags']!r}")
            if "times" in g and [us(x) for x in g["times"]] != w["times_us"]:
                problems.append(f"id {i}: times {g['times']!r}")
        except AssertionError as e:
            problems.append(f"id {i}: {e}")
    status = "ok" if not problems else "FAILED: " + "; ".join(problems[:5])
    print(f"  {tool:8} {fmt:8} {status}")
    print(f"  {'':8} {'':8} types: {types}")
    if problems:
        failures.append(f"{tool} {fmt}")


def csv_text_list(text):
    return None if text is None else [x for x in text.strip("[]").split(", ") if x]


# --------------------------------------------------------------------------- pyarrow
def with_pyarrow():
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.dataset as ds
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    print(f"pyarrow {pa.__version__}")

    def is_utc_ts(t):
        return pa.types.is_timestamp(t) and t.tz in ("UTC", "+00:00", "Z", "Etc/UTC")

    def rows_of(table):
        return table.to_pylist()

    # Parquet: the manifest's files, and the directory as a dataset.
    table = pa.concat_tables([pq.read_table(f) for f in listed("parquet")])
    s = table.schema
    assert is_utc_ts(s.field("t").type), s.field("t").type
    assert pa.types.is_struct(s.field("window").type), s.field("window").type
    assert all(is_utc_ts(f.type) for f in s.field("window").type), s.field("window").type
    assert pa.types.is_list(s.field("tags").type) or pa.types.is_large_list(s.field("tags").type), s.field("tags").type
    check("pyarrow", "parquet", rows_of(table), f"t {s.field('t').type}, window {s.field('window').type}, tags {s.field('tags').type}, times {s.field('times').type}")
    dataset = ds.dataset(os.path.join(DIR, "parquet"), format="parquet").to_table()
    assert dataset.num_rows == len(EXPECTED), dataset.num_rows

    # JSON lines: inferred (the window is an object, so a struct), then with the types.
    inferred = pajson.read_json(listed("json")[0])
    assert pa.types.is_struct(inferred.schema.field("window").type), inferred.schema
    ts = pa.timestamp("us", tz="UTC")
    schema = pa.schema([("id", pa.int64()), ("name", pa.string()), ("t", ts),
                        ("window", pa.struct([("start", ts), ("end", ts)])),
                        ("tags", pa.list_(pa.string())), ("times", pa.list_(ts))])
    opts = pajson.ParseOptions(explicit_schema=schema)
    table = pa.concat_tables([pajson.read_json(f, parse_options=opts) for f in listed("json")])
    check("pyarrow", "json", rows_of(table), f"inferred t {inferred.schema.field('t').type}, window {inferred.schema.field('window').type}; read as {table.schema.field('t').type}")

    # CSV: struct fields flattened to window_start / window_end, inferred types; an empty
    # field is a null (Spark's nullValue), which pyarrow reads as "" for strings unless told.
    convert = pacsv.ConvertOptions(strings_can_be_null=True)
    table = pa.concat_tables([pacsv.read_csv(f, convert_options=convert) for f in listed("csv")])
    s = table.schema
    assert is_utc_ts(s.field("t").type), s.field("t").type
    assert is_utc_ts(s.field("window_start").type), s.field("window_start").type
    rows = [dict(r, window={"start": r["window_start"], "end": r["window_end"]}, tags=csv_text_list(r["tags"]))
            for r in rows_of(table)]
    check("pyarrow", "csv", rows, f"t {s.field('t').type}, window_start {s.field('window_start').type}")


# --------------------------------------------------------------------------- Polars
def with_polars():
    import polars as pl

    print(f"polars {pl.__version__}")

    def is_utc_ts(t):
        return isinstance(t, pl.Datetime) and t.time_zone in ("UTC", "+00:00")

    df = pl.concat([pl.read_parquet(f) for f in listed("parquet")])
    assert is_utc_ts(df.schema["t"]), df.schema["t"]
    assert isinstance(df.schema["window"], pl.Struct), df.schema["window"]
    assert all(is_utc_ts(f.dtype) for f in df.schema["window"].fields), df.schema["window"]
    check("polars", "parquet", df.to_dicts(), f"t {df.schema['t']}, window {df.schema['window']}, tags {df.schema['tags']}, times {df.schema['times']}")
    whole = pl.read_parquet(os.path.join(DIR, "parquet", "*.parquet"))
    assert whole.height == len(EXPECTED), whole.height

    df = pl.concat([pl.read_ndjson(f) for f in listed("json")])
    assert isinstance(df.schema["window"], pl.Struct), df.schema
    inferred = f"inferred t {df.schema['t']}, window {df.schema['window']}"
    parse = lambda e: e.str.to_datetime(time_unit="us", time_zone="UTC")
    df = df.with_columns(
        parse(pl.col("t")),
        pl.struct(parse(pl.col("window").struct.field("start")), parse(pl.col("window").struct.field("end"))).alias("window"),
        pl.col("times").list.eval(parse(pl.element())),
    )
    check("polars", "json", df.to_dicts(), inferred)

    df = pl.concat([pl.read_csv(f, try_parse_dates=True) for f in listed("csv")])
    assert is_utc_ts(df.schema["t"]), df.schema["t"]
    assert is_utc_ts(df.schema["window_start"]), df.schema["window_start"]
    rows = [dict(r, window={"start": r["window_start"], "end": r["window_end"]}, tags=csv_text_list(r["tags"]))
            for r in df.to_dicts()]
    check("polars", "csv", rows, f"t {df.schema['t']}, window_start {df.schema['window_start']}")


# --------------------------------------------------------------------------- DuckDB
def with_duckdb():
    import duckdb

    print(f"duckdb {duckdb.__version__}")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")

    def rows_of(sql, files):
        rel = con.execute(sql, [files])
        names = [d[0] for d in rel.description]
        types = {d[0]: str(d[1]) for d in rel.description}
        return [dict(zip(names, r)) for r in rel.fetchall()], types

    rows, types = rows_of("SELECT * FROM read_parquet(?)", listed("parquet"))
    assert types["t"] == "TIMESTAMP WITH TIME ZONE", types
    assert types["window"].startswith("STRUCT(") and "TIMESTAMP WITH TIME ZONE" in types["window"], types
    check("duckdb", "parquet", rows, f"t {types['t']}, window {types['window']}, tags {types['tags']}, times {types['times']}")
    n = con.execute(f"SELECT count(*) FROM read_parquet('{os.path.join(DIR, 'parquet', '*.parquet')}')").fetchone()[0]
    assert n == len(EXPECTED), n

    rows, types = rows_of("SELECT * FROM read_json(?, format = 'newline_delimited')", listed("json"))
    assert types["window"].startswith("STRUCT("), types
    rows = [dict(r,
                 t=as_utc(r["t"]),
                 window={k: as_utc(v) for k, v in r["window"].items()},
                 times=[as_utc(x) for x in r["times"]]) for r in rows]
    check("duckdb", "json", rows, f"t {types['t']}, window {types['window']}, tags {types['tags']}")

    rows, types = rows_of("SELECT * FROM read_csv(?)", listed("csv"))
    assert types["t"] == "TIMESTAMP WITH TIME ZONE", types
    rows = [dict(r, window={"start": r["window_start"], "end": r["window_end"]}, tags=csv_text_list(r["tags"])) for r in rows]
    check("duckdb", "csv", rows, f"t {types['t']}, window_start {types['window_start']}")


def as_utc(value):
    """DuckDB reads JSON timestamps as TIMESTAMP (naive, the UTC wall time) or
    TIMESTAMP WITH TIME ZONE, by its version: the UTC instant either way."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


for name, run in [("pyarrow", with_pyarrow), ("polars", with_polars), ("duckdb", with_duckdb)]:
    try:
        __import__(name)
    except ImportError:
        print(f"{name}: not installed, skipped")
        continue
    try:
        run()
    except Exception as e:  # noqa: BLE001 - report every reader's failure
        import traceback
        traceback.print_exc()
        failures.append(f"{name}: {type(e).__name__}: {e}")
        print(f"  {name}: FAILED: {type(e).__name__}: {e}")

if failures:
    print("FAILED: " + "; ".join(failures))
    sys.exit(1)
print("all readers agree with what the sink wrote")
