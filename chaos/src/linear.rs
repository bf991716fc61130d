//! Linearizability of the files of one folder, from the operations
//! clients recorded on them.
//!
//! Each file is a register: writes put a content, reads return one (or no
//! file); a listing of the folder reads every file at once. Every write
//! puts a content no other write puts, so a read names the write it saw;
//! and after healing, each file's history is the order the cluster
//! applied its writes in. With both known, a history is linearizable
//! exactly when the "must come before" graph below has no cycle (checking
//! registers with a known read-from mapping and write order is
//! polynomial; the general problem is not):
//!
//! - a before b when a's answer came before b was sent (real time);
//! - each applied write before the next one in its file's history;
//! - the write a read saw before that read;
//! - a read before the write that followed the one it saw (or, for a read
//!   that saw no file, before the file's first write) — for a listing,
//!   for every file of the folder, which makes it one snapshot.
//!
//! A topological order of an acyclic graph is a sequential run that gives
//! every read the answer it got; a cycle is a set of operations no order
//! can satisfy, and is reported.

use std::collections::{BTreeMap, VecDeque};

/// A content's hash: what a write puts and a read returns.
pub type Value = [u8; 32];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `file` given a content.
    Write { file: String, value: Value },
    /// `file` read: its content, or `None` for no file.
    Read { file: String, saw: Option<Value> },
    /// The folder listed: each file's content as listed (a file the
    /// listing lacks reads as `None`). One snapshot of every file at once.
    List(BTreeMap<String, Value>),
}

/// One operation as a client saw it. Times are ticks of one clock shared by
/// every client (a counter in the simulation, nanoseconds in a process
/// run); only their order matters.
#[derive(Debug, Clone)]
pub struct Op {
    /// Who and when, for the report ("w1 step 12").
    pub who: String,
    pub invoke: u64,
    /// `None`: no answer came (a write that may or may not have applied).
    pub complete: Option<u64>,
    pub kind: Kind,
}

/// Checks one folder's operations against `applied`: for each of its
/// files, the contents of its versions, oldest first, as the cluster holds
/// them after healing. No file existed before the first operation. `Err`
/// says why no sequential order explains what the clients saw.
pub fn check(ops: &[Op], applied: &BTreeMap<String, Vec<Value>>) -> Result<(), String> {
    let mut position: BTreeMap<(&str, Value), usize> = BTreeMap::new();
    for (file, versions) in applied {
        for (i, v) in versions.iter().enumerate() {
            if position.insert((file.as_str(), *v), i).is_some() {
                return Err(format!(
                    "{file}: content {} applied twice; every write put its own",
                    short(v)
                ));
            }
        }
    }
    let lacks = |op: &Op, file: &str, v: &Value| {
        format!(
            "{}: read content {} of {file}, which its history lacks (a write seen, then lost)",
            op.who,
            short(v)
        )
    };
    // Graph nodes: the kept operations; `writer` finds each applied write.
    let mut writer: BTreeMap<&str, Vec<Option<usize>>> = applied
        .iter()
        .map(|(f, v)| (f.as_str(), vec![None; v.len()]))
        .collect();
    let mut kept: Vec<&Op> = Vec::new();
    for op in ops {
        match &op.kind {
            Kind::Write { file, value } => match position.get(&(file.as_str(), *value)) {
                Some(&i) => {
                    let slot = writer.get_mut(file.as_str()).and_then(|s| s.get_mut(i));
                    match slot {
                        Some(slot @ None) => *slot = Some(kept.len()),
                        _ => return Err(format!("{file}: content {} written twice", short(value))),
                    }
                    kept.push(op);
                }
                None if op.complete.is_some() => {
                    return Err(format!(
                        "{}: its write of {file} was acknowledged, but the file's history lacks it",
                        op.who
                    ));
                }
                // Unanswered and never applied: it did not happen.
                None => {}
            },
            Kind::Read { file, saw: Some(v) } if !position.contains_key(&(file.as_str(), *v)) => {
                return Err(lacks(op, file, v));
            }
            Kind::List(seen) => {
                if let Some((file, v)) = seen
                    .iter()
                    .find(|(f, v)| !position.contains_key(&(f.as_str(), **v)))
                {
                    return Err(lacks(op, file, v));
                }
                kept.push(op);
            }
            Kind::Read { .. } => kept.push(op),
        }
    }
    let mut chains: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (file, slots) in &writer {
        if let Some(i) = slots.iter().position(Option::is_none) {
            return Err(format!(
                "{file}: version {} of the history holds content {} that no client wrote",
                i + 1,
                short(&applied[*file][i])
            ));
        }
        chains.insert(file, slots.iter().flatten().copied().collect());
    }

    let n = kept.len();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); n];
    for chain in chains.values() {
        for w in chain.windows(2) {
            edges[w[0]].push(w[1]);
        }
    }
    for (r, op) in kept.iter().enumerate() {
        // What the read saw of each file it looked at.
        let saw: Vec<(&str, Option<Value>)> = match &op.kind {
            Kind::Write { .. } => continue,
            Kind::Read { file, saw } => vec![(file.as_str(), *saw)],
            Kind::List(seen) => chains.keys().map(|f| (*f, seen.get(*f).copied())).collect(),
        };
        for (file, v) in saw {
            let Some(chain) = chains.get(file) else {
                // A file nobody ever wrote, read as no file: nothing to order.
                continue;
            };
            let next = match v {
                Some(v) => {
                    let i = position[&(file, v)];
                    edges[chain[i]].push(r);
                    i + 1
                }
                None => 0,
            };
            if let Some(&w) = chain.get(next) {
                edges[r].push(w);
            }
        }
    }
    // Real time: sorted by invocation, each answered operation precedes
    // every operation sent after its answer.
    let mut by_invoke: Vec<usize> = (0..n).collect();
    by_invoke.sort_by_key(|&i| kept[i].invoke);
    for (a, op) in kept.iter().enumerate() {
        let Some(done) = op.complete else { continue };
        let from = by_invoke.partition_point(|&b| kept[b].invoke <= done);
        edges[a].extend_from_slice(&by_invoke[from..]);
    }

    // Kahn: whatever remains with an incoming edge lies on or behind a cycle.
    let mut incoming = vec![0usize; n];
    for e in &edges {
        for &b in e {
            incoming[b] += 1;
        }
    }
    let mut ready: VecDeque<usize> = (0..n).filter(|&i| incoming[i] == 0).collect();
    let mut placed = 0;
    while let Some(a) = ready.pop_front() {
        placed += 1;
        for &b in &edges[a] {
            incoming[b] -= 1;
            if incoming[b] == 0 {
                ready.push_back(b);
            }
        }
    }
    if placed == n {
        return Ok(());
    }
    let cycle = find_cycle(&edges, &incoming);
    let names: Vec<String> = cycle
        .iter()
        .map(|&i| {
            let op = kept[i];
            let what = match &op.kind {
                Kind::Write { file, value } => format!("write {file} {}", short(value)),
                Kind::Read { file, saw: Some(v) } => format!("read {file} {}", short(v)),
                Kind::Read { file, saw: None } => format!("read {file}: no file"),
                Kind::List(seen) => format!(
                    "list {}",
                    seen.iter()
                        .map(|(f, v)| format!("{f}={}", short(v)))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            };
            format!("{} {what}", op.who)
        })
        .collect();
    let first = names.first().cloned().unwrap_or_default();
    Err(format!(
        "not linearizable: each must come before the next: {} -> {first}",
        names.join(" -> ")
    ))
}

/// A cycle among the nodes Kahn could not place: each of them still has an
/// unplaced predecessor, so walking predecessors must come back to a node.
fn find_cycle(edges: &[Vec<usize>], incoming: &[usize]) -> Vec<usize> {
    let stuck = |i: usize| incoming[i] > 0;
    let mut before: Vec<Vec<usize>> = vec![Vec::new(); edges.len()];
    for (a, e) in edges.iter().enumerate() {
        for &b in e {
            if stuck(a) && stuck(b) {
                before[b].push(a);
            }
        }
    }
    let Some(mut at) = (0..edges.len()).find(|&i| stuck(i)) else {
        return Vec::new();
    };
    let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
    let mut path = Vec::new();
    loop {
        if let Some(&i) = seen.get(&at) {
            let mut cycle = path[i..].to_vec();
            cycle.reverse();
            return cycle;
        }
        seen.insert(at, path.len());
        path.push(at);
        match before[at].first() {
            Some(&a) => at = a,
            None => return path,
        }
    }
}

fn short(v: &Value) -> String {
    cluster_config::ids::to_hex(&v[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(n: u8) -> Value {
        [n; 32]
    }

    fn w(who: &str, invoke: u64, complete: Option<u64>, n: u8) -> Op {
        wf(who, invoke, complete, "f", n)
    }

    fn wf(who: &str, invoke: u64, complete: Option<u64>, file: &str, n: u8) -> Op {
        Op {
            who: who.into(),
            invoke,
            complete,
            kind: Kind::Write {
                file: file.into(),
                value: v(n),
            },
        }
    }

    fn r(who: &str, invoke: u64, complete: u64, saw: Option<u8>) -> Op {
        Op {
            who: who.into(),
            invoke,
            complete: Some(complete),
            kind: Kind::Read {
                file: "f".into(),
                saw: saw.map(v),
            },
        }
    }

    fn list(who: &str, invoke: u64, complete: u64, seen: &[(&str, u8)]) -> Op {
        Op {
            who: who.into(),
            invoke,
            complete: Some(complete),
            kind: Kind::List(seen.iter().map(|(f, n)| (f.to_string(), v(*n))).collect()),
        }
    }

    /// One file's history.
    fn one(versions: &[u8]) -> BTreeMap<String, Vec<Value>> {
        [("f".to_string(), versions.iter().map(|n| v(*n)).collect())].into()
    }

    #[test]
    fn sequential_runs_pass() {
        let ops = [
            r("a", 0, 1, None),
            w("a", 2, Some(3), 1),
            r("b", 4, 5, Some(1)),
            w("b", 6, Some(7), 2),
            r("a", 8, 9, Some(2)),
        ];
        assert_eq!(check(&ops, &one(&[1, 2])), Ok(()));
    }

    #[test]
    fn concurrent_reads_may_see_either_side_of_a_write() {
        let ops = [
            w("a", 0, Some(1), 1),
            w("a", 2, Some(10), 2),
            r("b", 3, 4, Some(2)),
            r("c", 5, 6, Some(1)),
        ];
        // b saw 2 and answered before c was sent; c then saw 1: stale.
        assert!(check(&ops, &one(&[1, 2])).is_err());
        let ops = [
            w("a", 0, Some(1), 1),
            w("a", 2, Some(10), 2),
            r("b", 3, 6, Some(2)),
            r("c", 4, 5, Some(1)),
        ];
        // Overlapping reads: c before the write's point, b after it.
        assert_eq!(check(&ops, &one(&[1, 2])), Ok(()));
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_fails() {
        let ops = [
            w("a", 0, Some(1), 1),
            w("a", 2, Some(3), 2),
            r("b", 4, 5, Some(1)),
        ];
        let e = check(&ops, &one(&[1, 2])).unwrap_err();
        assert!(e.contains("not linearizable"), "{e}");
        assert!(e.contains("b read f"), "{e}");
    }

    #[test]
    fn history_order_against_real_time_fails() {
        // Write 1 was answered before write 2 was sent; the history puts 2
        // first.
        let ops = [w("a", 0, Some(1), 1), w("b", 2, Some(3), 2)];
        assert!(check(&ops, &one(&[1, 2])).is_ok());
        assert!(check(&ops, &one(&[2, 1])).is_err());
    }

    #[test]
    fn unanswered_writes_may_land_late_or_never() {
        let ops = [
            w("a", 0, None, 1),
            w("b", 5, Some(6), 2),
            r("c", 7, 8, Some(1)),
        ];
        // Applied after 2: the read of 1 at 7 is fine.
        assert_eq!(check(&ops, &one(&[2, 1])), Ok(()));
        // Never applied but read: a write seen, then lost.
        assert!(check(&ops[..2], &one(&[2])).is_ok());
        assert!(check(&ops, &one(&[2])).unwrap_err().contains("lacks"));
    }

    #[test]
    fn lost_and_invented_writes_fail() {
        let ops = [w("a", 0, Some(1), 1)];
        assert!(check(&ops, &one(&[])).unwrap_err().contains("acknowledged"));
        assert!(check(&[], &one(&[9]))
            .unwrap_err()
            .contains("no client wrote"));
    }

    #[test]
    fn reading_no_file_after_the_first_write_fails() {
        let ops = [w("a", 0, Some(1), 1), r("b", 2, 3, None)];
        assert!(check(&ops, &one(&[1])).is_err());
        let ops = [w("a", 0, Some(4), 1), r("b", 2, 3, None)];
        assert!(check(&ops, &one(&[1])).is_ok());
    }

    #[test]
    fn a_listing_is_one_snapshot_of_every_file() {
        let applied: BTreeMap<String, Vec<Value>> = [
            ("s0".to_string(), vec![v(1), v(2)]),
            ("s1".to_string(), vec![v(3), v(4)]),
        ]
        .into();
        // s0 and s1 each rewritten, the rewrites concurrent.
        let base = [
            wf("a", 0, Some(1), "s0", 1),
            wf("a", 2, Some(3), "s1", 3),
            wf("a", 10, Some(20), "s0", 2),
            wf("b", 10, Some(20), "s1", 4),
        ];
        let with = |extra: Vec<Op>| -> Vec<Op> { base.iter().cloned().chain(extra).collect() };
        // Any mix is fine while both rewrites are under way.
        assert_eq!(
            check(
                &with(vec![list("c", 11, 12, &[("s0", 2), ("s1", 3)])]),
                &applied
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &with(vec![list("c", 11, 12, &[("s0", 1), ("s1", 4)])]),
                &applied
            ),
            Ok(())
        );
        // Two listings that saw the rewrites land in opposite orders: no
        // single order of the two writes explains both.
        let e = check(
            &with(vec![
                list("c", 11, 12, &[("s0", 2), ("s1", 3)]),
                list("d", 11, 12, &[("s0", 1), ("s1", 4)]),
            ]),
            &applied,
        )
        .unwrap_err();
        assert!(e.contains("not linearizable"), "{e}");
        // A listing after both answers must show both.
        assert!(check(
            &with(vec![list("c", 21, 22, &[("s0", 2), ("s1", 3)])]),
            &applied
        )
        .is_err());
        // A file the listing lacks reads as no file: wrong once it exists.
        assert!(check(&with(vec![list("c", 4, 5, &[("s0", 1)])]), &applied).is_err());
        assert_eq!(
            check(
                &with(vec![list("c", 4, 5, &[("s0", 1), ("s1", 3)])]),
                &applied
            ),
            Ok(())
        );
    }
}
