//! What `weir topk` shows: each input partition's latest sketch of each window, merged per
//! window by adding counters, and the merged sketch's keys ranked (ranking each partition's
//! top K and merging those lists would miss a key that is heavy overall but never first in
//! one partition, and undercount the rest).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

use serde::Serialize;
use weir_processors::window::{Aggregator, TopKAcc, TopKAggregator, Window};

use super::Counts;

/// One input partition's sketch of one window, as its pipeline stage emitted it.
#[derive(Debug, Clone)]
pub(crate) struct Partial {
    pub partition: u32,
    pub window: Window,
    pub acc: TopKAcc,
    /// The window had closed on that partition.
    pub is_final: bool,
}

/// Which window a view shows.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WindowChoice {
    /// Every window merged (the command's one all-time window, and any record
    /// timestamped outside it).
    AllTime,
    /// The latest window closed on some partition; before any has, the open window
    /// that closes first.
    Latest,
    /// The sliding window whose last slide holds `timestamp_ms`.
    Containing {
        timestamp_ms: i64,
        window_ms: i64,
        slide_ms: i64,
    },
}

/// Each partition's latest sketch of one window, and whether it had closed there.
type Partials = BTreeMap<u32, (TopKAcc, bool)>;

/// The latest sketches, and the ranks last shown.
pub(crate) struct View {
    k: usize,
    aggregator: TopKAggregator,
    partitions: u32,
    windows: BTreeMap<(i64, i64), Partials>,
    /// `None` when a view is printed once: no change to show.
    last_ranks: Option<HashMap<Vec<u8>, usize>>,
}

/// How a key's rank moved since the last view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Change {
    New,
    Same,
    Up(usize),
    Down(usize),
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub rank: usize,
    #[serde(serialize_with = "lossy")]
    pub key: Vec<u8>,
    /// An upper bound of the key's count: exact when `error` is 0.
    pub count: u64,
    /// The true count is within `count - error ..= count`.
    pub error: u64,
    /// Since the last view; none in a view printed once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
}

fn lossy<S: serde::Serializer>(key: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(key))
}

/// One view, ready to print.
#[derive(Debug, Clone)]
pub(crate) struct Shown {
    /// `None` before any window has a record.
    pub window: Option<Window>,
    pub all_time: bool,
    /// Partitions whose sketch of the window is merged in.
    pub partitions_reported: usize,
    pub partitions: u32,
    /// Every reported partition had closed the window.
    pub is_final: bool,
    pub rows: Vec<Row>,
}

impl View {
    /// `live`: views follow one another, each row says how its key moved.
    pub fn new(k: usize, aggregator: TopKAggregator, partitions: u32, live: bool) -> View {
        View {
            k,
            aggregator,
            partitions,
            windows: BTreeMap::new(),
            last_ranks: live.then(HashMap::new),
        }
    }

    /// A partition's newer sketch of a window replaces its older one.
    pub fn take(&mut self, partial: Partial) {
        let key = (partial.window.start_ms, partial.window.end_ms);
        self.windows
            .entry(key)
            .or_default()
            .insert(partial.partition, (partial.acc, partial.is_final));
        // Windows that ended before the latest closed one will never be shown.
        let latest_closed = self
            .windows
            .iter()
            .rev()
            .find(|(_, partials)| partials.values().any(|(_, is_final)| *is_final))
            .map(|((_, end), _)| *end);
        if let Some(latest_closed) = latest_closed {
            self.windows.retain(|(_, end), _| *end >= latest_closed);
        }
    }

    /// The chosen window's top K, with each key's move since the last view.
    pub fn render(&mut self, choice: &WindowChoice) -> Shown {
        let chosen: Vec<(&(i64, i64), &Partials)> = match *choice {
            WindowChoice::AllTime => self.windows.iter().collect(),
            WindowChoice::Latest => {
                let closed = self
                    .windows
                    .iter()
                    .rev()
                    .find(|(_, partials)| partials.values().any(|(_, is_final)| *is_final));
                closed
                    .or_else(|| self.windows.iter().min_by_key(|((_, end), _)| *end))
                    .into_iter()
                    .collect()
            }
            WindowChoice::Containing {
                timestamp_ms,
                window_ms,
                slide_ms,
            } => {
                let window = super::window_containing(timestamp_ms, window_ms, slide_ms);
                self.windows
                    .get_key_value(&(window.start_ms, window.end_ms))
                    .into_iter()
                    .collect()
            }
        };
        let window = match (choice, chosen.first()) {
            (WindowChoice::AllTime, Some(_)) => {
                let start = chosen.iter().map(|((s, _), _)| *s).min().unwrap_or(0);
                let end = chosen.iter().map(|((_, e), _)| *e).max().unwrap_or(0);
                Some(Window {
                    start_ms: start,
                    end_ms: end,
                })
            }
            (_, Some(((start, end), _))) => Some(Window {
                start_ms: *start,
                end_ms: *end,
            }),
            (_, None) => None,
        };
        let mut merged: Option<TopKAcc> = None;
        let mut reported = std::collections::BTreeSet::new();
        let mut is_final = true;
        for (_, partials) in &chosen {
            for (partition, (acc, closed)) in partials.iter() {
                reported.insert(*partition);
                is_final &= *closed;
                match merged.as_mut() {
                    Some(into) => {
                        <TopKAggregator as Aggregator<Vec<u8>>>::merge(&self.aggregator, into, acc)
                    }
                    None => merged = Some(acc.clone()),
                }
            }
        }
        let rows: Vec<Row> = match (&merged, window) {
            (Some(acc), Some(window)) => self
                .aggregator
                .rank::<Vec<u8>>(acc, window, is_final)
                .into_iter()
                .map(|ranked| {
                    let change = self
                        .last_ranks
                        .as_ref()
                        .map(|last| match last.get(&ranked.key) {
                            None => Change::New,
                            Some(before) if *before == ranked.rank => Change::Same,
                            Some(before) if *before > ranked.rank => {
                                Change::Up(before - ranked.rank)
                            }
                            Some(before) => Change::Down(ranked.rank - before),
                        });
                    Row {
                        rank: ranked.rank,
                        key: ranked.key,
                        count: ranked.count,
                        error: ranked.error,
                        change,
                    }
                })
                .collect(),
            _ => Vec::new(),
        };
        debug_assert!(rows.len() <= self.k);
        if let Some(last) = self.last_ranks.as_mut() {
            *last = rows.iter().map(|r| (r.key.clone(), r.rank)).collect();
        }
        Shown {
            window,
            all_time: matches!(choice, WindowChoice::AllTime),
            partitions_reported: reported.len(),
            partitions: self.partitions,
            is_final: is_final && merged.is_some(),
            rows,
        }
    }
}

fn format_time(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) => humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
        )
        .to_string(),
        Err(_) => format!("{ms} ms"),
    }
}

fn skipped(counts: &Counts) -> String {
    let reasons: Vec<String> = [
        (counts.null_key.load(Ordering::Relaxed), "with a null key"),
        (counts.not_json.load(Ordering::Relaxed), "not JSON"),
        (
            counts.missing_field.load(Ordering::Relaxed),
            "without the field",
        ),
    ]
    .into_iter()
    .filter(|(count, _)| *count > 0)
    .map(|(count, why)| format!("{count} {why}"))
    .collect();
    if reasons.is_empty() {
        String::new()
    } else {
        format!(", skipped {}", reasons.join(", "))
    }
}

/// The view as a table with a header line.
pub(crate) fn table(
    topic: &str,
    by: &str,
    window_spec: &str,
    shown: &Shown,
    counts: &Counts,
) -> String {
    let window = match (shown.window, shown.all_time) {
        (_, true) => "all time".to_string(),
        (Some(w), false) => format!(
            "{} .. {}{}",
            format_time(w.start_ms),
            format_time(w.end_ms),
            if shown.is_final { "" } else { " (open)" }
        ),
        (None, false) => "no window yet".to_string(),
    };
    let mut out = format!(
        "top {} of {topic} by {by}, {window_spec}: {window}; {} of {} partitions; {} records read{}\n",
        shown.rows.len(),
        shown.partitions_reported,
        shown.partitions,
        counts.records.load(Ordering::Relaxed),
        skipped(counts),
    );
    let width = shown
        .rows
        .iter()
        .map(|r| String::from_utf8_lossy(&r.key).chars().count())
        .max()
        .unwrap_or(3)
        .clamp(3, 60);
    let live = shown.rows.iter().any(|r| r.change.is_some());
    out.push_str(&format!(
        "{:>4}  {:<width$}  {:>12}  {:>10}{}\n",
        "rank",
        "key",
        "count",
        "± error",
        if live { "  change" } else { "" }
    ));
    for row in &shown.rows {
        let key: String = String::from_utf8_lossy(&row.key).chars().take(60).collect();
        let change = match row.change {
            None => String::new(),
            Some(Change::New) => "  new".to_string(),
            Some(Change::Same) => "  =".to_string(),
            Some(Change::Up(n)) => format!("  ▲{n}"),
            Some(Change::Down(n)) => format!("  ▼{n}"),
        };
        out.push_str(&format!(
            "{:>4}  {key:<width$}  {:>12}  {:>10}{change}\n",
            row.rank, row.count, row.error
        ));
    }
    out
}

#[derive(Serialize)]
pub(crate) struct JsonView<'a> {
    topic: &'a str,
    by: &'a str,
    window: Option<JsonWindow>,
    is_final: bool,
    partitions_reported: usize,
    partitions: u32,
    records_read: u64,
    skipped: JsonSkipped,
    rows: &'a [Row],
}

#[derive(Serialize)]
struct JsonWindow {
    start_ms: i64,
    end_ms: i64,
}

#[derive(Serialize)]
struct JsonSkipped {
    null_key: u64,
    not_json: u64,
    missing_field: u64,
}

/// The view as one JSON object (`window` is null for all time).
pub(crate) fn json<'a>(
    topic: &'a str,
    by: &'a str,
    shown: &'a Shown,
    counts: &Counts,
) -> JsonView<'a> {
    JsonView {
        topic,
        by,
        window: shown
            .window
            .filter(|_| !shown.all_time)
            .map(|w| JsonWindow {
                start_ms: w.start_ms,
                end_ms: w.end_ms,
            }),
        is_final: shown.is_final,
        partitions_reported: shown.partitions_reported,
        partitions: shown.partitions,
        records_read: counts.records.load(Ordering::Relaxed),
        skipped: JsonSkipped {
            null_key: counts.null_key.load(Ordering::Relaxed),
            not_json: counts.not_json.load(Ordering::Relaxed),
            missing_field: counts.missing_field.load(Ordering::Relaxed),
        },
        rows: &shown.rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc_of(aggregator: &TopKAggregator, keys: &[(&str, u64)]) -> TopKAcc {
        let mut acc = <TopKAggregator as Aggregator<Vec<u8>>>::init(aggregator);
        for (key, n) in keys {
            for _ in 0..*n {
                <TopKAggregator as Aggregator<Vec<u8>>>::add(
                    aggregator,
                    &mut acc,
                    key.as_bytes().to_vec(),
                );
            }
        }
        acc
    }

    #[test]
    fn partitions_are_merged_before_ranking_so_a_key_second_everywhere_wins() {
        let aggregator = TopKAggregator::new(1, 64 * 1024).unwrap();
        let mut view = View::new(1, aggregator.clone(), 2, true);
        let window = Window {
            start_ms: 0,
            end_ms: 10,
        };
        for (partition, spike) in [(0, "a"), (1, "b")] {
            view.take(Partial {
                partition,
                window,
                acc: acc_of(&aggregator, &[(spike, 5), ("steady", 4)]),
                is_final: true,
            });
        }
        let shown = view.render(&WindowChoice::Latest);
        assert_eq!(shown.partitions_reported, 2);
        assert!(shown.is_final);
        assert_eq!(shown.rows.len(), 1);
        assert_eq!(
            (shown.rows[0].key.as_slice(), shown.rows[0].count),
            (&b"steady"[..], 8)
        );
    }

    #[test]
    fn a_newer_partial_replaces_the_partitions_older_one_and_ranks_move() {
        let aggregator = TopKAggregator::new(2, 64 * 1024).unwrap();
        let mut view = View::new(2, aggregator.clone(), 1, true);
        let window = Window {
            start_ms: 0,
            end_ms: 10,
        };
        let partial = |keys: &[(&str, u64)], is_final| Partial {
            partition: 0,
            window,
            acc: acc_of(&aggregator, keys),
            is_final,
        };
        view.take(partial(&[("a", 3), ("b", 1)], false));
        let first = view.render(&WindowChoice::Latest);
        assert!(!first.is_final);
        assert_eq!(first.rows[0].change, Some(Change::New));
        view.take(partial(&[("a", 3), ("b", 5)], true));
        let second = view.render(&WindowChoice::Latest);
        let ranked: Vec<(&[u8], u64, Option<Change>)> = second
            .rows
            .iter()
            .map(|r| (r.key.as_slice(), r.count, r.change))
            .collect();
        assert_eq!(
            ranked,
            vec![
                (&b"b"[..], 5, Some(Change::Up(1))),
                (&b"a"[..], 3, Some(Change::Down(1)))
            ]
        );
    }

    #[test]
    fn the_latest_closed_window_is_shown_and_older_ones_are_dropped() {
        let aggregator = TopKAggregator::new(1, 64 * 1024).unwrap();
        let mut view = View::new(1, aggregator.clone(), 1, true);
        for (end, key, is_final) in [(10, "old", true), (20, "new", true), (30, "open", false)] {
            view.take(Partial {
                partition: 0,
                window: Window {
                    start_ms: end - 10,
                    end_ms: end,
                },
                acc: acc_of(&aggregator, &[(key, 1)]),
                is_final,
            });
        }
        assert_eq!(
            view.windows.len(),
            2,
            "the window before the latest closed one went"
        );
        let shown = view.render(&WindowChoice::Latest);
        assert_eq!(shown.rows[0].key, b"new");
        let until = view.render(&WindowChoice::Containing {
            timestamp_ms: 25,
            window_ms: 10,
            slide_ms: 10,
        });
        assert_eq!(until.rows[0].key, b"open");
        assert!(!until.is_final);
    }
}
