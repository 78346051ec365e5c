//! The generated diagrams: the committed `docs/fsm/*.mmd` files are exactly what the
//! declarations generate, and every declared state appears (and is reachable) in its diagram.

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;

use scistream_fsm::alphabet::{Alphabet, Machine};
use scistream_fsm::{cons_app, diagram, prod_app, s2cs, s2ds, s2uc, session};

const REGENERATE: &str = "cargo run -p scistream-sim --bin sim -- diagrams --out docs/fsm";

fn docs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/fsm")
}

#[test]
fn committed_diagrams_match_the_declarations() {
    let mut stale = Vec::new();
    for (name, text) in diagram::all() {
        let path = docs_dir().join(format!("{name}.mmd"));
        match std::fs::read_to_string(&path) {
            Ok(committed) if committed == text => {}
            Ok(_) => stale.push(format!("{} differs from the declaration of {name}", path.display())),
            Err(e) => stale.push(format!("{} cannot be read ({e})", path.display())),
        }
    }
    assert!(stale.is_empty(), "{}\nregenerate them with `{REGENERATE}`", stale.join("\n"));
}

/// The state names a generated diagram draws (`[*]` excluded).
fn drawn_states(text: &str) -> BTreeSet<String> {
    let mut states = BTreeSet::new();
    for line in text.lines().skip(1) {
        let (from, rest) = line.trim().split_once(" --> ").unwrap_or_else(|| panic!("not a transition: {line:?}"));
        let to = rest.split_once(':').map_or(rest, |(to, _)| to).trim();
        states.extend([from, to].into_iter().filter(|s| *s != "[*]").map(str::to_owned));
    }
    states
}

/// The states reachable from the initial state through the declared transitions.
fn reachable<M: Machine>() -> BTreeSet<&'static str> {
    let mut seen = BTreeSet::from([M::INITIAL_STATE.name()]);
    let mut todo = VecDeque::from([M::INITIAL_STATE]);
    while let Some(state) = todo.pop_front() {
        for input in M::I::ALL {
            if let Some(next) = M::transition(&state, input)
                && seen.insert(next.name())
            {
                todo.push_back(next);
            }
        }
    }
    seen
}

fn declared<M: Machine>() -> BTreeSet<&'static str> {
    M::S::ALL.iter().map(|s| s.name()).collect()
}

/// Checks one machine against its diagram text.
type Check = fn(&str);

/// Checks machine `M` against its diagram text.
fn every_state_drawn_and_reachable<M: Machine>(text: &str) {
    let declared = declared::<M>();
    let drawn = drawn_states(text);
    let drawn: BTreeSet<&str> = drawn.iter().map(String::as_str).collect();
    assert_eq!(drawn, declared, "{}: drawn states differ from the declared ones", M::NAME);
    assert_eq!(reachable::<M>(), declared, "{}: some declared state is unreachable", M::NAME);
}

#[test]
fn every_diagram_draws_every_declared_state_and_each_is_reachable() {
    let checks: [(&str, Check); 6] = [
        (s2uc::Declaration::NAME, every_state_drawn_and_reachable::<s2uc::Declaration>),
        (s2cs::Declaration::NAME, every_state_drawn_and_reachable::<s2cs::Declaration>),
        (session::Declaration::NAME, every_state_drawn_and_reachable::<session::Declaration>),
        (s2ds::Declaration::NAME, every_state_drawn_and_reachable::<s2ds::Declaration>),
        (prod_app::Declaration::NAME, every_state_drawn_and_reachable::<prod_app::Declaration>),
        (cons_app::Declaration::NAME, every_state_drawn_and_reachable::<cons_app::Declaration>),
    ];
    let all = diagram::all();
    let names: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
    let checked: Vec<&str> = checks.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, checked, "diagram::all() and this test list different machines");
    for ((_, text), (_, check)) in all.iter().zip(checks) {
        check(text);
    }
}

#[test]
fn every_diagram_starts_at_the_initial_state() {
    for (name, text) in diagram::all() {
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("stateDiagram-v2"), "{name}");
        assert!(lines.next().is_some_and(|l| l.trim_start().starts_with("[*] --> ")), "{name}");
    }
}
