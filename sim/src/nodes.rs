//! How the simulator names its nodes (`s2uc#0`, `s2cs/PROD`, `s2ds/CONS`, `s2ds/CONS.1`,
//! `app#3`) and their kinds (`s2uc`, `s2cs`, `s2ds`, `app`): shared by scenarios, the network
//! and the world.

use scistream_fsm::{Node, Peer, Role};

/// The node a name designates: `s2uc#N`, `s2cs/PROD`, `s2cs/CONS`, `s2ds/PROD`, `s2ds/CONS`
/// (a facility's first data-server node), `s2ds/PROD.N`, `s2ds/CONS.N` (its others, of
/// `nodes`), `app#N`.
pub fn node_by_name(name: &str, clients: u32, sessions: u32, nodes: u16) -> Option<Peer> {
    let role = |r: &str| match r {
        "PROD" => Some(Role::Prod),
        "CONS" => Some(Role::Cons),
        _ => None,
    };
    if let Some(n) = name.strip_prefix("s2uc#") {
        return n.parse().ok().filter(|n| *n < clients).map(Peer::Client);
    }
    if let Some(n) = name.strip_prefix("app#") {
        return n.parse().ok().filter(|n| *n < sessions).map(Peer::App);
    }
    if let Some(r) = name.strip_prefix("s2cs/") {
        return role(r).map(Peer::ControlServer);
    }
    let ds = name.strip_prefix("s2ds/")?;
    let (r, n) = match ds.split_once('.') {
        Some((r, n)) => (r, n.parse().ok().filter(|n| *n > 0 && *n < nodes)?),
        None => (ds, 0),
    };
    role(r).map(|r| Peer::DataServer(r, Node(n)))
}

/// A node's printable name: `s2uc#0`, `s2cs/PROD`, `s2ds/CONS`, `app#3`.
pub fn node_name(p: Peer) -> String {
    p.to_string()
}

/// A node's kind: `s2uc`, `s2cs`, `s2ds`, `app`.
pub fn node_kind(p: Peer) -> &'static str {
    match p {
        Peer::Client(_) => "s2uc",
        Peer::ControlServer(_) => "s2cs",
        Peer::DataServer(..) => "s2ds",
        Peer::App(_) => "app",
    }
}

/// Whether `name` names a node or a kind in a cluster of this size.
pub fn group_name_valid(name: &str, clients: u32, sessions: u32, nodes: u16) -> bool {
    matches!(name, "s2uc" | "s2cs" | "s2ds" | "app") || node_by_name(name, clients, sessions, nodes).is_some()
}

/// The facility a data or control server serves, for indexing.
pub fn role_index(r: Role) -> usize {
    match r {
        Role::Prod => 0,
        Role::Cons => 1,
    }
}
