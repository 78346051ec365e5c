//! The one shape every protocol core has, so one driver can host any of them.

use crate::effect::Outbox;
use crate::error::ProtocolError;
use crate::time::Instant;

/// A sans-IO protocol core: it takes an input with the current time, pushes the effects it
/// wants carried out into `out`, and refuses an input its machine does not take with a
/// [`ProtocolError`] that leaves it unchanged. Production's actors (one generic driver in
/// `scistream-actors`), the simulator and the tests all step cores through this.
pub trait Core {
    /// What the core takes.
    type Input;

    /// Steps the core.
    fn step(&mut self, now: Instant, input: Self::Input, out: &mut Outbox) -> Result<(), ProtocolError>;
}

macro_rules! core_via_handle {
    ($($core:ty => $input:ty),+ $(,)?) => {
        $(impl Core for $core {
            type Input = $input;
            fn step(&mut self, now: Instant, input: Self::Input, out: &mut Outbox) -> Result<(), ProtocolError> {
                self.handle(now, input, out)
            }
        })+
    };
}

core_via_handle! {
    crate::s2cs::S2cs => crate::s2cs::Input,
    crate::s2cs::ControlServer => crate::s2cs::Input,
    crate::session::Session => crate::session::Input,
    crate::s2ds::S2ds => crate::s2ds::Input,
    crate::s2uc::S2uc => crate::s2uc::Input,
    crate::prod_app::ProdApp => crate::prod_app::Input,
}

impl Core for crate::cons_app::ConsApp {
    type Input = crate::cons_app::Input;
    /// The consumer application has no timers: it ignores `now`.
    fn step(&mut self, _now: Instant, input: Self::Input, out: &mut Outbox) -> Result<(), ProtocolError> {
        self.handle(input, out)
    }
}
