//! The `kubectl-netdiag` binary (`kubectl netdiag …`): [`netdiag_cli::plugin::main`]. What it
//! does does not depend on the name it is run by.

fn main() -> std::process::ExitCode {
    netdiag_cli::plugin::main()
}
