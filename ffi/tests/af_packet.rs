//! net_af_packet on a veth pair, inside a network namespace this test creates.
//!
//! The process first moves itself into a fresh network namespace (`unshare(CLONE_NEWNET)`,
//! root only), creates the veth pair `dgw0`/`dgw1` there with `ip link`, then initialises the
//! EAL with `--vdev=net_af_packet0,iface=dgw0 --vdev=net_af_packet1,iface=dgw1`. Frames sent on
//! DPDK port 0 cross the kernel's veth and arrive on DPDK port 1, and back. The namespace and
//! its veths vanish when the process exits. One `harness = false` binary because the EAL can
//! be initialised once per process and the namespace must be entered before any thread starts.

use std::process::ExitCode;

#[cfg(not(dpdk))]
fn main() -> ExitCode {
    println!("SKIPPED: dialgate-ffi was built without DPDK (libdpdk not found by pkg-config, or DIALGATE_NO_DPDK set)");
    ExitCode::SUCCESS
}

#[cfg(dpdk)]
fn main() -> ExitCode {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED: creating a network namespace and veths needs root");
        return ExitCode::SUCCESS;
    }
    match imp::run() {
        Ok(()) => {
            println!("test af_packet_veth_in_netns ... ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("test af_packet_veth_in_netns ... FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(dpdk)]
mod imp {
    use std::process::Command;
    use std::time::{Duration, Instant};

    use dialgate_dataplane::port::{Burst, PacketIo};
    use dialgate_ffi::io::EthdevIo;
    use dialgate_ffi::{port, Eal, Mbuf, Mempool, PoolConfig, Port, PortConfig};

    /// IEEE 802 "local experimental" ethertype: nothing else in the namespace sends it, so the
    /// kernel's own frames on the veths (IPv6 ND, if enabled) are told apart.
    const ETHERTYPE: [u8; 2] = [0x88, 0xb5];

    fn sh(args: &[&str]) -> Result<(), String> {
        let out = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{args:?}: {e}"))?;
        if !out.status.success() {
            return Err(format!("{args:?}: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(())
    }

    fn frame(dst: [u8; 6], src: [u8; 6], seq: u16, len: usize) -> Vec<u8> {
        let mut f = Vec::with_capacity(len);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&ETHERTYPE);
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend((16..len).map(|i| (i as u8) ^ (seq as u8)));
        f
    }

    fn exchange(io: &mut EthdevIo, from: u16, to: u16, n: u16) -> Result<(), String> {
        let (src, dst) = (io.mac(from).ok_or("mac")?, io.mac(to).ok_or("mac")?);
        let mut out: Burst<Mbuf> = Burst::new();
        for seq in 0..n {
            let f = frame(dst, src, seq, 60 + usize::from(seq) * 7);
            let mut m = io.alloc().ok_or("pool empty")?;
            m.append(f.len()).ok_or("append")?.copy_from_slice(&f);
            out.push(m);
        }
        let mut sent = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !out.is_empty() && Instant::now() < deadline {
            sent += io.tx_burst(from, 0, &mut out);
        }
        if sent != usize::from(n) {
            return Err(format!("port {from} sent {sent} of {n}"));
        }
        let mut got = Vec::new();
        let mut rx: Burst<Mbuf> = Burst::new();
        while got.len() < usize::from(n) && Instant::now() < deadline {
            io.rx_burst(to, 0, &mut rx);
            for m in rx.drain(..) {
                if m.data().get(12..14) == Some(&ETHERTYPE[..]) {
                    got.push(m.data().to_vec());
                }
            }
        }
        let want: Vec<Vec<u8>> = (0..n).map(|s| frame(dst, src, s, 60 + usize::from(s) * 7)).collect();
        if got != want {
            return Err(format!("port {to} received {} frames, expected {n} identical ones", got.len()));
        }
        Ok(())
    }

    pub(super) fn run() -> Result<(), String> {
        // SAFETY: called before any other thread exists, so the whole process (and every thread
        // and child it creates later) lives in the new namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(format!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error()));
        }
        sh(&["ip", "link", "add", "dgw0", "type", "veth", "peer", "name", "dgw1"])?;
        sh(&["ip", "link", "set", "dgw0", "up"])?;
        sh(&["ip", "link", "set", "dgw1", "up"])?;
        let prefix = format!("--file-prefix=dgafp{}", std::process::id());
        let eal = Eal::init(&[
            "--no-huge",
            "-m",
            "512",
            "--no-pci",
            "--no-shconf",
            "--no-telemetry",
            "-l",
            "0",
            "--vdev=net_af_packet0,iface=dgw0",
            "--vdev=net_af_packet1,iface=dgw1",
            "--log-level=lib.eal:error",
            &prefix,
        ])
        .map_err(|e| e.to_string())?;
        let a = port::port_by_name(&eal, "net_af_packet0").map_err(|e| e.to_string())?;
        let b = port::port_by_name(&eal, "net_af_packet1").map_err(|e| e.to_string())?;
        let pool = Mempool::new(&eal, "afp", PoolConfig::new(2047)).map_err(|e| e.to_string())?;
        let cfg = PortConfig { rx_desc: 256, tx_desc: 256, ..PortConfig::default() };
        let pa = Port::configure(&eal, a, &cfg, &pool).map_err(|e| e.to_string())?;
        let pb = Port::configure(&eal, b, &cfg, &pool).map_err(|e| e.to_string())?;
        pa.start().map_err(|e| e.to_string())?;
        pb.start().map_err(|e| e.to_string())?;
        // af_packet ports report the kernel interface's MAC: distinct, locally generated.
        let (ma, mb) = (pa.mac().map_err(|e| e.to_string())?, pb.mac().map_err(|e| e.to_string())?);
        if ma == mb || ma == [0; 6] {
            return Err(format!("veth MACs {ma:02x?} {mb:02x?}"));
        }
        let mut io = EthdevIo::new(
            pool.clone(),
            vec![pa.take_rx(0).map_err(|e| e.to_string())?, pb.take_rx(0).map_err(|e| e.to_string())?],
            vec![pa.take_tx(0).map_err(|e| e.to_string())?, pb.take_tx(0).map_err(|e| e.to_string())?],
        )
        .map_err(|e| e.to_string())?;
        exchange(&mut io, a, b, 32)?;
        exchange(&mut io, b, a, 32)?;
        let sb = pb.stats().map_err(|e| e.to_string())?;
        if sb.opackets != 32 || sb.ipackets < 32 {
            return Err(format!("port {b} stats {sb:?}"));
        }
        drop(io);
        if pool.in_use() != 0 {
            return Err(format!("{} mbufs leaked", pool.in_use()));
        }
        Ok(())
    }
}
