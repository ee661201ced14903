-- wrk script: POST /api/embed with WRK_PER_REQUEST texts per request (default 1), cycling through
-- WRK_TEXTS (one text per line). benchmarks/load.py --client wrk writes that file from the same
-- STS-B sentences as its other clients and runs wrk with this script; by hand:
--   WRK_TEXTS=texts.txt wrk -t1 -c32 -d10s --latency -s benchmarks/wrk_embed.lua http://127.0.0.1:11434
local path = os.getenv("WRK_TEXTS") or error("set WRK_TEXTS to a file of texts, one per line")
local model = os.getenv("WRK_MODEL") or "all-minilm"
local per_request = tonumber(os.getenv("WRK_PER_REQUEST") or "1")
local texts = {}
for line in io.lines(path) do
  if #line > 0 then table.insert(texts, line) end
end
local function quote(s)
  return '"' .. s:gsub('\\', '\\\\'):gsub('"', '\\"') .. '"'
end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local batch = {}
  for _ = 1, per_request do
    i = i % #texts + 1
    table.insert(batch, quote(texts[i]))
  end
  local body = '{"model":"' .. model .. '","input":[' .. table.concat(batch, ",") .. ']}'
  return wrk.format(nil, "/api/embed", nil, body)
end
