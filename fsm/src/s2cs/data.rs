//! Messages from the control server's data-server nodes: attachment, incarnations, and the
//! answers it routes to each session. Each node has a link of its own ([`super::NodeLink`]).

use crate::alphabet;
use crate::effect::{Effect, Outbox, TimerKey, TimerKind};
use crate::error::ProtocolError;
use crate::msg::Msg;
use crate::session;
use crate::time::Instant;
use crate::types::{Node, Peer};

use super::{Action, Event, S2cs};

impl S2cs {
    /// An AttachAck or DsBoot it accepts counts as the node's sign of life
    /// ([`S2cs::heartbeat`]); refused messages change nothing.
    pub(super) fn on_data(
        &mut self,
        now: Instant,
        node: Node,
        msg: Msg,
        out: &mut Outbox,
    ) -> Result<(), ProtocolError> {
        match msg {
            Msg::DsBoot { inc } => return self.on_ds_boot(now, node, inc, out),
            Msg::AttachAck { epoch, attachment, inc, held, pool } => {
                let mine = self.epoch;
                let link = self.link_mut(node);
                if epoch != mine || attachment != link.attachment || link.inc.is_some_and(|cur| inc < cur) {
                    return Err(ProtocolError::Stale("AttachAck"));
                }
                link.last_heard = now;
                if link.inc.is_some_and(|cur| inc > cur) {
                    // Restarted, and attached by a late duplicate of our Attach: its DsBoot
                    // retransmissions stopped, so this is our one sign of the restart.
                    self.on_ds_boot(now, node, inc, out)?;
                }
                let link = self.link_mut(node);
                link.pool = pool;
                if alphabet::fire(&mut link.machine, Event::AttachAck)? == Some(Action::Serve) {
                    link.inc = Some(inc);
                    link.attach_attempts = 0;
                    link.misses = 0;
                    let unconfirmed = std::mem::take(&mut link.unconfirmed);
                    out.push(Effect::CancelTimer { key: TimerKey { uid: None, kind: TimerKind::Attach(node) } });
                    self.arm_heartbeat(now, node, out);
                    // Recovered sessions whose bridges the node no longer runs are lost.
                    let held: std::collections::BTreeSet<_> = held.into_iter().collect();
                    for uid in unconfirmed {
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
        let cur = self.link_mut(node).inc;
        if cur.is_some_and(|cur| inc > cur) {
            // Restarted and attached by a late Attach, its AttachAck lost: the old incarnation's
            // sessions are gone. This answer concerns the new one's leftovers (its lease frees them).
            return self.on_ds_boot(now, node, inc, out);
        }
        if cur != Some(inc) {
            return Err(ProtocolError::Stale(msg.name()));
        }
        if self.sessions.get(&uid).is_none_or(|e| e.node != node) {
            if matches!(msg, Msg::Lstn { .. }) {
                // Ports reserved for a session nobody here remembers on that node: give them
                // back now rather than at the end of the node's lease.
                let (epoch, to) = (self.epoch, Peer::DataServer(self.cfg.facility, node));
                out.push(Effect::Send { to, msg: Msg::DsRel { uid, epoch } });
            }
            return Err(ProtocolError::UnknownSession(uid));
        }
        out.push(Effect::ToSession { uid, input: session::Input::Data(msg) });
        Ok(())
    }

    fn on_ds_boot(&mut self, now: Instant, node: Node, inc: u64, out: &mut Outbox) -> Result<(), ProtocolError> {
        let link = self.link_mut(node);
        if link.inc.is_some_and(|cur| inc <= cur) {
            return Err(ProtocolError::Stale("DsBoot"));
        }
        alphabet::fire(&mut link.machine, Event::DsBoot)?;
        link.inc = Some(inc);
        link.last_heard = now;
        // The old incarnation's ports and bridges died with it, the recovered ones too.
        self.lose_data_server(now, node, out);
        Ok(())
    }
}
