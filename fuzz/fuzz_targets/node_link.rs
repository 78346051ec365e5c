//! The S2CS↔S2DS link (`scistream.DataServer`): an `Envelope` off the link stream, validated
//! by `envelope::from_pb` under the link's limits and sorted by the direction filters of
//! `transport::node` (no message may pass both); or (first byte odd) a `TrafficReply` whose
//! entries are read by `node_traffic_from_wire`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use scistream_proto::convert::{node_traffic_from_wire, node_traffic_to_wire};
use scistream_proto::envelope::{from_pb, to_pb};
use scistream_proto::{Limits, pb};
use scistream_transport::node::{from_control_server, from_data_server};

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    if which % 2 == 0 {
        let Ok(envelope) = pb::Envelope::decode(bytes) else { return };
        let limits = Limits { max_num_conn: 64 };
        match from_pb(envelope, &limits) {
            Ok(msg) => {
                assert!(
                    !(from_control_server(&msg) && from_data_server(&msg)),
                    "{} passes both directions",
                    msg.name()
                );
                assert_eq!(from_pb(to_pb(&msg), &limits), Ok(msg));
            }
            Err(e) => drop(e.to_string()),
        }
    } else {
        let Ok(reply) = pb::TrafficReply::decode(bytes) else { return };
        for t in &reply.sessions {
            match node_traffic_from_wire(t) {
                Ok((uid, traffic)) => {
                    assert_eq!(node_traffic_from_wire(&node_traffic_to_wire(uid, &traffic)), Ok((uid, traffic)))
                }
                Err(e) => drop(e.to_string()),
            }
        }
    }
});
