//! A `PacketIo` wrapper that records packets to a pcap file (Ethernet link type).
//!
//! Wrap any implementation: `PcapIo::new(inner, writer, PcapMode::Both, clock)`. Received
//! packets are recorded as `rx_burst` returns them; transmitted packets are recorded only once
//! the inner `tx_burst` accepted them (packets left over for a retry are not recorded twice).
//! The clock is injected (`FnMut() -> Duration` since the epoch) so tests are deterministic.
//! This is a debugging aid: it copies packets and performs I/O, so never put it in a
//! production worker. Write errors are counted ([`PcapIo::write_errors`]), never returned
//! to the worker.

use std::io::Write;
use std::time::Duration;

use super::{Burst, PacketIo};
use crate::buf::PacketBuf;
use crate::pcap::{LinkType, Writer};

/// Which direction to record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PcapMode {
    /// Received packets only.
    Rx,
    /// Transmitted packets only.
    Tx,
    /// Both directions, in the order they pass.
    Both,
}

/// Records the packets passing through `inner` to a pcap file.
pub struct PcapIo<D, W: Write, C> {
    inner: D,
    writer: Writer<W>,
    mode: PcapMode,
    clock: C,
    /// Copies of one tx burst, kept until we know how many the inner I/O accepted; reused.
    staging: Vec<u8>,
    write_errors: u64,
}

impl<D, W: Write, C> std::fmt::Debug for PcapIo<D, W, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapIo").field("mode", &self.mode).field("write_errors", &self.write_errors).finish()
    }
}

impl<D: PacketIo, W: Write, C: FnMut() -> Duration> PcapIo<D, W, C> {
    /// Writes the pcap header to `out` and wraps `inner`.
    pub fn new(inner: D, out: W, mode: PcapMode, clock: C) -> std::io::Result<Self> {
        Ok(Self {
            inner,
            writer: Writer::new(out, LinkType::Ethernet)?,
            mode,
            clock,
            staging: Vec::new(),
            write_errors: 0,
        })
    }

    /// Flushes the file and returns the inner I/O and writer.
    pub fn finish(self) -> std::io::Result<(D, W)> {
        let w = self.writer.finish()?;
        Ok((self.inner, w))
    }

    /// The wrapped I/O.
    pub fn inner(&mut self) -> &mut D {
        &mut self.inner
    }

    /// Records that could not be written.
    pub fn write_errors(&self) -> u64 {
        self.write_errors
    }

    fn record(&mut self, data: &[u8]) {
        let t = (self.clock)();
        let sec = u32::try_from(t.as_secs()).unwrap_or(u32::MAX);
        if self.writer.write(sec, t.subsec_micros(), data).is_err() {
            self.write_errors += 1;
        }
    }
}

impl<D: PacketIo, W: Write, C: FnMut() -> Duration> PacketIo for PcapIo<D, W, C> {
    type Buf = D::Buf;

    fn rx_burst<const N: usize>(&mut self, port: u16, queue: u16, out: &mut Burst<D::Buf, N>) -> usize {
        let start = out.len();
        let n = self.inner.rx_burst(port, queue, out);
        if self.mode != PcapMode::Tx {
            for b in &out[start..] {
                self.record(b.data());
            }
        }
        n
    }

    fn tx_burst<const N: usize>(&mut self, port: u16, queue: u16, pkts: &mut Burst<D::Buf, N>) -> usize {
        if self.mode == PcapMode::Rx {
            return self.inner.tx_burst(port, queue, pkts);
        }
        // Copy the burst first: accepted packets are gone once the inner call returns.
        let mut ends = [0usize; N];
        self.staging.clear();
        for (end, b) in ends.iter_mut().zip(pkts.iter()) {
            self.staging.extend_from_slice(b.data());
            *end = self.staging.len();
        }
        let n = self.inner.tx_burst(port, queue, pkts);
        let staging = std::mem::take(&mut self.staging);
        let mut from = 0;
        for &end in &ends[..n] {
            self.record(&staging[from..end]);
            from = end;
        }
        self.staging = staging;
        n
    }

    fn alloc(&mut self) -> Option<D::Buf> {
        self.inner.alloc()
    }

    fn free_burst<const N: usize>(&mut self, bufs: &mut Burst<D::Buf, N>) {
        self.inner.free_burst(bufs);
    }

    fn mac(&self, port: u16) -> Option<[u8; 6]> {
        self.inner.mac(port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::mem::{MemConfig, MemNet};

    #[test]
    fn records_rx_and_only_accepted_tx() {
        let net = MemNet::new(&MemConfig { ports: 1, queue_depth: 2, buffers: 16, ..MemConfig::default() });
        let mut t = 0u64;
        let clock = move || {
            t += 1;
            Duration::from_micros(1_000_000 + t)
        };
        let mut io = PcapIo::new(net.io(), Vec::new(), PcapMode::Both, clock).unwrap();
        assert!(net.inject(0, 0, &[1; 60]) && net.inject(0, 0, &[2; 61]));
        let mut burst: Burst<_> = Burst::new();
        assert_eq!(io.rx_burst(0, 0, &mut burst), 2);
        let mut extra = io.alloc().unwrap();
        extra.append(62).unwrap().fill(3);
        burst.push(extra);
        // Tx queue depth 2: two accepted, the third stays for a retry and is not recorded.
        assert_eq!(io.tx_burst(0, 0, &mut burst), 2);
        assert_eq!(burst.len(), 1);
        assert_eq!(burst[0].data(), &[3; 62][..]);
        let (_io, file) = io.finish().unwrap();
        let cap = crate::pcap::parse(&file).unwrap();
        assert_eq!(cap.link_type, LinkType::Ethernet);
        let recs: Vec<(u32, u32, Vec<u8>)> =
            cap.records.iter().map(|r| (r.ts_sec, r.ts_usec, r.data.to_vec())).collect();
        assert_eq!(recs, vec![(1, 1, vec![1; 60]), (1, 2, vec![2; 61]), (1, 3, vec![1; 60]), (1, 4, vec![2; 61])]);
    }

    #[test]
    fn rx_only_mode_skips_tx() {
        let net = MemNet::new(&MemConfig { ports: 1, ..MemConfig::default() });
        let mut io = PcapIo::new(net.io(), Vec::new(), PcapMode::Rx, || Duration::ZERO).unwrap();
        assert!(net.inject(0, 0, &[7; 64]));
        let mut burst: Burst<_, 4> = Burst::new();
        io.rx_burst(0, 0, &mut burst);
        assert_eq!(io.tx_burst(0, 0, &mut burst), 1);
        let (_, file) = io.finish().unwrap();
        let cap = crate::pcap::parse(&file).unwrap();
        assert_eq!(cap.records.len(), 1);
        assert_eq!(net.drain_tx(0, 0), vec![vec![7; 64]]);
    }

    /// A sink that always fails.
    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_errors_are_counted_not_returned() {
        // The header write fails on a broken sink...
        let net = MemNet::new(&MemConfig::default());
        assert!(PcapIo::new(net.io(), Broken, PcapMode::Both, || Duration::ZERO).is_err());
        // ...and record failures after a good header are counted while packets still flow.
        struct FailAfter(usize);
        impl Write for FailAfter {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                if self.0 == 0 {
                    return Err(std::io::Error::other("disk full"));
                }
                self.0 -= 1;
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut io = PcapIo::new(net.io(), FailAfter(1), PcapMode::Both, || Duration::ZERO).unwrap();
        assert!(net.inject(1, 0, &[9; 60]));
        let mut burst: Burst<_> = Burst::new();
        assert_eq!(io.rx_burst(1, 0, &mut burst), 1);
        assert_eq!(io.write_errors(), 1);
        assert_eq!(io.tx_burst(1, 0, &mut burst), 1);
        assert_eq!(io.write_errors(), 2);
        assert_eq!(net.drain_tx(1, 0).len(), 1);
    }
}
