//! Which namespace is which: inode identity of namespace files and `SO_NETNS_COOKIE` of sockets.

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Identity of a network namespace file: device and inode (what `ip netns identify` compares).
/// Two paths (a bind mount and `/proc/<pid>/ns/net`) name the same namespace iff ids are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetnsId {
    pub dev: u64,
    pub ino: u64,
}

pub fn netns_id(path: &Path) -> std::io::Result<NetnsId> {
    let m = std::fs::metadata(path)?;
    Ok(NetnsId { dev: m.dev(), ino: m.ino() })
}

/// The namespace of the calling thread.
pub fn current_netns_id() -> std::io::Result<NetnsId> {
    netns_id(Path::new("/proc/thread-self/ns/net"))
}

/// The kernel's cookie for the namespace a socket lives in (`SO_NETNS_COOKIE`, Linux ≥ 5.14).
pub fn socket_netns_cookie(socket: &impl AsRawFd) -> std::io::Result<u64> {
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cookie`, a valid u64 we own.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc == 0 { Ok(cookie) } else { Err(std::io::Error::last_os_error()) }
}
