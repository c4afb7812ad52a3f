# The container's own /etc/nixos/flake.nix, as vpsAdminOS' flake template
# writes it (vpsadminos.nixosModules.container + ./configuration.nix), with
# venue's modules added. On the container:
#
#   nixos-rebuild switch --flake /etc/nixos#lpc-portal
#
# This file is an example for the container: venue's own flake does not
# build it, as it would need a lock entry for vpsadminos that cannot be made
# offline. Copy it, with configuration.nix, to /etc/nixos and run
# `nix flake lock` there.
{
  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
    vpsadminos.url = "github:vpsfreecz/vpsadminos";
    # Where venue lives for this host (a clone, or its public repository).
    venue.url = "path:/etc/venue";
    venue.inputs.nixpkgs.follows = "nixpkgs";
  };

  outputs = { nixpkgs, vpsadminos, venue, ... }: {
    nixosConfigurations.lpc-portal = nixpkgs.lib.nixosSystem {
      modules = [
        vpsadminos.nixosModules.container
        venue.nixosModules.default
        # jitsi-meet is marked insecure (libolm); permit it where pkgs is made.
        { nixpkgs.hostPlatform = "x86_64-linux"; nixpkgs.config = venue.lib.nixpkgsConfig; }
        ./configuration.nix
      ];
    };
  };
}
