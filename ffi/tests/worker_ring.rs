//! The data-plane worker on DPDK: two back-to-back net_ring port pairs (WAN and LAN), the
//! worker on lcore 1 over `EthdevIo`, its SA, route and neighbour commands applied from the
//! command ring while it runs; this thread generates ESP and cleartext bursts and checks what
//! comes out of the other side (and that an IKE datagram reaches the exception ring as an
//! mbuf). One `harness = false` binary because the EAL can be initialised once per process.
//!
//! ```text
//!  generator WAN port ══ring══ DUT WAN port ─ worker (lcore 1) ─ DUT LAN port ══ring══ generator LAN port
//! ```

use std::process::ExitCode;

#[cfg(not(dpdk))]
fn main() -> ExitCode {
    println!("SKIPPED: dialgate-ffi was built without DPDK");
    ExitCode::SUCCESS
}

#[cfg(dpdk)]
fn main() -> ExitCode {
    match imp::run() {
        Ok(()) => {
            println!("test worker_over_net_ring ... ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("test worker_over_net_ring ... FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(dpdk)]
mod imp {
    use core::net::{IpAddr, Ipv4Addr, SocketAddrV4};
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use dialgate_dataplane::esp::{Algorithm, Backend, DropReason, Transform};
    use dialgate_dataplane::port::{Burst, PacketIo};
    use dialgate_dataplane::ring::Command;
    use dialgate_dataplane::route::NextHop;
    use dialgate_dataplane::sa::table::InboundEntry;
    use dialgate_dataplane::sa::{InboundSa, Lifetime, OutboundSa, Tunnel, UdpEncap};
    use dialgate_dataplane::wire::ipv4;
    use dialgate_dataplane::worker::{frames, Counter, Interface, Plane, PlaneConfig, Role, Worker, WorkerConfig};
    use dialgate_ffi::io::EthdevIo;
    use dialgate_ffi::{port, Eal, Mbuf, Mempool, PoolConfig, Port, PortConfig};

    const N: usize = 2000;
    const GW_WAN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const ROUTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
    const ROUTER_MAC: [u8; 6] = [2, 0xee, 0, 0, 0, 0xfe];
    const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
    const GW_LAN: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
    const HOST_MAC: [u8; 6] = [2, 0xaa, 0, 0, 0, 5];
    const VIP: Ipv4Addr = Ipv4Addr::new(10, 212, 134, 200);
    const CLIENT_SPI: u32 = 0xc1c1_0001;

    fn e2s<E: std::fmt::Display>(e: E) -> String {
        e.to_string()
    }

    fn transform(seed: u8) -> Transform {
        let key: Vec<u8> = (0..20).map(|i| seed.wrapping_mul(17).wrapping_add(i)).collect();
        Transform::new(Algorithm::Aes128Gcm, Backend::AwsLc, &key, &[]).expect("20-byte GCM key")
    }

    fn tunnel(local: Ipv4Addr, remote: Ipv4Addr, lp: u16, rp: u16) -> Tunnel {
        Tunnel { local: local.into(), remote: remote.into(), encap: Some(UdpEncap { local_port: lp, remote_port: rp }) }
    }

    /// Sends `frames` from `port` and collects `want` frames arriving on `rx_port`.
    fn exchange(
        gen: &mut EthdevIo,
        port: u16,
        rx_port: u16,
        frames: &[Vec<u8>],
        want: usize,
    ) -> Result<Vec<Vec<u8>>, String> {
        let mut out: Burst<Mbuf> = Burst::new();
        let mut rx: Burst<Mbuf> = Burst::new();
        let (mut sent, mut got) = (0usize, Vec::new());
        let deadline = Instant::now() + Duration::from_secs(30);
        while (sent < frames.len() || !out.is_empty() || got.len() < want) && Instant::now() < deadline {
            while sent < frames.len() && !out.is_full() {
                let Some(mut m) = gen.alloc() else { break };
                m.append(frames[sent].len()).ok_or("append")?.copy_from_slice(&frames[sent]);
                out.push(m);
                sent += 1;
            }
            gen.tx_burst(port, 0, &mut out);
            gen.rx_burst(rx_port, 0, &mut rx);
            got.extend(rx.drain(..).map(|m| m.data().to_vec()));
        }
        if got.len() != want {
            return Err(format!("received {} of {want} (sent {sent})", got.len()));
        }
        Ok(got)
    }

    struct StopOnDrop(Arc<AtomicBool>);

    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    pub(super) fn run() -> Result<(), String> {
        let prefix = format!("--file-prefix=dgwr{}", std::process::id());
        let eal = Eal::init(&[
            "--no-huge",
            "-m",
            "1024",
            "--no-pci",
            "--no-shconf",
            "--no-telemetry",
            "-l",
            "0-1",
            "--log-level=lib.eal:error",
            &prefix,
        ])
        .map_err(e2s)?;
        let (gen_wan, dut_wan) = port::ring_pair(&eal, "ww", 1, 1024).map_err(e2s)?;
        let (dut_lan, gen_lan) = port::ring_pair(&eal, "wl", 1, 1024).map_err(e2s)?;
        let pool = Mempool::new(&eal, "wring", PoolConfig::new(8191)).map_err(e2s)?;
        let ports: Vec<Port> = [gen_wan, dut_wan, dut_lan, gen_lan]
            .iter()
            .map(|&id| Port::configure(&eal, id, &PortConfig::default(), &pool))
            .collect::<Result<_, _>>()
            .map_err(e2s)?;
        for p in &ports {
            p.start().map_err(e2s)?;
        }
        let dut_io = EthdevIo::new(
            pool.clone(),
            vec![ports[1].take_rx(0).map_err(e2s)?, ports[2].take_rx(0).map_err(e2s)?],
            vec![ports[1].take_tx(0).map_err(e2s)?, ports[2].take_tx(0).map_err(e2s)?],
        )
        .map_err(e2s)?;
        // net_ring ports have the all-zero MAC; frames to the DUT carry it as destination.
        let dut_mac = dut_io.mac(dut_wan).ok_or("mac")?;
        let (mut control, mut links) = Plane::build::<Mbuf>(&PlaneConfig::default());
        let link = links.pop().ok_or("no worker link")?;
        let stop = Arc::new(AtomicBool::new(false));
        let interfaces = vec![Interface::new(dut_wan, Role::Wan, GW_WAN), Interface::new(dut_lan, Role::Lan, GW_LAN)];
        let worker = {
            let stop = stop.clone();
            let cfg = WorkerConfig::new(interfaces, 0);
            eal.launch(1, move || match Worker::new(link, cfg, dut_io) {
                Ok(mut w) => {
                    w.run(&stop);
                    0
                }
                Err(_) => 1,
            })
            .map_err(e2s)?
        };
        // Stops the worker on every way out of this function (declared after `worker`, so it
        // is dropped first): an error must not leave the main lcore waiting for it forever.
        let _stop_on_exit = StopOnDrop(stop.clone());

        // Commands go in while the worker is already polling.
        let spi = control.spis.allocate(0).ok_or("spi")?;
        let sa_in = InboundSa::new(spi, transform(1), false, 1024, Lifetime::default());
        control.install_inbound(Box::new(InboundEntry::new(sa_in, IpAddr::V4(VIP), None))).map_err(|_| "ring full")?;
        let routes = [
            Command::RouteAdd {
                prefix: Ipv4Addr::UNSPECIFIED,
                len: 0,
                hop: NextHop::Gateway { port: dut_wan, via: ROUTER },
            },
            Command::RouteAdd {
                prefix: Ipv4Addr::new(10, 0, 0, 0),
                len: 24,
                hop: NextHop::Connected { port: dut_lan },
            },
            Command::NeighbourAdd { port: dut_wan, ip: ROUTER, mac: ROUTER_MAC },
            Command::NeighbourAdd { port: dut_lan, ip: HOST, mac: HOST_MAC },
        ];
        for c in routes {
            control.command(0, c).map_err(|_| "ring full")?;
        }
        let out_sa =
            OutboundSa::new(CLIENT_SPI, transform(2), tunnel(GW_WAN, CLIENT, 4500, 61000), false, Lifetime::default());
        control.outbound.install_vip(VIP, out_sa).map_err(e2s)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while control.counter(Counter::Commands) < 5 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if control.counter(Counter::Commands) != 5 || control.counter(Counter::CommandsFailed) != 0 {
            return Err(format!("commands applied: {}", control.counter(Counter::Commands)));
        }

        let mut gen = EthdevIo::new(
            pool.clone(),
            vec![ports[0].take_rx(0).map_err(e2s)?, ports[3].take_rx(0).map_err(e2s)?],
            vec![ports[0].take_tx(0).map_err(e2s)?, ports[3].take_tx(0).map_err(e2s)?],
        )
        .map_err(e2s)?;

        // Inbound: N ESP-in-UDP frames from the client become N cleartext frames on the LAN.
        let client_out =
            OutboundSa::new(spi, transform(1), tunnel(CLIENT, GW_WAN, 61000, 4500), false, Lifetime::default());
        let esp: Vec<Vec<u8>> = (0..N as u32)
            .map(|i| {
                let inner =
                    frames::ipv4_udp(SocketAddrV4::new(VIP, 5000), SocketAddrV4::new(HOST, 53), 64, &i.to_be_bytes());
                frames::seal_frame(&client_out, dut_mac, ROUTER_MAC, &inner).map_err(|r| r.name().to_string())
            })
            .collect::<Result<_, _>>()?;
        let lan = exchange(&mut gen, gen_wan, gen_lan, &esp, N)?;
        for (i, f) in lan.iter().enumerate() {
            let ip = ipv4::Packet::new_checked(&f[14..]).map_err(e2s)?;
            if f[0..6] != HOST_MAC
                || ip.src_addr() != VIP
                || ip.hop_limit() != 63
                || f[f.len() - 4..] != (i as u32).to_be_bytes()
            {
                return Err(format!("LAN frame {i} wrong: {:02x?}", &f[..]));
            }
        }

        // Outbound: N cleartext frames from the LAN host become ESP the client opens.
        let clear: Vec<Vec<u8>> = (0..N as u32)
            .map(|i| {
                let p =
                    frames::ipv4_udp(SocketAddrV4::new(HOST, 53), SocketAddrV4::new(VIP, 5000), 64, &i.to_be_bytes());
                frames::ethernet(dut_mac, HOST_MAC, 0x0800, &p)
            })
            .collect();
        let wan = exchange(&mut gen, gen_lan, gen_wan, &clear, N)?;
        let mut client_in = InboundSa::new(CLIENT_SPI, transform(2), false, 1024, Lifetime::default());
        let mut seen = BTreeSet::new();
        for f in &wan {
            if f[0..6] != ROUTER_MAC {
                return Err("ESP not sent to the WAN next hop".into());
            }
            let inner = frames::open_frame(&mut client_in, f).map_err(|r| r.name().to_string())?;
            seen.insert(u32::from_be_bytes(inner[inner.len() - 4..].try_into().map_err(e2s)?));
        }
        if seen.len() != N {
            return Err(format!("client opened {} distinct packets", seen.len()));
        }

        // IKE reaches the control plane as an mbuf; a replay is counted.
        let ike = frames::ipv4_udp(SocketAddrV4::new(CLIENT, 500), SocketAddrV4::new(GW_WAN, 500), 64, &[0x2a; 48]);
        let ike = frames::ethernet(dut_mac, ROUTER_MAC, 0x0800, &ike);
        exchange(&mut gen, gen_wan, gen_lan, &[ike, esp[N - 1].clone()], 0)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut ex = None;
        while ex.is_none() && Instant::now() < deadline {
            ex = control.exceptions.pop();
        }
        let ex = ex.ok_or("no exception")?;
        if ex.payload() != [0x2a; 48] || ex.src != SocketAddrV4::new(CLIENT, 500) || ex.port != dut_wan {
            return Err(format!("exception {ex:?}"));
        }
        drop(ex);
        while control.drops(DropReason::Replayed) < 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if control.drops(DropReason::Replayed) != 1 {
            return Err("replay not counted".into());
        }

        stop.store(true, Ordering::Relaxed);
        let rc = worker.join().map_err(e2s)?;
        if rc != 0 {
            return Err(format!("worker returned {rc}"));
        }
        let enc = control.counter(Counter::Encrypted);
        let dec = control.counter(Counter::Decrypted);
        if enc != N as u64 || dec != N as u64 {
            return Err(format!("encrypted {enc} decrypted {dec}"));
        }
        drop(gen);
        while control.events.pop().is_some() {}
        if pool.in_use() != 0 {
            return Err(format!("{} mbufs leaked", pool.in_use()));
        }
        Ok(())
    }
}
