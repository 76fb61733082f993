//! Events per second of an in-memory keyed, windowed count: the work a window stage
//! does per record (one pane update, one watermark advance), with no broker.
//!
//! cargo run --release -p weir-processors --example keyed_count_throughput [events] [keys]

use std::time::Instant;

use weir_processors::window::{Count, EmitMode, WindowSpec, WindowedAggregate};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let events: u64 = args.next().map_or(Ok(50_000_000), |a| a.parse())?;
    let keys: u64 = args.next().map_or(Ok(10_000), |a| a.parse())?;
    for (name, spec) in [
        (
            "tumbling 1 min",
            WindowSpec::tumbling(std::time::Duration::from_secs(60)),
        ),
        (
            "sliding 5 min / 10 s",
            WindowSpec::sliding(
                std::time::Duration::from_secs(300),
                std::time::Duration::from_secs(10),
            ),
        ),
    ] {
        let mut windows = WindowedAggregate::new(spec, 0, EmitMode::OnClose, Count)?;
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut emitted = 0usize;
        let started = Instant::now();
        for i in 0..events {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = (state >> 33) % keys;
            // 10 000 events a second of event time.
            let timestamp_ms = (i / 10) as i64;
            windows.add_from(key, timestamp_ms, (), i);
            emitted += windows.advance(timestamp_ms).len();
        }
        let elapsed = started.elapsed();
        println!(
            "{name}: {events} events, {keys} keys: {:.1} M events/s ({emitted} results, {:.2} s)",
            events as f64 / elapsed.as_secs_f64() / 1e6,
            elapsed.as_secs_f64()
        );
    }
    Ok(())
}
