//! The `tidings` binary as an operator meets it: help, start-up validation, exit codes,
//! secrets kept out of output, and `migrate` against a real Postgres.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::process::{Command, Output};

use tidings_proto::v1::notification_service_client::NotificationServiceClient;
use tidings_testkit::{BearerKey, TestApi, TestBus, TestDb, eventually};

const SUBCOMMANDS: [&str; 7] = ["api", "edge", "dev", "migrate", "send", "token", "openapi"];

/// Runs the binary with only the given environment (plus PATH), never the test's own.
fn tidings(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .expect("the tidings binary runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `--version` names the release and the commit it was built from (this checkout's,
/// when git can tell).
#[test]
fn version_names_the_release_and_the_commit() {
    let out = tidings(&["--version"], &[]);
    assert!(out.status.success());
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown".into(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        );
    let expected = format!("tidings {} (commit {head})\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    let sub = tidings(&["edge", "--version"], &[]);
    assert_eq!(
        String::from_utf8_lossy(&sub.stdout),
        expected.replacen("tidings", "tidings-edge", 1)
    );
}

#[test]
fn every_subcommand_has_help_naming_its_variables() {
    let top = tidings(&["--help"], &[]);
    assert!(top.status.success());
    for sub in SUBCOMMANDS {
        assert!(text(&top).contains(sub), "top-level help lists {sub}");
        let help = tidings(&[sub, "--help"], &[]);
        assert!(help.status.success(), "{sub} --help: {}", text(&help));
        assert!(text(&help).contains("Usage: tidings"), "{sub}");
    }
    let api = text(&tidings(&["api", "--help"], &[]));
    for var in [
        "TIDINGS_API_LISTEN",
        "TIDINGS_API_HTTP_LISTEN",
        "DATABASE_URL",
        "NATS_URL",
        "TIDINGS_API_KEYS",
        "TIDINGS_STREAM",
        "TIDINGS_SUBJECT_PREFIX",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ] {
        assert!(api.contains(var), "api help names {var}");
    }
    let edge = text(&tidings(&["edge", "--help"], &[]));
    for var in [
        "TIDINGS_EDGE_LISTEN",
        "TIDINGS_API_URL",
        "TIDINGS_JWT_SECRET",
        "TIDINGS_JWT_PUBLIC_KEY",
        "TIDINGS_TOPIC_MODES",
        "TIDINGS_CORS_ORIGINS",
        "NATS_URL",
    ] {
        assert!(edge.contains(var), "edge help names {var}");
    }
}

#[test]
fn help_never_prints_secret_values() {
    let env = [
        ("DATABASE_URL", "postgres://app:hunter2@db/tidings"),
        ("NATS_URL", "nats://user:natspass@nats:4222"),
        ("TIDINGS_API_KEYS", "billing=apikey-123"),
        ("TIDINGS_JWT_SECRET", "jwt-secret-0123456789abcdef0123456789"),
        ("TIDINGS_EDGE_API_KEY", "edgekey-456"),
    ];
    for sub in ["api", "edge", "dev", "migrate"] {
        let out = text(&tidings(&[sub, "--help"], &env));
        for secret in ["hunter2", "natspass", "apikey-123", "jwt-secret-0123", "edgekey-456"] {
            assert!(!out.contains(secret), "{sub} --help shows {secret}");
        }
    }
}

#[test]
fn bad_configuration_exits_64_naming_the_variable_without_echoing_secrets() {
    // (subcommand, environment, the variable the error must name)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case<'_>] = &[
        ("api", &[("TIDINGS_API_LISTEN", "nope")], "TIDINGS_API_LISTEN"),
        ("api", &[("DATABASE_URL", "mysql://u:hunter2@h/db")], "DATABASE_URL"),
        ("api", &[("DATABASE_URL", "postgres://u:hunter2@h/")], "DATABASE_URL"),
        ("api", &[("NATS_URL", "http://u:hunter2@h:4222")], "NATS_URL"),
        ("api", &[("TIDINGS_SUBJECT_PREFIX", "a.b")], "TIDINGS_SUBJECT_PREFIX"),
        ("api", &[("TIDINGS_STREAM_REPLICAS", "9")], "TIDINGS_STREAM_REPLICAS"),
        ("api", &[("TIDINGS_API_KEYS", " ")], "TIDINGS_API_KEYS"),
        ("edge", &[("TIDINGS_EDGE_LISTEN", "8080")], "TIDINGS_EDGE_LISTEN"),
        ("edge", &[("TIDINGS_JWT_SECRET", "hunter2")], "TIDINGS_JWT_SECRET"),
        (
            "edge",
            &[("TIDINGS_TOPIC_MODES", "ranking=sometimes")],
            "TIDINGS_TOPIC_MODES",
        ),
        ("edge", &[("TIDINGS_API_URL", "grpc://api")], "TIDINGS_API_URL"),
        ("edge", &[("TIDINGS_CORS_ORIGINS", "*")], "TIDINGS_CORS_ORIGINS"),
        ("edge", &[("TIDINGS_HEARTBEAT", "soon")], "TIDINGS_HEARTBEAT"),
        ("migrate", &[("DATABASE_URL", "hunter2")], "DATABASE_URL"),
        ("api", &[("TIDINGS_LOG_FORMAT", "xml")], "TIDINGS_LOG_FORMAT"),
        ("api", &[("TIDINGS_API_KEYS", "billing=short")], "TIDINGS_API_KEYS"),
        ("api", &[("TIDINGS_PUBLISH_TIMEOUT", "0s")], "TIDINGS_PUBLISH_TIMEOUT"),
        // Ordinary relay retries could outlive JetStream's duplicate window.
        (
            "api",
            &[
                ("TIDINGS_PUBLISH_TIMEOUT", "10s"),
                ("TIDINGS_STREAM_DUPLICATE_WINDOW", "30s"),
            ],
            "TIDINGS_STREAM_DUPLICATE_WINDOW",
        ),
        // A resume could miss more than the stream keeps of a subject, silently.
        (
            "edge",
            &[
                ("TIDINGS_REPLAY_LIMIT", "1000"),
                ("TIDINGS_STREAM_MAX_MSGS_PER_SUBJECT", "1000"),
            ],
            "TIDINGS_REPLAY_LIMIT",
        ),
    ];
    for (sub, env, variable) in cases {
        // `api` needs keys and `edge` a token key; give valid ones unless the case is
        // about them.
        let mut env = env.to_vec();
        if *sub == "api" && !env.iter().any(|(k, _)| *k == "TIDINGS_API_KEYS") {
            env.push(("TIDINGS_API_KEYS", "ops=0123456789abcdef"));
        }
        if *sub == "edge" && !env.iter().any(|(k, _)| *k == "TIDINGS_JWT_SECRET") {
            env.push(("TIDINGS_JWT_SECRET", "0123456789abcdef0123456789abcdef"));
        }
        let env = env.as_slice();
        let out = tidings(&[sub], env);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(64), "{sub} {env:?}: {said}");
        assert!(said.contains(variable), "{sub} {env:?} should name {variable}: {said}");
        assert!(!said.contains("hunter2"), "{sub} {env:?} echoed a secret: {said}");
    }
}

#[test]
fn token_mints_a_verifiable_subscriber_token() {
    let secret = "0123456789abcdef0123456789abcdef";
    let out = tidings(
        &["token", "--member", "alice", "--topics", "ranking", "--ttl", "10m"],
        &[("TIDINGS_JWT_SECRET", secret)],
    );
    assert!(out.status.success(), "{}", text(&out));
    let token = String::from_utf8(out.stdout).unwrap();
    let subscriber = tidings_edge::Verifier::hs256(secret.as_bytes())
        .verify(token.trim())
        .unwrap();
    assert_eq!(subscriber.member.as_str(), "alice");
    assert_eq!(subscriber.topics.len(), 1);
    let bad = tidings(&["token", "--member", ""], &[]);
    assert!(!bad.status.success());
}

/// `tidings openapi api|edge`, the documented way to regenerate `docs/openapi/`, prints
/// exactly the committed documents (nothing else on stdout), and refuses another role.
#[test]
fn openapi_prints_each_roles_committed_document() {
    for role in ["api", "edge"] {
        let out = tidings(&["openapi", role], &[]);
        assert!(out.status.success(), "{role}: {}", text(&out));
        let committed =
            std::fs::read_to_string(format!("{}/../../docs/openapi/{role}.json", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), committed, "{role}");
    }
    let bad = tidings(&["openapi", "dev"], &[]);
    assert_eq!(bad.status.code(), Some(64), "{}", text(&bad));
}

#[test]
fn the_edge_refuses_to_run_without_a_token_key() {
    let out = tidings(&["edge"], &[]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(text(&out).contains("TIDINGS_JWT_SECRET"), "{}", text(&out));
}

#[test]
fn the_api_refuses_to_run_without_producer_keys() {
    let out = tidings(&["api"], &[]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(text(&out).contains("TIDINGS_API_KEYS"), "{}", text(&out));
}

/// A child process killed when dropped: a failing test leaves no process behind.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

type Client =
    NotificationServiceClient<tonic::service::interceptor::InterceptedService<tonic::transport::Channel, BearerKey>>;

/// An api binary with `TIDINGS_FAULT=<fault>` (and `more` variables) and a client of
/// it; the api's relay waits `publish_timeout` × 2 before taking over an entry.
async fn faulty_api(db: &TestDb, bus: &TestBus, fault: &str, more: &[(&str, &str)]) -> (Killed, Client) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("NATS_URL", bus.nats_url.as_str()),
        ("TIDINGS_STREAM", bus.settings.name.as_str()),
        ("TIDINGS_SUBJECT_PREFIX", bus.settings.prefix.as_str()),
        ("TIDINGS_API_KEYS", "test=test-key-0123456789"),
        ("TIDINGS_API_LISTEN", listen.as_str()),
        ("TIDINGS_API_HTTP_LISTEN", "127.0.0.1:0"),
        ("TIDINGS_PUBLISH_TIMEOUT", "500ms"),
        ("TIDINGS_FAULT", fault),
    ];
    let child = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .arg("api")
        .env_clear()
        .envs(env)
        .envs(more.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let child = Killed(child);
    let channel = eventually("the api to listen", || async move {
        tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .ok()?
            .connect()
            .await
            .ok()
    })
    .await;
    let client = NotificationServiceClient::with_interceptor(channel, BearerKey(Some("test-key-0123456789".into())));
    (child, client)
}

fn paid() -> tidings_proto::v1::SendRequest {
    tidings_proto::v1::SendRequest {
        member_ids: vec!["alice".into()],
        r#type: "order.paid".into(),
        content: "paid".into(),
        ..Default::default()
    }
}

/// The notification's one message in the stream: exactly one, carrying its id, at the
/// sequence its row records.
async fn stored_exactly_once(db: &TestDb, bus: &TestBus, id: uuid::Uuid) {
    let seq = db.published_seq(id).await;
    let mut stream = bus.bus.jetstream().get_stream(&bus.settings.name).await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        1,
        "exactly once in the stream"
    );
    let stored = stream.get_raw_message(seq).await.unwrap();
    assert_eq!(stored.headers.get("Nats-Msg-Id").unwrap().as_str(), id.to_string());
}

/// Sends through an api that `fault` makes crash mid-Send; the call fails, the process
/// is gone, and the row was committed without a recorded sequence. Returns its id.
async fn send_to_an_api_that_crashes(db: &TestDb, bus: &TestBus, fault: &str) -> uuid::Uuid {
    let (mut child, mut client) = faulty_api(db, bus, fault, &[]).await;
    let status = client.send(paid()).await.unwrap_err();
    assert_ne!(status.code(), tonic::Code::Ok);
    let exit = child.0.wait().unwrap();
    assert!(!exit.success(), "the api crashed: {exit:?}");
    let (id, seq): (uuid::Uuid, Option<i64>) = sqlx::query_as("select id, stream_seq from notification")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(seq, None, "committed, no sequence recorded");
    id
}

#[tokio::test]
async fn a_send_committed_by_an_api_killed_before_publishing_is_delivered_by_the_relay() {
    let db = TestDb::new().await;
    let bus = TestBus::new().await;
    let id = send_to_an_api_that_crashes(&db, &bus, "crash-after-commit").await;
    let mut stream = bus.bus.jetstream().get_stream(&bus.settings.name).await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        0,
        "committed, never published"
    );

    // Another api (any replica) runs the relay.
    let api = TestApi::start(TestApi::config(&db, &bus), false).await;
    stored_exactly_once(&db, &bus, id).await;
    drop(api);
}

/// Killed after JetStream stored the message but before the row recorded it: the relay
/// publishes again, JetStream recognises the Nats-Msg-Id, and the stream holds the
/// notification once, at the sequence the row then records.
#[tokio::test]
async fn a_send_published_by_an_api_killed_before_recording_is_in_the_stream_once() {
    let db = TestDb::new().await;
    let bus = TestBus::new().await;
    let id = send_to_an_api_that_crashes(&db, &bus, "crash-after-publish").await;
    let mut stream = bus.bus.jetstream().get_stream(&bus.settings.name).await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        1,
        "the crash came after the publish"
    );

    let api = TestApi::start(TestApi::config(&db, &bus), false).await;
    stored_exactly_once(&db, &bus, id).await;
    drop(api);
}

/// Stored by JetStream but its acknowledgement lost (a timeout): the Send succeeds
/// without an event id, the same api's relay publishes again, and the stream holds the
/// notification once.
#[tokio::test]
async fn a_send_whose_publish_ack_is_lost_is_in_the_stream_once() {
    let db = TestDb::new().await;
    let bus = TestBus::new().await;
    let (_api, mut client) = faulty_api(&db, &bus, "lose-publish-acks", &[]).await;
    let response = client.send(paid()).await.unwrap().into_inner();
    let delivery = &response.deliveries[0];
    assert_eq!(delivery.event_id, "", "not acknowledged: left to the relay");
    let id: uuid::Uuid = delivery.notification_id.parse().unwrap();
    stored_exactly_once(&db, &bus, id).await;
}

/// The same, but the api is cut off from NATS right after the Send, for longer than
/// the stream's duplicate window: when the relay gets to the entry, JetStream no
/// longer knows its `Nats-Msg-Id` and would store a second copy. The relay looks in
/// the stream first, finds it, and records it: the stream holds it once.
#[tokio::test]
async fn a_send_relayed_after_the_duplicate_window_is_in_the_stream_once() {
    let db = TestDb::new().await;
    let bus = TestBus::new().await;
    let nats: std::net::SocketAddr = bus.nats_url.trim_start_matches("nats://").parse().unwrap();
    let proxy = tidings_testkit::TcpProxy::start(nats).await;
    let through_proxy = format!("nats://{}", proxy.addr());
    let more = [
        ("NATS_URL", through_proxy.as_str()),
        ("TIDINGS_STREAM_DUPLICATE_WINDOW", "3s"),
        ("TIDINGS_RELAY_POLL", "100ms"),
    ];
    let (_api, mut client) = faulty_api(&db, &bus, "lose-publish-acks", &more).await;
    let response = client.send(paid()).await.unwrap().into_inner();
    proxy.cut();
    let id: uuid::Uuid = response.deliveries[0].notification_id.parse().unwrap();
    let mut stream = bus.bus.jetstream().get_stream(&bus.settings.name).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1, "stored, ack lost");

    // Past the window, the entry still waits for its relay.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let (seq,): (Option<i64>,) = sqlx::query_as("select stream_seq from notification where id = $1")
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(seq, None, "not relayed while cut off");
    proxy.restore();
    stored_exactly_once(&db, &bus, id).await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn migrate_creates_and_migrates_a_missing_database() {
    let db = TestDb::new().await;
    let fresh = format!("{}_m", db.name);
    let url = db.url.replace(&db.name, &fresh);

    let out = tidings(&["migrate", "--log-format", "json"], &[("DATABASE_URL", &url)]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("database is migrated"));
    // Idempotent: a second run (another replica, a re-run Job) changes nothing.
    let again = tidings(&["migrate"], &[("DATABASE_URL", &url)]);
    assert!(again.status.success(), "{}", text(&again));

    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let applied: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations where success")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    let drop_it = format!(r#"drop database "{fresh}" with (force)"#);
    sqlx::query(sqlx::AssertSqlSafe(drop_it))
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(applied, tidings_store::MIGRATOR.iter().count() as i64);
}

#[test]
fn migrate_against_a_dead_postgres_fails_fast_and_clearly() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres:hunter2@127.0.0.1:{port}/tidings");
    let started = std::time::Instant::now();
    let out = tidings(&["migrate", "--db-acquire-timeout", "2s"], &[("DATABASE_URL", &url)]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("connecting to postgres://postgres:redacted@127.0.0.1"),
        "{said}"
    );
    assert!(!said.contains("hunter2"), "{said}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "no hang");
}

/// The logs of a whole dev cluster at work never contain a credential: not the
/// database password, not an API key, not the JWT secret, not a token passed in a URL.
/// Each stream gets an open and a close line with reason and duration.
#[tokio::test]
async fn logs_never_show_secrets_and_record_each_stream() {
    use std::io::{BufRead as _, BufReader};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let db = TestDb::new().await;
    let bus = TestBus::new().await;
    let password = "pg-pass-7f3a9c";
    let db_url = db
        .url
        .replacen("postgres://postgres@", &format!("postgres://postgres:{password}@"), 1);
    let api_key = "key-5d1e8b2a90c4f6e7";
    let jwt_secret = "jwt-secret-91c2d3e4f5a6b7c8d9e0f1a2b3c4";
    let env = [
        ("DATABASE_URL", db_url.as_str()),
        ("NATS_URL", bus.nats_url.as_str()),
        ("TIDINGS_STREAM", bus.settings.name.as_str()),
        ("TIDINGS_SUBJECT_PREFIX", bus.settings.prefix.as_str()),
        ("TIDINGS_API_KEYS", &format!("ops={api_key}")),
        ("TIDINGS_JWT_SECRET", jwt_secret),
        ("TIDINGS_API_LISTEN", "127.0.0.1:0"),
        ("TIDINGS_API_HTTP_LISTEN", "127.0.0.1:0"),
        ("TIDINGS_EDGE_LISTEN", "127.0.0.1:0"),
        (
            "RUST_LOG",
            "debug,h2=info,hyper=info,tower=info,sqlx=warn,async_nats=info",
        ),
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["dev", "--log-format", "json"])
        .env_clear()
        .envs(env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let logs = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut l = logs.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
    }
    let field = |message: &str, key: &str| -> Option<String> {
        logs.lock()
            .unwrap()
            .lines()
            .find(|l| l.contains(message))
            .and_then(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                v[key].as_str().map(str::to_owned)
            })
    };
    let (edge, grpc) = eventually("the dev cluster to serve", || async {
        Some((field("edge serving", "addr")?, field("api serving", "grpc")?))
    })
    .await;
    assert_eq!(
        field("tidings dev starting", "version").as_deref(),
        Some(env!("CARGO_PKG_VERSION")),
        "the first line names the build"
    );

    // A browser with its token in the URL, and one with a bad token.
    let token = tidings_edge::Verifier::hs256(jwt_secret.as_bytes())
        .sign(&tidings_edge::Claims {
            sub: "val".into(),
            exp: tidings_edge::expiry_in(std::time::Duration::from_secs(600)),
            topics: None,
        })
        .unwrap();
    for credential in [token.as_str(), "bad-token-marker-0451"] {
        let mut socket = tokio::net::TcpStream::connect(&edge).await.unwrap();
        let request = format!("GET /v1/stream?access_token={credential} HTTP/1.1\r\nHost: e\r\n\r\n");
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), socket.read(&mut buf)).await;
    }
    // A producer call with the key.
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = NotificationServiceClient::with_interceptor(channel, BearerKey(Some(api_key.into())));
    client
        .send(tidings_proto::v1::SendRequest {
            member_ids: vec!["val".into()],
            r#type: "t".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    eventually("the stream's close line", || async { field("stream closed", "reason") }).await;
    let _ = child.kill();
    let _ = child.wait();

    let logs = logs.lock().unwrap().clone();
    for secret in [password, api_key, jwt_secret, token.as_str(), "bad-token-marker-0451"] {
        assert!(!logs.contains(secret), "a secret reached the logs: {secret}");
    }
    let closed = logs.lines().find(|l| l.contains("stream closed")).unwrap();
    let closed: serde_json::Value = serde_json::from_str(closed).unwrap();
    assert_eq!(closed["reason"], "client_gone");
    assert!(closed["duration_ms"].as_u64().is_some());
    assert!(logs.lines().any(|l| l.contains("stream opened")));
    assert!(
        logs.lines()
            .any(|l| l.contains("stream refused") && l.contains("unauthenticated"))
    );
}
