//! `retire`: the retirement driver and admin CLI (see `retire --help`).

fn main() -> std::process::ExitCode {
    bins::retire::main()
}
