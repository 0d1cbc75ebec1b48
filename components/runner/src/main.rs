//! The `runner` binary: the process-wide settings a library must not make
//! (the allocator, huge pages), then [`runner::main`].

use std::process::ExitCode;

/// mimalloc rather than the C library's allocator: the images link musl,
/// whose allocator made the shipped runner ~25% slower per request than the
/// same code on glibc (every request allocates a store, a WASI context and
/// HTTP buffers, from several threads).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// No transparent huge pages for this process. mimalloc's heap would
/// otherwise take a 2 MiB page for each thread's first allocations (asked
/// for with `madvise`, which the `no_thp` build of mimalloc no longer does,
/// or given unasked by a kernel whose THP setting is `always`), each zeroed
/// on first touch: measured, 8 MiB of the runner's 19.5 MiB RSS and 1-1.5 ms
/// of its start-up CPU, for no gain per request. Best effort: a kernel or a
/// seccomp profile that refuses costs only that memory.
#[cfg(target_os = "linux")]
fn disable_transparent_huge_pages() {
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

fn main() -> ExitCode {
    #[cfg(target_os = "linux")]
    disable_transparent_huge_pages();
    runner::main()
}
