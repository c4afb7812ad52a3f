# Test-only helper: a CA and a certificate for `names` signed by it (what
# the agent's ACME certificate is to a real host: trusted by the system's
# CAs once the CA is added with security.pki.certificateFiles), and an
# untrusted self-signed one for the same names. Test keys may live in the
# store; real ones never do.
#
#   <out>/ca.pem, <out>/fullchain.pem, <out>/key.pem,
#   <out>/untrusted.pem, <out>/untrusted-key.pem
{ pkgs, names }:

let
  san = builtins.concatStringsSep "," (map (n: "DNS:${n}") names);
  cn = builtins.head names;
in
pkgs.runCommand "venue-test-certs" { nativeBuildInputs = [ pkgs.openssl ]; } ''
  mkdir $out
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 \
    -keyout ca-key.pem -out $out/ca.pem -subj "/CN=venue test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  openssl req -newkey rsa:2048 -nodes -keyout $out/key.pem -out leaf.csr -subj "/CN=${cn}"
  printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' '${san}' > leaf.ext
  openssl x509 -req -in leaf.csr -CA $out/ca.pem -CAkey ca-key.pem -CAcreateserial \
    -days 3650 -extfile leaf.ext -out $out/fullchain.pem
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 \
    -keyout $out/untrusted-key.pem -out $out/untrusted.pem -subj "/CN=${cn}" \
    -addext "subjectAltName=${san}"
  chmod 0444 $out/*
''
