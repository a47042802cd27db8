//! The `nodegrid` command: `bench` (the grid benchmark), `node` (run one node) and `inspect`
//! (decode grid frames). It only uses the library's public API, as a user would.
//!
//! Each subcommand lives in its own module with an `Args` struct (clap derive) and a `run`
//! function; errors are printed as one `error: …` line on stderr with exit code 2.

mod baseline;
mod bench;
mod builtin;
mod cluster;
mod inspect;
mod measure;
mod node;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Internode grid (MinIO grid v1): benchmark, node runner and frame inspector.
#[derive(Parser)]
#[command(name = "nodegrid", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Benchmark the grid on an in-process cluster (default) or against running nodes.
    Bench(bench::BenchArgs),
    /// Run one node of a cluster.
    #[command(
        after_help = "Signals: SIGINT / SIGTERM stop the node gracefully (calls end, queued log and \
                      audit entries are flushed). SIGHUP reloads the TLS certificate files and the \
                      webhooks' client certificates without a restart; a file that cannot be \
                      loaded is reported and the certificate in use stays.\n\nLog and audit \
                      webhooks: NODEGRID_LOGGER_WEBHOOK_* / NODEGRID_AUDIT_WEBHOOK_* environment \
                      variables (see crates/nodegrid-log/README.md)."
    )]
    Node(node::NodeArgs),
    /// Decode a grid message (or a WebSocket frame carrying one) and print its fields.
    Inspect(inspect::InspectArgs),
}

/// Exit code for bad input or any other failure (the same code clap uses for usage errors).
const EXIT_FAILURE: u8 = 2;

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn runtime<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> Result<T, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    rt.block_on(f).map_err(|e| format!("{e:#}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Inspect(args) => inspect::run(args),
        Command::Bench(a) => {
            init_logging("error");
            runtime(bench::run(a)).map(|ok| {
                if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            })
        }
        Command::Node(a) => runtime(node::run(a)).map(|_| ExitCode::SUCCESS),
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    // Here, at the root: the options of several subcommands are checked together.
    use clap::Parser;

    const SECRET: &str = "s3cr3t-cli-value-0b7e";

    /// `Debug` of the parsed options never shows `--secret-key` or `--auth-token`.
    #[test]
    fn debug_of_the_options_hides_secrets() {
        #[derive(clap::Parser, Debug)]
        struct Node {
            #[command(flatten)]
            args: crate::node::NodeArgs,
        }
        #[derive(clap::Parser, Debug)]
        struct Bench {
            #[command(flatten)]
            args: crate::bench::BenchArgs,
        }
        let common = [
            "--local",
            "http://127.0.0.1:9000",
            "--hosts",
            "http://127.0.0.1:9000",
        ];
        for creds in [
            vec!["--access-key", "ak", "--secret-key", SECRET],
            vec!["--auth-token", SECRET],
        ] {
            let n = Node::try_parse_from(["node"].iter().chain(&common).chain(&creds).copied())
                .expect("node args");
            let text = format!("{n:?} {:?} {:#?}", n.args.creds, n.args);
            assert!(!text.contains(SECRET), "{text}");
            assert!(text.contains("<redacted>"), "{text}");
            let b =
                Bench::try_parse_from(["bench"].iter().chain(&creds).copied()).expect("bench args");
            let text = format!("{b:?}");
            assert!(!text.contains(SECRET), "{text}");
        }
    }
}
