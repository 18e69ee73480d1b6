//! `dialgate-bench pcap`: traffic for a hardware generator (pktgen-dpdk) for a set of SAs.
//!
//! Writes, for `tunnels` SA pairs with deterministic keys (the same [`crate::keys`] the
//! benches use; tunnel i has virtual address 10.128.0.0 + i):
//! - `cleartext.pcap`: Ethernet frames LAN host 10.0.0.5 → each tunnel's virtual address (what
//!   the gateway seals), round-robin over the tunnels;
//! - `esp.pcap`: ESP-in-UDP (4500) frames from the clients (198.51.100.7:61000) to the gateway
//!   192.0.2.1, sealed with each tunnel's inbound SA, sequence numbers 1…n per tunnel (what
//!   the gateway opens; replayed by pktgen they fall behind the replay window after one loop,
//!   so loop counts must stay at one or the gateway's window must be large);
//! - `sas.json`: SPI, transform and key of every SA, in the form `dialgate esp` takes
//!   (`--transform aes128gcm --key HEX`).

use std::io::BufWriter;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use dialgate_dataplane::pcap::{LinkType, Writer};
use dialgate_dataplane::sa::{Lifetime, OutboundSa, Tunnel};
use dialgate_dataplane::worker::frames;

use crate::{encap, inner, keys, transform, Options, CLIENT, GW_WAN, HOST};

/// Gateway WAN MAC the frames are addressed to (set the port's MAC or rewrite in pktgen).
pub const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// Source MAC of the generated frames.
pub const GEN_MAC: [u8; 6] = [0x02, 0xee, 0, 0, 0, 0xfe];

/// The inbound SPI of tunnel `i` in the pcaps.
pub fn spi_of(i: usize) -> u32 {
    0x0100_0000 + i as u32
}

/// Writes the three files into `dir`; `packets` frames each, sizes cycling over `sizes`.
pub fn write(dir: &Path, o: &Options, tunnels: usize, sizes: &[usize], packets: usize) -> anyhow::Result<Vec<PathBuf>> {
    let tunnels = tunnels.max(1);
    let sizes = if sizes.is_empty() { &[64][..] } else { sizes };
    let clear_p = dir.join("cleartext.pcap");
    let esp_p = dir.join("esp.pcap");
    let sas_p = dir.join("sas.json");
    let mut clear = Writer::new(BufWriter::new(std::fs::File::create(&clear_p)?), LinkType::Ethernet)?;
    let mut esp = Writer::new(BufWriter::new(std::fs::File::create(&esp_p)?), LinkType::Ethernet)?;
    let mut sas = Vec::new();
    let mut out_sas = Vec::new();
    for i in 0..tunnels {
        let seed = (i % 251) as u8;
        let ct = Tunnel { local: CLIENT.into(), remote: GW_WAN.into(), encap: encap(61000, 4500) };
        out_sas.push(OutboundSa::new(spi_of(i), transform(o, seed), ct, false, Lifetime::default()));
        let (e, _) = keys(o.algorithm, seed);
        sas.push(serde_json::json!({
            "tunnel": i,
            "vip": Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + i as u32).to_string(),
            "direction": "client→gateway (gateway inbound)",
            "spi": format!("0x{:08x}", spi_of(i)),
            "transform": o.algorithm.name(),
            "key": hex(&e),
            "udp_encap": "61000:4500",
        }));
    }
    for j in 0..packets {
        let i = j % tunnels;
        let vip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + i as u32);
        let size = sizes[j % sizes.len()];
        let (sec, usec) = ((j / 1_000_000) as u32, (j % 1_000_000) as u32);
        clear.write(sec, usec, &frames::ethernet(GW_MAC, GEN_MAC, 0x0800, &inner(HOST, vip, size)))?;
        let f = frames::seal_frame(&out_sas[i], GW_MAC, GEN_MAC, &inner(vip, HOST, size))
            .map_err(|r| anyhow::anyhow!("seal: {r:?}"))?;
        esp.write(sec, usec, &f)?;
    }
    drop(clear);
    drop(esp);
    std::fs::write(&sas_p, serde_json::to_string_pretty(&sas)?)?;
    Ok(vec![clear_p, esp_p, sas_p])
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialgate_dataplane::esp::{Algorithm, Backend};

    #[test]
    fn writes_pcaps_with_the_right_counts() {
        let dir = std::env::temp_dir().join(format!("dialgate-bench-pcap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let o = Options { algorithm: Algorithm::Aes128Gcm, backend: Backend::AwsLc, packets: 0 };
        let files = write(&dir, &o, 3, &[64, 1420], 10).unwrap();
        let clear = std::fs::read(&files[0]).unwrap();
        // 24-byte file header, then 10 records of 16 + 14 + size bytes (5 × 64, 5 × 1420).
        assert_eq!(clear.len(), 24 + 10 * (16 + 14) + 5 * 64 + 5 * 1420);
        let esp = std::fs::read(&files[1]).unwrap();
        assert!(esp.len() > clear.len());
        let sas: serde_json::Value = serde_json::from_slice(&std::fs::read(&files[2]).unwrap()).unwrap();
        assert_eq!(sas.as_array().unwrap().len(), 3);
        assert_eq!(sas[2]["spi"], "0x01000002");
        assert_eq!(sas[0]["key"].as_str().unwrap().len(), 40);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
