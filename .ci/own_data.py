"""Every chapter of the book executed under the switch, on a converted dataset, with the tiny preset.

    python .ci/own_data.py [WORK]       (default WORK: _build/own_data)

1. writes the phantom as RSNA distributes its data (DICOMs + labels CSV): `phantom --layout rsna`;
2. converts it with the project's converter: `convert rsna --size 32`;
3. runs `pipeline --preset tiny` twice: the second run must skip every step;
4. executes each notebook in book/ with HQANOGAN_DATA / HQANOGAN_PRESET=tiny / HQANOGAN_OUT set and
   no edit, failing on the first error; prints the seconds per chapter.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
work = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "_build" / "own_data").resolve()
src, data, run = work / "rsna_src", work / "data", work / "run"
env = {**os.environ, "OMP_NUM_THREADS": "1"}


def cli(*args) -> str:
    out = subprocess.run([sys.executable, "-m", "hqanogan_core", *args], cwd=ROOT, env=env, capture_output=True,
                         text=True)
    if out.returncode != 0:
        sys.exit(f"FAILED: python -m hqanogan_core {' '.join(args)}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out.stdout + out.stderr


start = time.time()
if not (data / "convert.json").is_file():
    subprocess.run(["rm", "-rf", str(work)], check=True)
    cli("phantom", "--layout", "rsna", "--out", str(src), "--n-train", "160", "--n-test", "60", "--size", "128")
    cli("convert", "rsna", "--src", str(src), "--out", str(data), "--size", "32")
print(f"fixture: {json.loads((data / 'convert.json').read_text())['counts']}")

first = cli("pipeline", "--data", str(data), "--out", str(run), "--preset", "tiny", "--no-progress", "--resume")
second = cli("pipeline", "--data", str(data), "--out", str(run), "--preset", "tiny", "--no-progress")
skipped = [ln for ln in second.splitlines() if ln.startswith("[pipeline]")]
if len(skipped) != 4 or not all("already complete, skipped" in ln for ln in skipped):
    sys.exit("FAILED: a second pipeline run did not skip every step:\n" + "\n".join(skipped))
print("pipeline: ran, then skipped all 4 steps on the second run")

os.environ.update(HQANOGAN_DATA=str(data), HQANOGAN_PRESET="tiny", HQANOGAN_OUT=str(run), OMP_NUM_THREADS="1")
times = {}
for path in sorted((ROOT / "book").glob("*.ipynb")):
    nb = nbformat.read(path, as_version=4)
    t0 = time.time()
    try:
        NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "book")}}).execute()
    except Exception as err:                                   # noqa: BLE001 (report the cell and stop)
        sys.exit(f"FAILED: {path.name} under HQANOGAN_DATA={data}:\n{str(err)[-4000:]}")
    times[path.name] = time.time() - t0
    print(f"{path.name}: ok in {times[path.name]:.0f} s", flush=True)
print(f"own-data book: {len(times)} chapters executed in {sum(times.values()):.0f} s; total {time.time() - start:.0f} s")
