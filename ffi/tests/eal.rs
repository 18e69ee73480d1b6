//! EAL integration tests, on this machine without a NIC or hugepages.
//!
//! The EAL can be initialised once per process, so this is one `harness = false` binary that
//! initialises it and runs every case in sequence on the main lcore; a failed assertion fails
//! the process. EAL arguments (see [`EAL_ARGS`]): `--no-huge -m 1024 --no-pci` (no hugepages,
//! no PCI scan), `--no-shconf` and a per-process `--file-prefix` (concurrent test processes
//! never meet in /var/run/dpdk), `-l 0-1` (main lcore 0, worker lcore 1: this machine has two
//! CPUs) and `--vdev=net_ring0` (a ring-PMD loopback port, loaded from Debian's plugin
//! directory). Two more ports come from `rte_eth_from_rings`, wired back to back.

use std::process::ExitCode;

#[cfg(not(dpdk))]
fn main() -> ExitCode {
    println!("SKIPPED: dialgate-ffi was built without DPDK (libdpdk not found by pkg-config, or DIALGATE_NO_DPDK set)");
    ExitCode::SUCCESS
}

#[cfg(dpdk)]
fn main() -> ExitCode {
    imp::main()
}

#[cfg(dpdk)]
mod imp {
    use std::process::ExitCode;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use arrayvec::ArrayVec;
    use dialgate_dataplane::buf::PacketBuf;
    use dialgate_dataplane::port::mem::{MemConfig, MemNet};
    use dialgate_dataplane::port::{Burst, PacketIo};
    use dialgate_ffi::io::EthdevIo;
    use dialgate_ffi::{lcore, port, Eal, Error, Mbuf, Mempool, PoolConfig, Port, PortConfig, Ring, RingMode};

    /// EAL arguments that work on this machine (no hugepages, no NIC, two CPUs).
    pub(super) const EAL_ARGS: &[&str] = &[
        "--no-huge",
        "-m",
        "1024",
        "--no-pci",
        "--no-shconf",
        "--no-telemetry",
        "-l",
        "0-1",
        "--vdev=net_ring0",
        "--log-level=lib.eal:error",
    ];

    type Case = fn(&Eal) -> Result<(), String>;

    pub(super) fn main() -> ExitCode {
        let prefix = format!("--file-prefix=dgtest{}", std::process::id());
        let mut args: Vec<&str> = EAL_ARGS.to_vec();
        args.push(&prefix);
        let eal = match Eal::init(&args) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("FAILED: Eal::init({args:?}): {e}");
                return ExitCode::FAILURE;
            }
        };
        let cases: &[(&str, Case)] = &[
            ("second_init_refused", second_init_refused),
            ("lcores", lcores),
            ("mempool_alloc_and_mbuf_edits", mempool_alloc_and_mbuf_edits),
            ("mempool_exhaustion_and_bulk", mempool_exhaustion_and_bulk),
            ("vdev_loopback_port", vdev_loopback_port),
            ("ring_pair_ports_carry_a_burst", ring_pair_ports_carry_a_burst),
            ("ring_pair_multi_queue", ring_pair_multi_queue),
            ("queue_handles_are_exclusive", queue_handles_are_exclusive),
            ("ring_mpmc_burst_and_full", ring_mpmc_burst_and_full),
            ("ring_spsc_across_lcores", ring_spsc_across_lcores),
            ("ring_drop_frees_contents", ring_drop_frees_contents),
            ("launch_and_join", launch_and_join),
            ("launch_panic_is_contained", launch_panic_is_contained),
            ("ethdev_packet_io", ethdev_packet_io),
        ];
        let mut failed = 0;
        for (name, case) in cases {
            match case(&eal) {
                Ok(()) => println!("test {name} ... ok"),
                Err(e) => {
                    println!("test {name} ... FAILED: {e}");
                    failed += 1;
                }
            }
        }
        println!("\n{} passed; {failed} failed", cases.len() - failed);
        if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }

    macro_rules! check {
        ($cond:expr, $($msg:tt)+) => {
            if !$cond {
                return Err(format!("{}:{}: {}", file!(), line!(), format!($($msg)+)));
            }
        };
    }

    fn e2s<E: std::fmt::Display>(e: E) -> String {
        e.to_string()
    }

    fn second_init_refused(_eal: &Eal) -> Result<(), String> {
        let r = Eal::init(&["--no-huge"]);
        check!(matches!(r, Err(Error::EalAlreadyInitialised)), "second init gave {r:?}");
        Ok(())
    }

    fn lcores(eal: &Eal) -> Result<(), String> {
        check!(eal.lcore_count() == 2, "lcore_count {}", eal.lcore_count());
        check!(eal.main_lcore() == 0, "main lcore {}", eal.main_lcore());
        check!(eal.worker_lcores() == vec![1], "workers {:?}", eal.worker_lcores());
        check!(lcore::current() == Some(0), "this thread is lcore {:?}", lcore::current());
        let other = std::thread::spawn(lcore::current).join().map_err(|_| "thread panicked")?;
        check!(other.is_none(), "a plain thread reported lcore {other:?}");
        let hz = lcore::tsc_hz();
        check!(hz > 100_000_000, "tsc_hz {hz}");
        let t0 = lcore::rdtsc();
        std::thread::sleep(Duration::from_millis(20));
        let dt = lcore::rdtsc().wrapping_sub(t0);
        // 20 ms sleep: at least 15 ms and (allowing for scheduling) under a second of ticks.
        check!(dt > hz / 1000 * 15 && dt < hz, "20 ms took {dt} ticks at {hz} Hz");
        Ok(())
    }

    fn mempool_alloc_and_mbuf_edits(eal: &Eal) -> Result<(), String> {
        let pool = Mempool::new(eal, "t_edit", PoolConfig::new(63)).map_err(e2s)?;
        check!(pool.avail() == 63 && pool.in_use() == 0, "{pool:?}");
        let mut m = pool.alloc().ok_or("alloc")?;
        check!(m.data_len() == 0 && m.headroom() == 128, "fresh mbuf {m:?}");
        check!(m.tailroom() == 2048, "tailroom {}", m.tailroom());
        m.append(4).ok_or("append")?.copy_from_slice(&[1, 2, 3, 4]);
        // ESP encapsulation: 8 (SPI+seq) + 8 (IV) in front, padding + 2 + 16 (ICV) behind.
        m.prepend(16).ok_or("prepend")?.fill(0xaa);
        m.append(20).ok_or("append trailer")?.fill(0xbb);
        check!(m.data_len() == 40 && m.pkt_len() == 40 && m.is_contiguous(), "{m:?}");
        check!(m.headroom() == 112, "headroom {}", m.headroom());
        check!(m.data()[16..20] == [1, 2, 3, 4], "payload moved: {:?}", m.data());
        check!(m.prepend(113).is_none(), "prepend beyond headroom accepted");
        check!(m.append(5000).is_none(), "append beyond tailroom accepted");
        check!(m.data_len() == 40, "failed growth changed the length");
        check!(m.adj(16) && m.trim(20), "adj/trim");
        check!(m.data() == [1, 2, 3, 4], "after adj/trim {:?}", m.data());
        check!(!m.adj(5) && !m.trim(5), "over-long adj/trim accepted");
        m.data_mut()[0] = 9;
        check!(m.data()[0] == 9, "data_mut did not write");
        check!(pool.in_use() == 1, "in use {}", pool.in_use());
        drop(m);
        check!(pool.in_use() == 0, "drop did not free: in use {}", pool.in_use());
        Ok(())
    }

    fn mempool_exhaustion_and_bulk(eal: &Eal) -> Result<(), String> {
        let cfg = PoolConfig { mbufs: 40, cache: 0, data_room: PoolConfig::DEFAULT_DATA_ROOM, socket: None };
        let pool = Mempool::new(eal, "t_bulk", cfg).map_err(e2s)?;
        let mut a: ArrayVec<Mbuf, 32> = ArrayVec::new();
        check!(pool.alloc_bulk(&mut a) && a.len() == 32, "bulk of 32 from 40: {}", a.len());
        let mut b: ArrayVec<Mbuf, 16> = ArrayVec::new();
        check!(!pool.alloc_bulk(&mut b) && b.is_empty(), "bulk of 16 from 8 must fail atomically");
        let rest: Vec<Mbuf> = std::iter::from_fn(|| pool.alloc()).collect();
        check!(rest.len() == 8 && pool.alloc().is_none(), "singles after bulk: {}", rest.len());
        dialgate_ffi::mbuf::free_bulk(&mut a);
        check!(a.is_empty() && pool.in_use() == 8, "free_bulk: in use {}", pool.in_use());
        drop(rest);
        check!(pool.avail() == 40, "avail {}", pool.avail());
        let bad = PoolConfig { mbufs: 10, cache: 256, ..PoolConfig::new(10) };
        check!(Mempool::new(eal, "t_bad", bad).is_err(), "cache larger than pool/1.5 accepted");
        check!(Mempool::new(eal, "a_name_that_is_much_too_long", PoolConfig::new(15)).is_err(), "long name");
        Ok(())
    }

    fn frame(tag: u8, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, tag]);
        f[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental ethertype
        for (i, b) in f[14..].iter_mut().enumerate() {
            *b = tag ^ i as u8;
        }
        f
    }

    fn fill(pool: &Mempool, bufs: &mut ArrayVec<Mbuf, 32>, n: usize, tag0: u8) -> Result<(), String> {
        for i in 0..n {
            let mut m = pool.alloc().ok_or("pool empty")?;
            let f = frame(tag0.wrapping_add(i as u8), 60 + i);
            m.append(f.len()).ok_or("append")?.copy_from_slice(&f);
            bufs.push(m);
        }
        Ok(())
    }

    fn rx_until<const N: usize>(q: &mut dialgate_ffi::RxQueue, out: &mut ArrayVec<Mbuf, N>, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while out.len() < n && Instant::now() < deadline {
            q.rx_burst(out);
        }
    }

    fn vdev_loopback_port(eal: &Eal) -> Result<(), String> {
        // A ring PMD created by --vdev=net_ring0 uses one ring per queue for rx and tx:
        // what it sends it receives itself.
        let id = port::port_by_name(eal, "net_ring0").map_err(e2s)?;
        let pool = Mempool::new(eal, "t_vdev", PoolConfig::new(511)).map_err(e2s)?;
        let p = Port::configure(eal, id, &PortConfig::default(), &pool).map_err(e2s)?;
        p.start().map_err(e2s)?;
        let link = p.link().map_err(e2s)?;
        check!(link.up, "ring port link down: {link:?}");
        let mut tx = p.take_tx(0).map_err(e2s)?;
        let mut rx = p.take_rx(0).map_err(e2s)?;
        let mut burst = ArrayVec::new();
        fill(&pool, &mut burst, 8, 0x10)?;
        check!(tx.tx_burst(&mut burst) == 8 && burst.is_empty(), "tx left {}", burst.len());
        let mut got: ArrayVec<Mbuf, 32> = ArrayVec::new();
        rx_until(&mut rx, &mut got, 8);
        check!(got.len() == 8, "looped back {}", got.len());
        for (i, m) in got.iter().enumerate() {
            check!(m.data() == frame(0x10 + i as u8, 60 + i).as_slice(), "frame {i} differs");
        }
        Ok(())
    }

    fn ring_pair_ports_carry_a_burst(eal: &Eal) -> Result<(), String> {
        let before = port::count_avail(eal);
        let (a, b) = port::ring_pair(eal, "rp", 1, 1024).map_err(e2s)?;
        check!(port::count_avail(eal) == before + 2 && a != b, "ports {a} {b}");
        let pool = Mempool::new(eal, "t_pair", PoolConfig::new(1023)).map_err(e2s)?;
        let pa = Port::configure(eal, a, &PortConfig::default(), &pool).map_err(e2s)?;
        let pb = Port::configure(eal, b, &PortConfig::default(), &pool).map_err(e2s)?;
        pa.start().map_err(e2s)?;
        pb.start().map_err(e2s)?;
        // The ring PMD has no hardware address: both report 00:00:00:00:00:00.
        check!(pa.mac().map_err(e2s)? == [0; 6] && pb.mac().is_ok(), "ring port MAC");
        check!(pa.promiscuous(), "promiscuous requested by the default PortConfig");
        let (mut txa, mut rxa) = (pa.take_tx(0).map_err(e2s)?, pa.take_rx(0).map_err(e2s)?);
        let mut rxb = pb.take_rx(0).map_err(e2s)?;
        let mut burst = ArrayVec::new();
        fill(&pool, &mut burst, 32, 0x40)?;
        let in_use = pool.in_use();
        check!(txa.tx_burst(&mut burst) == 32, "tx a");
        let mut got: ArrayVec<Mbuf, 64> = ArrayVec::new();
        rx_until(&mut rxb, &mut got, 32);
        check!(got.len() == 32, "b received {}", got.len());
        for (i, m) in got.iter().enumerate() {
            check!(m.data() == frame(0x40 + i as u8, 60 + i).as_slice(), "frame {i} differs on b");
        }
        let mut none: ArrayVec<Mbuf, 8> = ArrayVec::new();
        check!(rxa.rx_burst(&mut none) == 0, "a received its own frames");
        check!(pool.in_use() == in_use, "mbufs leaked or lost in the pair: {} vs {in_use}", pool.in_use());
        drop(got);
        check!(pool.in_use() == 0, "in use after drop {}", pool.in_use());
        let sa = pa.stats().map_err(e2s)?;
        let sb = pb.stats().map_err(e2s)?;
        check!(sa.opackets == 32 && sb.ipackets == 32, "stats a {sa:?} b {sb:?}");
        pb.reset_stats().map_err(e2s)?;
        check!(pb.stats().map_err(e2s)?.ipackets == 0, "reset_stats");
        Ok(())
    }

    fn ring_pair_multi_queue(eal: &Eal) -> Result<(), String> {
        let (a, b) = port::ring_pair(eal, "rq", 2, 256).map_err(e2s)?;
        let pool = Mempool::new(eal, "t_mq", PoolConfig::new(1023)).map_err(e2s)?;
        let cfg = PortConfig { rx_queues: 2, tx_queues: 2, ..PortConfig::default() };
        let pa = Port::configure(eal, a, &cfg, &pool).map_err(e2s)?;
        let pb = Port::configure(eal, b, &cfg, &pool).map_err(e2s)?;
        // The ring PMD has no RSS: configure must fall back to plain multi-queue.
        check!(!pa.rss_enabled(), "ring PMD reported RSS");
        pa.start().map_err(e2s)?;
        pb.start().map_err(e2s)?;
        let mut tx1 = pa.take_tx(1).map_err(e2s)?;
        let (mut rx0, mut rx1) = (pb.take_rx(0).map_err(e2s)?, pb.take_rx(1).map_err(e2s)?);
        let mut burst = ArrayVec::new();
        fill(&pool, &mut burst, 5, 0x70)?;
        check!(tx1.tx_burst(&mut burst) == 5, "tx queue 1");
        let mut got: ArrayVec<Mbuf, 32> = ArrayVec::new();
        rx_until(&mut rx1, &mut got, 5);
        check!(got.len() == 5, "queue 1 received {}", got.len());
        check!(rx0.rx_burst(&mut got) == 0, "queue 0 received queue 1's frames");
        Ok(())
    }

    fn queue_handles_are_exclusive(eal: &Eal) -> Result<(), String> {
        let (a, _b) = port::ring_pair(eal, "rx", 1, 64).map_err(e2s)?;
        let pool = Mempool::new(eal, "t_excl", PoolConfig::new(255)).map_err(e2s)?;
        let mut p = Port::configure(eal, a, &PortConfig::default(), &pool).map_err(e2s)?;
        p.start().map_err(e2s)?;
        let q = p.take_rx(0).map_err(e2s)?;
        check!(matches!(p.take_rx(0), Err(Error::QueueTaken { .. })), "rx queue 0 taken twice");
        check!(p.take_rx(1).is_err(), "nonexistent queue 1 handed out");
        check!(matches!(p.stop(), Err(Error::QueuesInUse(_))), "stop with a live queue handle");
        drop(q);
        p.stop().map_err(e2s)?;
        let _q = p.take_rx(0).map_err(e2s)?;
        let zero = PortConfig { rx_queues: 0, ..PortConfig::default() };
        check!(Port::configure(eal, a, &zero, &pool).is_err(), "zero rx queues accepted");
        check!(Port::configure(eal, 31, &PortConfig::default(), &pool).is_err(), "absent port accepted");
        Ok(())
    }

    fn ring_mpmc_burst_and_full(eal: &Eal) -> Result<(), String> {
        let ring: Ring<Box<u64>> = Ring::new(eal, "t_mpmc", 10, RingMode::MpMc).map_err(e2s)?;
        let mut items: ArrayVec<Box<u64>, 16> = (0..16).map(Box::new).collect();
        let n = ring.enqueue_burst(&mut items);
        check!(n == 10 && ring.count() == 10 && ring.free_count() == 0, "enqueued {n}");
        check!(items.len() == 6 && *items[0] == 10, "leftovers {:?}", items);
        let mut out: ArrayVec<Box<u64>, 4> = ArrayVec::new();
        check!(ring.dequeue_burst(&mut out) == 4, "dequeue 4");
        check!(out.iter().map(|b| **b).eq(0..4), "fifo order {out:?}");
        check!(ring.enqueue_burst(&mut items) == 4 && items.len() == 2, "refill");
        println!("    (the next 'RING: Cannot reserve memory' line is DPDK refusing a duplicate name, as tested)");
        check!(Ring::<Box<u8>>::new(eal, "t_mpmc", 8, RingMode::MpMc).is_err(), "duplicate name accepted");
        Ok(())
    }

    struct Dropped(Arc<AtomicU64>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn ring_drop_frees_contents(eal: &Eal) -> Result<(), String> {
        let count = Arc::new(AtomicU64::new(0));
        let ring: Ring<Box<Dropped>> = Ring::new(eal, "t_dropc", 8, RingMode::MpMc).map_err(e2s)?;
        let mut items: ArrayVec<Box<Dropped>, 8> = (0..5).map(|_| Box::new(Dropped(count.clone()))).collect();
        check!(ring.enqueue_burst(&mut items) == 5, "enqueue");
        drop(ring);
        check!(count.load(Ordering::SeqCst) == 5, "dropping the ring dropped {} of 5", count.load(Ordering::SeqCst));
        Ok(())
    }

    fn ring_spsc_across_lcores(eal: &Eal) -> Result<(), String> {
        const TOTAL: u64 = 200_000;
        let ring: Ring<Box<u64>> = Ring::new(eal, "t_spsc", 256, RingMode::SpSc).map_err(e2s)?;
        let (mut prod, mut cons) = ring.into_spsc().map_err(|_| "into_spsc")?;
        // Producer on worker lcore 1, consumer here on the main lcore.
        let worker = eal
            .launch(1, move || {
                let mut next = 0u64;
                let mut batch: ArrayVec<Box<u64>, 32> = ArrayVec::new();
                let mut full = 0u64;
                while next < TOTAL || !batch.is_empty() {
                    while !batch.is_full() && next < TOTAL {
                        batch.push(Box::new(next));
                        next += 1;
                    }
                    if prod.enqueue_burst(&mut batch) == 0 {
                        full += 1;
                        std::hint::spin_loop();
                    }
                }
                i32::from(full > 0)
            })
            .map_err(e2s)?;
        let mut expect = 0u64;
        let mut out: ArrayVec<Box<u64>, 32> = ArrayVec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while expect < TOTAL && Instant::now() < deadline {
            cons.dequeue_burst(&mut out);
            for v in out.drain(..) {
                check!(*v == expect, "out of order: got {} expected {expect}", *v);
                expect += 1;
            }
        }
        let rc = worker.join().map_err(e2s)?;
        check!(expect == TOTAL, "received {expect} of {TOTAL}");
        check!(rc == 0 || rc == 1, "producer returned {rc}");
        println!("    spsc: {TOTAL} items, producer saw a full ring: {}", rc == 1);
        Ok(())
    }

    fn launch_and_join(eal: &Eal) -> Result<(), String> {
        let seen = Arc::new(AtomicU64::new(u64::MAX));
        let s = seen.clone();
        let h = eal
            .launch(1, move || {
                s.store(u64::from(lcore::current().unwrap_or(999)), Ordering::SeqCst);
                42
            })
            .map_err(e2s)?;
        check!(h.lcore() == 1, "lcore");
        check!(h.join().map_err(e2s)? == 42, "return value");
        check!(seen.load(Ordering::SeqCst) == 1, "ran on lcore {}", seen.load(Ordering::SeqCst));
        check!(eal.launch(0, || 0).is_err(), "launch on the main lcore accepted");
        let off_main = {
            let eal = eal.clone();
            std::thread::spawn(move || matches!(eal.launch(1, || 0), Err(Error::NotMainLcore(_))))
                .join()
                .map_err(|_| "thread panicked")?
        };
        check!(off_main, "launch from a non-EAL thread accepted");
        Ok(())
    }

    fn launch_panic_is_contained(eal: &Eal) -> Result<(), String> {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let h = eal.launch(1, || panic!("worker bug")).map_err(e2s)?;
        let rc = h.join().map_err(e2s)?;
        std::panic::set_hook(prev);
        check!(rc == -1, "panicking lcore returned {rc}");
        // The lcore is usable again.
        check!(eal.launch(1, || 7).map_err(e2s)?.join().map_err(e2s)? == 7, "relaunch");
        Ok(())
    }

    /// A miniature worker, generic over the I/O: rx on (0, 0) of `wan`, wrap each frame in an
    /// 8-byte header and a 4-byte trailer (the shape of ESP encapsulation), tx on `lan`.
    /// Returns frames forwarded once `stop` is set; refused frames are retried, never lost.
    fn mini_worker<P: PacketIo>(io: &mut P, wan: u16, lan: u16, stop: &AtomicBool) -> u64 {
        let mut burst: Burst<P::Buf> = Burst::new();
        let mut forwarded = 0u64;
        while !stop.load(Ordering::Acquire) || !burst.is_empty() {
            if burst.is_empty() {
                io.rx_burst(wan, 0, &mut burst);
                for b in burst.iter_mut() {
                    let Some(h) = b.prepend(8) else { continue };
                    h.copy_from_slice(b"DGHDR\0\0\0");
                    if let Some(t) = b.append(4) {
                        t.copy_from_slice(b"TAIL");
                    }
                }
            }
            forwarded += io.tx_burst(lan, 0, &mut burst) as u64;
        }
        forwarded
    }

    fn wrapped(tag: u8, len: usize) -> Vec<u8> {
        let mut v = b"DGHDR\0\0\0".to_vec();
        v.extend(frame(tag, len));
        v.extend(b"TAIL");
        v
    }

    fn ethdev_packet_io(eal: &Eal) -> Result<(), String> {
        const FRAMES: usize = 5000;
        // WAN pair: (gen_wan, dut_wan); LAN pair: (dut_lan, gen_lan). The worker on lcore 1
        // owns the DUT queues; the generator (this thread) owns the other ends.
        let (gen_wan, dut_wan) = port::ring_pair(eal, "pw", 1, 1024).map_err(e2s)?;
        let (dut_lan, gen_lan) = port::ring_pair(eal, "pl", 1, 1024).map_err(e2s)?;
        let pool = Mempool::new(eal, "t_io", PoolConfig::new(4095)).map_err(e2s)?;
        let ports: Vec<Port> = [gen_wan, dut_wan, dut_lan, gen_lan]
            .iter()
            .map(|&id| Port::configure(eal, id, &PortConfig::default(), &pool))
            .collect::<Result<_, _>>()
            .map_err(e2s)?;
        for p in &ports {
            p.start().map_err(e2s)?;
        }
        let worker_io = EthdevIo::new(
            pool.clone(),
            vec![ports[1].take_rx(0).map_err(e2s)?],
            vec![ports[2].take_tx(0).map_err(e2s)?],
        )
        .map_err(e2s)?;
        check!(worker_io.mac(dut_lan) == Some([0; 6]) && worker_io.mac(gen_lan).is_none(), "macs");
        check!(worker_io.rx_queues().collect::<Vec<_>>() == vec![(dut_wan, 0)], "rx queues");
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let stop = stop.clone();
            let mut io = worker_io;
            eal.launch(1, move || mini_worker(&mut io, dut_wan, dut_lan, &stop) as i32).map_err(e2s)?
        };
        let mut gen = EthdevIo::new(
            pool.clone(),
            vec![ports[3].take_rx(0).map_err(e2s)?],
            vec![ports[0].take_tx(0).map_err(e2s)?],
        )
        .map_err(e2s)?;
        let mut sent = 0usize;
        let mut got = 0usize;
        let mut out: Burst<Mbuf> = Burst::new();
        let mut rx: Burst<Mbuf> = Burst::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while got < FRAMES && Instant::now() < deadline {
            while sent < FRAMES && !out.is_full() {
                let Some(mut m) = gen.alloc() else { break };
                let f = frame(sent as u8, 60 + sent % 200);
                m.append(f.len()).ok_or("append")?.copy_from_slice(&f);
                out.push(m);
                sent += 1;
            }
            gen.tx_burst(gen_wan, 0, &mut out);
            gen.rx_burst(gen_lan, 0, &mut rx);
            for m in rx.drain(..) {
                check!(m.data() == wrapped(got as u8, 60 + got % 200).as_slice(), "frame {got} differs");
                got += 1;
            }
        }
        stop.store(true, Ordering::Release);
        let forwarded = worker.join().map_err(e2s)?;
        check!(got == FRAMES, "generator received {got} of {FRAMES} (sent {sent})");
        check!(forwarded as usize == FRAMES, "worker forwarded {forwarded}");
        drop(out);
        check!(pool.in_use() == 0, "mbufs leaked: {}", pool.in_use());
        // The same worker code over the in-memory ports gives the same bytes.
        let net = MemNet::new(&MemConfig::default());
        for i in 0..3u8 {
            check!(net.inject(0, 0, &frame(i, 64)), "inject");
        }
        let stop = AtomicBool::new(false);
        let mut io = net.io();
        let (frames, forwarded) = std::thread::scope(|s| {
            let h = s.spawn(|| mini_worker(&mut io, 0, 1, &stop));
            let mut frames = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(10);
            while frames.len() < 3 && Instant::now() < deadline {
                frames.extend(net.drain_tx(1, 0));
            }
            stop.store(true, Ordering::Release);
            (frames, h.join())
        });
        check!(matches!(forwarded, Ok(3)), "in-memory worker forwarded {forwarded:?}");
        let want: Vec<Vec<u8>> = (0..3).map(|i| wrapped(i, 64)).collect();
        check!(frames == want, "in-memory output differs");
        Ok(())
    }
}
