# Test-only helper: a NixOS module that puts fixed secrets where the agent
# would upload them (/var/lib/venue/secrets, mode 0400), before any service
# starts. Test secrets may live in the store; real ones never do.
secrets:
{ lib, ... }:
{
  systemd.tmpfiles.rules = [ "d /var/lib/venue/secrets 0700 root root -" ]
    ++ lib.mapAttrsToList (name: value: "f /var/lib/venue/secrets/${name} 0400 root root - ${value}") secrets;

  # No ACME server in a VM test: certificates stay nixpkgs' self-signed ones.
  # The address is required all the same (security.acme asserts one).
  services.venue.acme = {
    server = "https://acme.invalid/directory";
    email = "vm-test@example.org";
  };
}
