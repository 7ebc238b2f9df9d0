//! Replay against a real nats-server: the batch Direct Get path returns exactly what
//! the ordered-consumer path (the 2.10 path and the fallback) returns, and each path
//! is proven taken by the JetStream API requests the server sees.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use futures::StreamExt as _;
use tidings_bus::{Bus, Outgoing, Replay, ReplayCounts, ReplayRange};
use tidings_domain::{MemberId, Topic};
use tidings_testkit::{NatsCluster, TestBus, init_test_log};

const LIMIT: u32 = 1000;
const NONE: [u64; 0] = [];

/// Publishes `(subject, event)` pairs in order through the roles' own publish path;
/// returns their sequences.
///
/// A stream just created on a cluster may not have its subjects' interest on every
/// server yet, and a publish there gets no responders (async-nats calls it
/// `StreamNotFound`): nothing was stored, and the batch is sent again, for at most 5 s.
async fn publish(bus: &Bus, messages: &[(&str, Option<&str>)]) -> Vec<u64> {
    let outgoing = || {
        messages
            .iter()
            .enumerate()
            .map(|(i, (subject, event))| Outgoing {
                subject: (*subject).to_owned(),
                msg_id: None,
                event: event.map(str::to_owned),
                traceparent: None,
                unread: None,
                payload: format!("{{\"n\":{i}}}").into(),
            })
            .collect()
    };
    let unanswered = |r: &Result<_, async_nats::jetstream::context::PublishError>| {
        r.as_ref()
            .is_err_and(|e| e.kind() == async_nats::jetstream::context::PublishErrorKind::StreamNotFound)
    };
    let mut results = bus.publish_all(outgoing(), Duration::from_secs(5)).await;
    for _ in 0..50 {
        if results.is_empty() || !results.iter().all(unanswered) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        results = bus.publish_all(outgoing(), Duration::from_secs(5)).await;
    }
    results.into_iter().map(|r| r.unwrap().seq).collect()
}

fn range(subjects: Vec<String>, from: u64, until: Option<u64>, complete_to: Option<u64>) -> ReplayRange {
    ReplayRange {
        subjects,
        from,
        until,
        complete_to,
    }
}

/// Replays through both paths and checks they agree and that each path served its own
/// call (the Direct Get one without falling back); returns the result.
async fn both(bus: &Bus, subjects: &[String], from: u64, until: Option<u64>, limit: u32) -> Replay {
    assert!(bus.direct_get(), "the test server supports batch Direct Get");
    let consumer_bus = bus.clone().without_direct_get();
    let before = bus.replay_counts();
    let at_least = Some(last_seq(bus).await);
    let direct = bus
        .replay(range(subjects.to_vec(), from, until, at_least), limit)
        .await
        .unwrap();
    let after_direct = bus.replay_counts();
    assert_eq!(
        after_direct,
        ReplayCounts {
            direct: before.direct + 1,
            ..before
        },
        "answered by Direct Get without falling back"
    );
    let consumer = consumer_bus
        .replay(range(subjects.to_vec(), from, until, at_least), limit)
        .await
        .unwrap();
    assert_eq!(
        bus.replay_counts().consumer,
        after_direct.consumer + 1,
        "the 2.10 path ran"
    );
    match (&direct, &consumer) {
        (Replay::TooMany { .. }, Replay::TooMany { .. }) => {}
        _ => assert_eq!(direct, consumer, "from {from} until {until:?} limit {limit}"),
    }
    direct
}

async fn last_seq(bus: &Bus) -> u64 {
    bus.extent().await.unwrap().last_seq
}

fn seqs(replay: &Replay) -> Vec<u64> {
    match replay {
        Replay::Events(events) => events.iter().map(|e| e.seq).collect(),
        Replay::TooMany { pending } => panic!("too many: {pending}"),
    }
}

fn member(bus: &Bus, name: &str) -> String {
    bus.subjects().member(&MemberId::parse(name).unwrap())
}

fn topic(bus: &Bus, name: &str) -> String {
    bus.subjects().topic(&Topic::parse(name).unwrap())
}

/// Counts JetStream API requests whose subject starts with `prefix` while `action`
/// runs (the server delivers a copy of every request to any subscriber in the account).
async fn requests_to<T>(bus: &Bus, prefix: String, action: impl std::future::Future<Output = T>) -> (usize, T) {
    let watcher = bus.client().clone();
    let mut sub = watcher.subscribe("$JS.API.>").await.unwrap();
    watcher.flush().await.unwrap();
    let out = action.await;
    watcher.flush().await.unwrap();
    let mut seen = 0;
    while let Ok(Some(request)) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
        seen += usize::from(request.subject.starts_with(prefix.as_str()));
    }
    (seen, out)
}

#[tokio::test]
async fn direct_get_replays_interleaved_subjects_exactly_as_the_consumer_does() {
    init_test_log();
    let ns = TestBus::new().await;
    let bus = &ns.bus;
    let (alice, bob, news) = (member(bus, "alice"), member(bus, "bob"), topic(bus, "news"));
    let mut messages = Vec::new();
    for i in 0..30 {
        let subject = [&alice, &bob, &news, &alice, &news][i % 5].as_str();
        let event = (subject == news && i % 2 == 0).then_some("headline");
        messages.push((subject, event));
    }
    // An unread-count change is a member message too; it replays like the rest.
    messages.push((alice.as_str(), Some("unread")));
    let published = publish(bus, &messages).await;
    let of = |subjects: &[&String], from: u64, until: u64| -> Vec<u64> {
        published
            .iter()
            .zip(&messages)
            .filter(|(seq, (s, _))| subjects.iter().any(|x| x == s) && **seq >= from && **seq <= until)
            .map(|(seq, _)| *seq)
            .collect()
    };
    let subjects = vec![alice.clone(), news.clone()];
    let last = *published.last().unwrap();
    for from in [0, 1, 2, 7, 17, last] {
        let replay = both(bus, &subjects, from, None, LIMIT).await;
        assert_eq!(seqs(&replay), of(&[&alice, &news], from, u64::MAX), "from {from}");
    }
    let replay = both(bus, std::slice::from_ref(&bob), 1, None, LIMIT).await;
    assert_eq!(seqs(&replay), of(&[&bob], 1, u64::MAX));
    // Events decode the same: kinds, subjects, payloads, headers.
    let Replay::Events(events) = both(bus, &subjects, 1, None, LIMIT).await else {
        panic!("events")
    };
    assert!(events.iter().any(|e| e.kind == tidings_bus::EventKind::UnreadChanged));
    assert!(
        events
            .iter()
            .any(|e| e.kind == tidings_bus::EventKind::Topic("headline".into()))
    );
    assert!(events.iter().all(|e| e.published_at.is_some()));
}

#[tokio::test]
async fn direct_get_respects_from_until_and_the_limit() {
    init_test_log();
    let ns = TestBus::new().await;
    let bus = &ns.bus;
    let (carol, dave) = (member(bus, "carol"), member(bus, "dave"));
    let messages: Vec<_> = (0..40)
        .map(|i| (if i % 3 == 0 { dave.as_str() } else { carol.as_str() }, None))
        .collect();
    let published = publish(bus, &messages).await;
    let carols: Vec<u64> = published
        .iter()
        .zip(&messages)
        .filter(|(_, (s, _))| *s == carol)
        .map(|(seq, _)| *seq)
        .collect();
    let subjects = vec![carol.clone()];

    // Upper bounds: inside, on a message, between messages, below `from`.
    for (from, until) in [(1, 10), (5, 5), (4, 4), (10, 30), (20, 19), (1, 1000)] {
        let replay = both(bus, &subjects, from, Some(until), LIMIT).await;
        let expected: Vec<u64> = carols.iter().copied().filter(|s| (from..=until).contains(s)).collect();
        assert_eq!(seqs(&replay), expected, "from {from} until {until}");
    }

    // The limit: exactly as many as allowed replays, one more is too many.
    let count = carols.len() as u32;
    assert_eq!(seqs(&both(bus, &subjects, 1, None, count).await), carols);
    assert!(matches!(
        both(bus, &subjects, 1, None, count - 1).await,
        Replay::TooMany { pending } if pending == u64::from(count)
    ));
    // With an upper bound the limit applies to what lies below it.
    let below: Vec<u64> = carols.iter().copied().filter(|s| *s <= 20).collect();
    let n = below.len() as u32;
    assert_eq!(seqs(&both(bus, &subjects, 1, Some(20), n).await), below);
    assert!(matches!(
        both(bus, &subjects, 1, Some(20), n - 1).await,
        Replay::TooMany { .. }
    ));
    // Across several subjects the limit counts them together.
    let all = vec![carol.clone(), dave.clone()];
    assert!(matches!(both(bus, &all, 1, None, 39).await, Replay::TooMany { .. }));
    assert_eq!(seqs(&both(bus, &all, 1, None, 40).await).len(), 40);
    // Limits far beyond one page of a Direct Get request page on.
    let many: Vec<_> = (0..1500).map(|_| (dave.as_str(), None)).collect();
    publish(bus, &many).await;
    assert_eq!(
        seqs(&both(bus, std::slice::from_ref(&dave), 1, None, 5000).await).len(),
        1500 + 14
    );
}

#[tokio::test]
async fn a_replay_holds_nothing_after_its_at_least_position_on_both_paths() {
    init_test_log();
    let ns = TestBus::new().await;
    let bus = &ns.bus;
    let (frank, news) = (member(bus, "frank"), topic(bus, "news"));
    // A sparse member subject and a busy topic: read subject by subject, the member's
    // next message lies far past the position, with the topic's messages in between.
    let messages: Vec<_> = (0..30)
        .map(|i| (if i % 10 == 0 { frank.as_str() } else { news.as_str() }, None))
        .collect();
    let published = publish(bus, &messages).await;
    let subjects = vec![frank.clone(), news.clone()];
    let consumer_bus = bus.clone().without_direct_get();
    for at_least in [published[4], published[10], published[25]] {
        let expected: Vec<u64> = published.iter().copied().filter(|s| *s <= at_least).collect();
        for (path, b) in [("direct", bus), ("consumer", &consumer_bus)] {
            let replay = b
                .replay(ReplayRange::resume(subjects.clone(), 1, at_least), LIMIT)
                .await
                .unwrap();
            assert_eq!(seqs(&replay), expected, "{path} path, at least {at_least}");
        }
    }
}

#[tokio::test]
async fn a_range_read_in_one_pass_holds_every_message_of_every_subject_once() {
    init_test_log();
    let ns = TestBus::new().await;
    let bus = &ns.bus;
    let members: Vec<String> = (0..6).map(|i| member(bus, &format!("m{i}"))).collect();
    let news = topic(bus, "news");
    let messages: Vec<_> = (0..60)
        .map(|i| {
            (
                if i % 4 == 3 {
                    news.as_str()
                } else {
                    members[i % 6].as_str()
                },
                None,
            )
        })
        .collect();
    let published = publish(bus, &messages).await;
    let (from, until) = (published[5], published[40]);
    let before = bus.replay_counts();
    let range = bus.read_range(from, until, 1 << 20).await.unwrap();
    let after = bus.replay_counts();
    assert_eq!(seqs(&Replay::Events(range.clone())), published[5..=40]);
    assert_eq!(
        (after.scans, after.scanned_messages),
        (before.scans + 1, before.scanned_messages + 36)
    );
    // The same events a replay of all those subjects reads, decoded the same.
    let mut subjects = members.clone();
    subjects.push(news.clone());
    let replayed = bus
        .replay(ReplayRange::resume(subjects, from, until), LIMIT)
        .await
        .unwrap();
    assert_eq!(Replay::Events(range), replayed);
    // Bounded by payload size: an error, never a partial range.
    let err = bus.read_range(1, until, 64).await.unwrap_err();
    assert!(err.to_string().contains("more than 64 bytes"), "{err}");
    assert_eq!(bus.read_range(until + 1, until, 1 << 20).await.unwrap(), []);
}

#[tokio::test]
async fn nothing_to_replay_is_an_empty_answer_on_both_paths() {
    init_test_log();
    let ns = TestBus::new().await;
    let bus = &ns.bus;
    let (erin, never) = (member(bus, "erin"), member(bus, "never-sent-to"));
    // An empty stream, then subjects without any message.
    assert_eq!(
        seqs(&both(bus, std::slice::from_ref(&erin), 1, None, LIMIT).await),
        NONE
    );
    publish(bus, &[(erin.as_str(), None), (erin.as_str(), None)]).await;
    let last = last_seq(bus).await;
    assert_eq!(
        seqs(&both(bus, std::slice::from_ref(&never), 1, None, LIMIT).await),
        NONE
    );
    assert_eq!(
        seqs(&both(bus, &[never.clone(), topic(bus, "quiet")], 1, None, LIMIT).await),
        NONE
    );
    // `from` just past the end, and far beyond it.
    for from in [last + 1, last + 1000] {
        assert_eq!(
            seqs(&both(bus, &[erin.clone(), never.clone()], from, None, LIMIT).await),
            NONE,
            "from {from}"
        );
    }
    // No subjects: nothing asked at all.
    assert_eq!(
        bus.replay(ReplayRange::from(Vec::new(), 1), LIMIT).await.unwrap(),
        Replay::Events(Vec::new())
    );
}

#[tokio::test]
async fn subject_delete_markers_are_skipped_on_both_paths() {
    init_test_log();
    let ns = TestBus::new().await;
    let bus = &ns.bus;
    let (frank, gina) = (member(bus, "frank"), member(bus, "gina"));
    let before = publish(bus, &[(frank.as_str(), None), (gina.as_str(), None)]).await;
    // What the server stores when retention removes a subject's last message: no
    // payload, `Nats-Marker-Reason` (plus `Nats-TTL`, `Nats-Rollup`). Stored here by
    // hand, as the server's own need its TTL timer.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Marker-Reason", "MaxAge");
    let marker = bus
        .jetstream()
        .send_publish(frank.clone(), PublishMessage::build().headers(headers))
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;
    let after = publish(bus, &[(gina.as_str(), None), (frank.as_str(), None)]).await;

    let subjects = vec![frank.clone(), gina.clone()];
    let replay = both(bus, &subjects, 1, None, LIMIT).await;
    let mut expected = [before.clone(), after.clone()].concat();
    expected.sort_unstable();
    assert_eq!(seqs(&replay), expected, "everything but the marker at {marker}");
    let replay = both(bus, std::slice::from_ref(&frank), marker, Some(marker), LIMIT).await;
    assert_eq!(seqs(&replay), NONE, "the marker alone replays as nothing");
    // A replay bounded by a position (as every resume is) counts only events against
    // its limit, markers not.
    let replay = both(bus, std::slice::from_ref(&frank), 1, None, 2).await;
    assert_eq!(seqs(&replay), [before[0], after[1]]);
    let replay = both(bus, std::slice::from_ref(&frank), 1, None, 1).await;
    assert!(matches!(replay, Replay::TooMany { .. }), "{replay:?}");
}

#[tokio::test]
async fn direct_get_falls_back_to_a_consumer_when_it_cannot_prove_its_answer_complete() {
    init_test_log();
    let ns = TestBus::new().await;
    let bus = &ns.bus;
    let hank = member(bus, "hank");
    let published = publish(bus, &[(hank.as_str(), None), (hank.as_str(), None)]).await;
    let last = *published.last().unwrap();
    let expected = Replay::Events(
        match bus
            .replay(ReplayRange::resume(vec![hank.clone()], 1, last), LIMIT)
            .await
        {
            Ok(Replay::Events(events)) => events,
            other => panic!("{other:?}"),
        },
    );
    assert_eq!(seqs(&expected), published);

    // A position no server has reached: no answer can be proven complete (as with a
    // follower that is behind), so the consumer answers, with the same events.
    let before = bus.replay_counts();
    let replay = bus
        .replay(ReplayRange::resume(vec![hank.clone()], 1, last + 5), LIMIT)
        .await
        .unwrap();
    assert_eq!(replay, expected);
    let after = bus.replay_counts();
    assert_eq!(
        (after.direct, after.consumer, after.fallbacks),
        (before.direct, before.consumer + 1, before.fallbacks + 1)
    );

    // The 2.10 path creates one consumer and no Direct Get request; the Direct Get
    // path creates no consumer.
    let name = bus.stream_name().to_owned();
    let old = bus.clone().without_direct_get();
    let (creates, replay) = requests_to(
        bus,
        format!("$JS.API.CONSUMER.CREATE.{name}"),
        old.replay(ReplayRange::resume(vec![hank.clone()], 1, last), LIMIT),
    )
    .await;
    assert_eq!((creates, replay.unwrap()), (1, expected.clone()));
    let (direct_gets, _) = requests_to(
        bus,
        format!("$JS.API.DIRECT.GET.{name}"),
        old.replay(ReplayRange::resume(vec![hank.clone()], 1, last), LIMIT),
    )
    .await;
    assert_eq!(direct_gets, 0);
    let (creates, replay) = requests_to(
        bus,
        format!("$JS.API.CONSUMER.CREATE.{name}"),
        bus.replay(ReplayRange::resume(vec![hank.clone()], 1, last), LIMIT),
    )
    .await;
    assert_eq!((creates, replay.unwrap()), (0, expected));
}

#[tokio::test]
async fn the_extent_costs_one_stream_info_request() {
    init_test_log();
    let ns = TestBus::new().await;
    let bus = &ns.bus;
    let published = publish(bus, &[(member(bus, "ivy").as_str(), None)]).await;
    let (infos, extent) = requests_to(bus, format!("$JS.API.STREAM.INFO.{}", bus.stream_name()), bus.extent()).await;
    let extent = extent.unwrap();
    assert_eq!((extent.first_seq, extent.last_seq), (1, published[0]));
    assert_eq!(infos, 1);
}

#[tokio::test]
async fn on_a_replicated_stream_every_replay_holds_every_acknowledged_message() {
    init_test_log();
    let cluster = NatsCluster::start(3).await;
    let ns = TestBus::replicated(cluster.urls(), 3).await;
    let bus = &ns.bus;
    let jay = member(bus, "jay");
    // Each replay right after an acknowledged publish, answered by whichever replica:
    // a follower that has not applied the newest message yet must not be believed.
    let mut published = Vec::new();
    for _ in 0..40 {
        let seq = publish(bus, &[(jay.as_str(), None)]).await[0];
        published.push(seq);
        let replay = bus
            .replay(ReplayRange::resume(vec![jay.clone()], 1, seq), LIMIT)
            .await
            .unwrap();
        assert_eq!(seqs(&replay), published);
    }
    let counts = bus.replay_counts();
    assert_eq!(counts.direct + counts.consumer, 40, "{counts:?}");
    assert!(counts.direct > 0, "{counts:?}");
}
