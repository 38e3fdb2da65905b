//! One echo burst, tallied and classified: what each echo came to ([`Echo`]) in, outcome, RTT,
//! packet counts and a sentence for the detail out. Pure, so every rule is a table test.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use netdiag_model::result::{Burst, Rtt};
use netdiag_model::{IcmpFailure, Outcome};

use crate::probe::common::{self, SendErrno};

/// What became of one echo request.
#[derive(Debug)]
pub(super) enum Echo {
    /// An echo reply came back after this long.
    Reply(Duration),
    /// An ICMP error about this echo came back from `from` (a router, or the source's own
    /// stack when the neighbour never answered).
    IcmpError { from: IpAddr, words: &'static str },
    /// Sent; nothing came back before the timeout.
    Lost,
    /// The kernel refused to send it.
    SendFailed(io::Error),
    /// The ping library failed before sending (its text).
    NotSent(String),
}

/// How a burst ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Summary {
    pub(super) outcome: Outcome,
    pub(super) rtt: Option<Rtt>,
    /// None when not a single echo left the source.
    pub(super) burst: Option<Burst>,
    pub(super) detail: String,
}

fn show(d: Duration) -> String {
    common::rtt(d).map_or_else(|| format!("{d:?}"), |r| r.to_string())
}

/// Classifies a burst to `ip`: `Ok` when any reply came back (RTT: the median of the replies,
/// the lower middle one for an even count); else `Icmp(Unreachable)` when an ICMP error came
/// back or the kernel had no route; else `LocalError` when the kernel refused to send (a local
/// firewall answers EPERM); else `Icmp(Timeout)`.
pub(super) fn summarize(ip: IpAddr, timeout: Duration, echoes: &[Echo]) -> Summary {
    let mut rtts: Vec<Duration> = vec![];
    let mut errors: Vec<(IpAddr, &'static str)> = vec![];
    let mut refused: Vec<&io::Error> = vec![];
    let mut not_sent: Vec<&str> = vec![];
    let mut lost = 0u32;
    for echo in echoes {
        match echo {
            Echo::Reply(d) => rtts.push(*d),
            Echo::IcmpError { from, words } => errors.push((*from, words)),
            Echo::Lost => lost += 1,
            Echo::SendFailed(e) => refused.push(e),
            Echo::NotSent(text) => not_sent.push(text),
        }
    }
    let received = u32::try_from(rtts.len()).unwrap_or(u32::MAX);
    let sent = received.saturating_add(u32::try_from(errors.len()).unwrap_or(u32::MAX)).saturating_add(lost);
    let burst = Burst::new(sent, received).ok();
    rtts.sort();
    let median = rtts.get(rtts.len().saturating_sub(1) / 2).copied();
    let error_words = |errors: &[(IpAddr, &str)]| -> String {
        let (from, words) = errors[0];
        format!("ICMP {words} from {from} for {}/{sent} echoes", errors.len())
    };
    let (outcome, detail) = if let (Some(median), Some(min), Some(max)) = (median, rtts.first(), rtts.last())
    {
        let mut detail = format!(
            "{received}/{sent} echo replies from {ip}, rtt min/median/max {}/{}/{}",
            show(*min),
            show(median),
            show(*max)
        );
        if !errors.is_empty() {
            detail.push_str(&format!("; {}", error_words(&errors)));
        }
        (Outcome::Ok, detail)
    } else if !errors.is_empty() {
        (Outcome::Icmp(IcmpFailure::Unreachable), format!("{ip}: {}", error_words(&errors)))
    } else if let Some(e) = refused.iter().find(|e| SendErrno::of(e) == SendErrno::Unreachable) {
        (Outcome::Icmp(IcmpFailure::Unreachable), format!("cannot send to {ip}: {}", common::errno_words(e)))
    } else if let Some(e) = refused.first() {
        (Outcome::LocalError, format!("echo request to {ip} not sent: {}", common::errno_words(e)))
    } else if let Some(text) = not_sent.first() {
        (Outcome::LocalError, format!("echo request to {ip} not sent: {text}"))
    } else {
        let detail = format!(
            "no echo reply from {ip} within {} to any of {sent} echo requests",
            common::human(timeout)
        );
        (Outcome::Icmp(IcmpFailure::Timeout), detail)
    };
    Summary { outcome, rtt: median.and_then(common::rtt), burst, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_millis(500);

    fn ip() -> IpAddr {
        "10.244.2.5".parse().unwrap()
    }

    fn ms(n: u64) -> Echo {
        Echo::Reply(Duration::from_micros(n * 1000))
    }

    fn errno(e: i32) -> Echo {
        Echo::SendFailed(io::Error::from_raw_os_error(e))
    }

    fn unreachable() -> Echo {
        Echo::IcmpError { from: "10.244.1.1".parse().unwrap(), words: "host unreachable" }
    }

    /// Echoes, the outcome they make, and (sent, received) when anything was sent.
    type Case = (Vec<Echo>, Outcome, Option<(u32, u32)>);

    #[test]
    fn outcomes_by_what_came_back() {
        let cases: Vec<Case> = vec![
            (vec![ms(3), ms(1), ms(2)], Outcome::Ok, Some((3, 3))),
            (vec![ms(1), Echo::Lost, unreachable()], Outcome::Ok, Some((3, 1))),
            (vec![Echo::Lost, Echo::Lost], Outcome::Icmp(IcmpFailure::Timeout), Some((2, 0))),
            (vec![Echo::Lost, unreachable()], Outcome::Icmp(IcmpFailure::Unreachable), Some((2, 0))),
            (vec![errno(libc::EHOSTUNREACH)], Outcome::Icmp(IcmpFailure::Unreachable), None),
            (
                vec![errno(libc::ENETUNREACH), errno(libc::EPERM)],
                Outcome::Icmp(IcmpFailure::Unreachable),
                None,
            ),
            (vec![errno(libc::EPERM), errno(libc::EPERM)], Outcome::LocalError, None),
            (vec![Echo::NotSent("socket closed".into())], Outcome::LocalError, None),
        ];
        for (echoes, want, counts) in cases {
            let s = summarize(ip(), T, &echoes);
            assert_eq!(s.outcome, want, "{echoes:?}: {}", s.detail);
            assert_eq!(s.burst.map(|b| (b.sent(), b.received())), counts, "{echoes:?}");
            assert_eq!(s.rtt.is_some(), want == Outcome::Ok, "{echoes:?}");
        }
    }

    #[test]
    fn rtt_is_the_median_of_the_replies() {
        let s = summarize(ip(), T, &[ms(9), ms(1), Echo::Lost, ms(2)]);
        assert_eq!(s.rtt.unwrap().as_micros(), 2000);
        let even = summarize(ip(), T, &[ms(4), ms(1), ms(3), ms(2)]);
        assert_eq!(even.rtt.unwrap().as_micros(), 2000, "the lower middle of an even count");
        assert_eq!(s.detail, "3/4 echo replies from 10.244.2.5, rtt min/median/max 1.000ms/2.000ms/9.000ms");
    }

    #[test]
    fn replies_faster_than_the_clock_are_lower_bounds() {
        let s = summarize(ip(), T, &[Echo::Reply(Duration::ZERO)]);
        let rtt = s.rtt.unwrap();
        assert!(rtt.is_lower_bound());
        assert_eq!(rtt.as_micros(), 1);
        assert!(s.detail.contains("≥1µs"), "{}", s.detail);
    }

    #[test]
    fn failures_say_what_happened() {
        let timeout = summarize(ip(), T, &[Echo::Lost, Echo::Lost]);
        assert_eq!(timeout.detail, "no echo reply from 10.244.2.5 within 500ms to any of 2 echo requests");
        let firewall = summarize(ip(), T, &[errno(libc::EPERM)]);
        assert!(firewall.detail.contains("local firewall rule"), "{}", firewall.detail);
        let icmp = summarize(ip(), T, &[unreachable(), Echo::Lost]);
        assert_eq!(icmp.detail, "10.244.2.5: ICMP host unreachable from 10.244.1.1 for 1/2 echoes");
    }
}
