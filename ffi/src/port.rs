//! Ethernet ports: configure queues (RSS when several), start/stop, MAC, stats, bursts.
//!
//! Drive it as: `Port::configure(&eal, id, &PortConfig { .. }, &pool)?`, then `start()`, then
//! hand out one [`RxQueue`]/[`TxQueue`] per queue (`take_rx`/`take_tx`) to the worker that owns
//! it. A queue handle is `Send` but not `Sync` and can be taken only once, which is how the
//! wrapper upholds DPDK's rule that a queue is polled by one thread at a time. Bursts move mbufs
//! between an `ArrayVec` and the driver without allocating. `stop` refuses while queue handles
//! are alive; the port is stopped and closed when the port and all its handles are gone.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arrayvec::ArrayVec;

use crate::eal::Eal;
use crate::error::{c_name, Error, Result};
use crate::mbuf::Mbuf;
use crate::mempool::Mempool;
use crate::sys;

/// How to set a port up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// Number of rx queues (RSS spreads flows over them when the device supports it).
    pub rx_queues: u16,
    /// Number of tx queues (one per worker that transmits on this port).
    pub tx_queues: u16,
    /// Rx descriptors per queue (adjusted to the device's limits).
    pub rx_desc: u16,
    /// Tx descriptors per queue (adjusted to the device's limits).
    pub tx_desc: u16,
    /// Receive frames for every MAC address.
    pub promiscuous: bool,
}

impl Default for PortConfig {
    fn default() -> Self {
        Self { rx_queues: 1, tx_queues: 1, rx_desc: 1024, tx_desc: 1024, promiscuous: true }
    }
}

/// Port counters (`rte_eth_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Packets dropped by the device because rx queues were full.
    pub imissed: u64,
    /// Receive errors.
    pub ierrors: u64,
    /// Transmit errors.
    pub oerrors: u64,
    /// Rx mbuf allocation failures.
    pub rx_nombuf: u64,
}

/// Link state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkStatus {
    /// Link is up.
    pub up: bool,
    /// Speed in Mbit/s (0 if unknown).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

struct PortInner {
    id: u16,
    started: AtomicBool,
    rss: bool,
    rx_taken: Vec<AtomicBool>,
    tx_taken: Vec<AtomicBool>,
    /// Rx queues allocate from this pool: keep it alive as long as the port.
    _pool: Mempool,
    _eal: Eal,
}

impl Drop for PortInner {
    fn drop(&mut self) {
        // SAFETY: no queue handle exists any more (each holds an Arc to this), so nothing polls
        // the port while it is stopped and closed.
        unsafe {
            if self.started.load(Ordering::Acquire) {
                sys::rte_eth_dev_stop(self.id);
            }
            sys::rte_eth_dev_close(self.id);
        }
    }
}

/// A configured Ethernet port.
pub struct Port {
    inner: Arc<PortInner>,
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Port").field("id", &self.inner.id).field("rss", &self.inner.rss).finish()
    }
}

/// Number of ports the EAL probed (PCI devices bound to a PMD and `--vdev`s).
pub fn count_avail(_eal: &Eal) -> u16 {
    // SAFETY: the EAL is initialised.
    unsafe { sys::rte_eth_dev_count_avail() }
}

/// The port id of the device named `name` (e.g. `net_ring0`, `0000:01:00.0`).
pub fn port_by_name(_eal: &Eal, name: &str) -> Result<u16> {
    let cname = CString::new(name).map_err(|_| Error::InvalidName(name.to_owned()))?;
    let mut id = 0u16;
    // SAFETY: cname is a valid C string and id a valid out-pointer.
    let rc = unsafe { sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
    if rc != 0 {
        return Err(Error::dpdk("rte_eth_dev_get_port_by_name", rc));
    }
    Ok(id)
}

impl Port {
    /// Configures port `id` with `cfg`; rx queues take their mbufs from `pool`.
    ///
    /// With more than one rx queue, RSS over IP/UDP/TCP is enabled if the device supports any
    /// of those hash types (see [`Port::rss_enabled`]); otherwise all traffic lands on queue 0.
    pub fn configure(eal: &Eal, id: u16, cfg: &PortConfig, pool: &Mempool) -> Result<Port> {
        if cfg.rx_queues == 0 || cfg.tx_queues == 0 {
            return Err(Error::InvalidParameter(format!("port {id}: need at least one rx and one tx queue")));
        }
        // SAFETY: plain id check.
        if unsafe { sys::rte_eth_dev_is_valid_port(id) } == 0 {
            return Err(Error::InvalidParameter(format!("port {id} does not exist")));
        }
        let mut info = sys::rte_eth_dev_info::default();
        // SAFETY: id is valid and info a valid out-pointer.
        let rc = unsafe { sys::rte_eth_dev_info_get(id, &mut info) };
        if rc != 0 {
            return Err(Error::dpdk("rte_eth_dev_info_get", rc));
        }
        if cfg.rx_queues > info.max_rx_queues || cfg.tx_queues > info.max_tx_queues {
            return Err(Error::InvalidParameter(format!(
                "port {id}: {}x{} queues requested, device allows {}x{}",
                cfg.rx_queues, cfg.tx_queues, info.max_rx_queues, info.max_tx_queues
            )));
        }
        let mut conf = sys::rte_eth_conf::default();
        // SAFETY: returns a constant.
        let rss_hf = unsafe { sys::dg_rss_hf_default() } & info.flow_type_rss_offloads;
        let rss = cfg.rx_queues > 1 && rss_hf != 0;
        if rss {
            conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
            // rss_key stays NULL: the driver's default key.
        }
        // SAFETY: id is valid, conf is fully initialised.
        let rc = unsafe { sys::rte_eth_dev_configure(id, cfg.rx_queues, cfg.tx_queues, &conf) };
        if rc != 0 {
            return Err(Error::dpdk("rte_eth_dev_configure", rc));
        }
        let (mut nrx, mut ntx) = (cfg.rx_desc, cfg.tx_desc);
        // SAFETY: id is valid; the out-pointers are valid.
        let rc = unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut nrx, &mut ntx) };
        if rc != 0 {
            return Err(Error::dpdk("rte_eth_dev_adjust_nb_rx_tx_desc", rc));
        }
        // SAFETY: id is valid.
        let socket = unsafe { sys::rte_eth_dev_socket_id(id) };
        let socket = if socket < 0 { 0 } else { socket as u32 };
        for q in 0..cfg.rx_queues {
            // SAFETY: the port is configured with rx_queues queues; NULL rxconf means the
            // driver's defaults; the pool outlives the port (PortInner keeps a handle).
            let rc = unsafe { sys::rte_eth_rx_queue_setup(id, q, nrx, socket, std::ptr::null(), pool.as_ptr()) };
            if rc != 0 {
                return Err(Error::dpdk("rte_eth_rx_queue_setup", rc));
            }
        }
        for q in 0..cfg.tx_queues {
            // SAFETY: as above, NULL txconf means the driver's defaults.
            let rc = unsafe { sys::rte_eth_tx_queue_setup(id, q, ntx, socket, std::ptr::null()) };
            if rc != 0 {
                return Err(Error::dpdk("rte_eth_tx_queue_setup", rc));
            }
        }
        let port = Port {
            inner: Arc::new(PortInner {
                id,
                started: AtomicBool::new(false),
                rss,
                rx_taken: (0..cfg.rx_queues).map(|_| AtomicBool::new(false)).collect(),
                tx_taken: (0..cfg.tx_queues).map(|_| AtomicBool::new(false)).collect(),
                _pool: pool.clone(),
                _eal: eal.clone(),
            }),
        };
        port.set_promiscuous(cfg.promiscuous)?;
        Ok(port)
    }

    /// The port id.
    pub fn id(&self) -> u16 {
        self.inner.id
    }

    /// Whether RSS spreads traffic over the rx queues.
    pub fn rss_enabled(&self) -> bool {
        self.inner.rss
    }

    /// Starts the port (idempotent).
    pub fn start(&self) -> Result<()> {
        if self.inner.started.load(Ordering::Acquire) {
            return Ok(());
        }
        // SAFETY: the port is configured and its queues set up.
        let rc = unsafe { sys::rte_eth_dev_start(self.inner.id) };
        if rc != 0 {
            return Err(Error::dpdk("rte_eth_dev_start", rc));
        }
        self.inner.started.store(true, Ordering::Release);
        Ok(())
    }

    /// Stops the port; refused while any queue handle is alive (a worker may be polling it).
    pub fn stop(&mut self) -> Result<()> {
        if Arc::strong_count(&self.inner) != 1 {
            return Err(Error::QueuesInUse(self.inner.id));
        }
        if self.inner.started.swap(false, Ordering::AcqRel) {
            // SAFETY: no queue handle exists (strong count 1 and `&mut self`), so no thread
            // polls the port.
            let rc = unsafe { sys::rte_eth_dev_stop(self.inner.id) };
            if rc != 0 {
                return Err(Error::dpdk("rte_eth_dev_stop", rc));
            }
        }
        Ok(())
    }

    /// The port's MAC address.
    pub fn mac(&self) -> Result<[u8; 6]> {
        let mut a = sys::rte_ether_addr::default();
        // SAFETY: valid port id, valid out-pointer.
        let rc = unsafe { sys::rte_eth_macaddr_get(self.inner.id, &mut a) };
        if rc != 0 {
            return Err(Error::dpdk("rte_eth_macaddr_get", rc));
        }
        Ok(a.addr_bytes)
    }

    /// Turns promiscuous mode on or off. Devices without the mode (some vdevs) report
    /// `ENOTSUP`, which is ignored: they deliver every frame anyway.
    pub fn set_promiscuous(&self, on: bool) -> Result<()> {
        // SAFETY: valid port id.
        let rc = unsafe {
            if on {
                sys::rte_eth_promiscuous_enable(self.inner.id)
            } else {
                sys::rte_eth_promiscuous_disable(self.inner.id)
            }
        };
        if rc != 0 && rc != -ENOTSUP {
            return Err(Error::dpdk("rte_eth_promiscuous_enable/disable", rc));
        }
        Ok(())
    }

    /// Whether promiscuous mode is on.
    pub fn promiscuous(&self) -> bool {
        // SAFETY: valid port id.
        unsafe { sys::rte_eth_promiscuous_get(self.inner.id) == 1 }
    }

    /// Reads the port counters.
    pub fn stats(&self) -> Result<PortStats> {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: valid port id, valid out-pointer.
        let rc = unsafe { sys::rte_eth_stats_get(self.inner.id, &mut s) };
        if rc != 0 {
            return Err(Error::dpdk("rte_eth_stats_get", rc));
        }
        Ok(PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    /// Zeroes the port counters.
    pub fn reset_stats(&self) -> Result<()> {
        // SAFETY: valid port id.
        let rc = unsafe { sys::rte_eth_stats_reset(self.inner.id) };
        if rc != 0 {
            return Err(Error::dpdk("rte_eth_stats_reset", rc));
        }
        Ok(())
    }

    /// The link state, without waiting for autonegotiation.
    pub fn link(&self) -> Result<LinkStatus> {
        let mut l = sys::rte_eth_link::default();
        // SAFETY: valid port id, valid out-pointer.
        let rc = unsafe { sys::rte_eth_link_get_nowait(self.inner.id, &mut l) };
        if rc != 0 {
            return Err(Error::dpdk("rte_eth_link_get_nowait", rc));
        }
        Ok(LinkStatus { up: l.link_status() != 0, speed_mbps: l.link_speed, full_duplex: l.link_duplex() != 0 })
    }

    /// Takes the handle for rx queue `queue` (once per queue).
    pub fn take_rx(&self, queue: u16) -> Result<RxQueue> {
        take(&self.inner.rx_taken, self.inner.id, "rx", queue)?;
        Ok(RxQueue { port: self.inner.clone(), queue, _not_sync: std::marker::PhantomData })
    }

    /// Takes the handle for tx queue `queue` (once per queue).
    pub fn take_tx(&self, queue: u16) -> Result<TxQueue> {
        take(&self.inner.tx_taken, self.inner.id, "tx", queue)?;
        Ok(TxQueue { port: self.inner.clone(), queue, _not_sync: std::marker::PhantomData })
    }
}

/// Linux `ENOTSUP` (`EOPNOTSUPP`), returned by drivers without an optional feature.
const ENOTSUP: i32 = 95;

fn take(flags: &[AtomicBool], port: u16, dir: &'static str, queue: u16) -> Result<()> {
    let flag = flags
        .get(usize::from(queue))
        .ok_or_else(|| Error::InvalidParameter(format!("port {port} has no {dir} queue {queue}")))?;
    if flag.swap(true, Ordering::AcqRel) {
        return Err(Error::QueueTaken { port, dir, queue });
    }
    Ok(())
}

/// Marks `PhantomData<Cell<()>>`: the handles move between threads but are not shared.
type NotSync = std::marker::PhantomData<std::cell::Cell<()>>;

/// Exclusive handle on one rx queue.
pub struct RxQueue {
    port: Arc<PortInner>,
    queue: u16,
    _not_sync: NotSync,
}

impl std::fmt::Debug for RxQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RxQueue({}/{})", self.port.id, self.queue)
    }
}

impl RxQueue {
    /// Port id.
    pub fn port(&self) -> u16 {
        self.port.id
    }
    /// Queue index.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Receives up to `out.remaining_capacity()` packets, appending them; returns how many.
    #[inline]
    pub fn rx_burst<const N: usize>(&mut self, out: &mut ArrayVec<Mbuf, N>) -> usize {
        let want = out.remaining_capacity().min(usize::from(u16::MAX)) as u16;
        if want == 0 {
            return 0;
        }
        let mut raw = [std::ptr::null_mut::<sys::rte_mbuf>(); N];
        // SAFETY: this handle is the only poller of (port, queue) (taken once, !Sync); raw has
        // room for `want` ≤ N pointers.
        let n = usize::from(unsafe { sys::dg_eth_rx_burst(self.port.id, self.queue, raw.as_mut_ptr(), want) });
        for &m in &raw[..n] {
            if let Some(m) = std::ptr::NonNull::new(m) {
                // SAFETY: received mbufs are handed to the caller; capacity was checked above.
                out.push(unsafe { Mbuf::from_raw(m) });
            }
        }
        n
    }
}

impl Drop for RxQueue {
    fn drop(&mut self) {
        self.port.rx_taken[usize::from(self.queue)].store(false, Ordering::Release);
    }
}

/// Exclusive handle on one tx queue.
pub struct TxQueue {
    port: Arc<PortInner>,
    queue: u16,
    _not_sync: NotSync,
}

impl std::fmt::Debug for TxQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TxQueue({}/{})", self.port.id, self.queue)
    }
}

impl TxQueue {
    /// Port id.
    pub fn port(&self) -> u16 {
        self.port.id
    }
    /// Queue index.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Sends from the front of `pkts`; sent packets are removed (the driver frees them),
    /// unsent ones stay at the front of `pkts` for the caller to retry or drop. Returns how
    /// many were sent.
    #[inline]
    pub fn tx_burst<const N: usize>(&mut self, pkts: &mut ArrayVec<Mbuf, N>) -> usize {
        let len = pkts.len().min(usize::from(u16::MAX));
        if len == 0 {
            return 0;
        }
        let mut raw = [std::ptr::null_mut::<sys::rte_mbuf>(); N];
        for (slot, m) in raw.iter_mut().zip(pkts.iter()) {
            *slot = m.as_ptr();
        }
        // SAFETY: this handle is the only user of (port, queue); raw holds `len` owned mbufs.
        // The driver takes ownership of the first `n` only.
        let n = usize::from(unsafe { sys::dg_eth_tx_burst(self.port.id, self.queue, raw.as_mut_ptr(), len as u16) });
        for m in pkts.drain(..n) {
            // Ownership passed to the driver: do not free.
            let _ = m.into_raw();
        }
        n
    }
}

impl Drop for TxQueue {
    fn drop(&mut self) {
        self.port.tx_taken[usize::from(self.queue)].store(false, Ordering::Release);
    }
}

/// Creates two back-to-back ports from rte_rings (`rte_eth_from_rings`): what one transmits on
/// queue q, the other receives on queue q. For tests and benchmarks without a NIC.
///
/// The rings live until the process exits (the ring PMD does not free rings it did not create).
#[cfg(dpdk_net_ring)]
pub fn ring_pair(_eal: &Eal, name: &str, queues: u16, ring_size: u32) -> Result<(u16, u16)> {
    let mut a_to_b = Vec::with_capacity(usize::from(queues));
    let mut b_to_a = Vec::with_capacity(usize::from(queues));
    for q in 0..queues {
        for (dir, list) in [("ab", &mut a_to_b), ("ba", &mut b_to_a)] {
            let rname = c_name(&format!("{name}_{dir}{q}"), crate::ring::MAX_NAME_LEN)?;
            // SAFETY: EAL initialised; valid name; flags 0 = multi-producer/multi-consumer.
            let r = unsafe { sys::rte_ring_create(rname.as_ptr(), ring_size, sys::SOCKET_ID_ANY, 0) };
            if r.is_null() {
                return Err(Error::from_rte_errno("rte_ring_create"));
            }
            list.push(r);
        }
    }
    let mut ids = [0u16; 2];
    for (i, (rx, tx)) in [(&b_to_a, &a_to_b), (&a_to_b, &b_to_a)].into_iter().enumerate() {
        let pname = c_name(&format!("{name}_{i}"), crate::ring::MAX_NAME_LEN)?;
        // SAFETY: rx/tx hold `queues` valid ring pointers that are never freed.
        let rc = unsafe {
            sys::rte_eth_from_rings(pname.as_ptr(), rx.as_ptr(), u32::from(queues), tx.as_ptr(), u32::from(queues), 0)
        };
        if rc < 0 {
            return Err(Error::from_rte_errno("rte_eth_from_rings"));
        }
        ids[i] = rc as u16;
    }
    Ok((ids[0], ids[1]))
}
