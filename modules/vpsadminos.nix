# Guest profile for NixOS in a vpsAdminOS container (a long-lived host at a
# hosting co-op). The container shares the host's kernel: nothing here, nor
# in the role modules (see the isContainer blocks in jitsi.nix and jvb.nix),
# sets a host-wide sysctl or loads a kernel module.
#
# It builds on vpsAdminOS' own guest module, which the container's
# configuration already imports (the templates' /etc/nixos/vpsadminos.nix,
# or `vpsadminos.nixosModules.container` in their flake): container mode,
# the init script, the network the host hands over (/ifcfg.add, run by its
# `networking-setup` unit), the udev trigger limited to network devices,
# /run/keys on tmpfs, and the units a container cannot run (oomd, journald's
# audit socket, debugfs, rpc-gssd). This profile adds only what a venue host
# needs on top, and refuses to evaluate without upstream's module rather
# than half-copying it (a copy ran /ifcfg.add twice next to the original).
#
# Read against vpsfreecz/vpsadminos
# os/lib/nixos-container/stable/vpsadminos-26.05.nix @ 34ec091a3a3b (and
# flake.nix @ 09fc19e3267d: nixosModules.container, container_26_05).
{ config, lib, ... }:

let
  cfg = config.services.venue.vpsadminos;
in
{
  options.services.venue.vpsadminos = with lib.types; {
    enable = lib.mkEnableOption "the vpsAdminOS container guest profile";

    nameservers = lib.mkOption {
      type = listOf str;
      default = [ "1.1.1.1" "2606:4700:4700::1111" ];
      description = ''
        DNS resolvers (the container has no DHCP). Upstream's module sets the
        same list with mkDefault; this one, at normal priority, replaces it
        rather than being appended to it.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [{
      assertion = config.boot.isContainer && config.systemd.services ? networking-setup;
      message = ''
        services.venue.vpsadminos needs vpsAdminOS' own guest module: import
        /etc/nixos/vpsadminos.nix (channel-style containers) or
        vpsadminos.nixosModules.container (flake-style, see
        hosts/vpsadminos/flake.nix) next to venue's modules.
      '';
    }];

    # Host-wide knobs NixOS sets by default: they belong to the host.
    # (Upstream's 26.05 module no longer disables systemd-sysctl.)
    boot.kernelModules = lib.mkForce [ ];
    boot.kernel.sysctl = {
      "fs.inotify.max_user_instances" = lib.mkForce null;
      "fs.inotify.max_user_watches" = lib.mkForce null;
      "kernel.kptr_restrict" = lib.mkForce null;
      "vm.max_map_count" = lib.mkForce null;
    };

    networking.useDHCP = false;
    networking.nameservers = cfg.nameservers;

    services.openssh = {
      enable = true;
      settings.PermitRootLogin = "prohibit-password";
      settings.PasswordAuthentication = false;
    };
  };
}
