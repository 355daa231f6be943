//! Shared helpers for Karnak's benchmarks and `karnak-bench`, the load tool
//! (`load`). Figures are in `RESULTS.md`.

pub mod load;

/// Runs `sql` on `ctx` `runs` times: the seconds of each run and the last
/// run's answer, one row of cell texts each (for comparing engines).
pub async fn timed_query(
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
    runs: usize,
) -> anyhow::Result<(Vec<f64>, Vec<Vec<String>>)> {
    use datafusion::arrow::util::display::array_value_to_string;
    let mut secs = Vec::with_capacity(runs);
    let mut answer = Vec::new();
    for _ in 0..runs {
        let t = std::time::Instant::now();
        let batches = ctx.sql(sql).await?.collect().await?;
        secs.push(t.elapsed().as_secs_f64());
        answer.clear();
        for b in &batches {
            for row in 0..b.num_rows() {
                let cells: Result<Vec<String>, _> = b
                    .columns()
                    .iter()
                    .map(|c| array_value_to_string(c, row))
                    .collect();
                answer.push(cells?);
            }
        }
    }
    Ok((secs, answer))
}

/// Wall-clock milliseconds since the epoch, for batch timestamps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
