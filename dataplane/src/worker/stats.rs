//! Per-worker counters: drops by [`DropReason`] and traffic/event counts by [`Counter`].
//!
//! One [`WorkerStats`] per worker, shared with the control plane through an `Arc`. The worker
//! is the only writer, so an increment is a relaxed load and store (no locked read-modify-write
//! on the hot path); the control plane reads with relaxed loads at any time. Each array is
//! cache-padded away from the other workers' counters.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use crossbeam_utils::CachePadded;

use crate::esp::DropReason;

/// What a worker counts besides drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Counter {
    /// Frames received from ports.
    Rx = 0,
    /// Frames accepted by a tx queue.
    Tx,
    /// Inbound ESP packets decrypted and forwarded.
    Decrypted,
    /// Outbound packets encrypted.
    Encrypted,
    /// ARP replies sent for the gateway's addresses.
    ArpReplies,
    /// ARP requests sent to resolve next hops.
    ArpRequests,
    /// Neighbours learned from ARP.
    NeighboursLearned,
    /// Packets whose next hop was not resolved yet (held for the ARP answer, or dropped as
    /// `NoRoute` when the hold queue is full).
    NeighbourMisses,
    /// Packets held for an ARP answer.
    NeighbourHeld,
    /// Held packets sent once their neighbour answered.
    NeighbourReleased,
    /// ICMP echo replies sent.
    EchoReplies,
    /// IKE datagrams handed to the control plane.
    Exceptions,
    /// NAT-T keepalives seen.
    Keepalives,
    /// ESP packets handed to the worker that owns their SA.
    HandedOff,
    /// ESP packets taken over from another worker.
    TakenOver,
    /// Datagrams sent for the control plane.
    ControlTx,
    /// Commands applied.
    Commands,
    /// Commands that could not be applied (table full, SPI of another worker).
    CommandsFailed,
    /// Events dropped because the event ring was full.
    EventsLost,
    /// Packets dropped because their TTL ran out.
    TtlExpired,
    /// Loop iterations.
    Polls,
}

impl Counter {
    /// Number of counters.
    pub const COUNT: usize = Counter::Polls as usize + 1;

    /// Every counter, in index order.
    pub const ALL: [Counter; Counter::COUNT] = [
        Counter::Rx,
        Counter::Tx,
        Counter::Decrypted,
        Counter::Encrypted,
        Counter::ArpReplies,
        Counter::ArpRequests,
        Counter::NeighboursLearned,
        Counter::NeighbourMisses,
        Counter::NeighbourHeld,
        Counter::NeighbourReleased,
        Counter::EchoReplies,
        Counter::Exceptions,
        Counter::Keepalives,
        Counter::HandedOff,
        Counter::TakenOver,
        Counter::ControlTx,
        Counter::Commands,
        Counter::CommandsFailed,
        Counter::EventsLost,
        Counter::TtlExpired,
        Counter::Polls,
    ];

    /// A short snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Counter::Rx => "rx",
            Counter::Tx => "tx",
            Counter::Decrypted => "decrypted",
            Counter::Encrypted => "encrypted",
            Counter::ArpReplies => "arp_replies",
            Counter::ArpRequests => "arp_requests",
            Counter::NeighboursLearned => "neighbours_learned",
            Counter::NeighbourMisses => "neighbour_misses",
            Counter::NeighbourHeld => "neighbour_held",
            Counter::NeighbourReleased => "neighbour_released",
            Counter::EchoReplies => "echo_replies",
            Counter::Exceptions => "exceptions",
            Counter::Keepalives => "keepalives",
            Counter::HandedOff => "handed_off",
            Counter::TakenOver => "taken_over",
            Counter::ControlTx => "control_tx",
            Counter::Commands => "commands",
            Counter::CommandsFailed => "commands_failed",
            Counter::EventsLost => "events_lost",
            Counter::TtlExpired => "ttl_expired",
            Counter::Polls => "polls",
        }
    }
}

/// One worker's counters (see the module docs for the single-writer rule).
#[derive(Debug)]
pub struct WorkerStats {
    drops: CachePadded<[AtomicU64; DropReason::COUNT]>,
    counters: CachePadded<[AtomicU64; Counter::COUNT]>,
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            drops: CachePadded::new(core::array::from_fn(|_| AtomicU64::new(0))),
            counters: CachePadded::new(core::array::from_fn(|_| AtomicU64::new(0))),
        }
    }
}

#[inline]
fn bump(c: &AtomicU64, n: u64) {
    // Single writer: a plain load and store is enough and avoids a locked instruction.
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl WorkerStats {
    /// Counts a drop (worker only).
    #[cold]
    pub fn drop_for(&self, r: DropReason) {
        bump(&self.drops[r as usize], 1);
    }

    /// Adds `n` to a counter (worker only).
    #[inline]
    pub fn add(&self, c: Counter, n: u64) {
        if n != 0 {
            bump(&self.counters[c as usize], n);
        }
    }

    /// Drops counted for `r`.
    pub fn drops(&self, r: DropReason) -> u64 {
        self.drops[r as usize].load(Relaxed)
    }

    /// Value of counter `c`.
    pub fn get(&self, c: Counter) -> u64 {
        self.counters[c as usize].load(Relaxed)
    }

    /// Every drop reason with a non-zero count.
    pub fn nonzero_drops(&self) -> Vec<(DropReason, u64)> {
        DropReason::ALL.iter().map(|&r| (r, self.drops(r))).filter(|&(_, n)| n != 0).collect()
    }

    /// Total drops.
    pub fn total_drops(&self) -> u64 {
        DropReason::ALL.iter().map(|&r| self.drops(r)).sum()
    }
}

/// What a worker shares with the control plane: counters, and per inbound slot the coarse
/// time its SA last received a packet (DPD: "has the peer sent anything lately?").
#[derive(Debug)]
pub struct WorkerShared {
    /// Counters.
    pub stats: WorkerStats,
    last_seen: Box<[AtomicU32]>,
}

impl WorkerShared {
    /// Shared state for a worker with `slots` inbound slots.
    pub fn new(slots: u32) -> WorkerShared {
        WorkerShared { stats: WorkerStats::default(), last_seen: (0..slots).map(|_| AtomicU32::new(0)).collect() }
    }

    /// Coarse clock value when inbound `slot` last received a valid packet (0: never).
    pub fn last_seen(&self, slot: u32) -> u32 {
        self.last_seen.get(slot as usize).map_or(0, |a| a.load(Relaxed))
    }

    #[inline]
    pub(crate) fn touch(&self, slot: u32, now: u32) {
        if let Some(a) = self.last_seen.get(slot as usize) {
            // Skip the store when unchanged: the line stays shared instead of bouncing to
            // the control plane's reader on every packet.
            if a.load(Relaxed) != now {
                a.store(now, Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_unique_and_indices_ordered() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
        let names: std::collections::HashSet<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), Counter::COUNT);
    }

    #[test]
    fn counts_and_reads() {
        let s = WorkerShared::new(4);
        s.stats.drop_for(DropReason::Spoofed);
        s.stats.drop_for(DropReason::Spoofed);
        s.stats.add(Counter::Rx, 32);
        s.stats.add(Counter::Rx, 0);
        assert_eq!(s.stats.drops(DropReason::Spoofed), 2);
        assert_eq!(s.stats.nonzero_drops(), vec![(DropReason::Spoofed, 2)]);
        assert_eq!(s.stats.total_drops(), 2);
        assert_eq!(s.stats.get(Counter::Rx), 32);
        s.touch(2, 77);
        assert_eq!(s.last_seen(2), 77);
        assert_eq!(s.last_seen(9), 0);
    }
}
