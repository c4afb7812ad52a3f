{
  description = "venue: a free-software conference venue, rented for the days of an event";

  # Pinned in flake.lock to the nixos-26.05 revision of ../shared/reference/nixpkgs-pin.json.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs = { self, nixpkgs }:
    let
      system = "x86_64-linux";
      pkgs = nixpkgs.legacyPackages.${system};
      inherit (pkgs) lib;

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
      };

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
          default = withPortalPackage ./modules;
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
      lib = import ./nix/lib.nix {
        inherit (nixpkgs.lib) nixosSystem;
        modules = [ self.nixosModules.default ];
      };

      nixosConfigurations =
        let
          host = configuration: nixpkgs.lib.nixosSystem {
            modules = [
              self.nixosModules.default
              { nixpkgs.hostPlatform = system; }
              configuration
            ];
          };
        in
        {
          allinone = host ./hosts/allinone/configuration.nix;
          vpsadminos = host ./hosts/vpsadminos/configuration.nix;
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
          vm-coturn = import ./tests/vm/coturn.nix { inherit pkgs venueModules; };
          vm-jitsi = import ./tests/vm/jitsi.nix { inherit pkgs venueModules; };
          vm-bbb = import ./tests/vm/bbb.nix { inherit pkgs venueModules; };
          vm-portal = import ./tests/vm/portal.nix { inherit pkgs venueModules portalPackage; };
          vm-allinone = import ./tests/vm/allinone.nix { inherit pkgs venueModules portalPackage; };
        };
    };
}
