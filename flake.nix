{
  description = "venue: a free-software conference venue, rented for the days of an event";

  # Pinned in flake.lock verbatim to ../shared/reference/{nixpkgs,disko,nixos-images}-pin.json.
  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
    # Partitioning of freshly rented servers (modules/hetzner.nix's layout).
    disko = {
      url = "github:nix-community/disko/master";
      inputs.nixpkgs.follows = "nixpkgs";
    };
    # The kexec installer a rented Ubuntu server boots into (venue's install phase).
    nixos-images = {
      url = "github:nix-community/nixos-images";
      inputs.nixos-stable.follows = "nixpkgs";
      inputs.nixos-unstable.follows = "nixpkgs";
    };
  };

  outputs = { self, nixpkgs, disko, nixos-images }:
    let
      system = "x86_64-linux";
      pkgs = nixpkgs.legacyPackages.${system};
      inherit (pkgs) lib;

      # What venue's hosts need of nixpkgs' configuration (jitsi-meet is
      # marked insecure): given wherever pkgs is made, never by a module.
      nixpkgsConfig = import ./nix/pkgs-config.nix;
      # For the VM tests: their nodes share this pkgs (read-only).
      testPkgs = import nixpkgs { inherit system; config = nixpkgsConfig; };

      # nixos-images' kexec installer, built from our nixpkgs, non-interactive
      # (no prompts): `<out>/nixos-kexec-installer-noninteractive-<system>.tar.gz`.
      # venue uploads it over the pinned SSH; the server never downloads it.
      # The module names the tarball `<system.kexec-installer.name>-<system>`,
      # default `nixos-kexec-installer`; the name is set as nixos-images' own
      # flake does for its noninteractive package (flake.nix @ e17386d9).
      kexecInstaller = sys: (nixpkgs.legacyPackages.${sys}.nixos [
        nixos-images.nixosModules.kexec-installer
        nixos-images.nixosModules.noninteractive
        { system.kexec-installer.name = "nixos-kexec-installer-noninteractive"; }
      ]).config.system.build.kexecInstallerTarball;

      # Only what cargo needs, so editing a module or an example does not rebuild the binaries.
      src = lib.fileset.toSource {
        root = ./.;
        fileset = lib.fileset.unions [
          ./Cargo.toml
          ./Cargo.lock
          ./agent
          ./conference
          ./portal
          ./tests/testbed
        ];
      };

      # One workspace, one binary per package. The cargo tests need root, real
      # sshd, coturn and Chromium: they run in .ci/run, not in the sandbox.
      workspaceBinary = { pname, package, description }:
        pkgs.rustPlatform.buildRustPackage {
          inherit pname src;
          version = "0.1.0";
          cargoLock.lockFile = ./Cargo.lock;
          cargoBuildFlags = [ "--package" package ];
          # ssh2 links libssh2, built with the system's OpenSSL and zlib.
          nativeBuildInputs = [ pkgs.pkg-config ];
          buildInputs = [ pkgs.openssl pkgs.zlib ];
          doCheck = false;
          meta = {
            inherit description;
            license = lib.licenses.agpl3Plus;
            mainProgram = pname;
          };
        };
    in
    {
      packages.${system} = {
        venue = workspaceBinary {
          pname = "venue";
          package = "venue-agent";
          description = "Plan, rent, deploy and release the servers of a virtual conference";
        };
        venue-portal = workspaceBinary {
          pname = "venue-portal";
          package = "venue-portal";
          description = "The attendee portal of a venue conference";
        };
        default = self.packages.${system}.venue;
        kexec-installer = kexecInstaller system;
      };
      # Hetzner's cax (Ampere) servers.
      packages.aarch64-linux.kexec-installer = kexecInstaller "aarch64-linux";

      # nix run . -- plan hosts/lpc-2020/event.toml
      apps.${system} = {
        venue = {
          type = "app";
          program = lib.getExe self.packages.${system}.venue;
        };
        default = self.apps.${system}.venue;
      };

      devShells.${system}.default = pkgs.mkShell {
        inputsFrom = [ self.packages.${system}.venue ];
        packages = with pkgs; [ clippy rustfmt rust-analyzer nixpkgs-fmt deadnix openssh coturn wrk ];
      };

      formatter.${system} = pkgs.nixpkgs-fmt;

      # NixOS modules, options under services.venue.* (modules/README.md).
      # `default` has every role (each off until enabled) and takes the
      # portal package from this flake.
      nixosModules =
        let
          withPortalPackage = module: { lib, pkgs, ... }: {
            imports = [ module ];
            services.venue.portal.package =
              lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.venue-portal;
          };
        in
        {
          # With disko's module, so that hetzner.nix's disk layout yields
          # each rented host's partitioning script.
          default = { lib, pkgs, ... }: {
            imports = [ (withPortalPackage ./modules) disko.nixosModules.disko ];
            # The capture controller is venue-portal's `capture` command.
            services.venue.capture.package =
              lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.venue-portal;
            services.venue.autopilot.package =
              lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.venue;
          };
          portal = withPortalPackage ./modules/portal.nix;
          jitsi = ./modules/jitsi.nix;
          jvb = ./modules/jvb.nix;
          bbb = ./modules/bbb.nix;
          coturn = ./modules/coturn.nix;
          hetzner = ./modules/hetzner.nix;
          vpsadminos = ./modules/vpsadminos.nix;
        };

      # lib.mkFleet { fleet, extraModules ? [ ], eventFile ? null }: one
      # nixosSystem per rented host of fleet.json; the agent builds
      # `<host>.config.system.build.toplevel` (see nix/lib.nix).
      # lib.nixpkgsConfig: for `nixos-rebuild` users' own flakes
      # (`nixpkgs.config = venue.lib.nixpkgsConfig;`).
      lib = import ./nix/lib.nix {
        inherit (nixpkgs.lib) nixosSystem;
        modules = [ self.nixosModules.default ];
      };

      nixosConfigurations =
        let
          host = configuration: nixpkgs.lib.nixosSystem {
            modules = [
              self.nixosModules.default
              { nixpkgs.hostPlatform = system; nixpkgs.config = nixpkgsConfig; }
              configuration
            ];
          };
        in
        {
          # hosts/vpsadminos needs vpsAdminOS' own guest module, which this
          # flake cannot lock offline: its flake.nix is for the container.
          allinone = host ./hosts/allinone/configuration.nix;
        };

      # `nix flake check`: the packages, mkFleet on a sample fleet (pure
      # evaluation), and the NixOS VM tests of tests/vm.
      checks.${system} =
        let
          venueModules = self.nixosModules.default;
          portalPackage = self.packages.${system}.venue-portal;
        in
        {
          inherit (self.packages.${system}) venue venue-portal;
          lib-fleet = pkgs.writeText "lib-fleet" (builtins.toJSON (import ./nix/lib-test.nix));
          vm-coturn = import ./tests/vm/coturn.nix { pkgs = testPkgs; inherit venueModules; };
          vm-jitsi = import ./tests/vm/jitsi.nix { pkgs = testPkgs; inherit venueModules; };
          vm-first-boot = import ./tests/vm/first-boot.nix { pkgs = testPkgs; inherit venueModules; };
          vm-bbb = import ./tests/vm/bbb.nix { pkgs = testPkgs; inherit venueModules; };
          vm-portal = import ./tests/vm/portal.nix { pkgs = testPkgs; inherit venueModules portalPackage; };
          vm-chat = import ./tests/vm/chat.nix { pkgs = testPkgs; inherit venueModules portalPackage; };
          vm-allinone = import ./tests/vm/allinone.nix { pkgs = testPkgs; inherit venueModules portalPackage; };
          vm-stream = import ./tests/vm/stream.nix { pkgs = testPkgs; inherit venueModules; };
          vm-capture = import ./tests/vm/capture.nix { pkgs = testPkgs; inherit venueModules portalPackage; };
          vm-autopilot = import ./tests/vm/autopilot.nix { pkgs = testPkgs; inherit venueModules; };
          vm-install = import ./tests/vm/install.nix {
            pkgs = testPkgs;
            inherit venueModules;
            inherit (self.packages.${system}) venue;
            kexecInstaller = self.packages.${system}.kexec-installer;
          };

        };
    };
}
