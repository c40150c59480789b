//! Prints the dispatch overhead of a LibOS task on a warm pooled mock instance:
//! `cargo run --release -p cella-libos --example dispatch_bench [SAMPLES]`.

use std::time::Duration;

use cella_libos::bench::{dispatch_overhead, percentile};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let samples = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let overheads = dispatch_overhead(samples).await.expect("bench");
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "libos dispatch overhead, {samples} samples: p50 {:.3} ms, p99 {:.3} ms, min {:.3} ms, max {:.3} ms",
        ms(percentile(&overheads, 50)),
        ms(percentile(&overheads, 99)),
        ms(percentile(&overheads, 0)),
        ms(percentile(&overheads, 100)),
    );
}
