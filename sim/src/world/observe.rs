//! The property checks: after every step of a node (always-properties), at the settle point
//! and at the end of the run (eventually-properties).

use std::time::Duration;

use scistream_fsm::alphabet::Alphabet;
use scistream_fsm::{Node, Peer, Role, Uid, s2ds, s2uc, session};

use super::{Seen, World};
use crate::check::Prop;
use crate::nodes;

/// What a node's session looks like to the checks.
#[derive(Clone)]
pub(super) struct Look {
    state: &'static str,
    terminal: bool,
    /// Holding a reservation that its lease must bound (not yet established).
    leased: bool,
    established: bool,
}

impl World<'_> {
    /// Checks `node`'s session `only` (or all its sessions when `None`) against what was seen
    /// before: terminal states stay put, reservations stay within their lease, a newly
    /// established session's map agrees across facilities, a newly finished one's ports are free.
    pub(super) fn observe(&mut self, node: Peer, only: Option<Uid>) {
        let mut looks = std::mem::take(&mut self.looks);
        looks.clear();
        self.observe_into(node, only, &mut looks);
        self.looks = looks;
    }

    fn observe_into(&mut self, node: Peer, only: Option<Uid>, looks: &mut Vec<(Uid, Option<Look>)>) {
        match node {
            Peer::ControlServer(r) => {
                let Some(c) = &self.cs[nodes::role_index(r)] else { return };
                match only {
                    Some(uid) => looks.push((uid, c.session(&uid).map(look_cs))),
                    None => looks.extend(c.sessions().iter().map(|(u, s)| (*u, Some(look_cs(s))))),
                }
                if r == Role::Prod {
                    // What a client may announce from now on (announced-admitted).
                    for (uid, _) in looks.iter() {
                        if let Some(e) = c.core().session(uid)
                            && !e.summary.listeners.is_empty()
                        {
                            self.admitted.insert((*uid, e.owner.clone()));
                        }
                        // Where a consumer gateway may forward the session to (maps-agree).
                        if let Some(s) = c.session(uid)
                            && !s.listeners.is_empty()
                        {
                            let seen = self.prod_gateway.entry(*uid).or_default();
                            if !seen.contains(&s.listeners) {
                                seen.insert(s.listeners.clone());
                            }
                        }
                    }
                }
            }
            Peer::DataServer(r, n) => {
                let Some(d) = &self.ds[self.ds_index(r, n)] else { return };
                match only {
                    Some(uid) => looks.push((uid, d.sessions().get(&uid).map(|s| look_ds(s.state())))),
                    None => looks.extend(d.sessions().iter().map(|(u, s)| (*u, Some(look_ds(s.state()))))),
                }
            }
            Peer::Client(n) => {
                let Some(c) = &self.clients[n as usize] else { return };
                match only {
                    Some(uid) => looks.push((uid, c.session(&uid).map(|s| look_uc(s.state())))),
                    None => looks.extend(c.sessions().iter().map(|(u, s)| (*u, Some(look_uc(s.state()))))),
                }
            }
            Peer::App(_) => return,
        }
        let lease = match node {
            Peer::ControlServer(_) => self.profile.cs_lease(),
            _ => self.profile.ds_lease(),
        };
        let mut seen = std::mem::take(self.seen.entry(node).or_default());
        if only.is_none() {
            // Sessions the node no longer holds (forgotten tombstones, or dropped on re-attach).
            seen.retain(|uid, _| looks.binary_search_by_key(uid, |(u, _)| *u).is_ok());
        }
        for (uid, look) in looks.drain(..) {
            let Some(look) = look else {
                seen.remove(&uid);
                continue;
            };
            let prev = seen.get(&uid).copied();
            if let Some(p) = prev
                && p.terminal
                && p.state != look.state
            {
                self.violate(
                    Prop::TerminalIsFinal,
                    format!("{node} session {uid} left {} for {}", p.state, look.state),
                );
            }
            let since = match prev {
                Some(p) if p.state == look.state || (look.leased && !p.terminal) => p.since,
                _ => self.now,
            };
            if look.leased && self.now.saturating_since(since) > lease + Duration::from_millis(1) {
                self.violate(
                    Prop::LeaseBounded,
                    format!("{node} session {uid} reserved since {since} beyond its lease"),
                );
            }
            let newly_established = look.established && prev.is_none_or(|p| p.state != look.state);
            let newly_terminal = look.terminal && prev.is_none_or(|p| !p.terminal);
            if look.leased && prev.is_none_or(|p| !p.leased || p.since != since) {
                // Looked at again when the lease must have ended, even if nothing steps it by
                // then (a reservation whose lease timer is lost).
                self.schedule(since + lease + Duration::from_millis(2), super::Event::LeaseCheck(node, uid));
            }
            seen.insert(uid, Seen { state: look.state, terminal: look.terminal, leased: look.leased, since });
            if let Peer::ControlServer(r) = node
                && newly_established
            {
                self.check_maps(r, uid);
            }
            if let Peer::DataServer(r, n) = node
                && newly_terminal
            {
                self.check_ports_freed(r, n, uid);
            }
        }
        *self.seen.entry(node).or_default() = seen;
    }

    /// An established session's connection map, checked at each control server on its own as
    /// it becomes established (the other side may be down, or not there yet): its owner is the
    /// client that asked for it, its credentials the ones that client minted, the producer
    /// gateway forwards to where the producer listens, the consumer gateway to listeners the
    /// producer gateway held for the session; and when both sides are established, they agree.
    fn check_maps(&mut self, r: Role, uid: Uid) {
        let Some(me) = self.cs[nodes::role_index(r)].as_ref().and_then(|c| c.session(&uid)) else { return };
        let at = Peer::ControlServer(r);
        let Some((targets, creds)) = &me.bridge else {
            self.violate(Prop::MapsAgree, format!("{at}: established session {uid} without a connection map"));
            return;
        };
        let plans: Vec<&super::Plan> = self.by_uid.get(&uid).into_iter().flatten().map(|i| &self.plans[*i]).collect();
        let owner = me.owner();
        let problem = if !plans.iter().any(|p| owner.0 == format!("user{}", p.client)) {
            Some(format!("owned by {owner:?}, who never asked for it"))
        } else if !plans.iter().any(|p| p.creds == *creds) {
            Some("credentials no client minted for it".to_string())
        } else if r == Role::Prod && !plans.iter().any(|p| p.prod_listeners == *targets) {
            // Compared with where the producer really listens: after a restart of the producer's
            // control server the map comes from the client, which learnt it from the Hello the
            // old incarnation accepted.
            Some("the producer gateway does not forward to the producer's listeners".to_string())
        } else if r == Role::Cons && !self.prod_gateway.get(&uid).is_some_and(|held| held.contains(targets)) {
            Some("the consumer gateway does not forward to listeners the producer gateway held".to_string())
        } else {
            self.disagreement(uid).map(str::to_string)
        };
        if let Some(what) = problem {
            self.violate(Prop::MapsAgree, format!("{at} session {uid}: {what}"));
        }
    }

    /// Where both control servers hold `uid` established, what they disagree on.
    fn disagreement(&self, uid: Uid) -> Option<&'static str> {
        let (Some(p), Some(c)) = (&self.cs[0], &self.cs[1]) else { return None };
        let (Some(p), Some(c)) = (p.session(&uid), c.session(&uid)) else { return None };
        let est = session::State::Established;
        if p.state() != est || c.state() != est {
            return None;
        }
        let (Some((_, p_creds)), Some((c_targets, c_creds))) = (&p.bridge, &c.bridge) else { return None };
        if p.owner() != c.owner() {
            Some("the facilities hold different owners")
        } else if p_creds != c_creds {
            Some("the facilities hold different credentials")
        } else if *c_targets != p.listeners {
            Some("the consumer gateway does not forward to the producer gateway's listeners")
        } else {
            None
        }
    }

    fn check_ports_freed(&mut self, r: Role, n: Node, uid: Uid) {
        let held: Vec<u16> = self.os[self.ds_index(r, n)].iter().filter(|(_, u)| **u == uid).map(|(p, _)| *p).collect();
        if !held.is_empty() {
            self.violate(
                Prop::ReleasedPortsFree,
                format!("{} session {uid} is over but holds ports {held:?}", Peer::DataServer(r, n)),
            );
        }
    }

    /// After the faults healed and setups had time to finish: every session is established
    /// or over, at its client.
    pub(super) fn settle_check(&mut self) {
        let mut stuck = Vec::new();
        for p in &self.plans {
            let Some(c) = &self.clients[p.client as usize] else { continue };
            let Some(s) = c.session(&p.uid) else {
                stuck.extend(self.forgotten(p.client, p.uid));
                continue;
            };
            if !matches!(s.state(), s2uc::State::Established | s2uc::State::Released | s2uc::State::Failed) {
                stuck.push(format!("{} is {} at s2uc#{}", p.uid, s.state().name(), p.client));
            }
        }
        self.note(|| format!("settle check: {} stuck", stuck.len()));
        for s in stuck {
            self.violate(Prop::SessionsSettle, s);
        }
    }

    /// Why a client not holding `uid` is wrong, if it is. A client's durable state is its
    /// journal, the uids of its unfinished sessions: it may forget a session once it reported
    /// the session's outcome (released, or failed with an ERROR) to its user, and only then.
    /// A session it accepted and forgot without an outcome was lost.
    fn forgotten(&self, client: u32, uid: Uid) -> Option<String> {
        if self.outcomes.contains_key(&(client, uid)) {
            None
        } else if self.started.contains(&(client, uid)) {
            Some(format!("{uid} lost at s2uc#{client}: accepted, no outcome reported, no longer held"))
        } else {
            Some(format!("{uid} never started at s2uc#{client}"))
        }
    }

    /// At the end, after every session was released: every session is over at its client with
    /// an outcome, and nothing holds a port anywhere.
    pub(super) fn final_checks(&mut self) {
        let mut bad = Vec::new();
        for p in &self.plans {
            let held = self.clients[p.client as usize].as_ref().is_none_or(|c| c.session(&p.uid).is_some());
            if !held && let Some(what) = self.forgotten(p.client, p.uid) {
                bad.push((Prop::SessionsSettle, what));
            }
        }
        for (n, c) in self.clients.iter().enumerate() {
            let Some(c) = c else {
                bad.push((Prop::SessionsSettle, format!("s2uc#{n} is still down at the end")));
                continue;
            };
            for (uid, s) in c.sessions() {
                if !s.state().is_terminal() {
                    bad.push((
                        Prop::SessionsSettle,
                        format!("{uid} still {} at s2uc#{n} after release", s.state().name()),
                    ));
                } else if s.state() == s2uc::State::Failed && s.failure.is_none() {
                    bad.push((Prop::SessionsSettle, format!("{uid} failed at s2uc#{n} without an ERROR")));
                }
            }
        }
        for (r, n, i) in Role::ALL.into_iter().flat_map(|r| self.ds_nodes(r).map(move |(n, i)| (r, n, i))) {
            if !self.os[i].is_empty() {
                let held: Vec<_> = self.os[i].iter().take(8).collect();
                let what = format!("{} still binds ports (first: {held:?})", Peer::DataServer(r, n));
                bad.push((Prop::AllPortsFree, what));
            }
            if let Some(d) = &self.ds[i] {
                let usable = usize::from(self.sc.ports) - d.busy_ports().len();
                if d.free_ports().len() != usable {
                    let what = format!(
                        "{} pool has {} of {usable} usable ports free",
                        Peer::DataServer(r, n),
                        d.free_ports().len()
                    );
                    bad.push((Prop::AllPortsFree, what));
                }
                if let Some(p) = d.busy_ports().iter().find(|p| !self.foreign[i].contains(p)) {
                    bad.push((
                        Prop::AllPortsFree,
                        format!("{} set aside port {p}, which nobody else holds", Peer::DataServer(r, n)),
                    ));
                }
                if let Some((uid, s)) = d.sessions().iter().find(|(_, s)| !s.state().is_terminal()) {
                    bad.push((
                        Prop::AllPortsFree,
                        format!("{} still holds {uid} ({})", Peer::DataServer(r, n), s.state().name()),
                    ));
                }
            }
        }
        for r in Role::ALL {
            if let Some(c) = &self.cs[nodes::role_index(r)]
                && let Some((uid, s)) = c.sessions().iter().find(|(_, s)| s.state().holds_resources())
            {
                bad.push((
                    Prop::AllPortsFree,
                    format!("{} still holds {uid} ({})", Peer::ControlServer(r), s.state().name()),
                ));
            }
        }
        for (prop, what) in bad {
            self.violate(prop, what);
        }
    }
}

fn look_cs(s: &session::Session) -> Look {
    use session::State as S;
    let st = s.state();
    Look {
        state: st.name(),
        terminal: st.is_terminal(),
        leased: matches!(st, S::Reserving | S::Listening | S::Updating),
        established: st == S::Established,
    }
}

fn look_ds(st: s2ds::State) -> Look {
    Look {
        state: st.name(),
        terminal: st.is_terminal(),
        leased: matches!(st, s2ds::State::Binding | s2ds::State::Reserving),
        established: false,
    }
}

fn look_uc(st: s2uc::State) -> Look {
    Look { state: st.name(), terminal: st.is_terminal(), leased: false, established: false }
}
