#!/usr/bin/python3
"""NumPy as the oracle of tests/array/test_oracle.cpp.

Usage: numpy_oracle.py DIR

DIR holds cases.jsonl, written by the C++ test, and its inputs: inputs_<dtype>.npy, one flat
array per dtype holding every input of that dtype back to back (thousands of small files
would be slow to open). Each line of cases.jsonl is one case, an expression tree over inputs
(a dtype, an offset into that dtype's file and a shape) and Python scalars:

  {"id": 7, "expr": {"op": "add", "args": [
      {"op": "in", "dtype": "int32", "offset": 120, "shape": [3, 4]},
      {"op": "scalar", "kind": "int", "value": 5}]}}

It writes NumPy's results the same way: expected_<dtype>.npy (results of that dtype, flat,
back to back), scales.npy (float64: for accumulating operations, the magnitude the C++ side
measures its tolerance against: sum of |x| for sums, |A| @ |B| for matrix products, ...), and
results.tsv, one line per case:

  <id> TAB ok TAB <NumPy's dtype> TAB <dtype compared> TAB <offset> TAB <shape> TAB <scale offset or -1>
  <id> TAB error TAB <ValueError|TypeError|...> TAB <message>

All cases run in this one process (Python starts slowly). Exits with status 77 when NumPy
cannot be imported (the C++ test then skips).

Deliberate differences, documented in test_oracle.cpp:
- tessera has no float16 and no int8. Where NumPy 1.24 gives float16 (a float function of a
  bool array) or int8 (bool ** bool), the node is recomputed with its bool operands cast to
  float64 / int64, which is what tessera computes; results.tsv still names NumPy's dtype.
- tessera promotes 0-d arrays by dtype, NumPy 1.24 by value (like Python scalars): 0-d
  operands of elementwise operations take part as 1-element 1-D arrays.
"""

import json
import os
import sys
import warnings

try:
    import numpy as np
except ImportError:
    sys.exit(77)  # test_oracle.cpp skips its cases: no NumPy to compare with

# NumPy dtypes tessera does not have -> the dtype tessera uses instead.
DELIBERATE = {np.dtype(np.float16): np.float64, np.dtype(np.int8): np.int64}

BINARY = {
    "add", "subtract", "multiply", "true_divide", "equal", "not_equal", "less", "less_equal",
    "greater", "greater_equal", "maximum", "minimum", "power", "bitwise_and", "bitwise_or",
    "bitwise_xor",
}
UNARY = {
    "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "sin": np.sin, "cos": np.cos,
    "tanh": np.tanh, "abs": np.abs, "floor": np.floor, "ceil": np.ceil, "round": np.round,
    "isnan": np.isnan, "negative": np.negative, "invert": np.invert,
}
REDUCTIONS = {
    "sum": np.sum, "prod": np.prod, "mean": np.mean, "var": np.var, "std": np.std,
    "min": np.min, "max": np.max, "any": np.any, "all": np.all, "nansum": np.nansum,
    "nanmean": np.nanmean, "count_nonzero": np.count_nonzero, "argmin": np.argmin,
    "argmax": np.argmax,
}
DTYPES = {"bool": np.bool_, "int32": np.int32, "int64": np.int64, "float32": np.float32,
          "float64": np.float64}


def cast_bools(values, to):
    """The operands with bool arrays and Python bools converted to dtype `to`."""
    out = []
    for v in values:
        if isinstance(v, np.ndarray) and v.dtype == np.bool_:
            out.append(v.astype(to))
        elif isinstance(v, bool):
            out.append(to(v).item())
        else:
            out.append(v)
    return out


def call(fn, args):
    """fn(*args), with 0-d array operands promoted by dtype as tessera does (NumPy 1.24 would
    promote them by value, like Python scalars): they take part as 1-element 1-D arrays."""
    if len(args) > 1 and any(isinstance(a, np.ndarray) and a.ndim == 0 for a in args):
        shape = np.broadcast_shapes(*[a.shape for a in args if isinstance(a, np.ndarray)])
        lifted = [a.reshape(1) if isinstance(a, np.ndarray) and a.ndim == 0 else a for a in args]
        return np.asarray(fn(*lifted)).reshape(shape)
    return np.asarray(fn(*args))


# NumPy's own dtype of results recomputed per DELIBERATE, by id() of the result.
REMAPPED = {}


def apply(fn, args):
    """fn(*args), recomputed per DELIBERATE when NumPy's result dtype is one tessera lacks."""
    res = call(fn, args)
    if res.dtype in DELIBERATE:
        own = res.dtype.name
        res = call(fn, cast_bools(args, DELIBERATE[res.dtype]))
        REMAPPED[id(res)] = own
    return res


def axis_of(node):
    a = node.get("axis")
    return tuple(a) if isinstance(a, list) else a


def reduced_count(x, axis):
    """Elements reduced into each output element."""
    if axis is None:
        return x.size
    axes = (axis,) if isinstance(axis, int) else axis
    n = 1
    for a in axes:
        n *= x.shape[a]
    return n


class Oracle:
    def __init__(self, directory):
        self.dir = directory
        self.cache = {}

    def load(self, dtype, offset, shape):
        if dtype not in self.cache:
            self.cache[dtype] = np.load(os.path.join(self.dir, f"inputs_{dtype}.npy"))
        size = int(np.prod(shape, dtype=np.int64))
        return self.cache[dtype][offset:offset + size].reshape(shape)

    def ev(self, n):
        """(value, scale or None) of node n."""
        op = n["op"]
        if op == "in":
            return self.load(n["dtype"], n["offset"], tuple(n["shape"])), None
        if op == "scalar":
            kind, v = n["kind"], n["value"]
            return (int(v) if kind == "int" else float(v) if kind == "float" else bool(v)), None
        args = [self.ev(a)[0] for a in n.get("args", [])]
        if op in BINARY:
            return apply(getattr(np, op), args), None
        if op in UNARY:
            return apply(UNARY[op], args), None
        if op == "where":
            return apply(np.where, args), None
        if op == "clip":
            return apply(np.clip, args), None
        if op == "astype":
            return args[0].astype(DTYPES[n["dtype"]]), None
        if op in REDUCTIONS:
            return self.reduce(op, n, args[0])
        if op == "T":
            return args[0].T, None
        if op == "transpose":
            return np.transpose(args[0], n["axes"]), None
        if op == "rechunk":
            return args[0], None
        if op in ("matmul", "dot"):
            a, b = args
            res = apply(np.matmul if op == "matmul" else np.dot, args)
            scale = np.matmul(np.abs(a.astype(np.float64)), np.abs(b.astype(np.float64)))
            return res, scale
        if op == "arange":
            res = np.arange(n["start"], n["stop"], n["step"], dtype=DTYPES[n["dtype"]])
            return res, self.range_scale(res, n["start"], n["stop"], n["step"])
        if op == "linspace":
            res = np.linspace(n["start"], n["stop"], n["num"], endpoint=n["endpoint"],
                              dtype=DTYPES[n["dtype"]])
            return res, self.range_scale(res, n["start"], n["stop"], 0)
        if op == "eye":
            return np.eye(n["n"], n["m"], n["k"], dtype=DTYPES[n["dtype"]]), None
        if op == "full":
            return np.full(tuple(n["shape"]), n["value"], dtype=DTYPES[n["dtype"]]), None
        raise KeyError(f"numpy_oracle.py: unknown op {op!r}")

    @staticmethod
    def range_scale(res, start, stop, step):
        return np.full(res.shape, max(abs(start), abs(stop), abs(step), 1.0))

    def reduce(self, op, n, x):
        axis = axis_of(n)
        kw = {"axis": axis, "keepdims": n["keepdims"]}
        if op in ("var", "std"):
            kw["ddof"] = n["ddof"]
        res = np.asarray(REDUCTIONS[op](x, **kw))
        # Magnitudes for the tolerance of accumulating reductions (float64, NaN as 0).
        mag = np.nan_to_num(np.abs(x.astype(np.float64)), nan=0.0, posinf=0.0, neginf=0.0)
        count = reduced_count(x, axis)
        scale = None
        if op in ("sum", "nansum"):
            scale = np.sum(mag, axis=axis, keepdims=n["keepdims"])
        elif op in ("mean", "nanmean"):
            scale = np.sum(mag, axis=axis, keepdims=n["keepdims"]) / max(count, 1)
        elif op in ("var", "std"):
            scale = np.sum(mag * mag, axis=axis, keepdims=n["keepdims"]) / max(count - n["ddof"], 1)
            if op == "std":
                scale = np.sqrt(scale)
        elif op == "prod":
            scale = np.abs(res.astype(np.float64))
        return res, scale

    def run(self):
        lines = []
        flat = {name: [] for name in DTYPES}  # results by dtype, raveled
        sizes = {name: 0 for name in DTYPES}
        scales, scale_size = [], 0
        with open(os.path.join(self.dir, "cases.jsonl")) as f:
            for line in f:
                case = json.loads(line)
                cid = case["id"]
                try:
                    res, scale = self.ev(case["expr"])
                    res = np.asarray(res)
                except (ValueError, TypeError, IndexError, ZeroDivisionError) as e:
                    kind = ("ValueError" if isinstance(e, ValueError) else
                            "TypeError" if isinstance(e, TypeError) else type(e).__name__)
                    lines.append(f"{cid}\terror\t{kind}\t{' '.join(str(e).split())}")
                    REMAPPED.clear()
                    continue
                shape = ",".join(str(d) for d in res.shape)
                name = res.dtype.name
                if name not in DTYPES:  # the C++ side reports it
                    lines.append(f"{cid}\tok\t{name}\t{name}\t-1\t{shape}\t-1")
                    continue
                flat[name].append(res.ravel())
                offset, sizes[name] = sizes[name], sizes[name] + res.size
                scale_offset = -1
                if scale is not None:
                    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), res.shape)
                    scales.append(scale.ravel())
                    scale_offset, scale_size = scale_size, scale_size + res.size
                numpy_dtype = REMAPPED.get(id(res), name)
                REMAPPED.clear()
                lines.append(f"{cid}\tok\t{numpy_dtype}\t{name}\t{offset}\t{shape}\t{scale_offset}")
        for name, parts in flat.items():
            data = np.concatenate(parts) if parts else np.zeros(0, DTYPES[name])
            np.save(os.path.join(self.dir, f"expected_{name}.npy"), data.astype(DTYPES[name]))
        np.save(os.path.join(self.dir, "scales.npy"),
                np.concatenate(scales) if scales else np.zeros(0))
        with open(os.path.join(self.dir, "results.tsv"), "w") as f:
            f.write("\n".join(lines) + "\n")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: numpy_oracle.py DIR")
    np.seterr(all="ignore")
    warnings.simplefilter("ignore")  # empty slices, degrees of freedom <= 0
    Oracle(sys.argv[1]).run()


if __name__ == "__main__":
    main()
