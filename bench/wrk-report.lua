-- wrk script: print one machine-readable summary line for bench/run.sh.
-- Latency percentiles are in microseconds, as wrk records them.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%.1f p99_us=%.1f mean_us=%.1f\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50.0), latency:percentile(99.0), latency.mean))
end
