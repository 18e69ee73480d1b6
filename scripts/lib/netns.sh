#!/usr/bin/env bash
# Network-namespace and strongSwan helpers for dialgate's interop tests and demo.
#
# Source it (`. scripts/lib/netns.sh`) and call the dg_* functions, or run it as
# `scripts/lib/netns.sh FUNCTION ARGS...` (the Rust interop tests do that).
#
#   dg_ns_pair NS_A NS_B IF_A IF_B ADDR_A/LEN ADDR_B/LEN   namespaces joined by a veth pair
#   dg_ns_del NS...                                        kill what runs in them, delete them
#   dg_charon_conf DIR                                     DIR/strongswan.conf for a client daemon
#   dg_charon_start NS DIR                                 charon-systemd in NS, vici at DIR/charon.vici
#   dg_swanctl DIR COMMAND ARGS...                         swanctl against that daemon
#   dg_charon_stop DIR                                     stop the daemon started for DIR
#
# strongSwan on this kind of machine: the kernel has no ESP, so the client uses kernel-libipsec
# (userspace ESP over TUN), which only does ESP in UDP: connections need `encap = yes`.
# One daemon per namespace, each with its own STRONGSWAN_CONF, vici socket and log file.

set -u

dg_ns_pair() {
    local a=$1 b=$2 ia=$3 ib=$4 addr_a=$5 addr_b=$6
    ip netns add "$a" || return 1
    ip netns add "$b" || return 1
    ip link add "$ia" netns "$a" type veth peer name "$ib" netns "$b" || return 1
    ip -n "$a" addr add "$addr_a" dev "$ia" || return 1
    ip -n "$b" addr add "$addr_b" dev "$ib" || return 1
    for ns in "$a" "$b"; do ip -n "$ns" link set lo up || return 1; done
    ip -n "$a" link set "$ia" up || return 1
    ip -n "$b" link set "$ib" up || return 1
}

# Adds one more namespace with a veth into an existing one (for a second client).
dg_ns_attach() {
    local new=$1 existing=$2 inew=$3 iex=$4 addr_new=$5 addr_ex=$6
    ip netns add "$new" || return 1
    ip link add "$inew" netns "$new" type veth peer name "$iex" netns "$existing" || return 1
    ip -n "$new" addr add "$addr_new" dev "$inew" || return 1
    ip -n "$existing" addr add "$addr_ex" dev "$iex" || return 1
    ip -n "$new" link set lo up || return 1
    ip -n "$new" link set "$inew" up || return 1
    ip -n "$existing" link set "$iex" up || return 1
}

dg_ns_del() {
    local ns pid
    for ns in "$@"; do
        # Exact names: "dg-gw" must not match another run's "dg-gw-2".
        ip netns list 2>/dev/null | awk '{print $1}' | grep -qxF "$ns" || continue
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null; done
        sleep 0.2
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null || true
    done
    return 0
}

dg_charon_conf() {
    local dir=$1
    mkdir -p "$dir"
    cat >"$dir/strongswan.conf" <<EOF
charon {
    load = random nonce openssl pem pkcs1 x509 pubkey aes sha1 sha2 hmac gcm kdf kernel-libipsec kernel-netlink socket-default vici updown eap-identity eap-mschapv2 eap-gtc
    install_virtual_ip = yes
    retransmit_tries = 2
    retransmit_timeout = 1.0
    retransmit_base = 1.4
    filelog {
        log {
            path = $dir/charon.log
            time_format = %H:%M:%S
            default = 1
            ike = 2
            cfg = 2
            flush_line = yes
        }
    }
    plugins {
        vici {
            socket = unix://$dir/charon.vici
        }
    }
}
swanctl {
    load = random nonce openssl pem pkcs1 x509 pubkey aes sha1 sha2 hmac gcm kdf
    socket = unix://$dir/charon.vici
}
EOF
}

dg_charon_start() {
    local ns=$1 dir=$2 i
    rm -f "$dir/charon.vici"
    ip netns exec "$ns" env STRONGSWAN_CONF="$dir/strongswan.conf" setsid /usr/sbin/charon-systemd \
        >"$dir/charon.out" 2>&1 </dev/null &
    echo $! >"$dir/charon.pid"
    for i in $(seq 1 100); do
        [ -S "$dir/charon.vici" ] && return 0
        kill -0 "$(cat "$dir/charon.pid")" 2>/dev/null || { cat "$dir/charon.out" >&2; return 1; }
        sleep 0.05
    done
    echo "charon in $ns did not open $dir/charon.vici" >&2
    return 1
}

dg_swanctl() {
    local dir=$1 cmd=$2
    shift 2
    STRONGSWAN_CONF="$dir/strongswan.conf" swanctl "$cmd" --uri "unix://$dir/charon.vici" "$@"
}

dg_charon_stop() {
    local dir=$1 pid
    [ -f "$dir/charon.pid" ] || return 0
    pid=$(cat "$dir/charon.pid")
    kill -INT "$pid" 2>/dev/null
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null
    rm -f "$dir/charon.pid"
    return 0
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    fn=${1:-}
    case "$fn" in
    dg_*) shift; "$fn" "$@" ;;
    *) echo "usage: $0 dg_FUNCTION ARGS..." >&2; exit 2 ;;
    esac
fi
