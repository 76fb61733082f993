//! The exposition in the format a scraper asks for, by the broker's rules (its
//! `metrics/text_format.rs`; this crate does not depend on the broker).
//! `prometheus-client` writes OpenMetrics 1.0, which Prometheus asks for in its
//! `Accept` header; other readers (curl, `promtool check metrics`, older
//! scrapers) get Prometheus' text format 0.0.4, as the Go client negotiates it.
//! The two differ, for what a pipeline writes, in three things only: a counter
//! family is named with its `_total` suffix in `# HELP` and `# TYPE`
//! (OpenMetrics names the family without it, its samples with it), there is no
//! `# UNIT` line, and no `# EOF` at the end. Samples and label escaping are the
//! same.

/// OpenMetrics' media type, as Prometheus asks for it and as served.
pub(super) const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Prometheus' text format.
pub(super) const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether the request's `Accept` header asks for OpenMetrics.
pub(super) fn wants_openmetrics(accept: Option<&http::HeaderValue>) -> bool {
    accept
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.contains("application/openmetrics-text"))
}

/// Rewrites an OpenMetrics exposition from `prometheus-client` as text 0.0.4.
pub(super) fn to_prometheus_text(openmetrics: &str) -> String {
    let mut text = String::with_capacity(openmetrics.len());
    // A family's `# HELP` line, held until its `# TYPE` line says whether the
    // family is a counter.
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = rest.split_once(' ').or(Some((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let suffix = if kind == "counter" { "_total" } else { "" };
            if let Some((help_name, help_text)) = help.take() {
                debug_assert_eq!(help_name, name, "HELP and TYPE of one family");
                text.push_str(&format!("# HELP {name}{suffix} {help_text}\n"));
            }
            text.push_str(&format!("# TYPE {name}{suffix} {kind}\n"));
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        text.push_str(line);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_families_take_their_total_suffix_and_the_eof_goes() {
        let openmetrics = "# HELP weir_processor_records_in Items in.\n\
                           # TYPE weir_processor_records_in counter\n\
                           weir_processor_records_in_total{group=\"g\",operator=\"map-1\"} 3\n\
                           # HELP weir_processor_consumer_lag Lag.\n\
                           # TYPE weir_processor_consumer_lag gauge\n\
                           weir_processor_consumer_lag{group=\"g\",topic=\"t\",partition=\"0\"} 1\n\
                           # EOF\n";
        assert_eq!(
            to_prometheus_text(openmetrics),
            "# HELP weir_processor_records_in_total Items in.\n\
             # TYPE weir_processor_records_in_total counter\n\
             weir_processor_records_in_total{group=\"g\",operator=\"map-1\"} 3\n\
             # HELP weir_processor_consumer_lag Lag.\n\
             # TYPE weir_processor_consumer_lag gauge\n\
             weir_processor_consumer_lag{group=\"g\",topic=\"t\",partition=\"0\"} 1\n"
        );
        assert!(wants_openmetrics(Some(&http::HeaderValue::from_static(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        ))));
        assert!(!wants_openmetrics(None));
    }
}
