"""The repository stands on its own: source lines a reader can read without scrolling, and no shipped
manifest or result that names a path of the machine it was made on (they are read on other machines)."""
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINE = 120
ABSOLUTE = re.compile(r"(^|[\s=:'\"])/(home|work|root|tmp|mnt|Users)/")    # a POSIX absolute path of a machine


# the phantom's source is hashed into the default dataset's fingerprint (data.default.phantom_fingerprint), which
# every shipped network and result is keyed by: its bytes change only with the phantom itself
FROZEN = {ROOT / "hqanogan_core" / "data" / "phantom.py"}


def python_files():
    return sorted(p for folder in ("hqanogan_core", "tests", "benchmarks") for p in (ROOT / folder).rglob("*.py")
                  if p not in FROZEN)


def strings_in(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings_in(k)
            yield from strings_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings_in(v)


def test_source_lines_fit_in_120_columns():
    long = [f"{p.relative_to(ROOT)}:{i}" for p in python_files()
            for i, line in enumerate(p.read_text().splitlines(), 1) if len(line) > MAX_LINE]
    assert not long, f"lines over {MAX_LINE} characters: {long}"


def test_the_absolute_path_pattern_catches_machine_paths():
    machine = "/" + "work/main/data/cache/phantom64"          # spelled in two parts: this file names no path
    assert ABSOLUTE.search(f'{{"data": "{machine}"}}') and ABSOLUTE.search("--out " + "/" + "tmp/x")
    assert not ABSOLUTE.search("data/cache/phantom64") and not ABSOLUTE.search("python -m hqanogan_core")


def test_shipped_manifests_name_no_path_of_this_machine():
    shipped = ROOT / "data" / "pretrained"
    files = sorted(shipped.rglob("*.json")) + sorted(shipped.rglob("*.jsonl"))
    assert files, "no shipped manifests found"
    found = []
    for f in files:
        text = f.read_text()
        lines = text.splitlines() if f.suffix == ".jsonl" else [text]
        docs = [json.loads(line) for line in lines if line.strip()]
        found += [f"{f.relative_to(ROOT)}: {s[:80]!r}" for d in docs for s in strings_in(d) if ABSOLUTE.search(s)]
    assert not found, "shipped files name machine paths:\n" + "\n".join(found[:20])
