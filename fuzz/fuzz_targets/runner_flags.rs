//! The runner's command line: arbitrary arguments and `RUNNER_*` environment
//! variables (the values a Deployment or a compose file sets), parsed and
//! checked exactly as `runner` does before it serves.
//!
//! Properties: no panic (clap's own consistency checks run too: fuzz builds
//! have debug assertions); a refusal is an error whose first line starts with
//! `error:` (clap) or a one-line reason (our checks); a configuration that
//! passes names a component, allows at least one request at a time, maps
//! only existing directories, sets each guest variable once, and every
//! `NAME=VALUE`, `NAME=PATH` and `HOST::GUEST` was split where it should be.

#![no_main]

use arbitrary::Arbitrary;
use clap::Parser;
use clap::error::ErrorKind;
use libfuzzer_sys::fuzz_target;
use runner::cli::Cli;

#[derive(Arbitrary, Debug)]
enum Flag {
    Addr,
    Dir,
    Env,
    EnvFromFile,
    MaxBodyBytes,
    MaxMemoryBytes,
    RequestTimeout,
    MaxConcurrentRequests,
    BodyReadTimeout,
    MetricsAddr,
    ShutdownTimeout,
    NoPooling,
    FsOnBlockingPool,
    NoAccessLog,
    Perfmap,
    Probe,
    Other(String),
}

impl Flag {
    fn text(&self) -> String {
        match self {
            Flag::Addr => "--addr".into(),
            Flag::Dir => "--dir".into(),
            Flag::Env => "--env".into(),
            Flag::EnvFromFile => "--env-from-file".into(),
            Flag::MaxBodyBytes => "--max-body-bytes".into(),
            Flag::MaxMemoryBytes => "--max-memory-bytes".into(),
            Flag::RequestTimeout => "--request-timeout".into(),
            Flag::MaxConcurrentRequests => "--max-concurrent-requests".into(),
            Flag::BodyReadTimeout => "--body-read-timeout".into(),
            Flag::MetricsAddr => "--metrics-addr".into(),
            Flag::ShutdownTimeout => "--shutdown-timeout".into(),
            Flag::NoPooling => "--no-pooling".into(),
            Flag::FsOnBlockingPool => "--fs-on-blocking-pool".into(),
            Flag::NoAccessLog => "--no-access-log".into(),
            Flag::Perfmap => "--perfmap".into(),
            Flag::Probe => "probe".into(),
            Flag::Other(text) => text.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Arg {
    Flag(Flag),
    /// `--flag value`
    Pair(Flag, String),
    /// `--flag=value`
    Joined(Flag, String),
    Word(String),
}

/// The variables `runner` reads its settings from.
const ENV: [&str; 8] = [
    "RUNNER_ADDR",
    "RUNNER_MAX_BODY_BYTES",
    "RUNNER_MAX_MEMORY_BYTES",
    "RUNNER_REQUEST_TIMEOUT",
    "RUNNER_MAX_CONCURRENT_REQUESTS",
    "RUNNER_BODY_READ_TIMEOUT",
    "RUNNER_METRICS_ADDR",
    "RUNNER_SHUTDOWN_TIMEOUT",
];

#[derive(Arbitrary, Debug)]
struct Input {
    args: Vec<Arg>,
    env: Vec<(u8, String)>,
}

fuzz_target!(|input: Input| {
    // SAFETY: libFuzzer runs the target on one thread, and nothing else in
    // this process reads the environment meanwhile.
    for name in ENV {
        unsafe { std::env::remove_var(name) };
    }
    for (index, value) in &input.env {
        if !value.contains('\0') {
            unsafe { std::env::set_var(ENV[usize::from(*index) % ENV.len()], value) };
        }
    }
    let mut args = vec!["runner".to_owned()];
    for arg in &input.args {
        match arg {
            Arg::Flag(flag) => args.push(flag.text()),
            Arg::Pair(flag, value) => args.extend([flag.text(), value.clone()]),
            Arg::Joined(flag, value) => args.push(format!("{}={value}", flag.text())),
            Arg::Word(word) => args.push(word.clone()),
        }
    }

    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(error) => {
            if !matches!(
                error.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let message = error.to_string();
                assert!(message.starts_with("error: "), "{message}");
            }
            return;
        }
    };
    if cli.command.is_some() {
        return; // `probe URL`: its URL is checked when it runs
    }
    let serve = cli.serve;
    match serve.check() {
        Err(error) => {
            let message = format!("{error:#}");
            assert!(
                !message.is_empty() && !message.contains('\n'),
                "{message:?}"
            );
        }
        Ok(()) => {
            assert!(serve.component.is_some());
            assert!(serve.max_concurrent_requests >= 1);
            for dir in &serve.dirs {
                assert!(dir.host.is_dir());
                assert!(!dir.guest.is_empty());
                assert!(!dir.host.as_os_str().to_string_lossy().contains("::"));
            }
            let mut names: Vec<&str> = serve
                .env
                .iter()
                .map(|(n, _)| n.as_str())
                .chain(serve.env_from_file.iter().map(|(n, _)| n.as_str()))
                .collect();
            assert!(
                names.iter().all(|n| !n.is_empty() && !n.contains('=')),
                "{names:?}"
            );
            names.sort_unstable();
            let count = names.len();
            names.dedup();
            assert_eq!(
                names.len(),
                count,
                "a guest variable set twice passed the checks"
            );
            for (_, path) in &serve.env_from_file {
                assert!(!path.as_os_str().is_empty());
            }
        }
    }
});
