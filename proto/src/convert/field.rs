//! Field-level checks shared by every message family: required sub-messages, addresses, ports,
//! timestamps, optional strings and capped lists.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use netdiag_model::text::excerpt;
use netdiag_model::{Port, UnixMillis};

use super::error::{At, ConvertError, ErrorKind};

pub(crate) type Result<T> = std::result::Result<T, ConvertError>;

/// An unset sub-message or oneof is an error.
pub(crate) fn required<T>(o: Option<T>) -> Result<T> {
    o.ok_or_else(|| ErrorKind::Missing.into())
}

pub(crate) fn ip(s: &str) -> Result<IpAddr> {
    if s.is_empty() {
        return Err(ErrorKind::Missing.into());
    }
    s.parse().map_err(|_| ErrorKind::BadIp { value: excerpt(s) }.into())
}

/// An address sent either as text (`ip`) or as 4 or 16 bytes in network order (`ip_bytes`):
/// exactly one of the two; errors name the field at fault.
pub(crate) fn ip_or_bytes(text: &str, bytes: &[u8]) -> Result<IpAddr> {
    match (text.is_empty(), bytes.is_empty()) {
        (true, true) => Err(ConvertError::from(ErrorKind::Missing)).at("ip"),
        (false, true) => ip(text).at("ip"),
        (true, false) => ip_from_bytes(bytes).at("ip_bytes"),
        (false, false) => Err(ErrorKind::Conflict("set either ip or ip_bytes, not both")).at("ip_bytes"),
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Result<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Ok(IpAddr::from(v4));
    }
    match <[u8; 16]>::try_from(bytes) {
        Ok(v6) => Ok(IpAddr::from(v6)),
        Err(_) => Err(ErrorKind::BadIpBytes { len: bytes.len() }.into()),
    }
}

/// An address as `ip_bytes`: 4 or 16 bytes in network order.
pub(crate) fn ip_to_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// An empty string means "none".
pub(crate) fn opt_ip(s: &str) -> Result<Option<IpAddr>> {
    if s.is_empty() { Ok(None) } else { ip(s).map(Some) }
}

pub(crate) fn net(s: &str) -> Result<IpNet> {
    if s.is_empty() {
        return Err(ErrorKind::Missing.into());
    }
    s.parse().map_err(|_| ErrorKind::BadNetwork { value: excerpt(s) }.into())
}

pub(crate) fn port(n: u32) -> Result<Port> {
    Ok(Port::new(n)?)
}

/// Port 0 means "none".
pub(crate) fn opt_port(n: u32) -> Result<Option<Port>> {
    if n == 0 { Ok(None) } else { port(n).map(Some) }
}

pub(crate) fn opt_port_to_wire(p: Option<Port>) -> u32 {
    p.map_or(0, |p| p.get().into())
}

/// A timestamp that must be set.
pub(crate) fn unix_ms(ms: i64) -> Result<UnixMillis> {
    if ms == 0 {
        return Err(ErrorKind::Missing.into());
    }
    Ok(UnixMillis::new(ms)?)
}

/// A timestamp where 0 means "never".
pub(crate) fn opt_unix_ms(ms: i64) -> Result<Option<UnixMillis>> {
    if ms == 0 { Ok(None) } else { unix_ms(ms).map(Some) }
}

pub(crate) fn opt_unix_ms_to_wire(t: Option<UnixMillis>) -> i64 {
    t.map_or(0, UnixMillis::get)
}

/// A string where empty means "none", checked by `parse` otherwise.
pub(crate) fn opt_str<T, E: Into<ConvertError>>(
    s: String,
    parse: impl FnOnce(String) -> std::result::Result<T, E>,
) -> Result<Option<T>> {
    if s.is_empty() { Ok(None) } else { parse(s).map(Some).map_err(Into::into) }
}

/// A string that must not be empty, checked by `parse`.
pub(crate) fn non_empty<T, E: Into<ConvertError>>(
    s: String,
    parse: impl FnOnce(String) -> std::result::Result<T, E>,
) -> Result<T> {
    if s.is_empty() {
        return Err(ErrorKind::Missing.into());
    }
    parse(s).map_err(Into::into)
}

pub(crate) fn opt_to_wire<T: Into<String>>(o: Option<T>) -> String {
    o.map(Into::into).unwrap_or_default()
}

/// Converts each element (errors carry the index), after checking the list is not over `max`.
pub(crate) fn list<W, M>(
    items: Vec<W>,
    max: usize,
    mut convert: impl FnMut(W) -> Result<M>,
) -> Result<Vec<M>> {
    if items.len() > max {
        return Err(ErrorKind::TooMany { len: items.len(), max }.into());
    }
    // Sized up front: collecting through `Result` would grow the vector step by step.
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        out.push(convert(item).at_index(i)?);
    }
    Ok(out)
}

/// Whole milliseconds of a duration the model keeps within u32 range.
pub(crate) fn millis_u32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

pub(crate) fn micros_u64(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
