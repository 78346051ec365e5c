//! Mermaid diagrams generated from the machines' declarations: every (state, input) pair is
//! asked of the declared transition and output functions, so a diagram cannot drift from its
//! machine. `sim diagrams --out docs/fsm` writes them; a test compares them with the files.

use std::fmt::Write;

use crate::alphabet::{Alphabet, Machine};

/// The diagram of machine `M`.
pub fn mermaid<M: Machine>() -> String {
    let mut s = String::from("stateDiagram-v2\n");
    let _ = writeln!(s, "    [*] --> {}", M::INITIAL_STATE.name());
    for &state in M::S::ALL {
        let mut leaves = false;
        for &input in M::I::ALL {
            let Some(next) = M::transition(&state, &input) else { continue };
            leaves |= next != state;
            let _ = write!(s, "    {} --> {}: {}", state.name(), next.name(), input.name());
            if let Some(out) = M::output(&state, &input) {
                let _ = write!(s, " / {}", out.name());
            }
            s.push('\n');
        }
        if !leaves {
            let _ = writeln!(s, "    {} --> [*]", state.name());
        }
    }
    s
}

/// Every machine's name and diagram.
pub fn all() -> Vec<(&'static str, String)> {
    fn one<M: Machine>() -> (&'static str, String) {
        (M::NAME, mermaid::<M>())
    }
    vec![
        one::<crate::s2uc::Declaration>(),
        one::<crate::s2cs::Declaration>(),
        one::<crate::session::Declaration>(),
        one::<crate::s2ds::Declaration>(),
        one::<crate::prod_app::Declaration>(),
        one::<crate::cons_app::Declaration>(),
    ]
}
