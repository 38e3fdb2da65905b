//! What the agent produces, copied to every collector replica's uplink. Inspections and gone
//! sources are waited for (uplinks always take what they are handed, even while connecting, so
//! this never stalls for long); results are offered without waiting, and one an uplink cannot
//! take at once is counted as dropped for that collector only — a replica that fell behind
//! never holds the others back.

use tokio::sync::{mpsc, watch};

use super::{Outbound, UplinkStats};

/// One uplink's intake and the stats where its drops are counted.
#[derive(Debug)]
pub struct UplinkIntake {
    pub tx: mpsc::Sender<Outbound>,
    pub stats: watch::Sender<UplinkStats>,
}

/// Copies everything from `from` to every uplink until `from` closes or every uplink is gone.
pub async fn run(mut from: mpsc::Receiver<Outbound>, uplinks: Vec<UplinkIntake>) {
    while let Some(item) = from.recv().await {
        if !deliver(item, &uplinks).await {
            return;
        }
    }
}

/// Hands `item` to every uplink; false when every uplink is gone.
async fn deliver(item: Outbound, uplinks: &[UplinkIntake]) -> bool {
    let mut alive = false;
    let last = uplinks.len().saturating_sub(1);
    let mut item = Some(item);
    for (i, uplink) in uplinks.iter().enumerate() {
        // The last uplink takes the item itself; the others a copy.
        let copy = if i == last { item.take() } else { item.as_ref().and_then(copy_of) };
        let Some(copy) = copy else { continue };
        alive |= match copy {
            Outbound::Result(_) => match uplink.tx.try_send(copy) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    uplink.stats.send_modify(|s| s.dropped_results += 1);
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            },
            other => uplink.tx.send(other).await.is_ok(),
        };
    }
    alive
}

/// A copy for another uplink. Run progress belongs to the collector that asked for the run and
/// never goes through here.
fn copy_of(item: &Outbound) -> Option<Outbound> {
    match item {
        Outbound::Result(r) => Some(Outbound::Result(r.clone())),
        Outbound::Inspection(r) => Some(Outbound::Inspection(r.clone())),
        Outbound::SourcesGone(g) => Some(Outbound::SourcesGone(g.clone())),
        Outbound::RunProgress(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use netdiag_model::probe::Source;

    use super::*;

    fn intake(capacity: usize) -> (UplinkIntake, mpsc::Receiver<Outbound>, watch::Receiver<UplinkStats>) {
        let (tx, rx) = mpsc::channel(capacity);
        let (stats, stats_rx) = watch::channel(UplinkStats::default());
        (UplinkIntake { tx, stats }, rx, stats_rx)
    }

    fn gone(name: &str) -> Outbound {
        Outbound::SourcesGone(vec![Source::Node(name.parse().unwrap())])
    }

    /// Every uplink gets every item; a full uplink drops results (counted for it alone) while
    /// the others still get them.
    #[tokio::test]
    async fn every_uplink_gets_a_copy_and_a_full_one_drops_only_its_own() {
        let (a, mut a_rx, a_stats) = intake(8);
        let (b, mut b_rx, b_stats) = intake(1);
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(run(rx, vec![a, b]));
        tx.send(gone("node-1")).await.unwrap();
        assert!(matches!(a_rx.recv().await, Some(Outbound::SourcesGone(_))));
        assert!(matches!(b_rx.recv().await, Some(Outbound::SourcesGone(_))));
        // b takes one result and is then full: the other two are dropped for b, not for a.
        for _ in 0..3 {
            tx.send(Outbound::Result(Box::new(crate::buffer::tests::result(1)))).await.unwrap();
        }
        for _ in 0..3 {
            assert!(matches!(a_rx.recv().await, Some(Outbound::Result(_))));
        }
        assert!(matches!(b_rx.recv().await, Some(Outbound::Result(_))));
        assert_eq!(b_stats.borrow().dropped_results, 2);
        assert_eq!(a_stats.borrow().dropped_results, 0);
        drop(tx);
        task.await.unwrap();
    }

    /// The fan-out ends when every uplink is gone, not when only one is.
    #[tokio::test]
    async fn it_ends_when_every_uplink_is_gone() {
        let (a, a_rx, _a_stats) = intake(4);
        let (b, mut b_rx, _b_stats) = intake(4);
        drop(a_rx);
        let (tx, rx) = mpsc::channel(4);
        let task = tokio::spawn(run(rx, vec![a, b]));
        tx.send(gone("node-1")).await.unwrap();
        assert!(matches!(b_rx.recv().await, Some(Outbound::SourcesGone(_))));
        drop(b_rx);
        tx.send(gone("node-2")).await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), task).await.unwrap().unwrap();
    }
}
