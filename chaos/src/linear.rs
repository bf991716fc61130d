//! Linearizability of one file, from the operations clients recorded on it.
//!
//! A file is a register: writes put a content, reads return one (or no
//! file). Every write puts a content no other write puts, so a read names
//! the write it saw; and after healing, the file's history is the order
//! the cluster applied its writes in. With both known, a history is
//! linearizable exactly when the "must come before" graph below has no
//! cycle (checking a register with a known read-from mapping and write
//! order is polynomial; the general problem is not):
//!
//! - a before b when a's answer came before b was sent (real time);
//! - each applied write before the next one in the file's history;
//! - the write a read saw before that read;
//! - a read before the write that followed the one it saw (or, for a read
//!   that saw no file, before the first write).
//!
//! A topological order of an acyclic graph is a sequential run that gives
//! every read the answer it got; a cycle is a set of operations no order
//! can satisfy, and is reported.

use std::collections::{BTreeMap, VecDeque};

/// A content's hash: what a write puts and a read returns.
pub type Value = [u8; 32];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Write(Value),
    /// `None`: the read found no file.
    Read(Option<Value>),
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

/// Checks one file's operations against `applied`: the contents of its
/// versions, oldest first, as the cluster holds them after healing. The
/// file did not exist before the first operation. `Err` says why no
/// sequential order explains what the clients saw.
pub fn check(ops: &[Op], applied: &[Value]) -> Result<(), String> {
    let mut position: BTreeMap<Value, usize> = BTreeMap::new();
    for (i, v) in applied.iter().enumerate() {
        if position.insert(*v, i).is_some() {
            return Err(format!(
                "content {} applied twice; every write put its own",
                short(v)
            ));
        }
    }
    // Graph nodes: the writes in applied order, then the kept operations.
    let mut writer: Vec<Option<usize>> = vec![None; applied.len()];
    let mut kept: Vec<&Op> = Vec::new();
    for op in ops {
        match op.kind {
            Kind::Write(v) => match position.get(&v) {
                Some(&i) => {
                    if writer[i].is_some() {
                        return Err(format!("content {} written twice", short(&v)));
                    }
                    writer[i] = Some(kept.len());
                    kept.push(op);
                }
                None if op.complete.is_some() => {
                    return Err(format!(
                        "{}: its write was acknowledged, but the file's history lacks it",
                        op.who
                    ));
                }
                // Unanswered and never applied: it did not happen.
                None => {}
            },
            Kind::Read(Some(v)) if !position.contains_key(&v) => {
                return Err(format!(
                    "{}: read content {}, which the file's history lacks (a write seen, then lost)",
                    op.who,
                    short(&v)
                ));
            }
            Kind::Read(_) => kept.push(op),
        }
    }
    if let Some(i) = writer.iter().position(Option::is_none) {
        return Err(format!(
            "version {} of the history holds content {} that no client wrote",
            i + 1,
            short(&applied[i])
        ));
    }
    let writer: Vec<usize> = writer.into_iter().flatten().collect();

    let n = kept.len();
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); n];
    for w in writer.windows(2) {
        edges[w[0]].push(w[1]);
    }
    for (r, op) in kept.iter().enumerate() {
        let Kind::Read(saw) = op.kind else { continue };
        let next = match saw {
            Some(v) => {
                let i = position[&v];
                edges[writer[i]].push(r);
                i + 1
            }
            None => 0,
        };
        if let Some(&w) = writer.get(next) {
            edges[r].push(w);
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
            let what = match op.kind {
                Kind::Write(v) => format!("write {}", short(&v)),
                Kind::Read(Some(v)) => format!("read {}", short(&v)),
                Kind::Read(None) => "read no file".into(),
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
        Op {
            who: who.into(),
            invoke,
            complete,
            kind: Kind::Write(v(n)),
        }
    }

    fn r(who: &str, invoke: u64, complete: u64, saw: Option<u8>) -> Op {
        Op {
            who: who.into(),
            invoke,
            complete: Some(complete),
            kind: Kind::Read(saw.map(v)),
        }
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
        assert_eq!(check(&ops, &[v(1), v(2)]), Ok(()));
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
        assert!(check(&ops, &[v(1), v(2)]).is_err());
        let ops = [
            w("a", 0, Some(1), 1),
            w("a", 2, Some(10), 2),
            r("b", 3, 6, Some(2)),
            r("c", 4, 5, Some(1)),
        ];
        // Overlapping reads: c before the write's point, b after it.
        assert_eq!(check(&ops, &[v(1), v(2)]), Ok(()));
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_fails() {
        let ops = [
            w("a", 0, Some(1), 1),
            w("a", 2, Some(3), 2),
            r("b", 4, 5, Some(1)),
        ];
        let e = check(&ops, &[v(1), v(2)]).unwrap_err();
        assert!(e.contains("not linearizable"), "{e}");
    }

    #[test]
    fn history_order_against_real_time_fails() {
        // Write 1 was answered before write 2 was sent; the history puts 2
        // first.
        let ops = [w("a", 0, Some(1), 1), w("b", 2, Some(3), 2)];
        assert!(check(&ops, &[v(1), v(2)]).is_ok());
        assert!(check(&ops, &[v(2), v(1)]).is_err());
    }

    #[test]
    fn unanswered_writes_may_land_late_or_never() {
        let ops = [
            w("a", 0, None, 1),
            w("b", 5, Some(6), 2),
            r("c", 7, 8, Some(1)),
        ];
        // Applied after 2: the read of 1 at 7 is fine.
        assert_eq!(check(&ops, &[v(2), v(1)]), Ok(()));
        // Never applied but read: a write seen, then lost.
        assert!(check(&ops[..2], &[v(2)]).is_ok());
        assert!(check(&ops, &[v(2)]).unwrap_err().contains("lacks"));
    }

    #[test]
    fn lost_and_invented_writes_fail() {
        let ops = [w("a", 0, Some(1), 1)];
        assert!(check(&ops, &[]).unwrap_err().contains("acknowledged"));
        assert!(check(&[], &[v(9)]).unwrap_err().contains("no client wrote"));
    }

    #[test]
    fn reading_no_file_after_the_first_write_fails() {
        let ops = [w("a", 0, Some(1), 1), r("b", 2, 3, None)];
        assert!(check(&ops, &[v(1)]).is_err());
        let ops = [w("a", 0, Some(4), 1), r("b", 2, 3, None)];
        assert!(check(&ops, &[v(1)]).is_ok());
    }
}
