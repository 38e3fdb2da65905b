//! Accuracy benchmark: how often the engine names the injected culprit, per fault class and
//! cluster size. A bench, not a test: it prints numbers and asserts no budget.
//!
//! Scenarios (`netdiag_diagnose::scenario`): single faults of every class, pairs of faults and
//! healthy clusters, all with noise (background echo loss, stray timeouts, now and then a
//! silent agent, faults starting mid-window), on clusters of 3, 5, 10, 50, 200 and 500 nodes
//! (fewer at the large sizes) probed by the production planner. Each is simulated into a real
//! matrix, localized by the real engine, and scored: correct, wrong or silent per fault,
//! spurious findings, false findings on healthy clusters, completeness violations, and the time
//! of each `localize` call.
//!
//! `cargo bench -p netdiag-diagnose --bench accuracy --features sim`; `-- --quick` (or
//! `NETDIAG_BENCH_QUICK=1`) runs about 50 scenarios in seconds, for CI; `-- --seed N` draws
//! another set; `-- --repro NODES SEED CLASS[,CLASS]` (classes as `PodDown`, `LossInto`, …;
//! the seed as printed) reruns one scenario and prints every finding.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use netdiag_diagnose::localize::{Localization, Thresholds, localize};
use netdiag_diagnose::scenario::{
    Cluster, FaultClass, NoiseSpec, Rng, Scenario, Score, Verdict, describe, now, score,
};

/// App pods per node.
const PODS_PER_NODE: usize = 3;
/// Failing scenarios shown per class, to reproduce by seed.
const EXAMPLES_PER_CLASS: usize = 2;

/// How many scenarios of each kind one cluster size gets.
#[derive(Debug, Clone, Copy)]
struct Mix {
    nodes: usize,
    singles_per_class: usize,
    pairs: usize,
    healthy: usize,
}

const FULL: [Mix; 6] = [
    Mix { nodes: 3, singles_per_class: 11, pairs: 60, healthy: 40 },
    Mix { nodes: 5, singles_per_class: 11, pairs: 60, healthy: 40 },
    Mix { nodes: 10, singles_per_class: 11, pairs: 60, healthy: 40 },
    Mix { nodes: 50, singles_per_class: 6, pairs: 30, healthy: 20 },
    Mix { nodes: 200, singles_per_class: 3, pairs: 12, healthy: 8 },
    Mix { nodes: 500, singles_per_class: 1, pairs: 6, healthy: 4 },
];

const QUICK: [Mix; 3] = [
    Mix { nodes: 3, singles_per_class: 1, pairs: 5, healthy: 5 },
    Mix { nodes: 10, singles_per_class: 1, pairs: 3, healthy: 2 },
    Mix { nodes: 50, singles_per_class: 0, pairs: 3, healthy: 1 },
];

struct Args {
    quick: bool,
    seed: u64,
    /// `--repro NODES SEED CLASS[,CLASS]`: one scenario, every finding printed.
    repro: Option<(usize, u64, Vec<FaultClass>)>,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let quick = argv.iter().any(|a| a == "--quick")
        || std::env::var("NETDIAG_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let seed = argv
        .iter()
        .position(|a| a == "--seed")
        .and_then(|i| argv.get(i + 1))
        .map(|s| s.parse().expect("--seed takes a number"))
        .unwrap_or(1);
    let repro = argv.iter().position(|a| a == "--repro").map(|i| {
        let arg = |k: usize| argv.get(i + k).map(String::as_str).unwrap_or_default();
        let classes = arg(3)
            .split(',')
            .filter(|c| !c.is_empty() && *c != "healthy")
            .map(|c| {
                *FaultClass::ALL
                    .iter()
                    .find(|k| format!("{k:?}") == c)
                    .expect("a class name such as PodDown or LossInto")
            })
            .collect();
        (arg(1).parse().expect("--repro NODES"), arg(2).parse().expect("--repro NODES SEED"), classes)
    });
    Args { quick, seed, repro }
}

/// Runs one scenario and prints everything the engine said about it.
fn repro(nodes: usize, seed: u64, classes: &[FaultClass]) {
    let cluster = Cluster::generate(nodes, PODS_PER_NODE).expect("the generator makes valid clusters");
    let scenario = Scenario::draw(&cluster, classes, &NoiseSpec::default(), seed).expect("placeable classes");
    let sim = scenario.simulate(&cluster);
    let t = Instant::now();
    let loc = localize(
        &sim.matrix,
        &scenario.inspections(&cluster),
        cluster.inventory(),
        now(),
        &Thresholds::default(),
    );
    let took = t.elapsed();
    let s = score(&scenario, &sim, &loc);
    println!("{}", show(&scenario, &s, &loc));
    println!("localize: {}ms, {} claims, {} violations", ms(took), loc.claims.len(), s.violations);
    for f in &loc.findings {
        println!(
            "\n{} [{}] {}\n  {}",
            describe(f),
            f.severity,
            f.verdict,
            f.evidence.iter().take(3).map(|e| e.as_str()).collect::<Vec<_>>().join("\n  ")
        );
    }
}

/// Per-fault verdict counts.
#[derive(Debug, Default, Clone)]
struct Tally {
    scenarios: usize,
    faults: usize,
    correct: usize,
    component: usize,
    wrong: usize,
    silent: usize,
    /// Silent faults that left no bad cell at all.
    invisible: usize,
    spurious: usize,
    violations: usize,
}

impl Tally {
    fn add_fault(&mut self, f: &netdiag_diagnose::scenario::FaultScore) {
        self.faults += 1;
        self.component += usize::from(f.component);
        match f.verdict {
            Verdict::Correct => self.correct += 1,
            Verdict::Wrong => self.wrong += 1,
            Verdict::Silent => {
                self.silent += 1;
                self.invisible += usize::from(f.bad_cells == 0);
            }
        }
    }

    fn add_scenario(&mut self, s: &Score) {
        self.scenarios += 1;
        self.spurious += s.spurious.len();
        self.violations += s.violations;
    }
}

/// Everything measured at one cluster size.
#[derive(Debug, Default)]
struct SizeStats {
    tally: Tally,
    healthy: usize,
    false_findings: usize,
    healthy_unexplained: usize,
    localize: Vec<Duration>,
    simulate: Vec<Duration>,
    probes: usize,
    panics: usize,
    /// The slowest `localize` call and its scenario.
    slowest: Option<(Duration, Example)>,
}

/// A scenario worth showing: where the engine was not right.
#[derive(Debug)]
struct Example {
    nodes: usize,
    seed: u64,
    text: String,
}

fn pct(n: usize, d: usize) -> String {
    if d == 0 { "-".to_owned() } else { format!("{:.1}", 100.0 * n as f64 / d as f64) }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// The fault classes of each scenario of one size: single faults round-robin over the classes,
/// then pairs of random classes (at most one DNS fault), then healthy ones.
fn scenario_list(mix: &Mix, base: u64) -> Vec<Vec<FaultClass>> {
    let mut rng = Rng::new(base ^ mix.nodes as u64);
    let mut out = Vec::new();
    for _ in 0..mix.singles_per_class {
        out.extend(FaultClass::ALL.iter().map(|&c| vec![c]));
    }
    if mix.singles_per_class == 0 {
        // Quick mode at a large size: a few classes, rotating with the seed.
        out.extend((0..5).map(|i| vec![FaultClass::ALL[(base as usize + 3 * i) % FaultClass::ALL.len()]]));
    }
    while out.len() < FaultClass::ALL.len() * mix.singles_per_class + mix.pairs {
        let a = *rng.pick(&FaultClass::ALL).expect("classes");
        let b = *rng.pick(&FaultClass::ALL).expect("classes");
        if !(a.is_dns() && b.is_dns()) {
            out.push(vec![a, b]);
        }
    }
    out.extend((0..mix.healthy).map(|_| Vec::new()));
    out
}

fn main() {
    let args = args();
    if let Some((nodes, seed, classes)) = &args.repro {
        repro(*nodes, *seed, classes);
        return;
    }
    let mixes: &[Mix] = if args.quick { &QUICK } else { &FULL };
    let spec = NoiseSpec::default();
    let started = Instant::now();
    let mut by_class: BTreeMap<FaultClass, Tally> = BTreeMap::new();
    let mut by_class_size: BTreeMap<(FaultClass, usize), Tally> = BTreeMap::new();
    let mut by_size: BTreeMap<usize, SizeStats> = BTreeMap::new();
    let mut examples: BTreeMap<FaultClass, Vec<Example>> = BTreeMap::new();
    let mut broken: Vec<Example> = Vec::new();
    // (id, the scenario's fault classes) → (count, an example's cluster size and seed).
    let mut spurious: BTreeMap<(String, String), (usize, usize, u64)> = BTreeMap::new();
    for mix in mixes {
        let t = Instant::now();
        let cluster =
            Cluster::generate(mix.nodes, PODS_PER_NODE).expect("the generator makes valid clusters");
        eprintln!(
            "{} nodes: {} pods, {} probes per round ({} plan), generated in {:.1}s",
            mix.nodes,
            cluster.inventory().pods.len(),
            cluster.probe_count(),
            if cluster.is_sampled() { "sampled" } else { "full-mesh" },
            t.elapsed().as_secs_f64()
        );
        let stats = by_size.entry(mix.nodes).or_default();
        stats.probes = cluster.probe_count();
        for (i, classes) in scenario_list(mix, args.seed).into_iter().enumerate() {
            let Some((seed, scenario)) = (0..16).find_map(|attempt| {
                let seed = args.seed.wrapping_mul(1_000_003)
                    ^ ((mix.nodes as u64) << 32)
                    ^ (i as u64)
                    ^ (attempt << 20);
                Scenario::draw(&cluster, &classes, &spec, seed).map(|s| (seed, s))
            }) else {
                eprintln!("  could not place {classes:?} on {} nodes", mix.nodes);
                continue;
            };
            let t = Instant::now();
            let sim = scenario.simulate(&cluster);
            stats.simulate.push(t.elapsed());
            let inspections = scenario.inspections(&cluster);
            let t = Instant::now();
            let loc = catch_unwind(AssertUnwindSafe(|| {
                localize(&sim.matrix, &inspections, cluster.inventory(), now(), &Thresholds::default())
            }));
            stats.localize.push(t.elapsed());
            let loc: Localization = match loc {
                Ok(l) => l,
                Err(_) => {
                    stats.panics += 1;
                    broken.push(Example {
                        nodes: mix.nodes,
                        seed,
                        text: format!("PANIC in localize: {scenario:?}"),
                    });
                    continue;
                }
            };
            let s = score(&scenario, &sim, &loc);
            let took = stats.localize.last().copied().unwrap_or_default();
            if stats.slowest.as_ref().is_none_or(|(d, _)| took > *d) {
                let text = show(&scenario, &s, &loc);
                stats.slowest = Some((took, Example { nodes: mix.nodes, seed, text }));
            }
            for f in &s.spurious {
                let id = f.split(' ').next().unwrap_or_default().to_owned();
                let what = if scenario.faults.is_empty() {
                    "healthy".to_owned()
                } else {
                    let labels: Vec<&str> = scenario.faults.iter().map(|f| f.class().label()).collect();
                    labels.join(" + ")
                };
                spurious.entry((id, what)).or_insert((0, mix.nodes, seed)).0 += 1;
            }
            if s.violations > 0 {
                broken.push(Example {
                    nodes: mix.nodes,
                    seed,
                    text: format!("{} completeness violations: {}", s.violations, show(&scenario, &s, &loc)),
                });
            }
            stats.tally.add_scenario(&s);
            for f in &s.faults {
                stats.tally.add_fault(f);
            }
            if scenario.faults.is_empty() {
                stats.healthy += 1;
                stats.false_findings += s.false_findings();
                stats.healthy_unexplained += usize::from(s.unexplained);
                if s.false_findings() > 0 {
                    broken.push(Example {
                        nodes: mix.nodes,
                        seed,
                        text: format!(
                            "healthy, {} false findings: {}",
                            s.false_findings(),
                            show(&scenario, &s, &loc)
                        ),
                    });
                }
            }
            let mut seen = Vec::new();
            for f in &s.faults {
                let class = f.fault.class();
                if !seen.contains(&class) {
                    seen.push(class);
                    by_class.entry(class).or_default().add_scenario(&s);
                    by_class_size.entry((class, mix.nodes)).or_default().add_scenario(&s);
                }
                by_class.entry(class).or_default().add_fault(f);
                by_class_size.entry((class, mix.nodes)).or_default().add_fault(f);
                let ex = examples.entry(class).or_default();
                if f.verdict != Verdict::Correct && ex.len() < EXAMPLES_PER_CLASS {
                    ex.push(Example { nodes: mix.nodes, seed, text: show(&scenario, &s, &loc) });
                }
            }
        }
        let total = stats.tally.scenarios;
        eprintln!("  {total} scenarios in {:.1}s", t.elapsed().as_secs_f64());
    }
    print_classes(&by_class);
    print_class_by_size(&by_class_size, mixes);
    print_sizes(&by_size);
    print_spurious(&spurious);
    print_examples(&examples, &broken);
    println!("\nslowest localize call per size");
    for (nodes, s) in &by_size {
        if let Some((d, e)) = &s.slowest {
            println!("- {nodes} nodes, seed {}: {}ms: {}", e.seed, ms(*d), e.text);
        }
    }
    println!("\ntotal {:.1}s", started.elapsed().as_secs_f64());
}

/// A scenario and what the engine said, on a few lines.
fn show(scenario: &Scenario, s: &Score, loc: &Localization) -> String {
    let faults: Vec<String> = s
        .faults
        .iter()
        .map(|f| format!("{} [{:?}, {} bad cells]", f.fault, f.verdict, f.bad_cells))
        .collect();
    let findings: Vec<String> = loc.findings.iter().map(describe).collect();
    let silent = scenario.silent.as_ref().map(|(n, how)| format!(", agent {n} {how:?}")).unwrap_or_default();
    format!(
        "faults: {} (onset sample {}{silent}, echo loss {:.2}%, stray {:.2}%); {} bad cells; findings: {}",
        if faults.is_empty() { "none".to_owned() } else { faults.join("; ") },
        scenario.onset,
        100.0 * scenario.noise.echo_loss,
        100.0 * scenario.noise.stray_timeouts,
        s.bad_cells,
        if findings.is_empty() { "none".to_owned() } else { findings.join(" | ") }
    )
}

fn print_classes(by_class: &BTreeMap<FaultClass, Tally>) {
    println!("\nper fault class (all sizes; a pair scenario counts for both its classes)");
    println!(
        "{:<22} {:>5} {:>6} {:>9} {:>7} {:>7} {:>8} {:>9} {:>9} {:>5}",
        "class", "scen", "faults", "correct%", "comp%", "wrong%", "silent%", "(no bad)", "spur/scn", "viol"
    );
    let mut all = Tally::default();
    for (class, t) in by_class {
        print_tally(class.label(), t);
        all.faults += t.faults;
        all.correct += t.correct;
        all.component += t.component;
        all.wrong += t.wrong;
        all.silent += t.silent;
        all.invisible += t.invisible;
    }
    println!(
        "{:<22} {:>5} {:>6} {:>9} {:>7} {:>7} {:>8} {:>9}",
        "all faults",
        "",
        all.faults,
        pct(all.correct, all.faults),
        pct(all.component, all.faults),
        pct(all.wrong, all.faults),
        pct(all.silent, all.faults),
        pct(all.invisible, all.faults)
    );
}

fn print_tally(label: &str, t: &Tally) {
    println!(
        "{:<22} {:>5} {:>6} {:>9} {:>7} {:>7} {:>8} {:>9} {:>9.2} {:>5}",
        label,
        t.scenarios,
        t.faults,
        pct(t.correct, t.faults),
        pct(t.component, t.faults),
        pct(t.wrong, t.faults),
        pct(t.silent, t.faults),
        pct(t.invisible, t.faults),
        t.spurious as f64 / t.scenarios.max(1) as f64,
        t.violations
    );
}

fn print_class_by_size(by: &BTreeMap<(FaultClass, usize), Tally>, mixes: &[Mix]) {
    println!("\ncorrect % per class and cluster size (faults in parentheses)");
    print!("{:<22}", "class");
    for m in mixes {
        print!(" {:>12}", format!("{} nodes", m.nodes));
    }
    println!();
    for class in FaultClass::ALL {
        print!("{:<22}", class.label());
        for m in mixes {
            let cell = by
                .get(&(class, m.nodes))
                .map(|t| format!("{} ({})", pct(t.correct, t.faults), t.faults))
                .unwrap_or_else(|| "-".to_owned());
            print!(" {cell:>12}");
        }
        println!();
    }
}

fn print_sizes(by_size: &BTreeMap<usize, SizeStats>) {
    println!("\nper cluster size");
    println!(
        "{:>5} {:>7} {:>5} {:>6} {:>9} {:>7} {:>7} {:>8} {:>8} {:>9} {:>7} {:>9} {:>9} {:>8} {:>5} {:>6}",
        "nodes",
        "probes",
        "scen",
        "faults",
        "correct%",
        "wrong%",
        "silent%",
        "spur/scn",
        "healthy",
        "false/hlt",
        "unexpl",
        "loc med",
        "loc max",
        "sim med",
        "viol",
        "panics"
    );
    for (nodes, s) in by_size {
        let mut loc = s.localize.clone();
        let mut sim = s.simulate.clone();
        let max = loc.iter().max().copied().unwrap_or_default();
        let t = &s.tally;
        println!(
            concat!(
                "{:>5} {:>7} {:>5} {:>6} {:>9} {:>7} {:>7} {:>8.2} {:>8} {:>9.2} {:>7}",
                " {:>7}ms {:>7}ms {:>6}ms {:>5} {:>6}"
            ),
            nodes,
            s.probes,
            t.scenarios,
            t.faults,
            pct(t.correct, t.faults),
            pct(t.wrong, t.faults),
            pct(t.silent, t.faults),
            t.spurious as f64 / t.scenarios.max(1) as f64,
            s.healthy,
            s.false_findings as f64 / s.healthy.max(1) as f64,
            s.healthy_unexplained,
            ms(median(&mut loc)),
            ms(max),
            ms(median(&mut sim)),
            t.violations,
            s.panics
        );
    }
}

fn print_spurious(spurious: &BTreeMap<(String, String), (usize, usize, u64)>) {
    println!("\nspurious findings (not residual, naming nothing injected) by id and scenario faults");
    let mut rows: Vec<_> = spurious.iter().collect();
    rows.sort_by(|a, b| b.1.0.cmp(&a.1.0).then_with(|| a.0.cmp(b.0)));
    for ((id, what), (n, nodes, seed)) in rows {
        println!("{n:>5}  {id:<30} in {what:<40} e.g. {nodes} nodes, seed {seed}");
    }
}

fn print_examples(examples: &BTreeMap<FaultClass, Vec<Example>>, broken: &[Example]) {
    println!("\nexamples of faults not named exactly (reproduce: cluster size, scenario seed)");
    for (class, list) in examples {
        for e in list {
            println!("- {} | {} nodes, seed {}: {}", class.label(), e.nodes, e.seed, e.text);
        }
    }
    if !broken.is_empty() {
        println!("\nengine problems and false alarms ({}):", broken.len());
        for e in broken.iter().take(40) {
            println!("- {} nodes, seed {}: {}", e.nodes, e.seed, e.text);
        }
    }
}
