//! Stepping the cores and carrying out their effects.

use rand::Rng;
use scistream_fsm::audit::Decision;
use scistream_fsm::policy::{Dialled, Policy};
use scistream_fsm::{Effect, Msg, Node, Notice, Peer, Role, Token, Uid, cons_app, prod_app, s2cs, s2ds, s2uc};

use super::{Event, World, ms, short};
use crate::check::{Prop, Reach};
use crate::nodes;

impl World<'_> {
    pub(super) fn step_client(&mut self, n: u32, input: s2uc::Input) {
        let Some(core) = self.clients[n as usize].as_mut() else { return };
        let uid = match &input {
            s2uc::Input::Start { uid, .. } | s2uc::Input::Release(uid) => Some(*uid),
            s2uc::Input::Msg { msg, .. } => msg.uid(),
            s2uc::Input::Timer(key) => key.uid,
            s2uc::Input::Recover => None,
        };
        let start = matches!(input, s2uc::Input::Start { .. });
        let mut out = std::mem::take(&mut self.scratch);
        let res = core.handle(self.now, input, &mut out);
        if start
            && res.is_ok()
            && let Some(uid) = uid
        {
            // The user started the uid anew (after an outcome it may reuse it): a new session.
            self.started.insert((n, uid));
            self.outcomes.remove(&(n, uid));
        }
        self.finish(Peer::Client(n), uid, res, out);
    }

    pub(super) fn step_cs(&mut self, r: Role, node: Peer, input: s2cs::Input) {
        let Some(core) = self.cs[nodes::role_index(r)].as_mut() else { return };
        let uid = match &input {
            s2cs::Input::Msg { msg, .. } => msg.uid(),
            s2cs::Input::Timer(key) => key.uid,
            s2cs::Input::Report { uid, .. } | s2cs::Input::SessionDied(uid) => Some(*uid),
            s2cs::Input::Boot | s2cs::Input::Drain | s2cs::Input::Reconfigure { .. } => None,
        };
        let mut out = std::mem::take(&mut self.scratch);
        let res = core.handle(self.now, input, &mut out);
        self.finish(node, uid, res, out);
    }

    pub(super) fn step_ds(&mut self, r: Role, n: Node, input: s2ds::Input) {
        let i = self.ds_index(r, n);
        let Some(core) = self.ds[i].as_mut() else { return };
        let uid = match &input {
            s2ds::Input::Msg { msg, .. } => msg.uid(),
            s2ds::Input::Timer(key) => key.uid,
            s2ds::Input::BridgesUp(uid)
            | s2ds::Input::BridgesFailed { uid, .. }
            | s2ds::Input::SessionLost(uid)
            | s2ds::Input::Bound(uid) => Some(*uid),
            s2ds::Input::BindFailed { uid, .. } => Some(*uid),
            s2ds::Input::Boot | s2ds::Input::Drain => None,
        };
        let mut out = std::mem::take(&mut self.scratch);
        let res = core.handle(self.now, input, &mut out);
        self.finish(Peer::DataServer(r, n), uid, res, out);
    }

    pub(super) fn step_app(&mut self, i: u32, input: prod_app::Input) {
        let Some(core) = self.apps[i as usize].as_mut() else { return };
        let mut out = std::mem::take(&mut self.scratch);
        let res = core.handle(self.now, input, &mut out);
        self.finish(Peer::App(i), None, res, out);
    }

    pub(super) fn step_cons(&mut self, i: usize, input: cons_app::Input) {
        let mut out = std::mem::take(&mut self.scratch);
        let res = self.cons[i].handle(input, &mut out);
        if let Err(e) = &res {
            self.note(|| format!("cons#{i} refuses: {e}"));
        }
        for eff in out.drain(..) {
            match eff {
                Effect::Connect { uid, listeners } => {
                    let ok = self.path_open(uid, &listeners);
                    self.note(|| format!("cons#{i} connects to {} listeners: {}", listeners.len(), ok));
                    self.schedule(self.now + ms(1), Event::ConsResult(i, ok));
                }
                Effect::Notify(Notice::Streaming { .. }) => {
                    self.reached.insert(Reach::Streamed);
                }
                _ => {}
            }
        }
        self.scratch = out;
    }

    /// Carries out a step's effects, then checks the sessions the step may have changed: the
    /// input's session, or all of the node's sessions after an input without one.
    fn finish(
        &mut self,
        node: Peer,
        uid: Option<Uid>,
        res: Result<(), scistream_fsm::ProtocolError>,
        mut out: Vec<Effect>,
    ) {
        if let Err(e) = &res {
            self.note(|| format!("{node} refuses: {e}"));
        }
        let step = super::defect::Step { node, now: self.now, forged: self.forging };
        self.opts.defect.rewrite(step, &mut out);
        if self.forging {
            self.note_forged_effects(node, &out);
        }
        for eff in out.drain(..) {
            self.execute(node, eff);
        }
        self.scratch = out;
        self.observe(node, uid);
    }

    /// The destination policy facility `r`'s control server runs with (as configured: a
    /// crashed one comes back with the same).
    fn cs_policy(&self, r: Role) -> Policy {
        let own = super::own_addr(r);
        match &self.cs[nodes::role_index(r)] {
            Some(cs) => cs.config().policy.clone(),
            None => Policy { own: vec![own], ..Policy::default() },
        }
    }

    fn execute(&mut self, node: Peer, eff: Effect) {
        match eff {
            Effect::Send { to, msg } => self.send(node, to, msg),
            Effect::SetTimer { key, at } => {
                self.generation += 1;
                let generation = self.generation;
                self.timers.insert((node, key), generation);
                self.schedule(at, Event::Timer { node, key, generation });
            }
            Effect::CancelTimer { key } => {
                self.timers.remove(&(node, key));
            }
            Effect::Listen { uid, ports, .. } => self.listen(node, uid, &ports),
            Effect::Unlisten { uid, ports } => {
                let Peer::DataServer(r, n) = node else { return };
                let i = self.ds_index(r, n);
                let table = &mut self.os[i];
                for p in &ports {
                    if table.get(p) == Some(&uid) {
                        table.remove(p);
                    }
                }
                self.note(|| format!("{node} unlistens {} ports {ports:?}", short(uid)));
                self.close_streams(uid);
            }
            Effect::StartBridges { uid, targets, creds, role, .. } => {
                let Peer::DataServer(r, n) = node else { return };
                let policy = &self.cs_policy(r);
                if let Err(why) = policy.admit_all(Dialled::of(role), &targets) {
                    self.violate(Prop::TargetsWithinPolicy, format!("{node} bridges {uid} outside its policy: {why}"));
                }
                let minted = self.by_uid.get(&uid).is_some_and(|ix| ix.iter().any(|i| self.plans[*i].creds == creds));
                if !minted || targets.is_empty() {
                    self.violate(
                        Prop::BridgeNeedsCredentials,
                        format!("{node} starts bridges of {uid} without the session's credentials from UpdateTargets"),
                    );
                }
                let fails = self.sc.config.relay_failure > 0.0 && self.rng.random_bool(self.sc.config.relay_failure);
                if fails {
                    self.reached.insert(Reach::RelayFailed);
                    self.note(|| format!("{node} cannot start the relay of {}", short(uid)));
                    self.schedule(self.now + ms(1), Event::BridgesFailed(r, n, uid));
                } else {
                    self.schedule(self.now + ms(1), Event::BridgesUp(r, n, uid));
                }
            }
            Effect::Connect { .. } => {}
            Effect::Persist(record) => {
                let Peer::ControlServer(r) = node else { return };
                self.stores[nodes::role_index(r)].insert(record.uid, *record);
            }
            Effect::Unpersist { uid } => {
                let Peer::ControlServer(r) = node else { return };
                self.stores[nodes::role_index(r)].remove(&uid);
            }
            Effect::Notify(n) => self.notice(node, n),
            Effect::Audit(a) => {
                if a.decision == Decision::TargetsRefused {
                    self.reached.insert(Reach::PolicyRefused);
                }
                self.note(|| format!("{node} audits {} of {}", a.decision.name(), short(a.uid)));
            }
            // A control server's cores route these among themselves (`ControlServer`).
            Effect::Spawn(_) | Effect::ToSession { .. } | Effect::Report { .. } | Effect::Retire { .. } => {
                self.note(|| format!("{node} leaked an effect between its cores"));
            }
        }
    }

    fn listen(&mut self, node: Peer, uid: Uid, ports: &[u16]) {
        let Peer::DataServer(r, n) = node else { return };
        let i = self.ds_index(r, n);
        if n != Node(0) {
            self.reached.insert(Reach::OtherNode);
        }
        if let Some(p) = ports.iter().find(|p| self.foreign[i].contains(p)) {
            self.note(|| format!("{node} cannot bind {} port {p}: another process holds it", short(uid)));
            self.schedule(self.now, Event::Bind(r, n, uid, Some(*p)));
            return;
        }
        for p in ports {
            if let Some(other) = self.os[i].get(p)
                && *other != uid
            {
                let other = *other;
                self.violate(Prop::PortsExclusive, format!("{node} port {p} bound for {uid} while {other} holds it"));
            }
            self.os[i].insert(*p, uid);
        }
        self.note(|| format!("{node} listens {} ports {ports:?}", short(uid)));
        self.schedule(self.now, Event::Bind(r, n, uid, None));
    }

    fn notice(&mut self, node: Peer, n: Notice) {
        self.note(|| format!("{node} notice {n:?}"));
        let Peer::Client(c) = node else { return };
        let plan =
            |w: &Self, uid: Uid| w.by_uid.get(&uid).and_then(|ix| ix.iter().copied().find(|i| w.plans[*i].client == c));
        match n {
            Notice::Created { uid, .. } => {
                let user = scistream_fsm::Principal(format!("user{c}"));
                if !self.admitted.contains(&(uid, user)) {
                    self.violate(
                        Prop::AnnouncedAdmitted,
                        format!("{node} announced {uid}, which the producer's control server never admitted for it"),
                    );
                }
                if let Some(i) = plan(self, uid)
                    && let Some(after) = self.plans[i].hello_after_ms
                {
                    self.schedule(self.now + ms(after), Event::Hello(i));
                }
            }
            Notice::Established { uid, cons_listeners, .. } => {
                self.established += 1;
                self.reached.insert(Reach::Established);
                if let Some(i) = plan(self, uid) {
                    if self.plans[i].release_early_ms.is_none() {
                        self.schedule(self.now + ms(self.plans[i].hold_ms), Event::Release(i));
                    }
                    self.schedule(self.now + ms(1), Event::ConsListeners(i, cons_listeners));
                }
            }
            Notice::Released { uid } => {
                self.reached.insert(Reach::Released);
                self.outcome(c, uid, None);
            }
            Notice::Failed { uid, code } => {
                use scistream_fsm::ErrorCode as E;
                self.outcome(c, uid, Some(code));
                let mark = match code {
                    E::DeadlineExceeded => Some(Reach::FailedDeadline),
                    E::ResourceExhausted => Some(Reach::FailedExhausted),
                    E::AlreadyExists => Some(Reach::FailedConflict),
                    E::Aborted => Some(Reach::FailedAborted),
                    E::FailedPrecondition => Some(Reach::FailedPrecondition),
                    E::PermissionDenied => Some(Reach::FailedPermission),
                    _ => None,
                };
                self.reached.extend(mark);
            }
            Notice::Ready { .. } | Notice::Streaming { .. } => {}
        }
    }

    /// Client `c` reported `uid`'s outcome to its user: final, across the client's crashes too
    /// (it may forget the session after it, never report it again).
    fn outcome(&mut self, c: u32, uid: Uid, code: Option<scistream_fsm::ErrorCode>) {
        if let Some(first) = self.outcomes.insert((c, uid), code) {
            let says =
                |o: Option<scistream_fsm::ErrorCode>| o.map_or("released".to_string(), |e| format!("failed {e}"));
            self.violate(
                Prop::TerminalIsFinal,
                format!("s2uc#{c} reported {uid} {} after it had reported it {}", says(code), says(first)),
            );
        }
    }

    /// Whether a consumer reaches the producer through both gateways right now: the listeners
    /// it was given are bound for the session on the consumer-side node that advertises them,
    /// and a node of each facility bridges the session.
    fn path_open(&self, uid: Uid, listeners: &[scistream_fsm::Addr]) -> bool {
        let bridging = |i: usize| {
            self.ds[i].as_ref().and_then(|d| d.sessions().get(&uid)).is_some_and(|s| s.state() == s2ds::State::Bridging)
        };
        let cons = self.ds_nodes(Role::Cons).any(|(_, i)| {
            let host = self.ds[i].as_ref().map(|d| d.config().advertise.lan.clone());
            bridging(i)
                && listeners.iter().all(|a| Some(&a.host) == host.as_ref() && self.os[i].get(&a.port) == Some(&uid))
        });
        cons && self.ds_nodes(Role::Prod).any(|(_, i)| bridging(i))
    }

    /// The consumers streaming through `uid`'s ports lose their channels.
    pub(super) fn close_streams(&mut self, uid: Uid) {
        let Some(ix) = self.by_uid.get(&uid).cloned() else { return };
        for i in ix {
            if matches!(self.cons[i].state(), cons_app::State::Streaming | cons_app::State::Connecting) {
                self.step_cons(i, cons_app::Input::Closed);
            }
        }
    }

    /// A forged copy of a client's or app's message: another identity's token, an invalid
    /// token, or a wrong app key. `None` when the receiver does not know the session (a forger
    /// guessing a uid first would merely own a session of its own).
    pub(super) fn forge(&mut self, msg: &Msg) -> Option<Msg> {
        let uid = msg.uid()?;
        let known = self.cs.iter().flatten().any(|c| c.session(&uid).is_some());
        if !known {
            return None;
        }
        let token = Token(if self.rng.random_bool(0.5) { "tok-mallory".into() } else { "tok-bogus".into() });
        let mut f = msg.clone();
        match &mut f {
            Msg::Req { token: t, .. }
            | Msg::ReqListeners { token: t, .. }
            | Msg::Update { token: t, .. }
            | Msg::Rel { token: t, .. } => *t = token,
            Msg::Hello { key, .. } => {
                let mut wrong = scistream_fsm::AppKey(self.rng.random());
                if wrong.ct_eq(key) {
                    wrong.0[0] ^= 1;
                }
                *key = wrong;
            }
            _ => return None,
        }
        Some(f)
    }

    pub(super) fn deliver_forged(&mut self, r: Role, from: Peer, msg: Msg) {
        let i = nodes::role_index(r);
        let Some(uid) = msg.uid() else { return };
        let Some(core) = self.cs[i].as_ref() else { return };
        let before = (core.session(&uid).cloned(), core.core().session(&uid).cloned(), core.state());
        let forger = match from {
            Peer::App(_) => Peer::App(u32::MAX),
            _ => Peer::Client(u32::MAX),
        };
        self.note(|| format!("{} <- FORGED {} {}", Peer::ControlServer(r), msg.name(), short(uid)));
        let caller = self.caller_of(r, &msg, true);
        let rel = matches!(msg, Msg::Rel { .. }).then(|| super::principal_of(&msg));
        let state = self.cs_state(r, uid);
        self.forging = true;
        self.step_cs(r, Peer::ControlServer(r), s2cs::Input::Msg { from: forger, caller, msg });
        self.forging = false;
        let effects = std::mem::take(&mut self.forged_effects);
        if let Some(caller) = rel {
            self.check_releaser(r, uid, state, caller.as_ref());
        }
        let Some(core) = self.cs[i].as_ref() else { return };
        let unchanged = (core.session(&uid).cloned(), core.core().session(&uid).cloned(), core.state()) == before;
        if unchanged && effects.is_empty() {
            self.reached.insert(Reach::ForgeryRefused);
        } else if !unchanged {
            self.violate(
                Prop::ForgeryChangesNothing,
                format!("a forged message changed session {uid} at {}", Peer::ControlServer(r)),
            );
        } else {
            self.violate(
                Prop::ForgeryChangesNothing,
                format!("a forged message about {uid} made {} {}", Peer::ControlServer(r), effects.join(", ")),
            );
        }
    }

    /// What a step handling a forged message does beyond answering the forger: anything is
    /// a change (a message to a data server or a client, a port, a record, a notice).
    fn note_forged_effects(&mut self, node: Peer, out: &[Effect]) {
        for e in out {
            let what = match e {
                Effect::Send { to: Peer::Client(u32::MAX) | Peer::App(u32::MAX), .. } => continue,
                Effect::Send { to, msg } => format!("send {} to {to}", msg.name()),
                Effect::SetTimer { .. } | Effect::CancelTimer { .. } => continue,
                other => format!("{other:?}").chars().take(60).collect(),
            };
            self.forged_effects.push(format!("{node}: {what}"));
        }
    }

    /// The caller the simulated introspection names for `msg`'s token (a broken variant may
    /// take it for the session's owner).
    pub(super) fn caller_of(&self, r: Role, msg: &Msg, forged: bool) -> Option<scistream_fsm::Principal> {
        let owner = msg.uid().and_then(|uid| {
            self.cs[nodes::role_index(r)].as_ref().and_then(|c| c.core().session(&uid)).map(|e| &e.owner)
        });
        self.opts.defect.caller(super::principal_of(msg), owner, forged)
    }

    /// The state of `uid` at the control server serving `r`.
    pub(super) fn cs_state(&self, r: Role, uid: Uid) -> Option<scistream_fsm::session::State> {
        self.cs[nodes::role_index(r)].as_ref().and_then(|c| c.session(&uid)).map(|s| s.state())
    }

    /// A REL by `caller` that moved `uid` into release at the control server serving `r` came
    /// from the session's owner, or from an operator where operators are configured.
    pub(super) fn check_releaser(
        &mut self,
        r: Role,
        uid: Uid,
        before: Option<scistream_fsm::session::State>,
        caller: Option<&scistream_fsm::Principal>,
    ) {
        use scistream_fsm::session::State as S;
        let releasing = |s: Option<S>| matches!(s, Some(S::Releasing | S::Released));
        if releasing(before) || !releasing(self.cs_state(r, uid)) {
            return;
        }
        let Some(s) = self.cs[nodes::role_index(r)].as_ref().and_then(|c| c.session(&uid)) else { return };
        let owner = s.owner().clone();
        let operator = self.config.operators && caller.is_some_and(|c| c.0 == "operator");
        if caller != Some(&owner) && !operator {
            self.violate(
                Prop::OwnerReleases,
                format!("{} released {uid} (owner {}) on a call by {caller:?}", Peer::ControlServer(r), owner.0),
            );
        }
    }
}
