-- Closed-loop load for bench/verify.sh, run by wrk (C, epoll; its own CPU is
-- a fraction of a percent of what the server spends here):
--
--   wrk -t1 -cC -dS -s bench/verify_load.lua http://127.0.0.1:PORT/ -- TOKEN_FILE MEMBERS.tsv REALM PURPOSE
--
-- Each request posts /v1/verify for a random member with the right password
-- (MEMBERS.tsv: login_id<TAB>password). Prints one JSON line: verifies
-- answered ok, other answers (any non-200, or a 200 that is not
-- {"result":"ok"}), 5xx among them, transport errors, the window and
-- latency percentiles.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local bodies = {}
local headers = {}

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

function init(args)
  local f = assert(io.open(args[1]))
  local token = f:read("*l")
  f:close()
  local realm, purpose = args[3], args[4]
  for line in io.lines(args[2]) do
    local id, pw = line:match("^([^\t]+)\t(.*)$")
    if id then
      bodies[#bodies + 1] = '{"realm":' .. json_string(realm) .. ',"login_id":' .. json_string(id)
        .. ',"purpose":' .. json_string(purpose) .. ',"password":' .. json_string(pw) .. '}'
    end
  end
  assert(#bodies > 0, "no members in " .. args[2])
  headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }
  -- A different sequence per thread and per run.
  math.randomseed(os.time() + tonumber(tostring(threads):match("0x(%x+)") or "0", 16))
  ok, other, status_5xx, first_other = 0, 0, 0, ""
end

function request()
  return wrk.format("POST", "/v1/verify", headers, bodies[math.random(#bodies)])
end

function response(status, _, body)
  if status == 200 and body:find('"result":"ok"', 1, true) then
    ok = ok + 1
  else
    other = other + 1
    if status >= 500 then status_5xx = status_5xx + 1 end
    if first_other == "" then first_other = status .. " " .. body:sub(1, 200) end
  end
end

function done(summary, latency, _)
  local total = { ok = 0, other = 0, status_5xx = 0 }
  local first = ""
  for _, t in ipairs(threads) do
    for k in pairs(total) do total[k] = total[k] + t:get(k) end
    if first == "" then first = t:get("first_other") end
  end
  local e = summary.errors
  local window = summary.duration / 1e6
  io.write(string.format(
    '{"ok": %d, "other": %d, "status_5xx": %d, "errors": %d, "window_s": %.3f, "rate": %.2f, '
      .. '"p50_ms": %.1f, "p99_ms": %.1f, "first_other": %s}\n',
    total.ok, total.other, total.status_5xx, e.connect + e.read + e.write + e.timeout, window,
    total.ok / window, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    json_string(first)))
end
