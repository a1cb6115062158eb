"""The array workloads on dask.array + NumPy (the peer tessera's array layer is compared with).

    /usr/bin/python3 dask_peer.py --workload sum_ones|matmul|mean|std|rechunk|random_sum|blas
                                  [--n N] [--chunk C] [--rows R] [--workers W] [--prefault-mb M]
                                  [--inner I]

The same workloads, sizes, timed regions and prefault as tessera-bench-array (see its
header): one per process, computed on dask's threaded scheduler with W workers. Run it with BLAS and OpenMP at
one thread (OPENBLAS_NUM_THREADS=1, OMP_NUM_THREADS=1; benchmarks/run sets them) so dask's
threads do not oversubscribe the cores, as tessera runs BLAS at one thread per task.
`blas` only reports the BLAS library NumPy loaded and its OpenBLAS kernel. Prints JSON lines;
a wrong result exits with status 1.
"""
import argparse
import ctypes
import json
import math
import os
import resource
import statistics
import time


def blas_info():
    """The BLAS library NumPy loaded and, for OpenBLAS, its kernel (openblas_get_corename)."""
    import numpy

    numpy.dot(numpy.ones((2, 2)), numpy.ones((2, 2)))  # BLAS is loaded by now
    libs = []
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            name = os.path.basename(path)
            if ("blas" in name or "lapack" in name) and path not in libs:
                libs.append(path)
    core = "unknown"
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
            fn = lib.openblas_get_corename
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_char_p
        core = fn().decode()
        break
    return {"numpy": numpy.__version__, "blas_libs": libs, "blas_core": core}


def prefault(mb):
    """Touches and frees `mb` MiB before a timed region, as tessera-bench-array does (see its
    prefault(): on a VM with free page reporting, memory not used lately is slow to touch)."""
    if mb > 0:
        import numpy

        a = numpy.ones((mb << 20) // 8)  # NumPy asks for huge pages on large arrays, as tessera
        del a


def median_time(inner, f):
    """Runs f `inner` times; returns (median seconds, last result), as tessera-bench-array."""
    ts, r = [], None
    for _ in range(max(1, inner)):
        t0 = time.perf_counter()
        r = f()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), r


def check_close(what, got, want, rel):
    if not abs(got - want) <= rel * abs(want):
        raise SystemExit("%s: wrong result %r, expected about %r" % (what, got, want))


def emit(bench, params, value, unit):
    print(json.dumps({"bench": bench, "impl": "dask", "params": params, "value": value, "unit": unit}), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workload", required=True)
    p.add_argument("--n", type=int, default=0)
    p.add_argument("--chunk", type=int, default=0)
    p.add_argument("--rows", type=int, default=0)
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--prefault-mb", type=int, default=0)
    p.add_argument("--inner", type=int, default=1)
    a = p.parse_args()
    import dask
    import dask.array as da
    import numpy as np

    info = blas_info()
    if a.workload == "blas":
        print(json.dumps({"bench": "array.blas", "impl": "dask", "params": dict(
            info, coretype_env=os.environ.get("OPENBLAS_CORETYPE", "unset (auto-detected)"))}), flush=True)
        return
    dask.config.set(scheduler="threads", num_workers=a.workers)
    common = {"workers": a.workers, "dask": dask.__version__, "numpy": np.__version__, "blas_core": info["blas_core"],
              "coretype_env": os.environ.get("OPENBLAS_CORETYPE", "unset (auto-detected)"),
              "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "unset"),
              "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"), "prefault_mb": a.prefault_mb,
              "inner": a.inner}
    w = a.workload
    if w == "sum_ones":
        n, c = a.n or 20000, a.chunk or 2000
        prefault(a.prefault_mb)
        t, v = median_time(a.inner, lambda: da.ones((n, n), chunks=c).sum().compute())
        if v != n * n:
            raise SystemExit("sum_ones: wrong result %r" % v)
        emit("array.sum_ones.time", dict(common, shape=[n, n], chunks=[c, c]), t, "s")
    elif w == "matmul":
        n, c = a.n or 8000, a.chunk or 1000
        prefault(a.prefault_mb)
        t0 = time.perf_counter()
        X = da.random.random((n, n), chunks=c)
        v = ((X.T @ X) + X.T).sum().compute()
        t = time.perf_counter() - t0
        check_close("matmul", v, n * (n * n / 4 + n / 12) + n * n / 2, 0.01)
        params = dict(common, shape=[n, n], chunks=[c, c], flops="2 n^3 (the matmul)", timed="random X included")
        emit("array.matmul.time", params, t, "s")
        emit("array.matmul.gflops", params, 2.0 * n ** 3 / t / 1e9, "GFLOP/s")
    elif w in ("mean", "std"):
        n, c = a.n or 10000, a.chunk or 1000
        x = da.random.random((n, n), chunks=c).persist()
        prefault(a.prefault_mb)
        t, r = median_time(a.inner, lambda: x.mean(axis=0).compute() if w == "mean" else x.std().compute())
        if w == "mean":
            if r.shape != (n,) or not np.all(np.abs(r - 0.5) <= 0.05):
                raise SystemExit("mean: wrong result")
        else:
            check_close("std", float(r), math.sqrt(1 / 12), 0.01)
        name = "array.mean_axis0" if w == "mean" else "array.std"
        params = dict(common, shape=[n, n], chunks=[c, c], timed="the reduction of a persisted array")
        emit(name + ".time", params, t, "s")
        emit(name + ".bandwidth", params, 8.0 * n * n / t / 1e9, "GB/s")
    elif w == "rechunk":
        n, c = a.n or 10000, a.chunk or 1000
        x = da.random.random((n, n), chunks=(c, n)).persist()
        prefault(a.prefault_mb)
        t0 = time.perf_counter()
        y = x.rechunk((n, c)).persist()
        t = time.perf_counter() - t0
        if y.chunksize != (n, c) or not np.allclose(y.sum(axis=1).compute(), x.sum(axis=1).compute(), rtol=1e-12):
            raise SystemExit("rechunk: wrong result")
        emit("array.rechunk.time", dict(common, shape=[n, n], from_chunks=[c, n], to_chunks=[n, c],
                                        timed="rechunk(...).persist() of a persisted array"), t, "s")
    elif w == "random_sum":
        rows, n, c = a.rows or 100000, a.n or 10000, a.chunk or 1000
        cr = max(1, rows // 10)
        prefault(a.prefault_mb)  # counts in the peak: benchmarks/run passes 0 here
        t0 = time.perf_counter()
        v = da.random.random((rows, n), chunks=(cr, c)).sum().compute()
        t = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        check_close("random_sum", v, rows * n / 2, 0.001)
        params = dict(common, shape=[rows, n], chunks=[cr, c], array_gb=rows * n * 8 / 1e9,
                      peak="getrusage ru_maxrss of the whole process")
        emit("array.random_sum.time", params, t, "s")
        emit("array.random_sum.peak_rss", params, peak / 1e6, "MB")
    else:
        raise SystemExit("--workload must be one of sum_ones, matmul, mean, std, rechunk, random_sum, blas")


if __name__ == "__main__":
    main()
