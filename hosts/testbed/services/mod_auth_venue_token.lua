-- mod_auth_venue_token: prosody logs in only who brings a venue-signed JWT,
-- the way Jitsi's mod_auth_token does (token_util's HS256 path).
--
-- For `venue check` (and any client), the protocol is:
--   1. Open a BOSH session with the token in the URL:
--        POST https://<jitsi host>/http-bind?token=<JWT>
--      (or a websocket at /xmpp-websocket?token=<JWT>). The token is read
--      once, when the session is created.
--   2. Authenticate with SASL ANONYMOUS (the only mechanism offered; no
--      PLAIN, no accounts):
--        <auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>
--      -> <success/> with a valid token; <failure><not-authorized/>
--         <text>why</text></failure> without one or with a bad one.
--   The token is what conference/src/protocol/jwt.rs signs: HS256 with the
--   deployed jwt-secret, iss = aud = app id ("venue"), sub = this XMPP
--   domain, exp/nbf checked against now (60 s leeway for clock skew).
--   The guest host refuses everyone (venue has no guests): a session on the
--   same URL with to='guest.<jitsi host>' gets <not-authorized/> with
--   "guest access is disabled on this venue".
--
-- Options (per VirtualHost):
--   venue_token_secret_file = path of the HS256 secret (read at load, never in the config)
--   venue_token_app_id      = expected iss and aud (default "venue")
--   venue_token_refuse      = a reason: refuse every login on this host

local new_sasl = require "util.sasl".new;
local jwt = require "util.jwt";

local host = module.host;
local app_id = module:get_option_string("venue_token_app_id", "venue");
local refuse = module:get_option_string("venue_token_refuse", nil);
local secret_file = module:get_option_string("venue_token_secret_file", nil);
local leeway = 60;

local secret;
if not refuse then
	if not secret_file then
		error("mod_auth_venue_token on " .. host .. ": venue_token_secret_file is not set");
	end
	local f, err = io.open(secret_file, "r");
	if not f then
		error("mod_auth_venue_token on " .. host .. ": cannot read " .. secret_file .. ": " .. tostring(err));
	end
	secret = f:read("*a"):gsub("%s+$", "");
	f:close();
	if secret == "" then
		error("mod_auth_venue_token on " .. host .. ": " .. secret_file .. " is empty");
	end
end

-- The token comes in the URL of the session's first request (as in Jitsi).
local function remember_token(event)
	local session, request = event.session, event.request;
	if session.host ~= host then return; end
	local query = request.url and request.url.query;
	local token = query and query:match("[?&]?token=([^&]+)");
	session.venue_token = token;
end
module:hook_global("bosh-session", remember_token);
module:hook_global("websocket-session", remember_token);

-- nil when the token is good, else why not.
local function check(token)
	if refuse then return refuse; end
	if not token then return "no token"; end
	local ok, claims = jwt.verify(secret, token);
	if not ok then return "bad token: " .. tostring(claims); end
	local now = os.time();
	if type(claims.exp) ~= "number" or now >= claims.exp + leeway then return "token expired"; end
	if type(claims.nbf) == "number" and now + leeway < claims.nbf then return "token not valid yet"; end
	if claims.iss ~= app_id then return "token issuer is not " .. app_id; end
	if claims.aud ~= app_id and claims.aud ~= "*" then return "token audience is not " .. app_id; end
	if claims.sub ~= host and claims.sub ~= "*" then return "token is for " .. tostring(claims.sub) .. ", not " .. host; end
	if type(claims.room) ~= "string" or claims.room == "" then return "token names no room"; end
	return nil;
end

local provider = {};

-- No accounts: every password operation is refused.
function provider.test_password() return nil, "token authentication only"; end
function provider.get_password() return nil, "token authentication only"; end
function provider.set_password() return nil, "token authentication only"; end
function provider.user_exists() return nil, "token authentication only"; end
function provider.create_user() return nil, "token authentication only"; end
function provider.delete_user() return nil, "token authentication only"; end
function provider.users() return function() return nil; end; end

function provider.get_sasl_handler(session)
	local handler = new_sasl(host, { anonymous = function() return true; end });
	local process = handler.process;
	-- Checked when the client authenticates, so a refusal is a SASL failure
	-- the client sees, with the reason in <text>.
	function handler:process(message) -- luacheck: ignore 212
		local why = check(session.venue_token);
		if why then
			module:log("info", "refused a login: %s", why);
			return "failure", "not-authorized", why;
		end
		session.jitsi_meet_context_token = session.venue_token;
		return process(self, message);
	end
	return handler;
end

module:provides("auth", provider);
