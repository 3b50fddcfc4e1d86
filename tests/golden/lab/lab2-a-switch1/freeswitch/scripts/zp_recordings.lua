-- managed by zpctl — do not edit; rendered from the inventory
-- The call-recording index, shared by the data center's switches (sqlite:///srv/zpctl-lab/shared/recordings.db).
-- As a RECORD_STOP hook: one row per recording this switch made (path, switch, account,
-- parties, start, duration read from the file).  As an API (`lua zp_recordings.lua list
-- [account]` over ESL, what `zpctl recordings ls` runs): the rows as JSON lines.
local dbh = freeswitch.Dbh("sqlite:///srv/zpctl-lab/shared/recordings.db")
if not dbh:connected() then
  freeswitch.consoleLog("ERR", "zp_recordings: cannot open sqlite:///srv/zpctl-lab/shared/recordings.db\n")
  if stream then
    stream:write("-ERR cannot open the recording index sqlite:///srv/zpctl-lab/shared/recordings.db\n")
  end
  return
end
dbh:query([[CREATE TABLE IF NOT EXISTS recordings (
  uuid TEXT, account TEXT, path TEXT, switch TEXT, caller TEXT, callee TEXT,
  started INTEGER, duration_ms INTEGER)]])

local function q(s)
  return "'" .. tostring(s or ""):gsub("'", "''") .. "'"
end

-- a WAV file's length: its data bytes over the byte rate of its header
local function wav_ms(path)
  local f = io.open(path, "rb")
  if not f then return 0 end
  local head = f:read(44) or ""
  local size = f:seek("end")
  f:close()
  if #head < 44 then return 0 end
  local b = {head:byte(29, 32)}
  local rate = b[1] + b[2] * 256 + b[3] * 65536 + b[4] * 16777216
  if rate == 0 then return 0 end
  return math.floor((size - 44) * 1000 / rate)
end

if event then
  local path = event:getHeader("Record-File-Path") or ""
  local ms = wav_ms(path)
  -- the event comes when the recording stops: it started its length before
  local stopped = (tonumber(event:getHeader("Event-Date-Timestamp")) or 0) / 1000000
  dbh:query("INSERT INTO recordings VALUES (" .. table.concat({
    q(event:getHeader("Unique-ID")), q(event:getHeader("variable_zp_account")
                                       or path:match("/([^/]+)/[^/]+/[^/]+$")),
    q(path), q("lab2-a-switch1"), q(event:getHeader("Caller-Caller-ID-Number")),
    q(event:getHeader("Caller-Destination-Number")),
    tostring(math.floor(stopped - ms / 1000)), tostring(ms)}, ", ") .. ")")
elseif stream then
  local account = argv[2]
  local sql = "SELECT uuid, account, path, switch, caller, callee, started, duration_ms " ..
              "FROM recordings" .. (account and (" WHERE account = " .. q(account)) or "") ..
              " ORDER BY started"
  local function js(s)
    return '"' .. tostring(s or ""):gsub('[%c"\\]', function(c)
      return string.format("\\u%04x", c:byte())
    end) .. '"'
  end
  dbh:query(sql, function(row)
    stream:write("{" .. table.concat({
      '"uuid": ' .. js(row.uuid), '"account": ' .. js(row.account), '"path": ' .. js(row.path),
      '"switch": ' .. js(row.switch), '"caller": ' .. js(row.caller),
      '"callee": ' .. js(row.callee), '"started": ' .. (row.started or "0"),
      '"duration_ms": ' .. (row.duration_ms or "0")}, ", ") .. "}\n")
  end)
end
dbh:release()
