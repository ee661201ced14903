-- wrk script: POST /api/embed with one short STS-B-like text per request, cycling through a
-- fixed list so batches mix lengths. Usage (server already running):
--   wrk -t2 -c32 -d10s -s benchmarks/wrk_embed.lua http://127.0.0.1:11434
local texts = {}
local path = os.getenv("WRK_TEXTS") or "benchmarks/wrk_texts.txt"
for line in io.lines(path) do
  if #line > 0 then table.insert(texts, line) end
end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local function quote(s)
  return '"' .. s:gsub('\\', '\\\\'):gsub('"', '\\"') .. '"'
end
request = function()
  i = i % #texts + 1
  return wrk.format(nil, "/api/embed", nil, '{"model":"all-minilm","input":' .. quote(texts[i]) .. '}')
end
