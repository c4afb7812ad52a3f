# Toy installer artifacts for the testbed's install phase, built by real Nix
# offline (no nixpkgs), with the interface of the flake's:
#   kexec         a directory holding nixos-kexec-installer-noninteractive-
#                 x86_64-linux.tar.gz, whose kexec/run "kexecs" the host into
#                 the installer (as nixos-images' kexec-run: it carries
#                 /etc/ssh/ssh_host_* and root's authorized keys along);
#   disko.<host>  the host's disko script: wipe the disk, mount it at /mnt.
# The installer it boots has nixos-install and reboot at
# /run/current-system/sw/bin, where the agent calls them.
#
# They act on the test host's own directories (tests/testbed/src/netns.rs):
# /run/venue-testbed/hw/mode says what the host boots next (ubuntu,
# installer, nixos), /run/venue-testbed/disk is its disk; a "kexec" or
# "reboot" writes the next mode and stops sshd, and the host's boot loop
# boots that. Faults, armed by tests in /run/venue-testbed/hw/faults/:
#   kexec-silent         kexec/run succeeds and nothing happens (content: how
#                        many times; empty: every time)
#   kexec-new-key        the installer comes up with a host key of its own
#   block-<step>-before  the step waits while the file exists, then fails
#   block-<step>-after   the same, once the step is done
#                        (steps: kexec, disko, nixos-install, reboot)
{ fleet }:
let
  mk = name: script: builtins.derivation {
    inherit name;
    system = "x86_64-linux";
    builder = "/bin/sh";
    args = [ "-c" "set -e; export PATH=/bin:/usr/bin; ${script}" ];
  };

  hw = "/run/venue-testbed/hw";

  # Shared by the toys: a step that a test holds (to kill the agent there).
  block = ''
    block() {
      if [ -e ${hw}/faults/block-$1 ]; then
        touch ${hw}/reached-block-$1
        while [ -e ${hw}/faults/block-$1 ]; do sleep 0.1; done
        echo "toy: $1 interrupted by the test" >&2
        exit 1
      fi
    }
  '';

  # After `delay` seconds, detached: boot `mode` next and stop this boot's sshd.
  switchTo = mode: delay: ''
    setsid sh -c "sleep ${delay}; echo ${mode} > ${hw}/mode; kill \$(cat /run/sshd.pid)" </dev/null >/dev/null 2>&1 &
  '';

  kexecRun = builtins.toFile "kexec-run" ''
    #!/bin/sh
    # Toy of nixos-images' kexec-run (see the top of installer.nix).
    set -eu
    ${block}
    block kexec-before
    here=$(dirname "$(readlink -f "$0")")
    f=${hw}/faults/kexec-silent
    if [ -e $f ]; then
      n=$(cat $f)
      if [ -z "$n" ] || [ "$n" -gt 0 ]; then
        [ -z "$n" ] || echo $((n - 1)) > $f
        echo "machine will boot into nixos in 1s..."
        exit 0
      fi
    fi
    # The "initrd": the installer's files and what it carries.
    next=${hw}/kexec
    rm -rf $next
    mkdir -p $next/etc/ssh $next/root/.ssh $next/nix
    cp -a $here/installer/. $next/
    for p in /etc/ssh/ssh_host_*; do
      [ -e "$p" ] && cp -a "$p" $next/etc/ssh/
    done
    if [ -e /root/.ssh/authorized_keys ]; then
      grep -o '\(\(ssh\|ecdsa\|sk\)-[^ ]* .*\)' /root/.ssh/authorized_keys >> $next/root/.ssh/authorized_keys || true
    fi
    if [ -e ${hw}/faults/kexec-new-key ]; then
      rm -f $next/etc/ssh/ssh_host_*
      ssh-keygen -q -t ed25519 -N "" -C installer -f $next/etc/ssh/ssh_host_ed25519_key
    fi
    echo "machine will boot into nixos in 1s..."
    ${switchTo "installer" "1"}
  '';

  nixosInstall = builtins.toFile "nixos-install" ''
    #!/bin/sh
    # Toy nixos-install: the system profile on /mnt (the real one also
    # activates the system in a chroot and installs the boot loader).
    set -eu
    ${block}
    block nixos-install-before
    system=""
    while [ $# -gt 0 ]; do
      case "$1" in
        --system) system="$2"; shift ;;
        --no-root-passwd|--no-channel-copy) ;;
        *) echo "nixos-install (toy): unknown option $1" >&2; exit 1 ;;
      esac
      shift
    done
    [ -n "$system" ] || { echo "nixos-install (toy): --system is required" >&2; exit 1; }
    mountpoint -q /mnt || { echo "nixos-install (toy): nothing is mounted at /mnt" >&2; exit 1; }
    nix-store --store /mnt --check-validity "$system" || { echo "nixos-install (toy): $system is not in the store at /mnt" >&2; exit 1; }
    nix-env --store /mnt -p /mnt/nix/var/nix/profiles/system --set "$system"
    mkdir -p /mnt/boot
    echo "$system" > /mnt/boot/venue-testbed-loader
    block nixos-install-after
  '';

  reboot = builtins.toFile "reboot" ''
    #!/bin/sh
    # Toy reboot: the disk's system boots next.
    set -eu
    ${block}
    block reboot-before
    ${switchTo "nixos" "0.5"}
  '';

  installerRelease = builtins.toFile "os-release" ''
    NAME=NixOS
    ID=nixos
    VARIANT_ID=installer
    VARIANT="Installer"
    VERSION_ID="26.05"
    PRETTY_NAME="NixOS 26.05 installer (venue testbed)"
  '';

  kexec = mk "toy-kexec-installer" ''
    mkdir -p kexec/installer/system/sw/bin kexec/installer/etc $out
    cp ${kexecRun} kexec/run
    cp ${nixosInstall} kexec/installer/system/sw/bin/nixos-install
    cp ${reboot} kexec/installer/system/sw/bin/reboot
    cp ${installerRelease} kexec/installer/etc/os-release
    chmod 755 kexec/run kexec/installer/system/sw/bin/*
    tar -czf $out/nixos-kexec-installer-noninteractive-x86_64-linux.tar.gz kexec
  '';

  disko = name: mk "toy-disko-${name}" ''
    cat > $out <<'EOS'
    #!/bin/sh
    # Toy disko script of ${name}: destroy, format (empty the disk), mount at /mnt.
    set -eu
    ${block}
    block disko-before
    disk=/run/venue-testbed/disk
    while mountpoint -q /mnt; do umount /mnt; done
    find $disk -mindepth 1 -maxdepth 1 -exec rm -rf {} +
    mkdir -p $disk/boot
    mount --bind $disk /mnt
    block disko-after
    EOS
    chmod 755 $out
  '';
in
{
  inherit kexec;
  disko = builtins.listToAttrs (map (s: { name = s.name; value = disko s.name; })
    (builtins.filter (s: !(s.static or false)) fleet.servers));
}
