#!/usr/bin/env python3
"""The device check of issue 16, run ON a GPU machine by scripts/gpu-check.sh (which sets the
library path first). Every step runs with its own time limit inside one overall budget; a step
that fails or times out is recorded and the next one runs. Results: one JSON file
($OUT/gpu-check.json) and the full log ($OUT/gpu-check.log).

Inputs, all in the folder PACK (default: the directory of this file), as scripts/gpu-pack.sh
prepares them: arlas (or arlas.xz), the policy crate's test binaries (tests/*, or *.xz), the
SmolLM2 GGUF (whole, or in parts smollm2.gguf.part-*, joined here and checked against
smollm2.gguf.sha256), torch_reference.py, build.json (the commit that was built, copied into
the results). Work files go to WORK (default /tmp/arlas-gpu/work).

Settings (environment):
    DEVICE        cuda (default) or cpu: cpu dry-runs the logic on a machine without a GPU
    DTYPE         bf16 (default): arlas --dtype and torch_reference.py --dtype
    BATCHES       sampling batches, default "1 8 32 64"
    TRAIN_BATCHES training batches, default "8 32"
    NEW_TOKENS    sampled tokens per row, default 128 (prompts: 128 tokens)
    SEQ_LEN       training tokens per sequence, default 256
    BUDGET        seconds for the whole check, default 480
    TORCH         1 (default) to run torch_reference.py next to each arlas benchmark
    ITERATION     1 (default) to run one short ARLAS iteration (`arlas train --device ...`)
    OUT           where the JSON and the log go (default WORK)
"""

from __future__ import annotations

import glob
import hashlib
import json
import lzma
import os
import platform
import re
import shutil
import subprocess
import sys
import time

START = time.monotonic()
PACK = os.environ.get("PACK") or os.path.dirname(os.path.abspath(__file__))
WORK = os.environ.get("WORK") or "/tmp/arlas-gpu/work"
OUT = os.environ.get("OUT") or WORK
DEVICE = os.environ.get("DEVICE", "cuda")
DTYPE = os.environ.get("DTYPE", "bf16")
BATCHES = [int(b) for b in os.environ.get("BATCHES", "1 8 32 64").split()]
TRAIN_BATCHES = [int(b) for b in os.environ.get("TRAIN_BATCHES", "8 32").split()]
NEW_TOKENS = int(os.environ.get("NEW_TOKENS", "128"))
SEQ_LEN = int(os.environ.get("SEQ_LEN", "256"))
BUDGET = float(os.environ.get("BUDGET", "480"))
TORCH = os.environ.get("TORCH", "1") == "1"
ITERATION = os.environ.get("ITERATION", "1") == "1"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

os.makedirs(WORK, exist_ok=True)
os.makedirs(OUT, exist_ok=True)
LOG = open(os.path.join(OUT, "gpu-check.log"), "a", encoding="utf-8", errors="replace")
RESULTS: dict = {
    "check": "arlas gpu-check (issue 16)",
    "device": DEVICE,
    "dtype": DTYPE,
    "started_unix": time.time(),
    "budget_seconds": BUDGET,
    "steps": [],
}


def log(text: str) -> None:
    line = f"[{time.monotonic() - START:7.1f}s] {text}"
    print(line, flush=True)
    LOG.write(line + "\n")
    LOG.flush()


def left() -> float:
    return BUDGET - (time.monotonic() - START)


def save() -> None:
    RESULTS["elapsed_seconds"] = time.monotonic() - START
    path = os.path.join(OUT, "gpu-check.json")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(RESULTS, f, indent=1)
    os.replace(path + ".tmp", path)


def json_lines(text: str) -> list:
    """The lines of `text` that parse as JSON objects, in order."""
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def run(name: str, cmd: list[str], limit: float, env: dict | None = None, need: float = 5.0) -> dict:
    """Runs one step (recorded, never fatal); `limit` is cut to what the budget has left."""
    step = {"name": name, "cmd": " ".join(cmd)}
    RESULTS["steps"].append(step)
    limit = min(limit, left() - 5.0)
    if limit < need:
        step.update(ok=False, skipped=True, error=f"budget: {left():.0f} s left")
        log(f"SKIP {name}: budget")
        save()
        return step
    log(f"RUN  {name}: {step['cmd']} (limit {limit:.0f} s)")
    started = time.monotonic()
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=limit,
            env={**os.environ, **(env or {})},
            cwd=WORK,
        )
        rc, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as e:
        rc = "timeout"
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
    except OSError as e:
        rc, out, err = "oserror", "", str(e)
    seconds = time.monotonic() - started
    LOG.write(f"--- {name} stdout\n{out}\n--- {name} stderr\n{err}\n")
    step.update(ok=rc == 0, rc=rc, seconds=round(seconds, 2))
    parsed = json_lines(out)
    if len(parsed) == 1:
        step["result"] = parsed[0]
    elif parsed:
        step["results"] = parsed
    if rc != 0:
        step["error"] = (err or out)[-1500:]
    log(f"{'OK  ' if rc == 0 else 'FAIL'} {name} in {seconds:.1f} s (rc {rc})")
    save()
    return step


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def unpack(name: str) -> str | None:
    """PACK/name, or PACK/name.xz decompressed into WORK; made executable."""
    plain, packed = os.path.join(PACK, name), os.path.join(PACK, name + ".xz")
    target = os.path.join(WORK, os.path.basename(name))
    if os.path.isfile(plain):
        shutil.copyfile(plain, target)
    elif os.path.isfile(packed):
        with lzma.open(packed) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        return None
    os.chmod(target, 0o755)
    return target


def prepare() -> dict:
    """Binaries and the model in WORK; the environment of the machine."""
    step = {"name": "prepare"}
    RESULTS["steps"].append(step)
    started = time.monotonic()
    info: dict = {"python": sys.version.split()[0], "platform": platform.platform()}
    try:
        info["glibc"] = " ".join(platform.libc_ver())
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30,
        )
        info["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        info["nvidia_smi"] = f"unavailable: {e}"
    info["ld_library_path"] = os.environ.get("LD_LIBRARY_PATH", "")
    build = os.path.join(PACK, "build.json")
    if os.path.isfile(build):
        try:
            with open(build, encoding="utf-8") as f:
                RESULTS["build"] = json.load(f)
        except ValueError as e:
            RESULTS["build"] = f"unreadable: {e}"
    paths = {"arlas": unpack("arlas")}
    tests = []
    for entry in sorted(glob.glob(os.path.join(PACK, "tests", "*"))):
        name = os.path.basename(entry).removesuffix(".xz")
        if path := unpack(os.path.join("tests", name)):
            tests.append(path)
    paths["tests"] = tests
    # The model: whole, or joined from its parts.
    models = os.path.join(WORK, "models", "smollm2")
    os.makedirs(models, exist_ok=True)
    gguf = os.path.join(models, GGUF_NAME)
    parts = sorted(glob.glob(os.path.join(PACK, "smollm2.gguf.part-*")))
    whole = os.path.join(PACK, GGUF_NAME)
    if not os.path.isfile(gguf):
        if os.path.isfile(whole):
            shutil.copyfile(whole, gguf)
        elif parts:
            with open(gguf + ".tmp", "wb") as dst:
                for part in parts:
                    with open(part, "rb") as src:
                        shutil.copyfileobj(src, dst)
            os.replace(gguf + ".tmp", gguf)
    expected_file = os.path.join(PACK, "smollm2.gguf.sha256")
    if os.path.isfile(gguf):
        digest = sha256(gguf)
        info["gguf_sha256"] = digest
        if os.path.isfile(expected_file):
            expected = open(expected_file, encoding="utf-8").read().split()[0]
            info["gguf_verified"] = digest == expected
            if digest != expected:
                os.remove(gguf)  # a partial join must not pass for the model
    paths["models_dir"] = os.path.join(WORK, "models")
    paths["gguf"] = gguf if os.path.isfile(gguf) else None
    torch_ref = os.path.join(PACK, "torch_reference.py")
    paths["torch_reference"] = torch_ref if os.path.isfile(torch_ref) else None
    if paths["arlas"]:
        ldd = subprocess.run(["ldd", paths["arlas"]], capture_output=True, text=True)
        info["ldd"] = ldd.stdout.strip().splitlines()
        info["missing_libraries"] = [line.strip() for line in ldd.stdout.splitlines() if "not found" in line]
    try:
        import torch  # noqa: PLC0415 (only on the GPU machine)

        info["torch"] = torch.__version__
        info["torch_cuda"] = torch.cuda.is_available()
    except ImportError as e:
        info["torch"] = f"unavailable: {e}"
    ok = bool(paths["arlas"]) and bool(paths["gguf"]) and not info.get("missing_libraries")
    step.update(ok=ok, seconds=round(time.monotonic() - started, 2), result={**info, "paths": paths})
    if not ok:
        step["error"] = "missing: " + ", ".join(k for k in ("arlas", "gguf") if not paths[k]) + (
            f"; libraries not found: {info['missing_libraries']}" if info.get("missing_libraries") else ""
        )
    log(f"{'OK  ' if ok else 'FAIL'} prepare: {json.dumps(info)[:2000]}")
    save()
    return paths


def by_batch(step: dict | None) -> dict:
    """A torch step's results by batch size."""
    if not step:
        return {}
    found = step.get("results") or ([step["result"]] if step.get("result") else [])
    return {r.get("batch"): r for r in found if isinstance(r, dict)}


def compare(batch: int, mine: dict, ref: dict | None) -> dict:
    ours = (mine.get("result") or {}).get("tokens_per_sec")
    theirs = (ref or {}).get("tokens_per_sec")
    return {
        "batch": batch,
        "arlas_tokens_per_sec": ours,
        "torch_tokens_per_sec": theirs,
        "arlas_over_torch": round(ours / theirs, 3) if ours and theirs else None,
        "arlas_mfu": (mine.get("result") or {}).get("mfu"),
        "torch_mfu": (ref or {}).get("mfu"),
    }


def main() -> None:
    paths = prepare()
    arlas, models = paths["arlas"], paths["models_dir"]
    common = ["--device", DEVICE, "--dtype", DTYPE, "--model", "smollm2", "--models-dir", models]
    summary: dict = {"sampling": [], "training": []}
    RESULTS["summary"] = summary

    # 1. The CUDA build's tests that need the device (CUDA f32/bf16 agreement on the tiny models
    # and SmolLM2, bf16 gradients and master weights): the names with `cuda` in them. A dry run
    # on the CPU runs all of them.
    selection = ["cuda"] if DEVICE.startswith("cuda") else []
    for test in paths["tests"]:
        name = os.path.basename(test)
        step = run(f"test {name}", [test, *selection, "--nocapture", "--test-threads", "1"], 180,
                   env={"ARLAS_MODELS_DIR": models})
        # Keep the measured agreements and the skips: they are the numbers the check is for.
        with open(os.path.join(OUT, "gpu-check.log"), encoding="utf-8", errors="replace") as f:
            text = f.read()
        section = text[text.rfind(f"--- test {name} stdout"):]
        step["notes"] = [
            line for line in section.splitlines()
            if "sampled - scored" in line or "SKIPPED" in line or "test result" in line or "loss" in line
        ][:40]
        save()

    if not arlas:
        log("no arlas binary: nothing else to run")
        save()
        return

    # 2. SmolLM2 answers on the device, in the check's dtype and in f32.
    for dtype in dict.fromkeys([DTYPE, "f32"]):
        step = run(
            f"generate {dtype}",
            [arlas, "generate", *common[:2], "--dtype", dtype, *common[4:],
             "--prompt", "What is the capital of France?", "--max-new-tokens", "48", "--json"],
            120,
        )
        text = (step.get("result") or {}).get("text", "")
        step["paris"] = "Paris" in text
        step["ok"] = step["ok"] and step["paris"]
        save()

    # 3. The same model as a Hugging Face directory, for PyTorch (no gguf package there).
    hf = os.path.join(WORK, "smollm2-hf")
    if TORCH and paths["torch_reference"]:
        run("export smollm2-hf", [arlas, "model", "export", "--device", "cpu", "--dtype", "f32",
                                  "--model", "smollm2", "--models-dir", models, "--out", hf], 120)

    def torch_bench(kind: str, sizes: list[int], extra: list[str], limit: float) -> dict | None:
        """One PyTorch process for every batch size (one model load, one JSON line each)."""
        if not (TORCH and paths["torch_reference"] and os.path.isfile(os.path.join(hf, "config.json"))):
            return None
        batch = ",".join(str(b) for b in sizes)
        return run(f"torch {kind} batches {batch}",
                   [sys.executable, paths["torch_reference"], kind, "--model", hf, "--batch", batch,
                    "--device", DEVICE, "--dtype", DTYPE, "--threads", str(os.cpu_count() or 1), *extra],
                   limit, env={"PYTHONUNBUFFERED": "1"})

    # 4. Sampling at each batch, arlas next to transformers' generate (same shapes: 128-token
    # random prompts, NEW_TOKENS new tokens each, no early stop, two timed repeats).
    shape = ["--prompt-len", "128", "--new-tokens", str(NEW_TOKENS), "--repeats", "2"]
    ours = {b: run(f"arlas sample batch {b}",
                   [arlas, "bench", "sample", *common, "--batch", str(b), *shape, "--ignore-eos", "--json"], 120)
            for b in BATCHES}
    theirs = by_batch(torch_bench("sample", BATCHES, shape, 60 + 40 * len(BATCHES)))
    summary["sampling"] = [compare(b, ours[b], theirs.get(b)) for b in BATCHES]
    save()

    # 5. Training steps (GRPO + AdamW, KL reference), arlas next to PyTorch eager.
    shape = ["--seq-len", str(SEQ_LEN), "--steps", "3"]
    ours = {b: run(f"arlas train batch {b}",
                   [arlas, "bench", "train", *common, "--batch", str(b), *shape, "--json"], 150)
            for b in TRAIN_BATCHES}
    theirs = by_batch(torch_bench("train", TRAIN_BATCHES, shape, 60 + 50 * len(TRAIN_BATCHES)))
    summary["training"] = [compare(b, ours[b], theirs.get(b)) for b in TRAIN_BATCHES]
    save()

    # 6. One short ARLAS iteration on the device (`arlas train --device`: needs the flag).
    if ITERATION:
        run_dir = os.path.join(WORK, f"run-{DEVICE}-{int(time.time())}")
        step = run(
            "arlas train iteration",
            [arlas, "train", "--run-dir", run_dir, "--device", DEVICE, "--model", "smollm2",
             "--models-dir", models, "--seed", "1", "--iterations", "1", "--suites", "email",
             "--tasks-per-iteration", "4", "--group-size", "4", "--batch-size", "16",
             "--warmup-episodes", "16", "--warmup-epochs", "1", "--warmup-batch", "8",
             "--max-turns", "3", "--agent-max-tokens", "48", "--attacker-max-tokens", "64",
             "--eval-episodes", "4", "--eval-every", "0", "--quiet", "--json"],
            max(left() - 10.0, 0.0),
            need=30.0,
        )
        metrics = os.path.join(run_dir, "metrics.jsonl")
        if os.path.isfile(metrics):
            with open(metrics, encoding="utf-8") as f:
                step["metrics"] = [json.loads(line) for line in f if line.strip()][-10:]
        if re.search(r"unexpected argument '--device'", step.get("error", "")):
            step["note"] = "this arlas has no `train --device` flag yet"
        save()

    failed = [s["name"] for s in RESULTS["steps"] if not s.get("ok")]
    RESULTS["failed_steps"] = failed
    log(f"done: {len(RESULTS['steps']) - len(failed)} of {len(RESULTS['steps'])} steps ok; failed: {failed}")
    save()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the JSON must say what broke the check itself
        RESULTS["crash"] = repr(e)
        save()
        raise
