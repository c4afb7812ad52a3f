# What a host holds that outlives the event, for `venue archive` and `venue
# down` (which copy it to the organiser over the pinned SSH before any
# server is deleted). Role modules add their items: bbb.nix its published and
# raw recordings, portal.nix a dump of its SQLite database through the online
# backup. coturn and Jitsi keep nothing by default.
#
# The agent reads /etc/venue/archive.json through the system profile
# (/nix/var/nix/profiles/system/etc/venue/archive.json):
#   { "items": { "<name>": { "path": "/abs/path", "dump": "command" | null } } }
# A directory is archived with every regular file below it, to
# <state>/archive/<host>/<name>/…; a file to <state>/archive/<host>/<name>.
# A dump command runs as root first and must write `path`.
{ config, lib, ... }:

let
  cfg = config.services.venue.archive;
in
{
  options.services.venue.archive.items = lib.mkOption {
    default = { };
    example = lib.literalExpression ''
      {
        recordings-published.path = "/var/lib/venue-bbb/bigbluebutton/published";
        "portal.sqlite" = {
          path = "/var/lib/venue-portal/archive.sqlite";
          dump = "venue-portal-ctl backup /var/lib/venue-portal/archive.sqlite";
        };
      }
    '';
    description = ''
      What this host holds that must be saved before it is deleted, by name
      (the name is its place in the organiser's archive: letters, digits,
      '.', '_' and '-').
    '';
    type = lib.types.attrsOf (lib.types.submodule {
      options = {
        path = lib.mkOption {
          type = lib.types.str;
          description = "Absolute path of a directory (every regular file below it) or a file.";
        };
        dump = lib.mkOption {
          type = lib.types.nullOr lib.types.str;
          default = null;
          description = "Shell command, run as root before the copy, that writes `path` (a consistent dump of a live database).";
        };
      };
    });
  };

  config = {
    assertions = lib.mapAttrsToList
      (name: item: {
        assertion = builtins.match "[A-Za-z0-9._-]+" name != null && name != "." && name != ".."
          && lib.hasPrefix "/" item.path;
        message = "services.venue.archive.items.${name}: the name must be a plain file name and the path absolute (${item.path})";
      })
      cfg.items;

    # Always present, also empty: a host without the file is one whose
    # system venue cannot read, and `venue down` keeps it.
    environment.etc."venue/archive.json".text = builtins.toJSON { inherit (cfg) items; };
  };
}
