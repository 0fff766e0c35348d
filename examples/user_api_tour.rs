//! A user's program: two queries in one session, a listener that sees every batch,
//! the file sink's Parquet read back with the static reader, a using-column join.
use std::sync::{Arc, Mutex};
use sluice::prelude::*;

struct Recorder(Arc<Mutex<Vec<(String, u64)>>>);
impl StreamingQueryListener for Recorder {
    fn on_query_progress(&self, event: &QueryProgressEvent) {
        let p = &event.progress;
        self.0.lock().unwrap().push((p.name.clone().unwrap_or_default(), p.batch_id));
    }
}

fn main() -> sluice::Result<()> {
    let dir = std::env::temp_dir().join(format!("bar-user-api-{}", std::process::id()));
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    for f in 0..4 {
        let mut s = String::new();
        for i in 0..50 {
            s += &format!("{{\"customerId\":\"c{}\",\"time\":\"2024-01-01T00:{:02}:{:02}Z\",\"amount\":{}}}\n",
                i % 7, f * 10 + i / 10, i % 60, i);
        }
        std::fs::write(input.join(format!("part-{f}.json")), s).unwrap();
    }
    let session = Session::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    session.streams().add_listener(Arc::new(Recorder(seen.clone())));
    let schema = Schema::from_iter([
        Field::new("customerId".into(), DataType::String),
        Field::new("time".into(), DataType::Datetime(TimeUnit::Microseconds, None)),
        Field::new("amount".into(), DataType::Int64),
    ]);
    let buys = session.read_stream().format("json").schema(schema)
        .option("maxFilesPerTrigger", 1).load(&input)?;
    let customers = df!("customerId" => ["c0", "c1", "c2"], "tier" => ["gold", "silver", "gold"]).unwrap();
    let windows = buys.with_watermark("time", "1 minute")?
        .group_by([window(col("time"), "10 minutes", None, None)?, col("customerId")])
        .agg([len().alias("n"), col("amount").sum().alias("total")]);
    let q1 = windows.write_stream().query_name("windows").format("parquet")
        .option("path", dir.join("out").display().to_string())
        .checkpoint_location(dir.join("ck1")).trigger(Trigger::AvailableNow).start()?;
    let tiers = buys.join_on_static(customers, ["customerId"], StreamJoinType::Inner);
    let q2 = tiers.write_stream().query_name("tiers").format("memory")
        .checkpoint_location(dir.join("ck2")).trigger(Trigger::AvailableNow).start()?;
    let active = session.streams().active().len();
    q1.await_termination()?;
    q2.await_termination()?;
    let back = session.read().parquet(dir.join("out"))?;
    let joined = session.memory_table("tiers").unwrap().to_df()?.unwrap();
    let events = seen.lock().unwrap().clone();
    let w = events.iter().filter(|(n, _)| n == "windows").count();
    let t = events.iter().filter(|(n, _)| n == "tiers").count();
    let ok = back.height() > 0 && back.column("window").is_ok() && joined.width() == 4
        && w == q1.recent_progress().len() && t == q2.recent_progress().len() && w > 0;
    println!("active at start {active}; listener saw {w} + {t} batches; read back {} window rows; joined {} rows x {} columns: {}",
        back.height(), joined.height(), joined.width(), if ok { "ok" } else { "MISMATCH" });
    let _ = std::fs::remove_dir_all(&dir);
    if ok { Ok(()) } else { std::process::exit(1) }
}
