//! The checker: judges a run's record against DESIGN §7 after the fact, as a Jepsen
//! checker does, from what producers and browsers observed (and the rows Postgres
//! holds, for where each notification sits in the stream).
//!
//! Per client (a browser that lives for the whole scenario and resumes by
//! `Last-Event-ID`), with its *baseline* the position of its first `connected` event,
//! or of its last `reset`:
//! - **expected** are the acknowledged notifications of its member that the stream
//!   holds after the baseline: the Send started after the baseline was received (so it
//!   was committed, hence published, after it), or its row records a position past it;
//! - **lost**: expected, never received. **duplicates**: a notification received twice,
//!   or two notifications of one Send (one idempotency key) for this member — stored
//!   twice. **misordered**: a position not above the previous one. **cross-member**: a
//!   notification whose content names other members only;
//! - **resets** are failures unless the scenario allows their reason (history really
//!   gone); an allowed reset moves the baseline, so what was missed before it is not
//!   lost.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use tidings_domain::EventId;

use crate::cluster::Row;
use crate::record::{Book, Seen};

/// A stream position: `(epoch, sequence)`; a re-created stream has a later epoch.
type Pos = (u64, u64);

/// The counts of a run, and what failed.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) sends_acked: usize,
    /// Acknowledged (Send, member) pairs.
    pub(crate) acked: usize,
    pub(crate) sends_unacked: usize,
    pub(crate) retried_calls: u64,
    /// Acknowledged Sends that needed more than one call.
    pub(crate) retried_sends: usize,
    pub(crate) clients: usize,
    pub(crate) connections: usize,
    /// Connections that resumed by `Last-Event-ID`.
    pub(crate) resumed: usize,
    /// Streams that ended, by why: closed by the server, silent, left by the client.
    pub(crate) closes: std::collections::BTreeMap<&'static str, usize>,
    /// Connection attempts that got no stream (an edge down, draining, or refusing).
    pub(crate) failed_connects: usize,
    /// The first few failed attempts, for the report.
    pub(crate) failed_sample: Vec<String>,
    pub(crate) expected: usize,
    pub(crate) delivered: usize,
    pub(crate) duplicates: usize,
    pub(crate) misordered: usize,
    pub(crate) lost: usize,
    pub(crate) cross_member: usize,
    pub(crate) resets: usize,
    pub(crate) unexpected_resets: usize,
    /// Deliveries of Sends no producer saw acknowledged (allowed: at most once).
    pub(crate) unacked_delivered: usize,
    /// Acknowledged rows without a stream position.
    pub(crate) unpublished: usize,
    /// Longest ack → first delivery to a client, over expected deliveries.
    pub(crate) max_recovery: Duration,
    /// Longest first call → ack of a Send (what a producer waited, retries included).
    pub(crate) max_send: Duration,
    pub(crate) failures: Vec<String>,
}

impl Report {
    pub(crate) fn is_clean(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "acked {} ({} sends, {} retried, {} retried calls; {} never acked) | \
             clients {} connections {} (resumed {}, closes {:?}, failed connects {}) | \
             expected {} delivered {} | duplicates {} misordered {} lost {} cross-member {} | \
             resets {} (unexpected {}) | unacked delivered {} unpublished {} | \
             max recovery {} ms, max send {} ms",
            self.acked,
            self.sends_acked,
            self.retried_sends,
            self.retried_calls,
            self.sends_unacked,
            self.clients,
            self.connections,
            self.resumed,
            self.closes,
            self.failed_connects,
            self.expected,
            self.delivered,
            self.duplicates,
            self.misordered,
            self.lost,
            self.cross_member,
            self.resets,
            self.unexpected_resets,
            self.unacked_delivered,
            self.unpublished,
            self.max_recovery.as_millis(),
            self.max_send.as_millis(),
        )?;
        for failed in &self.failed_sample {
            writeln!(f, "  (a connect failed: {failed})")?;
        }
        let shown = self.failures.len().min(25);
        for failure in &self.failures[..shown] {
            writeln!(f, "  FAIL {failure}")?;
        }
        if self.failures.len() > shown {
            writeln!(f, "  … and {} more failures", self.failures.len() - shown)?;
        }
        Ok(())
    }
}

/// A position spelled as an event id.
fn show(p: Pos) -> String {
    EventId::new(tidings_domain::StreamEpoch(p.0), p.1).to_string()
}

fn pos(id: &str) -> Option<Pos> {
    EventId::parse(id).ok().map(|e| (e.epoch.0, e.seq))
}

/// Judges `book` with the notification `rows`; resets whose reason is in
/// `allowed_resets` are legitimate.
pub(crate) fn check(book: &Book, rows: &[Row], allowed_resets: &[&str]) -> Report {
    let mut report = Report::default();
    let row_pos: HashMap<&str, Option<Pos>> = rows
        .iter()
        .map(|(id, _, epoch, seq, _)| {
            let pos = epoch.zip(*seq).map(|(e, s)| (e.unsigned_abs(), s.unsigned_abs()));
            (id.as_str(), pos)
        })
        .collect();
    let acked_ids: HashSet<&str> = book.acks.iter().map(|a| a.notification_id.as_str()).collect();

    // The producers' side.
    let mut keys = HashSet::new();
    for ack in &book.acks {
        keys.insert(ack.key.as_str());
        report.max_send = report.max_send.max(ack.acked.saturating_duration_since(ack.started));
        match row_pos.get(ack.notification_id.as_str()) {
            None => report.failures.push(format!(
                "acked {} for {} ({}) has no row",
                ack.key, ack.member, ack.notification_id
            )),
            Some(None) => report.unpublished += 1,
            Some(Some(_)) => {}
        }
    }
    report.acked = book.acks.len();
    report.sends_acked = keys.len();
    report.retried_sends = book
        .acks
        .iter()
        .filter(|a| a.attempts > 1)
        .map(|a| a.key.as_str())
        .collect::<HashSet<_>>()
        .len();
    report.sends_unacked = book.unacked.len();
    report.retried_calls = book.retries;
    if report.unpublished > 0 {
        report.failures.push(format!(
            "{} acknowledged rows never got a stream position",
            report.unpublished
        ));
    }
    let mut stored: HashMap<(&str, &str), usize> = HashMap::new();
    for (_, member, _, _, key) in rows {
        if let Some(key) = key {
            *stored.entry((key.as_str(), member.as_str())).or_default() += 1;
        }
    }
    for ((key, member), n) in stored {
        if n > 1 {
            report.failures.push(format!("{key} stored {n} times for {member}"));
        }
    }

    // The browsers' side.
    report.clients = book.clients.len();
    for (index, client) in book.clients.iter().enumerate() {
        let name = format!("client {index} ({})", client.member);
        let mut baseline: Option<(Pos, Instant)> = None;
        let mut last: Option<Pos> = None;
        let mut first_seen: HashMap<&str, Instant> = HashMap::new();
        let mut key_ids: HashMap<&str, &str> = HashMap::new();
        for (at, seen) in &client.seen {
            match seen {
                Seen::Connected { id, resumed, .. } => {
                    report.connections += 1;
                    report.resumed += usize::from(*resumed);
                    if baseline.is_none() {
                        match pos(id) {
                            Some(p) => baseline = Some((p, *at)),
                            None => report.failures.push(format!("{name}: connected with a bad id {id:?}")),
                        }
                    }
                }
                Seen::Reset { id, reason } => {
                    report.resets += 1;
                    if !allowed_resets.contains(&reason.as_str()) {
                        report.unexpected_resets += 1;
                        report
                            .failures
                            .push(format!("{name}: reset {reason} (id {id:?}) for a recoverable fault"));
                    }
                    let at_pos = id.as_deref().and_then(pos).or(last).unwrap_or((0, 0));
                    baseline = Some((at_pos, *at));
                    last = None;
                }
                Seen::Notification {
                    id,
                    notification_id,
                    content,
                } => {
                    report.delivered += 1;
                    let (key, members) = content.split_once('|').unwrap_or((content, ""));
                    if !members.split(',').any(|m| m == client.member) {
                        report.cross_member += 1;
                        report.failures.push(format!("{name}: got {key} meant for {members:?}"));
                    }
                    if !acked_ids.contains(notification_id.as_str()) && !keys.contains(key) {
                        report.unacked_delivered += 1;
                    }
                    if first_seen.contains_key(notification_id.as_str()) {
                        report.duplicates += 1;
                        report
                            .failures
                            .push(format!("{name}: {key} ({notification_id}) again at {id}"));
                        continue;
                    }
                    first_seen.insert(notification_id, *at);
                    if let Some(other) = key_ids.insert(key, notification_id) {
                        report.duplicates += 1;
                        report.failures.push(format!(
                            "{name}: {key} arrived as two notifications ({other}, then {notification_id} at {id})"
                        ));
                    }
                    match pos(id) {
                        None => report.failures.push(format!("{name}: {key} with a bad id {id:?}")),
                        Some(p) => {
                            if let Some(prev) = last.filter(|prev| p <= *prev) {
                                report.misordered += 1;
                                let prev = show(prev);
                                report.failures.push(format!("{name}: {key} at {id} after {prev}"));
                            }
                            last = Some(last.map_or(p, |prev| prev.max(p)));
                        }
                    }
                }
                Seen::Closed { why } => *report.closes.entry(why).or_default() += 1,
                Seen::Failed { why } => {
                    report.failed_connects += 1;
                    if report.failed_sample.len() < 3 {
                        report.failed_sample.push(format!("{name}: {why}"));
                    }
                }
            }
        }
        let Some((base_pos, base_at)) = baseline else {
            report.failures.push(format!("{name}: never connected"));
            continue;
        };
        let mut lost_here = Vec::new();
        for ack in book.acks.iter().filter(|a| a.member == client.member) {
            let after_by_time = ack.started > base_at;
            let after_by_pos = row_pos
                .get(ack.notification_id.as_str())
                .copied()
                .flatten()
                .is_some_and(|p| p.0 == base_pos.0 && p > base_pos);
            if !(after_by_time || after_by_pos) {
                continue;
            }
            report.expected += 1;
            match first_seen.get(ack.notification_id.as_str()) {
                Some(at) => {
                    report.max_recovery = report.max_recovery.max(at.saturating_duration_since(ack.acked));
                }
                None => {
                    report.lost += 1;
                    let stored = row_pos
                        .get(ack.notification_id.as_str())
                        .copied()
                        .flatten()
                        .map_or_else(|| "nowhere".to_owned(), show);
                    let acked_as = if ack.event_id.is_empty() {
                        "relayed"
                    } else {
                        &ack.event_id
                    };
                    lost_here.push(format!("{} (acked as {acked_as}, row at {stored})", ack.key));
                }
            }
        }
        if !lost_here.is_empty() {
            let shown: Vec<_> = lost_here.iter().take(3).cloned().collect();
            report.failures.push(format!(
                "{name}: lost {} acknowledged, e.g. {}",
                lost_here.len(),
                shown.join(", ")
            ));
        }
    }
    report
}

/// The checker itself can fail: each violation it exists for, made by hand.
#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::check;
    use crate::cluster::Row;
    use crate::record::{Ack, Book, ClientLog, Seen};

    const EPOCH: &str = "18ea3c347dd1bd36";

    fn id(seq: u64) -> String {
        format!("{EPOCH}-{seq}")
    }

    /// Sends `key` to `member` acked at stream position `seq`, started at `t`.
    fn ack(key: &str, member: &str, seq: u64, t: Instant) -> (Ack, Row) {
        let nid = format!("n-{key}-{member}");
        let epoch = i64::from_str_radix(EPOCH, 16).unwrap();
        let ack = Ack {
            key: key.into(),
            member: member.into(),
            notification_id: nid.clone(),
            event_id: id(seq),
            started: t,
            acked: t + Duration::from_millis(5),
            attempts: 1,
        };
        (
            ack,
            (nid, member.into(), Some(epoch), Some(seq as i64), Some(key.into())),
        )
    }

    fn got(key: &str, member: &str, seq: u64) -> Seen {
        Seen::Notification {
            id: id(seq),
            notification_id: format!("n-{key}-{member}"),
            content: format!("{key}|{member}"),
        }
    }

    fn client(member: &str, t0: Instant, seen: Vec<Seen>) -> ClientLog {
        let mut log = vec![(
            t0,
            Seen::Connected {
                id: id(0),
                node: "edge0".into(),
                resumed: false,
            },
        )];
        log.extend(
            seen.into_iter()
                .enumerate()
                .map(|(i, s)| (t0 + Duration::from_millis(100 + i as u64), s)),
        );
        ClientLog {
            member: member.into(),
            seen: log,
        }
    }

    fn book(acks: &[(Ack, Row)], clients: Vec<ClientLog>) -> (Book, Vec<Row>) {
        let book = Book {
            acks: acks.iter().map(|(a, _)| a.clone()).collect(),
            clients,
            ..Book::default()
        };
        (book, acks.iter().map(|(_, r)| r.clone()).collect())
    }

    #[test]
    fn a_clean_run_is_clean_and_each_violation_is_counted() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(10);
        let sends = [ack("k1", "a", 1, t1), ack("k2", "a", 2, t1), ack("k3", "b", 3, t1)];

        let (clean, rows) = book(
            &sends,
            vec![
                client("a", t0, vec![got("k1", "a", 1), got("k2", "a", 2)]),
                client("b", t0, vec![got("k3", "b", 3)]),
            ],
        );
        let report = check(&clean, &rows, &[]);
        assert!(report.is_clean(), "{report}");
        assert_eq!((report.expected, report.delivered), (3, 3));

        let (lost, rows) = book(&sends, vec![client("a", t0, vec![got("k2", "a", 2)])]);
        let report = check(&lost, &rows, &[]);
        assert_eq!(report.lost, 1, "{report}");
        assert!(!report.is_clean());

        let (twice, rows) = book(
            &sends,
            vec![client(
                "a",
                t0,
                vec![got("k1", "a", 1), got("k1", "a", 1), got("k2", "a", 2)],
            )],
        );
        assert_eq!(check(&twice, &rows, &[]).duplicates, 1);

        let (reordered, rows) = book(
            &sends,
            vec![client("a", t0, vec![got("k2", "a", 2), got("k1", "a", 1)])],
        );
        assert_eq!(check(&reordered, &rows, &[]).misordered, 1);

        let (crossed, rows) = book(
            &sends,
            vec![client("b", t0, vec![got("k1", "a", 1), got("k3", "b", 3)])],
        );
        assert_eq!(check(&crossed, &rows, &[]).cross_member, 1);

        // One Send stored as two notifications reaches the member twice.
        let mut doubled = sends.to_vec();
        let (mut again, mut row) = ack("k1", "a", 4, t1);
        again.notification_id = "n-k1-a-copy".into();
        row.0 = again.notification_id.clone();
        doubled.push((again, row));
        let copy = Seen::Notification {
            id: id(4),
            notification_id: "n-k1-a-copy".into(),
            content: "k1|a".into(),
        };
        let (stored_twice, rows) = book(
            &doubled,
            vec![client("a", t0, vec![got("k1", "a", 1), got("k2", "a", 2), copy])],
        );
        let report = check(&stored_twice, &rows, &[]);
        assert_eq!(report.duplicates, 1, "{report}");
        assert!(report.failures.iter().any(|f| f.contains("stored 2 times")), "{report}");
    }

    #[test]
    fn a_reset_fails_unless_allowed_and_an_allowed_one_moves_the_baseline() {
        let t0 = Instant::now();
        let sends = [ack("k1", "a", 1, t0 + Duration::from_millis(10))];
        let reset = Seen::Reset {
            id: Some(id(1)),
            reason: "live_gap".into(),
        };
        let (b, rows) = book(&sends, vec![client("a", t0, vec![reset])]);
        let refused = check(&b, &rows, &[]);
        assert_eq!(refused.unexpected_resets, 1, "{refused}");
        assert!(!refused.is_clean());
        // Allowed, it forgives what it says is gone (k1, at or before its position).
        let allowed = check(&b, &rows, &["live_gap"]);
        assert!(allowed.is_clean(), "{allowed}");
        assert_eq!(allowed.lost, 0);
    }
}
