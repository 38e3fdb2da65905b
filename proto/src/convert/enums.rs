//! Wire enums ↔ model enums. Inbound, UNSPECIFIED (0) and unknown numbers are errors unless the
//! contract gives 0 a meaning (matrix level, matrix kind, proxy mode).

use netdiag_model::inventory::ProxyMode;
use netdiag_model::{
    DnsFailure, HttpFailure, IcmpFailure, MatrixLevel, MtuFailure, Outcome, ProbeKind, TcpFailure,
};

use super::error::ErrorKind;
use super::field::Result;
use crate::v1;

/// Defines `$decode(i32) -> Result<model::$model>` and `From<model::$model> for v1::$wire`.
macro_rules! wire_enum {
    ($decode:ident, $what:literal, $wire:ident => $model:ident { $($w:ident => $m:ident),+ $(,)? }) => {
        pub(crate) fn $decode(raw: i32) -> Result<netdiag_model::$model> {
            match v1::$wire::try_from(raw) {
                $(Ok(v1::$wire::$w) => Ok(netdiag_model::$model::$m),)+
                Ok(v1::$wire::Unspecified) => Err(ErrorKind::Unspecified { what: $what }.into()),
                Err(_) => Err(ErrorKind::UnknownEnum { what: $what, value: raw }.into()),
            }
        }

        impl From<netdiag_model::$model> for v1::$wire {
            fn from(m: netdiag_model::$model) -> Self {
                match m {
                    $(netdiag_model::$model::$m => v1::$wire::$w,)+
                }
            }
        }
    };
}

wire_enum!(probe_kind, "probe kind", ProbeKind => ProbeKind {
    Icmp => Icmp, Tcp => Tcp, Dns => Dns, Http => Http, Mtu => Mtu,
});
wire_enum!(capability, "capability", Capability => Capability {
    Icmp => Icmp,
    Tcp => Tcp,
    Dns => Dns,
    Http => Http,
    Mtu => Mtu,
    InspectIptables => InspectIptables,
    InspectNftables => InspectNftables,
    OnDemand => OnDemand,
    CollectorInventory => CollectorInventory,
});
wire_enum!(record_type, "record type", RecordType => RecordType { A => A, Aaaa => Aaaa });
wire_enum!(dns_transport, "DNS transport", DnsTransport => DnsTransport { Udp => Udp, Tcp => Tcp });
wire_enum!(step_status, "step status", StepStatus => StepStatus {
    Ok => Ok, Failed => Failed, Skipped => Skipped, Warning => Warning,
});
wire_enum!(severity, "severity", Severity => Severity {
    Info => Info, Warning => Warning, Critical => Critical,
});
wire_enum!(cell_status, "cell status", CellStatus => CellStatus {
    Ok => Ok, Degraded => Degraded, Failed => Failed, Unknown => Unknown,
});

/// Model → wire number.
pub(crate) fn wire<W: From<M> + Into<i32>, M>(m: M) -> i32 {
    W::from(m).into()
}

/// UNSPECIFIED means "every kind" (matrix requests).
pub(crate) fn opt_probe_kind(raw: i32) -> Result<Option<ProbeKind>> {
    if raw == v1::ProbeKind::Unspecified as i32 { Ok(None) } else { probe_kind(raw).map(Some) }
}

pub(crate) fn opt_probe_kind_to_wire(k: Option<ProbeKind>) -> i32 {
    k.map_or(v1::ProbeKind::Unspecified as i32, wire::<v1::ProbeKind, _>)
}

/// UNSPECIFIED means pod, as the contract says.
pub(crate) fn matrix_level(raw: i32) -> Result<MatrixLevel> {
    match v1::MatrixLevel::try_from(raw) {
        Ok(v1::MatrixLevel::Unspecified | v1::MatrixLevel::Pod) => Ok(MatrixLevel::Pod),
        Ok(v1::MatrixLevel::Node) => Ok(MatrixLevel::Node),
        Err(_) => Err(ErrorKind::UnknownEnum { what: "matrix level", value: raw }.into()),
    }
}

impl From<MatrixLevel> for v1::MatrixLevel {
    fn from(l: MatrixLevel) -> Self {
        match l {
            MatrixLevel::Pod => v1::MatrixLevel::Pod,
            MatrixLevel::Node => v1::MatrixLevel::Node,
        }
    }
}

/// NONE means no kube-proxy rules; UNSPECIFIED is an agent that forgot to say.
pub(crate) fn proxy_mode(raw: i32) -> Result<Option<ProxyMode>> {
    match v1::ProxyMode::try_from(raw) {
        Ok(v1::ProxyMode::Iptables) => Ok(Some(ProxyMode::Iptables)),
        Ok(v1::ProxyMode::Nftables) => Ok(Some(ProxyMode::Nftables)),
        Ok(v1::ProxyMode::None) => Ok(None),
        Ok(v1::ProxyMode::Unspecified) => Err(ErrorKind::Unspecified { what: "proxy mode" }.into()),
        Err(_) => Err(ErrorKind::UnknownEnum { what: "proxy mode", value: raw }.into()),
    }
}

pub(crate) fn proxy_mode_to_wire(m: Option<ProxyMode>) -> i32 {
    let m = match m {
        Some(ProxyMode::Iptables) => v1::ProxyMode::Iptables,
        Some(ProxyMode::Nftables) => v1::ProxyMode::Nftables,
        None => v1::ProxyMode::None,
    };
    m as i32
}

pub(crate) fn outcome(raw: i32) -> Result<Outcome> {
    use v1::Outcome as W;
    let what = "probe outcome";
    Ok(match W::try_from(raw) {
        Ok(W::Ok) => Outcome::Ok,
        Ok(W::DnsNxdomain) => Outcome::Dns(DnsFailure::NxDomain),
        Ok(W::DnsServfail) => Outcome::Dns(DnsFailure::ServFail),
        Ok(W::DnsTimeout) => Outcome::Dns(DnsFailure::Timeout),
        Ok(W::DnsNoNameserver) => Outcome::Dns(DnsFailure::NoNameserver),
        Ok(W::DnsRefused) => Outcome::Dns(DnsFailure::Refused),
        Ok(W::DnsNoRecords) => Outcome::Dns(DnsFailure::NoRecords),
        Ok(W::IcmpTimeout) => Outcome::Icmp(IcmpFailure::Timeout),
        Ok(W::IcmpUnreachable) => Outcome::Icmp(IcmpFailure::Unreachable),
        Ok(W::TcpRefused) => Outcome::Tcp(TcpFailure::Refused),
        Ok(W::TcpTimeout) => Outcome::Tcp(TcpFailure::Timeout),
        Ok(W::TcpUnreachable) => Outcome::Tcp(TcpFailure::Unreachable),
        Ok(W::HttpStatus) => Outcome::Http(HttpFailure::Status),
        Ok(W::HttpTimeout) => Outcome::Http(HttpFailure::Timeout),
        Ok(W::HttpProtocol) => Outcome::Http(HttpFailure::Protocol),
        Ok(W::MtuReduced) => Outcome::Mtu(MtuFailure::Reduced),
        Ok(W::SourceGone) => Outcome::SourceGone,
        Ok(W::LocalError) => Outcome::LocalError,
        Ok(W::Unspecified) => return Err(ErrorKind::Unspecified { what }.into()),
        Err(_) => return Err(ErrorKind::UnknownEnum { what, value: raw }.into()),
    })
}

impl From<Outcome> for v1::Outcome {
    fn from(o: Outcome) -> Self {
        use v1::Outcome as W;
        match o {
            Outcome::Ok => W::Ok,
            Outcome::Dns(DnsFailure::NxDomain) => W::DnsNxdomain,
            Outcome::Dns(DnsFailure::ServFail) => W::DnsServfail,
            Outcome::Dns(DnsFailure::Timeout) => W::DnsTimeout,
            Outcome::Dns(DnsFailure::NoNameserver) => W::DnsNoNameserver,
            Outcome::Dns(DnsFailure::Refused) => W::DnsRefused,
            Outcome::Dns(DnsFailure::NoRecords) => W::DnsNoRecords,
            Outcome::Icmp(IcmpFailure::Timeout) => W::IcmpTimeout,
            Outcome::Icmp(IcmpFailure::Unreachable) => W::IcmpUnreachable,
            Outcome::Tcp(TcpFailure::Refused) => W::TcpRefused,
            Outcome::Tcp(TcpFailure::Timeout) => W::TcpTimeout,
            Outcome::Tcp(TcpFailure::Unreachable) => W::TcpUnreachable,
            Outcome::Http(HttpFailure::Status) => W::HttpStatus,
            Outcome::Http(HttpFailure::Timeout) => W::HttpTimeout,
            Outcome::Http(HttpFailure::Protocol) => W::HttpProtocol,
            Outcome::Mtu(MtuFailure::Reduced) => W::MtuReduced,
            Outcome::SourceGone => W::SourceGone,
            Outcome::LocalError => W::LocalError,
        }
    }
}
