# Writes the input of the dd_keyonly_late and dd_within_update cases (8 files of events
# `event_id, ts, v`): in-order events, exact re-deliveries, retries of an event id with a
# later event time and a new value, and new events that arrive late.
#   python3 gen_dedup_input.py <dir>
import json, os, random, sys
from datetime import datetime, timedelta, timezone
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rnd = random.Random(20240301)
base = datetime(2024, 3, 1, 10, 0, 0, tzinfo=timezone.utc)
seen = []
n = 0
for b in range(8):
    rows = []
    for i in range(30):
        ts = base + timedelta(seconds=b * 120 + i * 4 - rnd.randint(0, 60))
        eid = f"e{n:04d}"; n += 1
        rows.append((eid, ts, rnd.randint(0, 99)))
        r = rnd.random()
        if r < 0.15 and seen:   # an exact re-delivery
            rows.append(rnd.choice(seen[-80:]))
        elif r < 0.30 and seen:  # a retry: same id, later event time, new value
            e, t0, v = rnd.choice(seen[-80:])
            rows.append((e, t0 + timedelta(seconds=rnd.randint(1, 400)), rnd.randint(0, 99)))
        elif r < 0.38:           # a new event, late
            rows.append((f"late{n:04d}", base + timedelta(seconds=b * 120 - rnd.randint(150, 600)), rnd.randint(0, 99)))
            n += 1
        seen.append(rows[-1] if rows[-1][0].startswith("e") else rows[-2])
    with open(f"{out}/part-{b:05d}.json", "w") as f:
        for e, t, v in rows:
            f.write(json.dumps({"event_id": e, "ts": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "v": v}) + "\n")
