# All of venue's NixOS modules. Every role is off until its
# services.venue.<role>.enable is set, so a host can import this file whole.
{
  imports = [
    ./common.nix
    ./archive.nix
    ./jitsi.nix
    ./jvb.nix
    ./bbb.nix
    ./coturn.nix
    ./stream.nix
    ./capture.nix
    ./portal.nix
    ./chat.nix
    ./autopilot.nix
    ./hetzner.nix
    ./vpsadminos.nix
  ];
}
