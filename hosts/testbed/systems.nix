# Toy NixOS-like systems that real Nix builds offline (no nixpkgs): each has
# bin/switch-to-configuration, which starts a small health endpoint on port
# 80 once the host's secrets are in place. Same interface as the flake's
# systems: a function from fleet.json to one system per host.
#
#   broken:      host names whose system starts but never answers /healthz
#   payloadMiB, payloadPaths: a shared payload of about payloadMiB MiB in
#                payloadPaths store paths, for benchmarks: real libraries and
#                data files of this machine, which compress like a real closure
{ fleet, broken ? [ ], payloadMiB ? 0, payloadPaths ? 100, generation ? "1" }:
let
  mk = name: script: builtins.derivation {
    inherit name;
    system = "x86_64-linux";
    builder = "/bin/sh";
    args = [ "-c" "set -e; export PATH=/bin:/usr/bin; ${script}" ];
  };

  # Shared by every host, as nixpkgs is: the part a re-deploy never resends.
  common = mk "toy-common" ''mkdir -p $out/www; echo "venue toy system" > $out/README'';

  # Path i takes every payloadPaths-th file, from the i-th on, up to its share.
  payload = builtins.genList
    (i: mk "toy-payload-${toString i}" ''
      mkdir -p $out; left=$(( ${toString payloadMiB} * 1048576 / ${toString payloadPaths} ))
      n=0
      find /usr/lib/x86_64-linux-gnu /usr/share -type f | sort | awk 'NR % ${toString payloadPaths} == ${toString i}' |
        while IFS= read -r f; do
          size=$(stat -c %s "$f")
          [ "$size" -le "$left" ] || continue
          n=$((n + 1)); cp "$f" "$out/$n"; left=$((left - size))
        done
    '')
    (if payloadMiB == 0 then 0 else payloadPaths);

  secretsFor = {
    bbb = [ "bbb-secret" "turn-secret" ];
    jitsi = [ "jwt-secret" "turn-secret" "jvb-muc-password" ];
    jvb = [ "jvb-muc-password" ];
    coturn = [ "turn-secret" ];
    portal = [ "bbb-secret" "jwt-secret" "turn-secret" "portal-session" ];
  };

  system = server:
    let
      healthy = !(builtins.elem server.name broken);
      required = builtins.concatStringsSep " " secretsFor.${server.role};
    in
    mk "toy-system-${server.name}" ''
      mkdir -p $out/bin $out/www
      ln -s ${common} $out/common
      echo "${builtins.concatStringsSep " " payload}" > $out/payload
      echo "${server.name} ${server.role} generation ${generation}" > $out/www/${if healthy then "healthz" else "not-healthz"}
      cat > $out/bin/switch-to-configuration <<EOS
      #!/bin/sh
      # Like NixOS's: make this system the running one.
      set -e
      [ "\$1" = switch ] || { echo "usage: switch-to-configuration switch" >&2; exit 1; }
      for s in ${required}; do
        [ -r /var/lib/venue/secrets/\$s ] || { echo "missing secret \$s" >&2; exit 1; }
      done
      state=/nix/var/venue-toy
      mkdir -p \$state
      if [ -f \$state/health.pid ]; then kill \$(cat \$state/health.pid) 2>/dev/null || true; sleep 0.2; fi
      setsid python3 -m http.server 80 --bind 0.0.0.0 --directory $out/www >\$state/health.log 2>&1 < /dev/null &
      echo \$! > \$state/health.pid
      echo "switched to $out"
      EOS
      chmod +x $out/bin/switch-to-configuration
    '';
in
builtins.listToAttrs (map (s: { name = s.name; value = system s; })
  (builtins.filter (s: !(s.static or false)) fleet.servers))
