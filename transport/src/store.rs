//! A control server's durable store: every established session, so that a restarted control
//! server hosts them again and its data server nodes keep their bridges.
//!
//! One [redb](https://docs.rs/redb) file, `sessions.redb`, in the state folder: an embedded,
//! crash-safe (copy-on-write B-trees, checksummed commits, each commit fsync'ed) key-value
//! store in pure Rust with no server and no C library; a second process opening the same file
//! is refused, so two control servers cannot share one state. Keys are uids, values
//! `StoredSession` protobufs ([`scistream_proto::store`]), validated when read back: a record
//! that does not decode is logged and dropped, never trusted.
//!
//! Each record names the data-server node its session is placed on by the address the control
//! server reaches it at (`embedded` for the data server inside `s2cs`), not by its position in
//! the list of nodes: a restart with the nodes given in another order puts each session back on
//! its own node, and one whose node is no longer configured comes back on [`Node`] `nodes.len()`,
//! a node the control server does not have, which fails it at boot.
//!
//! Writes happen on a thread of their own, in the order they were asked for, batched into one
//! commit when they queue up: the control server's actor never waits for the disk.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use scistream_fsm::s2cs::Record;
use scistream_fsm::{Node, Uid};
use scistream_proto::Limits;

const SESSIONS: TableDefinition<u128, &[u8]> = TableDefinition::new("sessions");

/// The store's file in its folder.
pub const FILE: &str = "sessions.redb";

/// Why the store cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The folder cannot be made or used.
    #[error("state folder {path}: {error}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// Another process holds the store.
    #[error("{0} is in use by another process (another s2cs with the same --state-dir?)")]
    Busy(PathBuf),
    /// redb refused the file.
    #[error("store {path}: {reason}")]
    Db {
        /// The file.
        path: PathBuf,
        /// redb's reason.
        reason: String,
    },
}

enum Op {
    Put(Uid, Vec<u8>),
    Remove(Uid),
    Flush(mpsc::Sender<()>),
}

/// An open store; writes go through its writer thread. Dropping it finishes the queued writes.
#[derive(Debug)]
pub struct SessionStore {
    path: PathBuf,
    /// The nodes' names, indexed by [`Node`].
    nodes: Vec<String>,
    tx: Option<mpsc::Sender<Op>>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Put(uid, _) => write!(f, "Put({uid})"),
            Self::Remove(uid) => write!(f, "Remove({uid})"),
            Self::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl SessionStore {
    /// Opens the store in `dir` (made, owner-only, if missing) and reads what it holds, for a
    /// control server whose data-server nodes are named `nodes` (in order); records that do not
    /// decode under `limits` are logged, dropped from the store, and not returned.
    pub fn open(dir: &Path, limits: &Limits, nodes: &[String]) -> Result<(Self, Vec<Record>), StoreError> {
        let folder = |error| StoreError::Folder { path: dir.to_owned(), error };
        std::fs::create_dir_all(dir).map_err(folder)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(folder)?;
        }
        let path = dir.join(FILE);
        let db = match Database::create(&path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(StoreError::Busy(path)),
            Err(e) => return Err(StoreError::Db { path, reason: e.to_string() }),
        };
        let db_err = |e: &dyn std::fmt::Display| StoreError::Db { path: path.clone(), reason: e.to_string() };
        // The table exists from the first open on, so reads never meet a missing table.
        let tx = db.begin_write().map_err(|e| db_err(&e))?;
        tx.open_table(SESSIONS).map_err(|e| db_err(&e))?;
        tx.commit().map_err(|e| db_err(&e))?;
        let (mut records, mut bad) = (Vec::new(), Vec::new());
        {
            let read = db.begin_read().map_err(|e| db_err(&e))?;
            let table = read.open_table(SESSIONS).map_err(|e| db_err(&e))?;
            for row in table.iter().map_err(|e| db_err(&e))? {
                let (k, v) = row.map_err(|e| db_err(&e))?;
                let key = k.value();
                match scistream_proto::store::decode(v.value(), limits) {
                    Ok((mut r, node)) if r.uid.as_u128() == key => {
                        r.node = node_by_name(nodes, &node);
                        if r.node.index() >= nodes.len() {
                            tracing::warn!(uid = %r.uid, node, "a stored session's node is no longer configured; the session fails");
                        }
                        records.push(r);
                    }
                    Ok((r, _)) => {
                        tracing::error!(key = %Uid::from_u128(key), uid = %r.uid, "a stored session under another uid's key; dropped");
                        bad.push(key);
                    }
                    Err(e) => {
                        tracing::error!(key = %Uid::from_u128(key), "a stored session does not decode ({e}); dropped");
                        bad.push(key);
                    }
                }
            }
        }
        if !bad.is_empty() {
            let tx = db.begin_write().map_err(|e| db_err(&e))?;
            {
                let mut table = tx.open_table(SESSIONS).map_err(|e| db_err(&e))?;
                for key in bad {
                    table.remove(key).map_err(|e| db_err(&e))?;
                }
            }
            tx.commit().map_err(|e| db_err(&e))?;
        }
        let (tx, rx) = mpsc::channel();
        let writer_path = path.clone();
        let writer = std::thread::Builder::new()
            .name("session-store".into())
            .spawn(move || write_loop(&db, &writer_path, &rx))
            .map_err(folder)?;
        Ok((Self { path, nodes: nodes.to_vec(), tx: Some(tx), writer: Some(writer) }, records))
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores `record` (replacing what its uid had).
    pub fn put(&self, record: &Record) {
        let node = self.nodes.get(record.node.index()).map_or("", String::as_str);
        self.send(Op::Put(record.uid, scistream_proto::store::encode(record, node)));
    }

    /// Forgets session `uid`.
    pub fn remove(&self, uid: Uid) {
        self.send(Op::Remove(uid));
    }

    /// Waits until everything asked so far is on disk.
    pub fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        self.send(Op::Flush(tx));
        let _ = rx.recv();
    }

    fn send(&self, op: Op) {
        if let Some(tx) = &self.tx
            && tx.send(op).is_err()
        {
            tracing::error!(store = %self.path.display(), "the store's writer is gone; a change is not kept");
        }
    }
}

impl Drop for SessionStore {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// The node named `name` among `nodes`; a name left empty (a store from before nodes were
/// named, with one data server) is the first; an unknown one is `Node(nodes.len())`.
fn node_by_name(nodes: &[String], name: &str) -> Node {
    let index = if name.is_empty() { 0 } else { nodes.iter().position(|n| n == name).unwrap_or(nodes.len()) };
    Node(u16::try_from(index).unwrap_or(u16::MAX))
}

fn write_loop(db: &Database, path: &Path, rx: &mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        // Whatever queued meanwhile goes into the same commit, in order.
        let mut ops = vec![first];
        ops.extend(rx.try_iter());
        let mut done = Vec::new();
        let result = (|| -> Result<(), redb::Error> {
            let tx = db.begin_write()?;
            {
                let mut table = tx.open_table(SESSIONS)?;
                for op in ops {
                    match op {
                        Op::Put(uid, bytes) => {
                            table.insert(uid.as_u128(), bytes.as_slice())?;
                        }
                        Op::Remove(uid) => {
                            table.remove(uid.as_u128())?;
                        }
                        Op::Flush(reply) => done.push(reply),
                    }
                }
            }
            tx.commit()?;
            Ok(())
        })();
        if let Err(e) = result {
            tracing::error!(store = %path.display(), "writing the session store failed: {e}; a restart may not recover the latest changes");
        }
        for reply in done {
            let _ = reply.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use scistream_fsm::{AppKey, Credentials, Principal, Role, SessionParams};

    use super::*;

    fn record(n: u128) -> Record {
        Record {
            uid: Uid::from_u128(n),
            owner: Principal("alice".into()),
            params: SessionParams { role: Role::Prod, num_conn: 2, rate: 0 },
            key: AppKey([3; 16]),
            listeners: vec!["192.0.2.1:5100".parse().unwrap()],
            prod_listeners: vec![],
            targets: vec!["198.51.100.7:7000".parse().unwrap()],
            creds: Credentials([n as u8; 32]),
            node: Node(0),
        }
    }

    fn nodes(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn a_session_comes_back_on_its_node_by_name_whatever_the_order_and_fails_when_its_node_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = SessionStore::open(dir.path(), &Limits::DEFAULT, &nodes(&["a:1", "b:2", "c:3"])).unwrap();
        let (mut on_b, mut on_c) = (record(1), record(2));
        (on_b.node, on_c.node) = (Node(1), Node(2));
        store.put(&on_b);
        store.put(&on_c);
        drop(store);
        // Restarted with the nodes in another order and c removed.
        let (_store, held) = SessionStore::open(dir.path(), &Limits::DEFAULT, &nodes(&["b:2", "a:1"])).unwrap();
        assert_eq!(held.iter().map(|r| r.node).collect::<Vec<_>>(), vec![Node(0), Node(2)]);
    }

    #[test]
    fn a_record_without_a_node_name_is_on_the_first_node() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Database::create(dir.path().join(FILE)).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut t = tx.open_table(SESSIONS).unwrap();
                t.insert(1u128, scistream_proto::store::encode(&record(1), "").as_slice()).unwrap();
            }
            tx.commit().unwrap();
        }
        let (_store, held) = SessionStore::open(dir.path(), &Limits::DEFAULT, &nodes(&["x:1", "y:2"])).unwrap();
        assert_eq!(held, vec![record(1)]);
    }

    #[test]
    fn what_is_stored_comes_back_after_a_reopen_and_removals_stick() {
        let dir = tempfile::tempdir().unwrap();
        let (store, held) = SessionStore::open(dir.path(), &Limits::DEFAULT, &nodes(&["embedded"])).unwrap();
        assert!(held.is_empty());
        for n in 1..=3 {
            store.put(&record(n));
        }
        store.remove(Uid::from_u128(2));
        let mut changed = record(3);
        changed.targets.clear();
        store.put(&changed);
        drop(store);
        let (_store, held) = SessionStore::open(dir.path(), &Limits::DEFAULT, &nodes(&["embedded"])).unwrap();
        assert_eq!(held, vec![record(1), changed]);
    }

    #[test]
    fn a_second_process_on_the_same_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, _) = SessionStore::open(dir.path(), &Limits::DEFAULT, &nodes(&["embedded"])).unwrap();
        let err = SessionStore::open(dir.path(), &Limits::DEFAULT, &nodes(&["embedded"])).unwrap_err();
        assert!(matches!(err, StoreError::Busy(_)), "{err}");
        assert!(err.to_string().contains("another s2cs"), "{err}");
    }

    #[test]
    fn a_record_that_does_not_decode_is_dropped_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = SessionStore::open(dir.path(), &Limits::DEFAULT, &nodes(&["embedded"])).unwrap();
            store.put(&record(1));
            store.flush();
        }
        {
            let db = Database::create(dir.path().join(FILE)).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut t = tx.open_table(SESSIONS).unwrap();
                t.insert(9u128, b"\xff\xff not a record".as_slice()).unwrap();
                // A valid record filed under another uid.
                t.insert(8u128, scistream_proto::store::encode(&record(1), "embedded").as_slice()).unwrap();
            }
            tx.commit().unwrap();
        }
        let (_store, held) = SessionStore::open(dir.path(), &Limits::DEFAULT, &nodes(&["embedded"])).unwrap();
        assert_eq!(held, vec![record(1)]);
        drop(_store);
        let (_store, held) = SessionStore::open(dir.path(), &Limits::DEFAULT, &nodes(&["embedded"])).unwrap();
        assert_eq!(held, vec![record(1)], "the bad rows were removed");
    }
}
