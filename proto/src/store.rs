//! A control server's durable store, as bytes: one [`Record`] per established session
//! (`StoredSession`), validated on the way back in like anything off a wire.

use prost::Message as _;
use scistream_fsm::s2cs::Record;
use scistream_fsm::{Node, Principal, SessionParams};

use crate::convert::Limits;
use crate::convert::field::{
    addrs_from_wire, addrs_to_wire, creds_from_wire, key_from_wire, num_conn_from_wire, role_from_wire, uid_from_wire,
    uid_to_wire,
};
use crate::{WireError, pb};

/// Encodes a record; `node` names the node it is placed on (its index means nothing to another
/// run, whose list of nodes may differ).
pub fn encode(r: &Record, node: &str) -> Vec<u8> {
    pb::StoredSession {
        uid: uid_to_wire(r.uid),
        owner: r.owner.0.clone(),
        role: r.params.role.as_wire().to_owned(),
        num_conn: u32::from(r.params.num_conn),
        rate: r.params.rate,
        app_key: r.key.0.to_vec(),
        listeners: addrs_to_wire(&r.listeners),
        prod_listeners: addrs_to_wire(&r.prod_listeners),
        targets: addrs_to_wire(&r.targets),
        credentials: r.creds.0.to_vec(),
        node: node.to_owned(),
    }
    .encode_to_vec()
}

/// Decodes and validates a record; `num_conn` within `limits`. Returns it with the name of its
/// node; its `node` index is left at 0 for the caller to set from that name.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<(Record, String), WireError> {
    let m = pb::StoredSession::decode(bytes)?;
    let record = Record {
        uid: uid_from_wire(&m.uid)?,
        owner: Principal(m.owner),
        params: SessionParams {
            role: role_from_wire(&m.role)?,
            num_conn: num_conn_from_wire(i64::from(m.num_conn), limits)?,
            rate: m.rate,
        },
        key: key_from_wire(&m.app_key)?,
        listeners: addrs_from_wire(&m.listeners)?,
        prod_listeners: addrs_from_wire(&m.prod_listeners)?,
        targets: addrs_from_wire(&m.targets)?,
        creds: creds_from_wire(&m.credentials)?,
        node: Node(0),
    };
    Ok((record, m.node))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use scistream_fsm::{AppKey, Credentials};

    use super::*;
    use crate::arb;

    fn record() -> impl Strategy<Value = Record> {
        (arb::uid(), "[a-z@.]{0,40}", arb::role(), 1u16..=256, any::<u32>(), any::<[u8; 16]>(), any::<[u8; 32]>())
            .prop_flat_map(|(uid, owner, role, num_conn, rate, key, creds)| {
                (arb::addrs(), arb::addrs(), arb::addrs()).prop_map(move |(listeners, prod_listeners, targets)| {
                    Record {
                        uid,
                        owner: Principal(owner.clone()),
                        params: SessionParams { role, num_conn, rate },
                        key: AppKey(key),
                        listeners,
                        prod_listeners,
                        targets,
                        creds: Credentials(creds),
                        node: Node(0),
                    }
                })
            })
    }

    proptest! {
        #[test]
        fn prop_every_record_comes_back_as_stored(r in record(), node in "[a-z0-9.:]{0,30}") {
            prop_assert_eq!(decode(&encode(&r, &node), &Limits::DEFAULT), Ok((r, node)));
        }

        #[test]
        fn prop_damaged_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes, &Limits::DEFAULT);
        }
    }

    #[test]
    fn a_record_with_a_short_key_is_refused() {
        let mut m = pb::StoredSession::decode(encode(&sample(), "embedded").as_slice()).unwrap();
        m.app_key.pop();
        assert!(decode(&m.encode_to_vec(), &Limits::DEFAULT).is_err());
    }

    fn sample() -> Record {
        Record {
            uid: scistream_fsm::Uid::from_u128(7),
            owner: Principal("alice".into()),
            params: SessionParams { role: scistream_fsm::Role::Prod, num_conn: 2, rate: 0 },
            key: AppKey([1; 16]),
            listeners: vec![],
            prod_listeners: vec![],
            targets: vec![],
            creds: Credentials([2; 32]),
            node: Node(0),
        }
    }
}
