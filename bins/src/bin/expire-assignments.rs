//! `expire-assignments`: the enterprise assignment expiry cron (see `expire-assignments --help`).

fn main() -> std::process::ExitCode {
    bins::expire::main()
}
