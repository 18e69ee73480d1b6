//! The typed objects of the configuration, one struct per FortiOS table, with FortiOS defaults.
//!
//! Each struct is declared once with [`object!`]: for every CLI key, the field, its default and
//! the codec that parses `set` arguments and prints them back. The generated [`Object`] impl is
//! what the loader (`set`/`unset`), the printer (`show` prints keys that differ from the
//! default) and the nearest-name suggestions use, so the three cannot drift apart.

use std::net::Ipv4Addr;

use super::value::{
    base32_decode, dh_groups, display_vals, int_in, int_of, int_val, keyword_enum, names_from, names_val, one,
    p1_proposals, p2_proposals, parse_ipv4, secret_from, secret_val, string_from, string_val, Cipher, Flag, FromArgs,
    Hash, IpMask, Phase1Proposal, Phase2Proposal, Secret, Val, ValueError,
};

/// How the entries of a table are named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdKind {
    /// `edit "NAME"` with at most this many characters.
    Name(usize),
    /// `edit N`, a number; `edit 0` picks the next free one.
    Numeric,
    /// No entries: `set` directly in the block.
    Settings,
}

/// A table entry (or a settings block) that the generic loader and printer drive.
pub(crate) trait Object: Clone + PartialEq + std::fmt::Debug {
    /// The CLI path of the table, e.g. `vpn ipsec phase1-interface`.
    const TABLE: &'static str;
    /// Every key, in `show` order.
    const KEYS: &'static [&'static str];
    /// How entries are named.
    const ID: IdKind;
    /// A new entry with every default; `key` has been checked against `ID`.
    fn with_key(key: &str) -> Self;
    /// The entry name or id as text.
    fn key(&self) -> String;
    /// Applies `set KEY ARGS…`; `key` is one of `KEYS`. Empty `args` only come from `unset`.
    fn set(&mut self, key: &str, args: &[String]) -> Result<(), ValueError>;
    /// The current value of `key` as printable values.
    fn get(&self, key: &str) -> Vec<Val>;
}

/// Parses and prints one field type.
pub(crate) trait Codec<T> {
    /// `set` arguments to the value.
    fn parse(&self, args: &[String]) -> Result<T, ValueError>;
    /// The value to printable values.
    fn print(&self, v: &T) -> Vec<Val>;
}

/// Any type with [`FromArgs`] (keyword enums, flags, addresses).
pub(crate) struct Kw;
impl<T: FromArgs> Codec<T> for Kw {
    fn parse(&self, args: &[String]) -> Result<T, ValueError> {
        T::from_args(args)
    }
    fn print(&self, v: &T) -> Vec<Val> {
        v.to_vals()
    }
}

/// An integer in a range.
pub(crate) struct Int(pub(crate) u64, pub(crate) u64);
impl Codec<u32> for Int {
    fn parse(&self, args: &[String]) -> Result<u32, ValueError> {
        // Every range used is within u32.
        int_in(args, self.0, self.1).map(|v| v as u32)
    }
    fn print(&self, v: &u32) -> Vec<Val> {
        int_val(v)
    }
}

/// An integer from a fixed set.
pub(crate) struct IntOf(pub(crate) &'static [u64]);
impl Codec<u32> for IntOf {
    fn parse(&self, args: &[String]) -> Result<u32, ValueError> {
        int_of(args, self.0).map(|v| v as u32)
    }
    fn print(&self, v: &u32) -> Vec<Val> {
        int_val(v)
    }
}

/// A quoted string of bounded length.
pub(crate) struct Str(pub(crate) usize);
impl Codec<String> for Str {
    fn parse(&self, args: &[String]) -> Result<String, ValueError> {
        string_from(args, self.0)
    }
    fn print(&self, v: &String) -> Vec<Val> {
        string_val(v)
    }
}

/// A list of quoted names.
pub(crate) struct Names(pub(crate) usize);
impl Codec<Vec<String>> for Names {
    fn parse(&self, args: &[String]) -> Result<Vec<String>, ValueError> {
        names_from(args, self.0)
    }
    fn print(&self, v: &Vec<String>) -> Vec<Val> {
        names_val(v)
    }
}

/// A password or pre-shared key.
pub(crate) struct Sec;
impl Codec<Option<Secret>> for Sec {
    fn parse(&self, args: &[String]) -> Result<Option<Secret>, ValueError> {
        secret_from(args)
    }
    fn print(&self, v: &Option<Secret>) -> Vec<Val> {
        secret_val(v)
    }
}

/// A base32 token seed of at least 128 bits.
pub(crate) struct Seed;
impl Codec<Option<Secret>> for Seed {
    fn parse(&self, args: &[String]) -> Result<Option<Secret>, ValueError> {
        let s = secret_from(args)?;
        if let Some(seed) = &s {
            let bytes = base32_decode(seed.expose())
                .ok_or_else(|| ValueError::new(0, "the seed must be base32 (letters A-Z and digits 2-7)"))?;
            let len = bytes.len();
            zeroize::Zeroize::zeroize(&mut { bytes });
            // RFC 4226 §4 R6: "The length of the shared secret MUST be at least 128 bits."
            if len < 16 {
                return Err(ValueError::new(
                    0,
                    format!("the seed is {} bits; RFC 4226 requires at least 128 (26 base32 characters)", len * 8),
                ));
            }
        }
        Ok(s)
    }
    fn print(&self, v: &Option<Secret>) -> Vec<Val> {
        secret_val(v)
    }
}

/// A netmask stored as a prefix length.
pub(crate) struct Netmask;
impl Codec<u8> for Netmask {
    fn parse(&self, args: &[String]) -> Result<u8, ValueError> {
        let s = one(args)?;
        let m = u32::from(parse_ipv4(0, s)?);
        let len = m.leading_ones();
        if m.checked_shl(len).unwrap_or(0) != 0 {
            return Err(ValueError::new(0, format!("netmask {s} is not contiguous")));
        }
        Ok(len as u8)
    }
    fn print(&self, v: &u8) -> Vec<Val> {
        let m = IpMask { addr: Ipv4Addr::UNSPECIFIED, prefix_len: *v };
        vec![Val::Word(m.mask().to_string())]
    }
}

/// A subnet: host bits are cleared, as FortiOS stores address objects.
pub(crate) struct Subnet;
impl Codec<IpMask> for Subnet {
    fn parse(&self, args: &[String]) -> Result<IpMask, ValueError> {
        let m = IpMask::from_args(args)?;
        Ok(IpMask { addr: m.network(), prefix_len: m.prefix_len })
    }
    fn print(&self, v: &IpMask) -> Vec<Val> {
        v.to_vals()
    }
}

/// Phase-1 proposals.
pub(crate) struct P1;
impl Codec<Vec<Phase1Proposal>> for P1 {
    fn parse(&self, args: &[String]) -> Result<Vec<Phase1Proposal>, ValueError> {
        p1_proposals(args)
    }
    fn print(&self, v: &Vec<Phase1Proposal>) -> Vec<Val> {
        display_vals(v)
    }
}

/// Phase-2 proposals.
pub(crate) struct P2;
impl Codec<Vec<Phase2Proposal>> for P2 {
    fn parse(&self, args: &[String]) -> Result<Vec<Phase2Proposal>, ValueError> {
        p2_proposals(args)
    }
    fn print(&self, v: &Vec<Phase2Proposal>) -> Vec<Val> {
        display_vals(v)
    }
}

/// Diffie-Hellman groups.
pub(crate) struct Dh;
impl Codec<Vec<u16>> for Dh {
    fn parse(&self, args: &[String]) -> Result<Vec<u16>, ValueError> {
        dh_groups(args)
    }
    fn print(&self, v: &Vec<u16>) -> Vec<Val> {
        display_vals(v)
    }
}

/// The DPDK device a port is bound to: a PCI address or a virtual device string.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DpdkDevice {
    /// A PCI address, `0000:01:00.0` or `01:00.0`.
    Pci(String),
    /// A vdev argument such as `net_af_packet0,iface=veth-gw-wan`.
    Vdev(String),
}

impl DpdkDevice {
    /// The string given to the EAL (`-a` for PCI, `--vdev` for virtual devices).
    pub fn as_str(&self) -> &str {
        match self {
            DpdkDevice::Pci(s) | DpdkDevice::Vdev(s) => s,
        }
    }

    /// Parses a PCI address or a `net_…` vdev string.
    pub fn parse(s: &str) -> Option<Self> {
        if is_pci(s) {
            return Some(DpdkDevice::Pci(s.to_ascii_lowercase()));
        }
        let mut parts = s.split(',');
        let driver = parts.next()?;
        let driver_ok = driver.starts_with("net_")
            && driver.len() > 4
            && driver.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        let args_ok = parts.all(|kv| matches!(kv.split_once('='), Some((k, _)) if !k.is_empty()));
        (driver_ok && args_ok).then(|| DpdkDevice::Vdev(s.to_string()))
    }
}

fn is_pci(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    let parts: Vec<&str> = s.split(':').collect();
    let (bus, devfn) = match parts.as_slice() {
        [dom, bus, devfn] if hex(dom, 4) => (*bus, *devfn),
        [bus, devfn] => (*bus, *devfn),
        _ => return false,
    };
    matches!(devfn.split_once('.'), Some((dev, f)) if hex(bus, 2) && hex(dev, 2) && matches!(f, "0"|"1"|"2"|"3"|"4"|"5"|"6"|"7"))
}

/// The DPDK binding codec.
pub(crate) struct Dpdk;
impl Codec<Option<DpdkDevice>> for Dpdk {
    fn parse(&self, args: &[String]) -> Result<Option<DpdkDevice>, ValueError> {
        if args.is_empty() {
            return Ok(None);
        }
        let s = one(args)?;
        DpdkDevice::parse(s).map(Some).ok_or_else(|| {
            ValueError::new(
                0,
                format!("invalid DPDK device {s:?}; give a PCI address (0000:01:00.0) or a vdev (net_af_packet0,iface=eth1)"),
            )
        })
    }
    fn print(&self, v: &Option<DpdkDevice>) -> Vec<Val> {
        v.iter().map(|d| Val::Quoted(d.as_str().to_string())).collect()
    }
}

/// Entry key types: names and numeric ids.
pub(crate) trait KeyType {
    fn from_key(s: &str) -> Self;
    fn to_key(&self) -> String;
}
impl KeyType for String {
    fn from_key(s: &str) -> Self {
        s.to_string()
    }
    fn to_key(&self) -> String {
        self.clone()
    }
}
impl KeyType for u32 {
    fn from_key(s: &str) -> Self {
        s.parse().unwrap_or(0)
    }
    fn to_key(&self) -> String {
        self.to_string()
    }
}

/// Declares one table object: struct, defaults, and its [`Object`] impl.
macro_rules! object {
    (
        $(#[$m:meta])* $name:ident, $table:literal, $idkind:expr, $(#[$im:meta])* $idfield:ident : $idty:ty,
        { $( $(#[$fm:meta])* $key:literal => $field:ident : $ty:ty = $default:expr, $codec:expr; )* }
    ) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq)]
        pub struct $name {
            $(#[$im])* pub $idfield: $idty,
            $( $(#[$fm])* pub $field: $ty, )*
        }
        impl Object for $name {
            const TABLE: &'static str = $table;
            const KEYS: &'static [&'static str] = &[$($key),*];
            const ID: IdKind = $idkind;
            fn with_key(key: &str) -> Self {
                $name { $idfield: <$idty as KeyType>::from_key(key), $( $field: $default, )* }
            }
            fn key(&self) -> String {
                self.$idfield.to_key()
            }
            fn set(&mut self, key: &str, args: &[String]) -> Result<(), ValueError> {
                match key {
                    $( $key => { self.$field = Codec::<$ty>::parse(&$codec, args)?; } )*
                    _ => return Err(ValueError::new(0, format!("unknown key {key:?}"))),
                }
                Ok(())
            }
            fn get(&self, key: &str) -> Vec<Val> {
                match key {
                    $( $key => Codec::<$ty>::print(&$codec, &self.$field), )*
                    _ => Vec::new(),
                }
            }
        }
    };
}

fn p1(v: &[&str]) -> Vec<Phase1Proposal> {
    v.iter().filter_map(|s| Phase1Proposal::parse(s)).collect()
}

fn p2(v: &[&str]) -> Vec<Phase2Proposal> {
    v.iter().filter_map(|s| Phase2Proposal::parse(s)).collect()
}

const IP0: Ipv4Addr = Ipv4Addr::UNSPECIFIED;

keyword_enum! {
    /// `system interface` `type`.
    pub enum InterfaceType { Physical = "physical", Vlan = "vlan", Loopback = "loopback" }
}
keyword_enum! {
    /// `system interface` `role`.
    pub enum InterfaceRole { Lan = "lan", Wan = "wan", Dmz = "dmz", Undefined = "undefined" }
}
keyword_enum! {
    /// `system interface` `status`.
    pub enum LinkStatus { Up = "up", Down = "down" }
}

object! {
    /// `config system interface`: a port, its address and dialgate's binding to a DPDK device.
    Interface, "system interface", IdKind::Name(15),
    /// Interface name (`wan1`, `Internal`).
    name: String,
    {
        /// Virtual domain (only `root` is meaningful to dialgate).
        "vdom" => vdom: String = "root".into(), Str(31);
        /// Port type.
        "type" => kind: InterfaceType = InterfaceType::Physical, Kw;
        /// Address and netmask of the gateway on this port.
        "ip" => ip: IpMask = IpMask::ANY, Kw;
        /// Services answered on this port (dialgate answers `ping`).
        "allowaccess" => allowaccess: Vec<String> = Vec::new(), Names(31);
        /// Role: the WAN port receives IKE/ESP, the LAN port reaches the protected network.
        "role" => role: InterfaceRole = InterfaceRole::Undefined, Kw;
        /// Administrative status.
        "status" => status: LinkStatus = LinkStatus::Up, Kw;
        /// MTU.
        "mtu" => mtu: u32 = 1500, Int(576, 9216);
        /// VLAN id for `type vlan`.
        "vlanid" => vlanid: u32 = 0, Int(0, 4094);
        /// Parent port for `type vlan`.
        "interface" => parent: String = String::new(), Str(15);
        /// dialgate extension: the DPDK device (PCI address or vdev) this port is.
        "dpdk-device" => dpdk_device: Option<DpdkDevice> = None, Dpdk;
        /// Alias.
        "alias" => alias: String = String::new(), Str(25);
        /// Description.
        "description" => description: String = String::new(), Str(255);
    }
}

object! {
    /// `config router static`: a static route.
    StaticRoute, "router static", IdKind::Numeric,
    /// Route id.
    id: u32,
    {
        /// Destination prefix.
        "dst" => dst: IpMask = IpMask::ANY, Subnet;
        /// Next hop.
        "gateway" => gateway: Ipv4Addr = IP0, Kw;
        /// Outgoing interface.
        "device" => device: String = String::new(), Str(35);
        /// Administrative distance.
        "distance" => distance: u32 = 10, Int(1, 255);
        /// Enabled.
        "status" => status: Flag = Flag(true), Kw;
        /// Drop matching traffic.
        "blackhole" => blackhole: Flag = Flag(false), Kw;
        /// Comment.
        "comment" => comment: String = String::new(), Str(255);
    }
}

keyword_enum! {
    /// `firewall address` `type`.
    pub enum AddressType { Ipmask = "ipmask", Iprange = "iprange" }
}

object! {
    /// `config firewall address`: a subnet or an address range.
    Address, "firewall address", IdKind::Name(79),
    /// Address name.
    name: String,
    {
        /// Subnet or range.
        "type" => kind: AddressType = AddressType::Ipmask, Kw;
        /// Subnet for `ipmask`.
        "subnet" => subnet: IpMask = IpMask::ANY, Subnet;
        /// First address for `iprange`.
        "start-ip" => start_ip: Ipv4Addr = IP0, Kw;
        /// Last address for `iprange`.
        "end-ip" => end_ip: Ipv4Addr = IP0, Kw;
        /// Comment.
        "comment" => comment: String = String::new(), Str(255);
    }
}

object! {
    /// `config firewall addrgrp`: a group of addresses.
    AddrGrp, "firewall addrgrp", IdKind::Name(79),
    /// Group name.
    name: String,
    {
        /// Addresses and groups in the group.
        "member" => member: Vec<String> = Vec::new(), Names(79);
        /// Comment.
        "comment" => comment: String = String::new(), Str(255);
    }
}

/// One `tcp-portrange`/`udp-portrange` element: `DST[-DST_HI][:SRC[-SRC_HI]]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortSpec {
    /// Destination ports, inclusive.
    pub dst: (u16, u16),
    /// Source ports, inclusive (every port when not given).
    pub src: (u16, u16),
}

impl PortSpec {
    fn parse(arg: usize, s: &str) -> Result<PortSpec, ValueError> {
        let range = |part: &str| -> Result<(u16, u16), ValueError> {
            let bad = || {
                ValueError::new(
                    arg,
                    format!("invalid port range {s:?}; expected LOW[-HIGH][:SRCLOW[-SRCHIGH]] within 0-65535"),
                )
            };
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a, b),
                None => (part, part),
            };
            let lo: u16 = lo.parse().map_err(|_| bad())?;
            let hi: u16 = hi.parse().map_err(|_| bad())?;
            if lo > hi {
                return Err(ValueError::new(arg, format!("port range {s:?}: {lo} is above {hi}")));
            }
            Ok((lo, hi))
        };
        let (dst, src) = match s.split_once(':') {
            Some((d, sp)) => (range(d)?, range(sp)?),
            None => (range(s)?, (0, 65535)),
        };
        Ok(PortSpec { dst, src })
    }
}

impl std::fmt::Display for PortSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = |f: &mut std::fmt::Formatter<'_>, (lo, hi): (u16, u16)| {
            if lo == hi {
                write!(f, "{lo}")
            } else {
                write!(f, "{lo}-{hi}")
            }
        };
        r(f, self.dst)?;
        if self.src != (0, 65535) {
            f.write_str(":")?;
            r(f, self.src)?;
        }
        Ok(())
    }
}

/// Port ranges of a custom service.
pub(crate) struct Ports;
impl Codec<Vec<PortSpec>> for Ports {
    fn parse(&self, args: &[String]) -> Result<Vec<PortSpec>, ValueError> {
        args.iter().enumerate().map(|(i, a)| PortSpec::parse(i, a)).collect()
    }
    fn print(&self, v: &Vec<PortSpec>) -> Vec<Val> {
        display_vals(v)
    }
}

/// An optional integer in a range; `unset` makes it absent.
pub(crate) struct OptInt(pub(crate) u64, pub(crate) u64);
impl Codec<Option<u32>> for OptInt {
    fn parse(&self, args: &[String]) -> Result<Option<u32>, ValueError> {
        if args.is_empty() {
            return Ok(None);
        }
        // Every range used is within u32.
        int_in(args, self.0, self.1).map(|v| Some(v as u32))
    }
    fn print(&self, v: &Option<u32>) -> Vec<Val> {
        v.map(int_val).unwrap_or_default()
    }
}

keyword_enum! {
    /// `firewall service custom` `protocol`.
    pub enum ServiceProtocol { TcpUdpSctp = "TCP/UDP/SCTP", Icmp = "ICMP", Ip = "IP" }
}

object! {
    /// `config firewall service custom`: a service by protocol and ports (FortiOS's predefined
    /// services are built in; an entry of the same name replaces one).
    ServiceCustom, "firewall service custom", IdKind::Name(79),
    /// Service name.
    name: String,
    {
        /// Which fields apply: port ranges, ICMP type/code, or an IP protocol number.
        "protocol" => protocol: ServiceProtocol = ServiceProtocol::TcpUdpSctp, Kw;
        /// TCP destination (and optionally source) port ranges.
        "tcp-portrange" => tcp_portrange: Vec<PortSpec> = Vec::new(), Ports;
        /// UDP destination (and optionally source) port ranges.
        "udp-portrange" => udp_portrange: Vec<PortSpec> = Vec::new(), Ports;
        /// SCTP port ranges (kept for `show`; the data plane does not match SCTP).
        "sctp-portrange" => sctp_portrange: Vec<PortSpec> = Vec::new(), Ports;
        /// ICMP type for `protocol ICMP` (every type when unset).
        "icmptype" => icmptype: Option<u32> = None, OptInt(0, 255);
        /// ICMP code (kept for `show`; matching uses the type only).
        "icmpcode" => icmpcode: Option<u32> = None, OptInt(0, 255);
        /// IP protocol number for `protocol IP` (0: every protocol).
        "protocol-number" => protocol_number: u32 = 0, Int(0, 254);
        /// Category.
        "category" => category: String = String::new(), Str(63);
        /// Comment.
        "comment" => comment: String = String::new(), Str(255);
    }
}

keyword_enum! {
    /// `firewall policy` `action`.
    pub enum PolicyAction { Accept = "accept", Deny = "deny" }
}
keyword_enum! {
    /// `firewall policy` `logtraffic`.
    pub enum LogTraffic { All = "all", Utm = "utm", Disable = "disable" }
}

object! {
    /// `config firewall policy`: which traffic may pass between interfaces and tunnels.
    Policy, "firewall policy", IdKind::Numeric,
    /// Policy id.
    id: u32,
    {
        /// Policy name.
        "name" => name: String = String::new(), Str(35);
        /// Incoming interfaces or tunnels.
        "srcintf" => srcintf: Vec<String> = Vec::new(), Names(35);
        /// Outgoing interfaces or tunnels.
        "dstintf" => dstintf: Vec<String> = Vec::new(), Names(35);
        /// Source addresses.
        "srcaddr" => srcaddr: Vec<String> = Vec::new(), Names(79);
        /// Destination addresses.
        "dstaddr" => dstaddr: Vec<String> = Vec::new(), Names(79);
        /// Accept or deny.
        "action" => action: PolicyAction = PolicyAction::Deny, Kw;
        /// Schedule name.
        "schedule" => schedule: String = String::new(), Str(35);
        /// Services.
        "service" => service: Vec<String> = Vec::new(), Names(79);
        /// Source NAT to the outgoing interface address.
        "nat" => nat: Flag = Flag(false), Kw;
        /// User groups that must have authenticated.
        "groups" => groups: Vec<String> = Vec::new(), Names(35);
        /// Enabled.
        "status" => status: Flag = Flag(true), Kw;
        /// Logging.
        "logtraffic" => logtraffic: LogTraffic = LogTraffic::Utm, Kw;
        /// Comments.
        "comments" => comments: String = String::new(), Str(1023);
    }
}

keyword_enum! {
    /// `user local` `type` (dialgate checks local passwords only).
    pub enum UserType { Password = "password" }
}
keyword_enum! {
    /// `user local` `two-factor`.
    pub enum TwoFactor { Disable = "disable", Fortitoken = "fortitoken" }
}

object! {
    /// `config user local`: a user with a password and optionally a token.
    LocalUser, "user local", IdKind::Name(64),
    /// User name.
    name: String,
    {
        /// Authentication type.
        "type" => kind: UserType = UserType::Password, Kw;
        /// Second factor.
        "two-factor" => two_factor: TwoFactor = TwoFactor::Disable, Kw;
        /// Token serial (a `user fortitoken` entry).
        "fortitoken" => fortitoken: String = String::new(), Str(16);
        /// Address the token activation is mailed to.
        "email-to" => email_to: String = String::new(), Str(63);
        /// Password.
        "passwd" => passwd: Option<Secret> = None, Sec;
        /// Enabled.
        "status" => status: Flag = Flag(true), Kw;
    }
}

keyword_enum! {
    /// `user group` `group-type`.
    pub enum GroupType { Firewall = "firewall" }
}

object! {
    /// `config user group`: a group of local users.
    UserGroup, "user group", IdKind::Name(35),
    /// Group name.
    name: String,
    {
        /// Group type.
        "group-type" => group_type: GroupType = GroupType::Firewall, Kw;
        /// Member users.
        "member" => member: Vec<String> = Vec::new(), Names(64);
    }
}

keyword_enum! {
    /// `user fortitoken` `status`: a token authenticates only once `active`.
    pub enum TokenStatus { New = "new", Active = "active", Lock = "lock" }
}
keyword_enum! {
    /// TOTP hash (RFC 6238 §1.2 allows SHA-256 and SHA-512 besides SHA-1).
    pub enum TotpAlgorithm { Sha1 = "sha1", Sha256 = "sha256", Sha512 = "sha512" }
}

object! {
    /// `config user fortitoken`: a TOTP token (RFC 6238), named by its serial number.
    FortiToken, "user fortitoken", IdKind::Name(16),
    /// Serial number.
    serial: String,
    {
        /// `new` until activated; only `active` tokens authenticate; `lock` disables.
        "status" => status: TokenStatus = TokenStatus::New, Kw;
        /// The shared secret, base32.
        "seed" => seed: Option<Secret> = None, Seed;
        /// HMAC hash.
        "algorithm" => algorithm: TotpAlgorithm = TotpAlgorithm::Sha1, Kw;
        /// Code length.
        "digits" => digits: u32 = 6, IntOf(&[6, 8]);
        /// Time step in seconds.
        "period" => period: u32 = 30, IntOf(&[30, 60]);
        /// Comments.
        "comments" => comments: String = String::new(), Str(255);
    }
}

/// Settings blocks have no entry key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NoKey;
impl KeyType for NoKey {
    fn from_key(_: &str) -> Self {
        NoKey
    }
    fn to_key(&self) -> String {
        String::new()
    }
}

object! {
    /// `config user setting`: lock-out after repeated authentication failures.
    UserSetting, "user setting", IdKind::Settings,
    /// (settings block: no key)
    key: NoKey,
    {
        /// Consecutive failures that lock a user out.
        "auth-lockout-threshold" => auth_lockout_threshold: u32 = 3, Int(1, 10);
        /// Lock-out length in seconds.
        "auth-lockout-duration" => auth_lockout_duration: u32 = 60, Int(1, 86400);
    }
}

impl Default for UserSetting {
    fn default() -> Self {
        UserSetting::with_key("")
    }
}

keyword_enum! {
    /// `phase1-interface` `type`.
    pub enum Phase1Type { Static = "static", Dynamic = "dynamic" }
}
keyword_enum! {
    /// `phase1-interface` `peertype`.
    pub enum PeerType { Any = "any", One = "one", Dialup = "dialup", Peer = "peer", Peergrp = "peergrp" }
}
keyword_enum! {
    /// `phase1-interface` `authmethod`.
    pub enum AuthMethod { Psk = "psk", Signature = "signature" }
}
keyword_enum! {
    /// `phase1-interface` `dpd`.
    pub enum DpdMode { Disable = "disable", OnIdle = "on-idle", OnDemand = "on-demand" }
}
keyword_enum! {
    /// `phase1-interface` `nattraversal`.
    pub enum NatTraversal { Enable = "enable", Disable = "disable", Forced = "forced" }
}
keyword_enum! {
    /// `phase1-interface` `eap-identity`.
    pub enum EapIdentity { UseIdPayload = "use-id-payload", SendRequest = "send-request" }
}
keyword_enum! {
    /// `phase1-interface` `wizard-type` (informational).
    pub enum WizardType {
        /// Custom.
        Custom = "custom",
        /// FortiClient dial-up.
        DialupForticlient = "dialup-forticlient",
        /// iOS dial-up.
        DialupIos = "dialup-ios",
        /// Android dial-up.
        DialupAndroid = "dialup-android",
        /// Windows dial-up.
        DialupWindows = "dialup-windows",
        /// Cisco dial-up.
        DialupCisco = "dialup-cisco",
        /// Site to site.
        StaticFortigate = "static-fortigate",
        /// FortiGate dial-up.
        DialupFortigate = "dialup-fortigate",
    }
}
keyword_enum! {
    /// `phase1-interface` `remote-gw-match`: which peers may use the tunnel.
    pub enum RemoteGwMatch { Any = "any", Ipmask = "ipmask", Iprange = "iprange", Geography = "geography", Ztna = "ztna" }
}
keyword_enum! {
    /// `phase1-interface` `assign-ip-from`.
    pub enum AssignIpFrom { Range = "range", Usrgrp = "usrgrp", Dhcp = "dhcp", Name = "name" }
}
keyword_enum! {
    /// `phase1-interface` `dns-mode`.
    pub enum DnsMode { Manual = "manual", Auto = "auto" }
}

object! {
    /// `config vpn ipsec phase1-interface`: an IKE gateway (for dial-up: the remote-access server).
    Phase1, "vpn ipsec phase1-interface", IdKind::Name(15),
    /// Tunnel name (also its interface name).
    name: String,
    {
        /// `dynamic` for dial-up.
        "type" => kind: Phase1Type = Phase1Type::Static, Kw;
        /// The port IKE is received on.
        "interface" => interface: String = String::new(), Str(15);
        /// IKE version.
        "ike-version" => ike_version: u32 = 1, IntOf(&[1, 2]);
        /// Which peer identities are accepted.
        "peertype" => peertype: PeerType = PeerType::Any, Kw;
        /// One interface per dial-up instance.
        "net-device" => net_device: Flag = Flag(false), Kw;
        /// Configuration payload (address assignment).
        "mode-cfg" => mode_cfg: Flag = Flag(false), Kw;
        /// Peer address for `type static`.
        "remote-gw" => remote_gw: Ipv4Addr = IP0, Kw;
        /// IKE SA proposals.
        "proposal" => proposal: Vec<Phase1Proposal> = p1(&["aes128-sha256", "aes256-sha256", "aes128-sha1", "aes256-sha1"]), P1;
        /// Dead peer detection.
        "dpd" => dpd: DpdMode = DpdMode::OnDemand, Kw;
        /// DH groups.
        "dhgrp" => dhgrp: Vec<u16> = vec![14, 5], Dh;
        /// IKE SA lifetime in seconds.
        "keylife" => keylife: u32 = 86400, Int(120, 172800);
        /// How the gateway authenticates.
        "authmethod" => authmethod: AuthMethod = AuthMethod::Psk, Kw;
        /// Local certificates for `authmethod signature`.
        "certificate" => certificate: Vec<String> = Vec::new(), Names(35);
        /// EAP authentication of the client.
        "eap" => eap: Flag = Flag(false), Kw;
        /// How the EAP identity is obtained.
        "eap-identity" => eap_identity: EapIdentity = EapIdentity::UseIdPayload, Kw;
        /// Wizard template the tunnel came from.
        "wizard-type" => wizard_type: WizardType = WizardType::Custom, Kw;
        /// User group allowed to authenticate.
        "authusrgrp" => authusrgrp: String = String::new(), Str(35);
        /// Check the client's posture-server serial number.
        "ems-sn-check" => ems_sn_check: Flag = Flag(false), Kw;
        /// Which peers may connect.
        "remote-gw-match" => remote_gw_match: RemoteGwMatch = RemoteGwMatch::Any, Kw;
        /// Peer subnet for `remote-gw-match ipmask`.
        "remote-gw-subnet" => remote_gw_subnet: IpMask = IpMask::ANY, Subnet;
        /// First peer address for `remote-gw-match iprange`.
        "remote-gw-start-ip" => remote_gw_start_ip: Ipv4Addr = IP0, Kw;
        /// Last peer address for `remote-gw-match iprange`.
        "remote-gw-end-ip" => remote_gw_end_ip: Ipv4Addr = IP0, Kw;
        /// Peer country for `remote-gw-match geography`.
        "remote-gw-country" => remote_gw_country: String = String::new(), Str(2);
        /// Posture tags for `remote-gw-match ztna`.
        "remote-gw-ztna-tags" => remote_gw_ztna_tags: Vec<String> = Vec::new(), Names(79);
        /// Assign client addresses.
        "assign-ip" => assign_ip: Flag = Flag(true), Kw;
        /// Where client addresses come from.
        "assign-ip-from" => assign_ip_from: AssignIpFrom = AssignIpFrom::Range, Kw;
        /// First pool address.
        "ipv4-start-ip" => ipv4_start_ip: Ipv4Addr = IP0, Kw;
        /// Last pool address.
        "ipv4-end-ip" => ipv4_end_ip: Ipv4Addr = IP0, Kw;
        /// Netmask given to clients.
        "ipv4-netmask" => ipv4_netmask: u8 = 32, Netmask;
        /// Address object the pool comes from for `assign-ip-from name`.
        "ipv4-name" => ipv4_name: String = String::new(), Str(79);
        /// DNS servers given to clients: configured (`manual`) or the gateway's (`auto`).
        "dns-mode" => dns_mode: DnsMode = DnsMode::Manual, Kw;
        /// First DNS server.
        "ipv4-dns-server1" => ipv4_dns_server1: Ipv4Addr = IP0, Kw;
        /// Second DNS server.
        "ipv4-dns-server2" => ipv4_dns_server2: Ipv4Addr = IP0, Kw;
        /// Networks routed through the tunnel (split tunnelling).
        "ipv4-split-include" => ipv4_split_include: String = String::new(), Str(79);
        /// Let the client save its password.
        "save-password" => save_password: Flag = Flag(false), Kw;
        /// Pre-shared key.
        "psksecret" => psksecret: Option<Secret> = None, Sec;
        /// DPD retries.
        "dpd-retrycount" => dpd_retrycount: u32 = 3, Int(0, 10);
        /// DPD retry interval in seconds.
        "dpd-retryinterval" => dpd_retryinterval: u32 = 20, Int(1, 3600);
        /// NAT traversal.
        "nattraversal" => nattraversal: NatTraversal = NatTraversal::Enable, Kw;
        /// Seconds allowed for a negotiation (time to type a token code).
        "negotiate-timeout" => negotiate_timeout: u32 = 30, Int(1, 300);
        /// Comments.
        "comments" => comments: String = String::new(), Str(1023);
    }
}

object! {
    /// `config vpn ipsec phase2-interface`: Child SA settings of a tunnel.
    Phase2, "vpn ipsec phase2-interface", IdKind::Name(35),
    /// Phase-2 name.
    name: String,
    {
        /// The phase-1 tunnel.
        "phase1name" => phase1name: String = String::new(), Str(15);
        /// Child SA proposals.
        "proposal" => proposal: Vec<Phase2Proposal> = p2(&["aes128-sha1", "aes256-sha1", "aes128-sha256", "aes256-sha256", "aes128gcm", "aes256gcm", "chacha20poly1305"]), P2;
        /// Perfect forward secrecy.
        "pfs" => pfs: Flag = Flag(true), Kw;
        /// DH groups for PFS.
        "dhgrp" => dhgrp: Vec<u16> = vec![14, 5], Dh;
        /// Anti-replay.
        "replay" => replay: Flag = Flag(true), Kw;
        /// dialgate extension: anti-replay window in packets (RFC 6479).
        "replay-window" => replay_window: u32 = 1024, IntOf(&[64, 128, 256, 512, 1024, 2048, 4096]);
        /// Keepalive.
        "keepalive" => keepalive: Flag = Flag(false), Kw;
        /// Child SA lifetime in seconds.
        "keylifeseconds" => keylifeseconds: u32 = 43200, Int(120, 172800);
        /// Local selector.
        "src-subnet" => src_subnet: IpMask = IpMask::ANY, Subnet;
        /// Remote selector.
        "dst-subnet" => dst_subnet: IpMask = IpMask::ANY, Subnet;
        /// Comments.
        "comments" => comments: String = String::new(), Str(1023);
    }
}

object! {
    /// `config vpn certificate local`: a certificate of the gateway with its private key, for
    /// phase1 `authmethod signature` / `certificate`. FortiOS keeps the PEM text inline; dialgate
    /// reads it from files named by its extension keys.
    CertLocal, "vpn certificate local", IdKind::Name(35),
    /// Certificate name (what phase1 `certificate` refers to).
    name: String,
    {
        /// dialgate extension: PEM file with the certificate, then any intermediate CA
        /// certificates (leaf first). A relative path is relative to the working directory.
        "dialgate-cert-file" => cert_file: String = String::new(), Str(255);
        /// dialgate extension: PEM file with the unencrypted private key (ECDSA P-256 or RSA;
        /// PKCS#8, SEC1 or PKCS#1).
        "dialgate-key-file" => key_file: String = String::new(), Str(255);
        /// Comments.
        "comments" => comments: String = String::new(), Str(1023);
    }
}

object! {
    /// `config endpoint-control fctems`: a posture-server connector (EMS).
    Fctems, "endpoint-control fctems", IdKind::Name(35),
    /// Connector name, the prefix of its tags (`EMS1` in `EMS1_ZTNA_…`).
    name: String,
    {
        /// Enabled.
        "status" => status: Flag = Flag(true), Kw;
        /// Server host name or address.
        "server" => server: String = String::new(), Str(255);
        /// HTTPS port.
        "https-port" => https_port: u32 = 443, Int(1, 65535);
        /// Serial number the clients report (`FCTEMS…`).
        "serial-number" => serial_number: String = String::new(), Str(16);
        /// Tenant id.
        "tenant-id" => tenant_id: String = String::new(), Str(32);
        /// CA certificate (PEM file) that signs the server's certificate.
        "ca-cert" => ca_cert: String = String::new(), Str(255);
        /// Public key (PEM file) that verifies RS256 posture tokens sent by clients.
        "jwt-public-key" => jwt_public_key: String = String::new(), Str(255);
        /// Source address for connections to the server.
        "source-ip" => source_ip: Ipv4Addr = IP0, Kw;
        /// Seconds one request to the server may take; slower counts as unreachable.
        "call-timeout" => call_timeout: u32 = 30, Int(1, 180);
        /// Seconds between refreshes of the tag cache.
        "status-check-interval" => status_check_interval: u32 = 60, Int(1, 180);
        /// Seconds after the last successful refresh when the cache is stale.
        "out-of-sync-threshold" => out_of_sync_threshold: u32 = 180, Int(10, 3600);
    }
}

impl Phase1 {
    /// The first and last pool address when the pool is a plain range.
    pub fn pool_range(&self) -> Option<(Ipv4Addr, Ipv4Addr)> {
        (self.mode_cfg.0 && self.assign_ip.0 && self.assign_ip_from == AssignIpFrom::Range)
            .then_some((self.ipv4_start_ip, self.ipv4_end_ip))
    }
}

impl Cipher {
    /// Key length in bytes (without AEAD salt).
    pub fn key_len(self) -> usize {
        match self {
            Cipher::Aes128 | Cipher::Aes128Gcm => 16,
            Cipher::Aes192 => 24,
            Cipher::Aes256 | Cipher::Aes256Gcm | Cipher::ChaCha20Poly1305 => 32,
            Cipher::Null => 0,
        }
    }
}

impl Hash {
    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }
}
