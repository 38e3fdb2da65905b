//! Shared by every fuzz target: the allocation cap and the input helpers.
//!
//! The cap is a global allocator wrapper rather than libFuzzer's `-malloc_limit_mb`: that flag
//! needs the sanitizer runtime's malloc hooks, which a `--sanitizer none` build (the only kind the
//! stable toolchain makes) does not have. Past the cap an allocation fails, Rust's allocation
//! error handler aborts ("memory allocation of N bytes failed") and libFuzzer records the input as
//! a crash, so unbounded memory on bad input is a finding like a panic is.

use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Live heap bytes a target may hold at once (the brief's budget for one input).
pub const CAP_BYTES: usize = 256 << 20;

/// [`System`] with a cap on live bytes.
#[derive(Debug)]
pub struct CappedAlloc {
    live: AtomicUsize,
}

impl CappedAlloc {
    const fn new() -> Self {
        CappedAlloc { live: AtomicUsize::new(0) }
    }

    /// Reserves `size` bytes of the budget; false (nothing reserved) past the cap.
    fn reserve(&self, size: usize) -> bool {
        let before = self.live.fetch_add(size, Ordering::Relaxed);
        if before.saturating_add(size) > CAP_BYTES {
            self.live.fetch_sub(size, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn release(&self, size: usize) {
        self.live.fetch_sub(size, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to `System` unchanged; the counter only decides whether to
// forward an allocation at all, and a refused one returns null as the contract allows.
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !self.reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            self.release(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !self.reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            self.release(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) };
        self.release(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !self.reserve(new_size - old) {
            return std::ptr::null_mut();
        }
        // SAFETY: `ptr` came from `System` with `layout`; the caller upholds `new_size`'s rules.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        match (p.is_null(), new_size > old) {
            (true, true) => self.release(new_size - old),
            (false, false) => self.release(old - new_size),
            _ => {}
        }
        p
    }
}

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc::new();

/// The input as text the way the agent reads a tool's output or a file: invalid UTF-8 becomes
/// U+FFFD rather than being skipped, so every input reaches the parser.
pub fn text(data: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// The start of a long text, for assertion messages.
pub fn head(s: &str) -> &str {
    let mut end = s.len().min(300);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// What an agent's parser produced survives the trip to the collector: the collector validates
/// every field of an inspection and rejects the whole report on one bad value, so a parser
/// output that does not convert back loses the node's inspection.
pub fn reaches_the_collector<M, W>(m: &M)
where
    M: Clone + PartialEq + std::fmt::Debug + TryFrom<W>,
    M::Error: std::fmt::Display,
    W: From<M>,
{
    match M::try_from(W::from(m.clone())) {
        Ok(back) => assert_eq!(&back, m, "model → wire → model changed it"),
        Err(e) => panic!("the collector rejects {m:?}: {e}"),
    }
}

/// [`reaches_the_collector`] for NAT frontends, with targets capped as the agent caps them.
/// Every drop rule the agent reads passes the collector's validation, as it is.
pub fn filter_reaches_the_collector(drops: &[netdiag_model::inspect::FilterDrop]) {
    assert!(drops.len() <= netdiag_model::limits::MAX_FILTER_DROPS, "{} drop rules", drops.len());
    for d in drops {
        reaches_the_collector::<_, netdiag_proto::v1::FilterDrop>(d);
    }
}

/// Every NAT rule outside kube-proxy's chains the agent reads passes the collector's
/// validation, as it is, and there are at most the bound of them.
pub fn nat_rules_reach_the_collector(rules: &[netdiag_model::inspect::NatRule]) {
    assert!(rules.len() <= netdiag_model::limits::MAX_NAT_RULES, "{} NAT rules", rules.len());
    for r in rules {
        reaches_the_collector::<_, netdiag_proto::v1::NatRule>(r);
    }
}

pub fn nat_reaches_the_collector(services: &[netdiag_model::inspect::NatService]) {
    use netdiag_model::limits::MAX_NAT_TARGETS;
    for s in services {
        let mut s = s.clone();
        s.targets.truncate(MAX_NAT_TARGETS);
        reaches_the_collector::<_, netdiag_proto::v1::NatService>(&s);
    }
}
