//! The client's inputs and how each steps a session.

use crate::alphabet;
use crate::effect::{Effect, Notice, Outbox, TimerKey, TimerKind};
use crate::error::ProtocolError;
use crate::msg::Msg;
use crate::time::Instant;
use crate::types::{AppKey, Credentials, ErrorCode, Peer, Role, SessionParams, Uid};

use super::{Action, Admission, Event, HELLO_SEQ, PROBE_SEQ, Plan, S2uc, Session, State, side_index};

/// An input to the user client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The user asks for a session; the driver drew `uid`, `key` and `creds` at random.
    Start {
        /// Fresh session uid.
        uid: Uid,
        /// Connections to reserve on each side.
        num_conn: u16,
        /// Rate (1.2 unit).
        rate: u32,
        /// Fresh app key.
        key: AppKey,
        /// Fresh data credentials (or, for a consumer's side set up alone, those the
        /// producer's side printed).
        creds: Credentials,
        /// Which facilities to drive, and how.
        plan: Plan,
    },
    /// The user asks to release a session.
    Release(Uid),
    /// The client restarted: release what the journal lists.
    Recover,
    /// An answer arrived.
    Msg {
        /// Sender.
        from: Peer,
        /// The message.
        msg: Msg,
    },
    /// A timer fired.
    Timer(TimerKey),
}

impl S2uc {
    /// Steps the core.
    pub fn handle(&mut self, now: Instant, input: Input, out: &mut Outbox) -> Result<(), ProtocolError> {
        match input {
            Input::Start { uid, num_conn, rate, key, creds, plan } => {
                if self.sessions.contains_key(&uid) {
                    return Err(ProtocolError::Refused { uid, code: ErrorCode::AlreadyExists });
                }
                if !plan.sides.iter().any(|s| s.driven) {
                    return Err(ProtocolError::Refused { uid, code: ErrorCode::InvalidArgument });
                }
                self.sessions.insert(uid, Session::new(num_conn, rate, key, creds, plan));
                out.push(Effect::SetTimer { key: deadline_key(uid), at: now + self.cfg.timing.setup_deadline() });
                self.step(now, uid, Event::Start, out)
            }
            Input::Release(uid) => {
                self.sessions.get(&uid).ok_or(ProtocolError::UnknownSession(uid))?;
                self.step(now, uid, Event::Release, out)
            }
            Input::Recover => {
                let uids: Vec<Uid> =
                    self.sessions.iter().filter(|(_, s)| s.state() == State::Idle).map(|(u, _)| *u).collect();
                for uid in uids {
                    self.sessions.get_mut(&uid).expect("listed").failure = Some(ErrorCode::Aborted);
                    self.step(now, uid, Event::Recover, out)?;
                }
                Ok(())
            }
            Input::Timer(key) => {
                let uid = key.uid.ok_or(ProtocolError::Misdirected("timer"))?;
                let s = self.sessions.get_mut(&uid).ok_or(ProtocolError::UnknownSession(uid))?;
                match key.kind {
                    TimerKind::Retransmit => {
                        self.send_phase(now, uid, out);
                        Ok(())
                    }
                    TimerKind::Deadline => {
                        if alphabet::allows(&s.machine, Event::Deadline) {
                            s.failure = Some(ErrorCode::DeadlineExceeded);
                        }
                        self.step(now, uid, Event::Deadline, out)
                    }
                    TimerKind::Hello => {
                        self.send_asides(now, uid, out);
                        Ok(())
                    }
                    TimerKind::Lease | TimerKind::Tombstone | TimerKind::Attach(_) | TimerKind::Heartbeat(_) => {
                        Err(ProtocolError::Misdirected("timer"))
                    }
                }
            }
            Input::Msg { from, msg } => self.on_msg(now, from, msg, out),
        }
    }

    fn on_msg(&mut self, now: Instant, from: Peer, msg: Msg, out: &mut Outbox) -> Result<(), ProtocolError> {
        let Peer::ControlServer(role) = from else { return Err(ProtocolError::Misdirected(msg.name())) };
        let uid = msg.uid().ok_or(ProtocolError::Misdirected(msg.name()))?;
        let s = self.sessions.get_mut(&uid).ok_or(ProtocolError::UnknownSession(uid))?;
        let i = side_index(role);
        let state = s.state();
        if !s.sides[i].plan.driven {
            return Err(ProtocolError::Misdirected(msg.name()));
        }
        match msg {
            // The answers to the admission probe: they never move the session either.
            Msg::ProdLstn { seq, listeners, .. } if super::is_probe_seq(seq) => {
                if role != Role::Prod || s.admission != Admission::Probing || state != State::Reserving {
                    return Err(ProtocolError::Stale("ProdLstn"));
                }
                // Empty: the facility holds the session but its data server has not bound the
                // listeners yet; the probe timer asks again.
                if !listeners.is_empty() {
                    announce(s, uid, out);
                }
                Ok(())
            }
            Msg::Error { seq, code, .. } if super::is_probe_seq(seq) => {
                if s.admission != Admission::Probing || state != State::Reserving {
                    return Err(ProtocolError::Stale("ERROR"));
                }
                match code {
                    // Not there yet (the REQ may still be on its way), or busy: asked again.
                    ErrorCode::NotFound | ErrorCode::Unavailable => {}
                    // A SciStream 1.2 server cannot tell: the user is told at once, as 1.2 did.
                    ErrorCode::Unimplemented => announce(s, uid, out),
                    // The facility refused the session: the REQ's own answer tells why.
                    _ => {
                        s.admission = Admission::Refused;
                        if !s.asides_pending() {
                            out.push(Effect::CancelTimer { key: hello_key(uid) });
                        }
                    }
                }
                Ok(())
            }
            // The answers to a Hello this client says: they never move the session.
            Msg::HelloAck { .. } => {
                s.sides[i].hello_done = true;
                if !s.asides_pending() {
                    out.push(Effect::CancelTimer { key: hello_key(uid) });
                }
                Ok(())
            }
            Msg::Error { seq, code, .. } if super::is_hello_seq(seq) => {
                // Not there yet (the REQ may still be on its way), or busy: the Hello timer
                // says it again. Anything else: the REQ's own answer tells what went wrong.
                if !matches!(code, ErrorCode::NotFound | ErrorCode::Unavailable) {
                    s.sides[i].hello_done = true;
                }
                Ok(())
            }
            Msg::Resp { listeners, prod_listeners, .. } if state == State::Reserving => {
                if listeners.is_empty() || usize::from(s.num_conn) != listeners.len() {
                    return Err(ProtocolError::Stale("RESP"));
                }
                if role == Role::Prod && matches!(s.admission, Admission::Probing | Admission::Refused) {
                    // The REQ's own answer: the facility admitted it (the Hello is in already).
                    announce(s, uid, out);
                }
                s.sides[i].listeners = listeners;
                if role == Role::Prod && !prod_listeners.is_empty() && s.prod_listeners.is_empty() {
                    s.prod_listeners = prod_listeners;
                }
                if s.driven().all(|(_, side)| !side.listeners.is_empty()) {
                    out.push(Effect::CancelTimer { key: hello_key(uid) });
                    self.step(now, uid, Event::Reserved, out)?;
                    let s = &self.sessions[&uid];
                    if !s.prod_listeners.is_empty() || !s.side(Role::Prod).plan.driven {
                        self.step(now, uid, Event::ProdKnown, out)?;
                    }
                }
                Ok(())
            }
            Msg::ProdLstn { prod_listeners, .. }
                if role == Role::Prod && matches!(state, State::Reserving | State::Provisioning) =>
            {
                if prod_listeners.is_empty() {
                    return Err(ProtocolError::Stale("ProdLstn"));
                }
                s.prod_listeners = prod_listeners;
                if state == State::Provisioning {
                    self.step(now, uid, Event::ProdKnown, out)?;
                }
                Ok(())
            }
            Msg::Updated { .. } if state == State::Updating => {
                s.sides[i].updated = true;
                if s.driven().all(|(_, side)| side.updated) {
                    self.step(now, uid, Event::AllUpdated, out)?;
                }
                Ok(())
            }
            Msg::Released { .. } if matches!(state, State::Releasing | State::Aborting) => {
                self.side_released(now, uid, i, out)
            }
            Msg::Error { seq, code, .. } => {
                if seq < s.sides[i].seq || code.is_transient() || state.is_terminal() {
                    return Err(ProtocolError::Stale("ERROR"));
                }
                if state == State::Reserving && code == ErrorCode::NotFound && s.sides[i].listeners.is_empty() {
                    // A REQ is never NOT_FOUND where it can be served: a SciStream 1.2 server
                    // says so (UNKNOWN) to a retransmitted REQ for a uid it already holds,
                    // while it holds the first until the Hello. Keep waiting for that answer.
                    return Err(ProtocolError::Stale("ERROR"));
                }
                if matches!(state, State::Releasing | State::Aborting) {
                    // Whatever the code, that side holds nothing of ours any more.
                    return self.side_released(now, uid, i, out);
                }
                if !alphabet::allows(&s.machine, Event::Error) {
                    // A recovered session before Recover: nothing of this phase is ours.
                    return Err(ProtocolError::Stale("ERROR"));
                }
                // The side that failed released its part itself (or never had one) — but for
                // an UpdateTargets its facility's policy refused: that control server refused
                // it before its session saw it, and the session still holds its reservation,
                // for the REL that follows.
                s.sides[i].released = !(state == State::Updating && code == ErrorCode::PermissionDenied);
                s.failure = Some(code);
                self.step(now, uid, Event::Error, out)
            }
            other => Err(ProtocolError::Stale(other.name())),
        }
    }

    fn side_released(&mut self, now: Instant, uid: Uid, i: usize, out: &mut Outbox) -> Result<(), ProtocolError> {
        let s = self.sessions.get_mut(&uid).expect("caller checked");
        s.sides[i].released = true;
        if s.driven().all(|(_, side)| side.released) {
            self.step(now, uid, Event::AllReleased, out)?;
        }
        Ok(())
    }

    fn step(&mut self, now: Instant, uid: Uid, event: Event, out: &mut Outbox) -> Result<(), ProtocolError> {
        let s = self.sessions.get_mut(&uid).ok_or(ProtocolError::UnknownSession(uid))?;
        let action = alphabet::fire(&mut s.machine, event)?;
        let new_phase =
            matches!(action, Some(Action::SendReq | Action::PollListeners | Action::SendUpdate | Action::SendRel));
        if new_phase {
            s.seq += 1;
            s.attempts = 0;
            self.send_phase(now, uid, out);
            if action == Some(Action::SendReq) {
                self.send_asides(now, uid, out);
            }
            let s = &self.sessions[&uid];
            if action == Some(Action::SendRel) && s.driven().all(|(_, side)| side.released) {
                return self.step(now, uid, Event::AllReleased, out);
            }
            return Ok(());
        }
        let s = &self.sessions[&uid];
        match action {
            Some(Action::ReportEstablished) => {
                out.push(Effect::CancelTimer { key: deadline_key(uid) });
                out.push(Effect::CancelTimer { key: retransmit_key(uid) });
                out.push(Effect::Notify(Notice::Established {
                    uid,
                    prod_listeners: s.side(Role::Prod).listeners.clone(),
                    cons_listeners: s.side(Role::Cons).listeners.clone(),
                    prod_app_listeners: s.prod_listeners.clone(),
                }));
            }
            Some(Action::ReportReleased) => {
                out.push(Effect::CancelTimer { key: retransmit_key(uid) });
                out.push(Effect::Notify(Notice::Released { uid }));
            }
            Some(Action::ReportFailed) => {
                out.push(Effect::CancelTimer { key: retransmit_key(uid) });
                let code = s.failure.unwrap_or(ErrorCode::Aborted);
                out.push(Effect::Notify(Notice::Failed { uid, code }));
            }
            _ => {}
        }
        Ok(())
    }

    /// Sends (or resends) the requests of the session's current phase to every side that has
    /// not answered it, and arms the retransmit timer.
    fn send_phase(&mut self, now: Instant, uid: Uid, out: &mut Outbox) {
        let token = self.cfg.token.clone();
        let Some(s) = self.sessions.get_mut(&uid) else { return };
        let (seq, state) = (s.seq, s.state());
        if matches!(state, State::Releasing | State::Aborting) {
            out.push(Effect::CancelTimer { key: deadline_key(uid) });
            out.push(Effect::CancelTimer { key: hello_key(uid) });
        }
        let mut sent = false;
        for role in Role::ALL {
            let side = &s.sides[side_index(role)];
            if !side.plan.driven {
                continue;
            }
            let msg = match state {
                State::Reserving if side.listeners.is_empty() => {
                    let params = SessionParams { role, num_conn: s.num_conn, rate: s.rate };
                    Msg::Req { uid, seq, token: token.clone(), params, key: s.key }
                }
                // Asked only while the producer's listeners are unknown.
                State::Provisioning if role == Role::Prod && s.prod_listeners.is_empty() => {
                    Msg::ReqListeners { uid, seq, token: token.clone() }
                }
                State::Updating if !side.updated => {
                    let remote = match (&side.plan.remote, role) {
                        (Some(remote), _) => remote.clone(),
                        (None, Role::Prod) => s.prod_listeners.clone(),
                        (None, Role::Cons) => s.side(Role::Prod).listeners.clone(),
                    };
                    Msg::Update { uid, seq, token: token.clone(), remote, creds: s.creds }
                }
                State::Releasing | State::Aborting if !side.released => Msg::Rel { uid, seq, token: token.clone() },
                _ => continue,
            };
            s.sides[side_index(role)].seq = seq;
            out.push(Effect::Send { to: Peer::ControlServer(role), msg });
            sent = true;
        }
        s.attempts += 1;
        if sent {
            let t = &self.cfg.timing;
            let delay = t.client_backoff.delay(s.attempts, crate::timing::salt(t.jitter_seed, Some(uid)));
            out.push(Effect::SetTimer { key: retransmit_key(uid), at: now + delay });
        }
    }
}

impl S2uc {
    /// Says (again), beside the REQ while the session is reserving, the Hellos the session's
    /// plan asks of this client that are not answered yet and the admission probe while the
    /// producer's facility has not admitted it, and arms their own timer.
    fn send_asides(&mut self, now: Instant, uid: Uid, out: &mut Outbox) {
        let token = self.cfg.token.clone();
        let Some(s) = self.sessions.get_mut(&uid) else { return };
        if s.state() != State::Reserving {
            return;
        }
        let mut sent = false;
        if s.admission == Admission::Probing {
            s.probes += 1;
            let msg = Msg::ReqListeners { uid, seq: PROBE_SEQ | s.probes, token };
            out.push(Effect::Send { to: Peer::ControlServer(Role::Prod), msg });
            sent = true;
        }
        for role in Role::ALL {
            let side = &s.sides[side_index(role)];
            let Some(prod_listeners) = side.plan.hello.clone().filter(|_| side.plan.driven && !side.hello_done) else {
                continue;
            };
            s.hellos += 1;
            let msg = Msg::Hello { uid, seq: HELLO_SEQ | s.hellos, key: s.key, prod_listeners };
            out.push(Effect::Send { to: Peer::ControlServer(role), msg });
            sent = true;
        }
        if sent {
            let t = &self.cfg.timing;
            let salt = crate::timing::salt(t.jitter_seed, Some(uid));
            let mut delay = t.app_backoff.delay(s.hellos.max(s.probes), salt);
            if s.admission == Admission::Probing {
                // While the producer's facility has not admitted the session, the user waits
                // on the probe: asked again at its own, quicker pace.
                delay = delay.min(t.probe_backoff().delay(s.probes, salt));
            }
            out.push(Effect::SetTimer { key: hello_key(uid), at: now + delay });
        }
    }
}

/// Tells the user the producer's facility admitted the session: start its controller.
fn announce(s: &mut Session, uid: Uid, out: &mut Outbox) {
    s.admission = Admission::Announced;
    out.push(Effect::Notify(Notice::Created { uid, key: s.key }));
    if !s.asides_pending() {
        out.push(Effect::CancelTimer { key: hello_key(uid) });
    }
}

impl Session {
    /// Whether a Hello or the admission probe still waits for its answer.
    fn asides_pending(&self) -> bool {
        self.admission == Admission::Probing
            || self.sides.iter().any(|side| side.plan.driven && side.plan.hello.is_some() && !side.hello_done)
    }
}

fn hello_key(uid: Uid) -> TimerKey {
    TimerKey { uid: Some(uid), kind: TimerKind::Hello }
}

fn retransmit_key(uid: Uid) -> TimerKey {
    TimerKey { uid: Some(uid), kind: TimerKind::Retransmit }
}

fn deadline_key(uid: Uid) -> TimerKey {
    TimerKey { uid: Some(uid), kind: TimerKind::Deadline }
}
