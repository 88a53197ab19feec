#!/bin/sh
# Test certificates for kvcache's TLS: a CA, and server and client certificates it signed.
#
#   docker/make-certs.sh [DIR]      (default: certs/; `make certs` runs it)
#
# Writes DIR/ca.crt, ca.key, server.crt, server.key, client.crt, client.key. The server
# certificate names localhost, 127.0.0.1, kvcache, cache and the far nodes of the compose
# files (far; far1, far2, far3 of docker-compose.replicated.yml and docker-compose.cluster.yml),
# so one certificate serves the client listener (--tls-cert) and every far node (farserver
# --tls-cert): kvcache checks that a far node's certificate names the HOST of its --far entry.
# For tests and local use only: keys are unencrypted, readable by all (compose bind-mounts
# them as secrets for the containers' user, uid 10001), and the CA lives 30 days.
set -eu
dir=${1:-certs}
mkdir -p "$dir"
cd "$dir"
days=30
openssl req -x509 -newkey rsa:2048 -nodes -days "$days" -subj "/CN=kvcache test CA" \
    -keyout ca.key -out ca.crt 2>/dev/null
sign() {  # name, subject, extensions
    openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
    printf '%s\n' "$3" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}
sign server "/CN=kvcache" \
    "subjectAltName=DNS:localhost,IP:127.0.0.1,DNS:kvcache,DNS:cache,DNS:far,DNS:far1,DNS:far2,DNS:far3
extendedKeyUsage=serverAuth,clientAuth"
sign client "/CN=kvcache client" "extendedKeyUsage=clientAuth"
rm -f ca.srl
chmod 644 ./*.key ./*.crt
echo "wrote $(pwd)/ca.crt, server.crt/.key, client.crt/.key"
