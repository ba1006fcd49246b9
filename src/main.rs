//! The pgsplit command: CLI, logging and signals around the library.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[global_allocator]
static ALLOC: MiMalloc = MiMalloc;

extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay` and `mi_option_allow_thp` in mimalloc 3's option list
/// (libmimalloc-sys's own constants are mimalloc 2's numbering).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;
const MI_OPTION_ALLOW_THP: std::ffi::c_int = 43;

/// Memory freed goes back to the system at once, in small pages, as under glibc: the client
/// buffer limit is stated as RSS (tests/signals.rs). With mimalloc's default delay a client's
/// given-back buffers stayed resident; with transparent huge pages (this machine's `madvise`
/// mode, which mimalloc asks for) a few KiB more in use made 2 MiB resident at a time, so one
/// pipelining client added 2 to 9 MiB against a 1 MiB limit, and the process started 8 MiB
/// higher. The prctl also covers what mimalloc mapped before `main`.
fn purge_at_once() {
    // SAFETY: sets plain integer options; mimalloc reads options under its own lock.
    unsafe {
        mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        mi_option_set(MI_OPTION_ALLOW_THP, 0);
    }
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments and changes only this process's flag.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// mimalloc, with its plain entry points wherever they give the alignment asked: the aligned
/// ones cost about four times as much per call, and a request makes a dozen allocations.
struct MiMalloc;

/// What `mi_malloc` guarantees: 16-byte alignment, or the size's for smaller blocks (as std's
/// System allocator assumes of malloc).
fn plain(layout: std::alloc::Layout) -> bool {
    layout.align() <= 16 && layout.align() <= layout.size()
}

// SAFETY: each call forwards to mimalloc, which satisfies the layout (see `plain`), and frees
// with `mi_free` whichever entry point allocated.
unsafe impl std::alloc::GlobalAlloc for MiMalloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys as mi;
        if plain(layout) {
            mi::mi_malloc(layout.size()).cast()
        } else {
            mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys as mi;
        if plain(layout) {
            mi::mi_zalloc(layout.size()).cast()
        } else {
            mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: std::alloc::Layout) {
        libmimalloc_sys::mi_free(ptr.cast());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        use libmimalloc_sys as mi;
        if layout.align() <= 16 && layout.align() <= new_size {
            mi::mi_realloc(ptr.cast(), new_size).cast()
        } else {
            mi::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
        }
    }
}

#[derive(Parser)]
#[command(
    name = "pgsplit",
    version,
    about = "PostgreSQL proxy: pooling, read/write splitting, per-query stats"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        #[arg(long, default_value = "proxy.toml")]
        config: PathBuf,
    },
    /// Validate a configuration file and print the effective configuration.
    CheckConfig {
        #[arg(long, default_value = "proxy.toml")]
        config: PathBuf,
    },
    /// Apply (or roll back) the schema and the seed's 16 performance indexes, safely.
    Migrate(pgsplit::control::migrate::MigrateArgs),
    /// Load deterministic synthetic data for the seed's schema with COPY.
    SeedData(pgsplit::control::seed::SeedArgs),
    /// Combine pg_stat_statements, table/index statistics, EXPLAIN and pgsplit's stats into a report.
    Analyze(pgsplit::control::analyze::AnalyzeArgs),
    /// Print pgsplit's stats (top queries, pools, targets) from the stats endpoint; --export writes JSON.
    Report(pgsplit::report::ReportArgs),
    /// Run the seed application's workload through pgsplit (several clients, live progress line).
    Workload(pgsplit::demo::WorkloadArgs),
    /// Print the configuration reference (every key, default, reloadable) generated from proxy.toml.
    ConfigReference(pgsplit::docs::ConfigReferenceArgs),
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    purge_at_once();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    // `serve` keeps clients on data threads of their own (the `workers` key); what is left here
    // (accepting, health checks, stats, the WAL follower) is the control plane, which one
    // thread carries without taking a core from them.
    let mut builder = match cli.command {
        Command::Serve { .. } => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pgsplit: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Serve { config } => serve(config).await,
            Command::Migrate(args) => control(pgsplit::control::migrate::run(&args).await),
            Command::SeedData(args) => control(pgsplit::control::seed::run(&args).await),
            Command::Analyze(args) => control(pgsplit::control::analyze::run(&args).await),
            Command::Report(args) => control(pgsplit::report::run(&args).await),
            Command::Workload(args) => control(pgsplit::demo::run(&args).await),
            Command::ConfigReference(args) => control(pgsplit::docs::run(&args)),
            Command::CheckConfig { config } => match pgsplit::config::Config::load(&config) {
                Ok(c) => {
                    print!("{}", c.render());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("pgsplit: {e}");
                    ExitCode::FAILURE
                }
            },
        }
    })
}

fn control<E: std::fmt::Display>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgsplit: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(path: PathBuf) -> ExitCode {
    let config = match pgsplit::config::Config::load(&path) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("pgsplit: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match pgsplit::bind(config.listen, config.listen_backlog) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("pgsplit: {e}");
            return ExitCode::FAILURE;
        }
    };
    let handle = match pgsplit::start(config.clone(), listener).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("pgsplit: {e}");
            return ExitCode::FAILURE;
        }
    };
    *handle.shared.config_source.lock() = Some(pgsplit::reload::ConfigSource {
        path,
        env: pgsplit::config::EnvOverrides::from_env(),
    });
    tracing::info!(listen = %handle.addr, stats = %handle.stats_addr, primary = %config.primary, replicas = config.replicas.len(), "pgsplit is ready");
    if let Err(e) = wait_for_stop(&handle.shared).await {
        eprintln!("pgsplit: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    tracing::info!("shutting down: no new clients; open transactions may finish");
    handle.shutdown().await;
    ExitCode::SUCCESS
}

/// Reloads on SIGHUP until SIGTERM or Ctrl-C.
async fn wait_for_stop(shared: &pgsplit::Shared) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = hup.recv() => {
                // The outcome is logged by reload itself; a rejected file keeps the running config.
                let _ = pgsplit::reload::reload(shared);
            }
        }
    }
}
