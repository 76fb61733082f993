//! How long partitions go unconsumed while members join a group one by one, for
//! the incremental rebalance and for a stop-the-world one.
//!
//! ```sh
//! cargo run --release -p weir-broker --example rebalance_pause -- [PARTITIONS] [HEARTBEAT_MS] [MEMBERS]
//! ```
//!
//! A broker runs in this process on 127.0.0.1:0. Members (`GroupConsumer`) join one at
//! a time, each once the group has settled and after a delay that spreads the joins
//! over the heartbeat's phases; every member polls continuously. A
//! partition's pause is the time from its revocation (the callback of the member giving
//! it up) to its assignment (the callback of the member taking it), so it counts the
//! commit, the release heartbeat and the new owner's next heartbeat. For each join the
//! report gives the partitions that paused, the longest pause and the sum of pauses.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_broker::group::GroupConfig;
use weir_broker::{BrokerConfig, RunningBroker};
use weir_client::{Admin, GroupConsumer, GroupConsumerConfig, Rebalance, RebalanceMode};

/// (time, event) as the members' callbacks saw them.
type Events = Arc<Mutex<Vec<(Instant, Rebalance)>>>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let partitions: u32 = args.next().map_or(Ok(24), |a| a.parse())?;
    let heartbeat_ms: i64 = args.next().map_or(Ok(500), |a| a.parse())?;
    let members: usize = args.next().map_or(Ok(8), |a| a.parse())?;
    println!(
        "{partitions} partitions, heartbeat interval {heartbeat_ms} ms, members joining one by one up to {members}"
    );
    println!("mode           join  revoked  paused  max_pause_ms  total_pause_ms  settle_ms");
    for mode in [RebalanceMode::Incremental, RebalanceMode::StopTheWorld] {
        run(mode, partitions, heartbeat_ms, members).await?;
    }
    Ok(())
}

async fn run(
    mode: RebalanceMode,
    partitions: u32,
    heartbeat_ms: i64,
    members: usize,
) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let config = BrokerConfig {
        data_dir: data.path().to_path_buf(),
        listen: "127.0.0.1:0".parse()?,
        offsets_topic_partitions: 1,
        groups: GroupConfig {
            initial_rebalance_delay_ms: 0,
            heartbeat_interval_ms: heartbeat_ms,
            session_timeout_ms: (heartbeat_ms * 10).max(10_000),
            ..GroupConfig::default()
        },
        ..BrokerConfig::default()
    };
    let broker = RunningBroker::start(config).await?;
    let addr = broker.local_addr().to_string();
    let admin = Admin::connect(&addr).await?;
    admin
        .create_topic("t", partitions, 1, &Default::default())
        .await?;
    let events: Events = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for join in 1..=members {
        // Join at a spread of heartbeat phases: a member that joins right after the
        // last rebalance settled would be in step with the member that settled it.
        let phase_ms = (join as i64 * 379) % heartbeat_ms.max(1);
        tokio::time::sleep(Duration::from_millis(phase_ms as u64)).await;
        let mark = events.lock().unwrap().len();
        let started = Instant::now();
        let mut member = GroupConsumer::subscribe(
            &addr,
            &["t"],
            GroupConsumerConfig {
                rebalance_mode: mode,
                ..GroupConsumerConfig::new("g")
            },
        )
        .await?;
        let sink = Arc::clone(&events);
        member
            .on_rebalance(move |event| sink.lock().unwrap().push((Instant::now(), event.clone())));
        let stop_member = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            while !stop_member.load(std::sync::atomic::Ordering::Relaxed) {
                member.poll(Duration::from_millis(20)).await?;
            }
            member.close().await
        }));
        // Settled: every member owns its even share, and the group is stable.
        let share_max = (partitions as usize).div_ceil(join);
        let share_min = partitions as usize / join;
        loop {
            // The group exists once the first member's join is stored.
            let Ok(group) = admin.describe_group("g").await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let owned: Vec<usize> = group.members.iter().map(|m| m.assignment.len()).collect();
            let total: usize = owned.iter().sum();
            if group.state == "Stable"
                && owned.len() == join
                && total == partitions as usize
                && owned.iter().all(|n| (share_min..=share_max).contains(n))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let settle = started.elapsed();
        let step: Vec<(Instant, Rebalance)> = events.lock().unwrap()[mark..].to_vec();
        report(mode, join, &step, settle);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in tasks {
        task.await??;
    }
    broker.shutdown().await?;
    Ok(())
}

/// Pairs each revocation of a partition with its next assignment.
fn report(mode: RebalanceMode, join: usize, step: &[(Instant, Rebalance)], settle: Duration) {
    let mut revoked_at: BTreeMap<u32, Instant> = BTreeMap::new();
    let mut pauses: BTreeMap<u32, Duration> = BTreeMap::new();
    let mut revoked = std::collections::BTreeSet::new();
    for (at, event) in step {
        match event {
            Rebalance::Revoked(list) | Rebalance::Lost(list) => {
                for (_, p) in list {
                    revoked_at.insert(*p, *at);
                    revoked.insert(*p);
                }
            }
            Rebalance::Assigned(list) => {
                for (_, p) in list {
                    // A partition assigned for the first time was never paused.
                    if let Some(from) = revoked_at.remove(p) {
                        *pauses.entry(*p).or_default() += at.duration_since(from);
                    }
                }
            }
        }
    }
    let max = pauses.values().max().copied().unwrap_or_default();
    let total: Duration = pauses.values().sum();
    println!(
        "{:<13}  {join:>4}  {:>7}  {:>6}  {:>12.1}  {:>14.1}  {:>9.0}",
        format!("{mode:?}"),
        revoked.len(),
        pauses.len(),
        max.as_secs_f64() * 1000.0,
        total.as_secs_f64() * 1000.0,
        settle.as_secs_f64() * 1000.0
    );
}
