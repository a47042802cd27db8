//! Throughput of the REST path on loopback: uploads to the built-in `sink` and downloads from
//! the built-in `source`, with the process's peak resident memory.
//!
//! ```text
//! cargo run --release -p nodegrid-rest --example rest_throughput -- [SIZE_MIB] [ITERATIONS] [tls]
//! ```
//!
//! Defaults: 256 MiB per transfer, 5 transfers each way, plain HTTP (`tls`: HTTPS with a
//! throw-away rcgen certificate). Prints one JSON object.

use nodegrid::auth::Auth;
use nodegrid_rest::builtin::repeat_bytes;
use nodegrid_rest::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use nodegrid_rest::{serve, server_tls_config, ClientTls, RequestBody, RestClient, RestServer};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// Peak and current resident set size from /proc (Linux), in bytes.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn summary(times: &[Duration], bytes: u64) -> serde_json::Value {
    let mut mibps: Vec<f64> = times
        .iter()
        .map(|t| bytes as f64 / MIB as f64 / t.as_secs_f64())
        .collect();
    mibps.sort_by(|a, b| a.total_cmp(b));
    let median = mibps.get(mibps.len() / 2).copied().unwrap_or(0.0);
    serde_json::json!({
        "median_mib_per_s": (median * 10.0).round() / 10.0,
        "min_mib_per_s": (mibps.first().copied().unwrap_or(0.0) * 10.0).round() / 10.0,
        "max_mib_per_s": (mibps.last().copied().unwrap_or(0.0) * 10.0).round() / 10.0,
        "median_gbit_per_s": (median * 8.0 * 1.048576 / 1000.0 * 100.0).round() / 100.0,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let size_mib: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(256);
    let iterations: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5);
    let tls = args.next().as_deref() == Some("tls");
    let size = size_mib * MIB;

    let auth = Auth::minio_jwt("minioadmin", "minioadmin-secret");
    let server = RestServer::builder(auth.clone()).with_builtins().build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let (_server, client) = if tls {
        let key = rcgen::KeyPair::generate()?;
        let cert =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])?.self_signed(&key)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = server_tls_config(vec![cert.der().clone()], key_der, None)?;
        let handle = serve(listener, server.router(), Some(config))?;
        let client = RestClient::builder(format!("https://{}", handle.local_addr()), auth)
            .tls(ClientTls::new([cert.der().clone()])?)
            .build()?;
        (handle, client)
    } else {
        let handle = serve(listener, server.router(), None)?;
        let client =
            RestClient::builder(format!("http://{}", handle.local_addr()), auth).build()?;
        (handle, client)
    };

    // Warm-up: establish the pooled connection.
    client.call("sink", &[], "warm-up").await?.bytes(64).await?;
    let (_, rss_before) = rss();

    let mut upload = Vec::new();
    for _ in 0..iterations {
        let start = Instant::now();
        let answer = client
            .call("sink", &[], RequestBody::from_stream(repeat_bytes(size)))
            .await?
            .bytes(64)
            .await?;
        upload.push(start.elapsed());
        if answer != size.to_string().as_bytes() {
            return Err(format!("sink answered {answer:?}").into());
        }
    }
    let mut download = Vec::new();
    let size_param = size.to_string();
    for _ in 0..iterations {
        let start = Instant::now();
        let n = client
            .call("source", &[("size", &size_param)], ())
            .await?
            .into_body()
            .drain()
            .await?;
        download.push(start.elapsed());
        if n != size {
            return Err(format!("source sent {n} bytes").into());
        }
    }
    let (peak, _) = rss();
    let stats = client.stats();
    let report = serde_json::json!({
        "mode": if tls { "rest-tls" } else { "rest" },
        "payload_bytes": size,
        "iterations": iterations,
        "upload": summary(&upload, size),
        "download": summary(&download, size),
        "rss_before_transfers_bytes": rss_before,
        "peak_rss_bytes": peak,
        "dials": stats.dials,
        "bytes_sent": stats.bytes_sent,
        "bytes_received": stats.bytes_received,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
