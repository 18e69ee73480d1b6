//! Per-SA runtime state read and written by the ESP engine.
//!
//! `OutboundSa` may be shared by several workers (LAN flows towards one client spread over
//! queues), so its sequence number and counters are atomics. `InboundSa` belongs to the
//! worker that receives the SA's packets (RSS keeps one outer flow on one queue); its replay
//! window is plain state behind `&mut`, and its counters are atomics written by that one
//! worker and read by the control plane.

use core::net::IpAddr;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::esp::replay::ReplayWindow;
use crate::esp::{DropReason, Transform};

/// Byte and packet limits of an SA (RFC 7296 §2.8); 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lifetime {
    /// Bytes after which the control plane is asked to rekey.
    pub soft_bytes: u64,
    /// Bytes after which the SA refuses packets.
    pub hard_bytes: u64,
    /// Packets after which the control plane is asked to rekey.
    pub soft_packets: u64,
    /// Packets after which the SA refuses packets.
    pub hard_packets: u64,
}

fn over(limit: u64, value: u64) -> bool {
    limit != 0 && value >= limit
}

/// Something the control plane must hear about; each is reported once per SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaEvent {
    /// A soft lifetime was reached (or the sequence space is nearly used up): rekey.
    SoftLifetime,
    /// A hard lifetime was reached: the SA now drops everything.
    HardLifetime,
    /// The sequence number space is used up.
    SeqExhausted,
}

/// UDP encapsulation ports (RFC 3948).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpEncap {
    /// Our port, normally 4500.
    pub local_port: u16,
    /// The peer's (possibly NAT-mapped) port.
    pub remote_port: u16,
}

/// Outer addresses of a tunnel-mode SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunnel {
    /// The gateway's address.
    pub local: IpAddr,
    /// The client's (public, possibly NAT'd) address.
    pub remote: IpAddr,
    /// Present when ESP travels in UDP.
    pub encap: Option<UdpEncap>,
}

/// Traffic and error counters of one SA direction (the seed's `rxp rxb` / `txp txb`).
#[derive(Debug)]
pub struct SaCounters {
    packets: AtomicU64,
    bytes: AtomicU64,
    errors: [AtomicU64; DropReason::COUNT],
}

impl Default for SaCounters {
    fn default() -> Self {
        Self {
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl SaCounters {
    /// Packets processed successfully (inbound; an outbound SA derives its count from the
    /// sequence number: `OutboundSa::packets`).
    pub fn packets(&self) -> u64 {
        self.packets.load(Relaxed)
    }
    /// Inner (cleartext) bytes processed successfully.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Relaxed)
    }
    /// Packets dropped for `reason`.
    pub fn errors(&self, reason: DropReason) -> u64 {
        self.errors[reason as usize].load(Relaxed)
    }
    /// Total packets dropped.
    pub fn total_errors(&self) -> u64 {
        self.errors.iter().map(|e| e.load(Relaxed)).sum()
    }
    pub(crate) fn add_bytes(&self, bytes: usize) -> u64 {
        self.bytes.fetch_add(bytes as u64, Relaxed) + bytes as u64
    }
    pub(crate) fn add(&self, bytes: usize) -> (u64, u64) {
        let p = self.packets.fetch_add(1, Relaxed) + 1;
        let b = self.bytes.fetch_add(bytes as u64, Relaxed) + bytes as u64;
        (p, b)
    }
    #[cold]
    pub(crate) fn drop_for(&self, reason: DropReason) -> DropReason {
        self.errors[reason as usize].fetch_add(1, Relaxed);
        reason
    }
}

/// Fires each event at most once.
#[derive(Debug, Default)]
pub(crate) struct EventLatch {
    soft: AtomicBool,
    hard: AtomicBool,
    exhausted: AtomicBool,
}

impl EventLatch {
    #[cold]
    pub(crate) fn fire(&self, ev: SaEvent) -> Option<SaEvent> {
        let flag = match ev {
            SaEvent::SoftLifetime => &self.soft,
            SaEvent::HardLifetime => &self.hard,
            SaEvent::SeqExhausted => &self.exhausted,
        };
        (!flag.swap(true, Relaxed)).then_some(ev)
    }

    /// Checks lifetimes after a packet; returns the first newly crossed limit.
    pub(crate) fn after(&self, lt: &Lifetime, packets: u64, bytes: u64) -> Option<SaEvent> {
        if over(lt.hard_packets, packets) || over(lt.hard_bytes, bytes) {
            return self.fire(SaEvent::HardLifetime);
        }
        if over(lt.soft_packets, packets) || over(lt.soft_bytes, bytes) {
            return self.fire(SaEvent::SoftLifetime);
        }
        None
    }
}

/// The sending half of a CHILD_SA.
#[derive(Debug)]
#[repr(align(64))]
pub struct OutboundSa {
    /// The peer's SPI, written into each packet.
    pub spi: u32,
    /// Keys and algorithm.
    pub transform: Transform,
    /// Outer addresses and encapsulation.
    pub tunnel: Tunnel,
    /// Extended sequence numbers negotiated (RFC 4304).
    pub esn: bool,
    /// Limits.
    pub lifetime: Lifetime,
    /// Counters.
    pub counters: SaCounters,
    /// The tunnel's interface index in the firewall policy set (`IfIndex::MAX`: unknown, only
    /// `dstintf any` matches); set with [`OutboundSa::with_if_index`].
    pub if_index: crate::policy::IfIndex,
    /// Last sequence number handed out.
    seq: AtomicU64,
    /// The first sequence number this SA object sends.
    first_seq: u64,
    /// Whether a hard limit was hit: every later packet is refused.
    dead: AtomicBool,
    pub(crate) events: EventLatch,
}

/// Sequence numbers left when the SA asks for a rekey ahead of exhaustion.
const SEQ_SOFT_MARGIN: u64 = 1 << 20;

impl OutboundSa {
    /// A new outbound SA whose first packet carries sequence number 1.
    pub fn new(spi: u32, transform: Transform, tunnel: Tunnel, esn: bool, lifetime: Lifetime) -> Self {
        Self::with_seq(spi, transform, tunnel, esn, lifetime, 0)
    }

    /// Like `new`, continuing after sequence number `last` (tests, and the pcap tool's `--seq`).
    pub fn with_seq(spi: u32, transform: Transform, tunnel: Tunnel, esn: bool, lifetime: Lifetime, last: u64) -> Self {
        Self {
            spi,
            transform,
            tunnel,
            esn,
            lifetime,
            counters: SaCounters::default(),
            if_index: crate::policy::IfIndex::MAX,
            seq: AtomicU64::new(last),
            first_seq: last.wrapping_add(1),
            dead: AtomicBool::new(false),
            events: EventLatch::default(),
        }
    }

    /// The same SA carrying the tunnel's firewall interface index.
    pub fn with_if_index(mut self, if_index: crate::policy::IfIndex) -> Self {
        self.if_index = if_index;
        self
    }

    /// The last sequence number used.
    pub fn last_seq(&self) -> u64 {
        self.seq.load(Relaxed)
    }

    /// Whether a hard limit stopped this SA.
    pub fn is_dead(&self) -> bool {
        self.dead.load(Relaxed)
    }

    /// The first sequence number this SA sends.
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// Packets sealed: every sequence number handed out is a packet sent, because `encap`
    /// takes one only after everything that can fail has been checked.
    pub fn packets(&self) -> u64 {
        (self.seq.load(Relaxed) + 1).saturating_sub(self.first_seq)
    }

    /// Takes the next sequence number, or explains why there is none (RFC 4303 §3.3.3: the
    /// counter must not cycle; the SA must be rekeyed instead).
    pub(crate) fn next_seq(&self) -> Result<(u64, Option<SaEvent>), (DropReason, Option<SaEvent>)> {
        if self.dead.load(Relaxed) {
            return Err((DropReason::HardLifetime, None));
        }
        let max = if self.esn { u64::MAX } else { u64::from(u32::MAX) };
        let seq = self.seq.fetch_add(1, Relaxed).wrapping_add(1);
        if seq > max || seq == 0 {
            // Park the counter at the end so it cannot wrap under continued traffic.
            self.seq.store(max, Relaxed);
            self.dead.store(true, Relaxed);
            return Err((DropReason::SeqExhausted, self.events.fire(SaEvent::SeqExhausted)));
        }
        let ev = if max - seq < SEQ_SOFT_MARGIN { self.events.fire(SaEvent::SoftLifetime) } else { None };
        Ok((seq, ev))
    }

    pub(crate) fn mark_dead(&self) {
        self.dead.store(true, Relaxed);
    }
}

/// The receiving half of a CHILD_SA.
#[derive(Debug)]
#[repr(align(64))]
pub struct InboundSa {
    /// Our SPI.
    pub spi: u32,
    /// Keys and algorithm.
    pub transform: Transform,
    /// Extended sequence numbers negotiated.
    pub esn: bool,
    /// Anti-replay window.
    pub replay: ReplayWindow,
    /// Limits.
    pub lifetime: Lifetime,
    /// Counters, shared with the control plane: the worker owns the SA (`&mut`), so the
    /// control plane reads `rxp`/`rxb` for diagnose through its own handle.
    pub counters: Arc<SaCounters>,
    dead: bool,
    pub(crate) events: EventLatch,
}

impl InboundSa {
    /// A new inbound SA with a replay window of `window` packets.
    pub fn new(spi: u32, transform: Transform, esn: bool, window: u32, lifetime: Lifetime) -> Self {
        Self {
            spi,
            transform,
            esn,
            replay: ReplayWindow::new(window, esn),
            lifetime,
            counters: Arc::new(SaCounters::default()),
            dead: false,
            events: EventLatch::default(),
        }
    }

    /// Whether a hard limit stopped this SA.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    pub(crate) fn mark_dead(&mut self) {
        self.dead = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esp::{Algorithm, Backend};

    fn sa(esn: bool, last: u64) -> OutboundSa {
        let t = Transform::new(Algorithm::Aes128Gcm, Backend::AwsLc, &[7; 20], &[]).unwrap();
        let tunnel = Tunnel { local: "192.0.2.1".parse().unwrap(), remote: "192.0.2.2".parse().unwrap(), encap: None };
        OutboundSa::with_seq(1, t, tunnel, esn, Lifetime::default(), last)
    }

    #[test]
    fn layout_is_cache_aligned() {
        assert_eq!(core::mem::align_of::<OutboundSa>(), 64);
        assert_eq!(core::mem::size_of::<OutboundSa>() % 64, 0);
        assert_eq!(core::mem::size_of::<InboundSa>() % 64, 0);
        // Guard against the hot structs growing by accident.
        assert!(core::mem::size_of::<OutboundSa>() <= 384, "{}", core::mem::size_of::<OutboundSa>());
    }

    #[test]
    fn sequence_never_wraps_without_esn() {
        let s = sa(false, u64::from(u32::MAX) - 2);
        assert_eq!(s.next_seq().unwrap().0, u64::from(u32::MAX) - 1);
        assert_eq!(s.next_seq().unwrap().0, u64::from(u32::MAX));
        assert_eq!(s.next_seq().unwrap_err(), (DropReason::SeqExhausted, Some(SaEvent::SeqExhausted)));
        assert_eq!(s.next_seq().unwrap_err(), (DropReason::HardLifetime, None), "reported once, then dead");
        assert!(s.is_dead());
    }

    #[test]
    fn esn_continues_past_2_32_and_warns_before_the_end() {
        let s = sa(true, u64::from(u32::MAX));
        assert_eq!(s.next_seq().unwrap(), (1 << 32, None));
        let s = sa(true, u64::MAX - 10);
        assert_eq!(s.next_seq().unwrap(), (u64::MAX - 9, Some(SaEvent::SoftLifetime)));
        assert_eq!(s.next_seq().unwrap(), (u64::MAX - 8, None), "soft event fires once");
    }

    #[test]
    fn lifetimes_fire_once_each() {
        let latch = EventLatch::default();
        let lt = Lifetime { soft_packets: 2, hard_packets: 4, ..Default::default() };
        assert_eq!(latch.after(&lt, 1, 100), None);
        assert_eq!(latch.after(&lt, 2, 200), Some(SaEvent::SoftLifetime));
        assert_eq!(latch.after(&lt, 3, 300), None);
        assert_eq!(latch.after(&lt, 4, 400), Some(SaEvent::HardLifetime));
        assert_eq!(latch.after(&lt, 5, 500), None);
    }
}
