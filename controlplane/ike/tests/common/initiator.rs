//! dialgate's own minimal IKEv2 initiator, for in-memory pair tests against the responder.
//! It follows RFC 7296 §1.2/§2.16 from the initiator's side, with EAP-MSCHAPv2 as a peer.

use std::net::Ipv4Addr;

use dialgate_ike::codec::Codec;
use dialgate_ike::crypto::dh::{DhGroup, DhPrivate};
use dialgate_ike::crypto::{Entropy, Prf};
use dialgate_ike::eap::{self, EapPacket, MsChapV2};
use dialgate_ike::keymat::{child_keymat, skeyseed, ChildKeys, IkeKeys};
use dialgate_ike::message::*;
use dialgate_ike::proposal::{esp_key_lengths, EspOffer, IkeOffer};
use dialgate_ike::responder::Path;
use dialgate_ike::sk::{Opened, Reassembly, SkCipher};

use super::mschap;
use super::TestRng;

pub struct Initiator {
    pub rng: TestRng,
    pub spi_i: u64,
    pub spi_r: u64,
    pub ni: Vec<u8>,
    pub nr: Vec<u8>,
    pub dh: Option<DhPrivate>,
    pub ike: IkeOffer,
    pub esp: EspOffer,
    pub esp_spi: u32,
    pub init_req: Vec<u8>,
    pub init_resp: Vec<u8>,
    pub keys: Option<IkeKeys>,
    pub out: Option<SkCipher>,
    pub inb: Option<SkCipher>,
    pub mid: u32,
    pub idi: Identification,
    pub frag: bool,
    pub reassembly: Reassembly,
    pub path: Path,
    /// Extra payloads for the first IKE_AUTH (e.g. private notifies).
    pub extra_auth1: Vec<Payload>,
}

pub fn find<T>(p: &[Payload], f: impl Fn(&Payload) -> Option<T>) -> Option<T> {
    p.iter().find_map(f)
}

impl Initiator {
    pub fn new(seed: u64, ike: IkeOffer, esp: EspOffer, user: &str, path: Path) -> Self {
        let mut rng = TestRng(seed);
        let mut b = [0u8; 8];
        rng.fill(&mut b);
        let mut ni = vec![0u8; 32];
        rng.fill(&mut ni);
        Self {
            rng,
            spi_i: u64::from_be_bytes(b) | 1,
            spi_r: 0,
            ni,
            nr: vec![],
            dh: None,
            ike,
            esp,
            esp_spi: 0xc1c2c3c4,
            init_req: vec![],
            init_resp: vec![],
            keys: None,
            out: None,
            inb: None,
            mid: 0,
            idi: Identification { ty: IdType::ID_RFC822_ADDR, data: user.as_bytes().to_vec() },
            frag: false,
            reassembly: Reassembly::default(),
            path,
            extra_auth1: Vec::new(),
        }
    }

    fn header(&self, exchange: ExchangeType, mid: u32) -> Header {
        Header {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            next_payload: PayloadType::NONE,
            version: 0x20,
            exchange,
            flags: FLAG_INITIATOR,
            message_id: mid,
            length: 0,
        }
    }

    /// IKE_SA_INIT request with a KE of `group`, optional COOKIE first, NAT-D hashes of `path`.
    pub fn sa_init(&mut self, group: DhGroup, cookie: Option<Vec<u8>>, frag: bool) -> Vec<u8> {
        let dh = DhPrivate::generate(group, &mut self.rng).unwrap();
        let mut p = Vec::new();
        if let Some(c) = cookie {
            p.push(Payload::Notify(Notify::new(NotifyType::COOKIE, c)));
        }
        p.push(Payload::Sa(self.ike.to_sa()));
        p.push(Payload::Ke(KePayload { group: group.id(), data: dh.public().to_vec() }));
        p.push(Payload::Nonce(self.ni.clone()));
        p.push(Payload::Notify(Notify::new(
            NotifyType::NAT_DETECTION_SOURCE_IP,
            nat_hash(self.spi_i, 0, self.path.remote),
        )));
        p.push(Payload::Notify(Notify::new(
            NotifyType::NAT_DETECTION_DESTINATION_IP,
            nat_hash(self.spi_i, 0, self.path.local),
        )));
        if frag {
            p.push(Payload::Notify(Notify::new(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED, vec![])));
        }
        p.push(Payload::Notify(Notify::new(NotifyType::SIGNATURE_HASH_ALGORITHMS, vec![0, 2, 0, 3, 0, 4])));
        self.frag = frag;
        self.dh = Some(dh);
        let m = Message { header: self.header(ExchangeType::IKE_SA_INIT, 0), payloads: p };
        self.init_req = m.encode();
        self.init_req.clone()
    }

    /// Processes the IKE_SA_INIT response: Err(notify) for an error response.
    pub fn sa_init_response(&mut self, bytes: &[u8]) -> Result<Message, Notify> {
        let m = Message::parse(bytes).unwrap();
        assert!(m.header.is_response());
        if let Some(Payload::Notify(n)) = m.payloads.first() {
            if n.ty.is_error() || n.ty == NotifyType::COOKIE {
                return Err(n.clone());
            }
        }
        let sa = find(&m.payloads, |p| if let Payload::Sa(s) = p { Some(s.clone()) } else { None }).unwrap();
        let ke = find(&m.payloads, |p| if let Payload::Ke(k) = p { Some(k.clone()) } else { None }).unwrap();
        self.nr = find(&m.payloads, |p| if let Payload::Nonce(n) = p { Some(n.clone()) } else { None }).unwrap();
        let prop = &sa.proposals[0];
        let t = |ty| prop.of_type(ty).next().cloned();
        let e = t(TransformType::ENCR).unwrap();
        let encr = dialgate_ike::crypto::Encr::from_id(EncrId(e.id), e.key_length()).unwrap();
        let prf = Prf::from_id(PrfId(t(TransformType::PRF).unwrap().id)).unwrap();
        let integ = t(TransformType::INTEG).and_then(|i| dialgate_ike::crypto::Integ::from_id(IntegId(i.id)));
        let gir = self.dh.as_ref().unwrap().agree(&ke.data).unwrap();
        self.spi_r = m.header.spi_r;
        let seed = skeyseed(prf, &self.ni, &self.nr, &gir);
        let keys = IkeKeys::derive(prf, encr, integ, &seed, &self.ni, &self.nr, self.spi_i, self.spi_r).unwrap();
        self.out = Some(SkCipher::outbound(&keys, false).unwrap());
        self.inb = Some(SkCipher::inbound(&keys, false).unwrap());
        self.keys = Some(keys);
        self.init_resp = bytes.to_vec();
        self.mid = 1;
        Ok(m)
    }

    /// An encrypted request with the next message ID.
    pub fn request(&mut self, exchange: ExchangeType, payloads: Vec<Payload>) -> Vec<Vec<u8>> {
        let h = self.header(exchange, self.mid);
        self.mid += 1;
        let frag = self.frag.then_some(400);
        self.out.as_ref().unwrap().seal(&h, &payloads, frag, &mut self.rng).unwrap()
    }

    /// Our response to the gateway's request `mid` (e.g. a DPD probe).
    pub fn respond(&mut self, exchange: ExchangeType, mid: u32, payloads: Vec<Payload>) -> Vec<Vec<u8>> {
        let mut h = self.header(exchange, mid);
        h.flags |= FLAG_RESPONSE;
        self.out.as_ref().unwrap().seal(&h, &payloads, None, &mut self.rng).unwrap()
    }

    /// Opens response datagrams (one SK or several SKF) into payloads.
    pub fn open(&mut self, dgrams: &[Vec<u8>]) -> (Header, Vec<Payload>) {
        for d in dgrams {
            match self.inb.as_ref().unwrap().open(d).unwrap() {
                Opened::Complete(h, p) => return (h, p),
                Opened::Fragment { header, first, number, total, plain } => {
                    if let Some(p) = self.reassembly.add(header.message_id, first, number, total, plain).unwrap() {
                        return (header, p);
                    }
                }
            }
        }
        panic!("incomplete response");
    }

    /// The first IKE_AUTH: IDi, no AUTH (EAP), CP request, SA, TSi/TSr 0/0, INITIAL_CONTACT.
    pub fn auth1(&mut self, with_psk: Option<&[u8]>) -> Vec<Vec<u8>> {
        let mut p =
            vec![Payload::IdI(self.idi.clone()), Payload::Notify(Notify::new(NotifyType::INITIAL_CONTACT, vec![]))];
        if let Some(psk) = with_psk {
            let a = self.auth_value(psk);
            p.push(Payload::Auth(AuthPayload { method: AuthMethod::SHARED_KEY_MIC, data: a }));
        }
        p.push(Payload::Cp(CpPayload {
            cfg_type: CfgType::CFG_REQUEST,
            attributes: vec![
                CpAttribute { ty: CpAttrType::INTERNAL_IP4_ADDRESS, value: vec![] },
                CpAttribute { ty: CpAttrType::INTERNAL_IP4_DNS, value: vec![] },
            ],
        }));
        p.push(Payload::Sa(self.esp.to_sa(self.esp_spi)));
        p.push(Payload::TsI(TsPayload { selectors: vec![TrafficSelector::ipv4_any()] }));
        p.push(Payload::TsR(TsPayload { selectors: vec![TrafficSelector::ipv4_any()] }));
        p.push(Payload::Notify(Notify::new(NotifyType::MOBIKE_SUPPORTED, vec![])));
        p.push(Payload::Notify(Notify::new(NotifyType::EAP_ONLY_AUTHENTICATION, vec![])));
        p.extend(self.extra_auth1.iter().cloned());
        self.request(ExchangeType::IKE_AUTH, p)
    }

    /// Our AUTH with a shared secret (RFC 7296 §2.15), initiator side.
    pub fn auth_value(&self, secret: &[u8]) -> Vec<u8> {
        let k = self.keys.as_ref().unwrap();
        let prf = k.prf;
        let maced = prf.prf(&k.sk_pi, &[&self.idi.get_encoding()]);
        let kp = prf.prf(secret, &[b"Key Pad for IKEv2"]);
        prf.prf(&kp, &[&self.init_req, &self.nr, &maced]).to_vec()
    }

    /// Our AUTH with a shared secret for identity `id` (a later round, RFC 4739 §3).
    pub fn auth_value_for(&self, secret: &[u8], id: &Identification) -> Vec<u8> {
        let k = self.keys.as_ref().unwrap();
        let prf = k.prf;
        let maced = prf.prf(&k.sk_pi, &[&id.get_encoding()]);
        let kp = prf.prf(secret, &[b"Key Pad for IKEv2"]);
        prf.prf(&kp, &[&self.init_req, &self.nr, &maced]).to_vec()
    }

    /// The octets the responder signs (RFC 7296 §2.15): IKE_SA_INIT response | Ni | prf(SK_pr, IDr').
    pub fn responder_signed_octets(&self, idr: &Identification) -> Vec<u8> {
        let k = self.keys.as_ref().unwrap();
        let maced = k.prf.prf(&k.sk_pr, &[&idr.get_encoding()]);
        [&self.init_resp[..], &self.ni[..], &maced[..]].concat()
    }

    /// The responder's expected AUTH with a shared secret.
    pub fn expected_responder_auth(&self, secret: &[u8], idr: &Identification) -> Vec<u8> {
        let k = self.keys.as_ref().unwrap();
        let prf = k.prf;
        let maced = prf.prf(&k.sk_pr, &[&idr.get_encoding()]);
        let kp = prf.prf(secret, &[b"Key Pad for IKEv2"]);
        prf.prf(&kp, &[&self.init_resp, &self.ni, &maced]).to_vec()
    }

    pub fn eap(&mut self, code: u8, id: u8, method: Option<(u8, Vec<u8>)>) -> Vec<Vec<u8>> {
        let e = EapPacket { code, identifier: id, method }.get_encoding();
        self.request(ExchangeType::IKE_AUTH, vec![Payload::Eap(e)])
    }

    /// Answers an MSCHAPv2 challenge; returns the datagrams and the NT-Response.
    pub fn mschap_response(
        &mut self,
        req: &EapPacket,
        user: &str,
        password: &str,
    ) -> (Vec<Vec<u8>>, [u8; 24], [u8; 16], [u8; 16]) {
        let Some((eap::TYPE_MSCHAPV2, d)) = &req.method else { panic!("not mschapv2") };
        let MsChapV2::Challenge { id, challenge, .. } = MsChapV2::parse(d, true).unwrap() else {
            panic!("not a challenge")
        };
        let mut peer = [0u8; 16];
        self.rng.fill(&mut peer);
        let nt = mschap::nt_response(&challenge, &peer, user, password);
        let r =
            MsChapV2::Response { id, peer_challenge: peer, nt_response: nt, flags: 0, name: user.as_bytes().to_vec() };
        (self.eap(eap::CODE_RESPONSE, req.identifier, Some((eap::TYPE_MSCHAPV2, r.encode()))), nt, peer, challenge)
    }

    /// CHILD_SA keys as the initiator derives them for the chosen suite.
    pub fn child_keys(&self, sa: &SaPayload) -> ChildKeys {
        let suite = self.esp.select(sa, None, 1).unwrap().suite;
        let (e, i) = esp_key_lengths(&suite);
        let k = self.keys.as_ref().unwrap();
        child_keymat(k.prf, &k.sk_d, None, &self.ni, &self.nr, e, i).unwrap()
    }
}

pub fn nat_hash(spi_i: u64, spi_r: u64, a: std::net::SocketAddr) -> Vec<u8> {
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(spi_i.to_be_bytes());
    h.update(spi_r.to_be_bytes());
    match a.ip() {
        std::net::IpAddr::V4(v) => h.update(v.octets()),
        std::net::IpAddr::V6(v) => h.update(v.octets()),
    }
    h.update(a.port().to_be_bytes());
    h.finalize().to_vec()
}

pub fn eap_of(p: &[Payload]) -> Option<EapPacket> {
    find(p, |x| if let Payload::Eap(b) = x { EapPacket::read_bytes(b).ok() } else { None })
}

pub fn notify_of(p: &[Payload], ty: NotifyType) -> Option<Notify> {
    find(p, |x| if let Payload::Notify(n) = x { (n.ty == ty).then(|| n.clone()) } else { None })
}

pub fn ipv4(v: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(v[0], v[1], v[2], v[3])
}
