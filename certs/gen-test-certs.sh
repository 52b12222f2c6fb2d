#!/usr/bin/env bash
# Makes dohgate's TEST-ONLY PKI: a CA and server certificates signed by it, valid for ten years.
# The keys are committed so tests are reproducible; never use them outside tests.
#
#   bash certs/gen-test-certs.sh          # writes into the directory of this script
set -euo pipefail
cd "$(dirname "$0")"

DAYS=3650
SUBJ_ORG="/O=dohgate test"

ext_file() { # $1 = subjectAltName value
    cat <<EOT
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = $1
EOT
}

# The CA: ECDSA P-256.
openssl ecparam -name prime256v1 -genkey -noout -out test-ca.key.tmp
openssl pkcs8 -topk8 -nocrypt -in test-ca.key.tmp -out test-ca.key
rm -f test-ca.key.tmp
openssl req -x509 -new -key test-ca.key -sha256 -days "$DAYS" \
    -subj "$SUBJ_ORG/CN=dohgate test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" \
    -out test-ca.pem

# issue NAME KEYTYPE SAN: writes NAME.key (PKCS#8), NAME.pem (leaf) and NAME-chain.pem (leaf + CA).
issue() {
    local name=$1 keytype=$2 san=$3
    case "$keytype" in
        ec) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$name.key" ;;
        rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$name.key" ;;
    esac
    openssl req -new -key "$name.key" -subj "$SUBJ_ORG/CN=$name" -out "$name.csr"
    openssl x509 -req -in "$name.csr" -CA test-ca.pem -CAkey test-ca.key -CAcreateserial \
        -days "$DAYS" -sha256 -extfile <(ext_file "$san") -out "$name.pem"
    cat "$name.pem" test-ca.pem > "$name-chain.pem"
    rm -f "$name.csr"
}

LOCAL_SAN="DNS:localhost,IP:127.0.0.1,IP:::1"
issue localhost-ecdsa ec "$LOCAL_SAN"
issue localhost-rsa rsa "$LOCAL_SAN"
issue wrong-name ec "DNS:wrong.test"
issue dns-corp ec "DNS:dns.corp.test"
rm -f test-ca.srl

echo "wrote test PKI into $(pwd)"
