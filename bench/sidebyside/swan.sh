# strongSwan gateway helpers of bench/sidebyside/run (sourced; needs scripts/lib/netns.sh and
# GW_IP, LAN_NET, PASSWORD, PSK, NS_GW set).

# strongSwan gateway configuration in $1 (a directory); $2: install routes (yes for ESP traffic).
swan_gw_conf() {
    local dir=$1 routes=$2
    mkdir -p "$dir"
    cat >"$dir/strongswan.conf" <<EOF
charon {
    load = random nonce openssl pem pkcs1 x509 pubkey aes sha1 sha2 hmac gcm kdf kernel-libipsec kernel-netlink socket-default vici eap-identity eap-mschapv2 attr
    install_routes = $routes
    # One source address carries every bench client: the per-IP cookie threshold (default 3
    # half-open SAs) would answer most IKE_SA_INITs with a COOKIE round trip, which dialgate's
    # responder does not do below 64 half-open SAs either.
    cookie_threshold = 64
    cookie_threshold_ip = 100000
    filelog {
        log {
            path = $dir/charon.log
            default = ${SWAN_LOG:-0}
            flush_line = no
        }
    }
    plugins {
        vici {
            socket = unix://$dir/charon.vici
        }
        kernel-libipsec {
            mtu = 1440
        }
    }
}
swanctl {
    load = random nonce openssl pem pkcs1 x509 pubkey aes sha1 sha2 hmac gcm kdf
    socket = unix://$dir/charon.vici
}
EOF
    cat >"$dir/swanctl.conf" <<EOF
connections {
    rw {
        version = 2
        local_addrs = $GW_IP
        proposals = aes128gcm16-prfsha256-curve25519,aes128-sha256-curve25519,aes128gcm16-prfsha256-ecp256
        pools = rw
        unique = never
        send_certreq = no
        encap = yes
        local {
            auth = psk
            id = gw.sidebyside
        }
        remote {
            auth = eap-mschapv2
            eap_id = %any
        }
        children {
            rw {
                local_ts = $LAN_NET
                esp_proposals = aes128gcm16
            }
        }
    }
}
pools {
    rw {
        addrs = 10.41.0.0/16
    }
}
secrets {
    eap-any {
        secret = "$PASSWORD"
    }
    ike-any {
        secret = "$PSK"
    }
}
EOF
}

swan_gw_start() {
    local dir=$1
    dg_charon_start "$NS_GW" "$dir" || return 1
    # dg_charon_stop ends it with SIGKILL if SIGINT is slow: no job-control notice for that.
    disown -a
    dg_swanctl "$dir" --load-all --noprompt --file "$dir/swanctl.conf" >"$dir/load.out" 2>&1 || {
        cat "$dir/load.out" >&2; return 1; }
}

