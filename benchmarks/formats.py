"""Office formats: askdocs's readers (python-docx, python-pptx, openpyxl, stdlib csv, zipfile EPUB)
against markitdown, on real files written by those libraries (tests/office_files.py).

Quality: does the Markdown keep headings, nested list levels, tables, and no junk cells?
Speed: median seconds per file of each converter on a large DOCX, PPTX and XLSX.
markitdown lives in its own virtualenv (it pins its own pdfminer, pandas, ...):

    python3 -m venv /tmp/md && /tmp/md/bin/pip install 'markitdown[docx,pptx,xlsx]'
    .venv/bin/python benchmarks/formats.py --markitdown /tmp/md/bin/python

It prints a Markdown report (benchmarks/results/formats.md holds one run).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from office_files import make_csv, make_docx, make_epub, make_pptx, make_xlsx

from askdocs.load import discover, read

# what a faithful conversion must contain, per format (regular expressions: any Markdown list marker counts)
CHECKS: dict[str, dict[str, str]] = {
    "docx": {
        "H1": "# Vector Index Guide",
        "H2": "## Parameters",
        "bullet": r"\n[-*+] M sets the maximum degree",
        "nested bullet": r"\n {2,4}[-*+] ef is tuned at query time",
        "numbered": r"\n1\. Create the collection",
        "table header (first row, then separator)": r"\| index \| memory \| recall \|\n\|[- |]+\|\n",
        "table row": r"\| HNSW \| high \| 0\.99 \|",
    },
    "pptx": {
        "slide title as heading": r"#+ .*Index choices",
        "bullet": r"\n[-*+] HNSW for low latency",
        "nested bullet": r"\n {2,4}[-*+] efSearch trades recall",
        "table row": r"\| HNSW \| 4\.1 \|",
        "notes": r"Mention the rebuild cost\.",
    },
    "xlsx": {
        "sheet heading": r"#+ Benchmarks",
        "header": r"\| index \| QPS \| recall \|",
        "integer kept an integer": r"\| HNSW \| 5200 \| 0\.99 \|",
        "pipe in a cell escaped": r"\| with \\\| pipe \|",
        "second sheet": r"#+ Costs",
    },
    "csv": {"header": r"\| name \| role \| city \|", "row (';' dialect)": r"\| Ada \| engineer \| London \|"},
    "epub": {"chapter heading": r"# Chapter One", "second chapter": r"# Chapter Two", "list": r"\n[-*+] dense vectors"},
}
JUNK = ("NaN", "Unnamed:", "None", "5200.0")

MARKITDOWN = """
import json, sys, time
from markitdown import MarkItDown
md = MarkItDown()
out = {}
for path in sys.argv[2:]:
    times = []
    for _ in range(int(sys.argv[1])):
        t = time.perf_counter()
        try:
            text = md.convert(path).text_content
        except Exception as exc:
            text = f"ERROR {type(exc).__name__}: {exc}"
        times.append(time.perf_counter() - t)
    out[path] = {"text": text, "times": times}
print(json.dumps(out))
"""


def ours(paths: list[Path], repeats: int) -> dict[str, dict]:
    out = {}
    for p in paths:
        times, text = [], ""
        for _ in range(repeats):
            t = time.perf_counter()
            text = read(discover([p]).files[0]).text
            times.append(time.perf_counter() - t)
        out[str(p)] = {"text": text, "times": times}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markitdown", help="python of a virtualenv with markitdown[docx,pptx,xlsx]")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="askdocs-formats-"))
    small = {
        "docx": make_docx(tmp / "guide.docx"),
        "pptx": make_pptx(tmp / "review.pptx"),
        "xlsx": make_xlsx(tmp / "bench.xlsx"),
        "csv": make_csv(tmp / "people.csv"),
        "epub": make_epub(tmp / "book.epub"),
    }
    large = {
        "docx (2,000 paragraphs)": make_docx(tmp / "large.docx", paragraphs=2000),
        "pptx (200 slides)": make_pptx(tmp / "large.pptx", slides=200),
        "xlsx (20,000 rows)": make_xlsx(tmp / "large.xlsx", rows=20000),
    }
    files = [*small.values(), *large.values()]
    results = {"askdocs": ours(files, args.repeats)}
    if args.markitdown:
        proc = subprocess.run(
            [args.markitdown, "-c", MARKITDOWN, str(args.repeats), *map(str, files)],
            capture_output=True,
            text=True,
            check=True,
        )
        results["markitdown"] = json.loads(proc.stdout)

    print("## Structure kept (small files)\n")
    names = list(results)
    print("| format | check | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for fmt, checks in CHECKS.items():
        path = str(small[fmt])
        for label, needle in checks.items():
            cells = ["yes" if re.search(needle, results[n][path]["text"]) else "**no**" for n in names]
            print(f"| {fmt} | {label} | " + " | ".join(cells) + " |")
        junk = [", ".join(j for j in JUNK if j in results[n][path]["text"]) or "none" for n in names]
        print(f"| {fmt} | junk cells ({'/'.join(JUNK)}) | " + " | ".join(junk) + " |")

    print("\n## Speed (median of runs, one process, loaded 2-core machine)\n")
    print("| file | " + " | ".join(f"{n} s" for n in names) + " | ratio |")
    print("|---|" + "---:|" * (len(names) + 1))
    for label, path in large.items():
        meds = [statistics.median(results[n][str(path)]["times"]) for n in names]
        ratio = f"{meds[1] / meds[0]:.1f}x" if len(meds) > 1 else "-"
        print(f"| {label} | " + " | ".join(f"{m:.2f}" for m in meds) + f" | {ratio} |")

    print("\n## Output, small files\n")
    for fmt, path in small.items():
        for n in names:
            print(f"### {fmt}: {n}\n\n````markdown\n{results[n][str(path)]['text'].strip()}\n````\n")


if __name__ == "__main__":
    main()
