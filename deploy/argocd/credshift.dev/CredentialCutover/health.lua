-- Argo CD health check for credshift.dev/v1alpha1 CredentialCutover.
-- Argo CD runs it with the live object in `obj` and reads {status, message}.
-- Plain Lua 5.1 (Argo CD's gopher-lua); tested with lua5.1 and lua5.4 by
-- tests/deploy.rs against testdata/ and against live objects.
--
--   no status yet, or status older than the spec   -> Progressing
--   Stalled=True or phase Failed (invalid spec)    -> Degraded
--   phase Suspended (spec.suspend, or the window
--     was exceeded with onWindowExceeded: Suspend) -> Suspended
--   phase Scheduled (valid, waiting for `at`)      -> Healthy
--   Ready=True (phase Completed)                   -> Healthy
--   phase Running (dual read on, backfilling)      -> Progressing
--
-- A valid Scheduled cutover is Healthy on purpose: it is declared weeks
-- ahead, and an Application must not sit Progressing (blocking later sync
-- waves and alerting) until the date. The split itself shows as Progressing
-- while it runs.
local hs = {}

local function condition(conditions, kind)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the credshift controller to report status"
  return hs
end
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = string.format("Waiting for the credshift controller to observe generation %d", generation)
  return hs
end

local ready = condition(status.conditions, "Ready")
local stalled = condition(status.conditions, "Stalled")
local readyMessage = (ready ~= nil and ready.message) or ""

if (stalled ~= nil and stalled.status == "True") or status.phase == "Failed" then
  hs.status = "Degraded"
  if stalled ~= nil and stalled.status == "True" then
    hs.message = stalled.message
  else
    hs.message = readyMessage
  end
  return hs
end

if status.phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = readyMessage
  return hs
end

if status.phase == "Scheduled" then
  hs.status = "Healthy"
  hs.message = "Scheduled: " .. readyMessage
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = readyMessage
  return hs
end

hs.status = "Progressing"
if status.phase == "Running" then
  local parts = { "Running" }
  if status.progress ~= nil and status.progress.summary ~= nil then
    table.insert(parts, status.progress.summary .. " accounts split")
  end
  if status.eta ~= nil then
    table.insert(parts, "ETA " .. status.eta)
  end
  if status.windowExceeded == true then
    table.insert(parts, "window exceeded, continuing")
  end
  hs.message = table.concat(parts, "; ")
elseif readyMessage ~= "" then
  hs.message = readyMessage
else
  hs.message = "Waiting for the credshift controller"
end
return hs
