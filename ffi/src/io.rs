//! The data plane's `PacketIo` over DPDK ethdev queues, and `PacketBuf` for [`Mbuf`].
//!
//! Build one [`EthdevIo`] per worker from the pool and the queue handles that worker owns
//! (`Port::take_rx`/`take_tx`), move it into the worker's lcore closure, and drive it through
//! the `PacketIo` trait exactly like the in-memory loopback. `rx_burst`/`tx_burst` on a
//! (port, queue) the worker does not own return 0. The trait lives in `dialgate-dataplane`
//! and this implementation here, so the data plane never depends on DPDK.
//!
//! Ports are configured without rx scatter and with 2 KiB of data room, so received frames
//! are single-segment mbufs and `PacketBuf::data` is the whole frame.

use dialgate_dataplane::buf::PacketBuf;
use dialgate_dataplane::port::{Burst, PacketIo};

use crate::error::{Error, Result};
use crate::mbuf::{free_bulk, Mbuf};
use crate::mempool::Mempool;
use crate::port::{RxQueue, TxQueue};
use crate::sys;

impl PacketBuf for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        Mbuf::data(self)
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        Mbuf::data_mut(self)
    }
    #[inline]
    fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        Mbuf::prepend(self, n)
    }
    #[inline]
    fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        Mbuf::append(self, n)
    }
    #[inline]
    fn adj(&mut self, n: usize) -> bool {
        Mbuf::adj(self, n)
    }
    #[inline]
    fn trim(&mut self, n: usize) -> bool {
        Mbuf::trim(self, n)
    }
}

/// A worker's DPDK I/O: its rx and tx queue handles and the pool for locally built packets.
#[derive(Debug)]
pub struct EthdevIo {
    pool: Mempool,
    rx: Vec<RxQueue>,
    tx: Vec<TxQueue>,
    macs: Vec<(u16, [u8; 6])>,
}

impl EthdevIo {
    /// Bundles the queues a worker owns; reads the MAC address of every port involved.
    pub fn new(pool: Mempool, rx: Vec<RxQueue>, tx: Vec<TxQueue>) -> Result<Self> {
        let mut macs: Vec<(u16, [u8; 6])> = Vec::new();
        for port in rx.iter().map(RxQueue::port).chain(tx.iter().map(TxQueue::port)) {
            if macs.iter().any(|(p, _)| *p == port) {
                continue;
            }
            let mut a = sys::rte_ether_addr::default();
            // SAFETY: the port exists (a queue handle for it is alive); valid out-pointer.
            let rc = unsafe { sys::rte_eth_macaddr_get(port, &mut a) };
            if rc != 0 {
                return Err(Error::dpdk("rte_eth_macaddr_get", rc));
            }
            macs.push((port, a.addr_bytes));
        }
        Ok(Self { pool, rx, tx, macs })
    }

    /// The (port, queue) pairs this handle polls.
    pub fn rx_queues(&self) -> impl Iterator<Item = (u16, u16)> + '_ {
        self.rx.iter().map(|q| (q.port(), q.queue()))
    }
}

impl PacketIo for EthdevIo {
    type Buf = Mbuf;

    #[inline]
    fn rx_burst<const N: usize>(&mut self, port: u16, queue: u16, out: &mut Burst<Mbuf, N>) -> usize {
        match self.rx.iter_mut().find(|q| q.port() == port && q.queue() == queue) {
            Some(q) => q.rx_burst(out),
            None => 0,
        }
    }

    #[inline]
    fn tx_burst<const N: usize>(&mut self, port: u16, queue: u16, pkts: &mut Burst<Mbuf, N>) -> usize {
        match self.tx.iter_mut().find(|q| q.port() == port && q.queue() == queue) {
            Some(q) => q.tx_burst(pkts),
            None => 0,
        }
    }

    #[inline]
    fn alloc(&mut self) -> Option<Mbuf> {
        self.pool.alloc()
    }

    #[inline]
    fn free_burst<const N: usize>(&mut self, bufs: &mut Burst<Mbuf, N>) {
        free_bulk(bufs);
    }

    fn mac(&self, port: u16) -> Option<[u8; 6]> {
        self.macs.iter().find(|(p, _)| *p == port).map(|(_, m)| *m)
    }
}
