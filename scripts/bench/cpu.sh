# Sourced by the benchmark scripts: CPU time of processes, from /proc.

# User + system CPU time, in ms, of the given processes (those still alive) and of their children
# that have exited and been waited for: PostgreSQL's backends that end during a run (and autovacuum
# workers) are counted in the postmaster's. Any other database on the server counts too: measure
# on an otherwise idle server.
cpu_ms() {
    local ticks=0 pid stat fields
    for pid in "$@"; do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        stat=${stat##*) }
        read -r -a fields <<< "$stat"
        # utime, stime, cutime, cstime: fields 14-17 of stat, 12-15 after "pid (comm) ".
        ticks=$((ticks + fields[11] + fields[12] + fields[13] + fields[14]))
    done
    echo $((ticks * 1000 / $(getconf CLK_TCK)))
}
