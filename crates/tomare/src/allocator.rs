//! The process's allocator: mimalloc rather than glibc's malloc. The relay
//! allocates and frees small buffers on many threads; on bench/relay.sh
//! mimalloc took about a quarter less user CPU and a sixth less time.
//! glibc's malloc is left to the C libraries (SQLite, zstd; see `serve`).
//! tomare is built for Linux with glibc (this, `mallopt`, per-thread nice).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// The option numbers below are mimalloc 3's (`mi_option_e`); mimalloc 2
// numbers them differently and has fewer.
const _: () = assert!(libmimalloc_sys::_mi_option_last == 47, "mimalloc 3's option table");
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const ARENA_MAX_OBJECT_SIZE: libmimalloc_sys::mi_option_t = 45;

/// mimalloc's defaults, changed: commit arena memory as it is used, give
/// freed memory back after 100 ms rather than 1 s, and take blocks over
/// 4 MiB (a big message's buffers) straight from the system and give them
/// straight back. With its own defaults the relay bench peaked near
/// 150 MiB (with these near 75-115 MiB, no slower) and bench/bigmail.py's
/// ten 45 MB messages near 192 MiB (with these 153-164 MiB; glibc's malloc,
/// 140 MiB). Defaults only: a `MIMALLOC_…` variable still wins, read by
/// mimalloc as always.
///
/// They must be set before mimalloc starts (it reserves its first arena
/// then): this runs as an ELF constructor in `.init_array.00100`, which
/// runs ahead of mimalloc's own (priority 101 with clang, unprioritised
/// with gcc) and before Rust's runtime allocates anything.
extern "C" fn tune() {
    for (option, value) in [(ARENA_EAGER_COMMIT, 0), (PURGE_DELAY, 100), (ARENA_MAX_OBJECT_SIZE, 4096)] {
        // SAFETY: writes one entry of mimalloc's static option table;
        // nothing else runs yet and it does not allocate.
        unsafe { libmimalloc_sys::mi_option_set_default(option, value) }
    }
}

#[used]
#[unsafe(link_section = ".init_array.00100")]
static TUNE: extern "C" fn() = tune;
