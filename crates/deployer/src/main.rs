fn main() -> std::process::ExitCode {
    deployer::main_with_args()
}
