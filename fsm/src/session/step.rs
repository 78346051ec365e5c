//! How a session's core steps: each input becomes at most one event of its machine, the
//! declared action is carried out (requests to the data server, timers), then the waiting
//! calls are settled and a changed summary is reported to the control server's core.

use crate::alphabet;
use crate::effect::{Effect, Outbox, TimerKind};
use crate::error::ProtocolError;
use crate::msg::Msg;
use crate::time::Instant;
use crate::timing;
use crate::types::{Addr, ErrorCode, Peer, Role, Why};

use super::{Action, Event, Input, Kind, Report, Session, State, Waiter, timer_key};

impl Session {
    /// Steps the session. A call the session refuses is answered with an ERROR at once and
    /// returns [`ProtocolError::Refused`]; an input its machine does not take in its state
    /// returns [`ProtocolError::NotAllowed`] or [`ProtocolError::Stale`] and changes nothing.
    pub fn handle(&mut self, now: Instant, input: Input, out: &mut Outbox) -> Result<(), ProtocolError> {
        let result = match input {
            Input::Call { from, msg } => self.on_call(now, from, msg, out),
            Input::Data(msg) => self.on_data(now, msg, out),
            Input::DsLost => self.step(now, Event::DsLost, Some((ErrorCode::Aborted, Why::DataServerLost)), out),
            Input::Timer(kind) => self.on_timer(now, kind, out),
        };
        self.settle(out);
        self.report(out);
        result
    }

    fn on_call(&mut self, now: Instant, from: Peer, msg: Msg, out: &mut Outbox) -> Result<(), ProtocolError> {
        let uid = self.setup.uid;
        let refuse = |me: &Self, out: &mut Outbox, seq: u32, code: ErrorCode| {
            // Refused for the session's failure: with what is known of it.
            let why = if me.failure == Some(code) { me.why } else { Why::Unspecified };
            me.refuse(from, seq, code, why, out);
            Err(ProtocolError::Refused { uid, code })
        };
        match msg {
            // The control server's core checked it is identical to the one that made the session.
            Msg::Req { seq, .. } => {
                if !alphabet::allows(&self.machine, Event::Req) {
                    // Being released or aborted: the session will not answer with listeners.
                    return refuse(self, out, seq, self.failure.unwrap_or(ErrorCode::Aborted));
                }
                self.wait(Waiter { from, seq, kind: Kind::Req }, out);
                self.step(now, Event::Req, None, out)
            }
            Msg::Update { seq, remote, creds, .. } => {
                if remote.is_empty() {
                    return refuse(self, out, seq, ErrorCode::InvalidArgument);
                }
                // No credentials (a SciStream 1.2 client): the WAN leg could only be plain text.
                if creds.is_none() && !self.setup.allow_plain_wan {
                    return refuse(self, out, seq, ErrorCode::FailedPrecondition);
                }
                if self.bridge.as_ref().is_some_and(|b| b.0 != remote || b.1 != creds) {
                    return refuse(self, out, seq, ErrorCode::AlreadyExists);
                }
                if !alphabet::allows(&self.machine, Event::Update) {
                    return refuse(self, out, seq, ErrorCode::FailedPrecondition);
                }
                if self.bridge.is_none() && self.state() == State::Listening {
                    self.bridge = Some((remote, creds));
                }
                self.wait(Waiter { from, seq, kind: Kind::Update }, out);
                self.step(now, Event::Update, None, out)
            }
            Msg::Rel { seq, .. } => {
                self.wait(Waiter { from, seq, kind: Kind::Rel }, out);
                self.step(now, Event::Rel, None, out)
            }
            // The control server's core checked the app key.
            Msg::Hello { seq, prod_listeners, .. } => {
                // A consumer's controller says Hello too (SciStream 1.2 does): it learns the
                // listeners to connect to; whatever listeners it names are not the session's.
                let producer = self.setup.params.role == Role::Prod;
                if producer && prod_listeners.is_empty() {
                    return refuse(self, out, seq, ErrorCode::InvalidArgument);
                }
                if producer && !self.prod_listeners.is_empty() && self.prod_listeners != prod_listeners {
                    return refuse(self, out, seq, ErrorCode::AlreadyExists);
                }
                // Finished, or being released or aborted: the controller should stop saying Hello.
                if !alphabet::allows(&self.machine, Event::Hello) {
                    return refuse(self, out, seq, self.failure.unwrap_or(ErrorCode::Aborted));
                }
                if producer {
                    self.prod_listeners = prod_listeners;
                }
                self.wait(Waiter { from, seq, kind: Kind::Hello }, out);
                self.step(now, Event::Hello, None, out)
            }
            other => Err(ProtocolError::Misdirected(other.name())),
        }
    }

    fn on_data(&mut self, now: Instant, msg: Msg, out: &mut Outbox) -> Result<(), ProtocolError> {
        match msg {
            Msg::Lstn { host, ports, .. } => {
                if !alphabet::allows(&self.machine, Event::Lstn) {
                    if self.state().is_terminal() {
                        // Ports reserved for a session that is over (a StartLstn that overtook
                        // its failure, say): the node gives them back now, not at its lease.
                        let (uid, epoch) = (self.setup.uid, self.setup.epoch);
                        let to = Peer::DataServer(self.setup.facility, self.setup.node);
                        out.push(Effect::Send { to, msg: Msg::DsRel { uid, epoch } });
                    }
                    return Err(ProtocolError::Stale("Lstn"));
                }
                if self.listeners.is_empty() {
                    self.listeners = ports.iter().map(|p| Addr::new(host.clone(), *p)).collect();
                }
                let first = self.state() == State::Reserving;
                self.step(now, Event::Lstn, None, out)?;
                if first {
                    out.push(Effect::CancelTimer { key: timer_key(self.setup.uid, TimerKind::Retransmit) });
                }
                Ok(())
            }
            Msg::Refused { code, .. } => {
                // What the data server's refusal means to the client: no room, a relay that
                // cannot run as asked, or (anything else) the session was lost.
                let failure = match code {
                    ErrorCode::ResourceExhausted => (code, Why::PortsBusy),
                    ErrorCode::FailedPrecondition => (code, Why::Unspecified),
                    _ => (ErrorCode::Aborted, Why::Unspecified),
                };
                self.step(now, Event::Refused, Some(failure), out)
            }
            Msg::Connected { .. } => self.step(now, Event::Connected, None, out),
            Msg::DsReleased { .. } => self.step(now, Event::DsReleased, None, out),
            other => Err(ProtocolError::Misdirected(other.name())),
        }
    }

    fn on_timer(&mut self, now: Instant, kind: TimerKind, out: &mut Outbox) -> Result<(), ProtocolError> {
        match kind {
            TimerKind::Retransmit => {
                self.retransmit_ds(now, out);
                Ok(())
            }
            TimerKind::Lease => {
                self.step(now, Event::LeaseExpired, Some((ErrorCode::DeadlineExceeded, Why::Lease)), out)
            }
            TimerKind::Tombstone if self.state().is_terminal() => {
                out.push(Effect::Report { uid: self.setup.uid, report: Report::Forget });
                Ok(())
            }
            TimerKind::Tombstone
            | TimerKind::Deadline
            | TimerKind::Hello
            | TimerKind::Attach(_)
            | TimerKind::Heartbeat(_) => Err(ProtocolError::Misdirected("timer")),
        }
    }

    /// Feeds `event` to the machine and carries out the declared action. `failure` is recorded
    /// as the session's failure code (and what more is known) when the transition fails it. Answers to waiting calls
    /// are the business of [`Session::settle`], which runs after every input.
    fn step(
        &mut self,
        now: Instant,
        event: Event,
        failure: Option<(ErrorCode, Why)>,
        out: &mut Outbox,
    ) -> Result<(), ProtocolError> {
        let uid = self.setup.uid;
        let prev = self.state();
        let action = alphabet::fire(&mut self.machine, event)?;
        let state = self.state();
        if matches!(state, State::Aborting | State::Failed) && self.failure.is_none() {
            let (code, why) = failure.unwrap_or((ErrorCode::Aborted, Why::Unspecified));
            (self.failure, self.why) = (Some(code), why);
        }
        match action {
            None | Some(Action::Resp | Action::ReplyReleased | Action::ReportError) => {}
            Some(Action::StartLstn) => {
                self.attempts = 0;
                let at = now + self.setup.timing.cs_lease();
                out.push(Effect::SetTimer { key: timer_key(uid, TimerKind::Lease), at });
                self.retransmit_ds(now, out);
            }
            Some(Action::StartConn | Action::Release | Action::Abort) => {
                self.attempts = 0;
                if action != Some(Action::StartConn) {
                    out.push(Effect::CancelTimer { key: timer_key(uid, TimerKind::Lease) });
                }
                self.retransmit_ds(now, out);
            }
            Some(Action::Updated) => {
                out.push(Effect::CancelTimer { key: timer_key(uid, TimerKind::Lease) });
                out.push(Effect::CancelTimer { key: timer_key(uid, TimerKind::Retransmit) });
            }
        }
        if state.is_terminal() && !prev.is_terminal() {
            out.push(Effect::CancelTimer { key: timer_key(uid, TimerKind::Lease) });
            out.push(Effect::CancelTimer { key: timer_key(uid, TimerKind::Retransmit) });
            let at = now + self.setup.timing.tombstone;
            out.push(Effect::SetTimer { key: timer_key(uid, TimerKind::Tombstone), at });
        }
        Ok(())
    }

    /// (Re)sends the data-server request the session is waiting on, and arms the retransmit
    /// timer with backoff.
    fn retransmit_ds(&mut self, now: Instant, out: &mut Outbox) {
        let (uid, epoch) = (self.setup.uid, self.setup.epoch);
        let msg = match self.state() {
            State::Reserving => {
                Msg::StartLstn { uid, epoch, num_conn: self.setup.params.num_conn, role: self.setup.params.role }
            }
            State::Updating => {
                let Some((targets, creds)) = self.bridge.clone() else { return };
                let (role, rate) = (self.setup.params.role, self.setup.params.rate);
                Msg::StartConn { uid, epoch, targets, creds, role, rate }
            }
            State::Releasing | State::Aborting => Msg::DsRel { uid, epoch },
            _ => return,
        };
        self.attempts += 1;
        out.push(Effect::Send { to: Peer::DataServer(self.setup.facility, self.setup.node), msg });
        let t = &self.setup.timing;
        let delay = t.server_backoff.delay(self.attempts, timing::salt(t.jitter_seed, Some(uid)));
        out.push(Effect::SetTimer { key: timer_key(uid, TimerKind::Retransmit), at: now + delay });
    }

    /// Reports to the control server's core what changed in the session's summary.
    fn report(&mut self, out: &mut Outbox) {
        let uid = self.setup.uid;
        let mut tell = |report| out.push(Effect::Report { uid, report });
        let state = *self.machine.state();
        let r = &mut self.reported;
        if r.state != Some(state) || r.failure != self.failure || r.why != self.why {
            (r.state, r.failure, r.why) = (Some(state), self.failure, self.why);
            tell(Report::State { state, failure: self.failure, why: self.why });
        }
        if r.listeners != self.listeners {
            r.listeners.clone_from(&self.listeners);
            tell(Report::Listeners(self.listeners.clone()));
        }
        if r.prod_listeners != self.prod_listeners {
            r.prod_listeners.clone_from(&self.prod_listeners);
            tell(Report::ProdListeners(self.prod_listeners.clone()));
        }
        if self.reported_bridge != self.bridge
            && let Some((targets, creds)) = &self.bridge
        {
            r.targets.clone_from(targets);
            self.reported_bridge.clone_from(&self.bridge);
            tell(Report::Bridge { targets: targets.clone(), creds: *creds });
        }
    }
}
