//! One process, one global subscriber: this binary holds the single test that installs it.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tidings_telemetry::{LogFormat, TelemetryConfig};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_is_silent_and_shutdown_is_bounded() {
    // A port nothing listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = TelemetryConfig {
        log_format: LogFormat::Json,
        log_filter: "info".into(),
        otlp_endpoint: Some(format!("http://127.0.0.1:{port}")),
        service_name: None,
    };
    let capture = Capture::default();
    let guard = tidings_telemetry::init_with_writer(&config, "test", capture.clone()).unwrap();
    assert!(matches!(
        tidings_telemetry::init(&config, "test"),
        Err(tidings_telemetry::TelemetryError::AlreadyInstalled)
    ));

    for i in 0..100 {
        let span = tracing::info_span!("work", i);
        let _entered = span.enter();
        tracing::info!(i, "did work");
    }
    let started = Instant::now();
    tokio::task::spawn_blocking(move || drop(guard)).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        started.elapsed()
    );

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = logs.lines().collect();
    assert!(lines.iter().any(|l| l.contains("exporting traces over OTLP")), "{logs}");
    assert_eq!(lines.iter().filter(|l| l.contains("did work")).count(), 100);
    // Every line is JSON, and none is an exporter error.
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_ne!(v["level"], "ERROR", "{line}");
        assert_ne!(v["level"], "WARN", "{line}");
    }
}
