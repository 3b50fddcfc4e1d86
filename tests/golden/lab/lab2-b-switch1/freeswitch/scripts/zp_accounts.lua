-- managed by zpctl — do not edit; rendered from the inventory
-- Switch lab2-b-switch1's accounts, live from the platform database (pgsql://host=127.1.0.5 port=5432 dbname=zpctl user=kamailio connect_timeout=2).
-- `zpctl accounts sync` writes each account's dialplan context and directory domain as
-- switch_xml rows.  This script (mod_lua's startup-script, its own thread) asks every
-- 500 ms for the rows' digests, copies a changed document into
-- /srv/zpctl-lab/nodes/lab2-b-switch1/state/freeswitch/accounts, removes one the database no longer has, and reloads the XML at the
-- next poll that finds nothing new:
-- freeswitch.xml includes that folder before the deployed files, so a user, device or DID
-- changed in the database is live here in about a second, with no restart or redeploy.
-- The database unreachable: the copies from the last answer stay in force (a restart
-- reads them too), then the deployed files.
local folder = "/srv/zpctl-lab/nodes/lab2-b-switch1/state/freeswitch/accounts"
local query = "SELECT section, name, digest FROM switch_xml WHERE node = 'lab2-b-switch1'"
local api = freeswitch.API()
local known = {}  -- "section/name" -> digest of the copy in the folder
local down = false
-- Copies written since the last reload.  The reload waits for a poll that finds nothing
-- new: changes that come in a burst (several syncs) cost one reload, and the reload (a
-- reparse of every XML file) does not land on the moment of the sync itself.
local pending = {}

-- Once, at start (a fork of FreeSWITCH: never in the loop): the folders, and the copies
-- a previous run left, which the first poll keeps or removes like any other.
os.execute("mkdir -p '" .. folder .. "/dialplan' '" .. folder .. "/directory'")
for _, section in ipairs({"dialplan", "directory"}) do
  local ls = io.popen("ls '" .. folder .. "/" .. section .. "'")
  for file in ls:lines() do
    if file:match("%.xml$") then
      known[section .. "/" .. file:gsub("%.xml$", "")] = "left by a previous run"
    end
  end
  ls:close()
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  return text
end

local function write(path, text)
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "wb"))
  f:write(text)
  f:close()
  assert(os.rename(tmp, path))
end

-- names are contexts and domains: nothing a path or a quote could hide in
local function safe(s)
  return s:match("^[%w%.%-_]+$") ~= nil
end

local function reload()
  local reply = api:execute("reloadxml", "")
  freeswitch.consoleLog("NOTICE", "zp_accounts: " .. table.concat(pending, ", ")
    .. " from the platform database; reloadxml: " .. reply)
  pending = {}
end

local function poll()
  local dbh = freeswitch.Dbh("pgsql://host=127.1.0.5 port=5432 dbname=zpctl user=kamailio connect_timeout=2")
  if not dbh:connected() then
    if #pending > 0 then reload() end
    if not down then
      freeswitch.consoleLog("WARNING", "zp_accounts: platform database unreachable; "
        .. "keeping the account documents in " .. folder .. "\n")
    end
    down = true
    return
  end
  down = false
  local rows = {}
  dbh:query(query, function(row) rows[#rows + 1] = row end)
  local seen, changed = {}, {}
  for _, row in ipairs(rows) do
    if (row.section == "dialplan" or row.section == "directory") and safe(row.name) then
      local key = row.section .. "/" .. row.name
      seen[key] = true
      if known[key] ~= row.digest then
        local body
        dbh:query("SELECT body FROM switch_xml WHERE node = 'lab2-b-switch1' AND section = '"
          .. row.section .. "' AND name = '" .. row.name .. "'", function(r) body = r.body end)
        if body then
          local path = folder .. "/" .. key .. ".xml"
          if read(path) ~= body then
            write(path, body)
            changed[#changed + 1] = key
          end
          known[key] = row.digest
        end
      end
    end
  end
  dbh:release()
  for key in pairs(known) do
    if not seen[key] then
      os.remove(folder .. "/" .. key .. ".xml")
      known[key] = nil
      changed[#changed + 1] = key .. " (removed)"
    end
  end
  if #changed > 0 then
    for _, key in ipairs(changed) do pending[#pending + 1] = key end
  elseif #pending > 0 then
    reload()
  end
end

while freeswitch.running() do
  local ok, err = pcall(poll)
  if not ok then
    freeswitch.consoleLog("ERR", "zp_accounts: " .. tostring(err) .. "\n")
  end
  -- the database away: ask every 5 s, not twice a second (each failed connection is a
  -- CRIT line in the switch's log)
  freeswitch.msleep(down and 5000 or 500)
end
