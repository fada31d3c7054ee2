-- Prints one machine-readable line after a run, for bench/edge.sh:
-- EDGE <req/s> <p50 us> <p99 us> <non-2xx/3xx> <socket errors>
-- Headers come from wrk's -H; the method is GET.
function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format("EDGE %.0f %d %d %d %d\n",
    summary.requests / secs, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
