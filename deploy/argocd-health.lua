-- Argo CD health check for sagemaker.mce.dev/MultiContainerEndpoint (see deploy/README.md for argocd-cm).
-- Progressing: being deleted, not yet observed at its current generation, or SageMaker is working.
-- Degraded:    the Degraded condition is True (its message says what to do).
-- Healthy:     the Ready condition is True (InService on the desired endpoint config).
local hs = {}

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Deleting the SageMaker endpoint"
  return hs
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
  return hs
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
if generation ~= nil and obj.status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local conditions = {}
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    -- A condition written for an older generation says nothing about the current spec.
    local stale = generation ~= nil and condition.observedGeneration ~= nil
      and condition.observedGeneration ~= generation
    if condition.type ~= nil and not stale then
      conditions[condition.type] = condition
    end
  end
end

local function message_of(condition, default)
  if condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  if condition.reason ~= nil and condition.reason ~= "" then
    return condition.reason
  end
  return default
end

local progressing = conditions["Progressing"]
if progressing ~= nil and progressing.status == "True" then
  hs.status = "Progressing"
  hs.message = message_of(progressing, "SageMaker is working")
  return hs
end

local degraded = conditions["Degraded"]
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = message_of(degraded, "Degraded")
  return hs
end

local ready = conditions["Ready"]
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message_of(ready, "InService")
  return hs
end

hs.status = "Progressing"
hs.message = "Waiting for the endpoint to become Ready"
return hs
