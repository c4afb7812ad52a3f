# The nixpkgs configuration venue's hosts need, for whoever makes their pkgs
# (lib.mkFleet, this flake's nixosConfigurations and VM tests, or a
# `nixos-rebuild` user's own flake: `nixpkgs.config = venue.lib.nixpkgsConfig`).
#
# jitsi-meet carries libolm's knownVulnerabilities (end-to-end encryption
# code the venue does not rely on). It is permitted by name, so that an
# update does not break the build as a versioned permittedInsecurePackages
# entry would. Not set by the modules themselves: a module that sets
# nixpkgs.config breaks every configuration that passes its own
# `nixpkgs.pkgs` (nixpkgs asserts) and overrides the user's own predicate.
# Builtins only: nix/lib.nix is evaluated without nixpkgs in tests.
{
  allowInsecurePredicate = pkg:
    (pkg.pname or (builtins.parseDrvName (pkg.name or "")).name) == "jitsi-meet";
}
