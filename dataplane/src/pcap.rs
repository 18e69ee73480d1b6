//! Classic libpcap capture files: parse from bytes, write to any `io::Write`.
//!
//! Used by the `dialgate esp seal|open` tools, tests, and the pcap-writing port wrapper.
//! Both byte orders and both timestamp resolutions are read; files are written little-endian
//! with microseconds. Per-packet problems are errors with the record's index.

use std::io::{self, Write};

/// Link types dialgate reads and writes (tcpdump.org LINKTYPE_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// Ethernet (1).
    Ethernet,
    /// Raw IP, version from the first nibble (101).
    Raw,
    /// Raw IPv4 (228).
    Ipv4,
    /// Raw IPv6 (229).
    Ipv6,
}

impl LinkType {
    /// The LINKTYPE number.
    pub fn number(self) -> u32 {
        match self {
            LinkType::Ethernet => 1,
            LinkType::Raw => 101,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
        }
    }

    fn from_number(n: u32) -> Option<Self> {
        Some(match n {
            1 => LinkType::Ethernet,
            101 | 12 | 14 => LinkType::Raw,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            _ => return None,
        })
    }
}

/// What is wrong with a capture file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PcapError {
    /// Not a pcap file (pcapng is not supported).
    #[error("not a pcap file (bad magic {0:#010x}; pcapng is not supported, convert with `editcap -F pcap`)")]
    Magic(u32),
    /// File shorter than its 24-byte header.
    #[error("pcap file header truncated")]
    Header,
    /// A link type we cannot interpret.
    #[error("unsupported link type {0} (Ethernet, raw IP, IPv4 and IPv6 are supported)")]
    LinkType(u32),
    /// A record header or its data runs past the end of the file.
    #[error("packet record {0} truncated")]
    Record(usize),
}

/// One captured packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// Seconds since the epoch.
    pub ts_sec: u32,
    /// Microseconds (nanosecond files are converted).
    pub ts_usec: u32,
    /// The bytes as captured.
    pub data: &'a [u8],
}

/// A parsed capture: link type and records borrowing the file's bytes.
#[derive(Debug)]
pub struct Capture<'a> {
    /// Link type of every record.
    pub link_type: LinkType,
    /// The records in file order.
    pub records: Vec<Record<'a>>,
}

/// Parses a whole pcap file.
pub fn parse(file: &[u8]) -> Result<Capture<'_>, PcapError> {
    if file.len() < 24 {
        return Err(PcapError::Header);
    }
    let magic_le = u32::from_le_bytes([file[0], file[1], file[2], file[3]]);
    let (le, nanos) = match magic_le {
        0xa1b2_c3d4 => (true, false),
        0xa1b2_3c4d => (true, true),
        0xd4c3_b2a1 => (false, false),
        0x4d3c_b2a1 => (false, true),
        m => return Err(PcapError::Magic(m)),
    };
    let rd = |at: usize| -> u32 {
        let b = [file[at], file[at + 1], file[at + 2], file[at + 3]];
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let lt = rd(20) & 0x0fff_ffff;
    let link_type = LinkType::from_number(lt).ok_or(PcapError::LinkType(lt))?;
    let mut records = Vec::new();
    let mut at = 24;
    while at < file.len() {
        let idx = records.len();
        if file.len() - at < 16 {
            return Err(PcapError::Record(idx));
        }
        let (sec, sub, incl) = (rd(at), rd(at + 4), rd(at + 8) as usize);
        let start = at + 16;
        let end = start.checked_add(incl).filter(|&e| e <= file.len()).ok_or(PcapError::Record(idx))?;
        records.push(Record { ts_sec: sec, ts_usec: if nanos { sub / 1000 } else { sub }, data: &file[start..end] });
        at = end;
    }
    Ok(Capture { link_type, records })
}

/// Writes a pcap file record by record.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
}

impl<W: Write> Writer<W> {
    /// Writes the file header.
    pub fn new(mut out: W, link_type: LinkType) -> io::Result<Self> {
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        h[16..20].copy_from_slice(&65535u32.to_le_bytes());
        h[20..24].copy_from_slice(&link_type.number().to_le_bytes());
        out.write_all(&h)?;
        Ok(Self { out })
    }

    /// Appends one packet.
    pub fn write(&mut self, ts_sec: u32, ts_usec: u32, data: &[u8]) -> io::Result<()> {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&ts_sec.to_le_bytes());
        h[4..8].copy_from_slice(&ts_usec.to_le_bytes());
        h[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(data.len() as u32).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(data)
    }

    /// Flushes and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_parse() {
        let mut w = Writer::new(Vec::new(), LinkType::Ethernet).unwrap();
        w.write(1, 2, &[1, 2, 3]).unwrap();
        w.write(4, 5, &[]).unwrap();
        let bytes = w.finish().unwrap();
        let c = parse(&bytes).unwrap();
        assert_eq!(c.link_type, LinkType::Ethernet);
        assert_eq!(
            c.records,
            vec![Record { ts_sec: 1, ts_usec: 2, data: &[1, 2, 3] }, Record { ts_sec: 4, ts_usec: 5, data: &[] }]
        );
    }

    #[test]
    fn big_endian_nanosecond_files() {
        let mut f = vec![0xa1, 0xb2, 0x3c, 0x4d, 0, 2, 0, 4];
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&65535u32.to_be_bytes());
        f.extend_from_slice(&101u32.to_be_bytes());
        f.extend_from_slice(&7u32.to_be_bytes());
        f.extend_from_slice(&5000u32.to_be_bytes());
        f.extend_from_slice(&1u32.to_be_bytes());
        f.extend_from_slice(&1u32.to_be_bytes());
        f.push(0x45);
        let c = parse(&f).unwrap();
        assert_eq!(c.link_type, LinkType::Raw);
        assert_eq!(c.records[0], Record { ts_sec: 7, ts_usec: 5, data: &[0x45] });
    }

    #[test]
    fn errors_are_specific() {
        assert_eq!(parse(&[0; 10]).unwrap_err(), PcapError::Header);
        assert!(matches!(parse(&[0; 24]).unwrap_err(), PcapError::Magic(0)));
        let mut w = Writer::new(Vec::new(), LinkType::Ipv4).unwrap();
        w.write(0, 0, &[1, 2, 3, 4]).unwrap();
        let mut bytes = w.finish().unwrap();
        bytes.pop();
        assert_eq!(parse(&bytes).unwrap_err(), PcapError::Record(0));
        bytes[20] = 147;
        assert_eq!(parse(&bytes).unwrap_err(), PcapError::LinkType(147));
    }
}
