//! The native backend: this crate's relay engine, in the data server's own process.

use crate::backend::{Backend, BoxFuture, Forwarding, Kind, Session, StartError};
use crate::relay::{Legs, Relay};

/// The in-process relay ([`crate::relay`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Native;

impl Backend for Native {
    fn kind(&self) -> Kind {
        Kind::Native
    }

    fn start(&self, s: Session) -> BoxFuture<'_, Result<Box<dyn Forwarding>, StartError>> {
        Box::pin(async move {
            super::precheck(&s.targets, &s.creds, s.allow_plain_wan)?;
            let legs = Legs::for_session(s.role, &s.creds, s.allow_plain_wan)?;
            tracing::info!(uid = %s.uid, targets = ?s.targets, ?legs, "forwarding");
            let relay = Relay::start(&s.uid.to_string(), s.listeners, s.targets, legs, s.counters, s.rate);
            Ok(Box::new(NativeForwarding(relay)) as Box<dyn Forwarding>)
        })
    }
}

/// A running native relay.
#[derive(Debug)]
struct NativeForwarding(Relay);

impl Forwarding for NativeForwarding {
    fn ended(&mut self) -> Option<BoxFuture<'static, String>> {
        // The relay runs inside this process: it ends only when stopped.
        None
    }

    fn stop(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(self.0.shutdown())
    }

    fn describe(&self) -> String {
        "native".into()
    }
}
