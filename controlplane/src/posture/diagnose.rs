//! `diagnose firewall dynamic list [TAG]` and `diagnose endpoint ec-shm list` in the seed's
//! format, as pure functions over the [`PostureCache`] (the diagnose socket calls them).

use std::fmt::Write as _;

use super::api::parse_range;
use super::cache::PostureCache;
use super::check::TagRef;

/// `diagnose firewall dynamic list [TAG]`: every tag of every connector (as
/// `CONNECTOR_ZTNA_tag`), or only `tag`.
pub fn render_dynamic_list(cache: &PostureCache, tag: Option<&str>) -> String {
    let wanted = tag.map(|t| TagRef::parse(t).ok_or(t));
    let mut out = String::new();
    let mut found = false;
    for c in cache.all() {
        let Some(snap) = c.snapshot.as_deref() else { continue };
        for t in &snap.tags {
            let cmdb = format!("{}_ZTNA_{}", c.name, t.name);
            match &wanted {
                Some(Ok(w)) if w.connector != c.name || w.tag != t.name => continue,
                Some(Err(_)) => continue,
                _ => {}
            }
            found = true;
            let _ = writeln!(out, "CMDB name: {cmdb}");
            let _ = writeln!(out, "TAG name: {}", t.name);
            let _ = writeln!(out, "{cmdb}: ID({})", t.id);
            let (mut blocks, mut addrs) = (0, 0);
            for a in &t.addresses {
                match parse_range(a) {
                    Some((s, e)) if s == e => {
                        addrs += 1;
                        let _ = writeln!(out, "ADDR({s})");
                    }
                    Some((s, e)) => {
                        blocks += 1;
                        let _ = writeln!(out, "RANGE({s}-{e})");
                    }
                    None => {}
                }
            }
            let _ = writeln!(out, "Total IP dynamic range blocks: {blocks}.");
            let _ = writeln!(out, "Total IP dynamic addresses: {addrs}.");
        }
    }
    if !found {
        if let Some(t) = tag {
            let _ = writeln!(out, "dynamic address {t} not found.");
        }
    }
    out
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// `diagnose endpoint ec-shm list`: every endpoint record of every connector; `interface` is the
/// gateway interface name printed in each record.
pub fn render_ec_shm_list(cache: &PostureCache, interface: &str) -> String {
    let mut out = String::new();
    let mut n = 0;
    for c in cache.all() {
        let Some(snap) = c.snapshot.as_deref() else { continue };
        for e in &snap.endpoints {
            let _ = writeln!(out, "Record #{n}:");
            let _ = writeln!(out, "IP Address = {}", e.address);
            let _ = writeln!(out, "MAC Address = {}", e.mac.first().map_or("", String::as_str));
            let _ = writeln!(out, "MAC list = {}", e.mac.get(1..).unwrap_or(&[]).join(";"));
            let _ = writeln!(out, "VDOM = root (0)");
            let _ = writeln!(out, "TOKEN VDOM = (-1)");
            let serial = if e.serial.is_empty() { &snap.serial } else { &e.serial };
            let tenant = if e.tenant.is_empty() { &snap.tenant } else { &e.tenant };
            let _ = writeln!(out, "EMS serial number: {serial}");
            let _ = writeln!(out, "EMS tenant id: {tenant}");
            let _ = writeln!(out, "Client cert SN: {}", e.cert_serial);
            let _ = writeln!(out, "Public IP address: {}", e.public_address);
            let _ = writeln!(out, "Quarantined: {}", yes_no(e.quarantined));
            let _ = writeln!(out, "Online status: {}", if e.online { "online" } else { "offline" });
            let _ = writeln!(out, "Registration status: {}", if e.registered { "registered" } else { "unregistered" });
            let _ = writeln!(out, "On-net status: {}", if e.on_net { "on-net" } else { "off-net" });
            let _ = writeln!(out, "Gateway Interface: {interface}");
            let _ = writeln!(out, "FortiClient version: {}", e.client_version);
            let _ = writeln!(out, "UID: {}", e.uid);
            let _ = writeln!(out, "Tags: {}", e.tags.join(" "));
            n += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::posture::api::{Endpoint, Snapshot, Tag};
    use crate::posture::cache::ConnectorState;

    fn cache() -> PostureCache {
        let c = PostureCache::new();
        c.insert(ConnectorState::new("EMS1", "", "", None, 60));
        c.store(
            "EMS1",
            Snapshot {
                serial: "FCTEMS8826000120".into(),
                tenant: "00000000000000000000001EDB589FBC4626".into(),
                tags: vec![
                    Tag { name: "all_registered_clients".into(), id: 6, addresses: vec!["172.16.200.242".into()] },
                    Tag { name: "lab".into(), id: 7, addresses: vec!["10.0.0.1-10.0.0.9".into(), "10.1.0.1".into()] },
                ],
                endpoints: vec![Endpoint {
                    uid: "6108A9179A5C40D7BD57504E15114C1F".into(),
                    address: "172.16.200.242".into(),
                    mac: vec!["00:0c:29:aa:67:74".into()],
                    cert_serial: "5B60ACA9FE283DEEC3B".into(),
                    public_address: "198.51.100.7".into(),
                    online: true,
                    registered: true,
                    on_net: true,
                    client_version: "7.2.4".into(),
                    tags: vec!["all_registered_clients".into()],
                    ..Default::default()
                }],
                token_public_key: None,
            },
            1000,
        );
        c
    }

    #[test]
    fn dynamic_list_as_in_the_seed() {
        let out = render_dynamic_list(&cache(), Some("EMS1_ZTNA_all_registered_clients"));
        assert_eq!(
            out,
            "CMDB name: EMS1_ZTNA_all_registered_clients\nTAG name: all_registered_clients\n\
             EMS1_ZTNA_all_registered_clients: ID(6)\nADDR(172.16.200.242)\n\
             Total IP dynamic range blocks: 0.\nTotal IP dynamic addresses: 1.\n"
        );
        let all = render_dynamic_list(&cache(), None);
        assert!(all.contains("CMDB name: EMS1_ZTNA_lab\n"), "{all}");
        assert!(all.contains("RANGE(10.0.0.1-10.0.0.9)\nADDR(10.1.0.1)\nTotal IP dynamic range blocks: 1.\n"), "{all}");
        assert_eq!(render_dynamic_list(&cache(), Some("EMS9_ZTNA_x")), "dynamic address EMS9_ZTNA_x not found.\n");
        assert_eq!(render_dynamic_list(&cache(), Some("garbage")), "dynamic address garbage not found.\n");
    }

    #[test]
    fn ec_shm_list_as_in_the_seed() {
        let out = render_ec_shm_list(&cache(), "port1");
        let want = "Record #0:\nIP Address = 172.16.200.242\nMAC Address = 00:0c:29:aa:67:74\nMAC list = \n\
                    VDOM = root (0)\nTOKEN VDOM = (-1)\nEMS serial number: FCTEMS8826000120\n\
                    EMS tenant id: 00000000000000000000001EDB589FBC4626\nClient cert SN: 5B60ACA9FE283DEEC3B\n\
                    Public IP address: 198.51.100.7\nQuarantined: no\nOnline status: online\n\
                    Registration status: registered\nOn-net status: on-net\nGateway Interface: port1\n\
                    FortiClient version: 7.2.4\n";
        assert!(out.starts_with(want), "{out}");
    }
}
