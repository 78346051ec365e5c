//! Messages from the control server's own data server: attachment, incarnations, and the
//! answers it routes to each session.

use crate::alphabet;
use crate::effect::{Effect, Outbox, TimerKey, TimerKind};
use crate::error::ProtocolError;
use crate::msg::Msg;
use crate::session;
use crate::time::Instant;
use crate::types::Peer;

use super::{Action, Event, S2cs};

impl S2cs {
    /// An AttachAck or DsBoot it accepts counts as the data server's sign of life
    /// ([`S2cs::heartbeat`]); refused messages change nothing.
    pub(super) fn on_data(&mut self, now: Instant, msg: Msg, out: &mut Outbox) -> Result<(), ProtocolError> {
        match msg {
            Msg::DsBoot { inc } => return self.on_ds_boot(now, inc, out),
            Msg::AttachAck { epoch, attachment, inc, held } => {
                if epoch != self.epoch || attachment != self.attachment || self.ds_inc.is_some_and(|cur| inc < cur) {
                    return Err(ProtocolError::Stale("AttachAck"));
                }
                self.last_heard = now;
                if self.ds_inc.is_some_and(|cur| inc > cur) {
                    // Restarted, and attached by a late duplicate of our Attach: its DsBoot
                    // retransmissions stopped, so this is our one sign of the restart.
                    self.on_ds_boot(now, inc, out)?;
                }
                if alphabet::fire(&mut self.machine, Event::AttachAck)? == Some(Action::Serve) {
                    self.ds_inc = Some(inc);
                    self.attach_attempts = 0;
                    out.push(Effect::CancelTimer { key: TimerKey { uid: None, kind: TimerKind::Retransmit } });
                    self.misses = 0;
                    self.arm_heartbeat(now, out);
                    // Recovered sessions whose bridges the data server no longer runs are lost.
                    let held: std::collections::BTreeSet<_> = held.into_iter().collect();
                    for uid in std::mem::take(&mut self.unconfirmed) {
                        if !held.contains(&uid) && self.sessions.contains_key(&uid) {
                            out.push(Effect::ToSession { uid, input: session::Input::DsLost });
                        }
                    }
                }
                return Ok(());
            }
            _ => {}
        }
        let (uid, inc) = match &msg {
            Msg::Lstn { uid, inc, .. }
            | Msg::Refused { uid, inc, .. }
            | Msg::Connected { uid, inc }
            | Msg::DsReleased { uid, inc } => (*uid, *inc),
            other => return Err(ProtocolError::Misdirected(other.name())),
        };
        if self.ds_inc.is_some_and(|cur| inc > cur) {
            // Restarted and attached by a late Attach, its AttachAck lost: the old incarnation's
            // sessions are gone. This answer concerns the new one's leftovers (its lease frees them).
            return self.on_ds_boot(now, inc, out);
        }
        if self.ds_inc != Some(inc) {
            return Err(ProtocolError::Stale(msg.name()));
        }
        if !self.sessions.contains_key(&uid) {
            if matches!(msg, Msg::Lstn { .. }) {
                // Ports reserved for a session nobody remembers: give them back now rather
                // than at the end of the data server's lease.
                let epoch = self.epoch;
                out.push(Effect::Send { to: Peer::DataServer(self.cfg.facility), msg: Msg::DsRel { uid, epoch } });
            }
            return Err(ProtocolError::UnknownSession(uid));
        }
        out.push(Effect::ToSession { uid, input: session::Input::Data(msg) });
        Ok(())
    }

    fn on_ds_boot(&mut self, now: Instant, inc: u64, out: &mut Outbox) -> Result<(), ProtocolError> {
        if self.ds_inc.is_some_and(|cur| inc <= cur) {
            return Err(ProtocolError::Stale("DsBoot"));
        }
        alphabet::fire(&mut self.machine, Event::DsBoot)?;
        self.ds_inc = Some(inc);
        self.last_heard = now;
        // The old incarnation's ports and bridges died with it, the recovered ones too.
        self.lose_data_server(now, out);
        Ok(())
    }
}
