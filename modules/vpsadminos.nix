# Guest profile for NixOS in a vpsAdminOS container (a long-lived host at a
# hosting co-op). The container shares the host's kernel: nothing here, nor
# in the role modules (see the isContainer blocks in jitsi.nix and jvb.nix),
# sets a host-wide sysctl or loads a kernel module.
#
# vpsAdminOS ships its own compatibility module (vpsadminos.nix in the
# container's /etc/nixos); this profile covers what a venue host needs
# without it: container mode, the network the host hands over, and DNS.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.venue.vpsadminos;
in
{
  options.services.venue.vpsadminos = with lib.types; {
    enable = lib.mkEnableOption "the vpsAdminOS container guest profile";

    nameservers = lib.mkOption {
      type = listOf str;
      default = [ "1.1.1.1" "2606:4700:4700::1111" ];
      description = "DNS resolvers (the container has no DHCP).";
    };
  };

  config = lib.mkIf cfg.enable {
    boot.isContainer = true;
    # vpsAdminOS starts the container's init script, not a boot loader.
    boot.loader.initScript.enable = true;
    boot.kernelModules = lib.mkForce [ ];

    # NixOS-wide defaults that are not namespaced: they belong to the host.
    boot.kernel.sysctl = {
      "fs.inotify.max_user_instances" = lib.mkForce null;
      "fs.inotify.max_user_watches" = lib.mkForce null;
      "kernel.kptr_restrict" = lib.mkForce null;
      "vm.max_map_count" = lib.mkForce null;
    };

    networking.useDHCP = false;
    networking.useHostResolvConf = lib.mkForce false;
    networking.nameservers = lib.mkDefault cfg.nameservers;

    # The host drops the container's address configuration in /ifcfg.add
    # (and its teardown in /ifcfg.del); apply it before network.target.
    systemd.services.venue-vpsadminos-network = {
      description = "Network configuration handed over by the vpsAdminOS host";
      wantedBy = [ "network.target" ];
      before = [ "network.target" ];
      after = [ "network-pre.target" ];
      path = [ pkgs.bash pkgs.iproute2 ];
      unitConfig.ConditionPathExists = "/ifcfg.add";
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
      };
      script = "bash /ifcfg.add";
      preStop = "bash /ifcfg.del";
      restartIfChanged = false;
    };

    services.openssh = {
      enable = true;
      settings.PermitRootLogin = "prohibit-password";
      settings.PasswordAuthentication = false;
    };
  };
}
