fn main() -> std::process::ExitCode {
    challenge::cli::main()
}
