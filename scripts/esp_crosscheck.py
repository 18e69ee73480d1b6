#!/usr/bin/env python3
"""Cross-checks dialgate's ESP against scapy's SecurityAssociation, an independent ESP.

For every transform, UDP encapsulation on and off, inner IPv4 and IPv6:
  1. scapy seals random packets -> pcap -> `dialgate esp open` -> must equal the originals;
  2. originals -> `dialgate esp seal` -> pcap -> scapy decrypts -> must equal the originals.
Random keys and sizes each run; the seed is printed and can be fixed with --seed.
Prints 'N passed, N failed' and exits non-zero on any failure.
"""
import argparse
import os
import random
import subprocess
import sys
import tempfile

from scapy.all import IP, IPv6, UDP, TCP, ICMP, Raw, rdpcap, wrpcap, conf  # noqa: E402
from scapy.layers.ipsec import ESP, SecurityAssociation  # noqa: E402

conf.verb = 0
import logging  # noqa: E402
logging.getLogger("scapy").setLevel(logging.ERROR)

TRANSFORMS = {
    # dialgate name: (scapy crypt_algo, cipher key bytes (+4 salt for AEAD), scapy auth_algo, auth key bytes)
    "aes128gcm": ("AES-GCM", 16 + 4, None, 0),
    "aes256gcm": ("AES-GCM", 32 + 4, None, 0),
    "chacha20poly1305": ("CHACHA20-POLY1305", 32 + 4, None, 0),
    "aes128-sha1": ("AES-CBC", 16, "HMAC-SHA1-96", 20),
    "aes256-sha1": ("AES-CBC", 32, "HMAC-SHA1-96", 20),
    "aes128-sha256": ("AES-CBC", 16, "SHA2-256-128", 32),
    "aes256-sha256": ("AES-CBC", 32, "SHA2-256-128", 32),
}

OUTER = {"v4": ("192.0.2.1", "198.51.100.7"), "v6": ("2001:db8::1", "2001:db8:99::7")}


def inner_packet(rng, v6):
    size = rng.choice([0, 1, 7, 64, 333, 1000, 1400]) + rng.randrange(8)
    payload = Raw(bytes(rng.getrandbits(8) for _ in range(size)))
    l4 = rng.choice([UDP(sport=rng.randrange(1, 65535), dport=9999), TCP(sport=1234, dport=80, flags="PA"),
                     ICMP() if not v6 else UDP(sport=5, dport=6)])
    if v6:
        return IPv6(src="fd00::2", dst="fd00:50::%x" % rng.randrange(1, 0xffff)) / l4 / payload
    return IP(src="10.40.40.2", dst="10.50.0.%d" % rng.randrange(1, 254), id=rng.randrange(65536)) / l4 / payload


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd[:3]), r.returncode, r.stderr.strip()))
    return r.stderr.strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dialgate", required=True)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--count", type=int, default=12)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print("esp cross-check seed=%d (rerun with --seed %d)" % (seed, seed))
    rng = random.Random(seed)
    passed = failed = 0
    tmp = tempfile.mkdtemp(prefix="dialgate-xcheck-")
    for name, (calgo, klen, aalgo, alen) in TRANSFORMS.items():
        for outer_v, encap, v6 in [(o, e, i) for o in ("v4", "v6") for e in (False, True) for i in (False, True)]:
            if True:
                GW, CLIENT = OUTER[outer_v]
                TH = IP if outer_v == "v4" else IPv6
                case = "%s outer=%s encap=%s inner=%s" % (name, outer_v, encap, "v6" if v6 else "v4")
                try:
                    key = bytes(rng.getrandbits(8) for _ in range(klen))
                    akey = bytes(rng.getrandbits(8) for _ in range(alen))
                    spi = rng.randrange(0x100, 2**32)
                    first_seq = rng.randrange(1, 2**31)
                    kw = dict(spi=spi, crypt_algo=calgo, crypt_key=key,
                              tunnel_header=TH(src=GW, dst=CLIENT))
                    if aalgo:
                        kw.update(auth_algo=aalgo, auth_key=akey)
                    if encap:
                        nat_port = rng.randrange(1024, 65535)
                        kw["nat_t_header"] = UDP(sport=4500, dport=nat_port)
                    sa = SecurityAssociation(ESP, **kw)
                    originals = [inner_packet(rng, v6) for _ in range(args.count)]
                    raw_orig = [bytes(p) for p in originals]
                    common = ["--spi", str(spi), "--transform", name, "--key", key.hex()]
                    if aalgo:
                        common += ["--auth-key", akey.hex()]
                    # 1. scapy seals, dialgate opens.
                    sealed = [sa.encrypt(p, seq_num=first_seq + i) for i, p in enumerate(originals)]
                    enc_pcap = os.path.join(tmp, "scapy-sealed.pcap")
                    out_pcap = os.path.join(tmp, "dialgate-opened.pcap")
                    wrpcap(enc_pcap, sealed, linktype=101)
                    run([args.dialgate, "esp", "open"] + common + [enc_pcap, out_pcap])
                    opened = [bytes(p) for p in rdpcap(out_pcap)]
                    if opened != raw_orig:
                        raise AssertionError("dialgate open: %d of %d packets differ" % (
                            sum(a != b for a, b in zip(opened, raw_orig)) + abs(len(opened) - len(raw_orig)),
                            len(raw_orig)))
                    # 2. dialgate seals, scapy opens.
                    clear_pcap = os.path.join(tmp, "clear.pcap")
                    dg_pcap = os.path.join(tmp, "dialgate-sealed.pcap")
                    wrpcap(clear_pcap, originals, linktype=101)
                    cmd = [args.dialgate, "esp", "seal"] + common + [
                        "--seq", str(first_seq), "--tunnel-src", GW, "--tunnel-dst", CLIENT]
                    if encap:
                        cmd += ["--udp-encap", "4500:%d" % nat_port]
                    run(cmd + [clear_pcap, dg_pcap])
                    got = rdpcap(dg_pcap)
                    if len(got) != len(originals):
                        raise AssertionError("dialgate seal wrote %d of %d packets" % (len(got), len(originals)))
                    rx = SecurityAssociation(ESP, **kw)
                    for i, pkt in enumerate(got):
                        outer = TH(bytes(pkt))
                        if (UDP in outer) != encap:
                            raise AssertionError("packet %d: UDP encapsulation mismatch" % i)
                        if outer[ESP].seq != first_seq + i:
                            raise AssertionError("packet %d: seq %d, expected %d" % (i, outer[ESP].seq, first_seq + i))
                        plain = rx.decrypt(outer.copy())
                        if bytes(plain) != raw_orig[i]:
                            raise AssertionError("scapy open: packet %d differs" % i)
                    passed += 1
                except Exception as e:  # report every case, then fail
                    failed += 1
                    print("FAIL %s: %s" % (case, e))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
