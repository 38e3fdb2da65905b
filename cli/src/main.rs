//! The `netdiag` binary: [`netdiag_cli::main`].

fn main() -> std::process::ExitCode {
    netdiag_cli::main()
}
