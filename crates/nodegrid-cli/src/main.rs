//! The `nodegrid` command: `bench` (the grid benchmark), `node` (run one node) and `inspect`
//! (decode grid frames). It only uses the library's public API, as a user would.

mod baseline;
mod bench;
mod builtin;
mod cluster;
mod measure;
mod node;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "nodegrid",
    version,
    about = "Internode grid: benchmark, node runner and frame inspector"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Benchmark the grid on an in-process cluster (default) or against running nodes.
    Bench(bench::BenchArgs),
    /// Run one node of a cluster.
    Node(node::NodeArgs),
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        let _ = b.json().try_init();
    } else {
        let _ = b.try_init();
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let res = rt.block_on(async move {
        match cli.cmd {
            Cmd::Bench(a) => {
                init_logging(false);
                bench::run(a).await.map(|ok| if ok { 0 } else { 1 })
            }
            Cmd::Node(a) => {
                init_logging(a.log_json);
                node::run(a).await.map(|_| 0)
            }
        }
    });
    match res {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
