# venue's install steps on a real kernel: a target booted from a generic
# NixOS is installed by `venue machine install` (the same code `venue up`
# runs on a rented Ubuntu server): the flake's kexec installer tarball is
# uploaded over the pinned SSH and run, the installer must answer with the
# same host key, disko partitions the disk from modules/hetzner.nix's
# layout, the system closure goes to /mnt and nixos-install installs it.
# The target is then booted from its disk (BIOS, GRUB in the EF02
# partition), and must present the pinned host key and run the expected
# system, and configure its network card whatever its name (the default
# match of modules/hetzner.nix; QEMU's user network answers DHCP). A second
# run against an installer that answers with another key is refused before
# anything is sent.
#
# The tarball's name is the one flake.nix's kexec-installer package gets
# from `system.kexec-installer.name` (nixos-images nix/kexec-installer/
# module.nix @ e17386d9: `<name>-<system>.tar.gz`). The installed disk's
# store holds the installed system only: what the test compares it with is
# read by the driver, not inside that machine.
#
# Modelled on nix-community/nixos-anywhere tests/from-nixos.nix @ 91fc9b70
# (booting the installed disk as a new machine; the test driver's own VMs
# boot their kernel directly, not from the disk).
{ pkgs, venueModules, venue, kexecInstaller }:

let
  # Test-only keys, made once at build time: the deploy identity and the
  # target's host key (the one `venue up` would put in user_data and pin).
  keys = pkgs.runCommand "venue-install-test-keys" { nativeBuildInputs = [ pkgs.openssh ]; } ''
    mkdir $out
    ssh-keygen -q -t ed25519 -N "" -C deploy -f $out/deploy
    ssh-keygen -q -t ed25519 -N "" -C target -f $out/host
    ssh-keygen -q -t ed25519 -N "" -C impostor -f $out/impostor
  '';

  # What venue installs: the Hetzner profile on the VM's disk.
  installed = pkgs.nixos ({ modulesPath, ... }: {
    imports = [
      venueModules
      (modulesPath + "/testing/test-instrumentation.nix")
      (modulesPath + "/profiles/qemu-guest.nix")
      (modulesPath + "/profiles/minimal.nix")
    ];
    networking.hostName = "installed";
    documentation.enable = false;
    services.venue.hetzner = {
      enable = true;
      bootDevice = "/dev/vda";
    };
    # No metadata service here: the unit fails and sshd keeps the key the
    # installer wrote, which is the pinned one.
    systemd.services.venue-host-key.enable = false;
    users.users.root.openssh.authorizedKeys.keyFiles = [ "${keys}/deploy.pub" ];
    system.stateVersion = "26.05";
  });
  toplevel = installed.config.system.build.toplevel;
  disko = installed.config.system.build.diskoScript;
  tarball = "${kexecInstaller}/nixos-kexec-installer-noninteractive-${pkgs.stdenv.hostPlatform.system}.tar.gz";

  target = hostKey: { lib, ... }: {
    services.openssh = {
      enable = true;
      hostKeys = [{ path = "/etc/ssh/ssh_host_ed25519_key"; type = "ed25519"; }];
    };
    system.activationScripts.pinnedHostKey = ''
      install -D -m 0600 ${hostKey} /etc/ssh/ssh_host_ed25519_key
      install -D -m 0644 ${hostKey}.pub /etc/ssh/ssh_host_ed25519_key.pub
    '';
    users.users.root.openssh.authorizedKeys.keyFiles = [ "${keys}/deploy.pub" ];
    virtualisation.memorySize = 1536;
    virtualisation.diskSize = 4096;
    services.getty.autologinUser = lib.mkForce "root";
  };
in
pkgs.testers.runNixOSTest {
  name = "venue-install";

  nodes = {
    deployer = {
      environment.systemPackages = [ venue pkgs.nix ];
      nix.settings.experimental-features = [ "nix-command" ];
      # In the deployer's store and Nix database, as on an organiser's machine.
      environment.etc = {
        "venue-test/kexec.tar.gz".source = tarball;
        "venue-test/disko".source = disko;
        "venue-test/system".source = toplevel;
      };
      system.activationScripts.deployKey = ''
        install -D -m 0600 ${keys}/deploy /root/.ssh/deploy
      '';
      virtualisation.memorySize = 2048;
    };
    # The server: a generic NixOS answering with the key venue pinned.
    target = target "${keys}/host";
    # The same, but its installer would come back with another key.
    impostor = target "${keys}/impostor";
  };

  testScript = ''
    def create_installed_machine(old, name):
        # As nixos-anywhere's test: boot the old machine's disk, now ours.
        start_command = [
            "${pkgs.qemu_test}/bin/qemu-kvm",
            "-cpu", "max", "-m", "1024",
            "-virtfs", "local,path=/nix/store,security_model=none,mount_tag=nix-store",
            "-drive", f"file={old.state_dir}/{old.name}.qcow2,id=drive1,if=none,index=1,werror=report",
            "-device", "virtio-blk-pci,drive=drive1",
            # A network card named by the machine model (not enp1s0 here).
            "-nic", "user,model=virtio-net-pci",
        ]
        machine = create_machine(start_command=" ".join(start_command), name=name)
        driver.machines_qemu.append(machine)
        return machine

    start_all()
    target.wait_for_unit("sshd.service")
    impostor.wait_for_unit("sshd.service")
    deployer.wait_for_unit("multi-user.target")

    # The private half: the installed system keeps it; its public half is pinned.
    pinned = "${keys}/host"
    install = (
        "venue machine install {host} --host-key {key} --identity /root/.ssh/deploy "
        "--kexec /etc/venue-test/kexec.tar.gz --disko /etc/venue-test/disko "
        "--system $(readlink -f /etc/venue-test/system) --no-reboot --erase-disk"
    )

    with subtest("a host whose key is not the pinned one gets nothing"):
        out = deployer.fail(install.format(host="impostor", key=pinned) + " 2>&1")
        assert "host key" in out, out
        impostor.succeed("test ! -e /root/kexec")

    with subtest("kexec, disko, nixos-install over the pinned SSH"):
        deployer.succeed(install.format(host="target", key=pinned) + " >&2")

    with subtest("the installed disk boots with the pinned key and the expected system"):
        try:
            target.shutdown()
        except BrokenPipeError:
            pass
        new = create_installed_machine(target, "after_install")
        new.start()
        new.wait_for_unit("sshd.service")
        served = new.succeed("cat /etc/ssh/ssh_host_ed25519_key.pub").split()[1]
        # Read here, by the driver: the installed store lacks the test keys.
        with open("${keys}/host.pub") as f:
            expected = f.read().split()[1]
        assert served == expected, f"host key changed: {served} != {expected}"
        assert new.succeed("stat -c %a /etc/ssh/ssh_host_ed25519_key").strip() == "600"
        current = new.succeed("readlink -f /run/current-system").strip()
        assert current == "${toplevel}", f"{current} != ${toplevel}"
        new.succeed("findmnt -no LABEL / | grep -qx nixos")
        new.succeed("findmnt -no LABEL /boot | grep -qx ESP")

    with subtest("the installed system configures its network card, whatever its name"):
        new.wait_until_succeeds("ip -4 -o addr show | grep -q 'inet 10.0.2.15/'", timeout=120)
        status = new.succeed("networkctl status --no-pager 2>&1 || true")
        links = new.succeed("networkctl list --no-legend --no-pager")
        assert "configured" in links, links
        card = new.succeed("ip -4 -o addr show | grep 'inet 10.0.2.15/' | cut -d' ' -f2").strip()
        network_file = new.succeed(f"networkctl status --no-pager {card} | grep 'Network File'")
        assert "10-venue-public.network" in network_file, (network_file, status)
  '';
}
