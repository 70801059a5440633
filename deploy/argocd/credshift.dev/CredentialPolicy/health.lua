-- Argo CD health check for credshift.dev/v1alpha1 CredentialPolicy.
-- Argo CD runs it with the live object in `obj` and reads {status, message}.
-- Plain Lua 5.1 (Argo CD's gopher-lua); tested with lua5.1 and lua5.4 by
-- tests/deploy.rs against testdata/ and against live objects.
--
--   no status yet, or status older than the spec   -> Progressing
--   Stalled=True (invalid spec: not in force)      -> Degraded
--   Ready=True (valid, in force)                   -> Healthy
--   anything else                                  -> Progressing
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

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.message
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
hs.status = "Progressing"
if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
  hs.message = ready.message
else
  hs.message = "Waiting for the credshift controller"
end
return hs
