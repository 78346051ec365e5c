//! `sim`: run, replay and list the protocol simulation's scenarios; generate the machines'
//! diagrams.

use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use scistream_sim::run::{self, Report};
use scistream_sim::scenario::{BUILTIN, FaultRule, Scenario};
use scistream_sim::world::{self, Defect, Options};

/// A run allocates and frees a few hundred small messages per seed: glibc's malloc and free
/// were a fifth of the simulator's instructions (callgrind, docs/simulation.md), which
/// mimalloc's thread-local free lists cut.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Deterministic simulation of the SciStream protocol under message loss, corruption and crashes.
#[derive(Parser)]
#[command(name = "sim", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a range of seeds and report every property.
    Run(RunArgs),
    /// Replay one seed, optionally printing its event trace.
    Replay(ReplayArgs),
    /// Swarm testing: every seed draws a world of its own (sessions, clients, ports, network,
    /// fault rules, partitions, crashes of any node, workload, configuration) and runs in it.
    Swarm(SwarmArgs),
    /// For each broken variant (or the one named), how many swarm seeds run until one breaks
    /// the property the variant must trip, from several starting seeds; prints the median.
    Catch {
        /// Only this variant.
        #[arg(long, value_parser = parse_defect)]
        defect: Option<Defect>,
        /// Starting seeds: 0, 1,000,000, 2,000,000, …
        #[arg(long, default_value_t = 7)]
        starts: u64,
        /// Give up after this many seeds from a start.
        #[arg(long, default_value_t = 10_000)]
        limit: u64,
    },
    /// Bounded exhaustive checking: every choice (interleavings of messages in flight, losses
    /// and duplications, crashes of any node) within the bounds, on a small world.
    Explore(ExploreArgs),
    /// List the shipped scenarios.
    List,
    /// Measure seeds per second on one core and print a table against the target.
    Bench {
        /// Scenarios to measure.
        #[arg(long = "scenario", default_values_t = vec!["headline".to_string()])]
        scenarios: Vec<String>,
        /// Seeds per scenario.
        #[arg(long, default_value_t = 20_000)]
        seeds: u64,
        /// Target rate in seeds per second on one core.
        #[arg(long, default_value_t = 1_000.0)]
        target: f64,
    },
    /// Write (or check) the state diagrams generated from the machines' declarations.
    Diagrams {
        /// Output folder.
        #[arg(long, default_value = "docs/fsm")]
        out: PathBuf,
        /// Only check that the files are current; exit 1 if not.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Args)]
struct Common {
    /// A shipped scenario's name (see `sim list`) or a scenario file.
    #[arg(long)]
    scenario: String,
    /// Run a deliberately broken protocol variant (`sim catch` lists them).
    #[arg(long, default_value = "none", value_parser = parse_defect)]
    defect: Defect,
    #[command(flatten)]
    faults: FaultOverride,
}

/// Fault overrides: a rule on every link, placed first so it wins over the scenario's own.
#[derive(Args, Clone, Copy)]
struct FaultOverride {
    /// Loss probability on every link.
    #[arg(long)]
    loss: Option<f64>,
    /// Corruption probability on every link.
    #[arg(long)]
    corrupt: Option<f64>,
    /// Duplication probability on every link.
    #[arg(long)]
    dup: Option<f64>,
    /// Reordering probability on every link.
    #[arg(long)]
    reorder: Option<f64>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// Seeds: `A..B` (B excluded) or a single seed.
    #[arg(long, default_value = "0..1000", value_parser = parse_seeds)]
    seeds: Range<u64>,
    /// Threads (each runs a share of the seeds).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
}

#[derive(Args)]
struct SwarmArgs {
    /// Seeds: `A..B` (B excluded) or a single seed.
    #[arg(long, default_value = "0..1000", value_parser = parse_seeds)]
    seeds: Range<u64>,
    /// Threads (each runs a share of the seeds).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Run a deliberately broken protocol variant (see `sim run --help`).
    #[arg(long, default_value = "none", value_parser = parse_defect)]
    defect: Defect,
    /// Where a failing seed's world is written as a scenario file.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Only print the world of each seed as a scenario file; run nothing.
    #[arg(long)]
    print: bool,
}

#[derive(Args)]
struct ExploreArgs {
    /// The small world: a shipped scenario's name or a scenario file.
    #[arg(long, default_value = "explore-one")]
    scenario: String,
    /// The seed drawing the world's workload and latencies.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Steps at which choices are offered.
    #[arg(long, default_value_t = 4)]
    depth: u32,
    /// Messages that may be lost or duplicated on one branch.
    #[arg(long, default_value_t = 1)]
    faults: u32,
    /// Nodes that may crash on one branch.
    #[arg(long, default_value_t = 1)]
    crashes: u32,
    /// Messages due within this long of the next event may arrive first.
    #[arg(long, default_value_t = 50)]
    window_ms: u64,
    /// Steps run as scheduled before the first window of choices.
    #[arg(long, default_value_t = 0)]
    skip: u32,
    /// Windows of `depth` steps explored back to back (each exhaustively), up to the run's end.
    #[arg(long, default_value_t = 1)]
    windows: u32,
    /// Stop at the first violation.
    #[arg(long)]
    first: bool,
    /// Run a deliberately broken protocol variant.
    #[arg(long, default_value = "none", value_parser = parse_defect)]
    defect: Defect,
}

#[derive(Args)]
struct ReplayArgs {
    #[command(flatten)]
    common: Common,
    /// The seed.
    #[arg(long)]
    seed: u64,
    /// Print the event trace.
    #[arg(long)]
    trace: bool,
}

fn parse_seeds(s: &str) -> Result<Range<u64>, String> {
    let bad = || format!("seeds must be A..B or N, got {s:?}");
    match s.split_once("..") {
        Some((a, b)) => {
            let (a, b): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
            if a >= b {
                return Err(format!("empty seed range {s:?}"));
            }
            Ok(a..b)
        }
        None => s.parse::<u64>().map(|n| n..n + 1).map_err(|_| bad()),
    }
}

fn parse_defect(s: &str) -> Result<Defect, String> {
    Defect::NAMED.iter().find(|(n, _)| *n == s).map(|(_, d)| *d).ok_or_else(|| {
        let names: Vec<_> = Defect::NAMED.iter().map(|(n, _)| *n).collect();
        format!("unknown defect {s:?}; known: {}", names.join(", "))
    })
}

fn load(common: &Common) -> Result<Scenario> {
    let mut sc = Scenario::load(&common.scenario)?;
    let f = common.faults;
    if f.loss.is_some() || f.corrupt.is_some() || f.dup.is_some() || f.reorder.is_some() {
        for p in [f.loss, f.corrupt, f.dup, f.reorder].into_iter().flatten() {
            if !(0.0..=1.0).contains(&p) {
                bail!("fault probabilities must be within 0..=1, got {p}");
            }
        }
        let rule = FaultRule {
            loss: f.loss.unwrap_or(0.0),
            corrupt: f.corrupt.unwrap_or(0.0),
            duplicate: f.dup.unwrap_or(0.0),
            reorder: f.reorder.unwrap_or(0.0),
            ..FaultRule::default()
        };
        sc.faults.insert(0, rule);
    }
    Ok(sc)
}

fn replay_command(common: &Common, seed: u64) -> String {
    let mut cmd = format!("sim replay --scenario {} --seed {seed} --trace", common.scenario);
    if common.defect != Defect::None {
        let name = Defect::NAMED.iter().find(|(_, d)| *d == common.defect).map(|(n, _)| *n).unwrap_or("none");
        cmd += &format!(" --defect {name}");
    }
    let f = common.faults;
    for (flag, v) in [("loss", f.loss), ("corrupt", f.corrupt), ("dup", f.dup), ("reorder", f.reorder)] {
        if let Some(v) = v {
            cmd += &format!(" --{flag} {v}");
        }
    }
    cmd
}

fn swarm(args: &SwarmArgs) -> Result<bool> {
    if args.print {
        for seed in args.seeds.clone() {
            print!("# sim swarm seed {seed}\n{}", scistream_sim::swarm::draw(seed).to_toml());
        }
        return Ok(true);
    }
    println!(
        "sim swarm: seeds {}..{} defect {}; each seed draws its own world",
        args.seeds.start,
        args.seeds.end,
        args.defect.name()
    );
    let report = run::run_swarm(args.seeds.clone(), args.defect, args.jobs);
    let n = args.seeds.end - args.seeds.start;
    let required: &[_] = if n >= run::SWARM_MIN_SEEDS { &run::SWARM_SOMETIMES } else { &[] };
    print!("{}", report.render(required));
    if let Some(seed) = report.first_failing_seed() {
        let sc = scistream_sim::swarm::draw(seed);
        let path = args.out.join(format!("{}.toml", sc.name));
        std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
        std::fs::write(&path, sc.to_toml()).with_context(|| format!("writing {}", path.display()))?;
        let mut cmd = format!("sim replay --scenario {} --seed {seed} --trace", path.display());
        if args.defect != Defect::None {
            cmd += &format!(" --defect {}", args.defect.name());
        }
        println!("FAILED: first failing seed {seed}; its world, written to {}:\n", path.display());
        print!("{}", sc.to_toml());
        println!("\nreplay exactly with:\n  {cmd}");
        println!("keep it as a regression scenario: copy it to sim/scenarios/, add it to BUILTIN and `sweeps!`");
    } else if !report.unreached.is_empty() {
        println!("FAILED: required reachability never seen; the runs are vacuous");
    } else {
        println!("PASSED");
    }
    Ok(report.passed())
}

fn main() -> ExitCode {
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("sim: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> Result<bool> {
    match Cli::parse().cmd {
        Cmd::List => {
            for (name, text) in BUILTIN {
                let sc = Scenario::parse(name, text)?;
                println!("{name:<24} {}", sc.description);
            }
            Ok(true)
        }
        Cmd::Bench { scenarios, seeds, target } => {
            println!(
                "| scenario | seeds | wall s | seeds/s (1 core) | events/s | target seeds/s | ratio | properties |"
            );
            println!("|---|---:|---:|---:|---:|---:|---:|---|");
            let mut ok = true;
            for name in scenarios {
                let sc = Scenario::load(&name)?;
                let r = run::run_seeds(&name, &sc, 0..seeds, Defect::None, 1);
                let secs = r.elapsed.as_secs_f64();
                ok &= r.passed();
                println!(
                    "| {name} | {seeds} | {secs:.2} | {:.0} | {:.0} | {target:.0} | {:.2}x | {} |",
                    r.rate(),
                    r.events as f64 / secs.max(1e-9),
                    r.rate() / target,
                    if r.passed() { "all hold" } else { "VIOLATED" }
                );
            }
            Ok(ok)
        }
        Cmd::Run(args) => {
            let sc = load(&args.common)?;
            let required = run::sometimes(&sc);
            let fault_lines: Vec<String> = sc.faults.iter().map(|f| format!("{f:?}")).collect();
            println!(
                "sim run: scenario {} seeds {}..{} defect {:?}; {} sessions, {} clients, {:?} network, {} fault rules, {} partitions, {} crashes, heal at {} ms",
                sc.name,
                args.seeds.start,
                args.seeds.end,
                args.common.defect,
                sc.sessions,
                sc.clients,
                sc.network,
                fault_lines.len(),
                sc.partitions.len(),
                sc.crashes.len(),
                sc.heal_at_ms
            );
            let report: Report = run::run_seeds(&args.common.scenario, &sc, args.seeds, args.common.defect, args.jobs);
            print!("{}", report.render(&required));
            if let Some(seed) = report.first_failing_seed() {
                println!(
                    "FAILED: first failing seed {seed}; replay exactly with:\n  {}",
                    replay_command(&args.common, seed)
                );
            } else if !report.unreached.is_empty() {
                println!("FAILED: required reachability never seen; the runs are vacuous");
            } else if !report.forbidden.is_empty() {
                println!(
                    "FAILED: the scenario forbids a mark some runs reached (`sim replay --trace` a seed to see it)"
                );
            } else {
                println!("PASSED");
            }
            Ok(report.passed())
        }
        Cmd::Swarm(args) => swarm(&args),
        Cmd::Explore(a) => {
            let sc = Scenario::load(&a.scenario)?;
            let bounds = scistream_sim::world::explore::Bounds {
                depth: a.depth,
                faults: a.faults,
                crashes: a.crashes,
                window_ms: a.window_ms,
                skip: a.skip,
                first: a.first,
                ..Default::default()
            };
            let opts = Options { seed: a.seed, trace: false, defect: a.defect };
            let r = scistream_sim::world::explore::explore_windows(&sc, opts, bounds, a.windows);
            println!(
                "explore {} seed {} depth {} skip {} windows {} faults {} crashes {} window {} ms defect {}: {} states explored, {} unique, {} leaves, {:.2} s, {:.0} states/s",
                a.scenario,
                a.seed,
                a.depth,
                a.skip,
                a.windows,
                a.faults,
                a.crashes,
                a.window_ms,
                a.defect.name(),
                r.explored,
                r.unique,
                r.leaves,
                r.elapsed.as_secs_f64(),
                r.rate()
            );
            for (v, path) in r.violations.values() {
                println!("VIOLATION {v}\n  reached by {} choices:", path.len());
                for step in path {
                    println!("    {step}");
                }
            }
            println!("{}", if r.violations.is_empty() { "PASSED" } else { "FAILED" });
            Ok(r.violations.is_empty())
        }
        Cmd::Catch { defect, starts, limit } => {
            println!("| broken variant | property | seeds until caught, per start | median |");
            println!("|---|---|---|---:|");
            let mut ok = true;
            for (d, prop) in Defect::CAUGHT_BY.iter().filter(|(d, _)| defect.is_none_or(|x| x == *d)) {
                let mut n: Vec<Option<u64>> =
                    (0..starts.max(1)).map(|s| run::seeds_until_caught(*d, *prop, s * 1_000_000, limit)).collect();
                ok &= n.iter().all(Option::is_some);
                let shown: Vec<String> = n.iter().map(|x| x.map_or(format!(">{limit}"), |v| v.to_string())).collect();
                n.sort_by_key(|x| x.unwrap_or(u64::MAX));
                let median = n[n.len() / 2].map_or(format!(">{limit}"), |v| v.to_string());
                println!("| {} | {prop} | {} | {median} |", d.name(), shown.join(", "));
            }
            Ok(ok)
        }
        Cmd::Replay(args) => {
            let sc = load(&args.common)?;
            let out = world::run(&sc, Options { seed: args.seed, trace: args.trace, defect: args.common.defect });
            if args.trace {
                for line in &out.trace {
                    println!("{line}");
                }
            }
            println!(
                "seed {}: {} events, {} established, reached [{}]",
                args.seed,
                out.events,
                out.established,
                out.reached.iter().map(|r| r.name()).collect::<Vec<_>>().join(", ")
            );
            for v in &out.violations {
                println!("VIOLATION {v}");
            }
            Ok(out.violations.is_empty())
        }
        Cmd::Diagrams { out, check } => {
            let mut stale = Vec::new();
            for (name, text) in scistream_fsm::diagram::all() {
                let path = out.join(format!("{name}.mmd"));
                if check {
                    let current = std::fs::read_to_string(&path).unwrap_or_default();
                    if current != text {
                        stale.push(path.display().to_string());
                    }
                } else {
                    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
                    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
                    println!("wrote {}", path.display());
                }
            }
            if !stale.is_empty() {
                println!("stale diagrams (run `sim diagrams --out {}`): {}", out.display(), stale.join(", "));
            }
            Ok(stale.is_empty())
        }
    }
}
