/// mimalloc instead of the system allocator: the request path allocates and frees many small
/// buffers (headers, rows, JSON), and glibc's malloc spent about a quarter of each request's
/// instructions on them (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    challenge::cli::main()
}
