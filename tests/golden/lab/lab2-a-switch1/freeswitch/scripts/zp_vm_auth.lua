-- managed by zpctl — do not edit; rendered from the inventory
-- Voicemail PIN brute-force protection across calls.  mod_voicemail limits wrong PINs per
-- call only; here every wrong PIN for a box is counted in mod_db's store, which the data
-- center's switches share.  After the account's limit of wrong PINs in a row the box is
-- locked until `zpctl voicemail unlock`; a right PIN resets the count.  A call that tries
-- a locked box is ended, whatever it entered.
if event:getHeader("VM-Action") ~= "authentication" then
  return
end
local limits = {
  ["acme.lab.zpctl.test"] = 3,
  ["globex.lab.zpctl.test"] = 6,
  ["initech.lab.zpctl.test"] = 6,
  ["loadco.lab.zpctl.test"] = 6,
}
local domain = event:getHeader("VM-Domain") or ""
local box = (event:getHeader("VM-User") or "") .. "@" .. domain
local api = freeswitch.API()
local uuid = event:getHeader("Unique-ID")

local function reject()
  if uuid then
    api:execute("uuid_kill", uuid .. " CALL_REJECTED")
  end
end

if api:execute("db", "select/zp_vmlock/" .. box) == "locked" then
  freeswitch.consoleLog("WARNING", "voicemail box " .. box .. " is locked: call ended\n")
  reject()
  return
end
if event:getHeader("VM-Auth-Result") == "success" then
  api:execute("db", "delete/zp_vmfail/" .. box)
  return
end
local fails = (tonumber(api:execute("db", "select/zp_vmfail/" .. box)) or 0) + 1
api:execute("db", "insert/zp_vmfail/" .. box .. "/" .. fails)
if fails >= (limits[domain] or 6) then
  api:execute("db", "insert/zp_vmlock/" .. box .. "/locked")
  freeswitch.consoleLog("WARNING", "voicemail box " .. box .. " locked after " .. fails ..
                        " wrong PINs\n")
  reject()
end
