"""Same command, same seed, same bits: every output of a fixed set of commands, made by this
source tree and by an earlier git revision, compared value by value.

    python benchmarks/bitwise.py --against REV            # e.g. the commit before a refactor
    python benchmarks/bitwise.py --against REV --keep DIR # keep both sets of files in DIR

Both trees run the same commands in folders laid out alike (so relative paths in reports
match), one after the other on this machine with the same thread settings. The earlier tree is
exported with ``git archive`` and put first on ``PYTHONPATH``. Compared:

- every HDF5 dataset, group by group: dtype, shape and raw bytes (NaN payloads included);
- every HDF5 attribute, except provenance (versions, git revision, command line, times), which
  is listed as such; attributes present on one side only are listed apart;
- every JSON value printed by ``--json`` commands, and the text files (``derivation.tex``);
- the figures, pixel by pixel (PNG).

Exit status 0 when every dataset and JSON value is identical, 1 otherwise.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: attributes that describe how and when a file was made, not what it holds
PROVENANCE = {"meanfield_version", "git_revision", "versions", "command_line", "created",
              "elapsed_seconds"}

SIZE = ["--M", "40", "--N", "3000", "--d", "20", "--t-max", "40", "--dt", "0.5",
        "--n-times", "25"]
SIM = [*SIZE, "--n-test", "500", "--seed", "3"]

#: (name, arguments of ``meanfield``, output captured as JSON?)
COMMANDS: list[tuple[str, list[str], bool]] = [
    ("derive-relu", ["derive", "relu", "--json"], True),
    ("derive-erf", ["derive", "erf", "--json"], True),
    ("derive-xtanh", ["derive", "x*tanh(x)", "--json"], True),
    ("theory-gaussian", ["theory", "--d", "20", "--t-max", "1e4", "--x-par", "0.1,1,2",
                         "-o", "theory_gaussian.h5"], False),
    ("theory-sphere", ["theory", "--data", "sphere", "--d", "20", "--t-max", "1e3",
                       "--x-par", "0.5,1.5", "-o", "theory_sphere.h5"], False),
    ("theory-match", ["theory", *SIZE, "-o", "theory_match.h5"], False),
    ("sim-euler64", ["simulate", *SIM, "-o", "sim_euler64.h5"], False),
    ("sim-heun64", ["simulate", *SIM, "--integrator", "heun", "-o", "sim_heun64.h5"], False),
    ("sim-euler32", ["simulate", *SIM, "--dtype", "float32", "-o", "sim_euler32.h5"], False),
    ("sim-heun32", ["simulate", *SIM, "--dtype", "float32", "--integrator", "heun",
                    "-o", "sim_heun32.h5"], False),
    ("sim-skipping", ["simulate", "--M", "60", "--N", "20000", "--d", "30", "--n-test", "1000",
                      "--t-max", "200", "--dt", "1", "--growth", "0.05", "--n-times", "30",
                      "--threads", "1", "-o", "sim_skipping.h5"], False),
    ("sim-minibatch", ["simulate", *SIM, "--batch", "256", "-o", "sim_minibatch.h5"], False),
    ("sim-online", ["simulate", *SIM, "--online", "--batch", "300", "-o", "sim_online.h5"],
     False),
    ("sim-noise", ["simulate", *SIM, "--label-noise", "0.1", "--margin", "0.05",
                   "-o", "sim_noise.h5"], False),
    ("sim-user", ["simulate", *SIM, "--activation", "x*tanh(x)", "--loss", "logistic",
                  "-o", "sim_user.h5"], False),
    ("sim-squared", ["simulate", *SIM, "--activation", "erf", "--loss", "squared",
                     "--record-nodes", "7", "-o", "sim_squared.h5"], False),
    ("compare-computed", ["compare", "sim_euler64.h5", "--json", "-o", "cmp_computed.h5"],
     True),
    ("compare-file", ["compare", "sim_euler64.h5", "theory_match.h5", "--json",
                      "-o", "cmp_file.h5", "--plot", "cmp_file.png"], True),
    ("compare-heun", ["compare", "sim_heun64.h5", "--json", "--no-schedule"], True),
    ("reproduce", ["reproduce", "pb-fig1", "--quick", "--out", "rep", "--json"], True),
]

#: a long run interrupted by SIGINT once its first checkpoint exists, then run again (resumes)
RESUME = ["simulate", "--M", "80", "--N", "20000", "--d", "40", "--n-test", "1000",
          "--t-max", "300", "--dt", "0.5", "--n-times", "20", "--checkpoint-every", "20",
          "--integrator", "heun", "-o", "sim_resumed.h5"]

LAUNCH = "import sys; from cli.main import main; sys.argv[0] = 'meanfield'; main()"


def _env(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _meanfield(tree: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LAUNCH, *args], cwd=cwd, env=_env(tree),
                          capture_output=True, text=True)


def _resume_run(tree: Path, cwd: Path) -> str:
    """Start RESUME, SIGINT it once a checkpoint exists, run it again; say what happened."""
    ckpt = cwd / "sim_resumed.ckpt.h5"
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH, *RESUME], cwd=cwd, env=_env(tree),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while proc.poll() is None and not ckpt.exists() and time.time() < deadline:
        time.sleep(0.05)
    interrupted = proc.poll() is None
    if interrupted:
        proc.send_signal(signal.SIGINT)
    proc.communicate()
    again = _meanfield(tree, RESUME, cwd)
    if again.returncode != 0:
        raise RuntimeError(f"resumed run failed: {again.stderr}")
    return ("interrupted, then resumed" if interrupted and "resuming" in again.stderr
            else "ran through (not interrupted)")


def run_all(tree: Path, cwd: Path) -> dict[str, object]:
    """Run every command of ``tree`` in ``cwd``; returns the parsed JSON outputs."""
    cwd.mkdir(parents=True, exist_ok=True)
    where = _meanfield(tree, ["--version"], cwd)
    print(f"  {tree}: {where.stdout.strip()}", flush=True)
    outputs: dict[str, object] = {}
    for name, args, as_json in COMMANDS:
        start = time.perf_counter()
        res = _meanfield(tree, args, cwd)
        if res.returncode != 0:
            raise RuntimeError(f"{name} failed in {tree} (exit {res.returncode}):\n{res.stderr}")
        if as_json:
            outputs[name] = json.loads(res.stdout)
        print(f"    {name:<18}{time.perf_counter() - start:7.1f} s", flush=True)
    outputs["resume"] = _resume_run(tree, cwd)
    print(f"    resume: {outputs['resume']}", flush=True)
    return outputs


def _export(rev: str, dest: Path) -> Path:
    """The tree of ``rev`` (``git archive``) in ``dest``."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True,
                          check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest


# --------------------------------------------------------------------------- comparing


def _attr(value: object) -> object:
    import numpy as np

    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value.startswith("[{"):
        try:  # a JSON list of records (the BLAS pools): threadpoolctl lists them in any order
            return sorted(json.dumps(v, sort_keys=True) for v in json.loads(value))
        except (ValueError, TypeError):
            return value
    if isinstance(value, np.ndarray):
        return (value.dtype.str, value.shape, value.tobytes())
    return value


def _h5_items(path: Path) -> tuple[dict[str, object], dict[str, object]]:
    """``{dataset path: (dtype, shape, bytes)}`` and ``{object path@attr: value}``."""
    import h5py

    datasets: dict[str, object] = {}
    attrs: dict[str, object] = {}

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            data = obj[()]
            raw = data.tobytes() if hasattr(data, "tobytes") else repr(data).encode()
            datasets[name] = (obj.dtype.str, obj.shape, raw)
        for key, value in obj.attrs.items():
            if key in ("DIMENSION_LIST", "REFERENCE_LIST"):
                continue  # object references: differ by address, checked by dims below
            attrs[f"{name}@{key}"] = _attr(value)
        if isinstance(obj, h5py.Dataset):
            attrs[f"{name}@dims"] = tuple(tuple(s.name for s in dim.values())
                                         for dim in obj.dims)

    with h5py.File(path, "r") as f:
        for key, value in f.attrs.items():
            attrs[f"/@{key}"] = _attr(value)
        f.visititems(visit)
    return datasets, attrs


#: the lines of a derivation document that say how and when it was made (its provenance
#: table: ``\item git revision: ...``)
TEXT_PROVENANCE = ("meanfield version", "git revision", "created", "written by")


def _without_provenance(text: str) -> list[str]:
    """The lines of a text output, less its provenance lines."""
    return [line for line in text.splitlines()
            if not any(line.lstrip().startswith(f"\\item {key}:") for key in TEXT_PROVENANCE)]


def _json_diff(a: object, b: object, where: str = "") -> list[str]:
    """Differences of the old JSON ``a`` and the new ``b``; keys only the new one has are
    additions, which contracts allow (printed, not counted)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(b) - set(a)):
            print(f"JSON key added in the new tree: {where}/{k}")
        out = [f"{where}/{k}: only in the old tree" for k in sorted(set(a) - set(b))]
        for k in sorted(set(a) & set(b)):
            out += _json_diff(a[k], b[k], f"{where}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in _json_diff(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def compare_trees(old: Path, new: Path, old_json: dict, new_json: dict) -> bool:
    """Print the differences; True when every value is identical."""
    import numpy as np

    identical = True
    counts = {"datasets": 0, "json": 0, "attributes": 0}
    files = sorted(p.relative_to(old) for p in old.rglob("*") if p.is_file())
    for rel in files:
        a, b = old / rel, new / rel
        if not b.exists():
            print(f"MISSING in the new tree: {rel}")
            identical = False
            continue
        if rel.suffix == ".h5":
            (da, aa), (db, ab) = _h5_items(a), _h5_items(b)
            for key in sorted(set(da) | set(db)):
                counts["datasets"] += 1
                if da.get(key) != db.get(key):
                    print(f"DATASET differs: {rel}:{key}")
                    identical = False
            for key in sorted(set(aa) | set(ab)):
                attr = key.rsplit("@", 1)[1]
                if attr in PROVENANCE:
                    continue
                counts["attributes"] += 1
                if key not in aa or key not in ab:
                    side = "new" if key in ab else "old"
                    print(f"attribute only in the {side} tree: {rel}:{key}")
                elif aa[key] != ab[key]:
                    print(f"attribute differs: {rel}:{key}: {aa[key]!r} -> {ab[key]!r}")
        elif rel.suffix == ".png":
            import matplotlib.image as mpimg

            if not np.array_equal(mpimg.imread(a), mpimg.imread(b)):
                print(f"FIGURE differs (pixels): {rel}")
                identical = False
        elif rel.suffix in (".tex", ".txt"):
            if _without_provenance(a.read_text()) != _without_provenance(b.read_text()):
                print(f"TEXT differs: {rel}")
                identical = False
    for name in sorted(set(old_json) | set(new_json)):
        diffs = _json_diff(old_json.get(name), new_json.get(name), name)
        counts["json"] += 1
        for d in diffs:
            print(f"JSON differs: {d}")
            identical = False
    print(f"compared {len(files)} files: {counts['datasets']} datasets, "
          f"{counts['attributes']} non-provenance attributes, {counts['json']} JSON outputs")
    return identical


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="git revision to compare with")
    parser.add_argument("--keep", default=None, help="keep both sets of files in this folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.keep) if args.keep else Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        old_tree = _export(args.against, Path(tmp) / "tree")
        print(f"outputs of {args.against}:", flush=True)
        old_json = run_all(old_tree, base / "old")
        print("outputs of this tree:", flush=True)
        new_json = run_all(ROOT, base / "new")
        same = compare_trees(base / "old", base / "new", old_json, new_json)
    print("identical: every dataset and JSON value" if same else "NOT identical")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
