-- managed by zpctl — do not edit; rendered from the inventory
-- MESSAGE_WAITING (a message left, heard or deleted on this switch) becomes a NOTIFY for
-- message-summary to the box's user, sent to this zone's proxy (the user is in the To
-- header), which delivers it to every contact the user has registered.  Phones register with the proxies, not with the
-- switches, so FreeSWITCH's own MWI (for its registrations and subscriptions) finds nobody.
local account = event:getHeader("MWI-Message-Account") or ""
local user, host = account:match("^sip:([^@]+)@(.+)$")
if not user then
  user, host = account:match("^([^@]+)@(.+)$")
end
if not user then
  return
end
local waiting = event:getHeader("MWI-Messages-Waiting") or "no"
local counts = event:getHeader("MWI-Voice-Message") or "0/0"
local aor = "sip:" .. user .. "@" .. host
local notify = freeswitch.Event("NOTIFY")
notify:addHeader("profile", "zpctl")
notify:addHeader("contact-uri", "sip:" .. user .. "@127.0.1.21:5061;transport=tls")
notify:addHeader("to-uri", "<" .. aor .. ">")
notify:addHeader("from-uri", "<" .. aor .. ">")
notify:addHeader("event-string", "message-summary")
notify:addHeader("content-type", "application/simple-message-summary")
notify:addBody("Messages-Waiting: " .. waiting .. "\r\nMessage-Account: " .. aor ..
               "\r\nVoice-Message: " .. counts .. "\r\n")
notify:fire()
