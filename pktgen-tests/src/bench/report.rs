//! The benchmark's results: ratios, targets, `results.json`, the chart and
//! the printed table.

use std::fmt::Write as _;
use std::process::Command;

use serde::Serialize;

use super::real::RealResult;
use crate::pktgen::scenario::quantile;
use crate::pktgen::Outcome;

/// The machine a run came from.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// `lscpu`'s model name.
    pub cpu: String,
    pub cores: usize,
    /// `lscpu`'s hypervisor vendor, when virtualised.
    pub hypervisor: Option<String>,
    /// `uname -r`.
    pub kernel: String,
    /// `/proc/loadavg` when the run started: other work on the machine
    /// skews every figure.
    pub load_at_start: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let lscpu = command_output("lscpu", &[]);
        let field = |name: &str| {
            lscpu
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        };
        Machine {
            cpu: field("Model name").unwrap_or_else(|| "unknown".to_owned()),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            hypervisor: field("Hypervisor vendor"),
            kernel: command_output("uname", &["-r"]).trim().to_owned(),
            load_at_start: std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
                .to_owned(),
        }
    }

    /// One line: model, cores, hypervisor, kernel.
    pub fn describe(&self) -> String {
        let virt = self
            .hypervisor
            .as_ref()
            .map_or(String::new(), |h| format!(", {h} guest"));
        format!(
            "{}, {} cores{virt}, Linux {}",
            self.cpu, self.cores, self.kernel
        )
    }
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// One row of the scenario table.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioRow {
    pub name: String,
    pub flows: u32,
    pub mpps: f64,
    pub ratio_to_baseline: f64,
    pub mpps_median: f64,
    /// Every packet accounted for and every check passed.
    pub verified: bool,
    /// Best rate of each round, in order.
    pub rounds_mpps: Vec<f64>,
}

/// Memory per tracked connection with the table filled to `flows`.
#[derive(Clone, Debug, Serialize)]
pub struct BytesPerConn {
    pub flows: u32,
    /// Growth of the process's VmRSS while the table was made and filled,
    /// per connection.
    pub bytes_per_conn: f64,
    /// What the table's allocations come to, per connection.
    pub table_bytes_per_conn: f64,
}

/// A target of the issue, checked against this run.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub name: String,
    pub value: Option<f64>,
    /// `>= limit` or `<= limit`.
    pub rule: String,
    pub limit: f64,
    /// `None` when the run did not measure it.
    pub met: Option<bool>,
}

/// Everything `results.json` holds.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub machine: Machine,
    pub scenarios: Vec<ScenarioRow>,
    pub bytes_per_conn: Vec<BytesPerConn>,
    pub real_traffic: Vec<RealResult>,
    pub targets: Vec<Target>,
    /// Settings of the run.
    pub settings: serde_json::Value,
    /// Every scenario's full outcome (best round): phases, windows, drops,
    /// checks.
    pub details: Vec<Outcome>,
}

/// The best round of each scenario (by rate), in first-seen order, with
/// every round's rate.
pub fn best_rounds(rounds: &[Vec<Outcome>]) -> Vec<(Outcome, Vec<f64>)> {
    let mut best: Vec<(Outcome, Vec<f64>)> = Vec::new();
    for outcome in rounds.iter().flatten() {
        let key = (&outcome.name, scenario_size(outcome));
        match best
            .iter_mut()
            .find(|(o, _)| (&o.name, scenario_size(o)) == key)
        {
            None => best.push((outcome.clone(), vec![outcome.mpps])),
            Some((b, all)) => {
                all.push(outcome.mpps);
                if outcome.mpps > b.mpps || !b.verified {
                    *b = outcome.clone();
                }
            }
        }
    }
    best
}

/// What identifies a scenario across rounds: its flows before the
/// measurement (the new flows it opens vary with its speed).
fn scenario_size(o: &Outcome) -> u32 {
    o.flows - o.new_flows
}

impl Results {
    /// Assembles the results: ratios to the baseline, bytes per
    /// connection, targets.
    pub fn new(
        machine: Machine,
        best: Vec<(Outcome, Vec<f64>)>,
        real_traffic: Vec<RealResult>,
        settings: serde_json::Value,
    ) -> Results {
        let baseline = best
            .iter()
            .find(|(o, _)| o.name == "baseline")
            .map(|(o, _)| o.mpps);
        let scenarios: Vec<ScenarioRow> = best
            .iter()
            .map(|(o, rounds)| ScenarioRow {
                name: o.name.clone(),
                flows: o.flows,
                mpps: round3(o.mpps),
                ratio_to_baseline: baseline.map_or(0.0, |b| round3(o.mpps / b)),
                mpps_median: round3(o.mpps_median),
                verified: o.verified,
                rounds_mpps: rounds.iter().map(|&m| round3(m)).collect(),
            })
            .collect();
        let bytes_per_conn: Vec<BytesPerConn> = best
            .iter()
            .filter(|(o, _)| o.name == "nat_established" && o.flows >= 1_000_000)
            .filter_map(|(o, _)| {
                Some(BytesPerConn {
                    flows: o.flows,
                    bytes_per_conn: round3(o.rss_bytes_per_conn?),
                    table_bytes_per_conn: round3(o.table_bytes? as f64 / f64::from(o.flows)),
                })
            })
            .collect();
        let targets = targets(&scenarios, &bytes_per_conn, &real_traffic);
        Results {
            machine,
            scenarios,
            bytes_per_conn,
            real_traffic,
            targets,
            settings,
            details: best.into_iter().map(|(o, _)| o).collect(),
        }
    }

    /// Whether every scenario verified.
    pub fn all_verified(&self) -> bool {
        self.scenarios.iter().all(|s| s.verified)
    }

    /// The printed table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "machine: {}", self.machine.describe());
        let _ = writeln!(t, "load at start: {}\n", self.machine.load_at_start);
        let _ = writeln!(
            t,
            "{:<18} {:>11} {:>8} {:>11} {:>8}  verified",
            "scenario", "flows", "Mpps", "x baseline", "median"
        );
        for s in &self.scenarios {
            let _ = writeln!(
                t,
                "{:<18} {:>11} {:>8.2} {:>11.2} {:>8.2}  {}",
                s.name,
                thousands(u64::from(s.flows)),
                s.mpps,
                s.ratio_to_baseline,
                s.mpps_median,
                if s.verified { "yes" } else { "NO" }
            );
        }
        if !self.bytes_per_conn.is_empty() {
            let _ = writeln!(
                t,
                "\nbytes per tracked connection (VmRSS growth; table allocations):"
            );
            for b in &self.bytes_per_conn {
                let _ = writeln!(
                    t,
                    "  {:>11} flows: {:6.1} B  ({:.1} B)",
                    thousands(u64::from(b.flows)),
                    b.bytes_per_conn,
                    b.table_bytes_per_conn
                );
            }
        }
        if !self.real_traffic.is_empty() {
            let _ = writeln!(
                t,
                "\n{:<9} {:<10} {:>10} {:>8} {:>8} {:>7}",
                "balancer", "conns", "req/s", "p50 ms", "p99 ms", "errors"
            );
            for r in &self.real_traffic {
                let _ = writeln!(
                    t,
                    "{:<9} {:<10} {:>10.0} {:>8.2} {:>8.2} {:>7}",
                    r.balancer, r.mode, r.rps, r.p50_ms, r.p99_ms, r.errors
                );
            }
        }
        let _ = writeln!(t, "\ntargets:");
        for target in &self.targets {
            let state = match target.met {
                Some(true) => "met   ",
                Some(false) => "MISSED",
                None => "n/a   ",
            };
            let value = target.value.map_or("-".to_owned(), |v| format!("{v:.3}"));
            let _ = writeln!(
                t,
                "  [{state}] {}: {value} ({} {})",
                target.name, target.rule, target.limit
            );
        }
        t
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The issue's targets, checked against the run.
fn targets(scenarios: &[ScenarioRow], bytes: &[BytesPerConn], real: &[RealResult]) -> Vec<Target> {
    let find = |name: &str, flows: Option<u32>| {
        scenarios
            .iter()
            .find(|s| s.name == name && flows.map_or(true, |f| s.flows == f))
    };
    let at_least = |name: &str, value: Option<f64>, limit: f64| Target {
        name: name.to_owned(),
        value,
        rule: ">=".to_owned(),
        limit,
        met: value.map(|v| v >= limit),
    };
    let at_most = |name: &str, value: Option<f64>, limit: f64| Target {
        name: name.to_owned(),
        value,
        rule: "<=".to_owned(),
        limit,
        met: value.map(|v| v <= limit),
    };
    let one_m = find("nat_established", Some(1_000_000));
    let ten_m = find("nat_established", Some(10_000_000));
    let real_close = |balancer: &str| {
        real.iter()
            .find(|r| r.balancer == balancer && r.mode == "close")
    };
    let (pylon, haproxy) = (real_close("pylon"), real_close("haproxy"));
    vec![
        at_least(
            "nat_established at 1M flows, x baseline",
            one_m.map(|s| s.ratio_to_baseline),
            0.5,
        ),
        at_least(
            "nat_new, x baseline",
            find("nat_new", None).map(|s| s.ratio_to_baseline),
            0.25,
        ),
        at_least(
            "nat_new with connection sync / without (the master's rate; median of the back-to-back pairs' ratios)",
            find("nat_new_pair", None)
                .zip(find("nat_new_sync_pair", None))
                .or_else(|| find("nat_new", None).zip(find("nat_new_sync", None)))
                .map(|(off, on)| round3(paired_ratio(&off.rounds_mpps, &on.rounds_mpps))),
            0.9,
        ),
        at_least(
            "nat_established 10M flows / 1M flows (costs at most a third)",
            one_m.zip(ten_m).map(|(a, b)| round3(b.mpps / a.mpps)),
            round3(2.0 / 3.0),
        ),
        at_most(
            "bytes per tracked connection (worst of 1M, 10M)",
            bytes.iter().map(|b| b.bytes_per_conn).reduce(f64::max),
            64.0,
        ),
        at_least(
            "short connections: Pylon req/s / HAProxy req/s",
            pylon.zip(haproxy).map(|(p, h)| round3(p.rps / h.rps)),
            1.0,
        ),
        at_most(
            "short connections: Pylon p99 / HAProxy p99",
            pylon.zip(haproxy).map(|(p, h)| round3(p.p99_ms / h.p99_ms)),
            1.0,
        ),
    ]
}

/// The median of `on[i] / off[i]` over the rounds (the lower one of an
/// even count): each round runs the two scenarios back to back, so a
/// ratio within a round cancels most of the machine's slow drift, which
/// best-of-rounds on each side does not.
fn paired_ratio(off: &[f64], on: &[f64]) -> f64 {
    let ratios: Vec<f64> = off
        .iter()
        .zip(on)
        .filter(|(&a, _)| a > 0.0)
        .map(|(a, b)| b / a)
        .collect();
    quantile(&ratios, 0.5)
}

/// The chart: Mpps per scenario, one bar each (labelled with flows and the
/// ratio to the baseline), the baseline's rate and half of it as lines.
pub fn svg(results: &Results) -> String {
    let rows = &results.scenarios;
    let (width, height) = (900.0, 460.0);
    let (left, right, top, bottom) = (60.0, 20.0, 50.0, 110.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let max = rows.iter().map(|r| r.mpps).fold(1.0, f64::max);
    let step = nice_step(max / 5.0);
    let y_max = (max / step).ceil() * step;
    let y = |v: f64| top + plot_h * (1.0 - v / y_max);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"16\">Pylon, one worker: \
         million packets per second (64-byte frames) by scenario and flows</text>",
        width / 2.0
    );
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"40\" text-anchor=\"middle\" fill=\"#555\">{}</text>",
        width / 2.0,
        xml(&results.machine.describe())
    );
    let mut tick = 0.0;
    while tick <= y_max + 1e-9 {
        let ty = y(tick);
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" y1=\"{ty:.1}\" x2=\"{}\" y2=\"{ty:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{tick}</text>",
            width - right,
            left - 6.0,
            ty + 4.0
        );
        tick += step;
    }
    let _ = writeln!(
        s,
        "<text x=\"16\" y=\"{:.1}\" transform=\"rotate(-90 16 {:.1})\" text-anchor=\"middle\">Mpps</text>",
        top + plot_h / 2.0,
        top + plot_h / 2.0
    );
    let slot = plot_w / rows.len().max(1) as f64;
    for (i, r) in rows.iter().enumerate() {
        let x = left + slot * i as f64 + slot * 0.15;
        let w = slot * 0.7;
        let color = match r.name.as_str() {
            "baseline" => "#888888",
            "nat_established" => "#2b6cb0",
            "nat_new" => "#c05621",
            "nat_new_sync" => "#dd6b20",
            "dsr_established" => "#2f855a",
            _ => "#6b46c1",
        };
        let top_y = y(r.mpps);
        let _ = writeln!(
            s,
            "<rect x=\"{x:.1}\" y=\"{top_y:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{color}\"/>",
            top + plot_h - top_y
        );
        let cx = x + w / 2.0;
        let _ = writeln!(
            s,
            "<text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.2}</text>\
             <text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">x{:.2}</text>",
            top_y - 18.0,
            r.mpps,
            top_y - 5.0,
            r.ratio_to_baseline
        );
        let label_y = top + plot_h + 16.0;
        let _ = writeln!(
            s,
            "<text x=\"{cx:.1}\" y=\"{label_y:.1}\" text-anchor=\"middle\">{}</text>\
             <text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{} flows</text>",
            xml(&r.name),
            label_y + 15.0,
            short_count(r.flows)
        );
    }
    if let Some(b) = rows.iter().find(|r| r.name == "baseline") {
        for (frac, label) in [(1.0, "baseline"), (0.5, "0.5 x baseline")] {
            let ly = y(b.mpps * frac);
            let _ = writeln!(
                s,
                "<line x1=\"{left}\" y1=\"{ly:.1}\" x2=\"{}\" y2=\"{ly:.1}\" stroke=\"#c53030\" \
                 stroke-dasharray=\"6 4\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" \
                 fill=\"#c53030\">{label}</text>",
                width - right,
                width - right - 2.0,
                ly - 4.0
            );
        }
    }
    let _ = writeln!(
        s,
        "<text x=\"{left}\" y=\"{:.1}\" fill=\"#555\">Rate: 90th percentile of 100 ms windows, \
         best of {} rounds; generator and worker on separate cores, linked by DPDK rings.</text>",
        height - 20.0,
        rows.first().map_or(1, |r| r.rounds_mpps.len())
    );
    s.push_str("</svg>\n");
    s
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let mut step = 1e-3;
    loop {
        for m in [1.0, 2.0, 5.0] {
            if step * m >= raw {
                return step * m;
            }
        }
        step *= 10.0;
    }
}

fn short_count(n: u32) -> String {
    match n {
        n if n >= 1_000_000 && n % 100_000 == 0 => format!("{}M", f64::from(n) / 1e6),
        n if n >= 1_000_000 => format!("{:.2}M", f64::from(n) / 1e6),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1000),
        n => thousands(u64::from(n)),
    }
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_ratios_take_the_median_round() {
        assert_eq!(paired_ratio(&[2.0, 4.0, 1.0], &[1.8, 2.0, 1.0]), 0.9);
        assert_eq!(paired_ratio(&[2.0, 2.0], &[1.0, 3.0]), 0.5);
        assert_eq!(paired_ratio(&[], &[]), 0.0);
    }

    #[test]
    fn formatting() {
        assert_eq!(thousands(10_000_000), "10,000,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(short_count(1_000_000), "1M");
        assert_eq!(short_count(1_537_290), "1.54M");
        assert_eq!(short_count(100_000), "100k");
        assert_eq!(nice_step(2.3), 5.0);
        assert_eq!(nice_step(0.9), 1.0);
    }
}
