# Guest profile for Hetzner Cloud servers: virtio disk and network, QEMU
# guest agent, serial console, DHCPv4 plus the server's IPv6 address (the
# Hetzner API assigns a /64 but DHCP does not hand it out), and SSH host
# keys from the path cloud-init writes them to, so that the key the agent
# injected through user_data, and pinned, survives the switch to NixOS.
{ config, lib, ... }:

let
  cfg = config.services.venue.hetzner;
in
{
  options.services.venue.hetzner = with lib.types; {
    enable = lib.mkEnableOption "the Hetzner Cloud guest profile";

    interface = lib.mkOption {
      type = str;
      default = "enp1s0";
      description = "Name of the public network interface.";
    };

    ipv6Address = lib.mkOption {
      type = nullOr str;
      default = null;
      example = "2001:db8::1";
      description = "The server's IPv6 address from fleet.json (in its /64).";
    };

    rootDevice = lib.mkOption {
      type = str;
      default = "/dev/disk/by-label/nixos";
      description = "Root file system (ext4).";
    };

    bootDevice = lib.mkOption {
      type = str;
      default = "/dev/sda";
      description = "Disk GRUB is installed on (Hetzner's x86 servers boot by BIOS).";
    };

    hostKeyPath = lib.mkOption {
      type = str;
      default = "/etc/ssh/ssh_host_ed25519_key";
      description = "Ed25519 host key, as written by cloud-init from the user_data the agent sent.";
    };
  };

  config = lib.mkIf cfg.enable {
    # What nixpkgs' profiles/qemu-guest.nix loads, set here so that it only
    # applies when the profile is enabled.
    boot.initrd.availableKernelModules = [ "virtio_net" "virtio_pci" "virtio_mmio" "virtio_blk" "virtio_scsi" "ata_piix" "sd_mod" "sr_mod" ];
    boot.initrd.kernelModules = [ "virtio_balloon" "virtio_console" "virtio_rng" ];
    boot.loader.grub.device = cfg.bootDevice;
    boot.kernelParams = [ "console=tty0" "console=ttyS0,115200" ];

    fileSystems."/" = {
      device = cfg.rootDevice;
      fsType = "ext4";
    };

    services.qemuGuest.enable = true;

    networking.useDHCP = false;
    networking.interfaces.${cfg.interface} = {
      useDHCP = true;
      ipv6.addresses = lib.mkIf (cfg.ipv6Address != null) [{
        address = cfg.ipv6Address;
        prefixLength = 64;
      }];
    };
    networking.defaultGateway6 = lib.mkIf (cfg.ipv6Address != null) {
      address = "fe80::1";
      inherit (cfg) interface;
    };

    # cloud-init only for what NixOS does not do: the injected host key and
    # root's authorized key. Its "ssh" module runs here in the init stage,
    # which nixpkgs orders before sshd, so sshd never generates its own key.
    services.cloud-init = {
      enable = true;
      network.enable = false;
      settings.cloud_init_modules = [ "migrator" "seed_random" "bootcmd" "write-files" "growpart" "resizefs" "ssh" "users-groups" ];
      settings.cloud_config_modules = [ "disk_setup" "mounts" "runcmd" ];
    };

    services.openssh = {
      enable = true;
      settings.PermitRootLogin = "prohibit-password";
      settings.PasswordAuthentication = false;
      hostKeys = [{ path = cfg.hostKeyPath; type = "ed25519"; }];
    };
  };
}
