//! Reference-model test of the core. proptest drives random sequences of create, open,
//! write at random offsets, read, truncate, fsync, close, rename, unlink, mkdir, rmdir,
//! stat and readdir through [`Filesystem`] over the in-memory store, and checks each
//! answer, each listing, the final S3 state and a fresh mount of it against a small model
//! of a POSIX tree (a map from path to directory or file content).
//!
//! Three modes:
//! - no faults, and transient faults (5xx, unreachable) under the retry policy: every
//!   answer must be exactly the model's;
//! - hard faults (errors S3 means) on every store operation at random: an operation that
//!   met an injected fault may fail with EIO, and what it touched becomes unknown to the
//!   model ("tainted"); everything else must still match the model exactly, and every
//!   object in S3 must read back whole through a fresh mount.
//!
//! Left to other tests, because POSIX and bucketfs differ there on purpose (see
//! docs/semantics.md): unlinking or renaming over a file that is still open (steps that
//! would are skipped), and a read-only handle reading bytes another handle's streamed
//! upload already sent (EIO by design; allowed, not failed).
//!
//! Each mode runs a bounded number of cases; `BUCKETFS_MODEL_CASES=N` runs N per mode.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::write_tests::{defaults, pattern, ME, MIB};
use super::*;
use crate::store::faulty::FaultyStore;
use crate::store::memory::MemoryStore;
use crate::store::retry::RetryingStore;
use crate::store::StoreErrorKind;

type Store = RetryingStore<FaultyStore<MemoryStore>>;

const PART: u64 = 5 * MIB as u64;

/// Names of the tree: every path is one or two of these, so steps collide often.
const NAMES: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Step {
    /// open(O_CREAT|O_RDWR).
    Create(Vec<usize>),
    Open {
        path: Vec<usize>,
        write: bool,
        trunc: bool,
    },
    Write {
        h: usize,
        at: u64,
        len: usize,
        seed: u8,
    },
    Read {
        h: usize,
        at: u64,
        len: u32,
    },
    Truncate(Vec<usize>, u64),
    Fsync(usize),
    Close(usize),
    Rename(Vec<usize>, Vec<usize>),
    Unlink(Vec<usize>),
    Mkdir(Vec<usize>),
    Rmdir(Vec<usize>),
    List(Vec<usize>),
    Stat(Vec<usize>),
}

fn path_of(p: &[usize]) -> String {
    p.iter().map(|i| NAMES[*i]).collect::<Vec<_>>().join("/")
}

fn step() -> impl Strategy<Value = Step> {
    // Mostly top-level names, so that the parent of a step's path usually exists.
    let path = || {
        prop_oneof![
            2 => prop::collection::vec(0..NAMES.len(), 1..=1),
            1 => prop::collection::vec(0..NAMES.len(), 2..=2),
        ]
    };
    let offset = prop_oneof![4 => 0..70_000u64, 1 => 0..12 * MIB as u64];
    let len = prop_oneof![5 => 1..5_000usize, 1 => 1..6 * MIB];
    let size = prop_oneof![2 => Just(0u64), 2 => 0..100_000u64, 1 => 0..12 * MIB as u64];
    prop_oneof![
        4 => path().prop_map(Step::Create),
        2 => (path(), any::<bool>(), prop::bool::weighted(0.2))
            .prop_map(|(path, write, trunc)| Step::Open { path, write, trunc }),
        6 => (any::<usize>(), offset.clone(), len, any::<u8>())
            .prop_map(|(h, at, len, seed)| Step::Write { h, at, len, seed }),
        4 => (any::<usize>(), offset, 1..200_000u32)
            .prop_map(|(h, at, len)| Step::Read { h, at, len }),
        1 => (path(), size).prop_map(|(p, s)| Step::Truncate(p, s)),
        1 => any::<usize>().prop_map(Step::Fsync),
        3 => any::<usize>().prop_map(Step::Close),
        2 => (path(), path()).prop_map(|(a, b)| Step::Rename(a, b)),
        1 => path().prop_map(Step::Unlink),
        2 => path().prop_map(Step::Mkdir),
        1 => path().prop_map(Step::Rmdir),
        2 => prop::collection::vec(0..NAMES.len(), 0..=1).prop_map(Step::List),
        1 => path().prop_map(Step::Stat),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Dir,
    File(usize),
}

/// One open handle: the core's fh and the model file it is open on (it follows renames).
#[derive(Debug, Clone, Copy)]
struct Handle {
    fh: u64,
    file: usize,
    writable: bool,
}

/// The POSIX tree the core must behave as.
#[derive(Default)]
struct Model {
    tree: BTreeMap<String, Node>,
    files: Vec<Vec<u8>>,
    handles: Vec<Handle>,
    /// Hard-fault mode: paths (with everything below) whose state is unknown.
    tainted: BTreeSet<String>,
    tainted_files: BTreeSet<usize>,
}

fn parent(p: &str) -> &str {
    p.rsplit_once('/').map_or("", |(d, _)| d)
}

fn below(p: &str, dir: &str) -> bool {
    dir.is_empty() || p.starts_with(&format!("{dir}/"))
}

type Expect = std::result::Result<(), i32>;

impl Model {
    /// What walking to `p` gives: its node, ENOENT or ENOTDIR.
    fn lookup(&self, p: &str) -> std::result::Result<Node, i32> {
        if p.is_empty() {
            return Ok(Node::Dir);
        }
        let mut at = String::new();
        let parts: Vec<&str> = p.split('/').collect();
        for (i, c) in parts.iter().enumerate() {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(c);
            match self.tree.get(&at) {
                None => return Err(libc::ENOENT),
                Some(Node::File(_)) if i + 1 < parts.len() => return Err(libc::ENOTDIR),
                Some(n) => {
                    if i + 1 == parts.len() {
                        return Ok(*n);
                    }
                }
            }
        }
        unreachable!("a path has at least one component")
    }

    /// Whether `p`'s parent is a directory (ENOENT or ENOTDIR if not).
    fn parent_ok(&self, p: &str) -> Expect {
        match self.lookup(parent(p))? {
            Node::Dir => Ok(()),
            Node::File(_) => Err(libc::ENOTDIR),
        }
    }

    fn children(&self, dir: &str) -> Vec<String> {
        self.tree
            .keys()
            .filter(|k| below(k, dir) && parent(k) == dir)
            .map(|k| k.rsplit('/').next().unwrap_or(k).to_string())
            .collect()
    }

    fn open_on(&self, file: usize) -> bool {
        self.handles.iter().any(|h| h.file == file)
    }

    fn has_writer(&self, file: usize) -> bool {
        self.handles.iter().any(|h| h.file == file && h.writable)
    }

    /// Whether anything at, above or below `p` is unknown.
    fn touches_taint(&self, p: &str) -> bool {
        let unknown_path = self
            .tainted
            .iter()
            .any(|t| t == p || below(p, t) || below(t, p) || t.is_empty() || p.is_empty());
        let unknown_file = self.tree.iter().any(|(k, n)| {
            (k == p || below(k, p))
                && matches!(n, Node::File(id) if self.tainted_files.contains(id))
        });
        unknown_path || unknown_file
    }

    fn taint(&mut self, p: &str) {
        self.tainted.insert(p.to_string());
    }

    fn taint_file(&mut self, file: usize) {
        self.tainted_files.insert(file);
        let paths: Vec<String> = self
            .tree
            .iter()
            .filter(|(_, n)| **n == Node::File(file))
            .map(|(k, _)| k.clone())
            .collect();
        for p in paths {
            self.taint(&p);
        }
    }

    fn rename_expect(&self, from: &str, to: &str) -> Expect {
        self.parent_ok(from)?;
        self.parent_ok(to)?;
        let src = self.lookup(from)?;
        if from == to {
            return Ok(());
        }
        if src == Node::Dir && below(to, from) {
            return Err(libc::EINVAL);
        }
        match (src, self.tree.get(to)) {
            (_, None) => Ok(()),
            (Node::File(_), Some(Node::Dir)) => Err(libc::EISDIR),
            (Node::Dir, Some(Node::File(_))) => Err(libc::ENOTDIR),
            (Node::Dir, Some(Node::Dir)) if !self.children(to).is_empty() => Err(libc::ENOTEMPTY),
            _ => Ok(()),
        }
    }

    fn rename_apply(&mut self, from: &str, to: &str) {
        if from == to {
            return;
        }
        let moved: Vec<(String, Node)> = self
            .tree
            .iter()
            .filter(|(k, _)| *k == from || below(k, from))
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        self.tree.remove(to);
        for (k, _) in &moved {
            self.tree.remove(k);
        }
        for (k, n) in moved {
            let nk = format!("{to}{}", &k[from.len()..]);
            self.tree.insert(nk, n);
        }
    }
}

/// How faults are injected in one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Faults {
    None,
    /// Transient faults at this rate (per mille), ridden out by the retry policy.
    Transient(u64),
    /// Hard faults at this rate (per mille).
    Hard(u64),
}

struct Run {
    fs: Filesystem<Store>,
    store: Arc<Store>,
    cfg: FsConfig,
    model: Model,
    faults: Faults,
    _dir: tempfile::TempDir,
}

fn config(dir: &std::path::Path) -> FsConfig {
    let mut cfg = FsConfig::new("", defaults());
    cfg.write.staging_dir = dir.join("staging");
    cfg.write.part_size = PART;
    cfg.write.memory_budget = 20 * MIB as u64;
    // Renames of files over 6 MiB copy part by part.
    cfg.write.copy_limit = 6 * MIB as u64;
    cfg
}

async fn walk<S: ObjectStore>(fs: &Filesystem<S>, p: &str) -> Result<u64> {
    let mut ino = ROOT_INO;
    for c in p.split('/').filter(|c| !c.is_empty()) {
        ino = fs.lookup(ino, c.as_bytes()).await?.ino;
    }
    Ok(ino)
}

/// Walk to the directory `p` as the kernel resolves a path: ENOTDIR if it is not one.
async fn walk_dir<S: ObjectStore>(fs: &Filesystem<S>, p: &str) -> Result<u64> {
    let mut ino = ROOT_INO;
    for c in p.split('/').filter(|c| !c.is_empty()) {
        let a = fs.lookup(ino, c.as_bytes()).await?;
        if a.stat.kind != Kind::Dir {
            return Err(Error::NotDir(p.to_string()));
        }
        ino = a.ino;
    }
    Ok(ino)
}

fn leaf(p: &str) -> &[u8] {
    p.rsplit('/').next().unwrap_or(p).as_bytes()
}

fn errno<T>(r: &Result<T>) -> Expect {
    match r {
        Ok(_) => Ok(()),
        Err(e) => Err(e.errno()),
    }
}

/// What one step did, for the mode's judgement.
enum Outcome {
    /// The model does not apply (no such handle, a case POSIX leaves open).
    Skipped,
    /// The core answered `got`; the model expected `want`. `apply` updates the model
    /// when the answer is the expected one.
    Done {
        got: Expect,
        want: Expect,
        touched: Vec<String>,
        files: Vec<usize>,
    },
}

impl Run {
    fn new(faults: Faults, seed: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (rate, kind) = match faults {
            Faults::None => (0, StoreErrorKind::Transient),
            Faults::Transient(r) => (r, StoreErrorKind::Transient),
            Faults::Hard(r) => (r, StoreErrorKind::Other),
        };
        let faulty = FaultyStore::random(MemoryStore::new(), seed, rate, kind);
        let store = Arc::new(RetryingStore::new(faulty, Duration::from_secs(120)));
        let cfg = config(dir.path());
        Run {
            fs: Filesystem::new(store.clone(), cfg.clone(), None),
            store,
            cfg,
            model: Model::default(),
            faults,
            _dir: dir,
        }
    }

    fn faulty(&self) -> &FaultyStore<MemoryStore> {
        self.store.inner()
    }

    fn mem(&self) -> &MemoryStore {
        self.store.inner().inner()
    }

    fn hard(&self) -> bool {
        matches!(self.faults, Faults::Hard(_))
    }

    async fn step(&mut self, s: &Step) -> std::result::Result<(), TestCaseError> {
        let before = self.faulty().injected();
        let outcome = self.exec(s).await?;
        let Outcome::Done {
            got,
            want,
            touched,
            files,
        } = outcome
        else {
            return Ok(());
        };
        if got == want {
            return Ok(());
        }
        let faulted = self.faulty().injected() > before;
        if self.hard() && faulted && got == Err(libc::EIO) {
            for p in &touched {
                self.model.taint(p);
            }
            for f in files {
                self.model.taint_file(f);
            }
            return Ok(());
        }
        Err(TestCaseError::fail(format!(
            "{s:?}: the core answered {got:?}, the model {want:?} (faults injected in this step: {faulted})"
        )))
    }

    /// Run one step on the core and on the model.
    async fn exec(&mut self, s: &Step) -> std::result::Result<Outcome, TestCaseError> {
        let m = &mut self.model;
        let fs = &self.fs;
        let done = |got, want, touched: &[&str], files: Vec<usize>| Outcome::Done {
            got,
            want,
            touched: touched.iter().map(|p| p.to_string()).collect(),
            files,
        };
        Ok(match s {
            Step::Create(p) => {
                let p = path_of(p);
                match m.lookup(&p) {
                    Ok(Node::Dir) => return Ok(Outcome::Skipped),
                    Ok(Node::File(_)) => {
                        return Box::pin(self.exec(&Step::Open {
                            path: p.split('/').map(name_index).collect(),
                            write: true,
                            trunc: false,
                        }))
                        .await
                    }
                    Err(_) => {}
                }
                let tainted = m.touches_taint(&p);
                let want = m.parent_ok(&p);
                let r = match walk_dir(fs, parent(&p)).await {
                    Ok(dir) => fs.create(dir, leaf(&p), 0o644, ME).await.map(|(_, o)| o),
                    Err(e) => Err(e),
                };
                let got = errno(&r);
                if let Ok(o) = r {
                    let id = m.files.len();
                    m.files.push(Vec::new());
                    m.tree.insert(p.clone(), Node::File(id));
                    m.handles.push(Handle {
                        fh: o.fh,
                        file: id,
                        writable: true,
                    });
                    if tainted || want.is_err() {
                        m.taint_file(id);
                    }
                }
                if tainted {
                    m.taint(&p);
                    return Ok(Outcome::Skipped);
                }
                done(got, want, &[&p], vec![])
            }
            Step::Open { path, write, trunc } => {
                let p = path_of(path);
                let node = m.lookup(&p);
                if node == Ok(Node::Dir) {
                    return Ok(Outcome::Skipped);
                }
                let tainted = m.touches_taint(&p);
                let mut flags = if *write { libc::O_RDWR } else { libc::O_RDONLY };
                if *trunc {
                    flags |= libc::O_TRUNC;
                }
                let r = match walk(fs, &p).await {
                    Ok(ino) => fs.open(ino, flags).await,
                    Err(e) => Err(e),
                };
                let got = errno(&r);
                let want = node.map(|_| ());
                if let (Ok(o), Ok(Node::File(id))) = (&r, node) {
                    m.handles.push(Handle {
                        fh: o.fh,
                        file: id,
                        writable: *write,
                    });
                    if *trunc && !tainted {
                        m.files[id].clear();
                    }
                }
                if tainted {
                    if let Ok(Node::File(id)) = node {
                        m.taint_file(id);
                    }
                    return Ok(Outcome::Skipped);
                }
                let files = match node {
                    Ok(Node::File(id)) if *trunc => vec![id],
                    _ => vec![],
                };
                done(got, want, &[], files)
            }
            Step::Write { h, at, len, seed } => {
                let writable: Vec<Handle> =
                    m.handles.iter().copied().filter(|h| h.writable).collect();
                if writable.is_empty() {
                    return Ok(Outcome::Skipped);
                }
                let h = writable[*h % writable.len()];
                let data = pattern(*len, *seed);
                let r = fs.write(h.fh, *at, &data).await;
                if let Ok(n) = r {
                    prop_assert_eq!(n as usize, data.len());
                    let f = &mut m.files[h.file];
                    let end = *at as usize + data.len();
                    if f.len() < end {
                        f.resize(end, 0);
                    }
                    f[*at as usize..end].copy_from_slice(&data);
                }
                let untouched = !m.tainted_files.contains(&h.file);
                if !untouched {
                    return Ok(Outcome::Skipped);
                }
                done(errno(&r), Ok(()), &[], vec![h.file])
            }
            Step::Read { h, at, len } => {
                if m.handles.is_empty() {
                    return Ok(Outcome::Skipped);
                }
                let h = m.handles[*h % m.handles.len()];
                let r = fs.read(h.fh, *at, *len).await;
                if m.tainted_files.contains(&h.file) {
                    return Ok(Outcome::Skipped);
                }
                let f = &m.files[h.file];
                let start = (*at as usize).min(f.len());
                let end = (*at as usize + *len as usize).min(f.len());
                match r {
                    Ok(b) => {
                        prop_assert!(
                            b[..] == f[start..end],
                            "read of {} bytes at {at} (file size {}): {} bytes, {}",
                            len,
                            f.len(),
                            b.len(),
                            if b.len() == end - start {
                                "different content"
                            } else {
                                "wrong length"
                            }
                        );
                        Outcome::Skipped
                    }
                    Err(e) if e.errno() == libc::EIO && !h.writable && m.has_writer(h.file) => {
                        // A read-only handle may not read back bytes another handle's
                        // streamed upload already sent (EIO by design: see `Writer::read`).
                        Outcome::Skipped
                    }
                    // Reads change nothing: with hard faults they may fail.
                    Err(e) if self.faults != Faults::None && e.errno() == libc::EIO => {
                        let got = Err(libc::EIO);
                        done(got, Ok(()), &[], vec![])
                    }
                    Err(e) => done(Err(e.errno()), Ok(()), &[], vec![]),
                }
            }
            Step::Truncate(p, size) => {
                let p = path_of(p);
                let node = m.lookup(&p);
                if node == Ok(Node::Dir) {
                    return Ok(Outcome::Skipped);
                }
                let tainted = m.touches_taint(&p);
                let r = match walk(fs, &p).await {
                    Ok(ino) => {
                        let ch = SetAttr {
                            size: Some(*size),
                            ..Default::default()
                        };
                        fs.setattr(ino, ch).await
                    }
                    Err(e) => Err(e),
                };
                let got = errno(&r);
                if let (Ok(attr), Ok(Node::File(id))) = (&r, node) {
                    prop_assert_eq!(attr.stat.size, *size);
                    m.files[id].resize(*size as usize, 0);
                }
                if tainted {
                    if let Ok(Node::File(id)) = node {
                        m.taint_file(id);
                    }
                    return Ok(Outcome::Skipped);
                }
                let files = match node {
                    Ok(Node::File(id)) => vec![id],
                    _ => vec![],
                };
                done(got, node.map(|_| ()), &[], files)
            }
            Step::Fsync(h) | Step::Close(h) => {
                if m.handles.is_empty() {
                    return Ok(Outcome::Skipped);
                }
                let i = *h % m.handles.len();
                let h = m.handles[i];
                let mut r = fs.flush(h.fh).await;
                if matches!(s, Step::Close(_)) {
                    let released = fs.release(h.fh).await;
                    r = r.and(released);
                    m.handles.remove(i);
                }
                if m.tainted_files.contains(&h.file) {
                    return Ok(Outcome::Skipped);
                }
                done(errno(&r), Ok(()), &[], vec![h.file])
            }
            Step::Rename(a, b) => {
                let (from, to) = (path_of(a), path_of(b));
                if let Some(Node::File(id)) = m.tree.get(&to) {
                    if m.open_on(*id) && from != to {
                        // Replacing a file that is still open: the unlinked-open case.
                        return Ok(Outcome::Skipped);
                    }
                }
                let tainted = m.touches_taint(&from) || m.touches_taint(&to);
                let want = m.rename_expect(&from, &to);
                let r = async {
                    let d1 = walk_dir(fs, parent(&from)).await?;
                    let d2 = walk_dir(fs, parent(&to)).await?;
                    fs.rename(d1, leaf(&from), d2, leaf(&to), 0).await
                }
                .await;
                settle(m, errno(&r), want, tainted, &[&from, &to], |m| {
                    m.rename_apply(&from, &to)
                })
            }
            Step::Unlink(p) => {
                let p = path_of(p);
                let node = m.lookup(&p);
                if let Ok(Node::File(id)) = node {
                    if m.open_on(id) {
                        return Ok(Outcome::Skipped);
                    }
                }
                let tainted = m.touches_taint(&p);
                let want = match node {
                    Ok(Node::Dir) => Err(libc::EISDIR),
                    n => n.map(|_| ()),
                };
                let r = match walk_dir(fs, parent(&p)).await {
                    Ok(d) => fs.unlink(d, leaf(&p)).await,
                    Err(e) => Err(e),
                };
                settle(m, errno(&r), want, tainted, &[&p], |m| {
                    m.tree.remove(&p);
                })
            }
            Step::Mkdir(p) => {
                let p = path_of(p);
                let tainted = m.touches_taint(&p);
                let want = match m.lookup(&p) {
                    Ok(_) => Err(libc::EEXIST),
                    Err(_) => m.parent_ok(&p),
                };
                let r = match walk_dir(fs, parent(&p)).await {
                    Ok(d) => fs.mkdir(d, leaf(&p), 0o755, ME).await,
                    Err(e) => Err(e),
                };
                settle(m, errno(&r), want, tainted, &[&p], |m| {
                    m.tree.insert(p.clone(), Node::Dir);
                })
            }
            Step::Rmdir(p) => {
                let p = path_of(p);
                let tainted = m.touches_taint(&p);
                let want = match m.lookup(&p) {
                    Ok(Node::File(_)) => Err(libc::ENOTDIR),
                    Ok(Node::Dir) if !m.children(&p).is_empty() => Err(libc::ENOTEMPTY),
                    n => n.map(|_| ()),
                };
                let r = match walk_dir(fs, parent(&p)).await {
                    Ok(d) => fs.rmdir(d, leaf(&p)).await,
                    Err(e) => Err(e),
                };
                settle(m, errno(&r), want, tainted, &[&p], |m| {
                    m.tree.remove(&p);
                })
            }
            Step::List(p) => {
                let p = path_of(p);
                let node = m.lookup(&p);
                if matches!(node, Ok(Node::File(_))) {
                    return Ok(Outcome::Skipped);
                }
                let r = match walk_dir(fs, &p).await {
                    Ok(ino) => super::write_tests::names(fs, ino).await,
                    Err(e) => Err(e),
                };
                if let Ok(got) = &r {
                    let mut got: Vec<String> = got.clone();
                    got.sort();
                    let known = |n: &String| {
                        let full = if p.is_empty() {
                            n.clone()
                        } else {
                            format!("{p}/{n}")
                        };
                        !m.touches_taint(&full)
                    };
                    let got: Vec<String> = got.into_iter().filter(known).collect();
                    let want: Vec<String> = m.children(&p).into_iter().filter(known).collect();
                    if !m.tainted.contains(&p)
                        && !m.tainted.iter().any(|t| below(&p, t) && !t.is_empty())
                    {
                        prop_assert_eq!(got, want, "listing of {:?}", p);
                    }
                }
                if m.touches_taint(&p) && !p.is_empty() {
                    return Ok(Outcome::Skipped);
                }
                done(errno(&r), node.map(|_| ()), &[], vec![])
            }
            Step::Stat(p) => {
                let p = path_of(p);
                let node = m.lookup(&p);
                let r = match walk(fs, &p).await {
                    Ok(ino) => fs.getattr(ino).await,
                    Err(e) => Err(e),
                };
                if m.touches_taint(&p) {
                    return Ok(Outcome::Skipped);
                }
                if let (Ok(a), Ok(n)) = (&r, node) {
                    match n {
                        Node::Dir => prop_assert_eq!(a.stat.kind, Kind::Dir, "{}", p),
                        Node::File(id) => {
                            prop_assert_eq!(a.stat.kind, Kind::File, "{}", p);
                            prop_assert_eq!(a.stat.size, m.files[id].len() as u64, "size of {}", p);
                        }
                    }
                }
                done(errno(&r), node.map(|_| ()), &[], vec![])
            }
        })
    }

    /// Close every handle, then check S3 and a fresh mount of it against the model.
    async fn finish(mut self) -> std::result::Result<(), TestCaseError> {
        self.faulty().set_per_mille(0);
        while !self.model.handles.is_empty() {
            self.step(&Step::Close(0)).await?;
        }
        let hard = self.hard();
        let m = &self.model;
        let mem = self.mem();
        // S3 holds exactly the model's tree (where the model knows it).
        for (p, n) in &m.tree {
            if m.touches_taint(p) {
                continue;
            }
            match n {
                Node::File(id) => {
                    let got = mem.get(p);
                    prop_assert!(got.is_some(), "{p} is not in S3");
                    let got = got.unwrap_or_default();
                    prop_assert!(
                        got[..] == m.files[*id][..],
                        "{p} in S3 has {} bytes, the model {} (or they differ)",
                        got.len(),
                        m.files[*id].len()
                    );
                }
                Node::Dir => {
                    let prefix = format!("{p}/");
                    prop_assert!(
                        mem.keys().iter().any(|k| k.starts_with(&prefix)),
                        "directory {p} is not in S3"
                    );
                }
            }
        }
        for k in mem.keys() {
            let p = k.trim_end_matches('/');
            let name = p.rsplit('/').next().unwrap_or(p);
            if names::is_reserved(name) {
                prop_assert!(hard, "helper object {k} left behind");
                continue;
            }
            if m.touches_taint(p) {
                continue;
            }
            let want = if k.ends_with('/') {
                Some(Node::Dir)
            } else {
                m.tree.get(p).copied().filter(|n| *n != Node::Dir)
            };
            prop_assert!(
                m.tree.get(p).copied().map(|n| n == Node::Dir) == want.map(|n| n == Node::Dir)
                    && want.is_some(),
                "S3 holds {k}, which the model does not have"
            );
        }
        if !hard {
            prop_assert!(
                mem.pending_uploads().is_empty(),
                "uploads left: {:?}",
                mem.pending_uploads()
            );
        }
        // A fresh mount of the bucket sees the same tree, and every file reads back
        // whole (with hard faults too, whatever its content).
        let fresh = Filesystem::new(self.store.clone(), self.cfg.clone(), None);
        let mut dirs = vec![String::new()];
        while let Some(d) = dirs.pop() {
            let ino = walk(&fresh, &d).await.map_err(fail)?;
            let mut got = super::write_tests::names(&fresh, ino).await.map_err(fail)?;
            got.sort();
            let known = |n: &String| !m.touches_taint(&join(&d, n));
            let want: Vec<String> = m.children(&d).into_iter().filter(known).collect();
            let seen: Vec<String> = got.iter().filter(|n| known(n)).cloned().collect();
            if !m.touches_taint(&d) || d.is_empty() {
                prop_assert_eq!(&seen, &want, "fresh mount, listing of {:?}", d);
            }
            for n in got {
                let p = join(&d, &n);
                let a = fresh.lookup(ino, n.as_bytes()).await.map_err(fail)?;
                if a.stat.kind == Kind::Dir {
                    dirs.push(p);
                    continue;
                }
                let o = fresh.open(a.ino, libc::O_RDONLY).await.map_err(fail)?;
                let mut data = Vec::new();
                loop {
                    let b = fresh
                        .read(o.fh, data.len() as u64, MIB as u32)
                        .await
                        .map_err(fail)?;
                    if b.is_empty() {
                        break;
                    }
                    data.extend_from_slice(&b);
                }
                fresh.release(o.fh).await.map_err(fail)?;
                prop_assert_eq!(data.len() as u64, a.stat.size, "fresh mount, size of {}", p);
                if let Some(Node::File(id)) = m.tree.get(&p) {
                    if !m.touches_taint(&p) {
                        prop_assert!(data == m.files[*id], "fresh mount, content of {p}");
                    }
                }
            }
        }
        Ok(())
    }
}

/// The end of a namespace step: the model takes the change (`apply`) when the core made
/// it and the model expected it or cannot know; what the step touched becomes unknown
/// when it touched something unknown; otherwise the answer is judged.
fn settle(
    m: &mut Model,
    got: Expect,
    want: Expect,
    tainted: bool,
    touched: &[&str],
    apply: impl FnOnce(&mut Model),
) -> Outcome {
    if got.is_ok() && (want.is_ok() || tainted) {
        apply(m);
    }
    if tainted {
        for p in touched {
            m.taint(p);
        }
        return Outcome::Skipped;
    }
    Outcome::Done {
        got,
        want,
        touched: touched.iter().map(|p| p.to_string()).collect(),
        files: vec![],
    }
}

fn join(d: &str, n: &str) -> String {
    if d.is_empty() {
        n.to_string()
    } else {
        format!("{d}/{n}")
    }
}

fn name_index(n: &str) -> usize {
    NAMES.iter().position(|x| *x == n).unwrap_or(0)
}

fn fail(e: Error) -> TestCaseError {
    TestCaseError::fail(format!("after the run: {e}"))
}

fn cases(default: u32) -> u32 {
    std::env::var("BUCKETFS_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Run `steps` in a fresh runtime with paused time (backoffs cost no wall time).
fn run(faults: Faults, seed: u64, steps: &[Step]) -> std::result::Result<u64, TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    rt.block_on(async {
        let mut r = Run::new(faults, seed);
        for s in steps {
            r.step(s).await?;
        }
        let injected = r.faulty().injected();
        r.finish().await?;
        Ok(injected)
    })
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(step(), 1..64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(128)))]

    #[test]
    fn the_core_behaves_as_the_model(steps in steps()) {
        run(Faults::None, 0, &steps)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(64)))]

    #[test]
    fn transient_faults_change_no_answer(seed in any::<u64>(), steps in steps()) {
        run(Faults::Transient(100), seed, &steps)?;
    }

    #[test]
    fn hard_faults_lose_nothing_the_model_knows(seed in any::<u64>(), steps in steps()) {
        run(Faults::Hard(30), seed, &steps)?;
    }
}

/// The fault modes really inject faults (a model run that never faults proves nothing).
#[test]
fn fault_runs_inject_faults() {
    let steps: Vec<Step> = (0..12)
        .flat_map(|i| {
            [
                Step::Create(vec![i % 3]),
                Step::Write {
                    h: 0,
                    at: 0,
                    len: 3000,
                    seed: i as u8,
                },
                Step::Close(0),
                Step::List(vec![]),
            ]
        })
        .collect();
    let transient = run(Faults::Transient(200), 1, &steps).unwrap();
    assert!(transient > 0, "no transient fault injected");
    let hard = run(Faults::Hard(100), 1, &steps).unwrap();
    assert!(hard > 0, "no hard fault injected");
}
