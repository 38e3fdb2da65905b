//! The process's memory habits, set once at start-up before any other thread exists.
//!
//! glibc's malloc gives each thread that allocates its own arena (up to 8 per core), each
//! keeping freed memory for itself; the agent's namespace threads and runtime workers each
//! hold one that way, most of it idle. Two arenas serve a 2-worker runtime without lock
//! contention worth measuring, and keep the agent's resident memory small.

/// Arenas glibc's malloc may create.
const MALLOC_ARENAS: libc::c_int = 2;

/// Caps glibc's malloc arenas at [`MALLOC_ARENAS`] (other C libraries: nothing to do).
pub fn cap_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallopt only changes malloc's tunables; it is called before any other thread
        // of this process exists, so no allocation runs concurrently with it.
        #[allow(unsafe_code)]
        let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS) };
        if ok != 1 {
            tracing::debug!("glibc refused M_ARENA_MAX; malloc keeps its default arenas");
        }
    }
}
