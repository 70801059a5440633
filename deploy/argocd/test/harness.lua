-- Runs an Argo CD health check (health.lua) the way Argo CD does: with the
-- object in the global `obj`, in an environment holding only the libraries
-- Argo CD's Lua VM offers (base functions, string, table, math), and reads
-- the returned {status, message}. Plain Lua 5.1 so that it runs where the
-- checks must run (lua5.1, like Argo CD's gopher-lua) and on lua5.4.
--
--   lua5.4 harness.lua HEALTH_LUA FIXTURE.json...
--       Each fixture is {"description": ..., "expected": {"status": ...,
--       "message": ...}, "obj": {...}}. Prints one line per fixture; exits
--       1 when any differs.
--   lua5.4 harness.lua --eval HEALTH_LUA OBJECT.json
--       Prints "STATUS<TAB>MESSAGE" for one object (e.g. `kubectl get -o json`).

-- A small JSON decoder: null becomes nil (absent), as in Argo CD.
local function decode(text)
  local pos = 1
  local value

  local function fail(what)
    error(string.format("JSON: %s at byte %d", what, pos), 0)
  end

  local function space()
    pos = string.find(text, "[^ \t\r\n]", pos) or (#text + 1)
  end

  local function utf8char(code)
    if code < 0x80 then
      return string.char(code)
    elseif code < 0x800 then
      return string.char(0xC0 + math.floor(code / 0x40), 0x80 + code % 0x40)
    elseif code < 0x10000 then
      return string.char(0xE0 + math.floor(code / 0x1000), 0x80 + math.floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
    end
    return string.char(
      0xF0 + math.floor(code / 0x40000),
      0x80 + math.floor(code / 0x1000) % 0x40,
      0x80 + math.floor(code / 0x40) % 0x40,
      0x80 + code % 0x40
    )
  end

  local escapes = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

  local function str()
    pos = pos + 1
    local out = {}
    while true do
      local c = string.sub(text, pos, pos)
      if c == "" then
        fail("unterminated string")
      elseif c == '"' then
        pos = pos + 1
        return table.concat(out)
      elseif c == "\\" then
        local e = string.sub(text, pos + 1, pos + 1)
        if e == "u" then
          local code = tonumber(string.sub(text, pos + 2, pos + 5), 16) or fail("bad \\u escape")
          pos = pos + 6
          if code >= 0xD800 and code < 0xDC00 and string.sub(text, pos, pos + 1) == "\\u" then
            local low = tonumber(string.sub(text, pos + 2, pos + 5), 16) or fail("bad \\u escape")
            code = 0x10000 + (code - 0xD800) * 0x400 + (low - 0xDC00)
            pos = pos + 6
          end
          table.insert(out, utf8char(code))
        else
          table.insert(out, escapes[e] or fail("bad escape"))
          pos = pos + 2
        end
      else
        local stop = string.find(text, '["\\]', pos) or fail("unterminated string")
        table.insert(out, string.sub(text, pos, stop - 1))
        pos = stop
      end
    end
  end

  function value()
    space()
    local c = string.sub(text, pos, pos)
    if c == "{" then
      local t = {}
      pos = pos + 1
      space()
      if string.sub(text, pos, pos) == "}" then
        pos = pos + 1
        return t
      end
      while true do
        space()
        if string.sub(text, pos, pos) ~= '"' then
          fail("expected a key")
        end
        local k = str()
        space()
        if string.sub(text, pos, pos) ~= ":" then
          fail("expected ':'")
        end
        pos = pos + 1
        t[k] = value()
        space()
        c = string.sub(text, pos, pos)
        pos = pos + 1
        if c == "}" then
          return t
        elseif c ~= "," then
          fail("expected ',' or '}'")
        end
      end
    elseif c == "[" then
      local t = {}
      pos = pos + 1
      space()
      if string.sub(text, pos, pos) == "]" then
        pos = pos + 1
        return t
      end
      local n = 0
      while true do
        n = n + 1
        t[n] = value()
        space()
        c = string.sub(text, pos, pos)
        pos = pos + 1
        if c == "]" then
          return t
        elseif c ~= "," then
          fail("expected ',' or ']'")
        end
      end
    elseif c == '"' then
      return str()
    elseif string.sub(text, pos, pos + 3) == "true" then
      pos = pos + 4
      return true
    elseif string.sub(text, pos, pos + 4) == "false" then
      pos = pos + 5
      return false
    elseif string.sub(text, pos, pos + 3) == "null" then
      pos = pos + 4
      return nil
    end
    local s, e = string.find(text, "^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    if not s then
      fail("unexpected character")
    end
    pos = e + 1
    return tonumber(string.sub(text, s, e))
  end

  local v = value()
  space()
  if pos <= #text then
    fail("trailing characters")
  end
  return v
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("*a")
  f:close()
  return text
end

-- Runs the check on `object` with only what Argo CD's VM provides.
local function check(script, object)
  local env = {
    obj = object,
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
    pcall = pcall, select = select, tonumber = tonumber, tostring = tostring,
    type = type, unpack = unpack or table.unpack,
    string = string, table = table, math = math,
  }
  local chunk, err
  if setfenv then
    chunk, err = loadstring(script.source, "@" .. script.path)
    if chunk then
      setfenv(chunk, env)
    end
  else
    chunk, err = load(script.source, "@" .. script.path, "t", env)
  end
  if not chunk then
    error(err, 0)
  end
  local hs = chunk()
  if type(hs) ~= "table" or type(hs.status) ~= "string" or type(hs.message) ~= "string" then
    error(script.path .. ": did not return {status = string, message = string}", 0)
  end
  return hs
end

local args = { ... }
if args[1] == "--eval" then
  local script = { path = args[2], source = read(args[2]) }
  local hs = check(script, decode(read(args[3])))
  io.write(hs.status, "\t", hs.message, "\n")
  return
end

local script = { path = args[1], source = read(args[1]) }
local failed = 0
for i = 2, #args do
  local ok, result = pcall(function()
    local fixture = decode(read(args[i]))
    local hs = check(script, fixture.obj)
    local want = fixture.expected
    if hs.status ~= want.status or hs.message ~= want.message then
      return string.format(
        "got {status = %q, message = %q}, want {status = %q, message = %q}",
        hs.status, hs.message, tostring(want.status), tostring(want.message)
      )
    end
    return nil
  end)
  if not ok then
    result = "error: " .. tostring(result)
  end
  if result then
    failed = failed + 1
    io.write("FAIL ", args[i], ": ", result, "\n")
  else
    io.write("ok   ", args[i], "\n")
  end
end
io.write(string.format("%d passed, %d failed\n", #args - 1 - failed, failed))
if failed > 0 then
  os.exit(1)
end
