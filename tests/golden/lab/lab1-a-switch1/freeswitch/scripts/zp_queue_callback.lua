-- managed by zpctl — do not edit; rendered from the inventory
-- A queue caller who pressed the callback key has hung up; this waits (luarun: its own
-- thread) until one of the queue's agents is available and idle, then calls the caller
-- back and puts the answered call into the queue, where that agent is offered it first.
-- Arguments: queue, queue extension, dialplan context, caller extension, account domain,
-- the caller ID to show, the longest wait in seconds.
local queue, ext, context, caller, domain, cid, limit =
  argv[1], argv[2], argv[3], argv[4], argv[5], argv[6], tonumber(argv[7]) or 3600
if not (queue and ext and context and caller and domain and cid) then
  freeswitch.consoleLog("ERR", "zp_queue_callback: missing arguments\n")
  return
end
local api = freeswitch.API()
local deadline = os.time() + limit
while os.time() < deadline do
  local free = tonumber(api:executeString(
    "callcenter_config queue count agents " .. queue .. " Available Waiting")) or 0
  if free > 0 then
    freeswitch.consoleLog("NOTICE", "zp_queue_callback: calling " .. caller .. "@" .. domain ..
                          " back for " .. queue .. "\n")
    api:executeString("originate {origination_caller_id_number=" .. cid ..
                      ",origination_caller_id_name=Callback,zp_rendezvous_here=true" ..
                      ",zp_queue_callback=true,originate_timeout=30,leg_timeout=30}user/" .. caller .. "@" ..
                      domain .. " " .. ext .. " XML " .. context)
    return
  end
  freeswitch.msleep(1000)
end
freeswitch.consoleLog("WARNING", "zp_queue_callback: no agent of " .. queue .. " became free for " ..
                      caller .. "@" .. domain .. "; no callback\n")
