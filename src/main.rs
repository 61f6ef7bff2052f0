use clap::Parser;

fn main() -> std::process::ExitCode {
    helpdesk_sync::cli::main(helpdesk_sync::cli::Cli::parse())
}
