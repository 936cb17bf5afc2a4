#!/bin/sh
# The certs service (compose.yaml): runs as root in the postgres image, which has openssl and a
# shell (the vault's image has neither), before anything that reads the two volumes.
#
# - A test CA and the vault's certificate in the tls volume, made only when missing or within
#   30 days of expiry: every `docker compose up` runs this again. The certificate names
#   localhost and 127.0.0.1 (the host's curl, the image's health check) and vault (other
#   containers on the compose network). The CA's key is thrown away once it has signed: this CA
#   never vouches for anything else, and a new one comes with the next certificate.
# - The roots of the secrets (master key) and audit (checkpoints) volumes owned by the vault's
#   uid, mode 0700, whatever created them (Docker gives a new named volume the owner of the
#   image's directory, not every runtime does).
set -eu

tls=${TLS_DIR:-/tls}
secrets=${SECRETS_DIR:-/secrets}
audit=${AUDIT_DIR:-/audit}
uid=65532
days=825

if [ -s "$tls/ca.pem" ] && [ -s "$tls/cert.pem" ] && [ -s "$tls/key.pem" ] \
    && openssl x509 -checkend $((30 * 86400)) -noout -in "$tls/cert.pem" >/dev/null; then
    expiry=$(openssl x509 -enddate -noout -in "$tls/cert.pem" | cut -d= -f2)
    echo "certs: keeping the certificate in the tls volume, valid until $expiry"
else
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    cat >"$work/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = Strongroom compose test CA
[ca]
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, DNS:vault, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
    openssl req -x509 -config "$work/openssl.cnf" -extensions ca -days "$days" \
        -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc \
        -keyout "$work/ca-key.pem" -out "$work/ca.pem" 2>/dev/null
    openssl req -new -config "$work/openssl.cnf" -subj /CN=vault \
        -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc \
        -keyout "$work/key.pem" -out "$work/cert.csr" 2>/dev/null
    openssl x509 -req -in "$work/cert.csr" -CA "$work/ca.pem" -CAkey "$work/ca-key.pem" \
        -set_serial "0x$(openssl rand -hex 16)" -days "$days" \
        -extfile "$work/openssl.cnf" -extensions server -out "$work/cert.pem" 2>/dev/null
    openssl verify -CAfile "$work/ca.pem" -purpose sslserver "$work/cert.pem" >/dev/null
    # The key first and the CA last: a run cut short leaves a set that the test above redoes.
    rm -f "$tls/ca.pem"
    install -m 0600 -o "$uid" -g "$uid" "$work/key.pem" "$tls/key.pem"
    install -m 0644 "$work/cert.pem" "$tls/cert.pem"
    install -m 0644 "$work/ca.pem" "$tls/ca.pem"
    echo "certs: made a new test CA and certificate for localhost, vault and 127.0.0.1;" \
        "a running vault serves it once restarted, and curl needs the new CA (README, Docker Compose)"
fi

chown "$uid:$uid" "$tls/key.pem"
chmod 0600 "$tls/key.pem"
chown "$uid:$uid" "$secrets" "$audit"
chmod 0700 "$secrets" "$audit"
