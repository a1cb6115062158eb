"""The distributed workloads on dask.distributed (the peer tessera-bench-distributed is
compared with): LocalCluster(n_workers=2, threads_per_worker=1, processes=True).

    /usr/bin/python3 dask_peer.py --bench map|roundtrip|graph|chain --n N

Same workloads as benchmarks/distributed/tessera.cpp, same checks; prints JSON lines.
"""
import argparse
import json
import logging
import statistics
import sys
import time


def inc(x):
    return x + 1


def add(x, y):
    return x + y


def emit(bench, n, value, unit):
    print(json.dumps({"bench": "distributed." + bench, "impl": "dask",
                      "params": {"n": n, "n_workers": 2, "threads_per_worker": 1, "bench": bench},
                      "value": value, "unit": unit}), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bench", default="map")
    p.add_argument("--n", type=int, default=10000)
    a = p.parse_args()
    logging.getLogger("distributed").setLevel(logging.ERROR)
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.gather(client.map(inc, [-1, -2, -3, -4]))  # warm up
        n = a.n
        if a.bench == "map":
            t0 = time.perf_counter()
            out = client.gather(client.map(inc, range(n)))
            dt = time.perf_counter() - t0
            assert out == [i + 1 for i in range(n)]
            emit("map", n, n / dt, "tasks/s")
        elif a.bench == "roundtrip":
            us = []
            for i in range(n):
                t0 = time.perf_counter()
                r = client.submit(inc, 1000000 + i).result()
                us.append((time.perf_counter() - t0) * 1e6)
                assert r == 1000001 + i
            emit("roundtrip", n, statistics.median(us), "us")
        elif a.bench in ("graph", "chain"):
            dsk = {}
            if a.bench == "chain":
                dsk[("chain", 0)] = (inc, 0)
                for i in range(1, n):
                    dsk[("chain", i)] = (add, ("chain", i - 1), 1)
                out, want, tasks = ("chain", n - 1), n, n
            else:
                level = []
                for i in range(n):
                    dsk[("inc", i)] = (inc, i)
                    level.append(("inc", i))
                tasks, depth = n, 0
                while len(level) > 1:
                    nxt = []
                    for j in range(0, len(level), 2):
                        if j + 1 == len(level):
                            nxt.append(level[j])
                            continue
                        k = ("add-%d" % depth, j // 2)
                        dsk[k] = (add, level[j], level[j + 1])
                        nxt.append(k)
                        tasks += 1
                    level, depth = nxt, depth + 1
                out, want = level[0], n * (n + 1) // 2
            t0 = time.perf_counter()
            r = client.get(dsk, out)
            dt = time.perf_counter() - t0
            assert r == want, (r, want)
            if a.bench == "chain":
                emit("chain", n, dt / tasks * 1e6, "us/task")
            else:
                emit("graph", n, tasks / dt, "tasks/s")
        else:
            sys.exit("unknown --bench " + a.bench)


if __name__ == "__main__":
    main()
