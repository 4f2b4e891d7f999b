#!/usr/bin/env bash
# Certificates for one test run, made with openssl in the directory given (valid two days):
#   ca.pem, ca.key                 the test CA
#   server.pem, server.key         a server certificate from it, for 127.0.0.1 and localhost
#   named.pem, named.key           a server certificate from it for the name localhost only
#   client.pem, client.key         a client certificate from it (CN=client-a)
#   other-ca.pem, other-ca.key     a second CA, which the servers do not trust
#   stranger.pem, stranger.key     a client certificate from the second CA (CN=client-b)
set -euo pipefail
cd "$1"
K=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${K[@]}" -keyout ca.key -out ca.pem -days 2 -subj /CN=cairn-test-ca
openssl req -x509 "${K[@]}" -keyout other-ca.key -out other-ca.pem -days 2 -subj /CN=other
openssl req "${K[@]}" -keyout server.key -out server.csr -subj /CN=localhost
echo subjectAltName=DNS:localhost,IP:127.0.0.1 > san.cnf
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
  -days 2 -extfile san.cnf
openssl req "${K[@]}" -keyout named.key -out named.csr -subj /CN=localhost
echo subjectAltName=DNS:localhost > named.cnf
openssl x509 -req -in named.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out named.pem -days 2 \
  -extfile named.cnf
openssl req "${K[@]}" -keyout client.key -out client.csr -subj /CN=client-a
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2
openssl req "${K[@]}" -keyout stranger.key -out stranger.csr -subj /CN=client-b
openssl x509 -req -in stranger.csr -CA other-ca.pem -CAkey other-ca.key -CAcreateserial \
  -out stranger.pem -days 2
