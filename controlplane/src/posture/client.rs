//! The FortiClient data of the first IKE_AUTH: the FORTICLIENT_CONNECT notify and the tag token.
//!
//! How to use it: take the private notifies of [`dialgate_ike::responder::ClientInfo`], find
//! [`FORTICLIENT_CONNECT`] and call [`ClientData::parse`] on its data; find [`ZTNA_TAG_TOKEN`] and
//! hand its data to [`super::jwt::verify`]. Nothing here panics on input: malformed data is a
//! [`ClientDataError`] with its reason.
//!
//! ## Wire format of FORTICLIENT_CONNECT (dialgate's reading, see `controlplane/posture/API.md`)
//! The notify data is text of `KEY=VALUE` fields: `VER FCTVER UID IP MAC HOST USER OSVER
//! REG_STATUS EMSSN EMSID FCTTAGS`. A field starts with an upper-case key (`[A-Z][A-Z0-9_]*`)
//! and `=` at the start of the data or right after a separator; its value runs up to the next
//! field. Separators are NUL, newline, carriage return, tab, space, `;` and `,`, so every form
//! clients were seen to use parses: one field a line (what `dialgate connect` sends), NUL
//! separated, or space/`;`/`,` separated. Trailing separators of a value are dropped; values may
//! contain spaces (`OSVER=Microsoft Windows 8.0 , 64-bit (build 9200)`). `MAC` is a `;`-separated
//! list. Unknown keys are kept for the log and otherwise ignored.

use std::net::Ipv4Addr;

/// FORTICLIENT_CONNECT: the endpoint's identity and registration (private notify, as FortiClient
/// sends it).
pub const FORTICLIENT_CONNECT: u16 = 0xF100;
/// ZTNA_TAG: an RS256 JWT carrying the endpoint's posture tags (dialgate's private notify number).
pub const ZTNA_TAG_TOKEN: u16 = 0xF101;
/// Sent with AUTHENTICATION_FAILED when the posture check refuses; data is the reason as text.
pub const ZTNA_TAGS_CHECK_FAILURE: u16 = 0xF102;
/// EMS_ZTNA_TAGS_CHECK_SUCCESS: sent in the last IKE_AUTH response when the check passed; data is
/// the matched tag.
pub const ZTNA_TAGS_CHECK_SUCCESS: u16 = 0xF103;

/// Longest FORTICLIENT_CONNECT data accepted.
pub const MAX_CLIENT_DATA: usize = 4096;

/// Why FORTICLIENT_CONNECT data was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientDataError {
    /// Empty notify data.
    #[error("FortiClient data is empty")]
    Empty,
    /// Longer than [`MAX_CLIENT_DATA`].
    #[error("FortiClient data is too long ({0} bytes)")]
    TooLong(usize),
    /// Not UTF-8 text.
    #[error("FortiClient data is not text")]
    NotText,
    /// A control character other than a separator.
    #[error("FortiClient data has a control character at byte {0}")]
    ControlChar(usize),
    /// Text before the first `KEY=`.
    #[error("FortiClient data does not start with KEY=VALUE")]
    NoField,
    /// The same key twice.
    #[error("FortiClient data repeats {0}")]
    Duplicate(String),
    /// A required key is missing.
    #[error("FortiClient data has no {0}")]
    Missing(&'static str),
    /// A value that does not parse.
    #[error("FortiClient data: bad {key} value {value:?}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// The value, shortened.
        value: String,
    },
}

/// The parsed FORTICLIENT_CONNECT data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientData {
    /// `VER`: data format version.
    pub ver: String,
    /// `FCTVER`: client version.
    pub fctver: String,
    /// `UID`: the endpoint's unique id (the one its tokens name).
    pub uid: String,
    /// `IP`: the endpoint's own address (not the NAT-mapped one).
    pub ip: Option<Ipv4Addr>,
    /// `MAC`: the endpoint's MAC addresses.
    pub macs: Vec<String>,
    /// `HOST`: host name.
    pub host: String,
    /// `USER`: the logged-in OS user.
    pub user: String,
    /// `OSVER`: operating system.
    pub osver: String,
    /// `REG_STATUS`: registration status as sent.
    pub reg_status: String,
    /// `EMSSN`: serial number of the managing posture server.
    pub emssn: String,
    /// `EMSID`: tenant id of the managing posture server.
    pub emsid: String,
    /// `FCTTAGS=1`: the client sends tag tokens.
    pub fcttags: bool,
    /// Keys not listed above, in order.
    pub other: Vec<(String, String)>,
}

fn is_sep(b: u8) -> bool {
    matches!(b, 0 | b'\n' | b'\r' | b'\t' | b' ' | b';' | b',')
}

/// If a field key starts at `i` (`[A-Z][A-Z0-9_]*=`), the index of its `=`.
fn key_at(s: &[u8], i: usize) -> Option<usize> {
    if !s.get(i)?.is_ascii_uppercase() {
        return None;
    }
    let mut j = i + 1;
    while let Some(&b) = s.get(j) {
        match b {
            b'=' => return Some(j),
            b'A'..=b'Z' | b'0'..=b'9' | b'_' => j += 1,
            _ => return None,
        }
    }
    None
}

fn short(v: &str) -> String {
    v.chars().take(40).collect()
}

impl ClientData {
    /// Parses the data of a FORTICLIENT_CONNECT notify; `UID` is required.
    pub fn parse(data: &[u8]) -> Result<Self, ClientDataError> {
        if data.len() > MAX_CLIENT_DATA {
            return Err(ClientDataError::TooLong(data.len()));
        }
        let text = std::str::from_utf8(data).map_err(|_| ClientDataError::NotText)?;
        if let Some(i) = text.bytes().position(|b| b.is_ascii_control() && !is_sep(b)) {
            return Err(ClientDataError::ControlChar(i));
        }
        let s = text.as_bytes();
        let start = s.iter().position(|b| !is_sep(*b)).ok_or(ClientDataError::Empty)?;
        if key_at(s, start).is_none() {
            return Err(ClientDataError::NoField);
        }
        // Field starts: a key at the start or right after a separator.
        let mut starts = vec![start];
        for i in start + 1..s.len() {
            if is_sep(s[i - 1]) && key_at(s, i).is_some() {
                starts.push(i);
            }
        }
        let mut out = ClientData::default();
        let mut seen: Vec<&str> = Vec::new();
        for (n, &st) in starts.iter().enumerate() {
            let end = starts.get(n + 1).copied().unwrap_or(s.len());
            let eq = key_at(s, st).ok_or(ClientDataError::NoField)?;
            // Both bounds are ASCII positions, so these are char boundaries.
            let key = &text[st..eq];
            let value = text[eq + 1..end].trim_end_matches(|c: char| c.is_ascii() && is_sep(c as u8));
            if seen.contains(&key) {
                return Err(ClientDataError::Duplicate(key.to_string()));
            }
            seen.push(key);
            out.set(key, value)?;
        }
        if out.uid.is_empty() {
            return Err(ClientDataError::Missing("UID"));
        }
        Ok(out)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), ClientDataError> {
        let v = value.to_string();
        match key {
            "VER" => self.ver = v,
            "FCTVER" => self.fctver = v,
            "UID" => {
                if value.is_empty()
                    || value.len() > 64
                    || !value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    return Err(ClientDataError::BadValue { key: "UID", value: short(value) });
                }
                self.uid = v;
            }
            "IP" => {
                let ip = value.parse().map_err(|_| ClientDataError::BadValue { key: "IP", value: short(value) })?;
                self.ip = Some(ip);
            }
            "MAC" => {
                self.macs = value.split(';').map(str::trim).filter(|m| !m.is_empty()).map(str::to_string).collect();
            }
            "HOST" => self.host = v,
            "USER" => self.user = v,
            "OSVER" => self.osver = v,
            "REG_STATUS" => self.reg_status = v,
            "EMSSN" => self.emssn = v,
            "EMSID" => self.emsid = v,
            "FCTTAGS" => {
                self.fcttags = match value {
                    "1" => true,
                    "0" | "" => false,
                    _ => return Err(ClientDataError::BadValue { key: "FCTTAGS", value: short(value) }),
                }
            }
            _ => self.other.push((key.to_string(), v)),
        }
        Ok(())
    }

    /// The data as `dialgate connect` sends it: one `KEY=VALUE` a line, empty fields left out.
    pub fn encode(&self) -> Vec<u8> {
        let ip = self.ip.map(|a| a.to_string()).unwrap_or_default();
        let macs = self.macs.join(";");
        let fields: [(&str, &str); 12] = [
            ("VER", &self.ver),
            ("FCTVER", &self.fctver),
            ("UID", &self.uid),
            ("IP", &ip),
            ("MAC", &macs),
            ("HOST", &self.host),
            ("USER", &self.user),
            ("OSVER", &self.osver),
            ("REG_STATUS", &self.reg_status),
            ("EMSSN", &self.emssn),
            ("EMSID", &self.emsid),
            ("FCTTAGS", if self.fcttags { "1" } else { "" }),
        ];
        let mut out = String::new();
        for (k, v) in fields.iter().copied().chain(self.other.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
            if !v.is_empty() {
                out.push_str(k);
                out.push('=');
                out.push_str(v);
                out.push('\n');
            }
        }
        out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The FCT data of seed 002, Example 2, as the debug line shows it (separators flattened).
    const SEED: &str = "VER=1 FCTVER=7.4.5.1949 UID=F8A6AFF3531843B4972CBDBEEEB30E3C IP=10.160.1.197 \
        MAC=00-0c-29-2c-4d-d7;00-0c-29-2c-4d-e1;00-0c-29-2c-4d-eb; HOST=DESKTOP-EMS-TAG-PH2 USER=tester \
        OSVER=Microsoft Windows 8.0 , 64-bit (build 9200) REG_STATUS=0 EMSSN=FCTEMS8826000120 \
        EMSID=00000000000000000000000000000000 FCTTAGS=1";

    #[test]
    fn seed_data_parses() {
        let d = ClientData::parse(SEED.as_bytes()).unwrap();
        assert_eq!(d.uid, "F8A6AFF3531843B4972CBDBEEEB30E3C");
        assert_eq!(d.ip, Some(Ipv4Addr::new(10, 160, 1, 197)));
        assert_eq!(d.macs, vec!["00-0c-29-2c-4d-d7", "00-0c-29-2c-4d-e1", "00-0c-29-2c-4d-eb"]);
        assert_eq!(d.osver, "Microsoft Windows 8.0 , 64-bit (build 9200)");
        assert_eq!(d.emssn, "FCTEMS8826000120");
        assert_eq!(d.fctver, "7.4.5.1949");
        assert_eq!(d.host, "DESKTOP-EMS-TAG-PH2");
        assert!(d.fcttags);
    }

    #[test]
    fn every_separator_form_parses_alike() {
        let base = ClientData::parse(b"UID=ABC IP=10.0.0.1 EMSSN=FCTEMS1").unwrap();
        for sep in ["\0", "\n", "\r\n", ";", ",", "\t", " ; "] {
            let text = format!("UID=ABC{sep}IP=10.0.0.1{sep}EMSSN=FCTEMS1{sep}");
            assert_eq!(ClientData::parse(text.as_bytes()).unwrap(), base, "separator {sep:?}");
        }
        assert_eq!(ClientData::parse(&base.encode()).unwrap(), base);
        let d = ClientData::parse(SEED.as_bytes()).unwrap();
        assert_eq!(ClientData::parse(&d.encode()).unwrap(), d);
    }

    #[test]
    fn malformed_data_is_refused_with_a_reason() {
        let e = |b: &[u8]| ClientData::parse(b).unwrap_err();
        assert_eq!(e(b""), ClientDataError::Empty);
        assert_eq!(e(b" ;\n"), ClientDataError::Empty);
        assert_eq!(e(b"hello UID=1"), ClientDataError::NoField);
        assert_eq!(e(b"UID=1 UID=2"), ClientDataError::Duplicate("UID".into()));
        assert_eq!(e(b"IP=10.0.0.1"), ClientDataError::Missing("UID"));
        assert!(matches!(e(b"UID=A IP=10.0.0.300"), ClientDataError::BadValue { key: "IP", .. }));
        assert!(matches!(e(b"UID=A/B"), ClientDataError::BadValue { key: "UID", .. }));
        assert!(matches!(e(b"UID=A FCTTAGS=yes"), ClientDataError::BadValue { key: "FCTTAGS", .. }));
        assert_eq!(e(b"UID=A\x07"), ClientDataError::ControlChar(5));
        assert_eq!(e(&[b'U', b'I', b'D', b'=', 0xff]), ClientDataError::NotText);
        assert_eq!(e(&vec![b'A'; MAX_CLIENT_DATA + 1]), ClientDataError::TooLong(MAX_CLIENT_DATA + 1));
        // Unknown keys are kept; multibyte text in values is fine.
        let d = ClientData::parse("UID=A NEW_KEY=x HOST=Zürich".as_bytes()).unwrap();
        assert_eq!(d.other, vec![("NEW_KEY".to_string(), "x".to_string())]);
        assert_eq!(d.host, "Zürich");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = ClientData::parse(&data);
        }

        #[test]
        fn encode_parse_roundtrip(uid in "[A-F0-9]{1,32}", host in "[a-zA-Z0-9 .-]{0,20}", ip in proptest::prelude::any::<u32>()) {
            let d = ClientData { uid, host: host.trim().to_string(), ip: Some(Ipv4Addr::from(ip)), ..Default::default() };
            // A host that itself looks like `KEY=` would start a field; the generator avoids `=`.
            proptest::prop_assert_eq!(ClientData::parse(&d.encode()).unwrap(), d);
        }
    }
}
