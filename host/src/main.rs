//! `coffer`: automated, composable backup and recovery for an OpenStack control plane.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
