//! The figures of one run ([`Row`]) and the table across sizes.

use std::time::Duration;

use crate::Measured;
use crate::measure::quantile;

#[derive(Debug, Default)]
pub(crate) struct Row {
    pub(crate) nodes: usize,
    pub(crate) pods: usize,
    pub(crate) services: usize,
    pub(crate) interval: Duration,
    pub(crate) startup: Duration,
    pub(crate) rss_idle: u64,
    pub(crate) all_plans_delivered: Duration,
    pub(crate) probes_per_plan: f64,
    pub(crate) plan_errors: usize,
    pub(crate) churn_events: usize,
    pub plan_after_churn_p50: f64,
    pub(crate) plan_after_churn_max: f64,
    pub(crate) m: Measured,
}

const GIB: f64 = (1u64 << 30) as f64;

impl Row {
    pub(crate) fn absorb(&mut self, m: Measured) {
        self.m = m;
    }

    fn cores(&self) -> f64 {
        quantile(&self.m.cores, 0.5)
    }

    fn rss(&self) -> f64 {
        quantile(&self.m.rss, 0.5)
    }

    fn plan_round(&self) -> (f64, f64) {
        let secs: Vec<f64> = self.m.plan_rounds.iter().map(|r| r.0).collect();
        let plans = self.m.plan_rounds.last().map_or(0.0, |r| r.1);
        (quantile(&secs, 0.5), plans)
    }

    fn scrape(&self) -> (f64, f64, f64) {
        let ms: Vec<f64> = self.m.scrapes.iter().map(|s| s.0).collect();
        let last = self.m.scrapes.last().copied().unwrap_or_default();
        (quantile(&ms, 0.5), last.1 as f64, last.2 as f64)
    }

    fn found(d: Option<Duration>, interval: Duration) -> String {
        match d {
            Some(d) => {
                format!("{:.1} s ({:.1} iv)", d.as_secs_f64(), d.as_secs_f64() / interval.as_secs_f64())
            }
            None => "not found".into(),
        }
    }

    pub(crate) fn print_detail(&self) {
        let m = &self.m;
        let (round, plans) = self.plan_round();
        let (scrape_ms, bytes, series) = self.scrape();
        let rss_max = quantile(&m.rss, 1.0);
        let grown = (self.rss() - self.rss_idle as f64).max(0.0);
        println!(
            "scale: {} nodes, {} pods, {} services; probe interval {:?}",
            self.nodes, self.pods, self.services, self.interval
        );
        println!("  collector ready (inventory listed)     {:>10.1} s", self.startup.as_secs_f64());
        println!(
            "  every node has its plan after          {:>10.1} s",
            self.all_plans_delivered.as_secs_f64()
        );
        println!("  probes per plan (median)               {:>10.0}", self.probes_per_plan);
        println!("  plans an agent refused / load errors   {:>10}", self.plan_errors);
        println!("  collector CPU (median)                 {:>10.2} cores", self.cores());
        println!(
            "  collector RSS (median / max)           {:>10.2} / {:.2} GiB",
            self.rss() / GIB,
            rss_max / GIB
        );
        println!("  collector RSS before agents            {:>10.2} GiB", self.rss_idle as f64 / GIB);
        println!(
            "  ingest (median)                        {:>10.0} results/s",
            quantile(&m.ingest_rate, 0.5)
        );
        println!("  plan round: every agent's plan         {:>10.3} s ({plans:.0} plans)", round);
        println!(
            "  plan delivered after churn p50 / max   {:>10.1} / {:.1} s ({} churned pods)",
            self.plan_after_churn_p50, self.plan_after_churn_max, self.churn_events
        );
        println!(
            "  diagnosis per tick p50 / p99           {:>10.3} / {:.3} s ({} ticks seen)",
            quantile(&m.diagnosis_ticks, 0.5),
            quantile(&m.diagnosis_ticks, 0.99),
            m.diagnosis_ticks.len()
        );
        println!(
            "  GET /api/v1/matrix?level=node p50/p99  {:>10.1} / {:.1} ms",
            quantile(&m.matrix_ms, 0.5),
            quantile(&m.matrix_ms, 0.99)
        );
        println!(
            "  GET /api/v1/diagnosis p50/p99          {:>10.1} / {:.1} ms",
            quantile(&m.diagnosis_ms, 0.5),
            quantile(&m.diagnosis_ms, 0.99)
        );
        println!(
            "  /metrics scrape (median)               {:>10.1} ms, {:.1} MB, {series:.0} series",
            scrape_ms,
            bytes / 1e6
        );
        println!("  matrix cells                           {:>10.0}", m.cells);
        println!("  results refused by a full matrix       {:>10.0}", m.refused_full);
        println!(
            "  memory per cell (RSS growth / cells)   {:>10.0} B",
            if m.cells > 0.0 { grown / m.cells } else { 0.0 }
        );
        println!(
            "  /metrics bytes per series              {:>10.0} B",
            if series > 0.0 { bytes / series } else { 0.0 }
        );
        println!(
            "  dead node named after                  {:>16}",
            Self::found(m.found.dead_node, self.interval)
        );
        println!("  cut pair named after                   {:>16}", Self::found(m.found.cut, self.interval));
        println!(
            "  dead pod named after                   {:>16}",
            Self::found(m.found.dead_pod, self.interval)
        );
        println!(
            "  other findings at the end              {:>10} {:?}",
            m.others.len(),
            &m.others[..m.others.len().min(5)]
        );
    }
}

/// The figures side by side, one column per size.
pub(crate) fn table(rows: &[Row]) {
    if rows.is_empty() {
        return;
    }
    let line = |label: &str, f: &dyn Fn(&Row) -> String| {
        let cells: Vec<String> = rows.iter().map(|r| format!("{:>14}", f(r))).collect();
        println!("| {label:<37} |{} |", cells.join(" |"));
    };
    println!();
    line("nodes × pods", &|r| format!("{} × {}", r.nodes, r.pods / r.nodes.max(1)));
    let sep: Vec<String> = rows.iter().map(|_| "-".repeat(15)).collect();
    println!("|{}|{}|", "-".repeat(39), sep.join("|"));
    line("collector CPU, cores (median)", &|r| format!("{:.2}", r.cores()));
    line("collector RSS, GiB (median)", &|r| format!("{:.2}", r.rss() / GIB));
    line("ingest, results/s", &|r| format!("{:.0}", quantile(&r.m.ingest_rate, 0.5)));
    line("probes per plan", &|r| format!("{:.0}", r.probes_per_plan));
    line("plan round (all plans), s", &|r| format!("{:.3}", r.plan_round().0));
    line("plan after churn p50 / max, s", &|r| {
        format!("{:.1} / {:.1}", r.plan_after_churn_p50, r.plan_after_churn_max)
    });
    line("diagnosis per tick p50 / p99, s", &|r| {
        format!("{:.2} / {:.2}", quantile(&r.m.diagnosis_ticks, 0.5), quantile(&r.m.diagnosis_ticks, 0.99))
    });
    line("matrix?level=node p50 / p99, ms", &|r| {
        format!("{:.0} / {:.0}", quantile(&r.m.matrix_ms, 0.5), quantile(&r.m.matrix_ms, 0.99))
    });
    line("diagnosis GET p50 / p99, ms", &|r| {
        format!("{:.0} / {:.0}", quantile(&r.m.diagnosis_ms, 0.5), quantile(&r.m.diagnosis_ms, 0.99))
    });
    line("/metrics: series / MB / scrape ms", &|r| {
        let (ms, bytes, series) = r.scrape();
        format!("{series:.0} / {:.1} / {ms:.0}", bytes / 1e6)
    });
    line("matrix cells", &|r| format!("{:.0}", r.m.cells));
    line("results refused: matrix full", &|r| format!("{:.0}", r.m.refused_full));
    line("bytes per cell", &|r| {
        let grown = (r.rss() - r.rss_idle as f64).max(0.0);
        format!("{:.0}", if r.m.cells > 0.0 { grown / r.m.cells } else { 0.0 })
    });
    line("dead node / cut pair / dead pod, iv", &|r| {
        let iv = |d: Option<Duration>| {
            d.map_or("-".to_owned(), |d| format!("{:.1}", d.as_secs_f64() / r.interval.as_secs_f64()))
        };
        format!("{} / {} / {}", iv(r.m.found.dead_node), iv(r.m.found.cut), iv(r.m.found.dead_pod))
    });
}
