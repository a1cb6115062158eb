"""The same shapes on dask's local schedulers (the peer tessera is compared with).

    /usr/bin/python3 dask_peer.py --shape independent|chain --n N --scheduler sync|threads [--workers W]

Graphs are plain dicts, as dask collections produce them, computed with dask.threaded.get
or dask.local.get_sync; graph construction is timed separately. Prints JSON lines.
"""
import argparse
import json
import os
import resource
import time


def inc(x):
    return x + 1


def add(x, y):
    return x + y


def rss_bytes(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def build(shape, n):
    dsk = {}
    if shape == "chain":
        dsk[("chain", 0)] = (inc, 0)
        for i in range(1, n):
            dsk[("chain", i)] = (add, ("chain", i - 1), 1)
        return dsk, ("chain", n - 1), n * 1
    for i in range(n):
        dsk[("inc", i)] = (inc, i)
    prev, width, level = "inc", n, 0
    while width > 1:
        name = "add-%d" % level
        nxt = (width + 1) // 2
        for j in range(nxt):
            if 2 * j + 1 < width:
                dsk[(name, j)] = (add, (prev, 2 * j), (prev, 2 * j + 1))
            else:
                dsk[(name, j)] = (prev, 2 * j)  # an alias, as in tessera's graph
        prev, width, level = name, nxt, level + 1
    return dsk, (prev, 0), n * (n + 1) // 2


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--shape", default="independent")
    p.add_argument("--n", type=int, default=100000)
    p.add_argument("--scheduler", default="threads")
    p.add_argument("--workers", type=int, default=os.cpu_count())
    a = p.parse_args()
    import dask
    import dask.local
    import dask.threaded

    rss0 = rss_bytes("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    t0 = time.perf_counter()
    dsk, out, want = build(a.shape, a.n)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    if a.scheduler == "sync":
        got = dask.local.get_sync(dsk, out)
        workers = 1
    else:
        got = dask.threaded.get(dsk, out, num_workers=a.workers)
        workers = a.workers
    t_run = time.perf_counter() - t0
    peak = rss_bytes("VmHWM")
    if got != want:
        raise SystemExit("wrong result %r, expected %r" % (got, want))
    tasks = len(dsk)
    params = {"shape": a.shape, "n": a.n, "tasks": tasks, "scheduler": a.scheduler, "workers": workers,
              "dask": dask.__version__}
    for bench, value, unit in [("run", t_run / tasks * 1e6, "us/task"), ("build", t_build / tasks * 1e9, "ns/task"),
                               ("peak_rss", (peak - rss0) / tasks, "bytes/task")]:
        print(json.dumps({"bench": "scheduler.%s.%s" % (a.shape, bench), "impl": "dask", "params": params,
                          "value": value, "unit": unit}), flush=True)


if __name__ == "__main__":
    main()
