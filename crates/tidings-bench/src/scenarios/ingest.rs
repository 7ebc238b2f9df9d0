use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use tidings_proto::v1 as pb;

use crate::cluster::Cluster;
use crate::measure::{cpu, own_cpu};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Concurrent SendStream calls at each step, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 4, 16])]
    concurrency: Vec<usize>,
    /// How long each step sends.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    step: Duration,
    /// Requests per SendStream batch written before reading its answers.
    #[arg(long, default_value_t = 500)]
    batch: usize,
}

pub(crate) async fn run(cluster: &Cluster, args: Args) -> anyhow::Result<String> {
    let client = cluster.client().await?;
    let mut report = String::from("ingest (SendStream, one member per notification):\n");
    let mut steps = Vec::new();
    let mut total_sent = 0u64;
    for &concurrency in &args.concurrency {
        let sent = Arc::new(AtomicU64::new(0));
        let deferred = Arc::new(AtomicU64::new(0));
        let (api0, gen0) = (cpu(cluster.api.pid()), own_cpu());
        let started = Instant::now();
        let workers: Vec<_> = (0..concurrency)
            .map(|w| {
                let (client, sent, deferred, batch, step) =
                    (client.clone(), sent.clone(), deferred.clone(), args.batch, args.step);
                tokio::spawn(async move {
                    let mut n = 0usize;
                    while started.elapsed() < step {
                        let requests: Vec<pb::SendRequest> = (0..batch)
                            .map(|i| pb::SendRequest {
                                member_ids: vec![format!("ingest-{w}-{}", (n + i) % 1000)],
                                r#type: "bench.ingest".into(),
                                content: "x".into(),
                                ..Default::default()
                            })
                            .collect();
                        n += batch;
                        let responses = super::send_stream(&client, requests).await?;
                        sent.fetch_add(responses.len() as u64, Ordering::Relaxed);
                        let later = responses.iter().filter(|r| r.deliveries[0].event_id.is_empty()).count();
                        deferred.fetch_add(later as u64, Ordering::Relaxed);
                    }
                    Ok::<_, anyhow::Error>(())
                })
            })
            .collect();
        for w in workers {
            w.await??;
        }
        let seconds = started.elapsed().as_secs_f64();
        let (api_cpu, gen_cpu) = (
            (cpu(cluster.api.pid()) - api0).as_secs_f64(),
            (own_cpu() - gen0).as_secs_f64(),
        );
        let n = sent.load(Ordering::Relaxed);
        total_sent += n;
        let rate = n as f64 / seconds;
        report.push_str(&format!(
            "  concurrency {concurrency:>3}: {rate:>8.0} notifications/s ({n} in {seconds:.2} s), deferred to relay {}, api CPU {:.1} µs each, generator CPU {gen_cpu:.2} s\n",
            deferred.load(Ordering::Relaxed),
            api_cpu * 1e6 / n.max(1) as f64,
        ));
        steps.push(
            serde_json::json!({ "concurrency": concurrency, "notifications": n, "seconds": seconds,
            "per_second": rate, "deferred": deferred.load(Ordering::Relaxed), "api_cpu_s": api_cpu,
            "api_cpu_us_per_notification": api_cpu * 1e6 / n.max(1) as f64, "generator_cpu_s": gen_cpu }),
        );
    }
    // Verify: every answered notification is stored and, once the relay is done, published.
    let pool = sqlx::PgPool::connect(&cluster.database_url).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let (stored, unpublished) = loop {
        let (stored, unpublished): (i64, i64) = sqlx::query_as(
            "select count(*), count(*) filter (where stream_seq is null) from notification where type = 'bench.ingest'",
        )
        .fetch_one(&pool)
        .await?;
        if unpublished == 0 || Instant::now() > deadline {
            break (stored, unpublished);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    pool.close().await;
    let ok = stored as u64 == total_sent && unpublished == 0;
    report.push_str(&format!(
        "  stored {stored} of {total_sent} answered; unpublished {unpublished}\n"
    ));
    report.push_str(
        &serde_json::json!({ "scenario": "ingest", "steps": steps, "answered": total_sent,
        "stored": stored, "unpublished": unpublished, "ok": ok })
        .to_string(),
    );
    if !ok {
        bail!("{report}\nverification failed");
    }
    Ok(report)
}
