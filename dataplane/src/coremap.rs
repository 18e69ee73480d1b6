//! The core map (`cores.toml`): which CPU cores run workers and the control plane, which
//! worker polls which (port, rx queue), mempool sizes and extra EAL arguments.
//!
//! Drive it as: `let plan = CoreMap::from_toml(&text)?.plan()?;` then initialise the EAL with
//! `plan.eal_args()`, create ports with `plan.ports` (rx/tx queue counts), launch one worker
//! per `plan.workers` entry on its lcore, and pin the control plane's threads to
//! `plan.control_cores`. `plan()` is where validation happens; every error names the core,
//! port or queue at fault. Lcore ids equal CPU ids (`-l`), the EAL main lcore is the first
//! control core, and only the main lcore and worker cores are EAL lcores (other control cores
//! belong to tokio, pinned by the caller).
//!
//! Port names are the gateway configuration's interface names. A port's DPDK device is given
//! either here (`device = ...`) or by the interface's `set dpdk-device` in the gateway
//! configuration; [`Plan::resolve_devices`] fills the gaps from there. A device string that
//! looks like a PCI address (`0000:01:00.0`, `01:00.0`) becomes `-a <addr>`; anything else is
//! a virtual device (`net_af_packet0,iface=eth1`) and becomes `--vdev=<string>`.
//!
//! ```toml
//! [control]
//! cores = [0]
//! [mempool]
//! mbufs = 8191
//! [[port]]
//! name = "wan1"
//! device = "net_af_packet0,iface=veth-wan"
//! [[worker]]
//! core = 1
//! poll = [{ port = "wan1", queue = 0 }]
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

/// Largest per-lcore mempool cache DPDK allows (`RTE_MEMPOOL_CACHE_MAX_SIZE`).
const MAX_POOL_CACHE: u32 = 512;
/// DPDK's mbuf headroom; the data room must leave space for a frame after it.
const MBUF_HEADROOM: u16 = 128;
/// Highest lcore id DPDK 22.11 accepts by default (`RTE_MAX_LCORE` - 1).
const MAX_LCORE: u32 = 127;

/// A core map as written in `cores.toml`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CoreMap {
    /// Cores of the control plane.
    pub control: Control,
    /// Packet-buffer pool sizes.
    #[serde(default)]
    pub mempool: MempoolSpec,
    /// Extra EAL settings.
    #[serde(default)]
    pub eal: EalSpec,
    /// Ports, in port-index order.
    #[serde(default, rename = "port")]
    pub ports: Vec<PortSpec>,
    /// Workers, one per core.
    #[serde(default, rename = "worker")]
    pub workers: Vec<WorkerSpec>,
}

/// Control-plane cores.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// CPU cores for the control plane; the first is the EAL main lcore.
    pub cores: Vec<u32>,
    /// Reserve one extra tx queue per port for packets the control plane sends itself.
    #[serde(default)]
    pub tx_queue: bool,
}

/// Packet-buffer pool sizes (one pool shared by all ports).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MempoolSpec {
    /// Number of mbufs (2^n - 1 is the most memory-efficient).
    pub mbufs: u32,
    /// Per-lcore cache (≤ 512 and ≤ mbufs / 1.5).
    pub cache: u32,
    /// Data room per mbuf, headroom included.
    pub data_room: u16,
}

impl Default for MempoolSpec {
    fn default() -> Self {
        Self { mbufs: 8191, cache: 256, data_room: 2176 }
    }
}

/// Extra EAL settings.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EalSpec {
    /// Arguments appended after the derived ones (memory, logging, `--no-huge`...). The core
    /// list, main lcore and devices come from the map itself and may not appear here.
    #[serde(default)]
    pub args: Vec<String>,
}

/// One Ethernet port.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    /// The interface name used in the gateway configuration (e.g. `wan1`).
    pub name: String,
    /// The DPDK device: a PCI address or a vdev with its arguments; when absent, the gateway
    /// configuration's `dpdk-device` for this interface is used.
    #[serde(default)]
    pub device: Option<String>,
    /// Rx descriptors per queue.
    #[serde(default = "default_desc")]
    pub rx_desc: u16,
    /// Tx descriptors per queue.
    #[serde(default = "default_desc")]
    pub tx_desc: u16,
}

fn default_desc() -> u16 {
    1024
}

/// A DPDK device as the EAL sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Device {
    /// A PCI function (`0000:01:00.0`), allow-listed with `-a`.
    Pci(String),
    /// A virtual device with its arguments (`net_ring0`, `net_af_packet0,iface=eth1`).
    Vdev(String),
}

impl Device {
    /// Classifies a device string (PCI address pattern, else vdev); `None` if empty.
    pub fn parse(s: &str) -> Option<Device> {
        let s = s.trim();
        if s.is_empty() || s.starts_with(',') {
            return None;
        }
        Some(if is_pci_address(s) { Device::Pci(s.to_owned()) } else { Device::Vdev(s.to_owned()) })
    }

    /// The name `rte_eth_dev_get_port_by_name` knows the port by.
    pub fn name(&self) -> &str {
        match self {
            Device::Pci(p) => p,
            Device::Vdev(v) => v.split(',').next().unwrap_or(v),
        }
    }

    /// The EAL arguments that make the device appear.
    pub fn eal_args(&self) -> Vec<String> {
        match self {
            Device::Pci(p) => vec!["-a".to_owned(), p.clone()],
            Device::Vdev(v) => vec![format!("--vdev={v}")],
        }
    }
}

/// `[domain:]bus:device.function` in hex (`0000:01:00.0`, `01:00.1`).
fn is_pci_address(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    let Some((rest, func)) = s.rsplit_once('.') else { return false };
    let parts: Vec<&str> = rest.split(':').collect();
    let ok_func = func.len() == 1 && func.bytes().all(|b| (b'0'..=b'7').contains(&b));
    ok_func
        && match parts.as_slice() {
            [bus, dev] => hex(bus, 2) && hex(dev, 2),
            [dom, bus, dev] => hex(dom, 4) && hex(bus, 2) && hex(dev, 2),
            _ => false,
        }
}

/// One worker core and the queues it polls.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WorkerSpec {
    /// CPU core (= EAL lcore id).
    pub core: u32,
    /// The (port, rx queue) pairs it polls.
    pub poll: Vec<PollSpec>,
}

/// A (port, rx queue) a worker polls.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PollSpec {
    /// Port name (a `[[port]]` entry).
    pub port: String,
    /// Rx queue index.
    pub queue: u16,
}

/// What is wrong with a core map.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CoreMapError {
    /// The file is not valid TOML or does not match the schema.
    #[error("core map: {0}")]
    Syntax(String),
    /// No control core.
    #[error("core map: [control] cores is empty; the control plane needs at least one core")]
    NoControlCore,
    /// No worker.
    #[error("core map: no [[worker]]; at least one worker core is needed")]
    NoWorkers,
    /// A core number DPDK cannot use as an lcore id.
    #[error("core map: core {0} is above the highest lcore id {MAX_LCORE}")]
    CoreOutOfRange(u32),
    /// A core listed twice among the control cores.
    #[error("core map: control core {0} is listed twice")]
    DuplicateControlCore(u32),
    /// Two workers on one core.
    #[error("core map: core {0} runs two workers")]
    CoreUsedTwice(u32),
    /// A worker on a control core.
    #[error("core map: core {0} is both a control core and a worker core")]
    ControlOverlapsWorker(u32),
    /// A worker that polls nothing.
    #[error("core map: the worker on core {0} polls no queue")]
    WorkerWithoutQueues(u32),
    /// A port name used twice.
    #[error("core map: port {0:?} is defined twice")]
    DuplicatePort(String),
    /// An empty device string.
    #[error("core map: port {0:?} has an empty device")]
    PortDevice(String),
    /// A port whose device is neither in the core map nor in the gateway configuration.
    #[error("core map: port {0:?} has no device (set device = \"...\" here or dpdk-device on the interface)")]
    MissingDevice(String),
    /// Two ports on the same device.
    #[error("core map: ports {0:?} and {1:?} use the same device")]
    DuplicateDevice(String, String),
    /// A worker polls a port that is not defined.
    #[error("core map: the worker on core {core} polls unknown port {port:?}")]
    UnknownPort {
        /// Worker core.
        core: u32,
        /// Port name.
        port: String,
    },
    /// One queue polled by two workers (or twice by one).
    #[error("core map: port {port:?} rx queue {queue} is polled by the workers on cores {first} and {second}")]
    QueuePolledTwice {
        /// Port name.
        port: String,
        /// Queue index.
        queue: u16,
        /// Core of the first poller.
        first: u32,
        /// Core of the second poller.
        second: u32,
    },
    /// A port nobody polls (its frames would pile up and be dropped by the NIC).
    #[error("core map: port {0:?} is not polled by any worker")]
    PortWithoutPoller(String),
    /// Rx queues must be numbered 0..n without holes (the port is configured with n queues).
    #[error("core map: port {port:?} polls queues up to {highest} but queue {missing} has no poller")]
    QueueGap {
        /// Port name.
        port: String,
        /// The unpolled queue.
        missing: u16,
        /// The highest polled queue.
        highest: u16,
    },
    /// Mempool sizes DPDK would refuse.
    #[error("core map: [mempool] {0}")]
    Mempool(String),
    /// Descriptor counts of zero.
    #[error("core map: port {0:?} needs rx_desc and tx_desc > 0")]
    Descriptors(String),
    /// An EAL argument that the core map derives itself.
    #[error("core map: [eal] args may not contain {0:?}: cores, main lcore and devices come from the map")]
    ConflictingEalArg(String),
    /// A core this host does not have.
    #[error("core map: core {0} is not available on this host (available: {1})")]
    CoreNotPresent(u32, String),
}

/// A validated core map, ready to drive EAL init, port setup and worker launch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The EAL main lcore (first control core).
    pub main_lcore: u32,
    /// All control cores (pin the control plane's threads here).
    pub control_cores: Vec<u32>,
    /// Ports in index order.
    pub ports: Vec<PortPlan>,
    /// Workers in the order of the file.
    pub workers: Vec<WorkerPlan>,
    /// Mempool sizes.
    pub mempool: MempoolSpec,
    /// Tx queue reserved for the control plane on every port, if requested.
    pub control_tx_queue: Option<u16>,
    extra_eal_args: Vec<String>,
}

/// How to configure one port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortPlan {
    /// Interface name.
    pub name: String,
    /// The DPDK device (`None` until resolved from the gateway configuration).
    pub device: Option<Device>,
    /// Rx queues (= distinct queues polled).
    pub rx_queues: u16,
    /// Tx queues (one per worker, plus the control plane's if reserved).
    pub tx_queues: u16,
    /// Rx descriptors per queue.
    pub rx_desc: u16,
    /// Tx descriptors per queue.
    pub tx_desc: u16,
}

/// What one worker owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerPlan {
    /// Lcore (= CPU core).
    pub core: u32,
    /// (port index, rx queue) pairs to poll.
    pub polls: Vec<(u16, u16)>,
    /// The tx queue this worker uses on every port.
    pub tx_queue: u16,
}

/// EAL options the map derives (and the user may therefore not pass in `[eal] args`).
const DERIVED_EAL_ARGS: &[&str] =
    &["-l", "-c", "--lcores", "--main-lcore", "--master-lcore", "-a", "--allow", "-b", "--block", "--vdev"];

impl CoreMap {
    /// Parses a core map (no validation yet: see [`CoreMap::plan`]).
    pub fn from_toml(text: &str) -> Result<CoreMap, CoreMapError> {
        toml::from_str(text).map_err(|e| CoreMapError::Syntax(e.to_string()))
    }

    /// Validates the map and derives queue counts, tx queue assignment and the EAL core list.
    pub fn plan(&self) -> Result<Plan, CoreMapError> {
        let (&main_lcore, _) = self.control.cores.split_first().ok_or(CoreMapError::NoControlCore)?;
        if self.workers.is_empty() {
            return Err(CoreMapError::NoWorkers);
        }
        let mut control = BTreeSet::new();
        for &c in &self.control.cores {
            check_core(c)?;
            if !control.insert(c) {
                return Err(CoreMapError::DuplicateControlCore(c));
            }
        }
        let mut worker_cores = BTreeSet::new();
        for w in &self.workers {
            check_core(w.core)?;
            if control.contains(&w.core) {
                return Err(CoreMapError::ControlOverlapsWorker(w.core));
            }
            if !worker_cores.insert(w.core) {
                return Err(CoreMapError::CoreUsedTwice(w.core));
            }
            if w.poll.is_empty() {
                return Err(CoreMapError::WorkerWithoutQueues(w.core));
            }
        }
        self.check_mempool()?;
        for a in &self.eal.args {
            let opt = a.split('=').next().unwrap_or(a);
            if DERIVED_EAL_ARGS.contains(&opt) {
                return Err(CoreMapError::ConflictingEalArg(a.clone()));
            }
        }

        // Ports: unique names and devices.
        let mut index: BTreeMap<&str, u16> = BTreeMap::new();
        let mut devices: BTreeMap<String, &str> = BTreeMap::new();
        for (i, p) in self.ports.iter().enumerate() {
            if index.insert(&p.name, i as u16).is_some() {
                return Err(CoreMapError::DuplicatePort(p.name.clone()));
            }
            if let Some(d) = &p.device {
                let dev = Device::parse(d).ok_or_else(|| CoreMapError::PortDevice(p.name.clone()))?;
                if let Some(other) = devices.insert(dev.name().to_owned(), &p.name) {
                    return Err(CoreMapError::DuplicateDevice(other.to_owned(), p.name.clone()));
                }
            }
            if p.rx_desc == 0 || p.tx_desc == 0 {
                return Err(CoreMapError::Descriptors(p.name.clone()));
            }
        }

        // Polls: every (port, queue) exactly once.
        let mut pollers: Vec<BTreeMap<u16, u32>> = vec![BTreeMap::new(); self.ports.len()];
        let mut workers = Vec::with_capacity(self.workers.len());
        for (wi, w) in self.workers.iter().enumerate() {
            let mut polls = Vec::with_capacity(w.poll.len());
            for p in &w.poll {
                let &pi = index
                    .get(p.port.as_str())
                    .ok_or_else(|| CoreMapError::UnknownPort { core: w.core, port: p.port.clone() })?;
                if let Some(&first) = pollers[usize::from(pi)].get(&p.queue) {
                    return Err(CoreMapError::QueuePolledTwice {
                        port: p.port.clone(),
                        queue: p.queue,
                        first,
                        second: w.core,
                    });
                }
                pollers[usize::from(pi)].insert(p.queue, w.core);
                polls.push((pi, p.queue));
            }
            workers.push(WorkerPlan { core: w.core, polls, tx_queue: wi as u16 });
        }
        let n_workers = self.workers.len() as u16;
        let control_tx_queue = self.control.tx_queue.then_some(n_workers);
        let mut ports = Vec::with_capacity(self.ports.len());
        for (p, queues) in self.ports.iter().zip(&pollers) {
            let Some((&highest, _)) = queues.last_key_value() else {
                return Err(CoreMapError::PortWithoutPoller(p.name.clone()));
            };
            if let Some(missing) = (0..highest).find(|q| !queues.contains_key(q)) {
                return Err(CoreMapError::QueueGap { port: p.name.clone(), missing, highest });
            }
            ports.push(PortPlan {
                name: p.name.clone(),
                device: p.device.as_deref().and_then(Device::parse),
                rx_queues: highest + 1,
                tx_queues: n_workers + u16::from(self.control.tx_queue),
                rx_desc: p.rx_desc,
                tx_desc: p.tx_desc,
            });
        }
        Ok(Plan {
            main_lcore,
            control_cores: self.control.cores.clone(),
            ports,
            workers,
            mempool: self.mempool,
            control_tx_queue,
            extra_eal_args: self.eal.args.clone(),
        })
    }

    fn check_mempool(&self) -> Result<(), CoreMapError> {
        let m = &self.mempool;
        if m.mbufs == 0 {
            return Err(CoreMapError::Mempool("mbufs must be > 0".into()));
        }
        if m.cache > MAX_POOL_CACHE || u64::from(m.cache) * 3 > u64::from(m.mbufs) * 2 {
            return Err(CoreMapError::Mempool(format!(
                "cache {} must be ≤ {MAX_POOL_CACHE} and ≤ mbufs / 1.5 ({})",
                m.cache,
                u64::from(m.mbufs) * 2 / 3
            )));
        }
        if m.data_room < MBUF_HEADROOM + 64 {
            return Err(CoreMapError::Mempool(format!(
                "data_room {} leaves no room for a frame after the {MBUF_HEADROOM}-byte headroom",
                m.data_room
            )));
        }
        Ok(())
    }
}

fn check_core(c: u32) -> Result<(), CoreMapError> {
    if c > MAX_LCORE {
        return Err(CoreMapError::CoreOutOfRange(c));
    }
    Ok(())
}

impl Plan {
    /// The EAL lcores: the main lcore and the workers, ascending.
    pub fn lcores(&self) -> Vec<u32> {
        let mut l: Vec<u32> = self.workers.iter().map(|w| w.core).collect();
        l.push(self.main_lcore);
        l.sort_unstable();
        l
    }

    /// The `-l` value: lcores as comma-separated ranges (`0-3,6`).
    pub fn lcore_list(&self) -> String {
        ranges(&self.lcores())
    }

    /// Full EAL arguments (without the program name): core list, main lcore, devices, then
    /// the map's extra arguments.
    pub fn eal_args(&self) -> Vec<String> {
        let mut a = vec!["-l".to_owned(), self.lcore_list(), "--main-lcore".to_owned(), self.main_lcore.to_string()];
        for d in self.ports.iter().filter_map(|p| p.device.as_ref()) {
            a.extend(d.eal_args());
        }
        a.extend(self.extra_eal_args.iter().cloned());
        a
    }

    /// Checks that every core exists on this host (`available`: usable CPU ids).
    pub fn check_host(&self, available: &[u32]) -> Result<(), CoreMapError> {
        let have: BTreeSet<u32> = available.iter().copied().collect();
        let all = self.control_cores.iter().chain(self.workers.iter().map(|w| &w.core));
        for &c in all {
            if !have.contains(&c) {
                return Err(CoreMapError::CoreNotPresent(c, ranges(available)));
            }
        }
        Ok(())
    }

    /// Fills in devices the core map left out from `lookup` (interface name → the gateway
    /// configuration's `dpdk-device`); fails if a port still has none or two ports share one.
    pub fn resolve_devices<F: Fn(&str) -> Option<String>>(&mut self, lookup: F) -> Result<(), CoreMapError> {
        for p in &mut self.ports {
            if p.device.is_none() {
                p.device = lookup(&p.name).as_deref().and_then(Device::parse);
            }
            if p.device.is_none() {
                return Err(CoreMapError::MissingDevice(p.name.clone()));
            }
        }
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for p in &self.ports {
            if let Some(d) = &p.device {
                if let Some(other) = seen.insert(d.name(), &p.name) {
                    return Err(CoreMapError::DuplicateDevice(other.to_owned(), p.name.clone()));
                }
            }
        }
        Ok(())
    }

    /// Index of the port named `name`.
    pub fn port_index(&self, name: &str) -> Option<u16> {
        self.ports.iter().position(|p| p.name == name).map(|i| i as u16)
    }
}

/// Formats sorted ids as `a-b,c` ranges.
fn ranges(ids: &[u32]) -> String {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        out.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
        i += 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
        [control]
        cores = [0]
        [[port]]
        name = "wan1"
        device = "net_ring0"
        [[worker]]
        core = 1
        poll = [{ port = "wan1", queue = 0 }]
    "#;

    fn plan(text: &str) -> Result<Plan, CoreMapError> {
        CoreMap::from_toml(text)?.plan()
    }

    /// MIN with `extra` appended (more ports / workers) or `edit` applied.
    fn with(extra: &str) -> String {
        format!("{MIN}\n{extra}")
    }

    #[test]
    fn example_2_cores() {
        let mut p = plan(include_str!("../../examples/cores-2.toml")).unwrap();
        assert_eq!(p.lcore_list(), "0-1");
        assert_eq!(p.workers, vec![WorkerPlan { core: 1, polls: vec![(0, 0), (1, 0)], tx_queue: 0 }]);
        assert_eq!(p.ports[0].device, None, "device comes from the gateway config");
        assert_eq!(
            p.resolve_devices(|_| None),
            Err(CoreMapError::MissingDevice("wan1".into())),
            "unresolved device is an error"
        );
        p.resolve_devices(|n| match n {
            "wan1" => Some("net_af_packet0,iface=veth-gw-wan".into()),
            "Internal" => Some("net_af_packet1,iface=veth-gw-lan".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(p.ports[1].device.as_ref().map(Device::name), Some("net_af_packet1"));
        assert_eq!(
            p.eal_args(),
            [
                "-l",
                "0-1",
                "--main-lcore",
                "0",
                "--vdev=net_af_packet0,iface=veth-gw-wan",
                "--vdev=net_af_packet1,iface=veth-gw-lan",
                "--no-huge",
                "-m",
                "1024",
                "--no-pci",
                "--no-telemetry"
            ]
        );
        assert!(p.check_host(&[0, 1]).is_ok());
    }

    #[test]
    fn example_4_cores() {
        let p = plan(include_str!("../../examples/cores-4.toml")).unwrap();
        assert_eq!(p.lcore_list(), "0-3");
        assert_eq!(p.ports.len(), 2);
        for port in &p.ports {
            assert_eq!((port.rx_queues, port.tx_queues), (3, 4), "3 workers + control tx queue");
            assert!(matches!(port.device, Some(Device::Pci(_))));
        }
        assert_eq!(p.control_tx_queue, Some(3));
        assert_eq!(p.workers.iter().map(|w| w.tx_queue).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(&p.eal_args()[4..8], ["-a", "0000:01:00.0", "-a", "0000:01:00.1"]);
        assert_eq!(p.check_host(&[0, 1]), Err(CoreMapError::CoreNotPresent(2, "0-1".into())));
    }

    #[test]
    fn example_16_cores() {
        let p = plan(include_str!("../../examples/cores-16.toml")).unwrap();
        // Core 1 is a control core but not an EAL lcore: tokio owns it.
        assert_eq!(p.lcore_list(), "0,2-15");
        assert_eq!(p.control_cores, [0, 1]);
        assert_eq!(p.workers.len(), 14);
        assert_eq!((p.ports[0].rx_queues, p.ports[0].tx_queues), (14, 15));
        assert_eq!(p.workers[13], WorkerPlan { core: 15, polls: vec![(0, 13), (1, 13)], tx_queue: 13 });
        assert_eq!(p.mempool, MempoolSpec { mbufs: 131071, cache: 512, data_room: 2176 });
        assert_eq!(p.port_index("Internal"), Some(1));
    }

    #[test]
    fn core_used_twice() {
        let t = with("[[worker]]\ncore = 1\npoll = [{ port = \"wan1\", queue = 1 }]");
        assert_eq!(plan(&t), Err(CoreMapError::CoreUsedTwice(1)));
    }

    #[test]
    fn control_overlapping_a_worker() {
        let t = MIN.replace("cores = [0]", "cores = [0, 1]");
        let e = plan(&t).unwrap_err();
        assert_eq!(e, CoreMapError::ControlOverlapsWorker(1));
        assert_eq!(e.to_string(), "core map: core 1 is both a control core and a worker core");
        let t = MIN.replace("cores = [0]", "cores = [0, 0]");
        assert_eq!(plan(&t), Err(CoreMapError::DuplicateControlCore(0)));
    }

    #[test]
    fn queue_polled_by_two_workers() {
        let t = with("[[worker]]\ncore = 2\npoll = [{ port = \"wan1\", queue = 0 }]");
        let e = plan(&t).unwrap_err();
        assert_eq!(e, CoreMapError::QueuePolledTwice { port: "wan1".into(), queue: 0, first: 1, second: 2 });
        assert!(e.to_string().contains("polled by the workers on cores 1 and 2"), "{e}");
    }

    #[test]
    fn port_without_poller_and_unknown_port() {
        let t = with("[[port]]\nname = \"Internal\"\ndevice = \"net_ring1\"");
        assert_eq!(plan(&t), Err(CoreMapError::PortWithoutPoller("Internal".into())));
        let t = with("[[worker]]\ncore = 2\npoll = [{ port = \"lan\", queue = 0 }]");
        assert_eq!(plan(&t), Err(CoreMapError::UnknownPort { core: 2, port: "lan".into() }));
    }

    #[test]
    fn queue_gap() {
        let t = with("[[worker]]\ncore = 2\npoll = [{ port = \"wan1\", queue = 2 }]");
        assert_eq!(plan(&t), Err(CoreMapError::QueueGap { port: "wan1".into(), missing: 1, highest: 2 }));
    }

    #[test]
    fn workers_and_control_required() {
        assert_eq!(plan("[control]\ncores = [0]"), Err(CoreMapError::NoWorkers));
        let t = MIN.replace("cores = [0]", "cores = []");
        assert_eq!(plan(&t), Err(CoreMapError::NoControlCore));
        let t = MIN.replace("poll = [{ port = \"wan1\", queue = 0 }]", "poll = []");
        assert_eq!(plan(&t), Err(CoreMapError::WorkerWithoutQueues(1)));
        let t = MIN.replace("core = 1", "core = 128");
        assert_eq!(plan(&t), Err(CoreMapError::CoreOutOfRange(128)));
    }

    #[test]
    fn mempool_limits() {
        for (pool, ok) in [
            ("mbufs = 0", false),
            ("mbufs = 300\ncache = 256", false), // 256 > 300 / 1.5
            ("mbufs = 8191\ncache = 513", false),
            ("mbufs = 8191\ndata_room = 128", false),
            ("mbufs = 384\ncache = 256", true),
        ] {
            let t = with(&format!("[mempool]\n{pool}"));
            assert_eq!(plan(&t).is_ok(), ok, "{pool}");
            if !ok {
                assert!(matches!(plan(&t), Err(CoreMapError::Mempool(_))));
            }
        }
    }

    #[test]
    fn eal_args_may_not_override_the_map() {
        for bad in ["-l", "--lcores=0@0", "--main-lcore", "--vdev=net_null0", "-a"] {
            let t = with(&format!("[eal]\nargs = [\"{bad}\"]"));
            assert_eq!(plan(&t), Err(CoreMapError::ConflictingEalArg(bad.into())));
        }
        let t = with("[eal]\nargs = [\"--no-huge\", \"-m\", \"512\"]");
        assert_eq!(plan(&t).unwrap().eal_args().last().map(String::as_str), Some("512"));
    }

    #[test]
    fn devices() {
        assert_eq!(Device::parse("0000:3b:00.1"), Some(Device::Pci("0000:3b:00.1".into())));
        assert_eq!(Device::parse("01:00.0"), Some(Device::Pci("01:00.0".into())));
        assert_eq!(Device::parse("net_tap0,iface=dg0"), Some(Device::Vdev("net_tap0,iface=dg0".into())));
        assert_eq!(Device::parse("net_tap0,iface=dg0").unwrap().name(), "net_tap0");
        assert_eq!(Device::parse("0000:3b:00.9"), Some(Device::Vdev("0000:3b:00.9".into())), "function > 7");
        assert_eq!(Device::parse(" "), None);
        let t = with("[[port]]\nname = \"Internal\"\ndevice = \"net_ring0,x=1\"\n[[worker]]\ncore = 2\npoll = [{ port = \"Internal\", queue = 0 }]");
        assert_eq!(plan(&t), Err(CoreMapError::DuplicateDevice("wan1".into(), "Internal".into())));
        let t = with("[[port]]\nname = \"wan1\"\ndevice = \"net_ring1\"");
        assert_eq!(plan(&t), Err(CoreMapError::DuplicatePort("wan1".into())));
    }

    #[test]
    fn syntax_errors_name_the_problem() {
        let e = plan("[control]\ncores = [0]\n[[worker]]\ncore = 1\npol = []").unwrap_err();
        assert!(matches!(&e, CoreMapError::Syntax(m) if m.contains("pol")), "{e}");
        let e = plan("[control]\ncores = [\"zero\"]").unwrap_err();
        assert!(matches!(e, CoreMapError::Syntax(_)));
    }

    #[test]
    fn lcore_ranges() {
        assert_eq!(ranges(&[5, 0, 1, 2, 7, 8, 3]), "0-3,5,7-8");
        assert_eq!(ranges(&[4]), "4");
        assert_eq!(ranges(&[]), "");
    }
}
