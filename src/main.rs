//! The `opsagent` binary: parse the command line, set up logging, dispatch, map errors to the
//! exit-code table in `opsagent::error`.

use clap::Parser;
use opsagent::cli::exit_code_for;
use opsagent::cli::{self, Cli, Command};
use opsagent::error::Exit;
use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Every file and directory opsagent makes (dumps in a local directory, the catalog, lock
    // files, restored files before their modes are set) is private to its user unless the code
    // sets a mode on purpose; as UMask=0077 in the unit, also when run from a shell.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage.into()
            } else {
                Exit::Ok.into()
            };
        }
    };
    init_logging(&cli);
    if matches!(cli.command, Command::Snapshots(_) | Command::Status(_)) {
        // Listings piped into `head` end quietly, like other Unix tools, instead of panicking
        // on a closed stdout. (Sockets use MSG_NOSIGNAL, so network I/O is unaffected.)
        // SAFETY: setting a signal disposition to its default before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let result = match &cli.command {
        Command::Run => cli::run::run(&cli),
        Command::CheckConfig(a) => cli::check_config::run(&cli, a),
        Command::Backup(a) => cli::backup::run(&cli, a),
        Command::Snapshots(a) => cli::snapshots::run(&cli, a),
        Command::Prune(a) => cli::prune::run(&cli, a),
        Command::Status(a) => cli::status::run(&cli, a),
        Command::Restore(a) => cli::restore::run(&cli, a),
        Command::Verify(a) => cli::verify::run(&cli, a),
        Command::Silence(a) => cli::silence::run(&cli, a),
        Command::Ack(a) => cli::ack::run(&cli, a),
        Command::NotifyTest(a) => cli::notify_test::run(&cli, a),
        Command::WatchPeer(a) => cli::watch_peer::run(&cli, a),
        Command::GenerateAssets(a) => cli::generate::run(a),
    };
    match result {
        Ok(()) => Exit::Ok.into(),
        Err(e) => {
            let code = exit_code_for(&e);
            if e.is::<opsagent::error::Unhealthy>() {
                // `status` printed its report; the exit code says the rest.
            } else if e.is::<opsagent::config::ConfigErrors>() {
                eprintln!("{e}");
            } else {
                eprintln!("error: {e:#}");
            }
            code.into()
        }
    }
}

/// Logs go to stderr; without timestamps under journald (`JOURNAL_STREAM`), which adds its own.
/// The level comes from `OPSAGENT_LOG` (a tracing filter), else `info` for the daemon and `warn`
/// for the other verbs, which print their own results.
fn init_logging(cli: &Cli) {
    let default = if matches!(cli.command, Command::Run) {
        "info"
    } else {
        "warn"
    };
    let filter = std::env::var("OPSAGENT_LOG").unwrap_or_else(|_| default.to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().with_ansi(false).init();
    } else {
        builder.init();
    }
}
