# Guest profile for Hetzner Cloud servers: virtio disk and network, QEMU
# guest agent, serial console, DHCPv4 plus the server's IPv6 address (the
# Hetzner API assigns a /64 but DHCP does not hand it out), and the SSH host
# key the agent pinned.
#
# The public NIC's name depends on the server type (the machine model and
# its PCI layout: ens3 on some, enp1s0 on others), so systemd-networkd
# configures whichever Ethernet NIC it finds by a name pattern; venue
# servers have that one NIC (the agent attaches no private network).
#
# The host key: the agent puts the server's key in its user_data (a
# cloud-config `ssh_keys.ed25519_private` block, agent/src/commands/keys.rs)
# and pins the public half. The installer copies it to /mnt/etc/ssh; on
# every boot `venue-host-key.service`, ordered before sshd-keygen and sshd,
# reads user_data from the metadata service and installs that key (and
# root's authorized keys from the metadata's `public-keys`) when they differ.
# That is what keeps pinning true for servers booted from a venue snapshot,
# whose disk carries the key of the server the image was built on. No
# cloud-init: this one unit is all venue needs from it, and the root file
# system grows with nixpkgs' growpart and systemd-growfs instead.
# The metadata service answers anyone on the host without a token, user_data
# included: the firewall lets only root (and no forwarded container traffic)
# reach it.
#
# Read against nixpkgs (nixos-26.05 line, the newest copies the search index
# holds):
# - nixos/modules/services/networking/ssh/sshd.nix (the revision with
#   `generateHostKeys`, index id 61933264874): `sshd-keygen.service` makes a
#   missing key (ConditionFileNotEmpty), sshd is `after` it and `wants` it,
#   Type=notify-reload; `hostKeys` default also makes an RSA key.
# - nixos/modules/system/boot/grow-partition.nix (stage-2 revision, index id
#   303753244): `growpart.service` before `systemd-growfs-root.service`;
#   `autoResize` on "/" adds x-systemd.growfs.
# - nixos/modules/services/networking/firewall.nix (and firewall-iptables.nix;
#   index ids 49272750396, 8428404): `extraCommands`/`extraStopCommands`
#   only work with the iptables backend (nftables is not enabled here) and
#   run at every start and reload, hence the delete-then-insert.
# - nixos/modules/system/boot/networkd.nix (index copy dd3bd10db439):
#   `systemd.network.networks.<name>.{matchConfig,networkConfig,linkConfig}`
#   ([Network] takes DHCP, Address, Gateway, IPv6AcceptRA); enabling
#   networkd turns on systemd-resolved by default, which receives the DNS
#   servers DHCP gives.
# - pkgs/build-support/trivial-builders/default.nix @ 00ee9b64aafe:
#   writeShellApplication writes `#!bash`, `set -o errexit/nounset/pipefail`,
#   `export PATH=…` and the text; its checkPhase runs `bash -n`, and
#   passthru.tests.shellcheck runs `shellcheck [--exclude …]` on that file
#   (no excludes here: hostKeyScript must pass every check).
# - Hetzner's metadata service: /hetzner/v1/userdata and
#   /hetzner/v1/metadata (YAML with `public-keys`), as cloud-init's Hetzner
#   datasource reads them.
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
{ config, lib, options, pkgs, ... }:

let
  cfg = config.services.venue.hetzner;
  metadata = "169.254.169.254";

  # Takes the host key from user_data and root's keys from the metadata.
  # Fails (and sshd starts with the key on disk, which the agent then
  # refuses) rather than generating a key nobody pinned.
  hostKeyScript = pkgs.writeShellApplication {
    name = "venue-host-key";
    runtimeInputs = with pkgs; [ coreutils curl gawk gnugrep openssh diffutils ];
    text = builtins.readFile ./host-key.sh;
  };
in
{
  options.services.venue.hetzner = with lib.types; {
    enable = lib.mkEnableOption "the Hetzner Cloud guest profile";

    interface = lib.mkOption {
      type = str;
      default = "en* eth*";
      example = "enp1s0";
      description = ''
        The public network interface: a systemd.network `Name=` match
        (space-separated names or globs). The default takes any Ethernet
        NIC, whatever name the server type gives it.
      '';
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
      description = "Ed25519 host key: the one the agent pinned, from the server's user_data.";
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
      networking.useNetworkd = true;
      systemd.network.networks."10-venue-public" = {
        matchConfig.Name = cfg.interface;
        networkConfig = {
          DHCP = "ipv4";
          # Hetzner routes the /64 to the server and announces nothing.
          IPv6AcceptRA = false;
        } // lib.optionalAttrs (cfg.ipv6Address != null) {
          Address = "${cfg.ipv6Address}/64";
          Gateway = "fe80::1";
        };
        linkConfig.RequiredForOnline = "routable";
      };

      systemd.services.venue-host-key = {
        description = "SSH host key and root's keys from the server's user_data";
        wantedBy = [ "sshd.service" "multi-user.target" ];
        before = [ "sshd.service" "sshd-keygen.service" ];
        wants = [ "network-online.target" ];
        after = [ "network-online.target" ];
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          ExecStart = "${lib.getExe hostKeyScript} ${metadata} ${lib.escapeShellArg cfg.hostKeyPath}";
        };
      };

      # A snapshot from a small server boots on a bigger disk.
      boot.growPartition = true;
      fileSystems."/".autoResize = true;

      # user_data holds the private host key and the metadata service asks
      # for no token: only root on the host itself may ask it.
      networking.firewall.extraCommands = ''
        iptables -w -D OUTPUT -d ${metadata} -m owner ! --uid-owner 0 -j REJECT 2>/dev/null || true
        iptables -w -I OUTPUT -d ${metadata} -m owner ! --uid-owner 0 -j REJECT
        iptables -w -D FORWARD -d ${metadata} -j REJECT 2>/dev/null || true
        iptables -w -I FORWARD -d ${metadata} -j REJECT
      '';
      networking.firewall.extraStopCommands = ''
        iptables -w -D OUTPUT -d ${metadata} -m owner ! --uid-owner 0 -j REJECT 2>/dev/null || true
        iptables -w -D FORWARD -d ${metadata} -j REJECT 2>/dev/null || true
      '';

      services.openssh = {
        enable = true;
        settings.PermitRootLogin = "prohibit-password";
        settings.PasswordAuthentication = false;
        hostKeys = [{ path = cfg.hostKeyPath; type = "ed25519"; }];
      };
    }
  ]);
}
