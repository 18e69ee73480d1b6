//! `dialgate esp seal|open`: pcap in, pcap out, with an SA given on the command line.
//!
//! How a network engineer decrypts a capture with known keys, and how tests compare dialgate
//! with an independent ESP implementation. `seal` turns each cleartext IP packet into tunnel
//! ESP; `open` turns each ESP packet of the SA back into cleartext. Packets that cannot be
//! processed are counted by reason and left out of the output; the summary goes to stderr.

use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use dialgate_dataplane::buf::{HeadroomBuf, PacketBuf};
use dialgate_dataplane::esp::{inbound, outbound, Algorithm, Backend, DropReason, Transform};
use dialgate_dataplane::pcap::{self, LinkType};
use dialgate_dataplane::sa::{InboundSa, Lifetime, OutboundSa, Tunnel, UdpEncap};
use dialgate_dataplane::wire::ethernet;
use zeroize::Zeroizing;

const USAGE: &str = "usage: dialgate esp seal|open --spi SPI --transform NAME --key HEX [--auth-key HEX] \
[--seq N] [--esn] [--udp-encap [SPORT:DPORT]] [--tunnel-src IP --tunnel-dst IP] [--replay-window N] \
[--backend aws-lc|rustcrypto] IN.pcap OUT.pcap
transforms: aes128gcm aes256gcm chacha20poly1305 aes128-sha1 aes256-sha1 aes128-sha256 aes256-sha256
keys: AEADs take key||salt (e.g. 20 bytes for aes128gcm); CBC transforms take --key and --auth-key";

struct Opts {
    seal: bool,
    spi: u32,
    alg: Algorithm,
    key: Zeroizing<Vec<u8>>,
    auth_key: Zeroizing<Vec<u8>>,
    seq: u64,
    esn: bool,
    encap: Option<UdpEncap>,
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    window: u32,
    backend: Backend,
    input: String,
    output: String,
}

fn parse_u32(s: &str) -> anyhow::Result<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|_| anyhow!("not a number: {s:?}"))
}

fn parse_hex(flag: &str, s: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    hex::decode(s).map(Zeroizing::new).map_err(|_| anyhow!("{flag}: not a hex string"))
}

fn parse_args(args: &[String]) -> anyhow::Result<Opts> {
    let seal = match args.first().map(String::as_str) {
        Some("seal") => true,
        Some("open") => false,
        _ => bail!("{USAGE}"),
    };
    let mut o = Opts {
        seal,
        spi: 0,
        alg: Algorithm::Aes128Gcm,
        key: Zeroizing::new(Vec::new()),
        auth_key: Zeroizing::new(Vec::new()),
        seq: 1,
        esn: false,
        encap: None,
        src: None,
        dst: None,
        window: 4096,
        backend: Backend::default(),
        input: String::new(),
        output: String::new(),
    };
    let mut have_transform = false;
    let mut positional = Vec::new();
    let mut it = args[1..].iter().peekable();
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().cloned().ok_or_else(|| anyhow!("{name} needs a value"));
        match a.as_str() {
            "--spi" => o.spi = parse_u32(&val("--spi")?).context("--spi")?,
            "--transform" => {
                let v = val("--transform")?;
                o.alg = Algorithm::from_name(&v).ok_or_else(|| anyhow!("--transform: unknown {v:?}\n{USAGE}"))?;
                have_transform = true;
            }
            "--key" => o.key = parse_hex("--key", &val("--key")?)?,
            "--auth-key" => o.auth_key = parse_hex("--auth-key", &val("--auth-key")?)?,
            "--seq" => o.seq = val("--seq")?.parse().context("--seq")?,
            "--esn" => o.esn = true,
            "--udp-encap" => {
                let mut e = UdpEncap { local_port: 4500, remote_port: 4500 };
                if let Some(next) = it.peek() {
                    if let Some((s, d)) = next.split_once(':') {
                        e.local_port = s.parse().context("--udp-encap source port")?;
                        e.remote_port = d.parse().context("--udp-encap destination port")?;
                        it.next();
                    }
                }
                o.encap = Some(e);
            }
            "--tunnel-src" => o.src = Some(val("--tunnel-src")?.parse().context("--tunnel-src")?),
            "--tunnel-dst" => o.dst = Some(val("--tunnel-dst")?.parse().context("--tunnel-dst")?),
            "--replay-window" => o.window = val("--replay-window")?.parse().context("--replay-window")?,
            "--backend" => {
                o.backend = match val("--backend")?.as_str() {
                    "aws-lc" => Backend::AwsLc,
                    "rustcrypto" => Backend::RustCrypto,
                    v => bail!("--backend: unknown {v:?} (aws-lc, rustcrypto)"),
                }
            }
            f if f.starts_with("--") => bail!("unknown option {f}\n{USAGE}"),
            p => positional.push(p.to_string()),
        }
    }
    if !have_transform {
        bail!("--transform is required\n{USAGE}");
    }
    if o.spi == 0 {
        bail!("--spi is required and must not be 0");
    }
    let [input, output] =
        <[String; 2]>::try_from(positional).map_err(|_| anyhow!("need IN.pcap and OUT.pcap\n{USAGE}"))?;
    o.input = input;
    o.output = output;
    if o.key.len() != o.alg.enc_key_len() {
        let what = if o.alg.is_aead() { " (key followed by the 4-byte salt)" } else { "" };
        bail!("--key: {} needs {} bytes{what}, got {}", o.alg.name(), o.alg.enc_key_len(), o.key.len());
    }
    if o.auth_key.len() != o.alg.auth_key_len() {
        bail!("--auth-key: {} needs {} bytes, got {}", o.alg.name(), o.alg.auth_key_len(), o.auth_key.len());
    }
    if o.seal {
        match (o.src, o.dst) {
            (Some(s), Some(d)) if s.is_ipv4() == d.is_ipv4() => {}
            (Some(_), Some(_)) => {
                bail!("--tunnel-src and --tunnel-dst must be the same IP version")
            }
            _ => bail!("seal needs --tunnel-src and --tunnel-dst"),
        }
        if o.seq == 0 {
            bail!("--seq: sequence numbers start at 1");
        }
    }
    Ok(o)
}

/// Splits a record into (link header, IP packet).
fn split_link(lt: LinkType, data: &[u8]) -> Option<(&[u8], &[u8])> {
    match lt {
        LinkType::Ethernet => {
            let f = ethernet::Frame::new_checked(data).ok()?;
            matches!(f.ethertype(), ethernet::ethertype::IPV4 | ethernet::ethertype::IPV6)
                .then(|| data.split_at(ethernet::HEADER_LEN))
        }
        _ => Some((&data[..0], data)),
    }
}

/// Re-attaches the link header, fixing the EtherType to the new IP version.
fn join_link(lt: LinkType, link: &[u8], ip: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(link.len() + ip.len());
    v.extend_from_slice(link);
    if lt == LinkType::Ethernet {
        let t =
            if ip.first().map(|b| b >> 4) == Some(6) { ethernet::ethertype::IPV6 } else { ethernet::ethertype::IPV4 };
        v[12..14].copy_from_slice(&t.to_be_bytes());
    }
    v.extend_from_slice(ip);
    v
}

pub(crate) fn main(args: &[String]) -> anyhow::Result<ExitCode> {
    let o = parse_args(args)?;
    let file = std::fs::read(&o.input).with_context(|| format!("{}: cannot read", o.input))?;
    let cap = pcap::parse(&file).map_err(|e| anyhow!("{}: {e}", o.input))?;
    let out_lt = match (cap.link_type, o.seal) {
        // Raw per-version link types cannot hold the other version after (de)capsulation.
        (LinkType::Ipv4 | LinkType::Ipv6, _) => LinkType::Raw,
        (lt, _) => lt,
    };
    let out_file = std::fs::File::create(&o.output).with_context(|| format!("{}: cannot create", o.output))?;
    let mut w = pcap::Writer::new(std::io::BufWriter::new(out_file), out_lt)?;
    let transform = Transform::new(o.alg, o.backend, &o.key, &o.auth_key).map_err(|e| anyhow!("{e}"))?;
    let mut drops = [0u64; DropReason::COUNT];
    let mut ok = 0u64;
    let mut buf = HeadroomBuf::with_capacity(HeadroomBuf::DEFAULT_HEADROOM, 70_000);
    if o.seal {
        let (src, dst) = (o.src.unwrap_or(IpAddr::from([0, 0, 0, 0])), o.dst.unwrap_or(IpAddr::from([0, 0, 0, 0])));
        let tunnel = Tunnel { local: src, remote: dst, encap: o.encap };
        let sa = OutboundSa::with_seq(o.spi, transform, tunnel, o.esn, Lifetime::default(), o.seq - 1);
        for r in &cap.records {
            let Some((link, ip)) = split_link(cap.link_type, r.data) else {
                drops[DropReason::Unhandled as usize] += 1;
                continue;
            };
            buf.reset(ip);
            match outbound::encap(&sa, &mut buf) {
                Ok(_) => {
                    w.write(r.ts_sec, r.ts_usec, &join_link(cap.link_type, link, buf.data()))?;
                    ok += 1;
                }
                Err(e) => drops[e.reason as usize] += 1,
            }
        }
    } else {
        let mut sa = InboundSa::new(o.spi, transform, o.esn, o.window, Lifetime::default());
        for r in &cap.records {
            let Some((link, ip)) = split_link(cap.link_type, r.data) else {
                drops[DropReason::Unhandled as usize] += 1;
                continue;
            };
            buf.reset(ip);
            let res = inbound::parse(buf.data()).and_then(|loc| {
                if loc.spi != o.spi {
                    return Err(DropReason::UnknownSpi);
                }
                inbound::decap(&mut sa, &mut buf, &loc)
            });
            match res {
                Ok(_) => {
                    w.write(r.ts_sec, r.ts_usec, &join_link(cap.link_type, link, buf.data()))?;
                    ok += 1;
                }
                Err(reason) => drops[reason as usize] += 1,
            }
        }
    }
    w.finish()?;
    let verb = if o.seal { "sealed" } else { "opened" };
    let mut summary = format!("{verb} {ok} of {} packets", cap.records.len());
    for r in DropReason::ALL {
        if drops[r as usize] > 0 {
            summary.push_str(&format!(" {}={}", r.name(), drops[r as usize]));
        }
    }
    eprintln!("{summary}");
    let icv = drops[DropReason::BadIcv as usize];
    if !o.seal && ok == 0 && icv > 0 {
        bail!("no packet of SPI {:#010x} verified ({icv} failed the integrity check): wrong key or transform?", o.spi);
    }
    Ok(ExitCode::SUCCESS)
}
