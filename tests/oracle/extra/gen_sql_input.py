# Writes the generated inputs of the sql_* cases (small, deterministic):
#   python3 gen_sql_input.py <extra dir>      (writes <extra dir>/inputs/...)
# inputs/sql_sensors/sensors/part-NNNNN.json  6 files of sensor readings `sensorId, eventTime,
#   value, errorCode` for the aggregate-function cases: sensors s1..s4 with several readings a
#   batch (some values null, error codes null or repeated), `one` with a single reading in all,
#   `nulls` whose values are all null, a null sensorId, a reading without eventTime, exact
#   re-deliveries of earlier readings (for SELECT DISTINCT) and late readings (8 to 15 minutes
#   behind the newest one) from batch 3 on.
import json, os, random, sys
from datetime import datetime, timedelta, timezone

def iso(t):
    return None if t is None else t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"

def write(folder, batches):
    os.makedirs(folder, exist_ok=True)
    for b, rows in enumerate(batches):
        with open(os.path.join(folder, f"part-{b:05d}.json"), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")

def sensors():
    rnd = random.Random(20240301)
    base = datetime(2024, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
    codes = ["E1", "E2", "E7", None, None]
    batches, sent, used = [], [], set()
    def reading(sid, t, value="rnd", code="rnd"):
        while (sid, t) in used:              # event times unique per sensor (min_by / max_by)
            t += timedelta(milliseconds=7)
        used.add((sid, t))
        v = round(rnd.uniform(5, 35), 3) if value == "rnd" else value
        if value == "rnd" and rnd.random() < 0.12: v = None
        c = rnd.choice(codes) if code == "rnd" else code
        return {"sensorId": sid, "eventTime": iso(t), "value": v, "errorCode": c}
    for b in range(6):
        start = base + timedelta(minutes=4 * b)
        rows = []
        for i in range(16):                   # s1..s4, 4 readings each, spread over 4 minutes
            sid = f"s{i % 4 + 1}"
            t = start + timedelta(seconds=15 * i + rnd.randint(0, 14), milliseconds=rnd.randint(0, 999))
            rows.append(reading(sid, t))
        rows.append(reading("nulls", start + timedelta(seconds=rnd.randint(0, 239)), value=None))
        if b == 1:
            rows.append(reading("one", start + timedelta(seconds=100), value=12.5, code="E9"))
            rows.append(reading(None, start + timedelta(seconds=130), value=30.25, code=None))
            rows.append({"sensorId": "s2", "eventTime": None, "value": 99.0, "errorCode": "E0"})
        if b == 4:
            rows.append(reading(None, start + timedelta(seconds=10), value=1.5, code="E1"))
        if b >= 3:                            # late readings: 8 to 15 minutes behind
            newest = start + timedelta(minutes=4)
            for sid in ("s1", "s3"):
                rows.append(reading(sid, newest - timedelta(minutes=rnd.randint(8, 15), seconds=rnd.randint(0, 59))))
        if b >= 1:                            # exact re-deliveries of earlier readings
            for r in rnd.sample(sent, 3):
                rows.append(dict(r))
        rnd.shuffle(rows)
        sent.extend(r for r in rows if r["eventTime"] is not None)
        batches.append(rows)
    return batches

if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    write(os.path.join(out, "inputs", "sql_sensors", "sensors"), sensors())
