# Guest profile for Hetzner Cloud servers: virtio disk and network, QEMU
# guest agent, serial console, DHCPv4 plus the server's IPv6 address (the
# Hetzner API assigns a /64 but DHCP does not hand it out), and SSH host
# keys from the path cloud-init writes them to, so that the key the agent
# injected through user_data, and pinned, survives the switch to NixOS.
#
# The disk layout is declared here once, in disko's format
# (`services.venue.hetzner.diskLayout`): the installer partitions with it,
# and the same labels mount the installed system, so the two cannot drift.
# It boots on both firmwares Hetzner uses: BIOS (cx, cpx: GRUB in the 1M
# EF02 partition) and UEFI (ccx: the ESP, with GRUB installed as the
# removable fallback loader, since the firmware's boot entries are not ours
# to write).
#
# With disko's module imported (this flake's nixosModules.default does), the
# layout is also `disko.devices`, so the host's
# `config.system.build.diskoScript` is the installer's partitioning script;
# `enableConfig = false` keeps disko from declaring file systems of its own
# (by partition label), which would clash with the ones below.
# Read against nix-community/disko module.nix (enableConfig, system.build
# from `devices._scripts`: diskoScript), pinned in flake.lock at ff8702b4.
{ config, lib, options, ... }:

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

    bootDevice = lib.mkOption {
      type = str;
      default = "/dev/sda";
      description = "The server's disk: partitioned by the installer, GRUB's BIOS target.";
    };

    diskLayout = lib.mkOption {
      type = attrs;
      readOnly = true;
      default = {
        disk.main = {
          type = "disk";
          device = cfg.bootDevice;
          content = {
            type = "gpt";
            partitions = {
              bios = { size = "1M"; type = "EF02"; priority = 1; };
              esp = {
                size = "500M";
                type = "EF00";
                priority = 2;
                content = {
                  type = "filesystem";
                  format = "vfat";
                  extraArgs = [ "-n" "ESP" ];
                  mountpoint = "/boot";
                  mountOptions = [ "umask=0077" ];
                };
              };
              root = {
                size = "100%";
                content = {
                  type = "filesystem";
                  format = "ext4";
                  extraArgs = [ "-L" "nixos" ];
                  mountpoint = "/";
                };
              };
            };
          };
        };
      };
      description = ''
        The disk layout in disko's format (`disko.devices`), used by the
        installer; the file systems below mount it by these labels.
      '';
    };

    hostKeyPath = lib.mkOption {
      type = str;
      default = "/etc/ssh/ssh_host_ed25519_key";
      description = "Ed25519 host key, as written by cloud-init from the user_data the agent sent.";
    };
  };

  config = lib.mkIf cfg.enable (lib.mkMerge [
    (lib.optionalAttrs (options ? disko) {
      disko = {
        devices = cfg.diskLayout;
        enableConfig = false;
      };
    })
    {
      # What nixpkgs' profiles/qemu-guest.nix loads, set here so that it only
      # applies when the profile is enabled.
      boot.initrd.availableKernelModules = [ "virtio_net" "virtio_pci" "virtio_mmio" "virtio_blk" "virtio_scsi" "ata_piix" "sd_mod" "sr_mod" ];
      boot.initrd.kernelModules = [ "virtio_balloon" "virtio_console" "virtio_rng" ];
      boot.loader.grub = {
        device = cfg.bootDevice;
        efiSupport = true;
        efiInstallAsRemovable = true;
        # Kernels live on the 500M ESP: keep a few generations, not all.
        configurationLimit = lib.mkDefault 8;
      };
      boot.kernelParams = [ "console=tty0" "console=ttyS0,115200" ];

      # The labels diskLayout gives the file systems.
      fileSystems."/" = {
        device = "/dev/disk/by-label/nixos";
        fsType = "ext4";
      };
      fileSystems."/boot" = {
        device = "/dev/disk/by-label/ESP";
        fsType = "vfat";
        options = [ "umask=0077" ];
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
    }
  ]);
}
