//! Gateway certificate configuration: `config vpn certificate local` with dialgate's
//! `dialgate-cert-file` / `dialgate-key-file`, phase1 `authmethod signature` + `certificate`,
//! and the errors (file:line:col) for missing files, mismatched keys and unknown names.

use dialgate_controlplane::config::load_str;
use dialgate_controlplane::gateway::Gateway;

const EXAMPLE: &str = include_str!("../../examples/dialgate.conf");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ike/tests/fixtures");

/// The example with the gateway authenticating with certificate `name`, whose files are given.
fn config(cert: &str, key: &str, name: &str) -> String {
    let text = EXAMPLE.replace(
        "        set psksecret \"Pr3-Shared-K3y\"\n",
        &format!("        set authmethod signature\n        set certificate \"{name}\"\n"),
    );
    assert!(text.contains("authmethod signature"), "example configuration changed shape");
    format!(
        "{text}config vpn certificate local\n    edit \"gw\"\n        set dialgate-cert-file \"{cert}\"\n        set dialgate-key-file \"{key}\"\n    next\nend\n"
    )
}

#[test]
fn certificate_gateway_loads_ecdsa_and_rsa() {
    for (c, k, alg) in [("gw-ec.crt", "gw-ec.key", 12), ("gw-rsa.crt", "gw-rsa.key", 15)] {
        let text = config(&format!("{FIXTURES}/{c}"), &format!("{FIXTURES}/{k}"), "gw");
        let cfg = load_str(&text, "gw.conf").unwrap_or_else(|e| panic!("{e:#?}"));
        let gw = Gateway::from_config(&cfg, None).unwrap();
        let cert = gw.ike.certificate.as_ref().expect("certificate loaded");
        assert_eq!(cert.chain().len(), 1);
        assert_eq!(cert.algorithm_identifier().len(), alg);
        assert!(gw.ike.psk.is_empty(), "no psksecret: clients sending a PSK AUTH are refused");
    }
}

#[test]
fn certificate_errors_point_at_the_entry() {
    let text = config("/nonexistent/gw.crt", &format!("{FIXTURES}/gw-ec.key"), "gw");
    let errs = load_str(&text, "gw.conf").unwrap_err();
    let e = errs.iter().find(|e| e.message.contains("dialgate-cert-file")).unwrap_or_else(|| panic!("{errs:#?}"));
    let line = text.lines().position(|l| l.contains("set dialgate-cert-file")).unwrap() + 1;
    assert!(e.to_string().starts_with(&format!("gw.conf:{line}:")), "{e}");
    assert!(e.message.contains("/nonexistent/gw.crt"), "{e}");

    let text = config(&format!("{FIXTURES}/gw-ec.crt"), &format!("{FIXTURES}/gw-rsa.key"), "gw");
    let errs = load_str(&text, "gw.conf").unwrap_err();
    assert!(errs.iter().any(|e| e.message.contains("the private key does not belong to the certificate")), "{errs:#?}");

    let text = config(&format!("{FIXTURES}/gw-ec.crt"), &format!("{FIXTURES}/gw-ec.key"), "gx");
    let errs = load_str(&text, "gw.conf").unwrap_err();
    let e = errs
        .iter()
        .find(|e| e.message.contains("unknown vpn certificate local"))
        .unwrap_or_else(|| panic!("{errs:#?}"));
    assert!(e.message.contains("did you mean"), "{e}");
}
