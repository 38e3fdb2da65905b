//! The integer socket options socket2 does not wrap (`IP_MTU_DISCOVER`, `IP_MTU` and their
//! IPv6 twins, `ICMP_FILTER`), set and read with libc: the only unsafe code of the probes.

use std::io;
use std::os::fd::AsRawFd;

use libc::{c_int, socklen_t};

const INT_LEN: socklen_t = std::mem::size_of::<c_int>() as socklen_t;

pub(crate) fn set_int(socket: &impl AsRawFd, level: c_int, name: c_int, value: c_int) -> io::Result<()> {
    // SAFETY: setsockopt reads exactly INT_LEN bytes from `value`, a live c_int on our stack;
    // the fd is owned by `socket` for the duration of the call.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::setsockopt(socket.as_raw_fd(), level, name, (&raw const value).cast(), INT_LEN) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

pub(crate) fn get_int(socket: &impl AsRawFd, level: c_int, name: c_int) -> io::Result<c_int> {
    let mut value: c_int = 0;
    let mut len = INT_LEN;
    // SAFETY: getsockopt writes at most `len` (INT_LEN) bytes into `value`, a c_int we own,
    // and updates `len`; the fd is owned by `socket` for the duration of the call.
    #[allow(unsafe_code)]
    let rc =
        unsafe { libc::getsockopt(socket.as_raw_fd(), level, name, (&raw mut value).cast(), &raw mut len) };
    if rc == 0 { Ok(value) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Protocol, Socket, Type};

    #[test]
    fn sets_and_reads_back_an_option() {
        // A UDP socket needs no privilege and changes nothing outside this process.
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        set_int(&s, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_PROBE).unwrap();
        assert_eq!(get_int(&s, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER).unwrap(), libc::IP_PMTUDISC_PROBE);
        let err = get_int(&s, libc::IPPROTO_IP, libc::IP_MTU).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "IP_MTU needs a connected socket");
    }
}
