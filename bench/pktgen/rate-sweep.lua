-- pktgen-dpdk Lua: find the highest offered rate (percent of line rate) that port `rx`
-- receives with < 0.1 % loss, then hold 10/50/90 % of it for 10 s each and print the counters.
-- Run: pktgen ... -f bench/pktgen/rate-sweep.lua   (ports: tx = "0", rx = "1")
package.path = package.path .. ";?.lua;test/?.lua;app/?.lua;"
require "Pktgen"

local tx, rx = "0", "1"

local function measure(rate, secs)
  pktgen.set(tx, "rate", rate)
  pktgen.clr()
  pktgen.start(tx)
  pktgen.delay(secs * 1000)
  pktgen.stop(tx)
  pktgen.delay(500)
  local s = pktgen.portStats("all", "port")
  local sent, got = s[tonumber(tx)].opackets, s[tonumber(rx)].ipackets
  local loss = 1 - got / math.max(sent, 1)
  printf("rate %5.1f %%: tx %d rx %d loss %.4f\n", rate, sent, got, loss)
  return loss
end

local lo, hi = 0, 100
for _ = 1, 8 do
  local mid = (lo + hi) / 2
  if measure(mid, 3) < 0.001 then lo = mid else hi = mid end
end
printf("zero-loss maximum: %.1f %% of line rate\n", lo)
for _, f in ipairs({0.1, 0.5, 0.9}) do
  measure(lo * f, 10)
end
